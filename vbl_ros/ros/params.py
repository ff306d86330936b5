"""The ``localize`` node's parameters: declared with descriptions, read once, checked at start.

Two groups, both flat (no prefix) so a params file reads naturally:

- node parameters (:class:`NodeParams`): model and map files, device, input type, frame ids, ...;
- every field of the core's :class:`~vbl_ros.localizer.LocalizerConfig` (top-k, thresholds,
  keyframe interval, ...), declared with the field's type and default.

:func:`declare_and_read` turns them into two frozen dataclasses; nothing below the node sees
rclpy. An invalid value raises :class:`~vbl_ros.errors.ConfigError` naming the parameter, what it
got and what it accepts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from vbl_ros.config import from_dict
from vbl_ros.errors import ConfigError
from vbl_ros.export.runtimes import PRECISIONS, RUNTIMES
from vbl_ros.localizer import LocalizerConfig
from vbl_ros.mapping.store import recover_map

__all__ = [
    "DEVICES",
    "IMAGE_QOS",
    "IMAGE_TRANSPORTS",
    "NodeParams",
    "declare_and_read",
    "parameter_table",
    "unknown_overrides",
]

DEVICES = ("auto", "cpu", "cuda")
IMAGE_TRANSPORTS = ("raw", "compressed")
IMAGE_QOS = ("auto", "best_effort", "reliable")


@dataclass(frozen=True)
class NodeParams:
    """Parameters of the node itself (the localizer's own are in ``LocalizerConfig``).

    Attributes:
        model: A model file (.pt, `vbl init-model`); empty = the model the map carries (`vbl
            build-map --adapt`), else the packaged pretrained default model. It must be the model
            the map was built with (checked by fingerprint).
        map: Keyframe map folder written by `vbl build-map`; empty = no map: no pose priors, only
            loop-closure candidates among this session's own keyframes.
        device: Where the descriptor network runs: auto (CUDA when available), cpu or cuda.
        image_transport: Type on the `image` topic: raw (sensor_msgs/Image, any common encoding
            incl. bayer_gbrg8) or compressed (sensor_msgs/CompressedImage, PNG/JPEG).
        image_qos: Reliability of the `image` subscription: auto (reliable when every publisher on
            the topic is reliable, best effort otherwise; re-checked as publishers come and go),
            best_effort (matches every publisher) or reliable (lost fragments of large frames are
            sent again, but only reliable publishers match). The node keeps the newest frame only.
        map_frame: frame_id of the pose prior and the markers (the map's frame).
        odom_frame: frame_id of the loop-candidate table: the frame of the session keyframes'
            poses (the odometry's frame when use_odometry is true).
        use_odometry: Subscribe to `odometry` (nav_msgs/Odometry): session keyframes are then
            taken by distance travelled and carry poses; without it, by time.
        diagnostics_period: Seconds between two /diagnostics messages.
        marker_diameter: Diameter in metres of the RViz spheres drawn at matched keyframes.
        inference_threads: CPU threads of the descriptor network (torch.set_num_threads, ONNX
            Runtime / OpenVINO intra-op threads without spin-waiting; not used on CUDA). 1 is the
            fastest on a computer that other processes share (measured in benchmarks/README.md);
            more only helps on cores reserved for this node.
        runtime: Inference runtime: auto (on the CPU: OpenVINO when precision is auto and the CPU
            runs bf16 natively, else ONNX Runtime, else OpenVINO, for an .onnx and for a .pt model,
            exported to ONNX once and cached; on a GPU a .pt in PyTorch, an .onnx in TensorRT or ONNX
            Runtime CUDA), torch, onnxruntime, openvino or tensorrt.
        precision: Compute precision: empty or auto = bf16 in OpenVINO on a CPU that runs bf16
            natively (same recall on the demo, benchmarks/README.md precision_recall.py), else the
            runtime's default (fp32; fp16 for PyTorch on CUDA); or fp32, bf16 (OpenVINO on CPUs
            with bf16) or fp16 (GPU).
    """

    model: str = field(default="", metadata={"constraints": "empty or an existing file"})
    map: str = field(default="", metadata={"constraints": "empty or an existing map folder"})
    device: str = field(default="auto", metadata={"constraints": f"one of {', '.join(DEVICES)}"})
    image_transport: str = field(
        default="raw", metadata={"constraints": f"one of {', '.join(IMAGE_TRANSPORTS)}"}
    )
    image_qos: str = field(default="auto", metadata={"constraints": f"one of {', '.join(IMAGE_QOS)}"})
    map_frame: str = field(default="map", metadata={"constraints": "not empty"})
    odom_frame: str = field(default="odom", metadata={"constraints": "not empty"})
    use_odometry: bool = False
    diagnostics_period: float = field(default=1.0, metadata={"constraints": "> 0"})
    marker_diameter: float = field(default=2.0, metadata={"constraints": "> 0"})
    inference_threads: int = field(default=1, metadata={"constraints": ">= 1"})
    runtime: str = field(default="auto", metadata={"constraints": f"one of {', '.join(RUNTIMES)}"})
    precision: str = field(default="", metadata={"constraints": f"empty or one of {', '.join(PRECISIONS)}"})

    def __post_init__(self) -> None:
        for name, choices in (
            ("device", DEVICES),
            ("image_transport", IMAGE_TRANSPORTS),
            ("image_qos", IMAGE_QOS),
            ("runtime", RUNTIMES),
            ("precision", ("", *PRECISIONS)),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"parameter {name!r} is {getattr(self, name)!r}; use one of {', '.join(c or repr(c) for c in choices)}"
                )
        if self.model and not Path(self.model).expanduser().is_file():
            raise ConfigError(
                f"parameter 'model': file {self.model!r} not found; give a model file (`vbl init-model`), "
                "or leave it empty for the packaged default model"
            )
        if self.map:
            recover_map(Path(self.map).expanduser())  # undo an interrupted map replace
        if self.map and not Path(self.map).expanduser().exists():
            raise ConfigError(
                f"parameter 'map': {self.map!r} not found; give a map written by `vbl build-map`, "
                "or leave it empty to run without a map (loop-closure candidates only)"
            )
        for name in ("map_frame", "odom_frame"):
            if not getattr(self, name).strip():
                raise ConfigError(f"parameter {name!r} is empty; give a frame id such as 'map' or 'odom'")
        for name in ("diagnostics_period", "marker_diameter"):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"parameter {name!r} must be > 0, got {getattr(self, name)}")
        if self.inference_threads < 1:
            raise ConfigError(
                f"parameter 'inference_threads' must be >= 1, got {self.inference_threads}; "
                "1 is the fastest on a shared computer"
            )


def _attribute_docs(cls: type) -> dict[str, str]:
    """Field descriptions from the ``Attributes:`` section of a Google-style class docstring.

    The core documents its config there, so the ROS descriptions never drift from it.
    """
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return docs
    names: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        head, sep, text = line.strip().partition(": ")
        candidates = [n.strip() for n in head.split(",")]
        if (
            sep
            and all(n.isidentifier() for n in candidates)
            and line.startswith(" " * 8)
            and not (line.startswith(" " * 12))
        ):
            names = candidates
            for name in names:
                docs[name] = text.strip()
        elif names:
            for name in names:
                docs[name] += " " + line.strip()
    return docs


_PARAMETER_TYPES = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
}
_ARRAY_TYPES = {
    bool: Parameter.Type.BOOL_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    float: Parameter.Type.DOUBLE_ARRAY,
    str: Parameter.Type.STRING_ARRAY,
}
_TYPE_WORDS = {
    Parameter.Type.BOOL: "a bool (true/false)",
    Parameter.Type.INTEGER: "an integer",
    Parameter.Type.DOUBLE: "a double (write 1.0, not 1)",
    Parameter.Type.STRING: "a string",
    Parameter.Type.BOOL_ARRAY: "a list of bools",
    Parameter.Type.INTEGER_ARRAY: "a list of integers",
    Parameter.Type.DOUBLE_ARRAY: "a list of doubles",
    Parameter.Type.STRING_ARRAY: "a list of strings",
}


@dataclass(frozen=True)
class _Spec:
    name: str
    type: Parameter.Type
    default: Any  # None: no default (declared uninitialised; unset -> None)
    description: str
    constraints: str = ""


def _parameter_type(hint: Any, name: str) -> tuple[Parameter.Type, bool]:
    """ROS parameter type of a dataclass field type hint, and whether ``None`` is allowed."""
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        if len(rest) != 1:
            raise TypeError(f"LocalizerConfig.{name}: cannot map {hint} to a ROS parameter")
        hint, args = rest[0], typing.get_args(rest[0])
    if hint in _PARAMETER_TYPES:
        return _PARAMETER_TYPES[hint], optional
    if typing.get_origin(hint) in (tuple, list) and args and args[0] in _ARRAY_TYPES:
        return _ARRAY_TYPES[args[0]], optional
    raise TypeError(f"LocalizerConfig.{name}: cannot map {hint} to a ROS parameter")


def _specs() -> list[_Spec]:
    specs = []
    node_docs = _attribute_docs(NodeParams)
    for node_field in dataclasses.fields(NodeParams):
        if not node_docs.get(node_field.name):
            raise TypeError(f"NodeParams.{node_field.name} has no description in its docstring")
        specs.append(
            _Spec(
                name=node_field.name,
                type=_PARAMETER_TYPES[type(node_field.default)],
                default=node_field.default,
                description=node_docs[node_field.name],
                constraints=node_field.metadata.get("constraints", ""),
            )
        )
    hints = typing.get_type_hints(LocalizerConfig)
    docs = _attribute_docs(LocalizerConfig)
    for config_field in dataclasses.fields(LocalizerConfig):
        if config_field.name in node_docs:
            raise TypeError(f"LocalizerConfig.{config_field.name} clashes with a node parameter")
        ptype, _optional = _parameter_type(hints[config_field.name], config_field.name)
        if config_field.default is not dataclasses.MISSING:
            default = config_field.default
        elif config_field.default_factory is not dataclasses.MISSING:
            default = config_field.default_factory()
        else:
            default = None
        if isinstance(default, tuple):
            default = list(default)
        if ptype == Parameter.Type.DOUBLE and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        description = config_field.metadata.get("description") or docs.get(config_field.name) or ""
        if not description:
            raise TypeError(f"LocalizerConfig.{config_field.name} has no description in its docstring")
        specs.append(
            _Spec(
                config_field.name, ptype, default, description, config_field.metadata.get("constraints", "")
            )
        )
    return specs


def parameter_table() -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, description)`` of every parameter, for documentation and tests."""
    return [(s.name, s.type.name.lower(), s.default, s.description) for s in _specs()]


def declare_and_read(node: Node) -> tuple[NodeParams, LocalizerConfig]:
    """Declare every parameter on ``node`` (with descriptors), read and check them once.

    Raises :class:`~vbl_ros.errors.ConfigError` naming the first invalid parameter.
    """
    values: dict[str, Any] = {}
    for spec in _specs():
        descriptor = ParameterDescriptor(
            name=spec.name,
            type=int(spec.type),
            description=spec.description,
            additional_constraints=spec.constraints,
            read_only=True,
        )
        try:
            if spec.default is None:
                node.declare_parameter(spec.name, spec.type, descriptor)
            else:
                node.declare_parameter(spec.name, spec.default, descriptor)
            param = node.get_parameter(spec.name)
            value = param.value
        except InvalidParameterTypeException as err:
            raise ConfigError(
                f"parameter {spec.name!r} must be {_TYPE_WORDS.get(spec.type, spec.type.name)}: {err}"
            ) from err
        except InvalidParameterValueException as err:
            raise ConfigError(f"parameter {spec.name!r}: {err}") from err
        except ParameterUninitializedException:
            value = None
        if isinstance(value, list | tuple):
            value = tuple(value)
        values[spec.name] = value

    node_names = {f.name for f in dataclasses.fields(NodeParams)}
    node_params = NodeParams(**{k: v for k, v in values.items() if k in node_names})
    config_values = {k: v for k, v in values.items() if k not in node_names and v is not None}
    try:
        config = from_dict(LocalizerConfig, config_values, source="localize parameters")
    except ConfigError as err:
        raise ConfigError(f"invalid localizer parameters: {err}") from err
    return node_params, config


def unknown_overrides(node: Node) -> list[str]:
    """Names set on the command line or in a params file that the node never declared (typos)."""
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them here; best effort
    declared = set(node._parameters) if hasattr(node, "_parameters") else set()
    return sorted(name for name in overrides if name not in declared and name != "use_sim_time")
