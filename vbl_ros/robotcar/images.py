"""RobotCar camera folders and their image files.

Each camera writes raw Bayer mosaics as 8-bit single-channel PNG files ``<folder>/<unix_us>.png``:
the stereo cameras 1280x960 GBRG, the mono cameras 1024x1024 RGGB. Any size is accepted (the
simulator writes smaller images) as long as every image of a conversion has the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vbl_ros.errors import ImageDecodeError, MissingDataError

__all__ = ["CameraSpec", "CAMERAS", "RobotCarImage", "read_image", "camera_spec"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class CameraSpec:
    """Where a RobotCar camera's files are and how it appears in a bag."""

    name: str  # image folder relative to the traversal, e.g. "stereo/centre"
    timestamps: str  # timestamps file in the traversal root
    bayer_pattern: str  # ROS order: "gbrg" or "rggb"
    model: str  # models/<model>.txt
    extrinsics: str  # extrinsics/<extrinsics>.txt
    frame_id: str  # optical frame of its messages
    topic: str  # topic namespace, e.g. "/stereo/centre"


CAMERAS: dict[str, CameraSpec] = {
    "stereo/centre": CameraSpec(
        "stereo/centre",
        "stereo.timestamps",
        "gbrg",
        "stereo_narrow_left",
        "stereo",
        "stereo_centre_optical",
        "/stereo/centre",
    ),
    "stereo/left": CameraSpec(
        "stereo/left",
        "stereo.timestamps",
        "gbrg",
        "stereo_wide_left",
        "stereo",
        "stereo_left_optical",
        "/stereo/left",
    ),
    "stereo/right": CameraSpec(
        "stereo/right",
        "stereo.timestamps",
        "gbrg",
        "stereo_wide_right",
        "stereo",
        "stereo_right_optical",
        "/stereo/right",
    ),
    "mono_left": CameraSpec(
        "mono_left",
        "mono_left.timestamps",
        "rggb",
        "mono_left",
        "mono_left",
        "mono_left_optical",
        "/mono_left",
    ),
    "mono_right": CameraSpec(
        "mono_right",
        "mono_right.timestamps",
        "rggb",
        "mono_right",
        "mono_right",
        "mono_right_optical",
        "/mono_right",
    ),
    "mono_rear": CameraSpec(
        "mono_rear",
        "mono_rear.timestamps",
        "rggb",
        "mono_rear",
        "mono_rear",
        "mono_rear_optical",
        "/mono_rear",
    ),
}


def camera_spec(name: str) -> CameraSpec:
    """The :class:`CameraSpec` of a camera folder name such as ``stereo/centre``."""
    spec = CAMERAS.get(name)
    if spec is None:
        from vbl_ros.errors import ConfigError

        raise ConfigError(f"unknown RobotCar camera {name!r}; choose from {sorted(CAMERAS)}")
    return spec


@dataclass(frozen=True)
class RobotCarImage:
    """One image file: its original PNG bytes and the decoded Bayer mosaic (H, W) uint8."""

    path: Path
    png: bytes
    mosaic: np.ndarray

    @property
    def width(self) -> int:
        return int(self.mosaic.shape[1])

    @property
    def height(self) -> int:
        return int(self.mosaic.shape[0])


def read_image(path: Path | str, *, expected_size: tuple[int, int] | None = None) -> RobotCarImage:
    """Read and validate a RobotCar image file.

    Args:
        path: the PNG file.
        expected_size: ``(width, height)`` every image must have (the first image's), or None.

    Raises:
        MissingDataError: the file does not exist (the caller may skip and count it).
        ImageDecodeError: the file is not a complete 8-bit single-channel PNG, or has another size.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingDataError(f"{path}: image file not found") from err
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageDecodeError(f"{path}: not a PNG file; download this chunk again or delete the file")
    if not data.rstrip(b"\x00").endswith(_PNG_END):
        raise ImageDecodeError(f"{path}: truncated PNG (no end marker); download this chunk again")
    mosaic = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if mosaic is None:
        raise ImageDecodeError(f"{path}: corrupt PNG that cannot be decoded; download this chunk again")
    if mosaic.ndim != 2 or mosaic.dtype != np.uint8:
        raise ImageDecodeError(
            f"{path}: expected an 8-bit single-channel Bayer PNG, got shape {mosaic.shape} {mosaic.dtype}; "
            "RobotCar images are raw Bayer mosaics"
        )
    if expected_size is not None and (mosaic.shape[1], mosaic.shape[0]) != tuple(expected_size):
        raise ImageDecodeError(
            f"{path}: image is {mosaic.shape[1]}x{mosaic.shape[0]} but the traversal's first image is "
            f"{expected_size[0]}x{expected_size[1]}; every image of a camera must have one size: "
            "replace or delete this file"
        )
    return RobotCarImage(path=path, png=data, mosaic=mosaic)
