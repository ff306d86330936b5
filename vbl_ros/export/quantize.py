"""Post-training int8 quantisation of an exported ONNX network, calibrated on map images (no torch).

ONNX Runtime's static quantiser writes a QDQ graph (int8 per-channel weights, uint8 activations
whose ranges come from the calibration images); ONNX Runtime and OpenVINO both run it in int8.
The file keeps the source model's fingerprint, with ``precision: int8`` and the calibration in its
metadata. Whether int8 keeps retrieval is shown by a recall comparison (benchmarks/README.md), not
assumed: it is never a default.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vbl_ros.errors import ConfigError, ModelError, OutputExistsError, RuntimeUnavailableError
from vbl_ros.export.files import write_atomically
from vbl_ros.export.metadata import INPUT_NAME, ExportMetadata, read_metadata
from vbl_ros.images import resize_batch

__all__ = ["quantize_onnx"]

logger = logging.getLogger(__name__)


def quantize_onnx(
    onnx_path: Path | str,
    out: Path | str,
    calibration_images: Sequence[np.ndarray],
    *,
    overwrite: bool = False,
) -> Path:
    """Write an int8 version of the fp32 ONNX export ``onnx_path`` to ``out``; return ``out``.

    Args:
        onnx_path: an fp32 ONNX file written by ``vbl export``.
        out: the int8 file to write (atomically).
        calibration_images: RGB uint8 images like those the model will see (map keyframes), any size;
            a few dozen to a few hundred.
        overwrite: replace an existing ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        ModelError: ``onnx_path`` is not an fp32 vbl ONNX export.
        ConfigError: fewer than 8 calibration images.
        RuntimeUnavailableError: ``onnxruntime`` or ``onnx`` is not installed.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another output or overwrite it")
    metadata = read_metadata(onnx_path)
    if metadata.file_format != "onnx" or metadata.precision != "fp32":
        raise ModelError(f"{onnx_path}: int8 quantisation starts from an fp32 ONNX export")
    if len(calibration_images) < 8:
        raise ConfigError(f"int8 calibration needs at least 8 images, got {len(calibration_images)}")
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ModuleNotFoundError as err:
        raise RuntimeUnavailableError(
            f"int8 quantisation needs onnxruntime and onnx ({err.name} is missing): pip install onnxruntime onnx"
        ) from err
    batch = resize_batch(calibration_images, metadata.height, metadata.width)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batch[i : i + 1] for i in range(len(batch)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._it, None)
            return None if item is None else {INPUT_NAME: item}

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="vbl-int8-") as folder:
            quantized = Path(folder) / "int8.onnx"
            quantize_static(
                str(onnx_path),
                str(quantized),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            proto = onnx.load(str(quantized))
        int8 = ExportMetadata(
            **{
                **metadata.__dict__,
                "precision": "int8",
                "extra": {**metadata.extra, "calibration_images": str(len(batch))},
            }
        )
        del proto.metadata_props[:]
        for key, value in int8.to_strings().items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))

    path = write_atomically(out, write, overwrite=overwrite)
    logger.info("int8 export %s from %s, calibrated on %d images", path, onnx_path, len(batch))
    return path
