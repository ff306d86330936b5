"""RobotCar poses: INS rows as local NED poses, and visual odometry chained as the SDK does.

The frames (``world`` = local NED, ``map`` = local ENU, ``vehicle``, ``base_link``) and the pose
interpolator live in :mod:`vbl_ros.geometry`.
"""

from __future__ import annotations

import numpy as np

from vbl_ros.errors import RobotCarFormatError
from vbl_ros.geometry.rotations import euler_to_rotation, se3_from_xyzrpy
from vbl_ros.robotcar.ins import InsData, VoData

__all__ = ["chain_vo", "ins_world_poses"]


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
