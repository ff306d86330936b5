"""Plots a person looks at rather than reads: the route with correct and wrong matches, and the curves
of a report (recall@N, recall against distance, precision-recall, prior error CDF, latency histogram).

Every curve plot takes ``{label: report}``: one report (a query bag) or several (the bags of one
evaluation, or the reports compared by :func:`vbl_ros.evaluation.report.compare`), and draws them
on the same axes from what ``report.json`` holds, so a comparison needs no per-frame data.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vbl_ros.evaluation.localization import LocalizationReport
from vbl_ros.evaluation.retrieval import RetrievalReport, horizontal

__all__ = [
    "plot_latency_histogram",
    "plot_localization",
    "plot_precision_recall",
    "plot_prior_error_cdf",
    "plot_recall_at_n",
    "plot_recall_vs_distance",
    "plot_route",
]

Series = Mapping[str, LocalizationReport]


def plot_route(
    report: RetrievalReport,
    map_positions: np.ndarray,
    query_positions: np.ndarray,
    path: Path | str,
    *,
    title: str | None = None,
) -> Path:
    """Save a PNG of the route: map keyframes (grey), queries whose top-1 match is correct (green)
    or wrong (red, with a line to the wrong match). Returns ``path``."""
    m = horizontal(map_positions)
    matched = np.where(report.top1_ids[:, None] >= 0, m[np.clip(report.top1_ids, 0, None)], np.nan)
    return _plot_matches(
        m, horizontal(query_positions), matched, report.top1_correct, path, title or report.summary()
    )


def plot_localization(
    report: LocalizationReport,
    map_positions: np.ndarray,
    query_positions: np.ndarray,
    top1_positions: np.ndarray,
    path: Path | str,
    *,
    title: str | None = None,
) -> Path:
    """The same plot for a replay: ``top1_positions`` ``(F, 2|3)`` (nan where nothing matched)."""
    ok = np.nan_to_num(report.top1_errors_m, nan=np.inf) <= report.threshold_m
    return _plot_matches(
        horizontal(map_positions),
        horizontal(query_positions),
        horizontal(top1_positions),
        ok,
        path,
        title or report.summary(),
    )


def _plot_matches(
    m: np.ndarray, q: np.ndarray, matched: np.ndarray, ok: np.ndarray, path: Path | str, title: str
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    try:
        ax.plot(m[:, 0], m[:, 1], ".", color="0.7", markersize=3, label=f"map keyframes ({len(m)})")
        for i in np.flatnonzero(~ok):
            if not np.isnan(matched[i]).any():
                ax.plot(
                    [q[i, 0], matched[i, 0]],
                    [q[i, 1], matched[i, 1]],
                    "-",
                    color="tab:red",
                    alpha=0.3,
                    linewidth=0.7,
                )
        ax.plot(q[ok, 0], q[ok, 1], "o", color="tab:green", markersize=3, label=f"correct top-1 ({ok.sum()})")
        ax.plot(
            q[~ok, 0], q[~ok, 1], "o", color="tab:red", markersize=3, label=f"wrong top-1 ({(~ok).sum()})"
        )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x / east (m)")
        ax.set_ylabel("y / north (m)")
        ax.set_title(textwrap.fill(title, 100), fontsize=8)
        ax.legend(loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_recall_at_n(series: Series, path: Path | str, *, title: str | None = None) -> Path:
    """Recall@N against N, one line per report (N that were not measured are left out)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for label, report in series.items():
            ns = [n for n, v in report.recall_at.items() if math.isfinite(v)]
            ax.plot(ns, [100 * report.recall_at[n] for n in ns], "o-", label=label)
        ax.set_xscale("log")
        ns = sorted({n for r in series.values() for n in r.recall_at})
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (map matches considered)")
        ax.set_ylabel(f"recall@N within {_threshold(series)} (%)")
        _finish(ax, title or "Recall@N", ylim=(0, 101))
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_recall_vs_distance(series: Series, path: Path | str, *, title: str | None = None) -> Path:
    """Top-1 recall against the distance counted as right, one line per report."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for label, report in series.items():
            ds = [d for d, v in report.recall_vs_distance.items() if math.isfinite(v)]
            ax.plot(ds, [100 * report.recall_vs_distance[d] for d in ds], "o-", markersize=3, label=label)
        ax.set_xlabel("distance threshold (m)")
        ax.set_ylabel("top-1 recall (%)")
        _finish(ax, title or "Top-1 recall against the distance threshold", ylim=(0, 101))
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_precision_recall(series: Series, path: Path | str, *, title: str | None = None) -> Path:
    """Precision-recall over the score: top-1 map matches (left) and loop candidates (right)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    try:
        for ax, which in zip(axes, ("map matches (top-1)", "loop candidates (rank 1)"), strict=True):
            for label, report in series.items():
                curve = report.map_matches if which.startswith("map") else report.loop_candidates.curve
                if not curve.candidates:
                    continue
                # P_n holds over (R_{n-1}, R_n]: the area under these steps is the average precision
                recall = np.r_[0.0, np.nan_to_num(np.asarray(curve.recall), nan=0.0)]
                precision = np.r_[curve.precision[0], np.asarray(curve.precision)]
                ax.step(
                    100 * recall,
                    100 * precision,
                    where="pre",
                    label=f"{label} (AP {_fmt(curve.average_precision)}, EP {_fmt(curve.extended_precision)})",
                )
            ax.set_xlabel("recall (%)")
            ax.set_ylabel("precision (%)")
            _finish(ax, which, ylim=(0, 101), xlim=(0, 101))
        fig.suptitle(title or f"Precision-recall over the score (correct: within {_threshold(series)})")
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_prior_error_cdf(series: Series, path: Path | str, *, title: str | None = None) -> Path:
    """Share of all frames with a pose prior within x metres; each curve ends at the availability."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for label, report in series.items():
            errors = np.asarray(report.prior_errors_m)
            if not len(errors) or not report.num_frames:
                continue
            share = np.arange(1, len(errors) + 1) / report.num_frames
            ax.step(np.r_[0.0, errors], 100 * np.r_[0.0, share], where="post", label=label)
        thr = next(iter(series.values())).threshold_m if series else math.nan
        if math.isfinite(thr):
            ax.axvline(thr, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("pose-prior position error (m)")
        ax.set_ylabel("frames with a prior within x (% of all frames)")
        _finish(ax, title or "Pose-prior error CDF", ylim=(0, 101))
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_latency_histogram(series: Series, path: Path | str, *, title: str | None = None) -> Path:
    """Histogram of the measured latencies, one outline per report, p95 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        values = [np.asarray(r.latencies_ms) for r in series.values()]
        pooled = np.concatenate(values) if values else np.zeros(0)
        if len(pooled):
            low, high = float(pooled.min()), float(pooled.max())
            bins = np.linspace(low, max(high, low + 1.0), 41)
            for (label, report), v in zip(series.items(), values, strict=True):
                if not len(v):
                    continue
                lat = report.latency
                p95 = "" if lat is None else f", p50 {lat.p50_ms:.1f} / p95 {lat.p95_ms:.1f} ms"
                (line,) = ax.plot([], [])
                ax.hist(v, bins=bins, histtype="step", color=line.get_color(), label=f"{label}{p95}")
                if lat is not None:
                    ax.axvline(lat.p95_ms, color=line.get_color(), linestyle=":", linewidth=0.8)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("frames")
        _finish(ax, title or "Latency (dotted: p95)")
        return _save(fig, path)
    finally:
        plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(ax, title: str, *, ylim: tuple[float, float] | None = None, xlim=None) -> None:
    if ylim is not None:
        ax.set_ylim(*ylim)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=7)
    else:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes, color="0.5")


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _threshold(series: Series) -> str:
    thresholds = sorted({r.threshold_m for r in series.values()})
    return " / ".join(f"{t:g} m" for t in thresholds) or "the threshold"


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f}"
