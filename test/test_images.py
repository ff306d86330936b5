"""Image decoding: every supported encoding, Bayer round trips and bad frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vbl_ros.errors import BadFrameError
from vbl_ros.images import BAYER_PATTERNS, decode_compressed_image, decode_raw_image, demosaic, mosaic

COLOUR = (200, 100, 50)


def flat_rgb(height: int = 8, width: int = 10) -> np.ndarray:
    return np.full((height, width, 3), COLOUR, np.uint8)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_round_trip_keeps_a_flat_colour(pattern: str) -> None:
    rgb = demosaic(mosaic(flat_rgb(), pattern), pattern)
    assert tuple(rgb[4, 4]) == COLOUR


def test_gbrg_layout_matches_robotcar() -> None:
    raw = mosaic(flat_rgb(), "gbrg")
    assert raw[0, 0] == COLOUR[1] and raw[0, 1] == COLOUR[2]
    assert raw[1, 0] == COLOUR[0] and raw[1, 1] == COLOUR[1]


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        ("rgb8", flat_rgb()),
        ("bgr8", flat_rgb()[..., ::-1]),
        ("bgra8", np.dstack([flat_rgb()[..., ::-1], np.full((8, 10), 255, np.uint8)])),
        ("bayer_gbrg8", mosaic(flat_rgb(), "gbrg")),
        ("rgb16", flat_rgb().astype(np.uint16) << 8),
    ],
)
def test_raw_encodings_decode_to_rgb(encoding: str, payload: np.ndarray) -> None:
    data = np.ascontiguousarray(payload).tobytes()
    step = len(data) // 8
    rgb = decode_raw_image(encoding, 10, 8, step, data)
    assert rgb.shape == (8, 10, 3)
    assert tuple(rgb[4, 4]) == COLOUR


def test_mono_and_padded_rows() -> None:
    image = np.zeros((4, 6), np.uint8)
    image[:, :] = 77
    padded = np.zeros((4, 8), np.uint8)
    padded[:, :6] = image
    rgb = decode_raw_image("mono8", 6, 4, 8, padded.tobytes())
    assert rgb.shape == (4, 6, 3) and (rgb == 77).all()


def test_compressed_png_jpeg_and_bayer_png() -> None:
    bgr = np.ascontiguousarray(flat_rgb()[..., ::-1])
    assert tuple(decode_compressed_image("png", cv2.imencode(".png", bgr)[1].tobytes())[4, 4]) == COLOUR
    jpeg = decode_compressed_image("jpeg", cv2.imencode(".jpg", bgr)[1].tobytes())
    assert np.abs(jpeg[4, 4].astype(int) - COLOUR).max() <= 3
    bayer_png = cv2.imencode(".png", mosaic(flat_rgb(), "gbrg"))[1].tobytes()
    rgb = decode_compressed_image("bayer_gbrg8; png compressed bayer_gbrg8", bayer_png)
    assert tuple(rgb[4, 4]) == COLOUR


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: decode_raw_image("yuv_weird", 10, 8, 30, b"\0" * 240), "unsupported image encoding"),
        (lambda: decode_raw_image("rgb8", 10, 8, 30, b"\0" * 100), "needs 240 bytes"),
        (lambda: decode_raw_image("rgb8", 10, 8, 20, b"\0" * 160), "smaller than a row"),
        (lambda: decode_raw_image("rgb8", 0, 8, 0, b""), "no pixels"),
        (lambda: decode_compressed_image("png", b"not a png at all"), "corrupt"),
        (lambda: decode_compressed_image("png", b""), "no data"),
        (lambda: demosaic(np.zeros((4, 4), np.uint8), "xyzw"), "unknown Bayer pattern"),
    ],
)
def test_bad_frames_raise_named_errors(call, message: str) -> None:
    with pytest.raises(BadFrameError, match=message):
        call()


def test_truncated_png_is_a_bad_frame() -> None:
    png = cv2.imencode(".png", flat_rgb(64, 64))[1].tobytes()
    with pytest.raises(BadFrameError):
        decode_compressed_image("png", png[: len(png) // 3])
