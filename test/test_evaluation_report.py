"""The evaluation report: JSON schema and round trip, report.md, the PNG plots, and the comparison of reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vbl_ros.errors import OutputExistsError
from vbl_ros.evaluation import (
    EvaluationReport,
    FrameCounts,
    ReportError,
    compare,
    evaluate_localization,
    load_report,
    write_report,
)
from vbl_ros.evaluation.report import metrics_table
from vbl_ros.localizer import LocalizationResult, LoopCandidate, Match, PosePrior
from vbl_ros.mapping import Keyframe

PNG = b"\x89PNG\r\n\x1a\n"
S = 1_000_000_000
MAP = np.stack([np.arange(0.0, 401.0, 10.0), np.zeros(41), np.zeros(41)], axis=1)  # every 10 m along x


def _drive(
    offset_m: float, seed: int, *, with_priors: bool = True
) -> tuple[list[LocalizationResult], np.ndarray]:
    """40 frames every 10 m along x, 2 m beside the map; every 4th frame matches 200 m away."""
    rng = np.random.default_rng(seed)
    results, truth = [], []
    for i in range(40):
        x = 10.0 * i
        truth.append((x, 2.0, 0.0))
        top = x + (200.0 if i % 4 == 0 else offset_m)
        score = float(0.6 + 0.3 * rng.random())
        matches = tuple(
            Match(r + 1, score - 0.01 * r, Keyframe(r, (top + 10.0 * r, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)))
            for r in range(5)
        )
        prior = None
        if with_priors and i % 2:
            cov = tuple(np.diag([9.0, 9.0, 1.0, 0.01, 0.01, 0.03]).reshape(-1))
            prior = PosePrior(round(i * S), (top, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), cov, score, ())
        loops = (LoopCandidate(1, 0.8, 0, None, None),) if i >= 35 else ()  # no revisit: all wrong
        results.append(
            LocalizationResult(round(i * S), prior, matches, loops, None if prior else "ambiguous", 20.0, 1.0)
        )
    return results, np.array(truth)


def _report(with_priors: bool = True) -> EvaluationReport:
    queries = {}
    for name, offset, seed in (("sunny", 0.0, 0), ("night", 5.0, 1)):
        results, truth = _drive(offset, seed, with_priors=with_priors)
        queries[name] = evaluate_localization(
            results,
            truth,
            map_positions=MAP,
            ground_truth_yaw_rad=np.zeros(len(results)),
            latencies_ms=np.random.default_rng(seed).uniform(20, 40, len(results)),
            frames=FrameCounts(sent=45, processed=40, dropped=5, rejected=20),
        )
    return EvaluationReport.of(queries, meta={"map": "demo_map", "mode": "offline"})


ENTRY_KEYS = {
    "recall_at",
    "availability",
    "prior_precision",
    "prior_error_median_m",
    "prior_error_p95_m",
    "covariance_coverage_95",
    "loop_recall_at_100_precision",
    "latency_ms",
    "frames",
}


def test_report_json_follows_the_schema() -> None:
    report = _report()
    d = json.loads(report.to_json())
    assert d["schema"] == "vbl.evaluation.report" and d["schema_version"] == 1
    assert d["meta"] == {"map": "demo_map", "mode": "offline"}
    assert list(d["queries"]) == ["sunny", "night"]
    for entry in (*d["queries"].values(), d["all"]):
        assert ENTRY_KEYS <= set(entry)
        assert set(entry["recall_at"]) == {"1", "5", "10", "20"}
        assert set(entry["latency_ms"]) == {"p50", "p95", "p99", "count"}
        assert entry["frames"].keys() == {"sent", "processed", "dropped", "rejected", "bad"}
    sunny, night, both = d["queries"]["sunny"], d["queries"]["night"], d["all"]
    assert sunny["recall_at"]["1"] == pytest.approx(0.75)  # every 4th frame matches 200 m away
    assert sunny["recall_at"]["10"] is None  # five matches per frame on a 41-keyframe map
    assert both["frames"] == {"sent": 90, "processed": 80, "dropped": 10, "rejected": 40, "bad": 0}
    assert both["availability"] == pytest.approx(0.5) and both["latency_ms"]["count"] == 80
    assert both["loop_candidates"]["wrong_candidates"] == 10 and both["loop_recall_at_100_precision"] is None
    # the night drive's matches are 5 m farther: its median prior error is sqrt(5^2 + 2^2)
    assert night["prior_error_median_m"] == pytest.approx(math.hypot(5, 2))


def test_json_round_trip() -> None:
    report = _report()
    text = report.to_json()
    back = EvaluationReport.from_json(text)
    assert back.to_json() == text
    assert back.queries["sunny"].recall_at == report.queries["sunny"].recall_at
    assert back.all.map_matches == report.all.map_matches
    assert back.all.per_frame is None and back.meta == report.meta
    assert math.isnan(back.all.loop_recall_at_100_precision)
    # without any prior: nulls in the file, nan back
    empty = _report(with_priors=False)
    d = json.loads(empty.to_json())
    assert d["all"]["prior_precision"] is None and d["all"]["covariance_coverage_95"] is None
    assert math.isnan(EvaluationReport.from_json(empty.to_json()).all.prior_error_median_m)


def test_reading_a_foreign_or_newer_report_is_refused(tmp_path: Path) -> None:
    d = json.loads(_report().to_json())
    with pytest.raises(ReportError, match="version 99"):
        EvaluationReport.from_json(json.dumps({**d, "schema_version": 99}))
    with pytest.raises(ReportError, match="not a vbl evaluation report"):
        EvaluationReport.from_json(json.dumps({"queries": {}}))
    with pytest.raises(ReportError, match="not JSON"):
        EvaluationReport.from_json("{")
    with pytest.raises(ReportError, match="malformed"):
        EvaluationReport.from_json(json.dumps({**d, "all": {}}))
    with pytest.raises(ReportError, match="no report"):
        load_report(tmp_path)


def test_write_report_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    report = _report()
    out = tmp_path / "report"
    json_path = write_report(report, out, map_positions=MAP)
    assert json_path == out / "report.json"
    assert load_report(out).to_json() == report.to_json()
    assert sorted(p.name for p in out.iterdir()) == ["plots", "report.json", "report.md"]  # no temp file left
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == [
        "latency_histogram.png",
        "precision_recall.png",
        "prior_error_cdf.png",
        "recall_at_n.png",
        "recall_vs_distance.png",
        "route_night.png",
        "route_sunny.png",
    ]
    for name in pngs:
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, name
    md = (out / "report.md").read_text()
    assert md.startswith("# Evaluation report")
    assert "| metric | sunny | night | all |" in md
    assert "| recall@1 within 25 m | 75.0 % | 75.0 % | 75.0 % |" in md
    assert (
        "| frames sent / processed / dropped / rejected | 45 / 40 / 5 / 20 | 45 / 40 / 5 / 20 | 90 / 80 / 10 / 40 |"
        in md
    )
    assert "| recall@10 within 25 m | n/a | n/a | n/a |" in md
    assert "![precision-recall](plots/precision_recall.png)" in md and "(plots/route_sunny.png)" in md
    assert "- map: demo_map" in md
    with pytest.raises(OutputExistsError):
        write_report(report, out)
    write_report(report, out, overwrite=True)


def test_an_empty_evaluation_still_writes_its_report(tmp_path: Path) -> None:
    empty = evaluate_localization([], np.zeros((0, 3)), map_positions=MAP)
    write_report(EvaluationReport.of({"nothing": empty}), tmp_path, map_positions=MAP)
    assert "| recall@1 within 25 m | n/a |" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["all"]["num_frames"] == 0
    assert (tmp_path / "plots" / "latency_histogram.png").read_bytes()[:8] == PNG


def test_compare_reports_side_by_side(tmp_path: Path) -> None:
    write_report(_report(), tmp_path / "pretrained")
    write_report(_report(with_priors=False), tmp_path / "no_priors")
    reports = {name: load_report(tmp_path / name) for name in ("pretrained", "no_priors")}
    markdown, plots = compare(reports, tmp_path / "cmp")
    assert "| metric | pretrained | no_priors |" in markdown
    assert "| pose-prior availability | 50.0 % | 0.0 % |" in markdown
    assert (tmp_path / "cmp" / "compare.md").read_text() == markdown
    assert len(plots) == 5
    for path in plots:
        assert path.parent == tmp_path / "cmp" and path.read_bytes()[:8] == PNG
        assert f"]({path.name})" in markdown


def test_a_table_of_reports_with_different_radii_says_so() -> None:
    results, truth = _drive(0.0, 0)
    wide = evaluate_localization(results, truth, threshold_m=50.0)
    narrow = evaluate_localization(results, truth, threshold_m=1.0)
    table = metrics_table({"50 m": wide, "1 m": narrow})
    assert "| success radius | 50 m | 1 m |" in table
    assert "| recall@1 within the success radius | 75.0 % | 0.0 % |" in table
