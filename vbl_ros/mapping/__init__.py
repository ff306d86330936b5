"""Keyframe maps: the keyframe store, its search indexes and the ``build_map`` step."""

from vbl_ros.mapping.store import Keyframe, KeyframeMap, MapConfig, build_map

__all__ = ["Keyframe", "KeyframeMap", "MapConfig", "build_map"]
