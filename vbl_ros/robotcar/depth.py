"""Depth and reflectance maps from the front LIDAR, aligned with a camera image.

The method of the RobotCar SDK's ``project_laser_into_camera`` and of Piasco et al. (ICRA 2019):

1. For an image at time ``t``, take the ``lms_front`` scans in ``[t - before, t + after]``. The
   pushbroom LIDAR sweeps the road a few metres ahead of the car, so what a forward camera sees at
   ``t`` is swept only later: forward cameras need future scans (default t-10 s .. t+50 s, as Piasco
   et al. used for the stereo centre camera; a rear camera wants t-50 s .. t+10 s).
2. Place each scan in the local world frame with the INS pose interpolated at the scan's time and
   the LIDAR's extrinsics; move the cloud into the camera's optical frame at ``t``.
3. Project with the pinhole model, keep points in front of the camera, inside the image and not
   beyond ``max_depth`` (100 m); keep the nearest point per pixel (z-buffer) for depth and that
   same point's reflectance; 0 where there is no return.

Not done (documented choices): hidden-point removal and inpainting/densification (Piasco et al.
did both); the maps stay sparse. Lens distortion is ignored: the stereo images are nearly
rectified; fisheye mono images would need the SDK's undistortion LUT first.

Memory is bounded by the window: :class:`LidarWindow` keeps only the scans inside it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbl_ros.errors import ConfigError, MissingDataError
from vbl_ros.geometry.trajectory import Trajectory
from vbl_ros.robotcar.calibration import CameraModel
from vbl_ros.robotcar.lidar import read_scan, scan_points
from vbl_ros.robotcar.timestamps import Timestamps

__all__ = ["DepthMaps", "LidarWindow", "DepthProjector", "project_points", "check_model_fits"]


@dataclass(frozen=True)
class DepthMaps:
    """A depth map (metres along the optical axis) and a reflectance map, ``(H, W)`` float32, 0 = none."""

    depth: np.ndarray
    reflectance: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.depth > 0


def check_model_fits(model: CameraModel, width: int, height: int, *, source: str = "camera model") -> None:
    """Refuse a camera model whose principal point lies outside a ``width x height`` image."""
    if not (0 <= model.cx < width and 0 <= model.cy < height):
        raise ConfigError(
            f"{source}: principal point ({model.cx:.1f}, {model.cy:.1f}) of model {model.name} lies outside "
            f"the {width}x{height} images; use the models/ folder that matches these images "
            "(a simulated traversal has its own sdk/models)"
        )


def project_points(
    points_optical: np.ndarray,
    reflectance: np.ndarray,
    model: CameraModel,
    width: int,
    height: int,
    *,
    max_depth: float = 100.0,
) -> DepthMaps:
    """Z-buffered pinhole projection of ``(N, 3)`` points in the optical frame (z forward).

    ``u = fx * x / z + cx`` and ``v = fy * y / z + cy`` in 0-based pixel-centre coordinates; a point
    lands in pixel ``(round(v), round(u))``. The nearest point per pixel wins.
    """
    depth = np.zeros((height, width), dtype=np.float32)
    refl = np.zeros((height, width), dtype=np.float32)
    pts = np.asarray(points_optical, dtype=float).reshape(-1, 3)
    r = np.asarray(reflectance, dtype=float).reshape(-1)
    z = pts[:, 2]
    keep = (z > 1e-6) & (z <= max_depth)
    pts, r, z = pts[keep], r[keep], z[keep]
    u = np.floor(model.fx * pts[:, 0] / z + model.cx + 0.5)
    v = np.floor(model.fy * pts[:, 1] / z + model.cy + 0.5)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    if not inside.any():
        return DepthMaps(depth, refl)
    pixel = v[inside].astype(np.int64) * width + u[inside].astype(np.int64)
    z, r = z[inside], r[inside]
    order = np.lexsort((z, pixel))  # by pixel, then nearest first
    pixel, z, r = pixel[order], z[order], r[order]
    first = np.ones(pixel.size, dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    depth.reshape(-1)[pixel[first]] = z[first]
    refl.reshape(-1)[pixel[first]] = r[first]
    return DepthMaps(depth, refl)


class LidarWindow:
    """The scans of one LIDAR inside a sliding time window, placed in the world frame.

    Requests must come in non-decreasing time order; scans are read from disk once when they enter
    the window and dropped when they leave it, so memory stays bounded whatever the traversal's length.

    Args:
        folder: the scan folder (``<traversal>/lms_front``).
        timestamps: the LIDAR's timestamps.
        poses: ``T_world_ins`` (stamps in ns = RobotCar microseconds x 1000).
        ins_from_sensor: ``T_ins_sensor`` (4x4): ``inv(T_vehicle_ins) @ T_vehicle_lidar``.
        before_us, after_us: the window ``[t - before_us, t + after_us]``.
    """

    def __init__(
        self,
        folder: Path,
        timestamps: Timestamps,
        poses: Trajectory,
        ins_from_sensor: np.ndarray,
        *,
        before_us: int,
        after_us: int,
    ) -> None:
        if before_us < 0 or after_us < 0:
            raise ConfigError(f"the LIDAR window must not be negative, got -{before_us} .. +{after_us} us")
        self.folder = Path(folder)
        self.times_us = timestamps.times_us
        self.poses = poses
        self.ins_from_sensor = np.asarray(ins_from_sensor, dtype=float)
        self.before_us = int(before_us)
        self.after_us = int(after_us)
        self._next = 0  # index of the next scan to load
        self._scans: deque[tuple[int, np.ndarray, np.ndarray]] = deque()  # (time, xyz (3,N), refl (N,))
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self._last_request: int | None = None
        self.missing = 0  # scan files absent on disk
        self.without_pose = 0  # scans outside the INS range

    def __len__(self) -> int:
        return len(self._scans)

    def _load(self, end_us: int, start_us: int) -> None:
        stop = int(np.searchsorted(self.times_us, end_us, side="right"))
        if stop <= self._next:
            return
        times = self.times_us[self._next : stop]
        self._next = stop
        times = times[times >= start_us]
        if times.size == 0:
            return
        covered = self.poses.contains(times * 1000)
        self.without_pose += int((~covered).sum())
        times = times[covered]
        if times.size == 0:
            return
        world_ins = self.poses.poses(times * 1000)
        for time_us, pose in zip(times, world_ins, strict=True):
            try:
                scan = read_scan(self.folder / f"{int(time_us)}.bin")
            except MissingDataError:
                self.missing += 1
                continue
            points, refl = scan_points(scan)
            world = (pose @ self.ins_from_sensor @ points)[:3]
            self._scans.append((int(time_us), world, refl.astype(np.float32)))
            self._cache = None

    def points(self, t_us: int) -> tuple[np.ndarray, np.ndarray]:
        """World ``(3, N)`` points and ``(N,)`` reflectance of the scans in the window around ``t_us``."""
        t_us = int(t_us)
        if self._last_request is not None and t_us < self._last_request:
            raise ValueError(f"LidarWindow requests must not go back in time ({t_us} < {self._last_request})")
        self._last_request = t_us
        start, end = t_us - self.before_us, t_us + self.after_us
        while self._scans and self._scans[0][0] < start:
            self._scans.popleft()
            self._cache = None
        self._load(end, start)
        if not self._scans:
            return np.zeros((3, 0)), np.zeros(0, dtype=np.float32)
        if self._cache is None:
            self._cache = (
                np.concatenate([s[1] for s in self._scans], axis=1),
                np.concatenate([s[2] for s in self._scans]),
            )
        return self._cache


class DepthProjector:
    """Depth and reflectance maps of one camera from a :class:`LidarWindow`.

    Args:
        window: the LIDAR window (owned by this projector: one per camera).
        poses: ``T_world_ins`` (stamps in ns = RobotCar microseconds x 1000).
        ins_from_optical: ``T_ins_optical`` = ``inv(T_vehicle_ins) @ T_vehicle_camera @ G_camera_image``.
        model: the camera's pinhole model.
        width, height: the image size.
        max_depth: points beyond this many metres are dropped.
    """

    def __init__(
        self,
        window: LidarWindow,
        poses: Trajectory,
        ins_from_optical: np.ndarray,
        model: CameraModel,
        width: int,
        height: int,
        *,
        max_depth: float = 100.0,
    ) -> None:
        check_model_fits(model, width, height)
        self.window = window
        self.poses = poses
        self.ins_from_optical = np.asarray(ins_from_optical, dtype=float)
        self.model = model
        self.width = int(width)
        self.height = int(height)
        self.max_depth = float(max_depth)

    def render(self, t_us: int) -> DepthMaps | None:
        """The maps of the image at ``t_us``, or None when ``t_us`` is outside the INS range."""
        world, refl = self.window.points(t_us)
        if not self.poses.contains(int(t_us) * 1000):
            return None
        world_optical = self.poses.poses(int(t_us) * 1000) @ self.ins_from_optical
        # optical = R^T (p - t); compute z first and transform only the points in front, within range
        rotation, origin = world_optical[:3, :3], world_optical[:3, 3]
        offset = rotation.T @ origin
        axis = rotation[:, 2]
        z = axis[0] * world[0] + axis[1] * world[1] + axis[2] * world[2] - offset[2]
        keep = np.flatnonzero((z > 1e-6) & (z <= self.max_depth))
        near = world[:, keep]
        optical = np.empty((keep.size, 3))
        for row in range(2):
            a = rotation[:, row]
            optical[:, row] = a[0] * near[0] + a[1] * near[1] + a[2] * near[2] - offset[row]
        optical[:, 2] = z[keep]
        return project_points(
            optical, refl[keep], self.model, self.width, self.height, max_depth=self.max_depth
        )
