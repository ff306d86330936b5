"""Pipelines: a few lines each, composing the steps (``evaluate``: replay bags against a map, score, report)."""

from vbl_ros.pipelines.evaluate import EvaluateConfig, compare_reports, evaluate

__all__ = ["EvaluateConfig", "compare_reports", "evaluate"]
