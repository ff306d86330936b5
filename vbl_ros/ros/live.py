"""Live evaluation: a bag replayed over DDS into the ``localize`` node as on the robot, and what it published.

:func:`replay_live` is the evaluation's one contact with a running node. It starts the installed
``localize`` executable exactly as on the robot (the params file, the map and model as parameters,
the image topic remapped; :mod:`vbl_ros.ros.process`), replays the bag's camera into it over DDS at
the bag's pace or ``rate`` times it (:func:`vbl_ros.ros.replay.replay_bag`), collects what it
publishes (:class:`~vbl_ros.ros.collector.OutputCollector`, the one collector) and reads the node's own frame counts from
``/diagnostics``. It also samples the node process's resident memory.

Each run puts the node in a namespace of its own (``-r __ns:=/vbl_evaluate_<pid>_<n>``), so another
node on the same ``ROS_DOMAIN_ID`` is neither heard nor fed; the replay waits for the DDS matches
before the first frame, so no frame is lost to discovery.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rclpy.qos import QoSProfile, ReliabilityPolicy

from vbl_ros.bags import open_reader
from vbl_ros.errors import VblError
from vbl_ros.evaluation import FrameCounts
from vbl_ros.localizer import LocalizationResult
from vbl_ros.ros.collector import OutputCollector
from vbl_ros.ros.process import find_share_file, localize_command, start_localize, stop_process
from vbl_ros.ros.replay import replay_bag

__all__ = ["LiveRun", "replay_live"]

logger = logging.getLogger(__name__)

_LINGER_S = 0.5  # how long the replay's publisher outlives the last frame
_SETTLE_S = 1.0  # how long the node may take to settle its image subscription's QoS
#: The replay publishes as a reliable camera driver: evaluation counts what the node does, not what a
#: best-effort transport lost on a busy machine (real-size best-effort frames: test_large_frames.py).
_REPLAY_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_runs = itertools.count()
_QUIET_S = 1.5  # a /diagnostics message this long after the last frame has counted every frame it received


@dataclass(frozen=True)
class LiveRun:
    """What the node did with a replayed bag.

    Attributes:
        results: what it published for each frame it answered (pose prior, map matches, loop
            candidates), in stamp order; the localizer's own timings are not measured over DDS (``None``).
        latencies_ms: per result, image published -> first output received.
        frames: sent (published), processed, dropped (by the node as stale, or never received),
            rejected (processed without a prior) and bad (undecodable, or failed), from the node's
            ``/diagnostics``.
        diagnostics: the node's last ``/diagnostics`` values.
        node_rss_mib: ``(seconds since the node started, resident memory MiB)`` samples.
        node_log: the node's output.
    """

    results: tuple[LocalizationResult, ...]
    latencies_ms: tuple[float, ...]
    frames: FrameCounts
    diagnostics: dict[str, str]
    node_rss_mib: tuple[tuple[float, float], ...]
    node_log: Path


class _RssSampler:
    """Samples a process's resident memory (``/proc/<pid>/status``) every ``period_s`` in a thread."""

    def __init__(self, pid: int, period_s: float) -> None:
        self.samples: list[tuple[float, float]] = []
        self._path = Path(f"/proc/{pid}/status")
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.is_set():
            try:
                text = self._path.read_text()
            except OSError:
                return  # the process is gone (or no /proc here)
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.monotonic() - self._start, int(line.split()[1]) / 1024))
            self._stop.wait(period_s)

    def stop(self) -> tuple[tuple[float, float], ...]:
        self._stop.set()
        self._thread.join(5.0)
        return tuple(self.samples)


def replay_live(
    map_dir: Path | str,
    bag: Path | str,
    out_dir: Path | str,
    *,
    model: Path | str | None = None,
    camera_topic: str,
    compressed: bool,
    rate: float = 1.0,
    device: str = "auto",
    params_file: Path | str | None = None,
    repeat: int = 1,
    domain_id: int | None = None,
    odometry_topic: str | None = None,
    node_start_timeout_s: float = 120.0,
    settle_timeout_s: float = 60.0,
    rss_period_s: float = 1.0,
) -> LiveRun:
    """Replay ``bag``'s camera into a fresh ``localize`` node running ``map_dir`` and collect its outputs.

    Args:
        map_dir: the map (``-p map:=``). model: its model (``-p model:=``; ``None``: the default).
        bag: the query bag. out_dir: where the node's log goes (``localize_<bag>.log``).
        camera_topic: the bag's image topic; ``compressed``: whether it holds ``CompressedImage``.
        rate: pace relative to the bag's. device: ``-p device:=``.
        params_file: the node's parameters file (``None``: the package's ``config/localize.yaml``).
        repeat: replay the bag this many times into the same node (a soak); ``results`` and
            ``latencies_ms`` are then those of the last pass, ``frames`` the totals.
        domain_id: the ``ROS_DOMAIN_ID`` of this private run (``None``: ``VBL_EVALUATE_DOMAIN_ID``,
            else one derived from the process id).
        odometry_topic: also replay this ``nav_msgs/Odometry`` topic of the bag into the node's
            ``odometry`` input, in bag-time order with the frames, and start it with
            ``use_odometry: true`` (``None``: the camera only).
        node_start_timeout_s: how long the node may take to come up.
        settle_timeout_s: how long to wait, after the last frame, for the node to account for every
            frame it received.
        rss_period_s: seconds between two samples of the node's memory.

    Raises:
        VblError: the node exited, or did not come up in time (its log says why).
    """
    bag, out_dir = Path(bag), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if domain_id is None:
        domain_id = int(os.environ.get("VBL_EVALUATE_DOMAIN_ID", 101 + os.getpid() % 100))
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    header_stamps = _header_stamps(bag, camera_topic)
    last_frame = header_stamps[max(header_stamps)] if header_stamps else None
    # a namespace of its own: another node on the same domain is neither heard nor fed
    namespace = f"/vbl_evaluate_{os.getpid()}_{next(_runs)}"
    image_topic = f"{namespace}/image" + ("/compressed" if compressed else "")
    topics = {camera_topic: image_topic}
    if odometry_topic is not None:
        topics[odometry_topic] = f"{namespace}/odometry"
    command = localize_command(
        params_file=Path(params_file) if params_file else find_share_file("config/localize.yaml"),
        parameters={
            "map": str(Path(map_dir).absolute()),
            "model": str(Path(model).absolute()) if model is not None else "",
            "device": device,
            "image_transport": "compressed" if compressed else "raw",
            "use_odometry": odometry_topic is not None,
        },
        remappings={"__ns": namespace, "image": image_topic},
    )
    log_path = out_dir / f"localize_{bag.name}.log"
    logger.info("starting the localize node (ROS_DOMAIN_ID %d): %s", domain_id, " ".join(command))
    process = start_localize(command, domain_id=domain_id, log_path=log_path)
    memory = _RssSampler(process.pid, rss_period_s)
    collector = OutputCollector(
        domain_id, name="vbl_evaluate_player", namespace=namespace, status_name=f"vbl: {namespace}/localize"
    )
    node = collector.node
    sent = 0
    latencies: list[float] = []
    try:
        # ready: it publishes diagnostics, and its outputs reach us (an answer sent before a match is lost)
        _wait(
            lambda: bool(collector.diagnostics()) and collector.outputs_matched(),
            node_start_timeout_s,
            process,
            log_path,
            "come up",
        )

        def matched() -> bool:
            """Called by the replay before each frame: the first waits until the node hears the replay."""
            if not first_frame.is_set():
                publisher = next(p for p in node.publishers if p.topic_name == image_topic)
                _wait(lambda: publisher.get_subscription_count() > 0, 10.0, process, log_path, "subscribe")
                # the node matches its subscription's reliability to the publishers it discovers
                # (image_qos auto) and may re-create it once: let that settle, then match again
                time.sleep(_SETTLE_S)
                _wait(lambda: publisher.get_subscription_count() > 0, 10.0, process, log_path, "subscribe")
                first_frame.set()
            return False

        def on_publish(topic: str, bag_time_ns: int) -> None:
            nonlocal sent
            if topic != camera_topic:
                return  # odometry
            sent += 1
            stamp = header_stamps.get(bag_time_ns, bag_time_ns)
            collector.note_sent(stamp)
            if stamp == last_frame:
                # replay_bag destroys its publisher right after the last frame, and a best-effort
                # writer destroyed at once can take its last sample with it: let it go out first
                time.sleep(_LINGER_S)

        for number in range(repeat):
            if number:
                collector.clear()
            logger.info("replaying %s into the node at %gx (pass %d of %d)", bag, rate, number + 1, repeat)
            first_frame = threading.Event()
            replay_bag(
                node,
                bag,
                topics,
                rate=rate,
                on_publish=on_publish,
                should_stop=matched,
                qos=_REPLAY_QOS,
            )
            last_sent = time.monotonic()

            def accounted(total: int = sent, after: float = last_sent) -> bool:
                """Every frame sent is accounted for, or every frame received and no more to come."""
                frames = _frame_counts(collector.diagnostics(), total)
                done = frames.processed + frames.bad + frames.dropped  # dropped: also never received
                quiet = collector.diagnostics_received_at > after + _QUIET_S
                return done >= total and (quiet or frames.dropped == 0)

            if not _wait(
                accounted, settle_timeout_s, process, log_path, "account for every frame", fail=False
            ):
                logger.warning(
                    "the node had not accounted for every frame %.0f s after the last one", settle_timeout_s
                )
            time.sleep(0.2)  # outputs published just before the counters were updated
            answered = sorted(s for s in collector.answered_stamps() if collector.sent_at(s) is not None)
            latencies = [1000 * (collector.latency_s(s) or math.nan) for s in answered]
        results = tuple(collector.result(s) for s in answered)
        values = {k: v for k, v in collector.diagnostics().items() if not k.startswith("_")}
    finally:
        code = stop_process(process)
        rss = memory.stop()
        collector.close()
    logger.info("the localize node stopped with exit code %s", code)
    frames = _frame_counts(values, sent)
    logger.info("%s live: %s; node diagnostics %s", bag.name, frames, values)
    return LiveRun(results, tuple(latencies), frames, values, rss, log_path)


def _frame_counts(values: dict[str, str], sent: int) -> FrameCounts:
    """The node's counts; frames it never received count as dropped."""

    def count(key: str) -> int:
        return int(values.get(key, 0))

    received = count("frames_received")
    return FrameCounts(
        sent=sent,
        processed=count("frames_processed"),
        dropped=count("frames_dropped") + max(0, sent - received),
        rejected=count("frames_rejected"),
        bad=count("frames_bad") + count("frames_failed"),
    )


def _header_stamps(bag: Path, topic: str) -> dict[int, int]:
    """Bag time -> header stamp of the camera messages (the node answers with the header stamp)."""
    stamps = {}
    with open_reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, bag_time_ns, raw in reader.messages(connections=connections):
            header = reader.deserialize(raw, connection.msgtype).header
            stamps[bag_time_ns] = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return stamps


def _wait(
    predicate: Callable[[], bool],
    timeout_s: float,
    process: subprocess.Popen[bytes],
    log_path: Path,
    what: str,
    *,
    fail: bool = True,
) -> bool:
    """Poll ``predicate`` until true; raise (or return false) on timeout, raise if the node exits."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process.poll() is not None:
            raise VblError(
                f"the localize node exited with code {process.returncode} before it could {what}; "
                f"its log {log_path} says:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            if fail:
                raise VblError(f"the localize node did not {what} within {timeout_s:g} s; see {log_path}")
            return False
        time.sleep(0.1)
    return True


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
