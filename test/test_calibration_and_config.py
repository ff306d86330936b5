"""SDK calibration files (the real ones in ../shared/robotcar) and YAML configs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vbl_ros.config import from_dict, load_yaml, to_dict
from vbl_ros.errors import ConfigError, MissingDataError, RobotCarFormatError
from vbl_ros.geometry.rotations import (
    quaternion_slerp,
    quaternion_to_rotation,
    rotation_to_quaternion,
    se3_from_xyzrpy,
    xyzrpy_from_se3,
)
from vbl_ros.robotcar.calibration import read_camera_model, read_extrinsics, sensor_in_vehicle

SDK = Path(__file__).resolve().parents[2] / "shared" / "robotcar"
needs_sdk = pytest.mark.skipif(not SDK.is_dir(), reason=f"RobotCar SDK calibration files absent at {SDK}")


@needs_sdk
def test_real_stereo_narrow_left_model() -> None:
    model = read_camera_model(SDK / "models", "stereo_narrow_left")
    assert model.fx == pytest.approx(964.828979) and model.cy == pytest.approx(484.407990)
    # G maps the optical z axis onto the camera's x-forward axis.
    assert np.allclose(model.g_camera_image[:3, :3] @ [0, 0, 1], [1, 0, 0])
    quarter = model.scaled(0.25)
    assert quarter.fx == pytest.approx(964.828979 / 4)
    assert quarter.cx == pytest.approx((643.788025 + 0.5) / 4 - 0.5)


@needs_sdk
def test_real_extrinsics_and_mono_inversion() -> None:
    lms = read_extrinsics(SDK / "extrinsics", "lms_front")
    assert np.allclose(lms[:3, 3], [1.7589, 0.2268, 1.0411])
    assert xyzrpy_from_se3(lms)[4] == pytest.approx(-1.4572)
    stored = read_extrinsics(SDK / "extrinsics", "mono_left")
    assert np.allclose(sensor_in_vehicle(SDK / "extrinsics", "mono_left") @ stored, np.eye(4))
    assert np.allclose(read_extrinsics(SDK / "extrinsics", "stereo"), np.eye(4))


def test_bad_calibration_files(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="SDK checkout"):
        read_extrinsics(tmp_path, "lms_front")
    (tmp_path / "lms_front.txt").write_text("1 2 3 oops 5 6\n")
    with pytest.raises(RobotCarFormatError, match=r"lms_front\.txt:1"):
        read_extrinsics(tmp_path, "lms_front")
    (tmp_path / "cam.txt").write_text("1 2 3 4\n")
    with pytest.raises(RobotCarFormatError, match="4x4"):
        read_camera_model(tmp_path, "cam")


def test_se3_and_quaternions_round_trip() -> None:
    transform = se3_from_xyzrpy(1.0, -2.0, 0.5, 0.1, -0.2, 2.9)
    assert np.allclose(xyzrpy_from_se3(transform), (1.0, -2.0, 0.5, 0.1, -0.2, 2.9))
    quat = rotation_to_quaternion(transform[:3, :3])
    assert np.allclose(quaternion_to_rotation(quat), transform[:3, :3])
    q0 = rotation_to_quaternion(se3_from_xyzrpy(0, 0, 0, 0, 0, 0.0)[:3, :3])
    q1 = -rotation_to_quaternion(se3_from_xyzrpy(0, 0, 0, 0, 0, 1.0)[:3, :3])  # same rotation, other sign
    half = quaternion_slerp(q0, q1, 0.5)
    assert xyzrpy_from_se3(np.block([[quaternion_to_rotation(half), np.zeros((3, 1))], [0, 0, 0, 1]]))[
        5
    ] == pytest.approx(0.5)


@dataclass(frozen=True)
class Example:
    name: str = "a"
    size: tuple[int, int] = (1, 2)
    rate: float = 1.0


def test_yaml_configs(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("example:\n  name: b\n  size: [3, 4]\n")
    config = load_yaml(Example, path, key="example")
    assert config == Example(name="b", size=(3, 4))
    assert to_dict(config) == {"name": "b", "size": [3, 4], "rate": 1.0}
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Example, {"nmae": "x"})
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(Example, tmp_path / "missing.yaml")
    path.write_text("example: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(Example, path)


@dataclass(frozen=True)
class Nested:
    example: Example = Example()
    topic: str | None = None
    count: int = 3
    enabled: bool = False
    names: tuple[str, ...] = ()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": 2.5}, r"Nested\.count must be an integer, got 2\.5"),
        ({"count": "3"}, r"Nested\.count must be an integer, got '3'"),
        ({"count": True}, r"Nested\.count must be an integer, got True"),
        ({"enabled": "yes"}, r"Nested\.enabled must be true or false"),
        ({"topic": 5}, r"Nested\.topic must be a string or null, got 5"),
        ({"names": "abc"}, r"Nested\.names must be a list"),
        ({"names": ["a", 1]}, r"Nested\.names\[1\] must be a string"),
        ({"example": {"rate": "fast"}}, r"example: Example\.rate must be a number, got 'fast'"),
        ({"example": {"size": [1, 2, 3]}}, r"Example\.size must be a list of 2 values"),
    ],
)
def test_config_types_are_checked_and_the_key_named(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Nested, values, source="c.yaml")


def test_config_types_accept_what_yaml_writes() -> None:
    config = from_dict(Nested, {"example": {"rate": 2, "size": [5, 6]}, "topic": None, "names": ["x"]})
    assert config.example.rate == 2.0 and isinstance(config.example.rate, float)
    assert config.example.size == (5, 6) and config.names == ("x",) and config.topic is None


def test_every_config_of_the_package_loads_its_own_defaults() -> None:
    """Each config's defaults written out and read back give the same config (types agree)."""
    from vbl_ros.localizer import LocalizerConfig
    from vbl_ros.mapping import MapConfig
    from vbl_ros.model.net import ModelConfig
    from vbl_ros.robotcar.convert import ConvertConfig
    from vbl_ros.sim.simulate import SimConfig

    for cls in (MapConfig, LocalizerConfig, ModelConfig, ConvertConfig, SimConfig):
        default = cls()
        assert from_dict(cls, to_dict(default)) == default, cls.__name__
