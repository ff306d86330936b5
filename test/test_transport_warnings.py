"""When publishers exist but frames do not reach the node, its log and diagnostics say so, with both QoS.

Two real situations, each with the node as its own process and a publisher in this process:

- a best-effort camera and a node told to subscribe reliably (``image_qos:=reliable``): the two do
  not match, no frame arrives;
- 1920x1080 frames from a best-effort camera to a node *without* its Fast DDS profile (the
  middleware's defaults): the middleware loses most of them (docs/ros_interface.md).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("torch")

from ros_helpers import LOCALIZE, PARAMS_FILE, LocalizeProcess, unique_domain_id

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOCALIZE.exists(), reason=f"{LOCALIZE} not installed (pip install -e .)"),
]

TOPIC = "/cam/image"


def _image(width: int, height: int, stamp_ns: int):
    from sensor_msgs.msg import Image

    from vbl_ros.ros.messages import ns_to_stamp

    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.width, msg.height, msg.encoding, msg.step = width, height, "rgb8", width * 3
    msg.data = np.random.default_rng(stamp_ns % 1000).integers(0, 255, height * width * 3, np.uint8).tobytes()
    return msg


def _start(tmp_path: Path, extra: list[str], *, fastdds_profile: bool):
    from vbl_ros.ros.collector import OutputCollector

    domain_id = unique_domain_id()
    args = ["--params-file", PARAMS_FILE, "-p", "device:=cpu", *extra, "-r", f"image:={TOPIC}"]
    process = LocalizeProcess(args, domain_id, tmp_path / "localize.log", fastdds_profile=fastdds_profile)
    collector = OutputCollector(domain_id, name="vbl_test_camera")
    up = collector.wait_for(lambda: collector.diagnostics() or process.proc.poll() is not None, 90)
    assert up and process.proc.poll() is None, process.output()[-3000:]
    return process, collector


def test_no_frame_from_a_publisher_the_subscription_cannot_match(tmp_path: Path) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    process, collector = _start(tmp_path, ["-p", "image_qos:=reliable"], fastdds_profile=True)
    try:
        publisher = collector.node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
        message = collector.wait_for(
            lambda: "but no frame arrived" in (m := collector.diagnostics().get("_message", "")) and m,
            30,
            every=lambda: publisher.publish(_image(320, 240, time.time_ns())),
        )
        assert message, f"{collector.diagnostics()}\n{process.output()[-3000:]}"
        values = collector.diagnostics()
        assert values["_level"] == "1" and int(values["frames_received"]) == 0  # WARN
        assert f"1 publisher(s) on {TOPIC} but no frame arrived in" in message
        assert (
            "(best_effort)" in message and "this node: reliable, keep_last 4 (image_qos reliable)" in message
        )
        log = process.output()
        assert "[WARN]" in log and "but no frame arrived in" in log and "(best_effort)" in log
        assert "offers a QoS this node's subscription (reliable, keep_last 4) cannot match" in log
    finally:
        collector.close()
        process.stop(signal.SIGINT)


def test_large_frames_lost_without_the_profile_are_reported_as_a_fraction(tmp_path: Path) -> None:
    from rclpy.qos import qos_profile_sensor_data

    from vbl_ros.ros.messages import ns_to_stamp

    process, collector = _start(tmp_path, [], fastdds_profile=False)
    try:
        frames = [_image(1920, 1080, seed) for seed in range(2)]
        publisher = collector.node.create_publisher(type(frames[0]), TOPIC, qos_profile_sensor_data)
        matched = collector.wait_for(lambda: publisher.get_subscription_count() > 0, 30)
        assert matched, process.output()[-3000:]
        start = time.monotonic()
        for i in range(24):  # 1.5 s of a 16 Hz camera
            time.sleep(max(0.0, start + i / 16 - time.monotonic()))
            frames[i % 2].header.stamp = ns_to_stamp(time.time_ns())
            publisher.publish(frames[i % 2])
        report = collector.wait_for(
            lambda: (
                (d := collector.diagnostics())
                and int(d["frames_lost"]) > 0
                and "arrive at" in d["_message"]
                and d
            ),
            10,
        )
        values = collector.diagnostics()
        if not report and int(values.get("frames_lost", 0)) == 0 and int(values["frames_received"]) == 24:
            pytest.skip("the middleware delivered every frame without the profile: nothing to report")
        assert report, f"{values}\n{process.output()[-3000:]}"
        message = report["_message"]
        assert f"frames on {TOPIC} arrive at" in message and "lost by the middleware" in message
        assert (
            "(best_effort)" in message and "this node: best_effort, keep_last 4 (image_qos auto)" in message
        )
        assert "config/fastdds_large_frames.xml" in message and "net.core.rmem_max" in message
        assert "lost by the middleware" in process.output()
        assert "Fast DDS profile: none" in process.output()
    finally:
        collector.close()
        process.stop(signal.SIGINT)
