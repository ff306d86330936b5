"""Plots a person looks at rather than reads: the route with correct and wrong top-1 matches."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from vbl_ros.evaluation.localization import LocalizationReport
from vbl_ros.evaluation.retrieval import RetrievalReport, horizontal

__all__ = ["plot_localization", "plot_route"]


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
