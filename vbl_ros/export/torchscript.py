"""TorchScript export of a model's inference network (for libtorch / C++), and the torch runtime that runs one.

The graph is :class:`~vbl_ros.export.graph.InferenceGraph`, traced (``torch.jit.trace``; the batch
dimension stays dynamic), frozen, and saved with the :class:`~vbl_ros.export.metadata.ExportMetadata`
as the extra file ``vbl_export.json``. In C++: ``torch::jit::load(path, device, extra_files)``.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from vbl_ros.errors import ExportError, ModelError, OutputExistsError
from vbl_ros.export.files import write_atomically
from vbl_ros.export.graph import InferenceGraph, metadata_of
from vbl_ros.export.metadata import TORCHSCRIPT_EXTRA, ExportMetadata
from vbl_ros.model.net import DescriptorNet

__all__ = ["TorchScriptBackend", "export_torchscript"]

logger = logging.getLogger(__name__)


def export_torchscript(net: DescriptorNet, out: Path | str, *, overwrite: bool = False) -> Path:
    """Write ``net``'s inference network to the TorchScript file ``out`` atomically; return ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        ExportError: tracing failed, or the traced graph disagrees with the module at another batch size.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another --out or --overwrite it")
    graph = InferenceGraph(net)
    config = net.config
    rng = np.random.default_rng(0)
    example = torch.from_numpy(
        rng.integers(0, 256, (2, config.input_height, config.input_width, 3), np.uint8)
    )
    check = torch.from_numpy(rng.integers(0, 256, (3, config.input_height, config.input_width, 3), np.uint8))
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", category=FutureWarning
            )  # torch.jit is deprecated, still loadable in C++
            warnings.simplefilter("ignore", category=DeprecationWarning)
            traced = torch.jit.freeze(torch.jit.trace(graph, (example,), check_trace=False))
            if not torch.allclose(traced(check), graph(check), atol=1e-5):
                raise ExportError("the traced graph disagrees with the module at batch size 3")
    except ExportError:
        raise
    except Exception as err:  # tracing raises many types
        raise ExportError(
            f"TorchScript export of {config.backbone} + {config.aggregation} failed: {err}"
        ) from err
    extra = {TORCHSCRIPT_EXTRA: json.dumps(metadata_of(net, "torchscript").to_strings(), sort_keys=True)}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            buffer = io.BytesIO()  # torch's C++ writer aborts the process on a full disk: Python writes
            torch.jit.save(traced, buffer, _extra_files=extra)
        tmp.write_bytes(buffer.getbuffer())

    path = write_atomically(out, write, overwrite=overwrite)
    logger.info("exported %s (%.1f MB, TorchScript)", path, path.stat().st_size / 1e6)
    return path


class TorchScriptBackend:
    """Runs an exported TorchScript file: ``run((N, H, W, 3) uint8) -> (N, D)`` float32.

    Args:
        path: the exported file.
        metadata: its metadata (:func:`~vbl_ros.export.metadata.read_metadata`).
        device: ``"cpu"`` or ``"cuda"``.
        threads: ``torch.set_num_threads`` (intra-op threads; PyTorch's OpenMP pool spins unless
            ``OMP_WAIT_POLICY=passive`` is set before the process starts).
    """

    runtime = "torch"

    def __init__(self, path: Path, metadata: ExportMetadata, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=FutureWarning)
                self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except (RuntimeError, ValueError) as err:
            raise ModelError(f"{path}: not a loadable TorchScript file: {err}") from err
        self.precision = metadata.precision
        self.provider = f"torch-{self.device.type}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()
