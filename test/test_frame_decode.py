"""Shrink-first decoding of camera frames (:mod:`vbl_ros.ros.messages`): the same image, less work.

The node decodes each frame only down to the network's input size: a large frame is reduced by a
whole factor before its colour conversion (cv2 ``INTER_AREA``), 8-bit Bayer mosaics are binned 2x2
instead of demosaiced at full size, and JPEGs are decoded at 1/2, 1/4 or 1/8 of their size. Here
the result must equal the full-size decoding after the network's own resize, to within about a
grey level, and give the same descriptor; speed is measured in docs/ros_interface.md, not here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CompressedImage, Image

from vbl_ros.errors import BadFrameError
from vbl_ros.images import mosaic
from vbl_ros.ros.messages import compressed_to_rgb, image_to_rgb, shrink_factor
from vbl_ros.testing import synthetic_scene

NETWORK = (224, 224)  # the default model's input (width, height)


def _camera_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A synthetic scene at a camera's size with sensor noise."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(synthetic_scene(seed, 240, 320), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(scene + rng.normal(0, 8, scene.shape), 0, 255).astype(np.uint8)


def _at_network_size(rgb: np.ndarray) -> np.ndarray:
    """What the extractor does to any frame: INTER_AREA to the input size."""
    return cv2.resize(rgb, NETWORK, interpolation=cv2.INTER_AREA)


def _raw(rgb: np.ndarray, encoding: str, padding: int = 0) -> Image:
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack((rgb, np.full(rgb.shape[:2], 255, np.uint8))),
        "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
        "bayer_gbrg8": mosaic(rgb, "gbrg"),
        "bayer_rggb8": mosaic(rgb, "rggb"),
    }[encoding]
    height, width = pixels.shape[:2]
    row = width * (1 if pixels.ndim == 2 else pixels.shape[2])
    padded = np.zeros((height, row + padding), np.uint8)
    padded[:, :row] = pixels.reshape(height, row)
    msg = Image()
    msg.width, msg.height, msg.encoding, msg.step = width, height, encoding, row + padding
    msg.data = padded.tobytes()
    return msg


def test_shrink_factor_keeps_at_least_the_network_size() -> None:
    assert shrink_factor(1920, 1080, NETWORK) == 4  # 480x270
    assert shrink_factor(1280, 960, NETWORK) == 4  # 320x240
    assert shrink_factor(640, 480, NETWORK) == 2
    assert shrink_factor(320, 240, NETWORK) == 1
    assert shrink_factor(1920, 1080, None) == 1


@pytest.mark.parametrize(
    ("width", "height", "encoding", "padding"),
    [
        (1920, 1080, "rgb8", 0),
        (1920, 1080, "bgr8", 32),
        (1280, 960, "rgba8", 0),
        (1280, 960, "bayer_gbrg8", 0),
        (1280, 960, "bayer_rggb8", 16),
        (640, 480, "mono8", 0),
    ],
)
def test_raw_frames_shrunk_first_equal_the_full_decoding(width, height, encoding, padding) -> None:
    rgb = _camera_frame(width, height)
    msg = _raw(rgb, encoding, padding)
    full = image_to_rgb(msg)
    fast = image_to_rgb(msg, min_size=NETWORK)
    factor = shrink_factor(width, height, NETWORK)
    assert fast.shape == (height // factor, width // factor, 3) and fast.dtype == np.uint8
    difference = np.abs(_at_network_size(full).astype(int) - _at_network_size(fast))
    assert difference.mean() < 2.5, f"{encoding}: mean difference {difference.mean():.2f} grey levels"


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_frames_shrunk_first_equal_the_full_decoding(fmt: str) -> None:
    rgb = _camera_frame(1920, 1080)
    msg = CompressedImage()
    msg.format = f"rgb8; {fmt} compressed bgr8"
    msg.data = cv2.imencode(f".{fmt}", rgb[..., ::-1])[1].tobytes()
    full = compressed_to_rgb(msg)
    fast = compressed_to_rgb(msg, min_size=NETWORK)
    assert full.shape == (1080, 1920, 3) and fast.shape == (270, 480, 3)  # a JPEG decoded at 1/4
    difference = np.abs(_at_network_size(full).astype(int) - _at_network_size(fast))
    assert difference.mean() < 2.5, f"{fmt}: mean difference {difference.mean():.2f} grey levels"


def test_bayer_png_is_binned_and_small_frames_decode_as_before() -> None:
    rgb = _camera_frame(1280, 960)
    bayer = CompressedImage(format="bayer_gbrg8; png compressed bayer_gbrg8")
    bayer.data = cv2.imencode(".png", mosaic(rgb, "gbrg"))[1].tobytes()
    fast = compressed_to_rgb(bayer, min_size=NETWORK)
    assert fast.shape == (240, 320, 3)
    difference = np.abs(_at_network_size(compressed_to_rgb(bayer)).astype(int) - _at_network_size(fast))
    assert difference.mean() < 2.5
    small = _camera_frame(160, 120)
    png = CompressedImage(format="rgb8; png compressed bgr8")
    png.data = cv2.imencode(".png", small[..., ::-1])[1].tobytes()
    assert np.array_equal(compressed_to_rgb(png, min_size=NETWORK), small)  # lossless, not shrunk
    assert np.array_equal(image_to_rgb(_raw(small, "bgr8"), min_size=NETWORK), small)


def test_bad_frames_are_refused_the_same_way() -> None:
    msg = _raw(_camera_frame(1920, 1080), "rgb8")
    msg.data = bytes(msg.data)[:-10]
    with pytest.raises(BadFrameError, match="needs 6220800 bytes"):
        image_to_rgb(msg, min_size=NETWORK)
    corrupt = CompressedImage(
        format="jpeg", data=b"\xff\xd8\xff\xc0\x00\x11\x08\x04\x38\x07\x80" + b"\x00" * 64
    )
    with pytest.raises(BadFrameError, match="corrupt"):
        compressed_to_rgb(corrupt, min_size=NETWORK)


def test_the_descriptor_is_the_same() -> None:
    """What matters to the node: the descriptor of the shrunk frame is the full frame's."""
    pytest.importorskip("torch")
    from vbl_ros.model.extractor import DescriptorExtractor
    from vbl_ros.model.io import default_model

    extractor = DescriptorExtractor(default_model(), device="cpu", num_threads=1)
    size = (extractor.transform.width, extractor.transform.height)
    assert size == NETWORK
    for encoding, (width, height) in (("rgb8", (1920, 1080)), ("bayer_gbrg8", (1280, 960))):
        msg = _raw(_camera_frame(width, height, seed=3), encoding)
        full, fast = extractor([image_to_rgb(msg), image_to_rgb(msg, min_size=size)])
        assert float(full @ fast) > 0.99, f"{encoding}: cosine {float(full @ fast):.4f}"
