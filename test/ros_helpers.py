"""Helpers for tests over real DDS: the installed ``localize`` executable and a probe around the collector.

Every run gets its own ``ROS_DOMAIN_ID`` (from the pid and a counter) and discovery limited to
this host, so parallel test runs do not see each other.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vbl_ros.ros.process import ros_env

REPO = Path(__file__).resolve().parents[1]
LOCALIZE = Path(sys.executable).with_name("localize")
PARAMS_FILE = "config/localize.yaml"  # relative to REPO, as the tests run the node from there
_counter = itertools.count()


def unique_domain_id() -> int:
    """A ROS domain id (1..100) that differs between test processes and calls."""
    return 1 + (os.getpid() * 13 + next(_counter) * 7) % 100


class LocalizeProcess:
    """The ``localize`` executable started exactly as ``ros2 launch`` would start it (with the
    packaged Fast DDS profile in its environment, unless ``fastdds_profile`` is false)."""

    def __init__(
        self, ros_args: Sequence[str], domain_id: int, log_path: Path, *, fastdds_profile: bool = True
    ) -> None:
        self.command = [str(LOCALIZE), "--ros-args", *ros_args]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=ros_env(domain_id, fastdds_profile=fastdds_profile),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None, timeout_s: float = 10.0) -> int | None:
        """Send ``sig`` (if given) and wait; kill if it does not exit. Returns the exit status."""
        if self.proc.poll() is None and sig is not None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None
        finally:
            self._log.close()


class Probe:
    """The node's outputs (the shared :class:`~vbl_ros.ros.collector.OutputCollector`) plus a test's
    camera and odometry publishers, in a context of their own on the node's domain."""

    def __init__(self, domain_id: int, *, compressed: bool = False, image_topic: str = "/cam/image") -> None:
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from vbl_ros.ros.collector import OutputCollector

        self.collector = OutputCollector(domain_id, name="vbl_test_probe")
        self.node = self.collector.node
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(
            CompressedImage if compressed else Image, image_topic, qos
        )
        self.odom_pub = self.node.create_publisher(Odometry, "/odom", qos)

    def close(self) -> None:
        self.collector.close()

    def spin_until(self, predicate: Callable[[], Any], timeout_s: float, *, every: Callable | None = None):
        """Wait until ``predicate()`` is truthy (returned) or the timeout (``None``).

        ``every`` is called once a second (e.g. to publish again until the node answers).
        """
        return self.collector.wait_for(predicate, timeout_s, every=every)

    def wait_for_node(self, process: LocalizeProcess, timeout_s: float = 60.0) -> None:
        """Wait until the node's image subscription is matched (it subscribes once ready)."""

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"localize exited with {process.proc.returncode}:\n{process.output()}")
            return self.image_pub.get_subscription_count() > 0

        if not self.spin_until(ready, timeout_s):
            raise AssertionError(f"localize did not subscribe within {timeout_s} s:\n{process.output()}")

    def find(self, key: str, stamp_ns: int) -> tuple[float, Any] | None:
        """The first message on ``key`` whose header stamp is ``stamp_ns``, with its arrival time."""
        msg = self.collector.message(key, stamp_ns)
        if msg is None:
            return None
        received_at = self.collector.received_at(key, stamp_ns)
        assert received_at is not None
        return received_at, msg

    def diagnostics(self) -> dict[str, str]:
        """Values of the latest diagnostics message (empty before the first)."""
        return self.collector.diagnostics()
