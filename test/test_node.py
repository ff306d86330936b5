"""The ``localize`` node over real DDS, started exactly as ``ros2 launch vbl localize.launch.py`` would.

The node runs as a subprocess (``<venv>/bin/localize --ros-args --params-file config/localize.yaml
-p ... -r image:=/cam/image``); this process publishes images and odometry with rclpy and checks
what the node publishes. The map is built here with the core API from synthetic scenes with known
keyframe poses, so publishing one of those scenes must yield a prior at that keyframe's pose.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("torch")

import cv2
from ros_helpers import LOCALIZE, PARAMS_FILE, LocalizeProcess, Probe, unique_domain_id

from vbl_ros.testing import synthetic_scene

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOCALIZE.exists(), reason=f"{LOCALIZE} not installed (pip install -e .)"),
]

NS = 10**9
SCENES = 4
KEYFRAME_POSITIONS = [(50.0 * i, 10.0 * i, 0.0) for i in range(SCENES)]
KEYFRAME_YAWS = [0.3 * i for i in range(SCENES)]


def _yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def _stamp(stamp_ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS)


def _raw_image(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    from vbl_ros.images import mosaic

    msg = Image()
    msg.header.stamp = _stamp(stamp_ns)
    msg.header.frame_id = "camera"
    msg.height, msg.width = rgb.shape[:2]
    if encoding == "bayer_gbrg8":
        pixels = mosaic(rgb, "gbrg")
    elif encoding == "bgr8":
        pixels = rgb[..., ::-1]
    else:
        pixels = rgb
    msg.encoding = encoding
    msg.step = msg.width * (1 if pixels.ndim == 2 else pixels.shape[2])
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def _compressed_image(rgb: np.ndarray, stamp_ns: int, data: bytes | None = None):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    msg.header.stamp = _stamp(stamp_ns)
    msg.header.frame_id = "camera"
    msg.format = "rgb8; png compressed bgr8"
    if data is None:
        ok, png = cv2.imencode(".png", rgb[..., ::-1])
        assert ok
        data = png.tobytes()
    msg.data = data
    return msg


def _odometry(stamp_ns: int, position: tuple[float, float, float]):
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.header.stamp = _stamp(stamp_ns)
    msg.header.frame_id = "odom"
    msg.child_frame_id = "base_link"
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = position
    msg.pose.pose.orientation.w = 1.0
    return msg


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [synthetic_scene(seed) for seed in range(SCENES + 2)]


@pytest.fixture(scope="module")
def map_dir(tmp_path_factory: pytest.TempPathFactory, scenes: list[np.ndarray]) -> Path:
    """A map of the first SCENES scenes, keyframe i at KEYFRAME_POSITIONS[i], built with the core API."""
    from vbl_ros.mapping import Keyframe, KeyframeMap
    from vbl_ros.model.extractor import DescriptorExtractor
    from vbl_ros.model.io import default_model

    extractor = DescriptorExtractor(default_model(), device="cpu")
    descriptors = extractor(scenes[:SCENES])
    keyframes = [
        Keyframe(
            stamp_ns=(i + 1) * NS,
            position=KEYFRAME_POSITIONS[i],
            orientation=_yaw_quaternion(KEYFRAME_YAWS[i]),
        )
        for i in range(SCENES)
    ]
    keyframe_map = KeyframeMap.create(extractor.dim, extractor.fingerprint)
    keyframe_map.add(descriptors, keyframes)
    return keyframe_map.save(tmp_path_factory.mktemp("map") / "synthetic_map")


class Session:
    """A running node plus the probe talking to it."""

    def __init__(self, process: LocalizeProcess, probe: Probe) -> None:
        self.process = process
        self.probe = probe

    def send(self, msg, stamp_ns: int, timeout_s: float = 30.0) -> float:
        """Publish until the node answers frame ``stamp_ns`` (its markers); return the wall latency."""
        sent: list[float] = []

        def publish() -> None:
            sent.append(time.monotonic())
            self.probe.image_pub.publish(msg)

        answer = self.probe.spin_until(
            lambda: self.probe.find("matches_markers", stamp_ns), timeout_s, every=publish
        )
        assert answer, f"no answer to frame {stamp_ns}:\n{self.process.output()[-3000:]}"
        # pose_prior and loop_candidates are published just before the markers
        self.probe.spin_until(lambda: False, 0.2)
        return answer[0] - max(t for t in sent if t <= answer[0])

    def send_bad(self, msg, counter: str, timeout_s: float = 30.0) -> int:
        """Publish a bad frame until the node's diagnostics count it; return the new count."""
        before = int(self.diagnostics(lambda d: counter in d)[counter])
        values = self.probe.spin_until(
            lambda: (d := self.probe.diagnostics()) and int(d[counter]) > before and d,
            timeout_s,
            every=lambda: self.probe.image_pub.publish(msg),
        )
        assert values, f"{counter} not counted:\n{self.process.output()[-3000:]}"
        assert self.process.proc.poll() is None, "the node died on a bad frame"
        return int(values[counter])

    def diagnostics(self, predicate=lambda d: True, timeout_s: float = 10.0) -> dict[str, str]:
        values = self.probe.spin_until(
            lambda: (d := self.probe.diagnostics()) and predicate(d) and d, timeout_s
        )
        assert values, f"no matching diagnostics:\n{self.process.output()[-3000:]}"
        return values


def _start(tmp_path: Path, ros_args: list[str], *, compressed: bool) -> Session:
    domain_id = unique_domain_id()
    process = LocalizeProcess(ros_args, domain_id, tmp_path / "localize.log")
    probe = Probe(domain_id, compressed=compressed)
    try:
        probe.wait_for_node(process)
    except BaseException:
        probe.close()
        process.stop(signal.SIGINT)
        raise
    return Session(process, probe)


@pytest.fixture(scope="module")
def raw_session(tmp_path_factory: pytest.TempPathFactory, map_dir: Path):
    """The node with the map, raw images on /cam/image, as launch would start it."""
    args = [
        "--params-file",
        PARAMS_FILE,
        "-p",
        f"map:={map_dir}",
        "-p",
        "image_transport:=raw",
        "-p",
        "device:=cpu",
        "-p",
        "loop_confirm_frames:=1",  # single-frame loop candidates: one revisit frame gives one
        "-r",
        "image:=/cam/image",
    ]
    session = _start(tmp_path_factory.mktemp("raw_node"), args, compressed=False)
    yield session
    session.probe.close()
    session.process.stop(signal.SIGINT)


def test_pose_prior_has_the_image_stamp_and_the_keyframe_pose(raw_session: Session, scenes) -> None:
    latencies = []
    for i in (2, 0):
        stamp_ns = 1000 * NS + i * NS + 123_456_789
        latencies.append(raw_session.send(_raw_image(scenes[i], stamp_ns), stamp_ns))
        found = raw_session.probe.find("pose_prior", stamp_ns)
        assert found, f"no pose prior for scene {i}:\n{raw_session.process.output()[-3000:]}"
        prior = found[1]
        assert prior.header.frame_id == "map"
        p = prior.pose.pose.position
        assert np.allclose((p.x, p.y, p.z), KEYFRAME_POSITIONS[i], atol=0.5)
        q = prior.pose.pose.orientation
        assert np.allclose((q.x, q.y, q.z, q.w), _yaw_quaternion(KEYFRAME_YAWS[i]), atol=1e-6)
        cov = np.array(prior.pose.covariance).reshape(6, 6)
        assert np.all(np.diag(cov) > 0) and np.allclose(cov, cov.T)
        from vbl_ros.ros.messages import loop_candidates_from_msg

        matches = loop_candidates_from_msg(raw_session.probe.find("map_matches", stamp_ns)[1])
        assert [m.rank for m in matches] == list(range(1, len(matches) + 1))
        assert np.allclose(matches[0].position, KEYFRAME_POSITIONS[i], atol=1e-6)
        assert matches[0].score >= max(m.score for m in matches)
        markers = raw_session.probe.find("matches_markers", stamp_ns)[1].markers
        spheres = [m for m in markers if m.ns == "vbl_matches" and m.type == m.SPHERE]
        assert spheres and np.allclose(
            (spheres[0].pose.position.x, spheres[0].pose.position.y), KEYFRAME_POSITIONS[i][:2]
        )
    print(f"round-trip latency (publish -> markers): {[round(x * 1000) for x in latencies]} ms")


def test_bayer_and_bgr_frames_are_localized(raw_session: Session, scenes) -> None:
    for offset, (encoding, i) in enumerate((("bayer_gbrg8", 1), ("bgr8", 3))):
        stamp_ns = 1100 * NS + offset * NS
        raw_session.send(_raw_image(scenes[i], stamp_ns, encoding), stamp_ns)
        found = raw_session.probe.find("pose_prior", stamp_ns)
        assert found, f"no prior for a {encoding} frame"
        p = found[1].pose.pose.position
        assert np.allclose((p.x, p.y), KEYFRAME_POSITIONS[i][:2], atol=0.5)


def test_unknown_scene_gives_no_prior_but_is_answered(raw_session: Session, scenes) -> None:
    stamp_ns = 1200 * NS
    raw_session.send(_raw_image(scenes[SCENES + 1], stamp_ns), stamp_ns)
    # another place (score ~0.85 < 1) may or may not pass the thresholds; it must never be a wrong one
    found = raw_session.probe.find("pose_prior", stamp_ns)
    if found:
        p = found[1].pose.pose.position
        assert min(math.dist((p.x, p.y, p.z), k) for k in KEYFRAME_POSITIONS) < 20.0


def test_bad_frames_are_counted_and_the_node_keeps_answering(raw_session: Session, scenes) -> None:
    unknown = _raw_image(scenes[0], 1300 * NS)
    unknown.encoding = "yuv422_weird"
    raw_session.send_bad(unknown, "frames_bad")
    short = _raw_image(scenes[0], 1301 * NS)
    short.data = bytes(short.data)[:-100]
    bad = raw_session.send_bad(short, "frames_bad")
    values = raw_session.diagnostics(lambda d: int(d["frames_bad"]) >= bad)
    assert "bytes" in values["last_bad_frame"]
    stamp_ns = 1302 * NS
    raw_session.send(_raw_image(scenes[2], stamp_ns), stamp_ns)
    assert raw_session.probe.find("pose_prior", stamp_ns)
    output = raw_session.process.output()
    assert "bad frame" in output and "unsupported image encoding 'yuv422_weird'" in output


def test_revisit_yields_a_loop_candidate_with_the_first_visit_stamp(raw_session: Session, scenes) -> None:
    first, revisit = 1400 * NS, 1500 * NS  # more than loop_exclude_recent_s (30 s) apart
    raw_session.send(_raw_image(scenes[SCENES], first), first)
    raw_session.send(_raw_image(scenes[SCENES], revisit), revisit)
    found = raw_session.probe.find("loop_candidates", revisit)
    assert found, f"no loop candidates:\n{raw_session.process.output()[-3000:]}"
    from vbl_ros.ros.messages import loop_candidates_from_msg

    rows = loop_candidates_from_msg(found[1])
    assert rows[0].rank == 1 and rows[0].keyframe_stamp_ns == first and rows[0].score > 0.99
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.position is None for r in rows)  # no odometry: keyframes by time, without poses


def test_diagnostics_report_latency_and_counts(raw_session: Session) -> None:
    values = raw_session.diagnostics(lambda d: int(d["frames_processed"]) >= 8)
    p50, p95 = float(values["latency_p50_ms"]), float(values["latency_p95_ms"])
    assert 0 < p50 <= p95 < 5000
    assert int(values["frames_bad"]) >= 2 and int(values["pose_priors_published"]) >= 5
    print(f"node latency receive -> publish: p50 {p50:.1f} ms, p95 {p95:.1f} ms; {values}")


def test_diagnostics_report_single_frame_loop_candidates(raw_session: Session) -> None:
    values = raw_session.diagnostics(lambda d: int(d["frames_processed"]) >= 1)
    assert values["loop_mode"] == "single-frame" and values["loop_state"] == "single-frame"
    assert int(values["loop_session_keyframes"]) >= 1


def test_confirmed_loop_is_reported_locked_in_the_diagnostics(tmp_path: Path) -> None:
    """The default confirmed loop candidates, no map: a first pass of 12 places at 1 frame/s, then
    the same places again 100 s later; the diagnostics say ``collecting`` before the revisit and
    ``locked`` once 8 revisit frames confirm it, with the candidate at the first pass's keyframe."""
    args = ["--params-file", PARAMS_FILE, "-p", "device:=cpu", "-r", "image:=/cam/image"]
    places = [synthetic_scene(100 + i) for i in range(12)]
    session = _start(tmp_path, args, compressed=False)
    try:
        for i, place in enumerate(places):
            session.send(_raw_image(place, (3000 + i) * NS), (3000 + i) * NS)
        values = session.diagnostics(lambda d: int(d["frames_processed"]) >= len(places))
        assert values["loop_mode"] == "confirmed over 8 frames" and values["loop_state"] == "collecting"
        assert int(values["loop_session_keyframes"]) == len(places)
        for i, place in enumerate(places[:9]):
            session.send(_raw_image(place, (3100 + i) * NS), (3100 + i) * NS)
        found = session.probe.find("loop_candidates", 3108 * NS)
        assert found, f"no confirmed loop candidate:\n{session.process.output()[-3000:]}"
        from vbl_ros.ros.messages import loop_candidates_from_msg

        assert [r.keyframe_stamp_ns for r in loop_candidates_from_msg(found[1])] == [3008 * NS]
        values = session.diagnostics(lambda d: int(d["frames_processed"]) >= len(places) + 9)
        assert values["loop_state"] == "locked" and int(values["loop_candidate_messages"]) >= 1
    finally:
        session.probe.close()
        code = session.process.stop(signal.SIGINT)
    assert code == 0, session.process.output()[-3000:]


def test_core_warnings_reach_the_nodes_ros_log(raw_session: Session, scenes) -> None:
    """A ``logging`` warning of the core (the localizer's) is printed by the node's ROS logger."""
    later, earlier = 1700 * NS, 1650 * NS  # time going back starts a new session, with a warning
    raw_session.send(_raw_image(scenes[1], later), later)
    raw_session.send(_raw_image(scenes[1], earlier), earlier)
    lines = [line for line in raw_session.process.output().splitlines() if "time went back" in line]
    assert lines, raw_session.process.output()[-3000:]
    assert any(
        line.startswith("[WARN]")
        and "[localize.vbl_ros.localizer]" in line
        and f"({earlier} < {later} ns)" in line
        for line in lines
    ), lines


def test_one_inference_thread_by_default(raw_session: Session) -> None:
    values = raw_session.diagnostics()
    assert values["inference_threads"] == "1"
    assert values["image_qos"] == "reliable, keep_last 4 (auto)"  # the probe publishes reliably
    assert values["image_publishers"].endswith("(reliable)") and int(values["frames_lost"]) == 0


def test_a_burst_is_not_queued_the_latest_frame_wins(raw_session: Session, scenes) -> None:
    """Frames arriving faster than they are processed replace each other: none is queued."""
    raw_session.probe.spin_until(lambda: False, 2.5)  # two diagnostics periods: earlier frames counted
    settled = raw_session.diagnostics(lambda d: True)
    stamps = [1600 * NS + i * 10**7 for i in range(40)]
    # every ~1 ms: several frames per processing time (~10 ms in ONNX Runtime, ~35 ms in PyTorch)
    for i, stamp_ns in enumerate(stamps):
        raw_session.probe.image_pub.publish(_raw_image(scenes[i % SCENES], stamp_ns))
        time.sleep(0.001)
    raw_session.send(_raw_image(scenes[0], stamps[-1]), stamps[-1])  # newest (again, if it was lost)
    processed = raw_session.probe.collector.stamps("matches_markers") & set(stamps)
    assert len(processed) < len(stamps) // 2, "frames were queued instead of dropped"

    def delta(d: dict[str, str], key: str) -> int:
        return int(d[key]) - int(settled[key])

    raw_session.probe.spin_until(lambda: False, 2.5)  # two diagnostics periods: counts settled
    values = raw_session.probe.diagnostics()
    received, done, dropped = (
        delta(values, k) for k in ("frames_received", "frames_processed", "frames_dropped")
    )
    assert received == done + dropped, values  # every frame the node got was processed or replaced
    assert dropped > 0 and len(processed) <= done <= len(processed) + 2, values  # +: newest sent again


def test_sigint_exits_cleanly(raw_session: Session) -> None:
    started = time.monotonic()
    code = raw_session.process.stop(signal.SIGINT, timeout_s=10.0)
    assert code == 0, f"exit status {code}:\n{raw_session.process.output()[-3000:]}"
    assert time.monotonic() - started < 10.0
    assert "Traceback" not in raw_session.process.output()


def test_compressed_input_without_map_with_odometry(tmp_path: Path, scenes) -> None:
    """No map: no priors, loop candidates from session keyframes taken by odometry distance."""
    args = [
        "--params-file",
        PARAMS_FILE,
        "-p",
        "device:=cpu",
        "-p",
        "image_transport:=compressed",
        "-p",
        "inference_threads:=2",
        "-p",
        "use_odometry:=true",
        "-p",
        "loop_confirm_frames:=1",
        "-r",
        "image:=/cam/image",
        "-r",
        "odometry:=/odom",
    ]
    session = _start(tmp_path, args, compressed=True)
    try:
        corrupt = _compressed_image(scenes[0], 2000 * NS, data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
        session.send_bad(corrupt, "frames_bad")
        positions = {2001: (0.0, 0.0, 0.0), 2010: (40.0, 0.0, 0.0), 2100: (0.5, 0.2, 0.0)}
        frames = {2001: scenes[1], 2010: scenes[2], 2100: scenes[1]}
        for second, position in positions.items():
            stamp_ns = second * NS
            odom = _odometry(stamp_ns, position)
            # odometry first (best effort: publish until the frame is answered)
            session.probe.odom_pub.publish(odom)
            session.probe.spin_until(lambda: False, 0.3)
            session.send(_compressed_image(frames[second], stamp_ns), stamp_ns)
        assert session.probe.collector.count("pose_prior") == 0
        found = session.probe.find("loop_candidates", 2100 * NS)
        assert found, f"no loop candidates:\n{session.process.output()[-3000:]}"
        assert found[1].header.frame_id == "odom"
        from vbl_ros.ros.messages import loop_candidates_from_msg

        best = loop_candidates_from_msg(found[1])[0]
        assert best.keyframe_stamp_ns == 2001 * NS and best.score > 0.99
        assert best.position == pytest.approx((0.0, 0.0, 0.0)) and best.orientation == (0.0, 0.0, 0.0, 1.0)
        values = session.diagnostics(lambda d: int(d["frames_processed"]) >= 3)
        # >= 1: send_bad publishes again each second until the node's diagnostics count the frame
        assert int(values["frames_bad"]) >= 1 and "corrupt" in values["last_bad_frame"]
        assert values["inference_threads"] == "2"  # torch's thread count in the node's process
    finally:
        session.probe.close()
        code = session.process.stop(signal.SIGINT)
    assert code == 0, session.process.output()[-3000:]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("device:=tpu", "parameter 'device' is 'tpu'"),
        ("top_k:=0", "top_k must be >= 1"),
        ("min_score:=1", "parameter 'min_score' must be a double"),
        ("map:=/nonexistent/map", "parameter 'map'"),
        ("inference_threads:=0", "parameter 'inference_threads' must be >= 1"),
        ("image_qos:=sometimes", "parameter 'image_qos' is 'sometimes'"),
        ("prior_mode:=smoothed", "prior_mode must be one of single, filtered"),
    ],
)
def test_invalid_parameter_refused_at_start(tmp_path: Path, override: str, expected: str) -> None:
    process = LocalizeProcess(
        ["--params-file", PARAMS_FILE, "-p", override], unique_domain_id(), tmp_path / "localize.log"
    )
    code = process.stop(timeout_s=60.0)
    output = process.output()
    assert code not in (0, None), output
    assert expected in output and "cannot start" in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_an_exported_model_runs_in_the_node_without_pytorch(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, map_dir: Path, scenes, runtime: str
) -> None:
    """The map built in PyTorch, the node running the same weights exported to ONNX in another
    runtime (chosen by a parameter): it localizes over DDS, and PyTorch is never loaded.

    The node runs with filtered priors (``prior_mode:=filtered``), a known answer: on this map of
    four places every frame's matches cover the whole map, so they are no evidence against chance
    and the filter must not publish a prior (it stays initializing), while the best map match of
    each frame is the right keyframe.
    """
    pytest.importorskip(runtime)
    from vbl_ros.export import export_model
    from vbl_ros.ros.messages import loop_candidates_from_msg

    onnx = tmp_path_factory.getbasetemp() / "default_model.onnx"
    if not onnx.exists():
        export_model(None, onnx)
    args = ["--params-file", PARAMS_FILE, "-p", f"map:={map_dir}", "-p", f"model:={onnx}"]
    args += ["-p", f"runtime:={runtime}", "-p", "device:=cpu", "-r", "image:=/cam/image"]
    args += ["-p", "prior_mode:=filtered"]
    session = _start(tmp_path, args, compressed=False)
    try:
        stamps = [77 * NS + k * NS // 5 for k in range(4)]  # 5 frames/s of the same place
        for stamp in stamps:
            session.send(_raw_image(scenes[0], stamp), stamp)
            matches = loop_candidates_from_msg(session.probe.find("map_matches", stamp)[1])
            assert np.allclose(matches[0].position, KEYFRAME_POSITIONS[0], atol=1e-6)
            assert session.probe.find("pose_prior", stamp) is None
        values = session.diagnostics(lambda d: d.get("filter_state") == "initializing")
        assert values["runtime"] == runtime and values["prior_mode"] == "filtered"
        assert float(values["filter_spread_m"]) >= 0
        maps = Path(f"/proc/{session.process.proc.pid}/maps").read_text()
        assert "libtorch" not in maps, "the node loaded PyTorch for an exported model"
    finally:
        session.probe.close()
        session.process.stop(signal.SIGINT)
