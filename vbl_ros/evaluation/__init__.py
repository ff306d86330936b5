"""Evaluation: the one scoring routine (retrieval, localization), truth in the map's frame, replay, report, plots."""

from vbl_ros.evaluation.ground_truth import FrameTruth, frame_truth, ground_truth
from vbl_ros.evaluation.localization import (
    EvaluationConfig,
    FrameCounts,
    LatencySummary,
    LocalizationReport,
    combine,
    evaluate_localization,
)
from vbl_ros.evaluation.metrics import PrecisionRecall
from vbl_ros.evaluation.plots import plot_localization, plot_route
from vbl_ros.evaluation.replay import localize_bag
from vbl_ros.evaluation.report import EvaluationReport, ReportError, compare, load_report, write_report
from vbl_ros.evaluation.retrieval import RetrievalReport, evaluate_retrieval

__all__ = [
    "EvaluationConfig",
    "EvaluationReport",
    "FrameCounts",
    "FrameTruth",
    "LatencySummary",
    "LocalizationReport",
    "PrecisionRecall",
    "ReportError",
    "RetrievalReport",
    "combine",
    "compare",
    "evaluate_localization",
    "evaluate_retrieval",
    "frame_truth",
    "ground_truth",
    "load_report",
    "localize_bag",
    "plot_localization",
    "plot_route",
    "write_report",
]
