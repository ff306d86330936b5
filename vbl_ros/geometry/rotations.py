"""Rotations and rigid transforms: Euler angles (the RobotCar SDK's convention), SE(3), quaternions.

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
    "quaternions_from_rotations",
    "quaternion_to_euler",
    "homogeneous",
]


def homogeneous(rotation: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    """The 4x4 transform ``[R t; 0 1]`` (``t = 0`` when not given)."""
    out = np.eye(4)
    out[:3, :3] = rotation
    if translation is not None:
        out[:3, 3] = translation
    return out


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
    """Rotation matrices from quaternions ``(x, y, z, w)``: ``(4,) -> (3, 3)`` or ``(N, 4) -> (N, 3, 3)``."""
    q = np.asarray(quat, dtype=float)
    single = q.ndim == 1
    q = np.atleast_2d(q)
    x, y, z, w = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    out = np.empty((q.shape[0], 3, 3))
    out[:, 0] = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=1)
    out[:, 1] = np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=1)
    out[:, 2] = np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1)
    return out[0] if single else out


def quaternion_slerp(q0: np.ndarray, q1: np.ndarray, fraction: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions, ``(4,)`` or ``(N, 4)`` each.

    Takes the short way round (``q1`` is negated where the dot product is negative); ``fraction``
    is real-valued (a scalar or ``(N,)``), never snapped to either end.
    """
    a, b = np.asarray(q0, dtype=float), np.asarray(q1, dtype=float)
    single = a.ndim == 1 and b.ndim == 1
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    f = np.broadcast_to(np.asarray(fraction, dtype=float), (max(len(a), len(b)),))[:, None]
    dot = np.sum(a * b, axis=1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = dot > 0.9995  # nearly equal: linear interpolation is exact enough and stable
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1 - f, np.sin((1 - f) * theta) / safe)
    w1 = np.where(near, f, np.sin(f * theta) / safe)
    out = w0 * a + w1 * b
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[0] if single else out


def quaternions_from_rotations(rotations: np.ndarray) -> np.ndarray:
    """``(N, 4)`` quaternions ``(x, y, z, w)`` of ``(N, 3, 3)`` rotations."""
    return np.array([rotation_to_quaternion(r) for r in np.asarray(rotations)], dtype=np.float64).reshape(
        -1, 4
    )


def quaternion_to_euler(q: np.ndarray) -> np.ndarray:
    """Quaternions ``(..., 4)`` x y z w -> ``(..., 3)`` roll pitch yaw (radians, ZYX convention)."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.stack([roll, pitch, yaw], axis=-1)
