"""``vbl evaluate --offline`` on real bags and a real map: the report, several bags, faults, --compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bag_fixtures import write_line_bag
from evaluate_fixtures import at_s, line_map, query_bag, rewrite_bag, small_model

from vbl_ros.cli import main
from vbl_ros.errors import ConfigError
from vbl_ros.localizer import LocalizerConfig
from vbl_ros.pipelines.evaluate import (
    DescriptorSettings,
    EvaluateConfig,
    descriptor_settings,
    localizer_config_from_params,
    write_node_params,
)

PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 60 m street mapped every 5 m, a query drive along 40 m of it, and the model."""
    root = tmp_path_factory.mktemp("evaluate")
    model = small_model(root / "small.pt")
    map_dir = line_map(write_line_bag(root / "map_bag", length_m=60.0, camera_hz=4.0), model, root / "map")
    return {"root": root, "model": model, "map": map_dir, "query": query_bag(root / "sunny").path}


def _evaluate(setup, out: Path, *bags: Path, extra: tuple[str, ...] = ()) -> int:
    common = ["evaluate", "--map", str(setup["map"]), "--model", str(setup["model"]), "--offline"]
    return main([*common, "--threshold", "10", "--out", str(out), *extra, *map(str, bags)])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_offline_report_of_two_bags_each_and_together(setup, tmp_path: Path) -> None:
    night = rewrite_bag(setup["query"], tmp_path / "night")
    out = tmp_path / "report"
    assert _evaluate(setup, out, setup["query"], night) == 0

    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "vbl.evaluation.report" and list(report["queries"]) == ["sunny", "night"]
    sunny, all_ = report["queries"]["sunny"], report["all"]
    frames = sunny["frames"]
    assert (frames["sent"], frames["processed"], frames["dropped"], frames["bad"]) == (25, 25, 0, 0)
    assert sunny["num_frames"] == 25 and all_["num_frames"] == 50 and all_["frames"]["sent"] == 50
    assert sunny["threshold_m"] == 10.0 and sunny["frames_without_truth"] == 0
    assert sunny["recall_at"]["5"] >= 0.8  # the same street: the right keyframe among the first five
    assert report["queries"]["night"]["recall_at"] == sunny["recall_at"]  # the same frames
    assert 0 < sunny["availability"] <= 1 and sunny["latency_ms"]["count"] == 25
    assert "offline" in report["meta"]["mode"] and "--offline" in report["meta"]["command"]

    md = (out / "report.md").read_text()
    assert "| metric | sunny | night | all |" in md
    assert "| frames sent / processed / dropped / rejected | 25 / 25 / 0 /" in md
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert "route_sunny.png" in plots and "route_night.png" in plots and "recall_at_n.png" in plots
    assert all((out / "plots" / p).read_bytes()[:8] == PNG for p in plots)
    assert _leftovers(tmp_path) == []  # written beside and renamed into place

    # an existing report is refused, untouched, unless --overwrite
    before = (out / "report.json").read_text()
    assert _evaluate(setup, out, setup["query"]) == 2
    assert (out / "report.json").read_text() == before
    assert _evaluate(setup, out, setup["query"], extra=("--overwrite",)) == 0
    assert list(json.loads((out / "report.json").read_text())["queries"]) == ["sunny"]
    assert _leftovers(tmp_path) == []
    # --overwrite never replaces a folder that is not a report
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    assert _evaluate(setup, tmp_path / "precious", setup["query"], extra=("--overwrite",)) == 2
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "keep me"


def test_a_bag_without_odometry_gets_the_retrieval_free_figures_and_a_note(setup, tmp_path: Path) -> None:
    blind = rewrite_bag(setup["query"], tmp_path / "blind", drop=lambda topic, t: topic == "/ins/odometry")
    out = tmp_path / "report"
    assert _evaluate(setup, out, blind) == 0
    report = json.loads((out / "report.json").read_text())
    entry = report["all"]
    assert entry["frames"]["sent"] == 25 and entry["num_frames"] == 25
    assert entry["frames_without_truth"] == 25
    assert entry["recall_at"]["1"] is None and entry["prior_precision"] is None  # n/a, not 0
    assert entry["availability"] > 0 and entry["latency_ms"]["count"] == 25
    note = report["meta"]["note (blind)"]
    assert "/ins/odometry" in note and "n/a" in note
    assert "- note (blind): no ground truth" in (out / "report.md").read_text()


def test_odometry_gaps_and_undecodable_frames_are_counted_not_fatal(setup, tmp_path: Path) -> None:
    faulty = rewrite_bag(
        setup["query"],
        tmp_path / "faulty",
        drop=lambda topic, t: topic == "/ins/odometry" and at_s(2.1) < t < at_s(4.9),  # a 2.8 s INS gap
        corrupt=lambda t: t in (at_s(1.0), at_s(6.0)),
    )
    out = tmp_path / "report"
    assert _evaluate(setup, out, faulty) == 0
    entry = json.loads((out / "report.json").read_text())["all"]
    assert (
        entry["frames"]["sent"] == 25 and entry["frames"]["processed"] == 23 and entry["frames"]["bad"] == 2
    )
    assert entry["num_frames"] == 23
    # frames at 2.33 .. 4.67 s (every 1/3 s) lie in the gap: no truth, not judged
    assert entry["frames_without_truth"] == 8
    assert entry["recall_at"]["5"] >= 0.8


def test_bad_inputs_end_with_a_named_error_and_write_nothing(setup, tmp_path: Path) -> None:
    out = tmp_path / "report"
    other_model = small_model(tmp_path / "other.pt", size=32)
    not_a_bag = tmp_path / "not_a_bag"
    not_a_bag.mkdir()
    elsewhere = tmp_path / "elsewhere"
    rewrite_bag(setup["query"], elsewhere, drop=lambda topic, t: topic == "/map/utm_origin")
    common = ["evaluate", "--offline", "--out", str(out)]
    cases = [
        [*common, "--map", str(tmp_path / "no_map"), "--model", str(setup["model"]), str(setup["query"])],
        [*common, "--map", str(setup["map"]), "--model", str(other_model), str(setup["query"])],
        [*common, "--map", str(setup["map"]), "--model", str(tmp_path / "no_model.pt"), str(setup["query"])],
        [*common, "--map", str(setup["map"]), "--model", str(setup["model"]), str(tmp_path / "no_bag")],
        [*common, "--map", str(setup["map"]), "--model", str(setup["model"]), str(not_a_bag)],
        [
            *common,
            "--map",
            str(setup["map"]),
            "--model",
            str(setup["model"]),
            str(elsewhere),
        ],  # no UTM origin
        [
            *common,
            "--map",
            str(setup["map"]),
            "--model",
            str(setup["model"]),
            "--rate",
            "2",
            str(setup["query"]),
        ],
        [*common, "--map", str(setup["map"]), "--threshold", "-1", str(setup["query"])],
        [*common, "--model", str(setup["model"]), str(setup["query"])],  # no map
        [*common, "--map", str(setup["map"]), "--compare", str(out)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        assert not out.exists(), argv
        assert _leftovers(tmp_path) == [], argv


def test_compare_puts_reports_side_by_side(setup, tmp_path: Path) -> None:
    assert _evaluate(setup, tmp_path / "radius10", setup["query"]) == 0
    common = ["evaluate", "--map", str(setup["map"]), "--model", str(setup["model"]), "--offline"]
    assert main([*common, "--threshold", "3", "--out", str(tmp_path / "radius3"), str(setup["query"])]) == 0
    out = tmp_path / "cmp"
    argv = ["evaluate", "--compare", str(tmp_path / "radius10"), str(tmp_path / "radius3"), "--out", str(out)]
    assert main(argv) == 0
    md = (out / "compare.md").read_text()
    assert "| metric | radius10 | radius3 |" in md and "| success radius | 10 m | 3 m |" in md
    assert sorted(p.name for p in out.glob("compare_*.png")) == [
        "compare_latency_histogram.png",
        "compare_precision_recall.png",
        "compare_prior_error_cdf.png",
        "compare_recall_at_n.png",
        "compare_recall_vs_distance.png",
    ]
    assert main(argv) == 2 and main([*argv, "--overwrite"]) == 0  # exists: refused unless --overwrite
    assert main(["evaluate", "--compare", str(tmp_path / "nothing"), "--out", str(tmp_path / "c2")]) == 2
    assert not (tmp_path / "c2").exists() and _leftovers(tmp_path) == []


def test_the_localizer_settings_come_from_the_nodes_params_file(tmp_path: Path) -> None:
    repo_params = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"
    assert localizer_config_from_params(repo_params) == LocalizerConfig()  # the file states the defaults
    params = tmp_path / "robot.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    top_k: 10\n    map: /somewhere\n"
        "localize:\n  ros__parameters:\n    min_score: 0.7\n"
    )
    assert localizer_config_from_params(params) == LocalizerConfig(top_k=10, min_score=0.7)
    params.write_text("/**:\n  ros__parameters:\n    top_k: ten\n")
    with pytest.raises(ConfigError, match="top_k"):
        localizer_config_from_params(params)
    with pytest.raises(ConfigError, match="rate"):
        EvaluateConfig(rate=0.0)
    with pytest.raises(ConfigError, match="device"):
        EvaluateConfig(device="tpu")
    assert EvaluateConfig(use_odometry=True).use_odometry  # live too: the bag's odometry is replayed
    assert np.isfinite(EvaluateConfig().evaluation.threshold_m)


def test_the_descriptor_settings_are_the_nodes_with_the_options_on_top(tmp_path: Path) -> None:
    """Offline runs the network as the node would: runtime, precision, threads from its params file."""
    repo_params = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"
    # the packaged file states the node's defaults; its empty precision is auto, as the node reads it
    assert descriptor_settings(repo_params) == DescriptorSettings("auto", "auto", 1, "auto")
    params = tmp_path / "robot.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    runtime: onnxruntime\n    inference_threads: 2\n"
        "localize:\n  ros__parameters:\n    precision: fp32\n"
    )
    assert descriptor_settings(params) == DescriptorSettings("onnxruntime", "fp32", 2, "auto")
    options = EvaluateConfig(runtime="openvino", precision="bf16", device="cpu")
    assert descriptor_settings(params, options) == DescriptorSettings("openvino", "bf16", 2, "cpu")

    # live: the options go into the node's parameters, in every entry that applies to it
    written = write_node_params(params, options, tmp_path / "logs")
    assert written == tmp_path / "logs" / "localize_params.yaml"
    assert descriptor_settings(written) == DescriptorSettings("openvino", "bf16", 2, "auto")
    assert localizer_config_from_params(written) == localizer_config_from_params(params)
    assert write_node_params(params, EvaluateConfig(), tmp_path / "none") == params  # nothing to override

    params.write_text("/**:\n  ros__parameters:\n    runtime: tflite\n")
    with pytest.raises(ConfigError, match=r"robot\.yaml: runtime"):
        descriptor_settings(params)
    with pytest.raises(ConfigError, match="precision"):
        EvaluateConfig(precision="int4")
    with pytest.raises(ConfigError, match="inference_threads"):
        EvaluateConfig(inference_threads=0)


def test_offline_runs_the_runtime_it_is_given(setup, tmp_path: Path) -> None:
    """--runtime / --precision: the report says what ran, and fp32 runtimes give the same figures."""
    reports = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / runtime
        extra = ("--runtime", runtime, "--precision", "fp32", "--device", "cpu")
        assert _evaluate(setup, out, setup["query"], extra=extra) == 0
        reports[runtime] = json.loads((out / "report.json").read_text())
        meta = reports[runtime]["meta"]
        assert f"runtime {runtime}, precision fp32, 1 thread(s)" in meta["descriptor"]
        assert meta["descriptor"].endswith(f": {runtime} fp32")
        assert f"--runtime {runtime} --precision fp32" in meta["command"]
    torch_run, ort_run = (reports[r]["queries"]["sunny"] for r in ("torch", "onnxruntime"))
    assert ort_run["recall_at"] == torch_run["recall_at"]
    assert ort_run["availability"] == torch_run["availability"]


def test_filtered_priors_with_the_bags_odometry(setup, tmp_path: Path) -> None:
    """prior_mode filtered from the params file, the bag's odometry replayed with each frame."""
    repo_params = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"
    params = tmp_path / "filtered.yaml"
    text = repo_params.read_text().replace("prior_mode: single", "prior_mode: filtered")
    params.write_text(text.replace("filter_confirm_error: 0.001", "filter_confirm_error: 0.01"))
    assert localizer_config_from_params(params).prior_mode == "filtered"
    assert localizer_config_from_params(params).filter_confirm_error == 0.01
    out = tmp_path / "report"
    extra = ("--params", str(params), "--use-odometry")
    assert _evaluate(setup, out, setup["query"], extra=extra) == 0
    report = json.loads((out / "report.json").read_text())
    sunny = report["queries"]["sunny"]
    assert (
        "with each bag's odometry" in report["meta"]["mode"] and "--use-odometry" in report["meta"]["command"]
    )
    assert sunny["num_frames"] == 25
    # The toy street repeats its texture and its 13 keyframes are all among each frame's 20 matches:
    # retrieval is right for about half the frames and the matches say little against chance, so
    # the filter may well not confirm a place in 25 frames (it did before its sequential test); what
    # it publishes must not be worse than single-frame priors (~50 % within 10 m here).
    assert sunny["availability"] == 0 or sunny["prior_precision"] >= 0.4


def test_filtered_priors_on_a_long_street_outnumber_single_frame_ones(tmp_path: Path) -> None:
    """A known answer through ``vbl evaluate --use-odometry``: on a 250 m street mapped every 5 m
    (51 keyframes, more than a frame's 20 matches) and driven again with the camera at another
    rate, the filter, moved by the bag's odometry, confirms the place and publishes priors for more
    frames than single-frame mode, all right."""
    model = small_model(tmp_path / "small.pt")
    map_dir = line_map(
        write_line_bag(tmp_path / "map_bag", length_m=250.0, camera_hz=2.0), model, tmp_path / "map"
    )
    query = write_line_bag(tmp_path / "sunny", length_m=250.0, camera_hz=1.5, seed=0).path
    repo_params = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"
    reports = {}
    for mode in ("single", "filtered"):
        params = tmp_path / f"{mode}.yaml"
        params.write_text(repo_params.read_text().replace("prior_mode: single", f"prior_mode: {mode}"))
        out = tmp_path / f"report_{mode}"
        args = ["evaluate", "--map", str(map_dir), "--model", str(model), "--offline", "--threshold", "10"]
        args += ["--params", str(params), "--use-odometry", "--out", str(out), str(query)]
        assert main(args) == 0
        reports[mode] = json.loads((out / "report.json").read_text())["queries"]["sunny"]
    single, filtered = reports["single"], reports["filtered"]
    assert filtered["num_frames"] == single["num_frames"] == 76  # 250 m at 5 m/s, 1.5 Hz
    assert filtered["availability"] > max(0.5, single["availability"]), (single, filtered)
    assert filtered["prior_precision"] == 1.0, filtered


def test_loop_candidate_counts_survive_report_json() -> None:
    """The loop-candidate count (all ranks) and its curve's count (rank 1) are two JSON entries."""
    from vbl_ros.evaluation import EvaluationReport, evaluate_localization
    from vbl_ros.localizer import LocalizationResult, LoopCandidate

    def frame(i: int, loops: int) -> LocalizationResult:
        keyframe_ns = i * NS_PER_FRAME // 2  # where the drive was 5 i m before: wrong within 1 m
        candidates = tuple(LoopCandidate(r + 1, 0.9 - 0.1 * r, keyframe_ns, None, None) for r in range(loops))
        return LocalizationResult(i * NS_PER_FRAME, None, (), candidates, "no map", 1.0, 1.0)

    results = [frame(i, 3 if i > 2 else 0) for i in range(6)]  # 3 frames with 3 candidates each
    truth = np.array([[10.0 * i, 0.0, 0.0] for i in range(6)])
    report = EvaluationReport.of({"drive": evaluate_localization(results, truth, threshold_m=1.0)})
    loops = EvaluationReport.from_json(report.to_json()).all.loop_candidates
    assert loops.frames_with_candidates == report.all.loop_candidates.frames_with_candidates == 0.5
    assert (loops.candidates, loops.curve.candidates, loops.wrong_candidates) == (9, 3, 9)


NS_PER_FRAME = 10**9
