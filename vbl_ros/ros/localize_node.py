"""The ``localize`` node: camera frames in; pose priors, loop-closure candidates, markers out.

Topics (relative names, remap them):

- subscribes ``image`` (``sensor_msgs/Image`` or, with ``image_transport:=compressed``,
  ``sensor_msgs/CompressedImage``; reliability per ``image_qos``, by default matched to the
  publishers found on the topic) and, with ``use_odometry:=true``, ``odometry`` (``nav_msgs/Odometry``);
- publishes ``pose_prior`` (``geometry_msgs/PoseWithCovarianceStamped``), ``loop_candidates``
  (``sensor_msgs/PointCloud2`` table, see :mod:`vbl_ros.ros.messages`), ``map_matches`` (the
  top-k map keyframes of every processed frame, same table), ``matches_markers``
  (``visualization_msgs/MarkerArray``) and ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``).

The image callback only keeps the newest frame; one worker thread decodes, localizes and
publishes, so a slow network never makes a queue grow or blocks the executor (latest frame wins;
overwritten frames are counted as dropped). Frames the middleware lost on the way (reported by
DDS) are counted too, and when publishers exist but frames do not arrive, or arrive at a fraction
of their rate, the log and ``/diagnostics`` say so with the QoS of both sides. With
``prior_mode:=filtered`` the priors come from the core's temporal filter and ``/diagnostics``
reports its state (``initializing`` / ``tracking`` / ``lost``) and belief spread; without
``use_odometry`` (or before the first odometry message) the filter moves on its bounded speed prior
and asks for twice as many confirming frames before it publishes. ``/diagnostics`` also reports
the loop detector: ``loop_mode`` (single-frame or confirmed over ``loop_confirm_frames``),
``loop_state`` after the last frame (``collecting`` / ``searching`` / ``locked``, or
``single-frame``), ``loop_session_keyframes`` and ``loop_candidate_messages``. The core's
``logging`` records go to this node's ROS logger (:mod:`vbl_ros.ros.log_bridge`).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.event_handler import (
    QoSMessageLostInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.subscription import Subscription
from rclpy.topic_endpoint_info import TopicEndpointInfo
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from vbl_ros.errors import BadFrameError, VblError
from vbl_ros.export import build_extractor
from vbl_ros.localizer import Localizer, LocalizerConfig
from vbl_ros.mapping import KeyframeMap
from vbl_ros.mapping.adapt import resolve_model
from vbl_ros.ros.log_bridge import RosLogHandler, forward_core_logs, stop_forwarding
from vbl_ros.ros.messages import (
    compressed_to_rgb,
    diagnostics_to_msg,
    image_to_rgb,
    loop_candidates_to_msg,
    map_matches_to_msg,
    markers_to_msg,
    odometry_to_pose,
    pose_prior_to_msg,
    stamp_to_ns,
)
from vbl_ros.ros.middleware import PROFILE_VARIABLE, socket_buffer_problem
from vbl_ros.ros.params import NodeParams, declare_and_read, unknown_overrides

__all__ = ["IMAGE_HISTORY_DEPTH", "LocalizeNode", "build_localizer", "describe_qos", "main"]

_THROTTLE_S = 5.0
_LATENCY_WINDOW = 512
_ODOMETRY_BUFFER = 400
#: Middleware history of the image subscription (KEEP_LAST). Not a processing queue: the callback
#: takes every frame as it completes and the node keeps only the newest. It lets a reliable reader
#: finish a large frame whose lost fragments are being resent while the next ones arrive; with 1,
#: the newer frame evicts the incomplete one (measured with 1920x1080 frames at 16 Hz: 5 of 16
#: arrived with 1, 18 of 24 with 2 beside the node's own work, 24 of 24 with 4; docs/ros_interface.md).
IMAGE_HISTORY_DEPTH = 4
_TRANSPORT_HINT = (
    "frames larger than ~0.5 MB from a best-effort publisher reach this node only with its Fast DDS "
    "profile (config/fastdds_large_frames.xml, which the launch file sets) and net.core.rmem_max >= "
    "4 MiB, or from a reliable publisher (docs/ros_interface.md, 'Large camera frames')"
)


def build_localizer(params: NodeParams, config: LocalizerConfig) -> Localizer:
    """The core localizer the node parameters describe (model, runtime, device, threads, optional map).

    An exported model (``.onnx``) in ONNX Runtime or OpenVINO never imports PyTorch. An empty
    ``precision`` is ``auto`` (:func:`~vbl_ros.export.build_extractor`: bf16 in OpenVINO on a CPU
    that runs it natively, else the runtime's fp32), as ``vbl evaluate --offline`` reads it.
    """
    extractor = build_extractor(
        resolve_model(params.model or None, params.map or None),  # a map may carry its model (--adapt)
        runtime=params.runtime,
        device=params.device,
        threads=params.inference_threads,
        precision=params.precision or "auto",
        batch_size=1,
    )
    keyframe_map = (
        KeyframeMap.load(params.map, expected_fingerprint=extractor.fingerprint) if params.map else None
    )
    return Localizer(extractor, keyframe_map, config)


class _Stats:
    """Counters and latency windows shared by the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad = 0
        self.rejected = 0
        self.priors = 0
        self.loop_messages = 0
        self.odometry = 0
        self.failed = 0
        self.inference_threads = 0
        self.lost = 0
        self.lost_at_last_report = 0
        self.received_at_last_report = 0
        self.last_bad = ""
        self.last_rejected = ""
        self.filter_state = "off"  # prior_mode single: no temporal filter
        self.filter_spread_m = float("nan")
        self.loop_state = "collecting"
        self.session_keyframes = 0
        self.last_received = 0.0
        self.bad_at_last_report = 0
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.descriptor_ms: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.search_ms: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)


def _loop_mode(confirm_frames: int) -> str:
    """How loop candidates are made (``/diagnostics``)."""
    return "single-frame" if confirm_frames == 1 else f"confirmed over {confirm_frames} frames"


def _percentile(values: collections.deque[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def describe_qos(qos: QoSProfile) -> str:
    """``reliable, keep_last 4`` for a QoS profile (what logs and diagnostics show of a side)."""
    if qos.history == HistoryPolicy.UNKNOWN:  # a remote endpoint: DDS does not announce its history
        return qos.reliability.name.lower()
    depth = f" {qos.depth}" if qos.history == HistoryPolicy.KEEP_LAST else ""
    return f"{qos.reliability.name.lower()}, {qos.history.name.lower()}{depth}"


def _describe_publishers(publishers: list[TopicEndpointInfo]) -> str:
    if not publishers:
        return "none"
    return "; ".join(
        f"{p.node_namespace.rstrip('/')}/{p.node_name} ({describe_qos(p.qos_profile)})" for p in publishers
    )


class LocalizeNode(Node):
    """Visual localization against a keyframe map, with loop-closure candidates for SLAM."""

    def __init__(self, *, localizer: Localizer | None = None, **kwargs: Any) -> None:
        # What destroy_node() tears down exists before anything can fail, so a failed start is
        # reported once, not followed by a second traceback from tearing down a half-built node.
        self._lock = threading.Condition()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._log_handler: RosLogHandler | None = None
        super().__init__("localize", **kwargs)
        self._params, config = declare_and_read(self)
        for name in unknown_overrides(self):
            self.get_logger().warning(f"parameter {name!r} is set but not used by this node (typo?)")
        self.get_logger().info(f"parameters: {self._params}, {config}")
        self.get_logger().info(
            f"Fast DDS profile: {os.environ.get(PROFILE_VARIABLE) or 'none (the middleware defaults)'}"
        )
        buffer_problem = socket_buffer_problem()
        if buffer_problem:
            self.get_logger().warning(buffer_problem)

        started = time.monotonic()
        self._log_handler = forward_core_logs(self.get_logger())  # model and map loading log too
        try:
            self._localizer = localizer if localizer is not None else build_localizer(self._params, config)
        except Exception:
            stop_forwarding(self._log_handler)
            raise
        self._input_size: tuple[int, int] = self._localizer.extractor.input_size
        self.get_logger().info(
            f"model and map loaded in {time.monotonic() - started:.1f} s "
            f"(map: {self._params.map or 'none, loop-closure candidates only'})"
        )

        self._pending: tuple[Image | CompressedImage, float] | None = None
        self._stats = _Stats()
        self._stats.loop_state = self._localizer.loop_state
        self._odometry: collections.deque[tuple[int, tuple, tuple]] = collections.deque(
            maxlen=_ODOMETRY_BUFFER
        )

        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._prior_pub = self.create_publisher(PoseWithCovarianceStamped, "pose_prior", out_qos)
        self._loop_pub = self.create_publisher(PointCloud2, "loop_candidates", out_qos)
        self._matches_pub = self.create_publisher(PointCloud2, "map_matches", out_qos)
        self._marker_pub = self.create_publisher(MarkerArray, "matches_markers", out_qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)

        self._worker = threading.Thread(target=self._work, name="localize-worker", daemon=True)
        self._worker.start()

        self._image_type = CompressedImage if self._params.image_transport == "compressed" else Image
        self._image_topic = self.resolve_topic_name("image")
        self._image_publishers: list[TopicEndpointInfo] = self.get_publishers_info_by_topic(self._image_topic)
        self._image_publishers_since: float | None = time.monotonic() if self._image_publishers else None
        self._image_sub = self._subscribe_images(self._wanted_reliability(self._image_publishers))
        self._odom_sub = None
        if self._params.use_odometry:
            self._odom_sub = self.create_subscription(
                Odometry, "odometry", self._on_odometry, qos_profile_sensor_data
            )
        self._diag_timer = self.create_timer(self._params.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"ready: {self._image_type.__name__} on {self._image_sub.topic_name} "
            f"({describe_qos(self._image_sub.qos_profile)}; image_qos {self._params.image_qos}, "
            f"publishers: {_describe_publishers(self._image_publishers)})"
            + (f", odometry on {self._odom_sub.topic_name}" if self._odom_sub else "")
        )

    # --- the image subscription and its QoS -----------------------------------------------------

    def _wanted_reliability(self, publishers: list[TopicEndpointInfo]) -> ReliabilityPolicy:
        """``image_qos`` as a reliability: ``auto`` is reliable when every publisher is, as rosbag2 does."""
        if self._params.image_qos == "reliable":
            return ReliabilityPolicy.RELIABLE
        if self._params.image_qos == "best_effort":
            return ReliabilityPolicy.BEST_EFFORT
        reliable = [p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers]
        return ReliabilityPolicy.RELIABLE if reliable and all(reliable) else ReliabilityPolicy.BEST_EFFORT

    def _subscribe_images(self, reliability: ReliabilityPolicy) -> Subscription:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=IMAGE_HISTORY_DEPTH,
            reliability=reliability,
            durability=DurabilityPolicy.VOLATILE,
        )
        events = SubscriptionEventCallbacks(
            message_lost=self._on_frames_lost, incompatible_qos=self._on_incompatible_publisher
        )
        return self.create_subscription(
            self._image_type, self._image_topic, self._on_image, qos, event_callbacks=events
        )

    def _check_publishers(self) -> None:
        """Follow the publishers on the image topic; with ``image_qos: auto``, re-subscribe when they
        call for the other reliability (a frame in flight during the switch can be lost)."""
        publishers = self.get_publishers_info_by_topic(self._image_topic)
        if publishers and not self._image_publishers:
            self._image_publishers_since = time.monotonic()
        elif not publishers:
            self._image_publishers_since = None
        self._image_publishers = publishers
        wanted = self._wanted_reliability(publishers)
        if wanted != self._image_sub.qos_profile.reliability:
            self.destroy_subscription(self._image_sub)
            self._image_sub = self._subscribe_images(wanted)
            self.get_logger().info(
                f"image subscription now {describe_qos(self._image_sub.qos_profile)} to match the "
                f"publishers on {self._image_topic}: {_describe_publishers(publishers)}"
            )

    def _on_frames_lost(self, info: QoSMessageLostInfo) -> None:
        with self._lock:
            self._stats.lost += int(info.total_count_change)

    def _on_incompatible_publisher(self, info: QoSRequestedIncompatibleQoSInfo) -> None:
        self.get_logger().warning(
            f"a publisher on {self._image_topic} offers a QoS this node's subscription "
            f"({describe_qos(self._image_sub.qos_profile)}) cannot match (policy "
            f"{info.last_policy_kind.name.removeprefix('RMW_QOS_POLICY_').lower()}); "
            "set image_qos to auto or best_effort",
            throttle_duration_sec=_THROTTLE_S,
        )

    # --- callbacks (executor thread): short, never block ----------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pending is not None:
                self._stats.dropped += 1
            self._pending = (msg, now)
            self._stats.received += 1
            self._stats.last_received = now
            self._lock.notify()

    def _on_odometry(self, msg: Odometry) -> None:
        position, orientation = odometry_to_pose(msg)
        with self._lock:
            self._odometry.append((stamp_to_ns(msg.header.stamp), position, orientation))
            self._stats.odometry += 1

    # --- worker thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        # torch's intra-op thread count as this thread (where inference runs) sees it: the value
        # DescriptorExtractor set (OpenMP settings are per thread; other libraries may change the
        # main thread's). Other runtimes run with the threads they were given (torch may still be
        # imported, e.g. to export a .pt model for ONNX Runtime, but does not run the network).
        torch = sys.modules.get("torch")
        in_torch = getattr(self._localizer.extractor, "runtime", "torch") == "torch"
        threads = (
            torch.get_num_threads() if torch is not None and in_torch else self._params.inference_threads
        )
        with self._lock:
            self._stats.inference_threads = threads
        while True:
            with self._lock:
                while self._pending is None and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                msg, received = self._pending
                self._pending = None
            try:
                self._process(msg, received)
            except Exception as err:  # keep the node alive; the error is logged and counted
                if self._stopping:
                    return
                with self._lock:
                    self._stats.failed += 1
                self.get_logger().error(
                    f"processing a frame failed: {type(err).__name__}: {err}",
                    throttle_duration_sec=_THROTTLE_S,
                )

    def _odometry_near(self, stamp_ns: int) -> tuple[tuple | None, tuple | None]:
        with self._lock:
            if not self._odometry:
                return None, None
            _, position, orientation = min(self._odometry, key=lambda o: abs(o[0] - stamp_ns))
        return position, orientation

    def _process(self, msg: Image | CompressedImage, received: float) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, min_size=self._input_size)
            else:
                rgb = image_to_rgb(msg, min_size=self._input_size)
        except BadFrameError as err:
            with self._lock:
                self._stats.bad += 1
                self._stats.last_bad = str(err)
            self.get_logger().warning(
                f"bad frame (stamp {stamp_ns} ns) skipped: {err}", throttle_duration_sec=_THROTTLE_S
            )
            return
        position, orientation = self._odometry_near(stamp_ns) if self._params.use_odometry else (None, None)
        result = self._localizer.process(rgb, stamp_ns, odom_position=position, odom_orientation=orientation)
        if self._stopping:
            return
        prior = pose_prior_to_msg(result, self._params.map_frame)
        if prior is not None:
            self._prior_pub.publish(prior)
        self._matches_pub.publish(map_matches_to_msg(result, self._params.map_frame))
        if result.loop_candidates:
            self._loop_pub.publish(loop_candidates_to_msg(result, self._params.odom_frame))
        self._marker_pub.publish(
            markers_to_msg(result, self._params.map_frame, sphere_diameter=self._params.marker_diameter)
        )
        latency_ms = (time.monotonic() - received) * 1000.0
        with self._lock:
            stats = self._stats
            stats.processed += 1
            stats.priors += prior is not None
            stats.loop_messages += bool(result.loop_candidates)
            stats.latency_ms.append(latency_ms)
            if result.descriptor_ms is not None and result.search_ms is not None:
                stats.descriptor_ms.append(result.descriptor_ms)
                stats.search_ms.append(result.search_ms)
            stats.loop_state = self._localizer.loop_state
            stats.session_keyframes = self._localizer.session_keyframes
            if result.filter_state is not None:
                stats.filter_state = result.filter_state
                stats.filter_spread_m = result.filter_spread_m
            if result.rejected_reason:
                stats.rejected += 1
                stats.last_rejected = str(result.rejected_reason)
        if result.rejected_reason and self._params.map:
            self.get_logger().info(
                f"no pose prior for frame {stamp_ns}: {result.rejected_reason}",
                throttle_duration_sec=_THROTTLE_S,
            )

    # --- diagnostics -----------------------------------------------------------------------------

    def diagnostics_values(self) -> dict[str, Any]:
        """The numbers published on ``/diagnostics`` (a snapshot)."""
        with self._lock:
            s = self._stats
            return {
                "frames_received": s.received,
                "frames_processed": s.processed,
                "frames_dropped": s.dropped,
                "frames_rejected": s.rejected,
                "frames_bad": s.bad,
                "frames_failed": s.failed,
                "frames_lost": s.lost,
                "pose_priors_published": s.priors,
                "loop_candidate_messages": s.loop_messages,
                "odometry_messages": s.odometry if self._params.use_odometry else "(use_odometry false)",
                "latency_p50_ms": _percentile(s.latency_ms, 50),
                "latency_p95_ms": _percentile(s.latency_ms, 95),
                "latency_max_ms": max(s.latency_ms) if s.latency_ms else float("nan"),
                "descriptor_p50_ms": _percentile(s.descriptor_ms, 50),
                "search_p50_ms": _percentile(s.search_ms, 50),
                "last_bad_frame": s.last_bad,
                "last_rejected_reason": s.last_rejected,
                "prior_mode": self._localizer.config.prior_mode,
                "filter_state": s.filter_state,
                "filter_spread_m": s.filter_spread_m,
                "loop_mode": _loop_mode(self._localizer.config.loop_confirm_frames),
                "loop_state": s.loop_state,
                "loop_session_keyframes": s.session_keyframes,
                "image_topic": self._image_topic,
                "image_qos": f"{describe_qos(self._image_sub.qos_profile)} ({self._params.image_qos})",
                "image_publishers": _describe_publishers(self._image_publishers),
                "map": self._params.map or "(none)",
                "device": self._params.device,
                "runtime": self._localizer.extractor.runtime,
                "inference_threads": s.inference_threads,
            }

    def _transport_problem(self) -> str | None:
        """Publishers whose frames do not arrive, or arrive at a fraction of their rate; else ``None``.

        Reads and resets the counts since the last report (called once per diagnostics period).
        """
        now = time.monotonic()
        with self._lock:
            stats = self._stats
            new_received = stats.received - stats.received_at_last_report
            new_lost = stats.lost - stats.lost_at_last_report
            stats.received_at_last_report, stats.lost_at_last_report = stats.received, stats.lost
            last_received = stats.last_received if stats.received else None
        sides = (
            f"publishers: {_describe_publishers(self._image_publishers)}; "
            f"this node: {describe_qos(self._image_sub.qos_profile)} (image_qos {self._params.image_qos})"
        )
        if new_lost:
            share = 100.0 * new_received / (new_received + new_lost)
            return (
                f"frames on {self._image_topic} arrive at {share:.0f} % of the publishers' rate "
                f"({new_received} received, {new_lost} lost by the middleware since the last report); "
                f"{sides}; {_TRANSPORT_HINT}"
            )
        if self._image_publishers and self._image_publishers_since is not None:
            quiet_s = now - max(self._image_publishers_since, last_received or 0.0)
            if quiet_s > 5.0 * max(self._params.diagnostics_period, 1.0):
                return (
                    f"{len(self._image_publishers)} publisher(s) on {self._image_topic} but no frame arrived "
                    f"in {quiet_s:.0f} s; {sides}; {_TRANSPORT_HINT}"
                )
        return None

    def _publish_diagnostics(self) -> None:
        self._check_publishers()
        problem = self._transport_problem()
        if problem:
            self.get_logger().warning(problem, throttle_duration_sec=_THROTTLE_S)
        values = self.diagnostics_values()
        with self._lock:
            new_bad = self._stats.bad - self._stats.bad_at_last_report
            self._stats.bad_at_last_report = self._stats.bad
            silent_s = time.monotonic() - self._stats.last_received if self._stats.received else None
        if problem:
            level, message = DiagnosticStatus.WARN, problem
        elif not self._image_publishers:
            level, message = DiagnosticStatus.WARN, f"no publisher on {self._image_topic}"
        elif values["frames_received"] == 0:
            level, message = DiagnosticStatus.WARN, "no image received yet"
        elif silent_s is not None and silent_s > 5.0 * max(self._params.diagnostics_period, 1.0):
            level, message = DiagnosticStatus.WARN, f"no image for {silent_s:.0f} s"
        elif new_bad:
            level, message = DiagnosticStatus.WARN, f"{new_bad} bad frame(s) since the last report"
        else:
            level, message = DiagnosticStatus.OK, "localizing"
        self._diag_pub.publish(
            diagnostics_to_msg(
                name=f"vbl: {self.get_fully_qualified_name()}",
                hardware_id=self._params.device,
                level=level,
                message=message,
                values=values,
                stamp=self.get_clock().now().to_msg(),
            )
        )

    # --- shutdown --------------------------------------------------------------------------------

    def stop_worker(self, timeout_s: float = 5.0) -> None:
        """Stop the worker thread (it finishes the frame it is on, if any)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        worker = self._worker
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(timeout_s)

    def destroy_node(self) -> None:
        self.stop_worker()
        if self._log_handler is not None:
            stop_forwarding(self._log_handler)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``localize`` executable; returns the process exit status."""
    try:
        with rclpy.init(args=args):
            try:
                node = LocalizeNode()
            except VblError as err:
                rclpy.logging.get_logger("localize").fatal(f"cannot start: {type(err).__name__}: {err}")
                return 2
            except Exception:
                if rclpy.ok():
                    raise
                # Ctrl-C or SIGTERM while the model was loading: the context is gone, stop quietly.
                rclpy.logging.get_logger("localize").info("interrupted while starting")
                return 0
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
