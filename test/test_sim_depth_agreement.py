"""The converter's LIDAR depth maps agree with the simulator's rendered depth (simulate tiny -> convert)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vbl_ros.sim  # noqa: F401  (selects MuJoCo's offscreen EGL backend before mujoco is imported)

pytest.importorskip("mujoco")

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from vbl_ros.robotcar.convert import ConvertConfig, convert_robotcar


@pytest.mark.slow
def test_lidar_depth_matches_rendered_depth(tmp_path: Path) -> None:
    import dataclasses

    from vbl_ros.sim.simulate import SimConfig, simulate

    config = dataclasses.replace(SimConfig.preset("tiny"), save_depth=True, conditions=("overcast",))
    (traversal,) = simulate(tmp_path / "sim", config)
    sdk = tmp_path / "sim" / "sdk"
    bag = convert_robotcar(
        traversal,
        tmp_path / "bag",
        extrinsics_dir=sdk / "extrinsics",
        models_dir=sdk / "models",
        config=ConvertConfig(progress=False, lidar_points=False, gps=False),
    )
    errors: list[np.ndarray] = []
    compared = 0
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        connections = [c for c in reader.connections if c.topic == "/stereo/centre/depth"]
        for connection, timestamp, raw in reader.messages(connections=connections):
            message = reader.deserialize(raw, connection.msgtype)
            lidar = np.frombuffer(message.data, np.float32).reshape(message.height, message.width)
            rendered = np.load(traversal / "sim_depth" / f"{timestamp // 1000}.npy")
            assert rendered.shape == lidar.shape
            both = (lidar > 0) & (rendered > 0)
            compared += 1
            errors.append(np.abs(lidar[both] - rendered[both]) / rendered[both])
    relative = np.concatenate(errors)
    print(f"sim agreement: {compared} images, {relative.size} pixels, median {np.median(relative):.4f}")
    assert compared >= 5
    assert relative.size > 500, f"only {relative.size} pixels have both depths"
    assert np.median(relative) < 0.05, f"median relative depth error {np.median(relative):.3f}"
