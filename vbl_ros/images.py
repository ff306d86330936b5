"""Camera images without torch: decoding (raw ROS encodings, compressed data, Bayer mosaics) and the
one check and resize to a network's input size (used by the PyTorch extractor and the exported runtimes).

Everything here works on plain fields (encoding, width, height, step, bytes), so the ROS layer,
the bag readers and the converter share one decoder without this module importing ROS.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vbl_ros.errors import BadFrameError

__all__ = [
    "BAYER_PATTERNS",
    "check_image",
    "decode_compressed_image",
    "decode_raw_image",
    "demosaic",
    "mosaic",
    "resize",
    "resize_batch",
]

# OpenCV names Bayer conversions after the second row's first two pixels; ROS after the first row's.
_DEMOSAIC_CODES = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
BAYER_PATTERNS = tuple(_DEMOSAIC_CODES)

# encoding -> (channels, numpy dtype)
_RAW_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "8UC3": (3, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
    "rgb16": (3, np.dtype(np.uint16)),
    "bgr16": (3, np.dtype(np.uint16)),
    **{f"bayer_{p}8": (1, np.dtype(np.uint8)) for p in _DEMOSAIC_CODES},
    **{f"bayer_{p}16": (1, np.dtype(np.uint16)) for p in _DEMOSAIC_CODES},
}


def demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Demosaic a single-channel Bayer image (``pattern`` as in ROS: ``gbrg``, ``rggb``, ...) to RGB."""
    code = _DEMOSAIC_CODES.get(pattern.lower())
    if code is None:
        raise BadFrameError(f"unknown Bayer pattern {pattern!r}; expected one of {BAYER_PATTERNS}")
    if raw.ndim != 2:
        raise BadFrameError(f"a Bayer image has one channel, got shape {raw.shape}")
    return cv2.cvtColor(np.ascontiguousarray(raw), code)


def mosaic(rgb: np.ndarray, pattern: str = "gbrg") -> np.ndarray:
    """Sample an RGB image into a single-channel Bayer mosaic (the inverse of the camera's optics)."""
    pattern = pattern.lower()
    if pattern not in _DEMOSAIC_CODES:
        raise BadFrameError(f"unknown Bayer pattern {pattern!r}; expected one of {BAYER_PATTERNS}")
    channel = {"r": 0, "g": 1, "b": 2}
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for index, colour in enumerate(pattern):
        row, col = divmod(index, 2)
        out[row::2, col::2] = rgb[row::2, col::2, channel[colour]]
    return out


def _to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image.reshape(image.shape[:2])
    if encoding.startswith("bayer_"):
        return demosaic(image, encoding[len("bayer_") : len("bayer_") + 4])
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if encoding.startswith("bgr"):
        image = image[..., 2::-1] if image.shape[2] == 4 else image[..., ::-1]
    return np.ascontiguousarray(image[..., :3])


def decode_raw_image(
    encoding: str, width: int, height: int, step: int, data: bytes | np.ndarray
) -> np.ndarray:
    """Decode the fields of a ``sensor_msgs/Image`` into an ``(height, width, 3)`` uint8 RGB array."""
    spec = _RAW_ENCODINGS.get(encoding)
    if spec is None:
        raise BadFrameError(
            f"unsupported image encoding {encoding!r}; publish one of {sorted(_RAW_ENCODINGS)} "
            "or a CompressedImage"
        )
    channels, dtype = spec
    if width <= 0 or height <= 0:
        raise BadFrameError(f"image has no pixels ({width}x{height})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise BadFrameError(
            f"step {step} is smaller than a row of {width} {encoding} pixels ({row_bytes} bytes)"
        )
    buffer = np.frombuffer(memoryview(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    buffer = buffer.reshape(-1).view(np.uint8)
    if buffer.size != step * height:
        raise BadFrameError(
            f"{encoding} image {width}x{height} with step {step} needs {step * height} bytes, "
            f"got {buffer.size}"
        )
    rows = buffer.reshape(height, step)[:, :row_bytes]
    image = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    return _to_rgb8(image, encoding)


def decode_compressed_image(fmt: str, data: bytes | np.ndarray) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (PNG or JPEG; Bayer PNG too) to RGB uint8.

    ``fmt`` follows image_transport: ``"png"``, ``"jpeg"``, or ``"<encoding>; <codec> compressed <enc>"``
    such as ``"bayer_gbrg8; png compressed bayer_gbrg8"`` (RobotCar's original PNG bytes).
    """
    buffer = np.frombuffer(memoryview(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if buffer.size == 0:
        raise BadFrameError("compressed image has no data")
    decoded = cv2.imdecode(buffer.reshape(-1).view(np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise BadFrameError(
            f"compressed image ({fmt!r}, {buffer.size} bytes) could not be decoded: corrupt data"
        )
    encoding = fmt.split(";")[0].strip().lower()
    if encoding.startswith("bayer_"):
        if decoded.ndim != 2:
            raise BadFrameError(f"format {fmt!r} says Bayer but the image has shape {decoded.shape}")
        return _to_rgb8(decoded, encoding)
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = decoded[..., :3]
    # OpenCV decodes colour images as BGR.
    return _to_rgb8(decoded, "bgr8" if decoded.ndim == 3 else "mono8")


def check_image(image: np.ndarray, index: int = 0) -> np.ndarray:
    """``image`` as ``(H, W, 3)`` uint8 RGB; a grey ``(H, W)`` image is repeated to three channels.

    Args:
        image: the array to check.
        index: its position in the caller's batch, named in the error message.

    Raises:
        BadFrameError: not uint8, or not ``(H, W, 3)`` / ``(H, W)`` with ``H, W >= 1``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise BadFrameError(f"image {index}: expected uint8 RGB, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise BadFrameError(f"image {index}: expected shape (H, W, 3), got {image.shape}")
    return image


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A checked ``(H, W, 3)`` uint8 image resized to ``(height, width, 3)`` (returned as is at that size).

    ``INTER_AREA`` when either side shrinks (it averages, no aliasing), ``INTER_LINEAR`` when both grow.
    """
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_batch(images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """RGB uint8 images of any size (grey too), checked and resized: ``(N, height, width, 3)`` uint8 (NHWC).

    Raises:
        BadFrameError: an image that is not uint8 ``(H, W, 3)`` or ``(H, W)``.
    """
    batch = np.empty((len(images), height, width, 3), np.uint8)
    for i, image in enumerate(images):
        batch[i] = resize(check_image(image, i), height, width)
    return batch
