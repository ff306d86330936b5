"""Tracking through time: the temporal pose filter over map places (and, beside it, loop candidates)."""

from vbl_ros.tracking.config import FilterConfig
from vbl_ros.tracking.filter import TRACKING_STATES, FilterEstimate, PlaceFilter, ScoreModel

__all__ = ["TRACKING_STATES", "FilterConfig", "FilterEstimate", "PlaceFilter", "ScoreModel"]
