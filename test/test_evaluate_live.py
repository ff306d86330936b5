"""``vbl evaluate`` live: the installed ``localize`` node over real DDS gives what the core gives offline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("torch")

from bag_fixtures import CAMERA_TOPIC, write_line_bag
from evaluate_fixtures import at_s, line_map, query_bag, rewrite_bag, small_model
from ros_helpers import LOCALIZE, unique_domain_id

from vbl_ros.cli import main
from vbl_ros.evaluation import localize_bag
from vbl_ros.localizer import Localizer, LocalizerConfig
from vbl_ros.mapping import KeyframeMap
from vbl_ros.pipelines.evaluate import (
    EvaluateConfig,
    descriptor_settings,
    offline_extractor,
    write_node_params,
)

REPO_PARAMS = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.slow,
    pytest.mark.skipif(not LOCALIZE.exists(), reason=f"{LOCALIZE} not installed (pip install -e .)"),
]


@pytest.fixture(autouse=True)
def one_thread_in_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node process inherits this environment: one torch/OpenMP thread there too."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small map (13 keyframes of a 60 m street) and a query drive with one undecodable frame."""
    root = tmp_path_factory.mktemp("evaluate_live")
    model = small_model(root / "small.pt")
    map_dir = line_map(write_line_bag(root / "map_bag", length_m=60.0, camera_hz=4.0), model, root / "map")
    drive = query_bag(root / "drive", length_m=30.0)  # 6 s, 19 frames
    query = rewrite_bag(drive.path, root / "query", corrupt=lambda t: t == at_s(3.0))
    return {"model": model, "map": map_dir, "query": query}


def _replay_slowly(setup, tmp_path: Path, **options):
    """The query bag into a fresh node at half the bag's 3 frames/s (for a ~10 ms network): the node
    answers every frame."""
    from vbl_ros.ros.live import replay_live

    return replay_live(
        setup["map"],
        setup["query"],
        tmp_path,
        model=setup["model"],
        camera_topic=CAMERA_TOPIC,
        compressed=True,
        rate=0.5,
        device="cpu",
        domain_id=unique_domain_id(),
        **options,
    )


@pytest.mark.parametrize(
    "options",
    [
        EvaluateConfig(device="cpu"),  # the node's defaults: runtime auto, precision auto
        EvaluateConfig(device="cpu", runtime="torch", precision="fp32"),
    ],
    ids=["defaults", "torch-fp32"],
)
def test_live_and_offline_give_the_same_top1_keyframe_for_every_frame(
    setup, tmp_path: Path, options: EvaluateConfig
) -> None:
    """Offline builds the node's extractor from the same parameters (vbl evaluate's two modes agree)."""
    params = write_node_params(REPO_PARAMS, options, tmp_path / "params")
    run = _replay_slowly(setup, tmp_path, params_file=params)
    log = run.node_log.read_text()
    assert "ready" in log
    assert (run.frames.sent, run.frames.processed, run.frames.dropped, run.frames.bad) == (19, 18, 0, 1), (
        run.diagnostics
    )
    extractor = offline_extractor(setup["model"], descriptor_settings(params, options))
    assert f"descriptor runtime {extractor.runtime} " in log  # the node ran the same runtime
    assert run.diagnostics["runtime"] == extractor.runtime
    localizer = Localizer(extractor, KeyframeMap.load(setup["map"]), LocalizerConfig())
    offline = localize_bag(localizer, setup["query"])

    assert [r.stamp_ns for r in run.results] == [r.stamp_ns for r in offline], run.diagnostics
    assert at_s(3.0) not in {r.stamp_ns for r in offline}  # the undecodable frame, in neither
    for live, core in zip(run.results, offline, strict=True):
        assert live.matches[0].keyframe.stamp_ns == core.matches[0].keyframe.stamp_ns, live.stamp_ns
        assert [m.keyframe.stamp_ns for m in live.matches] == [m.keyframe.stamp_ns for m in core.matches]
        assert live.matches[0].score == pytest.approx(core.matches[0].score, abs=1e-4)
        assert (live.pose_prior is None) == (core.pose_prior is None), live.stamp_ns
    assert run.frames.rejected == sum(r.rejected_reason is not None for r in offline)
    assert len(run.latencies_ms) == 18 and all(0 < v < math.inf for v in run.latencies_ms)
    assert run.node_rss_mib[-1][1] > 100  # MiB: the node with torch, its model and map


def test_vbl_evaluate_live_writes_the_report_with_the_nodes_counts(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VBL_EVALUATE_DOMAIN_ID", str(unique_domain_id()))
    out = tmp_path / "live"
    argv = ["evaluate", "--map", str(setup["map"]), "--model", str(setup["model"]), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--rate", "1.5", str(setup["query"])]) == 0

    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["mode"].startswith("live") and "--rate 1.5" in report["meta"]["command"]
    entry = report["queries"]["query"]
    assert entry["frames"]["sent"] == 19 and entry["frames"]["bad"] == 1
    assert entry["frames"]["processed"] + entry["frames"]["dropped"] == 18
    assert entry["num_frames"] == entry["frames"]["processed"]  # what the node answered is scored
    assert entry["latency_ms"]["count"] == entry["num_frames"] and entry["latency_ms"]["p50"] > 0
    assert "ready" in (out / "logs" / "localize_query.log").read_text()
    assert (out / "report.md").read_text().startswith("# Evaluation report")


def test_live_replay_with_the_bags_odometry_feeds_the_nodes_filter(setup, tmp_path: Path) -> None:
    """use_odometry live: the bag's odometry goes to the node's odometry input with the frames."""
    from vbl_ros.bags import ODOMETRY_TOPIC, open_reader

    repo_params = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"
    params = tmp_path / "filtered.yaml"
    text = repo_params.read_text().replace("prior_mode: single", "prior_mode: filtered")
    params.write_text(text.replace("filter_confirm_error: 0.001", "filter_confirm_error: 0.01"))
    run = _replay_slowly(setup, tmp_path, params_file=params, odometry_topic=ODOMETRY_TOPIC)
    # the odometry's messages are not counted as frames; the node received them (the first ones may
    # go out before the node's odometry subscription is matched)
    with open_reader(setup["query"]) as reader:
        in_bag = sum(1 for c in reader.connections if c.topic == ODOMETRY_TOPIC for _ in reader.messages([c]))
    assert run.frames.sent == 19 and run.frames.bad == 1, run.diagnostics
    assert in_bag / 2 <= int(run.diagnostics["odometry_messages"]) <= in_bag, (in_bag, run.diagnostics)
    assert run.diagnostics["prior_mode"] == "filtered"
    assert run.diagnostics["filter_state"] in ("initializing", "tracking", "lost")
