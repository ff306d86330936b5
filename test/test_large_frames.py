"""Camera frames at the sizes real cameras publish reach the ``localize`` node over real DDS, every one.

The node runs as its own process, started as ``ros2 launch`` starts it (params file, the packaged
Fast DDS profile in its environment: :func:`vbl_ros.ros.process.ros_env`). This process publishes
with *default* ROS 2 publishers and the middleware's default settings, as a camera driver would:
``create_publisher(..., 10)`` (reliable) or ``qos_profile_sensor_data`` (best effort), at 16 Hz:

- raw ``sensor_msgs/Image``: 1920x1080 ``rgb8`` (6.2 MB) and 1280x960 ``bayer_gbrg8`` (1.2 MB);
- ``sensor_msgs/CompressedImage``: 1920x1080 ``rgb8`` PNG (~4 MB) and 1280x960 Bayer PNG (~1.2 MB,
  a RobotCar frame's format).

For each, the node's own counts (``/diagnostics``) must show that every frame sent was received,
and that each was processed or replaced by a newer one (latest frame wins: the node never queues),
with none lost by the middleware. The node takes ~25-40 ms a frame here, so most are processed;
no timing is asserted. Before the frames go out, the node must have matched its subscription's
reliability to the publisher (``image_qos: auto``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("torch")

import cv2
from ros_helpers import LOCALIZE, PARAMS_FILE, LocalizeProcess, unique_domain_id

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOCALIZE.exists(), reason=f"{LOCALIZE} not installed (pip install -e .)"),
]

RATE_HZ = 16.0
FRAMES = 16  # one second of camera
TOPIC = "/cam/image"
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
PROFILE_BUFFER = 4 * 1024 * 1024  # config/fastdds_large_frames.xml's receiveBufferSize

SIZES = {"1920x1080 rgb8": (1920, 1080, "rgb8"), "1280x960 bayer_gbrg8": (1280, 960, "bayer_gbrg8")}


def _camera_like(width: int, height: int, seed: int) -> np.ndarray:
    """An RGB frame with a camera's texture and noise (so PNG/JPEG sizes are realistic)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    return np.clip(base.astype(np.int16) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)


def _frame(transport: str, size: str, seed: int):
    from sensor_msgs.msg import CompressedImage, Image

    from vbl_ros.images import mosaic

    width, height, encoding = SIZES[size]
    rgb = _camera_like(width, height, seed)
    pixels = mosaic(rgb, "gbrg") if encoding.startswith("bayer") else rgb
    if transport == "raw":
        msg = Image()
        msg.width, msg.height, msg.encoding = width, height, encoding
        msg.step = width * (1 if pixels.ndim == 2 else 3)
        msg.data = pixels.tobytes()
        return msg
    msg = CompressedImage()
    if encoding.startswith("bayer"):
        msg.format = f"{encoding}; png compressed {encoding}"
        msg.data = cv2.imencode(".png", pixels)[1].tobytes()
    else:
        msg.format = "rgb8; png compressed bgr8"
        msg.data = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    return msg


class Node:
    """A ``localize`` process for one image transport, and this test's collector of its outputs."""

    def __init__(self, transport: str, log_path: Path) -> None:
        from vbl_ros.ros.collector import OutputCollector

        domain_id = unique_domain_id()
        args = ["--params-file", PARAMS_FILE, "-p", "device:=cpu", "-p", f"image_transport:={transport}"]
        self.process = LocalizeProcess([*args, "-r", f"image:={TOPIC}"], domain_id, log_path)
        self.collector = OutputCollector(domain_id, name="vbl_test_camera")
        if not self.collector.wait_for(lambda: self.collector.diagnostics() or self._died(), 90):
            raise AssertionError(f"the node did not come up:\n{self.process.output()[-3000:]}")
        self._died()

    def _died(self) -> bool:
        if self.process.proc.poll() is not None:
            raise AssertionError(
                f"localize exited with {self.process.proc.returncode}:\n{self.process.output()}"
            )
        return False

    def settled_counts(self) -> dict[str, str]:
        """Diagnostics once two periods passed without new frames (every earlier frame counted)."""
        time.sleep(2.2)
        return self.collector.diagnostics()

    def close(self) -> None:
        self.collector.close()
        self.process.stop(signal.SIGINT)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory):
    """The node for an image transport, started on first use (one running at a time)."""
    running: dict[str, Node] = {}

    def get(transport: str) -> Node:
        if transport not in running:
            for node in running.values():
                node.close()
            running.clear()
            running[transport] = Node(transport, tmp_path_factory.mktemp(transport) / "localize.log")
        return running[transport]

    yield get
    for node in running.values():
        node.close()


def _counts(values: dict[str, str]) -> dict[str, int]:
    keys = ("frames_received", "frames_processed", "frames_dropped", "frames_lost", "frames_bad")
    return {key: int(values[key]) for key in keys}


@pytest.mark.parametrize("publisher_qos", ["reliable", "best_effort"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_every_frame_of_a_real_size_reaches_the_node(
    nodes, transport: str, size: str, publisher_qos: str
) -> None:
    from rclpy.qos import qos_profile_sensor_data

    from vbl_ros.ros.messages import ns_to_stamp

    if publisher_qos == "best_effort" and int(RMEM_MAX.read_text()) < PROFILE_BUFFER:
        pytest.skip(
            f"net.core.rmem_max is {RMEM_MAX.read_text().strip()} < {PROFILE_BUFFER} here: frames above "
            "~0.5 MB from a best-effort publisher cannot arrive (docs/ros_interface.md, 'Large camera frames')"
        )
    node = nodes(transport)
    msgs = [_frame(transport, size, seed) for seed in range(2)]
    # a default ROS 2 publisher: depth 10 reliable (rclpy's default), or the sensor-data profile
    qos = 10 if publisher_qos == "reliable" else qos_profile_sensor_data
    publisher = node.collector.node.create_publisher(type(msgs[0]), TOPIC, qos)
    try:
        matched = node.collector.wait_for(
            lambda: (
                publisher.get_subscription_count() > 0
                and node.collector.diagnostics().get("image_qos", "").startswith(publisher_qos)
            ),
            30,
        )
        assert matched, f"the node did not match a {publisher_qos} publisher: {node.collector.diagnostics()}"
        before = _counts(node.settled_counts())
        stamps = [time.time_ns() + i * int(1e9 / RATE_HZ) for i in range(FRAMES)]
        start = time.monotonic()
        for i, stamp in enumerate(stamps):
            time.sleep(max(0.0, start + i / RATE_HZ - time.monotonic()))
            msg = msgs[i % len(msgs)]
            msg.header.stamp = ns_to_stamp(stamp)
            publisher.publish(msg)

        def delta() -> dict[str, int]:
            now = _counts(node.collector.diagnostics())
            return {key: now[key] - before[key] for key in now}

        def all_counted() -> bool:
            d = delta()
            return d["frames_received"] >= FRAMES and d["frames_processed"] + d["frames_dropped"] >= FRAMES

        node.collector.wait_for(all_counted, 20)
        counts = delta()
    finally:
        node.collector.node.destroy_publisher(publisher)
    size_mb = len(msgs[0].data) / 1e6
    print(f"{transport} {size} ({size_mb:.1f} MB) from a {publisher_qos} publisher: {counts}")
    assert counts["frames_received"] == FRAMES, f"{counts}:\n{node.process.output()[-2000:]}"
    assert counts["frames_processed"] + counts["frames_dropped"] == FRAMES, counts
    assert counts["frames_lost"] == 0 and counts["frames_bad"] == 0, counts
    assert counts["frames_processed"] >= 1 and stamps[-1] in node.collector.stamps("map_matches"), counts
