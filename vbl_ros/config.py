"""Frozen dataclass configurations: built from YAML, ROS parameters or model files, validated one way.

Every configuration of vbl is a frozen dataclass whose ``__post_init__`` checks its values. Whatever
the source (a YAML file, the node's parameters, a model file's stored config), it is built by
:func:`from_dict`, which refuses unknown keys and checks each value against the field's type (int vs
float vs string vs bool, tuples, optional values, nested configs), naming the key; then
``__post_init__`` checks the values. Both raise :class:`~vbl_ros.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vbl_ros.errors import ConfigError

__all__ = ["from_dict", "load_yaml", "to_dict"]

T = TypeVar("T")


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}.get(
            hint.__name__, hint.__name__
        )
    return str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (ints are accepted for floats, lists for tuples).

    Raises:
        ConfigError: naming ``key``, the expected type and the value.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, source=key)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value  # Any and other hints: the dataclass's own checks decide


def from_dict(cls: type[T], values: dict[str, Any], *, source: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``values``: unknown keys and values of the wrong type
    are refused, naming the key; nested dataclass fields are built from nested mappings; lists become
    tuples. Then ``cls.__post_init__`` checks the values.
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
        try:
            kwargs[key] = _coerce(value, hints[key], key)
        except ConfigError as err:
            raise ConfigError(f"{source}: {cls.__name__}.{err}") from None
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: invalid {cls.__name__}: {err}") from err


def load_yaml(cls: type[T], path: Path | str, *, key: str | None = None) -> T:
    """Load ``cls`` from a YAML file, optionally from the mapping under ``key``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if key is not None:
        data = data.get(key, {}) if isinstance(data, dict) else data
    return from_dict(cls, data, source=str(path))


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (YAML/JSON serialisable: tuples become lists, at any depth) of a dataclass config
    that :func:`from_dict` reads back. A nested value with a ``to_config_value()`` method (e.g. an
    index config, which names its kind) is written as that method says."""

    def plain(value: Any) -> Any:
        if hasattr(value, "to_config_value"):
            return plain(value.to_config_value())
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(config)
