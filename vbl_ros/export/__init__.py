"""Exported descriptor networks (ONNX, TorchScript) and the runtimes that run them behind the extractor.

- :func:`export_model`: a model file -> an ONNX or TorchScript file of its inference network
  (``(N, H, W, 3)`` uint8 RGB -> ``(N, D)`` unit-L2 float32, normalisation inside), with the
  model's fingerprint and config in the file's metadata (:mod:`vbl_ros.export.metadata`).
- :func:`build_extractor` ``(model, runtime, device, threads)``: the extractor of any model file in
  ``torch``, ``onnxruntime``, ``openvino`` or ``tensorrt`` (:mod:`vbl_ros.export.runtimes`).

Importing this package does not import torch (:mod:`vbl_ros.export.onnx` and
:mod:`vbl_ros.export.torchscript` do, and :func:`export_model` imports them when called).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vbl_ros.errors import ConfigError, ModelError
from vbl_ros.export.metadata import FILE_FORMATS, ExportMetadata, model_file_format, read_metadata
from vbl_ros.export.runtimes import (
    PRECISIONS,
    RUNTIMES,
    ExportedExtractor,
    Extractor,
    build_extractor,
    choose_runtime,
    installed_runtimes,
)

if TYPE_CHECKING:
    from vbl_ros.model.net import DescriptorNet

__all__ = [
    "FILE_FORMATS",
    "PRECISIONS",
    "RUNTIMES",
    "ExportMetadata",
    "ExportedExtractor",
    "Extractor",
    "build_extractor",
    "choose_runtime",
    "export_model",
    "installed_runtimes",
    "model_file_format",
    "read_metadata",
]

logger = logging.getLogger(__name__)


def export_model(
    model: DescriptorNet | Path | str | None,
    out: Path | str,
    *,
    file_format: str = "onnx",
    overwrite: bool = False,
) -> Path:
    """Export the inference network of a model to ``out`` (written atomically); return ``out``.

    Args:
        model: a vbl model file, a loaded :class:`~vbl_ros.model.net.DescriptorNet`, or ``None``
            for the embedded default model.
        out: the file to write (``.onnx`` or ``.ts`` by convention).
        file_format: ``"onnx"`` or ``"torchscript"``.
        overwrite: replace an existing ``out``.

    Raises:
        ConfigError: unknown format.
        ModelError: the model file is missing or not a vbl model file.
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        RuntimeUnavailableError: ``onnx`` / ``onnxscript`` missing for an ONNX export.
        ExportError: the exporter failed, or the exported network disagrees with PyTorch.
    """
    if file_format not in FILE_FORMATS:
        raise ConfigError(f"export format {file_format!r}: choose one of {', '.join(FILE_FORMATS)}")
    from vbl_ros.model.io import default_model, load_model

    if model is None:
        net = default_model()
    elif isinstance(model, (str, Path)):
        if model_file_format(model) != "vbl-model":
            raise ModelError(f"{model}: already an exported network; export the vbl model file it came from")
        net = load_model(model)
    else:
        net = model
    if file_format == "onnx":
        from vbl_ros.export.onnx import export_onnx

        return export_onnx(net, out, overwrite=overwrite)
    from vbl_ros.export.torchscript import export_torchscript

    return export_torchscript(net, out, overwrite=overwrite)
