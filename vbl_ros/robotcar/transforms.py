"""Rigid transforms as the RobotCar SDK defines them, and quaternion helpers.

``se3_from_xyzrpy`` builds ``T = [R t; 0 1]`` with ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
Quaternions are ``(x, y, z, w)`` as in ROS messages.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "euler_to_rotation",
    "rotation_to_euler",
    "se3_from_xyzrpy",
    "xyzrpy_from_se3",
    "rotation_to_quaternion",
    "quaternion_to_rotation",
    "quaternion_slerp",
    "NED_TO_REP103",
]

# The vehicle (and INS/NED) frames are x forward, y right, z down; REP-103 frames are x forward,
# y left, z up: a rotation of 180 degrees about x.
NED_TO_REP103 = np.diag([1.0, -1.0, -1.0])


def euler_to_rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` as a 3x3 array."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_to_euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`euler_to_rotation`: ``(roll, pitch, yaw)`` in radians."""
    r = np.asarray(rotation, dtype=float)
    pitch = float(np.arctan2(-r[2, 0], np.hypot(r[0, 0], r[1, 0])))
    roll = float(np.arctan2(r[2, 1], r[2, 2]))
    yaw = float(np.arctan2(r[1, 0], r[0, 0]))
    return roll, pitch, yaw


def se3_from_xyzrpy(x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """A 4x4 homogeneous transform from a translation and SDK Euler angles."""
    t = np.eye(4)
    t[:3, :3] = euler_to_rotation(roll, pitch, yaw)
    t[:3, 3] = (x, y, z)
    return t


def xyzrpy_from_se3(transform: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Inverse of :func:`se3_from_xyzrpy`."""
    roll, pitch, yaw = rotation_to_euler(transform[:3, :3])
    x, y, z = (float(v) for v in transform[:3, 3])
    return x, y, z, roll, pitch, yaw


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """A unit quaternion ``(x, y, z, w)`` with ``w >= 0`` from a rotation matrix."""
    r = np.asarray(rotation, dtype=float)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    quat = np.asarray(q, dtype=float)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def quaternion_to_rotation(quat: np.ndarray) -> np.ndarray:
    """A rotation matrix from a quaternion ``(x, y, z, w)``."""
    x, y, z, w = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def quaternion_slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions; takes the short way round."""
    q0 = np.asarray(q0, dtype=float)
    q1 = np.asarray(q1, dtype=float)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        out = q0 + fraction * (q1 - q0)
        return out / np.linalg.norm(out)
    theta = np.arccos(min(dot, 1.0))
    sin_theta = np.sin(theta)
    out = (np.sin((1 - fraction) * theta) * q0 + np.sin(fraction * theta) * q1) / sin_theta
    return out / np.linalg.norm(out)
