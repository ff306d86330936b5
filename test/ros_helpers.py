"""Helpers for tests over real DDS: the installed ``localize`` executable and an rclpy probe node.

Every run gets its own ``ROS_DOMAIN_ID`` (from the pid and a counter) and discovery limited to
this host, so parallel test runs do not see each other.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
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
    """The ``localize`` executable started exactly as ``ros2 launch`` would start it."""

    def __init__(self, ros_args: Sequence[str], domain_id: int, log_path: Path) -> None:
        self.command = [str(LOCALIZE), "--ros-args", *ros_args]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=ros_env(domain_id),
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
    """An rclpy node in its own context that publishes to and listens to the node under test."""

    def __init__(self, domain_id: int, *, compressed: bool = False, image_topic: str = "/cam/image") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from nav_msgs.msg import Odometry
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(f"vbl_test_probe_{os.getpid()}_{next(_counter)}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(
            CompressedImage if compressed else Image, image_topic, qos
        )
        self.odom_pub = self.node.create_publisher(Odometry, "/odom", qos)
        self.received: dict[str, list[tuple[float, Any]]] = {
            "pose_prior": [],
            "loop_candidates": [],
            "map_matches": [],
            "matches_markers": [],
            "diagnostics": [],
        }
        for topic, msg_type in (
            ("/pose_prior", PoseWithCovarianceStamped),
            ("/loop_candidates", PointCloud2),
            ("/map_matches", PointCloud2),
            ("/matches_markers", MarkerArray),
            ("/diagnostics", DiagnosticArray),
        ):
            key = topic.lstrip("/")
            self.node.create_subscription(
                msg_type, topic, lambda msg, key=key: self.received[key].append((time.monotonic(), msg)), qos
            )

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def spin_until(self, predicate: Callable[[], Any], timeout_s: float, *, every: Callable | None = None):
        """Spin until ``predicate()`` is truthy (returned) or the timeout (``None``).

        ``every`` is called once a second (e.g. to publish again over best-effort QoS).
        """
        deadline = time.monotonic() + timeout_s
        next_call = 0.0
        while time.monotonic() < deadline:
            if every is not None and time.monotonic() >= next_call:
                every()
                next_call = time.monotonic() + 1.0
            self.executor.spin_once(timeout_sec=0.05)
            value = predicate()
            if value:
                return value
        return None

    def wait_for_node(self, process: LocalizeProcess, timeout_s: float = 60.0) -> None:
        """Wait until the node's image subscription is matched (it subscribes once ready)."""

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"localize exited with {process.proc.returncode}:\n{process.output()}")
            return self.image_pub.get_subscription_count() > 0

        if not self.spin_until(ready, timeout_s):
            raise AssertionError(f"localize did not subscribe within {timeout_s} s:\n{process.output()}")

    def find(self, key: str, stamp_ns: int) -> tuple[float, Any] | None:
        """The first message on ``key`` whose header stamp is ``stamp_ns``."""
        for received_at, msg in self.received[key]:
            stamp = getattr(msg, "header", None)
            if stamp is None and key == "matches_markers":
                stamp = msg.markers[0].header if msg.markers else None
            if stamp is not None and stamp.stamp.sec * 10**9 + stamp.stamp.nanosec == stamp_ns:
                return received_at, msg
        return None

    def diagnostics(self) -> dict[str, str]:
        """Values of the latest diagnostics message (empty before the first)."""
        if not self.received["diagnostics"]:
            return {}
        status = self.received["diagnostics"][-1][1].status[0]
        return {kv.key: kv.value for kv in status.values} | {"_message": status.message}
