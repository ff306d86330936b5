"""Tracking through time: the temporal pose filter over map places, and loop candidates confirmed over
consecutive frames."""

from vbl_ros.tracking.config import FilterConfig
from vbl_ros.tracking.filter import TRACKING_STATES, FilterEstimate, PlaceFilter
from vbl_ros.tracking.loops import LoopConfig, LoopDetector, SequenceMatch

__all__ = [
    "TRACKING_STATES",
    "FilterConfig",
    "FilterEstimate",
    "LoopConfig",
    "LoopDetector",
    "PlaceFilter",
    "SequenceMatch",
]
