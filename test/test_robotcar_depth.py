"""LIDAR depth and reflectance maps: projection on known geometry, z-buffer, sliding window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vbl_ros.errors import ConfigError
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.robotcar.calibration import CameraModel
from vbl_ros.robotcar.depth import DepthProjector, LidarWindow, check_model_fits, project_points
from vbl_ros.robotcar.timestamps import Timestamps

G_CAMERA_IMAGE = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
MODEL = CameraModel("test", fx=100.0, fy=100.0, cx=79.5, cy=59.5, g_camera_image=G_CAMERA_IMAGE)


def _wall(distance: float, reflectance: float, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.linspace(-3, 3, n), np.linspace(-2, 2, n))
    points = np.stack([x.ravel(), y.ravel(), np.full(x.size, distance)], axis=1)
    return points, np.full(x.size, reflectance)


def test_a_wall_at_known_distance_gives_that_depth() -> None:
    points, reflectance = _wall(8.0, 42.0)
    maps = project_points(points, reflectance, MODEL, 160, 120)
    assert maps.depth.dtype == np.float32 and maps.depth.shape == (120, 160)
    valid = maps.valid
    assert valid[40:80, 45:115].all() and valid.sum() < 80 * 55
    np.testing.assert_allclose(maps.depth[valid], 8.0)
    np.testing.assert_allclose(maps.reflectance[valid], 42.0)
    assert (maps.reflectance[~valid] == 0).all()
    # the wall spans x in [-3, 3] m at 8 m: u in [79.5 - 37.5, 79.5 + 37.5]
    columns = np.flatnonzero(valid.any(axis=0))
    assert columns.min() == 42 and columns.max() == 117


def test_zbuffer_keeps_the_nearest_point_and_its_reflectance() -> None:
    far, far_r = _wall(20.0, 1.0)
    near, near_r = _wall(5.0, 2.0, n=50)
    points = np.concatenate([near, far])  # near first and last: order must not matter
    reflectance = np.concatenate([near_r, far_r])
    for order in (slice(None), slice(None, None, -1)):
        maps = project_points(points[order], reflectance[order], MODEL, 160, 120)
        near_pixels = maps.depth == np.float32(5.0)
        assert near_pixels.sum() > 100
        np.testing.assert_array_equal(maps.reflectance[near_pixels], 2.0)
        assert set(np.unique(maps.depth[maps.valid]).tolist()) == {5.0, 20.0}


def test_points_behind_outside_or_too_far_are_dropped() -> None:
    points = np.array([[0, 0, -5.0], [0, 0, 150.0], [100, 0, 1.0], [0, 0, 0.0], [0, 0, 99.0]])
    maps = project_points(points, np.ones(5), MODEL, 160, 120, max_depth=100.0)
    assert maps.valid.sum() == 1
    assert maps.depth[60, 80] == np.float32(99.0)  # cx 79.5 -> pixel round(79.5) = 80
    empty = project_points(np.zeros((0, 3)), np.zeros(0), MODEL, 160, 120)
    assert not empty.valid.any()


def test_principal_point_must_lie_inside_the_image() -> None:
    check_model_fits(MODEL, 160, 120)
    with pytest.raises(ConfigError, match="principal point"):
        check_model_fits(MODEL, 64, 48)


def _straight_drive(times_us: np.ndarray, speed: float) -> Trajectory:
    """INS poses (here T_world_vehicle, extrinsics identity) driving north at ``speed``."""
    poses = np.tile(np.eye(4), (times_us.size, 1, 1))
    poses[:, 0, 3] = speed * (times_us - times_us[0]) / 1e6
    return Trajectory.from_poses(times_us * 1000, poses)


def test_window_slides_and_projects_future_scans(tmp_path: Path) -> None:
    """A LIDAR looking straight ahead sees a wall 30 m north of the start; the camera sees it later."""
    scan_times = np.arange(0, 5_000_001, 100_000, dtype=np.int64) + 1_000_000_000
    folder = tmp_path / "lms_front"
    folder.mkdir()
    for t in scan_times:
        travelled = 2.0 * (t - scan_times[0]) / 1e6
        # points of the wall x = 30 m (world), seen from the vehicle at `travelled`
        ys = np.linspace(-2, 2, 21)
        scan = np.stack([np.full(ys.size, 30.0 - travelled), ys, np.full(ys.size, 7.0)], axis=1)
        (folder / f"{t}.bin").write_bytes(scan.astype("<f8").tobytes())
    (folder / f"{scan_times[3]}.bin").unlink()  # a missing file is skipped and counted
    poses = _straight_drive(np.arange(0, 6_000_001, 500_000, dtype=np.int64) + 1_000_000_000, 2.0)
    stamps = Timestamps(tmp_path / "lms_front.timestamps", scan_times, np.ones(scan_times.size))
    window = LidarWindow(folder, stamps, poses, np.eye(4), before_us=1_000_000, after_us=2_000_000)
    projector = DepthProjector(window, poses, G_CAMERA_IMAGE, MODEL, 160, 120)

    maps = projector.render(int(scan_times[0]))
    assert maps is not None
    np.testing.assert_allclose(maps.depth[maps.valid], 30.0, rtol=1e-6)
    np.testing.assert_allclose(maps.reflectance[maps.valid], 7.0)
    assert len(window) == 20  # 21 scans in [t0, t0 + 2 s], one missing
    assert window.missing == 1

    later = projector.render(int(scan_times[0]) + 2_500_000)  # the car has moved 5 m
    assert later is not None
    np.testing.assert_allclose(later.depth[later.valid], 25.0, rtol=1e-6)
    assert len(window) == 31  # [t0 + 1.5 s, t0 + 4.5 s]; older scans are dropped
    with pytest.raises(ValueError, match="back in time"):
        window.points(int(scan_times[0]))


def test_images_and_scans_outside_the_poses(tmp_path: Path) -> None:
    folder = tmp_path / "lms_front"
    folder.mkdir()
    scan_times = np.array([10, 20, 30, 40], dtype=np.int64) * 1_000_000
    for t in scan_times:
        (folder / f"{t}.bin").write_bytes(np.array([[5.0, 0.0, 1.0]]).astype("<f8").tobytes())
    poses = _straight_drive(np.array([15, 35], dtype=np.int64) * 1_000_000, 0.0)
    stamps = Timestamps(tmp_path / "t", scan_times, np.ones(4))
    window = LidarWindow(folder, stamps, poses, np.eye(4), before_us=100_000_000, after_us=100_000_000)
    projector = DepthProjector(window, poses, G_CAMERA_IMAGE, MODEL, 160, 120)
    assert projector.render(12_000_000) is None  # the image itself has no pose
    maps = projector.render(20_000_000)
    assert maps is not None and maps.valid.sum() == 1
    assert window.without_pose == 2  # the scans at 10 s and 40 s
