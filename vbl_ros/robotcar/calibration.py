"""RobotCar SDK calibration files: sensor extrinsics and pinhole camera models.

``extrinsics/<sensor>.txt`` holds one line ``x y z roll pitch yaw``. For the LIDARs and the INS it
is the sensor's pose in the vehicle frame (``T_vehicle_sensor``); for the mono cameras it is the
inverse (``T_camera_vehicle``). ``models/<camera>.txt`` holds ``fx fy cx cy`` and a 4x4
``G_camera_image`` from the optical frame (z forward) to the camera's x-forward frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbl_ros.errors import MissingDataError, RobotCarFormatError
from vbl_ros.geometry.rotations import se3_from_xyzrpy

__all__ = ["CameraModel", "read_extrinsics", "read_camera_model", "sensor_in_vehicle", "CAMERA_MODEL_NAMES"]

# Which model file serves which image folder.
CAMERA_MODEL_NAMES = {
    "stereo/centre": "stereo_narrow_left",
    "stereo/left": "stereo_wide_left",
    "stereo/right": "stereo_wide_right",
    "mono_left": "mono_left",
    "mono_right": "mono_right",
    "mono_rear": "mono_rear",
}

# Extrinsics files that store the inverse (T_camera_vehicle) rather than T_vehicle_sensor.
_INVERTED_EXTRINSICS = {"mono_left", "mono_right", "mono_rear"}


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera: intrinsics and the optical-to-camera transform ``G_camera_image``."""

    name: str
    fx: float
    fy: float
    cx: float
    cy: float
    g_camera_image: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 intrinsic matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> CameraModel:
        """The same camera for images resized by ``factor`` (pixel centres kept consistent)."""
        return CameraModel(
            name=self.name,
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=(self.cx + 0.5) * factor - 0.5,
            cy=(self.cy + 0.5) * factor - 0.5,
            g_camera_image=self.g_camera_image,
        )

    def to_text(self) -> str:
        """The model file's text, as the SDK writes it."""
        lines = [f"{self.fx:.6f} {self.fy:.6f} {self.cx:.6f} {self.cy:.6f}"]
        lines += [" ".join(f"{v:.6f}" for v in row) for row in self.g_camera_image]
        return "\n".join(lines) + "\n"


def _read_numbers(path: Path) -> list[list[float]]:
    if not path.is_file():
        raise MissingDataError(
            f"{path}: calibration file not found; pass the folder of your RobotCar SDK checkout "
            "(its extrinsics/ or models/ folder)"
        )
    rows: list[list[float]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError as err:
            raise RobotCarFormatError(path, f"expected numbers, got {line.strip()!r}", line=number) from err
    return rows


def read_extrinsics(folder: Path | str, sensor: str) -> np.ndarray:
    """The raw 4x4 transform of ``extrinsics/<sensor>.txt`` (as stored, no inversion)."""
    path = Path(folder) / f"{sensor}.txt"
    rows = _read_numbers(path)
    if len(rows) != 1 or len(rows[0]) != 6:
        raise RobotCarFormatError(path, "expected one line of six numbers: x y z roll pitch yaw", line=1)
    return se3_from_xyzrpy(*rows[0])


def sensor_in_vehicle(folder: Path | str, sensor: str) -> np.ndarray:
    """``T_vehicle_sensor`` for any sensor, inverting the mono cameras' stored transform."""
    transform = read_extrinsics(folder, sensor)
    return np.linalg.inv(transform) if sensor in _INVERTED_EXTRINSICS else transform


def read_camera_model(folder: Path | str, name: str) -> CameraModel:
    """Read ``models/<name>.txt``."""
    path = Path(folder) / f"{name}.txt"
    rows = _read_numbers(path)
    if len(rows) != 5 or len(rows[0]) != 4 or any(len(r) != 4 for r in rows[1:]):
        raise RobotCarFormatError(path, "expected 'fx fy cx cy' and then a 4x4 matrix G_camera_image")
    fx, fy, cx, cy = rows[0]
    if fx <= 0 or fy <= 0:
        raise RobotCarFormatError(path, f"focal lengths must be positive, got fx={fx} fy={fy}", line=1)
    return CameraModel(name=name, fx=fx, fy=fy, cx=cx, cy=cy, g_camera_image=np.array(rows[1:]))
