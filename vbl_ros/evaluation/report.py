"""The evaluation report: ``report.json`` (versioned), ``report.md`` and PNG plots; several reports compared.

An :class:`EvaluationReport` holds one :class:`~vbl_ros.evaluation.localization.LocalizationReport`
per query bag and one for all of them together ("all", recomputed from their frames by
:func:`~vbl_ros.evaluation.localization.combine`). :func:`write_report` writes, into a report folder:

- ``report.json``: schema ``vbl.evaluation.report`` version :data:`SCHEMA_VERSION`, written
  atomically (temporary file, fsync, rename); ``nan`` (a value that does not exist) is ``null``;
- ``report.md``: the table a person reads first, then the plots;
- ``plots/*.png``: the route with correct and wrong matches (per query bag, when the map's positions
  are given), recall@N, recall against distance, precision-recall, prior error CDF, latency.

:func:`compare` puts several reports (models, conditions, indexes) side by side in one table and
one set of plots, from their ``report.json`` alone (``vbl evaluate --compare``).

``report.json``::

    {"schema": "vbl.evaluation.report", "schema_version": 1, "meta": {str: str},
     "queries": {bag name: ENTRY}, "all": ENTRY}

    ENTRY = {"num_frames", "threshold_m", "loop_exclude_recent_s",
             "recall_at": {"1": r, "5": r, "10": r, "20": r}, "recall_vs_distance_m": {"5": r, ...},
             "frames_without_map_place", "availability", "prior_precision", "priors_published",
             "prior_error_median_m", "prior_error_p95_m", "heading_error_median_deg",
             "heading_error_p95_deg", "covariance_coverage_95", "loop_recall_at_100_precision",
             "latency_ms": {"p50", "p95", "p99", "count"},
             "frames": {"sent", "processed", "dropped", "rejected", "bad"},
             "map_matches": PR, "loop_candidates": PR + {"frames_with_candidates", "reported_candidates"
             (all ranks), "wrong_candidates", "revisit_frames"},
             "prior_errors_m": [sorted], "latencies_ms": [...]}
    PR = {"average_precision", "recall_at_100_precision", "extended_precision", "positives",
          "candidates", "curve": {"threshold": [...], "precision": [...], "recall": [...]}}
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vbl_ros.errors import OutputExistsError, ReportError
from vbl_ros.evaluation.localization import LocalizationReport, combine
from vbl_ros.evaluation.metrics import PrecisionRecall
from vbl_ros.evaluation.plots import (
    plot_latency_histogram,
    plot_localization,
    plot_precision_recall,
    plot_prior_error_cdf,
    plot_recall_at_n,
    plot_recall_vs_distance,
)
from vbl_ros.files import write_text_atomic

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "EvaluationReport",
    "ReportError",
    "compare",
    "load_report",
    "metrics_table",
    "write_report",
]

logger = logging.getLogger(__name__)

SCHEMA = "vbl.evaluation.report"
SCHEMA_VERSION = 1
ALL = "all"


@dataclass(frozen=True)
class EvaluationReport:
    """The reports of one evaluation: one per query bag and one for all of them together.

    Attributes:
        queries: per query bag (its name: the bag's folder name), in the order evaluated.
        all: the frames of every query bag together.
        meta: free-form strings: map, model, mode, command, date.
        schema_version: :data:`SCHEMA_VERSION` of the code that wrote it.
    """

    queries: dict[str, LocalizationReport]
    all: LocalizationReport
    meta: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(
        cls, queries: Mapping[str, LocalizationReport], *, meta: Mapping[str, str] | None = None
    ) -> EvaluationReport:
        """The report of scored query bags; "all" is recomputed from their frames (one bag: itself)."""
        if not queries:
            raise ValueError("an evaluation report needs at least one query bag")
        if ALL in queries:
            raise ValueError(f"'{ALL}' is the combined report's name; rename that query bag")
        reports = list(queries.values())
        combined = reports[0] if len(reports) == 1 else combine(reports)
        return cls(dict(queries), combined, {str(k): str(v) for k, v in (meta or {}).items()})

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "meta": dict(self.meta),
            "queries": {name: r.to_dict() for name, r in self.queries.items()},
            ALL: self.all.to_dict(),
        }

    def to_json(self) -> str:
        """``report.json``'s text: indented, ``nan`` and infinities written as ``null``."""
        return json.dumps(_nulls(self.to_dict()), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "report.json") -> EvaluationReport:
        """A report from :meth:`to_json`'s text (without per-frame scores).

        Raises:
            ReportError: not JSON, another schema, a newer version, or a missing entry.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ReportError(f"{source}: not JSON ({err}); write it again with vbl evaluate") from err
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise ReportError(f'{source}: not a vbl evaluation report (no "schema": "{SCHEMA}")')
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ReportError(
                f"{source}: report schema version {version}, this vbl reads version {SCHEMA_VERSION}; "
                "evaluate again with this version of vbl"
            )
        try:
            return cls(
                queries={name: LocalizationReport.from_dict(q) for name, q in d["queries"].items()},
                all=LocalizationReport.from_dict(d[ALL]),
                meta={str(k): str(v) for k, v in d.get("meta", {}).items()},
                schema_version=int(version),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{source}: malformed report ({type(err).__name__}: {err})") from err

    # ---------------------------------------------------------------- markdown
    def markdown(self, plots: Mapping[str, str] | None = None) -> str:
        """``report.md``: the table (one column per query bag, then all), the plots, the definitions."""
        columns = dict(self.queries)
        if len(columns) > 1:
            columns[ALL] = self.all
        lines = ["# Evaluation report", ""]
        lines += [f"- {k}: {v}" for k, v in self.meta.items()]
        lines += ["", metrics_table(columns), ""]
        if plots:
            lines += ["## Plots", ""]
            lines += [f"![{name}]({rel})" for name, rel in plots.items()]
            lines += [""]
        lines += [_DEFINITIONS.format(thr=f"{self.all.threshold_m:g} m")]
        return "\n".join(lines)


def write_report(
    report: EvaluationReport,
    report_dir: Path | str,
    *,
    map_positions: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``report.json``, ``report.md`` and ``plots/*.png`` into ``report_dir``; return report.json.

    Args:
        report: the evaluation's report.
        report_dir: the folder (created if needed).
        map_positions: ``(M, 2|3)`` the map's keyframes; with them, a route plot per query bag
            (queries whose report still has its per-frame scores).
        overwrite: replace an existing ``report.json``.

    Raises:
        OutputExistsError: ``report_dir/report.json`` exists and ``overwrite`` is false.
    """
    out = Path(report_dir)
    json_path = out / "report.json"
    if json_path.exists() and not overwrite:
        raise OutputExistsError(f"{json_path} exists; choose another report folder or remove it")
    out.mkdir(parents=True, exist_ok=True)
    series = dict(report.queries)
    if len(series) > 1:
        series[ALL] = report.all
    plots: dict[str, str] = {}
    if map_positions is not None:
        for name, q in report.queries.items():
            if q.per_frame is None:
                continue
            path = plot_localization(
                q,
                map_positions,
                q.per_frame.truth_xy,
                q.per_frame.top1_xyz,
                out / "plots" / f"route_{_slug(name)}.png",
                title=f"{name}: {q.summary()}",
            )
            plots[f"route {name}"] = path.relative_to(out).as_posix()
    plots.update(_curve_plots(series, out, "plots/"))
    write_text_atomic(out / "report.md", report.markdown(plots))
    write_text_atomic(json_path, report.to_json())
    logger.info("wrote %s (%s)", json_path, report.all.summary())
    return json_path


def load_report(path: Path | str) -> EvaluationReport:
    """The report in ``path`` (a report folder or its ``report.json``).

    Raises:
        ReportError: no report there, or an unreadable one.
    """
    path = Path(path)
    json_path = path / "report.json" if path.is_dir() else path
    if not json_path.is_file():
        raise ReportError(f"{json_path}: no report; run vbl evaluate --out {path} first")
    return EvaluationReport.from_json(json_path.read_text(), source=str(json_path))


def compare(reports: Mapping[str, EvaluationReport], out_dir: Path | str) -> tuple[str, list[Path]]:
    """Several reports side by side: one markdown table of their "all" entries and one set of plots.

    Writes ``out_dir/compare.md`` (the returned markdown) and ``out_dir/compare_*.png``; returns the
    markdown and the plots' paths. Labels are the mapping's keys (e.g. the report folders' names).
    """
    if not reports:
        raise ValueError("nothing to compare")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series = {label: r.all for label, r in reports.items()}
    plots = _curve_plots(series, out, "compare_")
    lines = ["# Comparison", "", metrics_table(series), ""]
    for label, r in reports.items():
        if r.meta:
            lines.append(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in r.meta.items()))
    lines += ["", "## Plots", ""] + [f"![{name}]({rel})" for name, rel in plots.items()]
    markdown = "\n".join(lines) + "\n"
    write_text_atomic(out / "compare.md", markdown)
    return markdown, [out / rel for rel in plots.values()]


def metrics_table(columns: Mapping[str, LocalizationReport]) -> str:
    """A markdown table: one row per metric, one column per report."""
    radii = {r.threshold_m for r in columns.values()}
    thr = f"{radii.pop():g} m" if len(radii) == 1 else "the success radius"
    ns = sorted({n for r in columns.values() for n in r.recall_at})
    rows: list[tuple[str, Callable[[LocalizationReport], str]]] = [
        ("success radius", lambda r: f"{r.threshold_m:g} m"),
        ("frames sent / processed / dropped / rejected", _frames),
        ("frames bad (undecodable or failed)", lambda r: str(r.frames.bad)),
        (f"frames without a map keyframe within {thr}", lambda r: str(r.frames_without_map_place)),
        ("frames without ground truth (not judged)", lambda r: str(r.frames_without_truth)),
        *((f"recall@{n} within {thr}", lambda r, n=n: _pct(r.recall_at.get(n, math.nan))) for n in ns),
        ("pose-prior availability", lambda r: _pct(r.availability)),
        (f"prior precision (within {thr})", lambda r: _pct(r.prior_precision)),
        (
            "prior error median / p95",
            lambda r: f"{_num(r.prior_error_median_m, 'm')} / {_num(r.prior_error_p95_m, 'm')}",
        ),
        (
            "heading error median / p95",
            lambda r: f"{_num(r.heading_error_median_deg, '°')} / {_num(r.heading_error_p95_deg, '°')}",
        ),
        ("errors inside the prior's 95 % ellipse", lambda r: _pct(r.covariance_coverage_95)),
        ("map matches: AP / R@100%P / EP", lambda r: _curve(r.map_matches)),
        ("loop candidates: frames with any", lambda r: _pct(r.loop_candidates.frames_with_candidates)),
        (
            "loop candidates: wrong / all (revisit frames)",
            lambda r: (
                f"{r.loop_candidates.wrong_candidates} / {r.loop_candidates.candidates} "
                f"({r.loop_candidates.revisit_frames})"
            ),
        ),
        ("loop candidates: AP / R@100%P / EP", lambda r: _curve(r.loop_candidates.curve)),
        ("latency p50 / p95 / p99", _latency),
    ]
    header = "| metric | " + " | ".join(_cell(name) for name in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    body = [f"| {name} | " + " | ".join(cell(r) for r in columns.values()) + " |" for name, cell in rows]
    return "\n".join([header, rule, *body])


def _curve_plots(series: dict[str, LocalizationReport], base: Path, stem: str) -> dict[str, str]:
    """The five curve plots of ``series``, written to ``base / (stem + name.png)``;
    ``{title: path relative to base}``."""
    made = {
        "recall@N": plot_recall_at_n(series, base / f"{stem}recall_at_n.png"),
        "recall against distance": plot_recall_vs_distance(series, base / f"{stem}recall_vs_distance.png"),
        "precision-recall": plot_precision_recall(series, base / f"{stem}precision_recall.png"),
        "prior error CDF": plot_prior_error_cdf(series, base / f"{stem}prior_error_cdf.png"),
        "latency": plot_latency_histogram(series, base / f"{stem}latency_histogram.png"),
    }
    return {title: path.relative_to(base).as_posix() for title, path in made.items()}


_DEFINITIONS = """## Definitions

- A match or prior is right when it lies within {thr} (horizontal, in the map's frame) of the frame's
  true position. Frames with no map keyframe within {thr} cannot be right: they are counted apart
  and left out of recall (a prior there is always wrong).
- recall@N: share of frames with a right keyframe among their N best map matches (n/a when the
  localizer returned fewer than N matches: raise its top_k).
- availability: share of frames with a pose prior; precision: share of priors within {thr}.
- errors inside the 95 % ellipse: share of priors whose horizontal error e satisfies
  e' S^-1 e <= 5.991 (chi-square, 2 dof) for the x/y block S of their own covariance; an honest
  covariance gives about 95 %.
- AP: area under the precision-recall curve over the score (one candidate per frame, ties accepted
  together, recall over the frames for which a right candidate exists); R@100%P: the highest recall
  at 100 % precision; EP: extended precision (P at the highest threshold + R@100%P) / 2 (Ferrarini
  et al., RA-L 2020, as in VPR-Bench).
- Loop candidates are judged on the query drive itself: a candidate is right when the drive's true
  position at the candidate keyframe's stamp is within {thr}; a revisit frame is one the drive had
  passed within {thr} earlier. A drive that never revisits a place should get no candidate.
"""


def _nulls(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nulls(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "query"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.1f} %"


def _num(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.1f}{unit}" if unit == "°" else f"{value:.2f} {unit}"


def _frames(r: LocalizationReport) -> str:
    f = r.frames
    return f"{f.sent} / {f.processed} / {f.dropped} / {f.rejected}"


def _curve(c: PrecisionRecall) -> str:
    def two(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.2f}"

    return f"{two(c.average_precision)} / {_pct(c.recall_at_100_precision)} / {two(c.extended_precision)}"


def _latency(r: LocalizationReport) -> str:
    lat = r.latency
    if lat is None:
        return "not measured"
    return f"{lat.p50_ms:.1f} / {lat.p95_ms:.1f} / {lat.p99_ms:.1f} ms"
