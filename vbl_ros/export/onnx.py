"""ONNX export of a model's inference network (input normalisation included), with vbl metadata.

The graph is :class:`~vbl_ros.export.graph.InferenceGraph` (``images`` ``(N, H, W, 3)`` uint8 RGB ->
``descriptors`` ``(N, D)`` float32, the batch dimension dynamic), exported with PyTorch's
``torch.export``-based exporter (``dynamo=True``; it needs ``onnxscript``), opset 18. The
:class:`~vbl_ros.export.metadata.ExportMetadata` goes into ``metadata_props``. When ONNX Runtime is
installed, the written file is checked against PyTorch on a random batch before it is renamed into place.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from vbl_ros.errors import ExportError, OutputExistsError, RuntimeUnavailableError
from vbl_ros.export.files import write_atomically
from vbl_ros.export.graph import InferenceGraph, metadata_of
from vbl_ros.export.metadata import INPUT_NAME, OUTPUT_NAME
from vbl_ros.model.net import DescriptorNet

__all__ = ["OPSET", "PARITY_COSINE", "export_onnx", "onnx_proto"]

logger = logging.getLogger(__name__)

OPSET = 18
#: Exported and PyTorch fp32 descriptors agree at least this well (cosine similarity).
PARITY_COSINE = 0.9999


def onnx_proto(net: DescriptorNet, *, opset: int = OPSET):  # -> onnx.ModelProto
    """The ONNX ``ModelProto`` of ``net``'s inference graph, with vbl metadata, checked by ``onnx.checker``.

    Raises:
        RuntimeUnavailableError: ``onnx`` or ``onnxscript`` is not installed.
        ExportError: the exporter failed.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ModuleNotFoundError as err:
        raise RuntimeUnavailableError(
            f"ONNX export needs the packages 'onnx' and 'onnxscript' ({err.name} is missing): "
            "pip install onnx onnxscript"
        ) from err
    graph = InferenceGraph(net)
    config = net.config
    example = torch.zeros((2, config.input_height, config.input_width, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=65536)
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]  # one INFO line per graph pass
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(max(log.level, logging.WARNING))
    try:
        program = torch.onnx.export(
            graph,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {0: batch}},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    except Exception as err:  # the exporter raises many types
        raise ExportError(f"ONNX export of {config.backbone} + {config.aggregation} failed: {err}") from err
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata_of(net, "onnx").to_strings().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "vbl"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported ONNX graph is invalid: {err}") from err
    return proto


def _check_parity(path: Path, net: DescriptorNet) -> float:
    """Min cosine between ONNX Runtime on ``path`` and PyTorch on a random batch; -1 without ONNX Runtime."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        logger.warning("onnxruntime is not installed: the exported file is not checked against PyTorch")
        return -1.0
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    config = net.config
    images = np.random.default_rng(0).integers(
        0, 256, (2, config.input_height, config.input_width, 3), np.uint8
    )
    exported = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    with torch.inference_mode():
        reference = InferenceGraph(net)(torch.from_numpy(images)).numpy()
    return float((exported * reference).sum(axis=1).min())


def export_onnx(net: DescriptorNet, out: Path | str, *, overwrite: bool = False, opset: int = OPSET) -> Path:
    """Write ``net``'s inference network to the ONNX file ``out`` atomically; return ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        RuntimeUnavailableError: ``onnx`` or ``onnxscript`` is not installed.
        ExportError: the exporter failed, or ONNX Runtime's descriptors disagree with PyTorch's
            (cosine below :data:`PARITY_COSINE`).
    """
    import onnx

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another --out or --overwrite it")
    proto = onnx_proto(net, opset=opset)

    def write(tmp: Path) -> None:
        onnx.save(proto, str(tmp))
        cosine = _check_parity(tmp, net)
        if -1.0 < cosine < PARITY_COSINE:
            raise ExportError(
                f"the exported network disagrees with PyTorch (min cosine {cosine:.6f} < {PARITY_COSINE}); "
                "the file was not written"
            )
        if cosine > -1.0:
            logger.info("ONNX Runtime vs PyTorch on a random batch: min cosine %.7f", cosine)

    path = write_atomically(out, write, overwrite=overwrite)
    logger.info("exported %s (%.1f MB, opset %d)", path, path.stat().st_size / 1e6, opset)
    return path
