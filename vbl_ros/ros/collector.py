"""The one collector of the ``localize`` node's outputs over DDS, for the demo, the tests and the benchmarks.

:class:`OutputCollector` is an rclpy node in a context of its own (its own ``ROS_DOMAIN_ID``), spun
by a background thread. It subscribes to everything the node publishes (``pose_prior``,
``map_matches``, ``loop_candidates``, ``matches_markers``, ``/diagnostics``) and files each message
by the image stamp it answers, with the monotonic time it arrived. Its :attr:`~OutputCollector.node`
serves to publish camera frames (or replay a bag) into the node under test; :meth:`note_sent`
records when a frame went out, so latencies are ``answered_at - sent_at``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from vbl_ros.localizer import LocalizationResult, LoopCandidate, Match, PosePrior
from vbl_ros.mapping import Keyframe
from vbl_ros.ros.messages import loop_candidates_from_msg, stamp_to_ns

__all__ = ["OUTPUT_TOPICS", "OutputCollector"]

T = TypeVar("T")

#: The node's outputs, by the key the collector files them under (topic names relative to ``namespace``).
OUTPUT_TOPICS: dict[str, type] = {
    "pose_prior": PoseWithCovarianceStamped,
    "map_matches": PointCloud2,
    "loop_candidates": PointCloud2,
    "matches_markers": MarkerArray,
}
#: Topics whose arrival means "the node processed this frame" (it publishes them for every frame).
_ANSWER_TOPICS = ("pose_prior", "map_matches", "matches_markers")


def _stamp_of(key: str, msg: Any) -> int | None:
    if key == "matches_markers":
        return stamp_to_ns(msg.markers[0].header.stamp) if msg.markers else None
    return stamp_to_ns(msg.header.stamp)


class OutputCollector:
    """Everything the ``localize`` node publishes, keyed by the image stamp it answers.

    Args:
        domain_id: the ``ROS_DOMAIN_ID`` of the node under test.
        name: this rclpy node's name.
        namespace: the node's namespace (its outputs are ``<namespace>/pose_prior``, ...).
        status_name: read only the ``/diagnostics`` status of this name (e.g.
            ``vbl: /ns/localize``); ``None``: any vbl node's.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        domain_id: int,
        *,
        name: str = "vbl_output_collector",
        namespace: str = "/",
        status_name: str | None = None,
    ) -> None:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node: Node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self.lock = threading.Lock()
        self._first: dict[str, dict[int, tuple[float, Any]]] = {key: {} for key in OUTPUT_TOPICS}
        self._counts: dict[str, int] = dict.fromkeys(OUTPUT_TOPICS, 0)
        self._sent_at: dict[int, float] = {}
        self._diagnostics: DiagnosticArray | None = None
        self._status_name = status_name
        self.diagnostics_received_at = -math.inf  # monotonic time of the latest diagnostics
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        prefix = namespace.rstrip("/")
        self._subscriptions = [
            self.node.create_subscription(
                msg_type, f"{prefix}/{key}", lambda msg, key=key: self._on_output(key, msg), qos
            )
            for key, msg_type in OUTPUT_TOPICS.items()
        ]
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)
        self._thread = threading.Thread(target=self._spin, name="vbl-collector", daemon=True)
        self._thread.start()

    # --- receiving (executor thread) --------------------------------------------------------------

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def _on_output(self, key: str, msg: Any) -> None:
        now = time.monotonic()
        stamp = _stamp_of(key, msg)
        with self.lock:
            self._counts[key] += 1
            if stamp is not None:
                self._first[key].setdefault(stamp, (now, msg))

    def _is_ours(self, name: str) -> bool:
        return name == self._status_name if self._status_name is not None else name.startswith("vbl:")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any(self._is_ours(status.name) for status in msg.status):
            with self.lock:
                self._diagnostics = msg
                self.diagnostics_received_at = time.monotonic()

    def outputs_matched(self) -> bool:
        """Whether every output topic has a publisher matched to us (answers sent before that are lost)."""
        return all(sub.get_publisher_count() > 0 for sub in self._subscriptions)

    def clear(self) -> None:
        """Forget the frames sent and the answers received (e.g. between passes over one bag)."""
        with self.lock:
            self._sent_at.clear()
            for table in self._first.values():
                table.clear()

    # --- what was sent ----------------------------------------------------------------------------

    def note_sent(self, stamp_ns: int, at: float | None = None) -> None:
        """Record that the frame stamped ``stamp_ns`` was published now (or at monotonic ``at``)."""
        with self.lock:
            self._sent_at[int(stamp_ns)] = time.monotonic() if at is None else at

    def sent_stamps(self) -> list[int]:
        """Stamps of the frames recorded with :meth:`note_sent`, in order."""
        with self.lock:
            return sorted(self._sent_at)

    def sent_at(self, stamp_ns: int) -> float | None:
        with self.lock:
            return self._sent_at.get(int(stamp_ns))

    # --- what was received ------------------------------------------------------------------------

    def message(self, key: str, stamp_ns: int) -> Any | None:
        """The first ``key`` message (``pose_prior``, ``map_matches``, ...) stamped ``stamp_ns``."""
        with self.lock:
            entry = self._first[key].get(int(stamp_ns))
        return entry[1] if entry else None

    def received_at(self, key: str, stamp_ns: int) -> float | None:
        """Monotonic time the first ``key`` message stamped ``stamp_ns`` arrived."""
        with self.lock:
            entry = self._first[key].get(int(stamp_ns))
        return entry[0] if entry else None

    def answered_at(self, stamp_ns: int) -> float | None:
        """When the node's first answer to frame ``stamp_ns`` arrived (prior, matches or markers)."""
        times = [t for key in _ANSWER_TOPICS if (t := self.received_at(key, stamp_ns)) is not None]
        return min(times) if times else None

    def latency_s(self, stamp_ns: int) -> float | None:
        """Seconds from :meth:`note_sent` to the node's first answer to frame ``stamp_ns`` (``None``
        when it was not sent or not answered)."""
        sent, answered = self.sent_at(stamp_ns), self.answered_at(stamp_ns)
        return None if sent is None or answered is None else answered - sent

    def stamps(self, key: str) -> set[int]:
        """Image stamps answered on ``key``."""
        with self.lock:
            return set(self._first[key])

    def answered_stamps(self) -> set[int]:
        """Image stamps the node answered on any topic it publishes for every processed frame."""
        with self.lock:
            return set().union(*(self._first[key] for key in _ANSWER_TOPICS))

    def count(self, key: str) -> int:
        """Messages received on ``key`` (all, not only the first per stamp)."""
        with self.lock:
            return self._counts[key]

    def diagnostics(self) -> dict[str, str]:
        """Values of the node's latest ``/diagnostics`` status, plus ``_message`` and ``_level``
        (empty before the first)."""
        with self.lock:
            msg = self._diagnostics
        if msg is None:
            return {}
        status = next(s for s in msg.status if self._is_ours(s.name))
        return {kv.key: kv.value for kv in status.values} | {
            "_message": status.message,
            "_level": str(int.from_bytes(status.level, "little")),
        }

    def result(self, stamp_ns: int) -> LocalizationResult:
        """What the node said about frame ``stamp_ns``, as the core's result type (for evaluation).

        The prior (when one was published) and the map matches with a pose; the localizer's own
        timings are not measured over DDS (``None``): latencies come from :meth:`latency_s`.
        """
        prior_msg = self.message("pose_prior", stamp_ns)
        prior = None
        if prior_msg is not None:
            p, q = prior_msg.pose.pose.position, prior_msg.pose.pose.orientation
            prior = PosePrior(
                stamp_ns,
                (p.x, p.y, p.z),
                (q.x, q.y, q.z, q.w),
                tuple(prior_msg.pose.covariance),
                math.nan,
                (),
            )
        matches_msg = self.message("map_matches", stamp_ns)
        matches = (
            tuple(
                Match(row.rank, row.score, Keyframe(row.keyframe_stamp_ns, row.position, row.orientation))
                for row in loop_candidates_from_msg(matches_msg)
                if row.position is not None and row.orientation is not None
            )
            if matches_msg is not None
            else ()
        )
        loops_msg = self.message("loop_candidates", stamp_ns)
        loops = (
            tuple(
                LoopCandidate(row.rank, row.score, row.keyframe_stamp_ns, row.position, row.orientation)
                for row in loop_candidates_from_msg(loops_msg)
            )
            if loops_msg is not None
            else ()
        )
        return LocalizationResult(
            stamp_ns=stamp_ns,
            pose_prior=prior,
            matches=matches,
            loop_candidates=loops,
            rejected_reason=None,
            descriptor_ms=None,  # not measured over DDS
            search_ms=None,
        )

    # --- waiting ----------------------------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout_s: float,
        *,
        every: Callable[[], object] | None = None,
        every_s: float = 1.0,
    ) -> T | None:
        """Poll ``predicate()`` until it is truthy (returned) or ``timeout_s`` passes (``None``).

        ``every`` is called at once and then every ``every_s`` seconds (e.g. to publish again).
        """
        deadline = time.monotonic() + timeout_s
        next_call = 0.0
        while True:
            if every is not None and time.monotonic() >= next_call:
                every()
                next_call = time.monotonic() + every_s
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def close(self) -> None:
        """Stop spinning and shut this context down."""
        self._executor.shutdown()
        self._thread.join(5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> OutputCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
