"""Retrieval evaluation of descriptors (recall@N within 25 m, top-1 error, off-map queries) and the route plot."""

from __future__ import annotations

import numpy as np
import pytest

from vbl_ros.evaluation import evaluate_retrieval, plot_route
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


def test_queries_without_a_keyframe_in_range_are_counted_apart(route) -> None:
    map_desc, map_pos, query_desc, query_pos = route
    far = query_pos[:5] + np.array([0.0, 500.0, 0.0])  # 500 m off the route: cannot be right
    report = evaluate_retrieval(
        np.r_[query_desc, query_desc[:5]], np.r_[query_pos, far], map_desc, map_pos, ks=(1, 5)
    )
    assert int((~report.has_positive).sum()) == 5
    assert report.recalls == {1: pytest.approx(0.8), 5: pytest.approx(1.0)}  # as without them
    assert report.to_dict()["num_with_positive"] == 50


def test_plot_route_writes_a_png(route, tmp_path) -> None:
    map_desc, map_pos, query_desc, query_pos = route
    report = evaluate_retrieval(query_desc, query_pos, map_desc, map_pos)
    path = plot_route(report, map_pos, query_pos, tmp_path / "plots" / "route.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
