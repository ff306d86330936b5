"""Frozen dataclass configurations loadable from YAML."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vbl_ros.errors import ConfigError

__all__ = ["from_dict", "load_yaml", "to_dict"]

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], *, source: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``values``, refusing unknown keys.

    Nested dataclass fields are built from nested dicts; lists become tuples.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys are {sorted(names)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, source=f"{source}.{key}")  # type: ignore[arg-type]
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: invalid {cls.__name__}: {err}") from err


def load_yaml(cls: type[T], path: Path | str, *, key: str | None = None) -> T:
    """Load ``cls`` from a YAML file, optionally from the mapping under ``key``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if key is not None:
        data = data.get(key, {}) if isinstance(data, dict) else data
    return from_dict(cls, data, source=str(path))


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (YAML/JSON serialisable) of a dataclass config."""
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
