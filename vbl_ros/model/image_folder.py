"""Frames without a bag: the images of a folder, and any image stream, sampled evenly for fitting a model.

:func:`read_image_folder` lists a folder's png/jpg images (sorted by name, those OpenCV can read),
keeps at most ``max_images`` of them evenly spread, and decodes them to RGB one at a time as they
are iterated; :func:`sample_evenly` keeps at most ``limit`` items of any sequence or stream, evenly
spread, holding only those it keeps. Images must be what the camera gives after demosaicing (RGB or
grey): RobotCar's raw Bayer PNGs are converted with ``vbl convert robotcar`` and read from the bag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from vbl_ros.errors import ConfigError, ImageDecodeError, MissingDataError

__all__ = [
    "IMAGE_SUFFIXES",
    "evenly_spaced",
    "list_images",
    "read_image",
    "read_image_folder",
    "sample_evenly",
]

logger = logging.getLogger(__name__)

#: file name endings read as images (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

T = TypeVar("T")
U = TypeVar("U")


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """At most ``k`` distinct indices of ``range(n)``, evenly spread, first and last included, sorted."""
    if n <= 0 or k <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def list_images(folder: Path | str, *, max_images: int | None = None) -> list[Path]:
    """The readable png/jpg files of ``folder`` (not recursive), sorted by name, evenly sampled.

    Args:
        folder: the image folder.
        max_images: keep at most this many, evenly spread over the sorted list (``None``: all).

    Raises:
        MissingDataError: ``folder`` is not a folder, or holds no png/jpg file OpenCV can read.
        ConfigError: ``max_images < 1``.
    """
    folder = Path(folder)
    if max_images is not None and max_images < 1:
        raise ConfigError(f"max_images {max_images}: must be >= 1")
    if not folder.is_dir():
        raise MissingDataError(f"{folder}: not a folder; give a folder of png/jpg images")
    named = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    readable = [p for p in named if cv2.haveImageReader(str(p))]
    if not readable:
        raise MissingDataError(
            f"{folder}: no readable png/jpg image ({len(named)} files with those endings, none an image "
            "OpenCV can read); give a folder of camera images"
        )
    if len(readable) < len(named):
        logger.warning("%s: %d png/jpg files are not images; skipped", folder, len(named) - len(readable))
    if max_images is not None:
        readable = [readable[i] for i in evenly_spaced(len(readable), max_images)]
    return readable


def read_image(path: Path | str) -> np.ndarray:
    """One image file as ``(H, W, 3)`` uint8 RGB (grey files repeated to three channels).

    Raises:
        ImageDecodeError: the file cannot be decoded.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"{path}: cannot be decoded as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image_folder(folder: Path | str, *, max_images: int | None = None) -> Iterator[np.ndarray]:
    """The images of :func:`list_images` (listed now, errors raised now), decoded to RGB as iterated.

    A file that fails to decode is skipped with a warning; if none decodes, the iteration ends with
    :class:`~vbl_ros.errors.MissingDataError`.
    """
    paths = list_images(folder, max_images=max_images)
    return _decode(paths, Path(folder))


def _decode(paths: list[Path], folder: Path) -> Iterator[np.ndarray]:
    decoded = 0
    for path in paths:
        try:
            image = read_image(path)
        except ImageDecodeError as err:
            logger.warning("%s; skipped", err)
            continue
        decoded += 1
        yield image
    if decoded == 0:
        raise MissingDataError(f"{folder}: no readable image ({len(paths)} files failed to decode)")


def sample_evenly(items: Iterable[T], limit: int, convert: Callable[[int, T], U]) -> list[U]:
    """``convert(index, item)`` of at most ``limit`` items of ``items``, evenly spread, in order.

    A sequence (or NumPy array) is sampled by index (:func:`evenly_spaced`), so only the chosen
    items are read. Any other iterable is streamed: items at a stride that doubles whenever
    ``2 * limit`` are held (memory bounded by ``2 * limit`` converted items), then thinned evenly to
    ``limit``.

    Raises:
        ConfigError: ``limit < 1``.
    """
    if limit < 1:
        raise ConfigError(f"max_images {limit}: must be >= 1")
    if isinstance(items, (Sequence, np.ndarray)):
        return [convert(int(i), items[int(i)]) for i in evenly_spaced(len(items), limit)]
    kept: list[U] = []
    stride = 1
    for i, item in enumerate(items):
        if i % stride:
            continue
        kept.append(convert(i, item))
        if len(kept) == 2 * limit:  # kept holds indices 0, stride, 2 stride, ...: keep every other
            kept = kept[::2]
            stride *= 2
    return [kept[int(i)] for i in evenly_spaced(len(kept), limit)]
