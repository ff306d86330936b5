"""RobotCar 2D LIDAR scans (``lms_front/<unix_us>.bin``, ``lms_rear/<unix_us>.bin``).

A scan file is little-endian float64 triplets ``(x, y, reflectance)`` in the scan plane (z = 0),
in metres, in the sensor's own frame (``extrinsics/lms_*.txt`` places it in the vehicle frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vbl_ros.errors import MissingDataError, RobotCarFormatError

__all__ = ["read_scan", "scan_points"]

_TRIPLET_BYTES = 3 * 8


def read_scan(path: Path | str) -> np.ndarray:
    """A scan as an ``(N, 3)`` float64 array of ``x, y, reflectance`` (N may be 0).

    Raises:
        MissingDataError: the file does not exist (the caller may skip and count it).
        RobotCarFormatError: the size is not a whole number of triplets (truncated download).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingDataError(f"{path}: scan file not found") from err
    if len(data) % _TRIPLET_BYTES:
        raise RobotCarFormatError(
            path,
            f"{len(data)} bytes is not a whole number of float64 (x, y, reflectance) triplets; "
            "the file is truncated: download this chunk again",
        )
    return np.frombuffer(data, dtype="<f8").reshape(-1, 3).astype(np.float64)


def scan_points(scan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous ``(4, N)`` points (z = 0) in the sensor frame and the ``(N,)`` reflectance of a scan.

    Points that are not finite are dropped.
    """
    finite = np.isfinite(scan).all(axis=1)
    scan = scan[finite]
    points = np.zeros((4, scan.shape[0]))
    points[0] = scan[:, 0]
    points[1] = scan[:, 1]
    points[3] = 1.0
    return points, scan[:, 2].copy()
