"""The shared evaluation routine: recall@N within 25 m, top-1 error, localization scores, route plot."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from vbl_ros.evaluation import evaluate_localization, evaluate_retrieval, plot_route
from vbl_ros.mapping import Keyframe, KeyframeMap


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def route():
    """100 map keyframes every 10 m along x; queries 2 m beside them, some with wrong descriptors."""
    rng = np.random.default_rng(0)
    map_desc = unit(rng.normal(size=(100, 32)))
    map_pos = np.stack([np.arange(100) * 10.0, np.zeros(100), np.zeros(100)], axis=1)
    query_pos = map_pos[:50] + np.array([0.0, 2.0, 0.0])
    query_desc = unit(map_desc[:50] + 0.05 * rng.normal(size=(50, 32)))
    # queries 0-9 look like the place 500 m further on (wrong at top 1), but their second match is right
    query_desc[:10] = unit(map_desc[50:60] + 0.9 * map_desc[:10])
    return map_desc, map_pos, query_desc, query_pos


def test_recall_at_n_and_top1_error(route) -> None:
    map_desc, map_pos, query_desc, query_pos = route
    report = evaluate_retrieval(query_desc, query_pos, map_desc, map_pos, ks=(1, 5, 10))
    assert report.recalls[1] == pytest.approx(0.8)
    assert report.recalls[5] == pytest.approx(1.0) and report.recalls[10] == pytest.approx(1.0)
    assert report.median_error_m == pytest.approx(2.0)
    assert report.correct.shape == (50, 3) and not report.top1_correct[:10].any()
    assert report.top1_errors_m[0] > 400 and report.has_positive.all()
    assert "R@1 80.0" in report.summary() and report.to_dict()["recall@5"] == 1.0


def test_a_keyframe_map_is_evaluated_with_its_own_index(route) -> None:
    map_desc, map_pos, query_desc, query_pos = route
    kmap = KeyframeMap.create(32, "fp", None, "flat")
    kmap.add(map_desc, [Keyframe(i, tuple(p), (0.0, 0.0, 0.0, 1.0)) for i, p in enumerate(map_pos)])
    from_map = evaluate_retrieval(query_desc, query_pos, kmap)
    from_arrays = evaluate_retrieval(query_desc, query_pos, map_desc, map_pos)
    assert from_map.recalls == from_arrays.recalls
    assert np.array_equal(from_map.top1_ids, from_arrays.top1_ids)


def test_bad_inputs_are_refused(route) -> None:
    map_desc, map_pos, query_desc, query_pos = route
    with pytest.raises(ValueError):
        evaluate_retrieval(query_desc, query_pos[:3], map_desc, map_pos)
    with pytest.raises(ValueError):
        evaluate_retrieval(query_desc, query_pos, map_desc)


def _result(prior_xy, match_xy, ms=(20.0, 1.0)):
    kf = Keyframe(0, (*match_xy, 0.0), (0.0, 0.0, 0.0, 1.0)) if match_xy is not None else None
    prior = SimpleNamespace(position=(*prior_xy, 0.0)) if prior_xy is not None else None
    matches = (SimpleNamespace(keyframe=kf),) if kf is not None else ()
    return SimpleNamespace(pose_prior=prior, matches=matches, descriptor_ms=ms[0], search_ms=ms[1])


def test_localization_report() -> None:
    truth = np.zeros((4, 3))
    results = [
        _result((3.0, 4.0), (3.0, 4.0)),  # published, 5 m off
        _result((100.0, 0.0), (100.0, 0.0)),  # published, wrong
        _result(None, (10.0, 0.0)),  # not published, top-1 right
        _result(None, None),  # nothing at all
    ]
    report = evaluate_localization(results, truth, threshold_m=20.0, latencies_ms=[21.0, 21.0, np.nan, 21.0])
    assert report.threshold_m == 20.0
    assert report.fraction_published == 0.5
    assert report.precision == 0.5
    assert report.recall_at_1 == 0.5
    assert report.median_error_m == pytest.approx(52.5)
    assert math.isnan(report.errors_m[2])
    assert (
        report.latency is not None
        and report.latency.count == 3
        and report.latency.p95_ms == pytest.approx(21.0)
    )
    summary = report.summary()
    assert (
        "pose priors for 2 frames (50.0 %)" in summary and "within 20 m" in summary and "25 m" not in summary
    )
    assert evaluate_localization(results, truth).latency is None


def test_plot_route_writes_a_png(route, tmp_path) -> None:
    map_desc, map_pos, query_desc, query_pos = route
    report = evaluate_retrieval(query_desc, query_pos, map_desc, map_pos)
    path = plot_route(report, map_pos, query_pos, tmp_path / "plots" / "route.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
