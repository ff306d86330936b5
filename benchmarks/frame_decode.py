"""The ``localize`` node's decoding of camera frames at real sizes: full size vs shrink-first.

For each frame kind, the median time of ``image_to_rgb`` / ``compressed_to_rgb``
(:mod:`vbl_ros.ros.messages`) followed by the network's resize to 224x224 (``INTER_AREA``, as
:class:`~vbl_ros.model.extractor.DescriptorExtractor` does), without and with ``min_size`` (the
node passes the network's input size), and how far the two images are apart after that resize.
Frames: a synthetic scene scaled to the camera's size plus sensor noise (so PNG and JPEG sizes are
realistic); raw 1920x1080 ``rgb8`` / ``bgr8``, 1280x960 ``bayer_gbrg8`` / ``rgba8``, 640x480
``mono8``; PNG and JPEG of them. One thread for OpenCV.

    .venv/bin/python benchmarks/frame_decode.py

writes ``benchmarks/results/frame_decode.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import cv2
import numpy as np
from _common import machine, table, write_results
from sensor_msgs.msg import CompressedImage, Image

from vbl_ros.images import mosaic
from vbl_ros.ros.messages import compressed_to_rgb, image_to_rgb
from vbl_ros.testing import synthetic_scene

NAME = "frame_decode"
NETWORK = (224, 224)
REPEATS = 15


def median_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def to_network(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, NETWORK, interpolation=cv2.INTER_AREA)


def camera_frame(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    scene = cv2.resize(synthetic_scene(3, 240, 320), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(scene + rng.normal(0, 10, scene.shape), 0, 255).astype(np.uint8)


def raw_msg(rgb: np.ndarray, encoding: str) -> Image:
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack((rgb, np.full(rgb.shape[:2], 255, np.uint8))),
        "mono8": rgb[..., 0],
        "bayer_gbrg8": mosaic(rgb, "gbrg"),
    }[encoding]
    msg = Image()
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.step = msg.width * (1 if pixels.ndim == 2 else pixels.shape[2])
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def compressed_msg(rgb: np.ndarray, kind: str, bayer: bool) -> CompressedImage:
    msg = CompressedImage()
    if bayer:
        msg.format = "bayer_gbrg8; png compressed bayer_gbrg8"
        msg.data = cv2.imencode(".png", mosaic(rgb, "gbrg"))[1].tobytes()
    else:
        msg.format = f"rgb8; {kind} compressed bgr8"
        msg.data = cv2.imencode(f".{kind}", rgb[..., ::-1])[1].tobytes()
    return msg


def row(name: str, decode: Callable[[tuple[int, int] | None], np.ndarray], size_mb: float) -> dict:
    full, fast = to_network(decode(None)), to_network(decode(NETWORK))
    return {
        "frame": name,
        "mb": size_mb,
        "full_ms": median_ms(lambda: to_network(decode(None))),
        "shrink_first_ms": median_ms(lambda: to_network(decode(NETWORK))),
        "mean_abs_diff": float(np.abs(full.astype(int) - fast).mean()),
    }


def main() -> None:
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    rows = []
    for width, height, encoding in (
        (1920, 1080, "rgb8"),
        (1920, 1080, "bgr8"),
        (1280, 960, "bayer_gbrg8"),
        (1280, 960, "rgba8"),
        (640, 480, "mono8"),
    ):
        rgb = camera_frame(width, height, rng)
        msg = raw_msg(rgb, encoding)
        rows.append(
            row(
                f"raw {width}x{height} {encoding}",
                lambda m, msg=msg: image_to_rgb(msg, m),
                len(msg.data) / 1e6,
            )
        )
        kinds = ["png"] if encoding == "bayer_gbrg8" else ["png", "jpeg"] if encoding == "rgb8" else []
        for kind in kinds:
            c = compressed_msg(rgb, kind, bayer=encoding == "bayer_gbrg8")
            label = f"{kind} {width}x{height}" + (" bayer" if encoding == "bayer_gbrg8" else "")
            rows.append(row(label, lambda m, c=c: compressed_to_rgb(c, m), len(c.data) / 1e6))
    print(table(rows, ["frame", "mb", "full_ms", "shrink_first_ms", "mean_abs_diff"]))
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/frame_decode.py", *sys.argv[1:]]),
        "machine": machine(),
        "rows": rows,
    }
    print(f"results: {write_results(NAME, payload)}")


if __name__ == "__main__":
    main()
