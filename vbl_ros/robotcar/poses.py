"""Pose interpolation, visual-odometry chaining and the frame changes between RobotCar and ROS.

Frames:

- ``world``: local NED, the INS's north-east-down UTM coordinates minus an origin ``(N0, E0, D0)``.
- ``vehicle``: the stereo camera's x-forward, y-right, z-down frame.
- ``map`` (ROS, ENU): ``x = easting - E0``, ``y = northing - N0``, ``z = up - U0`` with ``U0 = -D0``.
- ``base_link`` (REP-103): the vehicle frame's origin, x forward, y left, z up.

:class:`PoseInterpolator` fixes the SDK's interpolation bugs: a real-valued fraction (not integer
division), the caller's list of times is never modified, and times outside the poses' range raise
:class:`~vbl_ros.errors.PoseRangeError` instead of giving garbage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vbl_ros.errors import PoseRangeError, RobotCarFormatError
from vbl_ros.robotcar.ins import InsData, VoData
from vbl_ros.robotcar.transforms import (
    euler_to_rotation,
    quaternion_slerp,
    quaternion_to_rotation,
    rotation_to_quaternion,
    se3_from_xyzrpy,
)

__all__ = [
    "NED_TO_ENU",
    "VEHICLE_TO_BASE_LINK",
    "PoseInterpolator",
    "chain_vo",
    "ins_world_poses",
    "map_from_world",
    "base_link_from_vehicle",
    "quaternions_from_rotations",
]

# Rotation taking NED coordinates to ENU coordinates (a proper rotation: det = +1).
NED_TO_ENU = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
# Rotation taking vehicle-frame (x fwd, y right, z down) coordinates to base_link (x fwd, y left, z up).
VEHICLE_TO_BASE_LINK = np.diag([1.0, -1.0, -1.0])


def _homogeneous(rotation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rotation
    return out


def map_from_world(world_pose: np.ndarray) -> np.ndarray:
    """Change the parent frame of 4x4 pose(s) ``T_world_x`` (local NED) to ``T_map_x`` (local ENU)."""
    return _homogeneous(NED_TO_ENU) @ world_pose


def base_link_from_vehicle(pose_vehicle: np.ndarray) -> np.ndarray:
    """``T_parent_base_link`` from ``T_parent_vehicle`` (4x4 or (N, 4, 4))."""
    return pose_vehicle @ _homogeneous(VEHICLE_TO_BASE_LINK.T)


def quaternions_from_rotations(rotations: np.ndarray) -> np.ndarray:
    """``(N, 4)`` quaternions ``(x, y, z, w)`` of ``(N, 3, 3)`` rotations."""
    return np.stack([rotation_to_quaternion(r) for r in np.asarray(rotations)])


class PoseInterpolator:
    """Interpolate 4x4 poses at arbitrary times: linear position, slerp orientation.

    Args:
        times_us: the poses' times in microseconds, strictly increasing (at least two).
        poses: ``(N, 4, 4)`` rigid transforms ``T_world_sensor``.
        source: a name for error messages (e.g. the ins.csv path).
    """

    def __init__(
        self, times_us: Sequence[int] | np.ndarray, poses: np.ndarray, *, source: str = "poses"
    ) -> None:
        times = np.array(times_us, dtype=np.int64)  # a copy: the caller's sequence is never touched
        poses = np.asarray(poses, dtype=float)
        if times.ndim != 1 or poses.shape != (times.size, 4, 4):
            raise ValueError(f"expected N times and (N, 4, 4) poses, got {times.shape} and {poses.shape}")
        if times.size < 2:
            raise PoseRangeError(f"{source}: at least two poses are needed to interpolate, got {times.size}")
        if np.any(np.diff(times) <= 0):
            raise PoseRangeError(f"{source}: pose times must be strictly increasing")
        self.source = source
        self.times_us = times
        self.positions = poses[:, :3, 3].copy()
        self.quaternions = quaternions_from_rotations(poses[:, :3, :3])

    @property
    def start_us(self) -> int:
        return int(self.times_us[0])

    @property
    def end_us(self) -> int:
        return int(self.times_us[-1])

    def covers(self, times_us: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boolean mask of the times inside ``[start_us, end_us]``."""
        t = np.asarray(times_us, dtype=np.int64)
        return (t >= self.start_us) & (t <= self.end_us)

    def interpolate(self, times_us: Sequence[int] | np.ndarray | int) -> np.ndarray:
        """``(M, 4, 4)`` poses at the given times (a scalar time gives one ``(4, 4)`` pose).

        Raises:
            PoseRangeError: a time lies before the first or after the last pose.
        """
        scalar = np.ndim(times_us) == 0
        t = np.atleast_1d(np.asarray(times_us, dtype=np.int64))
        outside = ~self.covers(t)
        if outside.any():
            bad = int(t[np.argmax(outside)])
            raise PoseRangeError(
                f"{self.source}: time {bad} us is outside the poses' range {self.start_us}..{self.end_us} us; "
                "only convert data recorded while the INS was running"
            )
        upper = np.searchsorted(self.times_us, t, side="left")
        upper = np.clip(upper, 1, self.times_us.size - 1)
        lower = upper - 1
        t0 = self.times_us[lower]
        t1 = self.times_us[upper]
        fraction = (t - t0).astype(float) / (t1 - t0).astype(float)  # real-valued, never snapped
        positions = self.positions[lower] + fraction[:, None] * (
            self.positions[upper] - self.positions[lower]
        )
        quats = quaternion_slerp(self.quaternions[lower], self.quaternions[upper], fraction)
        out = np.tile(np.eye(4), (t.size, 1, 1))
        out[:, :3, :3] = quaternion_to_rotation(quats)
        out[:, :3, 3] = positions
        return out[0] if scalar else out


def ins_world_poses(ins: InsData, origin_ned: tuple[float, float, float]) -> np.ndarray:
    """``(N, 4, 4)`` poses ``T_world_ins`` of the INS rows in the local NED frame at ``origin_ned``."""
    n0, e0, d0 = origin_ned
    poses = np.tile(np.eye(4), (len(ins), 1, 1))
    for i, (roll, pitch, yaw) in enumerate(ins.rpy):
        poses[i, :3, :3] = euler_to_rotation(roll, pitch, yaw)
    poses[:, 0, 3] = ins.northing - n0
    poses[:, 1, 3] = ins.easting - e0
    poses[:, 2, 3] = ins.down - d0
    return poses


def chain_vo(vo: VoData) -> tuple[np.ndarray, np.ndarray]:
    """Absolute poses from relative visual odometry, as the SDK chains them.

    The first pose is the identity at the first row's destination time; then
    ``abs_i = abs_(i-1) @ SE3(row_i)`` at each row's source time.

    Returns:
        ``(times_us (N+1,), poses (N+1, 4, 4))`` in the vehicle frame of the first image.
    """
    if len(vo) == 0:
        raise RobotCarFormatError(vo.path, "no visual odometry row to chain")
    times = np.empty(len(vo) + 1, dtype=np.int64)
    times[0] = vo.destination_us[0]
    times[1:] = vo.source_us
    poses = np.empty((len(vo) + 1, 4, 4))
    poses[0] = np.eye(4)
    for i, row in enumerate(vo.xyzrpy, start=1):
        poses[i] = poses[i - 1] @ se3_from_xyzrpy(*row)
    return times, poses
