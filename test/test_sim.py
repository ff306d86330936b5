"""The simulated RobotCar: files in the RobotCar format, geometry consistent, deterministic by seed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

import vbl_ros.sim  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is imported)
from vbl_ros.errors import ConfigError, OutputExistsError
from vbl_ros.geometry.rotations import se3_from_xyzrpy
from vbl_ros.geometry.utm import latlon_to_utm, utm_to_latlon
from vbl_ros.images import demosaic
from vbl_ros.robotcar.calibration import read_camera_model, read_extrinsics, sensor_in_vehicle

pytest.importorskip("mujoco")

from vbl_ros.sim.calibration_data import EXTRINSICS_TEXT, STEREO_NARROW_LEFT_TEXT, stereo_narrow_left
from vbl_ros.sim.simulate import SimConfig, camera_model, simulate

SHARED_SDK = Path("/work/shared/robotcar")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("sim")
    config = dataclasses.replace(SimConfig.preset("tiny"), save_depth=True)
    return out, simulate(out, config)


# ----------------------------------------------------------------------------- calibration, geo


@pytest.mark.skipif(not SHARED_SDK.is_dir(), reason="RobotCar SDK calibration files not available")
def test_embedded_calibration_equals_sdk_files() -> None:
    for name, text in EXTRINSICS_TEXT.items():
        assert (SHARED_SDK / "extrinsics" / f"{name}.txt").read_text() == text
    assert set(EXTRINSICS_TEXT) == {p.stem for p in (SHARED_SDK / "extrinsics").glob("*.txt")}
    assert (SHARED_SDK / "models" / "stereo_narrow_left.txt").read_text() == STEREO_NARROW_LEFT_TEXT


def test_utm_known_points() -> None:
    # On the central meridian the northing is k0 times the meridian arc: WGS84's quarter meridian
    # is 10 001 965.729 m and the arc to 45 degrees 4 984 944.378 m.
    _, northing, _ = latlon_to_utm(90.0, -3.0, "30U")
    assert northing == pytest.approx(0.9996 * 10_001_965.729, abs=0.01)
    easting, northing, _ = latlon_to_utm(45.0, -3.0, "30U")
    assert easting == pytest.approx(500000.0, abs=1e-6)
    assert northing == pytest.approx(0.9996 * 4_984_944.378, abs=0.01)
    # Oxford lies in 30U near E 620 km, N 5735 km; the inverse recovers the point to micrometres.
    easting, northing, zone = latlon_to_utm(51.752, -1.2577)
    assert zone == "30U"
    assert 6.19e5 < easting < 6.22e5 and 5.73e6 < northing < 5.74e6
    lat, lon = utm_to_latlon(easting, northing, zone)
    assert lat == pytest.approx(51.752, abs=1e-9) and lon == pytest.approx(-1.2577, abs=1e-9)


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ConfigError):
        SimConfig(width=320, height=200)
    with pytest.raises(ConfigError):
        SimConfig(conditions=("hail",))
    with pytest.raises(ConfigError):
        SimConfig.preset("huge")


# ----------------------------------------------------------------------------- files


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def test_tiny_writes_robotcar_format(tiny: tuple[Path, list[Path]]) -> None:
    out, folders = tiny
    assert len(folders) == 2
    config = SimConfig.preset("tiny")
    for folder in folders:
        assert len(folder.name) == 19 and folder.name[4] == "-"
        stamps = [line.split() for line in (folder / "stereo.timestamps").read_text().splitlines()]
        assert len(stamps) >= 15 and all(len(s) == 2 and s[1] == "1" for s in stamps)
        times = [int(s[0]) for s in stamps]
        assert times == sorted(times)
        for us in times:
            raw = cv2.imread(str(folder / "stereo" / "centre" / f"{us}.png"), cv2.IMREAD_UNCHANGED)
            assert raw.dtype == np.uint8 and raw.shape == (config.height, config.width)
        header, rows = _csv(folder / "gps" / "ins.csv")
        assert header == [
            "timestamp", "ins_status", "latitude", "longitude", "altitude", "northing", "easting", "down",
            "utm_zone", "velocity_north", "velocity_east", "velocity_down", "roll", "pitch", "yaw",
        ]  # fmt: skip
        assert all(len(r) == 15 and r[1] == "INS_SOLUTION_GOOD" and r[8] == "30U" for r in rows)
        ins_t = np.array([int(r[0]) for r in rows])
        assert np.allclose(np.diff(ins_t), 20_000, atol=1)  # 50 Hz
        assert ins_t[0] <= times[0] and ins_t[-1] >= times[-1]
        north = np.array([float(r[5]) for r in rows])
        east = np.array([float(r[6]) for r in rows])
        assert 5.73e6 < north.min() and north.max() < 5.74e6 and 6.1e5 < east.min() and east.max() < 6.3e5
        lat, lon = utm_to_latlon(east, north, "30U")
        assert np.allclose(lat, [float(r[2]) for r in rows], atol=1e-8)
        assert np.allclose(lon, [float(r[3]) for r in rows], atol=1e-8)
        header, rows = _csv(folder / "gps" / "gps.csv")
        assert len(header) == 12 and all(len(r) == 12 for r in rows)
        gps_north = np.array([float(r[8]) for r in rows])
        assert 0.1 < np.abs(gps_north - np.interp([int(r[0]) for r in rows], ins_t, north)).mean() < 10.0
        header, rows = _csv(folder / "vo" / "vo.csv")
        assert header == ["source_timestamp", "destination_timestamp", "x", "y", "z", "roll", "pitch", "yaw"]
        assert len(rows) == len(times) - 1
        assert [int(r[0]) for r in rows] == times[1:] and [int(r[1]) for r in rows] == times[:-1]
        assert all(float(r[2]) > 0.5 for r in rows)  # driving forwards (x) in the vehicle frame
        lms = [int(line.split()[0]) for line in (folder / "lms_front.timestamps").read_text().splitlines()]
        assert len(lms) > 100
        scan = np.fromfile(folder / "lms_front" / f"{lms[len(lms) // 2]}.bin", dtype="<f8").reshape(-1, 3)
        assert 100 < len(scan) <= 541 and np.all((scan[:, 2] >= 0) & (scan[:, 2] <= 1))
        assert np.all(np.hypot(scan[:, 0], scan[:, 1]) <= 50.0)
        assert (out / "sdk" / "tags" / f"{folder.name}.yaml").read_text().startswith("- ")
        assert len(list((folder / "sim_depth").glob("*.npy"))) == len(times)


def test_sdk_camera_model_scaled_and_extrinsics_copied(tiny: tuple[Path, list[Path]]) -> None:
    out, _ = tiny
    config = SimConfig.preset("tiny")
    model = read_camera_model(out / "sdk" / "models", "stereo_narrow_left")
    real = stereo_narrow_left()
    factor = config.width / 1280
    assert model.fx == pytest.approx(real.fx * factor, abs=1e-5)
    assert model.cx == pytest.approx((real.cx + 0.5) * factor - 0.5, abs=1e-5)
    assert model.cy == pytest.approx((real.cy + 0.5) * factor - 0.5, abs=1e-5)
    assert np.allclose(model.g_camera_image, real.g_camera_image)
    for sensor in ("stereo", "ins", "lms_front"):
        assert (out / "sdk" / "extrinsics" / f"{sensor}.txt").read_text() == EXTRINSICS_TEXT[sensor]
    assert np.allclose(read_extrinsics(out / "sdk" / "extrinsics", "stereo"), np.eye(4))


def test_refuses_to_overwrite(tiny: tuple[Path, list[Path]]) -> None:
    out, _ = tiny
    with pytest.raises(OutputExistsError):
        simulate(out, SimConfig.preset("tiny"))


def test_deterministic_by_seed(tiny: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, first = tiny
    config = dataclasses.replace(SimConfig.preset("tiny"), conditions=("overcast",))
    (again,) = simulate(tmp_path, config)
    assert again.name == first[0].name
    for name in ("gps/ins.csv", "gps/gps.csv", "vo/vo.csv", "stereo.timestamps", "lms_front.timestamps"):
        assert (again / name).read_bytes() == (first[0] / name).read_bytes()
    for png in sorted((first[0] / "stereo" / "centre").glob("*.png")):
        a = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(int)
        b = cv2.imread(str(again / "stereo" / "centre" / png.name), cv2.IMREAD_UNCHANGED).astype(int)
        # EGL software rendering has been bit-exact here; allow a rare one-level difference.
        assert np.abs(a - b).max() <= 1
    for scan in sorted((first[0] / "lms_front").glob("*.bin"))[:50]:
        assert scan.read_bytes() == (again / "lms_front" / scan.name).read_bytes()
    other = dataclasses.replace(config, seed=1)
    (different,) = simulate(tmp_path / "other", other)
    assert (different / "gps" / "ins.csv").read_bytes() != (first[0] / "gps" / "ins.csv").read_bytes()


# ----------------------------------------------------------------------------- geometry


def _ins_pose_interpolator(folder: Path):
    """``T_ned_vehicle(t_us)`` from ins.csv and the real INS extrinsics (plain linear interpolation)."""
    _, rows = _csv(folder / "gps" / "ins.csv")
    t = np.array([int(r[0]) for r in rows], dtype=float)
    values = np.array([[float(r[i]) for i in (5, 6, 7, 12, 13, 14)] for r in rows])
    values[:, 5] = np.unwrap(values[:, 5])
    t_vehicle_ins = sensor_in_vehicle(SHARED_SDK / "extrinsics", "ins") if SHARED_SDK.is_dir() else None
    if t_vehicle_ins is None:
        from vbl_ros.sim.calibration_data import extrinsics

        t_vehicle_ins = extrinsics("ins")

    def pose(us: int) -> np.ndarray:
        v = [np.interp(us, t, values[:, i]) for i in range(6)]
        return se3_from_xyzrpy(*v) @ np.linalg.inv(t_vehicle_ins)

    return pose


def test_lidar_depth_agrees_with_rendered_depth(tiny: tuple[Path, list[Path]]) -> None:
    out, folders = tiny
    folder = folders[0]
    model = read_camera_model(out / "sdk" / "models", "stereo_narrow_left")
    t_vehicle_lms = sensor_in_vehicle(out / "sdk" / "extrinsics", "lms_front")
    pose = _ins_pose_interpolator(folder)
    lms = [int(line.split()[0]) for line in (folder / "lms_front.timestamps").read_text().splitlines()]
    cloud = []
    for us in lms:
        scan = np.fromfile(folder / "lms_front" / f"{us}.bin", dtype="<f8").reshape(-1, 3)
        local = np.stack([scan[:, 0], scan[:, 1], np.zeros(len(scan)), np.ones(len(scan))])
        cloud.append(pose(us) @ t_vehicle_lms @ local)
    cloud = np.concatenate(cloud, axis=1)
    frames = [int(line.split()[0]) for line in (folder / "stereo.timestamps").read_text().splitlines()]
    errors = []
    for us in frames[2:-8:3]:
        depth = np.load(folder / "sim_depth" / f"{us}.npy")
        h, w = depth.shape
        cam = np.linalg.inv(pose(us) @ model.g_camera_image) @ cloud
        z = cam[2]
        keep = (z > 0.5) & (z < 40.0)
        u = np.round(model.fx * cam[0, keep] / z[keep] + model.cx).astype(int)
        v = np.round(model.fy * cam[1, keep] / z[keep] + model.cy).astype(int)
        zk = z[keep]
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        u, v, zk = u[inside], v[inside], zk[inside]
        zbuf = np.full((h, w), np.inf)
        np.minimum.at(zbuf, (v, u), zk)
        valid = np.isfinite(zbuf) & (depth > 0)
        errors.append(np.abs(zbuf[valid] - depth[valid]) / depth[valid])
    errors = np.concatenate(errors)
    assert len(errors) > 500
    assert np.median(errors) < 0.05


def test_rendered_projection_matches_pinhole_model() -> None:
    """A small sphere lands where the written pinhole model (with its off-centre cx, cy) says."""
    from vbl_ros.sim.render import CONDITIONS, SceneRenderer
    from vbl_ros.sim.route import Route
    from vbl_ros.sim.scene import town_spec
    from vbl_ros.sim.town import PropBox, Town

    config = SimConfig.preset("tiny")
    cam = camera_model(dataclasses.replace(config, width=320, height=240))
    route = Route(
        grid_x=np.array([0.0, 50.0]), grid_y=np.array([0.0, 50.0]), nodes=np.array([[0, 0], [1, 0]])
    )
    target = np.array([10.0, 1.5, 3.0])  # world ENU: ahead (x), left (y), up
    ball = PropBox("ellipsoid", "sign", (0.15, 0.15, 0.15), tuple(target), 0.0, (1, 0, 0, 1))
    town = Town(route=route, roads=[], pavements=[], buildings=[], props=[ball], street_lights=np.zeros((0, 3)),
                parking=np.zeros((0, 3)), sign_textures=[], extent=100.0)  # fmt: skip
    spec = town_spec(town, [], CONDITIONS["overcast"], width=320, height=240,
                     camera=(cam.fx, cam.fy, cam.cx, cam.cy), g_camera_image=cam.g_camera_image)  # fmt: skip
    model = spec.compile()
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # vehicle x = east, y right = south, z down
    pose[:3, 3] = (0.0, 0.0, 1.75)
    with SceneRenderer(model, 320, 240, CONDITIONS["overcast"]) as renderer:
        _, depth = renderer.render(pose, depth=True)
    in_optical = np.linalg.inv(pose @ cam.g_camera_image) @ np.append(target, 1.0)
    near = np.abs(depth - in_optical[2]) < 0.2
    near[int(cam.cy) :] = False  # the ground at that distance is below the horizon; the ball above
    rows, cols = np.nonzero(near)
    u = cam.fx * in_optical[0] / in_optical[2] + cam.cx
    v = cam.fy * in_optical[1] / in_optical[2] + cam.cy
    assert cols.mean() == pytest.approx(u, abs=0.3)
    assert rows.mean() == pytest.approx(v, abs=0.3)
    assert depth[rows, cols].min() == pytest.approx(in_optical[2] - 0.15, abs=0.03)


def test_lidar_hits_a_wall_at_the_right_range() -> None:
    import mujoco

    from vbl_ros.sim.lidar import LMS_ANGLES, LidarScanner

    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="bldg_wall", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.1, 20.0, 10.0],
                            pos=[0.0, 7.1, 5.0], quat=[np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # fmt: skip
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    scanner = LidarScanner(model, data, np.array([0.5]))
    pose = np.eye(4)
    pose[:3, 3] = (0.0, 0.0, 1.0)  # scan plane horizontal; the wall's face is the plane y = 7
    scan = scanner.scan(pose)
    assert len(scan) > 100
    assert np.allclose(scan[:, 1], 7.0, atol=1e-6)
    straight = scan[np.argmin(np.abs(scan[:, 0]))]
    assert straight[1] == pytest.approx(7.0) and abs(straight[0]) < 0.1
    assert len(LMS_ANGLES) == 541 and np.degrees(LMS_ANGLES[1] - LMS_ANGLES[0]) == pytest.approx(0.5)


def test_night_darker_than_overcast(tiny: tuple[Path, list[Path]]) -> None:
    _, folders = tiny
    means = []
    for folder in folders:  # tiny: overcast, then night
        images = sorted((folder / "stereo" / "centre").glob("*.png"))
        means.append(
            np.mean([demosaic(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), "gbrg").mean() for p in images])
        )
    assert means[1] < 0.6 * means[0]
