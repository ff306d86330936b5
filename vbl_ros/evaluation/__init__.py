"""Evaluation: the one scoring routine (retrieval, localization), truth in the map's frame, replay, plots."""

from vbl_ros.evaluation.ground_truth import ground_truth
from vbl_ros.evaluation.localization import LatencySummary, LocalizationReport, evaluate_localization
from vbl_ros.evaluation.plots import plot_localization, plot_route
from vbl_ros.evaluation.replay import localize_bag
from vbl_ros.evaluation.retrieval import RetrievalReport, evaluate_retrieval

__all__ = [
    "LatencySummary",
    "LocalizationReport",
    "RetrievalReport",
    "evaluate_localization",
    "evaluate_retrieval",
    "ground_truth",
    "localize_bag",
    "plot_localization",
    "plot_route",
]
