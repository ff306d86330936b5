"""Keyframe maps: the keyframe store, its search indexes and the ``build_map`` step."""

from vbl_ros.mapping.adapt import AdaptConfig, resolve_model
from vbl_ros.mapping.build import MapConfig, build_map
from vbl_ros.mapping.indexes import (
    INDEXES,
    FlatIndexConfig,
    HnswIndexConfig,
    Index,
    IndexConfig,
    IvfIndexConfig,
    PqIndexConfig,
    index_config,
)
from vbl_ros.mapping.store import Keyframe, KeyframeMap

__all__ = [
    "INDEXES",
    "AdaptConfig",
    "FlatIndexConfig",
    "HnswIndexConfig",
    "Index",
    "IndexConfig",
    "IvfIndexConfig",
    "Keyframe",
    "KeyframeMap",
    "MapConfig",
    "PqIndexConfig",
    "build_map",
    "index_config",
    "resolve_model",
]
