"""What an exported network carries about itself (fingerprint, config, input), and how to read it without torch.

An exported file holds the inference network of one model file *with its input normalisation*:
input ``images``, ``(N, H, W, 3)`` uint8 RGB (NHWC, the batch
:meth:`~vbl_ros.model.transforms.InputTransform.resize_batch` makes, already resized to the model's
input size); output ``descriptors``, ``(N, D)`` float32, unit L2. Beside the graph it stores an
:class:`ExportMetadata`: the source model's fingerprint (so a map built with the model file accepts
the exported one, and the other way round), its config, the input size and the precision.

- ONNX: one ``metadata_props`` entry per field, keys ``vbl.<field>``, string values.
- TorchScript: one extra file ``vbl_export.json`` in the archive (``torch.jit.save(_extra_files=...)``).

Nothing here imports torch: the node reads an exported file with this module and an ONNX runtime only.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vbl_ros import __version__
from vbl_ros.errors import ModelError, RuntimeUnavailableError

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "FILE_FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "TORCHSCRIPT_EXTRA",
    "ExportMetadata",
    "model_file_format",
    "read_metadata",
]

EXPORT_FORMAT = "vbl-export"
EXPORT_VERSION = 1
FILE_FORMATS = ("onnx", "torchscript")
INPUT_NAME = "images"
OUTPUT_NAME = "descriptors"
INPUT_LAYOUT = "NHWC"
TORCHSCRIPT_EXTRA = "vbl_export.json"
FILE_PRECISIONS = ("fp32", "int8")
_PREFIX = "vbl."


@dataclass(frozen=True)
class ExportMetadata:
    """The metadata of an exported network.

    Attributes:
        fingerprint: the source model file's fingerprint (:func:`~vbl_ros.model.io.model_fingerprint`):
            maps built with either file accept the other.
        config: the source model's ``ModelConfig`` as a plain dict (``vbl_ros.config.to_dict``).
        dim: descriptor dimension ``D``.
        height, width: the input size images are resized to.
        file_format: ``"onnx"`` or ``"torchscript"``.
        precision: ``"fp32"`` (exported as is) or ``"int8"`` (post-training quantised weights and activations).
        layout: the input layout, always ``"NHWC"`` (``(N, H, W, 3)`` uint8 RGB).
        vbl_version: the vbl version that exported it.
    """

    fingerprint: str
    config: Mapping[str, Any]
    dim: int
    height: int
    width: int
    file_format: str = "onnx"
    precision: str = "fp32"
    layout: str = INPUT_LAYOUT
    vbl_version: str = __version__
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.fingerprint) != 64 or any(c not in "0123456789abcdef" for c in self.fingerprint):
            raise ModelError(f"export metadata: fingerprint {self.fingerprint!r} is not a SHA-256 hex digest")
        if self.dim < 1 or self.height < 1 or self.width < 1:
            raise ModelError(
                f"export metadata: dim {self.dim}, input {self.height}x{self.width} must be >= 1"
            )
        if self.file_format not in FILE_FORMATS:
            raise ModelError(
                f"export metadata: file format {self.file_format!r}, expected one of {FILE_FORMATS}"
            )
        if self.precision not in FILE_PRECISIONS:
            raise ModelError(
                f"export metadata: precision {self.precision!r}, expected one of {FILE_PRECISIONS}"
            )
        if self.layout != INPUT_LAYOUT:
            raise ModelError(f"export metadata: input layout {self.layout!r}, this vbl reads {INPUT_LAYOUT}")

    def to_strings(self) -> dict[str, str]:
        """``{"vbl.<field>": str}``, ONNX ``metadata_props`` style (``config`` and ``extra`` as JSON)."""
        values = {
            "format": EXPORT_FORMAT,
            "version": str(EXPORT_VERSION),
            "fingerprint": self.fingerprint,
            "config": json.dumps(dict(self.config), sort_keys=True),
            "dim": str(self.dim),
            "height": str(self.height),
            "width": str(self.width),
            "file_format": self.file_format,
            "precision": self.precision,
            "layout": self.layout,
            "vbl_version": self.vbl_version,
            "extra": json.dumps(dict(self.extra), sort_keys=True),
        }
        return {_PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_strings(cls, props: Mapping[str, str], source: str) -> ExportMetadata:
        """Parse :meth:`to_strings`' output.

        Raises:
            ModelError: not a vbl export, another version, or a field missing or invalid.
        """
        values = {k[len(_PREFIX) :]: v for k, v in props.items() if k.startswith(_PREFIX)}
        if values.get("format") != EXPORT_FORMAT:
            raise ModelError(
                f"{source}: not a network exported by vbl (no '{_PREFIX}format: {EXPORT_FORMAT}' metadata); "
                "export a model file with 'vbl export MODEL --format onnx --out FILE'"
            )
        if values.get("version") != str(EXPORT_VERSION):
            raise ModelError(
                f"{source}: export format version {values.get('version')}, this vbl reads {EXPORT_VERSION}; "
                "export the model again with this vbl"
            )
        try:
            return cls(
                fingerprint=values["fingerprint"],
                config=json.loads(values["config"]),
                dim=int(values["dim"]),
                height=int(values["height"]),
                width=int(values["width"]),
                file_format=values["file_format"],
                precision=values["precision"],
                layout=values["layout"],
                vbl_version=values["vbl_version"],
                extra=json.loads(values.get("extra", "{}")),
            )
        except (KeyError, ValueError) as err:
            raise ModelError(f"{source}: incomplete or invalid vbl export metadata ({err!r})") from err


def model_file_format(path: Path | str) -> Literal["vbl-model", "onnx", "torchscript"]:
    """What kind of file ``path`` is, from its content: a vbl model file (``torch.save``), ONNX or TorchScript.

    Raises:
        ModelError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/extra/" + TORCHSCRIPT_EXTRA) or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        return "vbl-model"
    with path.open("rb") as f:
        first = f.read(1)
    # An ONNX ModelProto starts with field 1 (ir_version, varint): byte 0x08.
    return "onnx" if path.suffix == ".onnx" or first == b"\x08" else "vbl-model"


def _onnx_props(path: Path) -> dict[str, str]:
    try:
        import onnx
    except ModuleNotFoundError as err:
        raise RuntimeUnavailableError(
            "reading an ONNX file's metadata needs the package 'onnx': pip install onnx"
        ) from err
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError, onnx its own types
        raise ModelError(f"{path}: not a readable ONNX file ({type(err).__name__}: {err})") from err
    return {p.key: p.value for p in model.metadata_props}


def _torchscript_props(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/extra/" + TORCHSCRIPT_EXTRA)]
        if not names:
            raise ModelError(
                f"{path}: a TorchScript archive without vbl metadata ({TORCHSCRIPT_EXTRA}); "
                "export the model with 'vbl export MODEL --format torchscript --out FILE'"
            )
        try:
            values = json.loads(archive.read(names[0]))
        except ValueError as err:
            raise ModelError(f"{path}: {TORCHSCRIPT_EXTRA} is not JSON ({err})") from err
    if not isinstance(values, dict):
        raise ModelError(f"{path}: {TORCHSCRIPT_EXTRA} is not a JSON object")
    return {str(k): str(v) for k, v in values.items()}


def read_metadata(path: Path | str) -> ExportMetadata:
    """The :class:`ExportMetadata` of an exported ONNX or TorchScript file (no torch needed).

    Raises:
        ModelError: missing file, a vbl model file (not exported), or no/invalid vbl metadata.
        RuntimeUnavailableError: an ONNX file and the package ``onnx`` is not installed.
    """
    path = Path(path)
    kind = model_file_format(path)
    if kind == "vbl-model":
        raise ModelError(f"{path}: a vbl model file, not an exported network; export it with 'vbl export'")
    props = _onnx_props(path) if kind == "onnx" else _torchscript_props(path)
    metadata = ExportMetadata.from_strings(props, str(path))
    if metadata.file_format != kind:
        raise ModelError(f"{path}: metadata says {metadata.file_format}, the file is {kind}")
    return metadata
