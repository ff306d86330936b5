"""Tracking through time: loop-closure candidates confirmed over consecutive frames."""

from vbl_ros.tracking.loops import LoopConfig, LoopDetector, SequenceMatch

__all__ = ["LoopConfig", "LoopDetector", "SequenceMatch"]
