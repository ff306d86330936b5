"""Inference runtimes behind the extractor's interface: PyTorch, ONNX Runtime, OpenVINO, TensorRT.

:func:`build_extractor` ``(model, runtime, device, threads)`` is the one way to get an extractor:
it returns the PyTorch :class:`~vbl_ros.model.extractor.DescriptorExtractor` for ``runtime="torch"``
and a vbl model file, and an :class:`ExportedExtractor` otherwise, with the same interface
(``__call__(images) -> (N, D)`` float32 unit-L2, ``dim``, ``fingerprint``). The fingerprint of an
exported file is its source model's (from its metadata), so maps built with one runtime are used
with another.

This module imports neither torch nor a runtime at import time; with an exported ONNX file and
``onnxruntime`` or ``openvino``, torch is never imported (a node then needs ~10x less memory).

Runtimes (``runtime``):

- ``torch``: a vbl model file (eager PyTorch, today's extractor) or a TorchScript export.
- ``onnxruntime``: an ONNX export on the CPU (``device="cpu"``) or CUDA (``onnxruntime-gpu``).
- ``openvino``: an ONNX export on the CPU; ``precision="bf16"`` on CPUs with bf16 instructions.
- ``tensorrt``: an ONNX export through ONNX Runtime's TensorRT execution provider
  (``onnxruntime-gpu`` + ``tensorrt``), fp32 or ``precision="fp16"``.
- ``auto``: the fastest runtime installed for the device, by a rule the benchmarks justify
  (``benchmarks/README.md``, descriptor_runtimes.py: on one CPU thread, ONNX Runtime fp32 ran the
  default model 2-4x faster than eager PyTorch with the same top-1 for every demo query, and was
  ahead of OpenVINO fp32 on 2 threads; it holds 50 MiB less; OpenVINO bf16 was faster still and kept
  the demo's recall, precision_recall.py). On the CPU: with ``precision="auto"`` (the node's
  default) and a CPU that runs bf16 natively (:func:`bf16_native`), ``openvino`` in bf16; otherwise
  ``onnxruntime``, else ``openvino``, in fp32, for an ONNX export *and* for a vbl model file, which is then exported to ONNX once
  and kept in the export cache (:mod:`vbl_ros.export.cache`, keyed by the file's SHA-256 or, for
  the default model, by what makes it, computed without torch; a later start loads the cached file
  and never imports torch); a vbl model file runs in ``torch`` only
  when no ONNX runtime is installed. A TorchScript export runs in ``torch``. On a GPU: a vbl model
  file or TorchScript in ``torch`` (fp16), an ONNX file in ``tensorrt``, else ``onnxruntime`` (CUDA).

An explicit ONNX runtime with a vbl model file uses the same cached export (the first time, it
needs torch and takes a few seconds to ~30 s on a busy 2-core machine).

Threads are always set: intra-op threads = ``threads`` (default: the CPUs this process may use),
one inter-op thread, and no spin-waiting (ONNX Runtime ``session.intra_op.allow_spinning=0``;
OpenVINO ``INFERENCE_NUM_THREADS``, one stream, no CPU pinning), so an idle extractor leaves the
cores to the robot's other processes.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vbl_ros.errors import ConfigError, ModelError, RuntimeUnavailableError
from vbl_ros.export.cache import export_cache_dir, model_cache_key
from vbl_ros.export.metadata import INPUT_NAME, OUTPUT_NAME, ExportMetadata, model_file_format, read_metadata
from vbl_ros.images import resize_batch

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "RUNTIMES",
    "Extractor",
    "ExportedExtractor",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "bf16_native",
    "build_extractor",
    "choose_runtime",
    "export_cache_dir",
    "installed_runtimes",
    "resize_batch",
]

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
#: Compute precision; ``None`` = the runtime's default (fp32; fp16 for eager PyTorch on CUDA);
#: ``auto`` = the fastest that keeps retrieval (:func:`build_extractor`: bf16 in OpenVINO on a CPU
#: with native bf16, else the runtime's default). int8 is not a runtime setting but a quantised
#: export (its metadata says ``precision: int8``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
#: The package(s) each runtime comes from, named in the error when it is missing.
PACKAGES = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tensorrt": "onnxruntime-gpu and tensorrt",
}
_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "onnxruntime"}


class Extractor(Protocol):
    """What the localizer and the map builder need of an extractor."""

    dim: int
    fingerprint: str
    runtime: str

    @property
    def input_size(self) -> tuple[int, int]:
        """The network's input ``(width, height)``: frames need not be decoded larger."""
        ...

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def installed_runtimes() -> tuple[str, ...]:
    """The runtimes whose Python package is installed (found, not imported); TensorRT needs its provider."""
    found = [r for r in RUNTIMES[1:] if importlib.util.find_spec(_MODULES[r]) is not None]
    if "tensorrt" in found and "TensorrtExecutionProvider" not in _ort_providers():
        found.remove("tensorrt")
    return tuple(found)


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return []
    return list(ort.get_available_providers())


def _require(runtime: str) -> None:
    if importlib.util.find_spec(_MODULES[runtime]) is None:
        raise RuntimeUnavailableError(
            f"runtime {runtime!r} is not installed: pip install {PACKAGES[runtime].replace(' and ', ' ')}"
        )


def bf16_native() -> bool:
    """Whether OpenVINO is installed and runs bf16 natively on this CPU.

    Native: the CPU plugin lists ``BF16`` in ``OPTIMIZATION_CAPABILITIES`` *and* its own default
    ``INFERENCE_PRECISION_HINT`` is bf16 (it is on CPUs with AVX512-BF16 or AMX; elsewhere bf16
    would be emulated, slower than fp32).
    """
    return importlib.util.find_spec("openvino") is not None and _openvino_cpu_bf16()


@functools.cache
def _openvino_cpu_bf16() -> bool:
    import openvino as ov

    cpu = ov.Core()
    capabilities = cpu.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    hint = cpu.get_property("CPU", "INFERENCE_PRECISION_HINT")
    return "BF16" in capabilities and hint == ov.Type.bf16


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- backends: run((N, H, W, 3) uint8) -> (N, D) float32 ----------------------------------------------


class OnnxRuntimeBackend:
    """An ONNX file in ONNX Runtime: CPU, CUDA, or TensorRT (``tensorrt=True``).

    Args:
        path: the exported ONNX file.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
        threads: intra-op threads (the CPU provider's pool; no spin-waiting).
        precision: ``"fp32"``; ``"fp16"`` with TensorRT only.
        tensorrt: use the TensorRT execution provider (engines cached beside the file).
    """

    def __init__(
        self, path: Path, *, device: str, threads: int, precision: str = "fp32", tensorrt: bool = False
    ) -> None:
        import onnxruntime as ort

        self.runtime = "tensorrt" if tensorrt else "onnxruntime"
        if precision == "bf16" or (precision == "fp16" and not tensorrt):
            raise ConfigError(
                f"precision {precision} is not available with {self.runtime}: use openvino for bf16 on the "
                "CPU, tensorrt for fp16 on a GPU, or fp32"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        wanted = "CPUExecutionProvider"
        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
            wanted = "CUDAExecutionProvider"
            if tensorrt:
                cache = Path(tempfile.gettempdir()) / "vbl_tensorrt_cache"
                trt = {
                    "device_id": index,
                    "trt_fp16_enable": precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                }
                providers.insert(0, ("TensorrtExecutionProvider", trt))
                wanted = "TensorrtExecutionProvider"
            if wanted not in ort.get_available_providers():
                raise RuntimeUnavailableError(
                    f"{self.runtime} on {device}: this onnxruntime has no {wanted}; "
                    f"pip install {PACKAGES['tensorrt'] if tensorrt else 'onnxruntime-gpu'} (instead of onnxruntime)"
                )
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if self.session.get_providers()[0] != wanted:
            raise RuntimeUnavailableError(
                f"{self.runtime}: {wanted} could not start on {device} (active: {self.session.get_providers()}); "
                "check the CUDA/TensorRT libraries or use device cpu"
            )
        self.provider = wanted
        self.precision = precision

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


class OpenVinoBackend:
    """An ONNX file compiled by OpenVINO for the CPU.

    Args:
        path: the exported ONNX file.
        threads: ``INFERENCE_NUM_THREADS`` (one stream, latency hint, no CPU pinning).
        precision: ``"fp32"`` or ``"bf16"`` (``INFERENCE_PRECISION_HINT``; bf16 needs a CPU with bf16).
    """

    runtime = "openvino"

    def __init__(self, path: Path, *, threads: int, precision: str = "fp32") -> None:
        import openvino as ov

        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[precision]
        if precision != "fp32" and precision.upper() not in capabilities:
            raise ConfigError(
                f"openvino: this CPU has no {precision} support (capabilities {list(capabilities)}); use fp32"
            )
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": hint,
            "ENABLE_CPU_PINNING": False,
        }
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.provider = "CPU"
        self.precision = precision

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({INPUT_NAME: batch})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)


class Backend(Protocol):
    runtime: str
    provider: str
    precision: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class ExportedExtractor:
    """An exported network behind the extractor's interface.

    ``__call__(images)`` takes ``(H, W, 3)`` uint8 RGB arrays (any size; ``(H, W)`` grey too) and
    returns ``(N, D)`` float32 unit-L2 descriptors; :attr:`fingerprint` is the source model's.

    Args:
        backend: the runtime running the exported graph.
        metadata: the exported file's metadata.
        batch_size: images per run.
        warmup: run one batch at construction, so that the first real call is not slow.
    """

    def __init__(
        self, backend: Backend, metadata: ExportMetadata, *, batch_size: int = 16, warmup: bool = True
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.metadata = metadata
        self.fingerprint: str = metadata.fingerprint
        self.dim: int = metadata.dim
        self.runtime: str = backend.runtime
        self.precision: str = "int8" if metadata.precision == "int8" else backend.precision
        self.batch_size = batch_size
        self.height, self.width = metadata.height, metadata.width
        if warmup:
            self([np.zeros((self.height, self.width, 3), np.uint8)] * min(2, batch_size))
        logger.info(
            "descriptor extractor: %s on %s, %s, %d-d, input %dx%d",
            self.runtime,
            backend.provider,
            self.precision,
            self.dim,
            self.width,
            self.height,
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """The network's input ``(width, height)``."""
        return self.width, self.height

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Descriptors ``(N, D)`` float32, unit L2, of ``N`` RGB uint8 images."""
        out = np.empty((len(images), self.dim), np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            out[start : start + len(chunk)] = self.backend.run(resize_batch(chunk, self.height, self.width))
        if self.precision != "fp32":  # renormalise after reduced-precision rounding
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out


# --- choosing and building ---------------------------------------------------------------------------


def _wants_cuda(device: str) -> bool:
    """Whether ``device`` asks for CUDA; ``"auto"`` does when ONNX Runtime has the CUDA provider."""
    if device == "auto":
        return "CUDAExecutionProvider" in _ort_providers()
    return device.startswith("cuda")


def choose_runtime(kind: str, device: str = "auto", precision: str | None = None) -> str:
    """The runtime ``auto`` picks for a model file of ``kind`` (``vbl-model``, ``torchscript``, ``onnx``).

    On a GPU: a vbl model file or a TorchScript export in ``torch``; an ONNX export in ``tensorrt`` >
    ``onnxruntime`` (CUDA). On the CPU: TorchScript in ``torch``; an ONNX export or a vbl model file
    (exported once, cached) in ``openvino`` when ``precision`` is ``auto`` and the CPU runs bf16
    natively (:func:`bf16_native`), else ``onnxruntime`` > ``openvino``; a vbl model file in
    ``torch`` when neither is installed.

    Raises:
        RuntimeUnavailableError: an ONNX file and no ONNX runtime installed for the device.
    """
    if kind == "torchscript":
        return "torch"
    if _wants_cuda(device):
        if kind == "vbl-model":
            return "torch"
        providers = _ort_providers()
        if "TensorrtExecutionProvider" in providers:
            return "tensorrt"
        if "CUDAExecutionProvider" in providers:
            return "onnxruntime"
        raise RuntimeUnavailableError(
            f"an ONNX model on {device}: no ONNX Runtime with CUDA installed; pip install onnxruntime-gpu"
        )
    if precision == "auto" and bf16_native():
        return "openvino"
    for runtime in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(_MODULES[runtime]) is not None:
            return runtime
    if kind == "vbl-model":
        return "torch"
    raise RuntimeUnavailableError(
        "an ONNX model needs an ONNX runtime, and none is installed: pip install onnxruntime (or openvino)"
    )


def _check_args(runtime: str, device: str, threads: int | None, precision: str | None) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if device not in ("auto", "cpu") and not (device == "cuda" or device.startswith("cuda:")):
        raise ConfigError(f"device {device!r}: use 'auto', 'cpu' or 'cuda'")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(
            f"precision {precision!r}: choose one of {', '.join(PRECISIONS)} (or leave it unset)"
        )


def build_extractor(
    model: Path | str | None = None,
    *,
    runtime: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 16,
    precision: str | None = None,
    warmup: bool = True,
) -> Extractor:
    """The extractor of a model file in a runtime.

    Args:
        model: a vbl model file (``.pt``), an exported ONNX or TorchScript file (``vbl export``), or
            ``None`` for the embedded default model.
        runtime: one of :data:`RUNTIMES` (see the module's docstring for ``auto``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; OpenVINO runs on the CPU.
        threads: intra-op threads; ``None`` = the CPUs this process may use (eager PyTorch: leave
            torch's setting, as before).
        batch_size: images per run.
        precision: ``fp32``, ``bf16`` (OpenVINO on a CPU with bf16), ``fp16`` (eager PyTorch on CUDA,
            TensorRT); ``None`` = the runtime's default (fp32; eager PyTorch on CUDA: fp16);
            ``auto`` (the node's default) = bf16 in OpenVINO on a CPU that runs it natively
            (:func:`bf16_native`; with ``runtime="auto"`` OpenVINO is then chosen), else the
            runtime's default; an int8 export runs as exported.
        warmup: run one batch at construction.

    Raises:
        ConfigError: unknown runtime, device, precision or thread count, or a file the runtime
            cannot run (an ONNX file in ``torch``, a TorchScript file in an ONNX runtime).
        RuntimeUnavailableError: the runtime's package is not installed or cannot use the device.
        ModelError: the model file is missing, corrupt, or an export without vbl metadata.
    """
    _check_args(runtime, device, threads, precision)
    kind = "vbl-model" if model is None else model_file_format(model)
    chosen = runtime == "auto"
    if chosen:
        runtime = choose_runtime(kind, device, precision)
    _require(runtime)
    if runtime == "openvino" and device.startswith("cuda"):
        raise ConfigError(
            "runtime openvino runs on the CPU here: use device cpu, or onnxruntime/tensorrt on CUDA"
        )
    if runtime == "tensorrt" and device == "cpu":
        raise ConfigError("runtime tensorrt needs a GPU: use device cuda, or onnxruntime/openvino on the CPU")
    logger.info(
        "descriptor runtime %s for %s (%s) on %s", runtime, model or "the default model", kind, device
    )
    if runtime == "torch":
        return _torch_extractor(model, kind, device, threads, batch_size, precision, warmup)
    if kind == "torchscript":
        raise ConfigError(
            f"{model}: a TorchScript export runs with runtime torch; for {runtime}, export ONNX "
            "('vbl export MODEL --format onnx --out FILE')"
        )
    threads = threads or _cpu_count()

    def onnx_extractor(path: Path) -> ExportedExtractor:
        try:
            return _onnx_extractor(path, runtime, device, threads, batch_size, precision, warmup)
        except RuntimeUnavailableError as err:
            # device auto: a GPU build of ONNX Runtime on a machine whose GPU cannot be used -> the CPU
            if device != "auto" or not _wants_cuda(device) or (runtime == "tensorrt" and not chosen):
                raise
            fallback = choose_runtime("onnx", "cpu", precision) if chosen else runtime
            logger.warning("%s; running %s on the CPU instead", err, fallback)
            return _onnx_extractor(path, fallback, "cpu", threads, batch_size, precision, warmup)

    if kind == "vbl-model":
        cached = export_cache_dir() / f"{model_cache_key(model)}.onnx"  # computed without loading the model
        if cached.is_file():
            try:
                logger.info("descriptor model: the cached ONNX export %s", cached)
                return onnx_extractor(cached)
            except ModelError:  # e.g. cut short by a full disk: made again below
                logger.warning("%s: the cached export cannot be read; exporting again", cached)
        if _export_to_cache(model, cached):
            return onnx_extractor(cached)
        with tempfile.TemporaryDirectory(prefix="vbl-export-") as folder:
            return onnx_extractor(_export_to_onnx(_load_net(model), Path(folder) / "model.onnx"))
    assert model is not None
    return onnx_extractor(Path(model))


def _onnx_extractor(
    path: Path,
    runtime: str,
    device: str,
    threads: int,
    batch_size: int,
    precision: str | None,
    warmup: bool,
) -> ExportedExtractor:
    metadata = read_metadata(path)
    if precision == "auto":
        native = runtime == "openvino" and metadata.precision != "int8" and bf16_native()
        precision = "bf16" if native else None
    if metadata.precision == "int8" and precision not in (None, "fp32"):
        raise ConfigError(f"{path}: an int8 export runs as exported; leave precision unset")
    backend: Backend
    if runtime == "openvino" and metadata.precision == "int8":
        logger.warning(
            "%s: OpenVINO runs this int8 file with descriptors at cosine ~0.94 of fp32 (ONNX Runtime: 0.997); "
            "a map built in fp32 loses recall with it (benchmarks/README.md): prefer onnxruntime or bf16",
            path,
        )
    if runtime == "openvino":
        backend = OpenVinoBackend(path, threads=threads, precision=precision or "fp32")
    else:
        cuda = runtime == "tensorrt" or _wants_cuda(device)
        resolved = (device if device.startswith("cuda") else "cuda") if cuda else "cpu"
        backend = OnnxRuntimeBackend(
            path,
            device=resolved,
            threads=threads,
            precision=precision or "fp32",
            tensorrt=runtime == "tensorrt",
        )
    return ExportedExtractor(backend, metadata, batch_size=batch_size, warmup=warmup)


def _load_net(model: Path | str | None):  # -> DescriptorNet (imports torch)
    from vbl_ros.model.io import default_model, load_model

    return load_model(model) if model is not None else default_model()


def _export_to_onnx(net, out: Path) -> Path:
    """Export a loaded vbl model (a ``DescriptorNet``) to ``out`` for an ONNX runtime (imports torch)."""
    from vbl_ros.export.onnx import export_onnx

    return export_onnx(net, out, overwrite=True)


def _export_to_cache(model: Path | str | None, path: Path) -> bool:
    """Export ``model`` to ONNX at ``path`` in the export cache; ``False`` if the cache cannot be written.

    The export is written atomically, so two processes exporting at once both end with a whole file.
    """
    logger.info(
        "exporting %s to ONNX once for the runtime (cached in %s; later starts load it)",
        model or "the default model",
        path.parent,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _export_to_onnx(_load_net(model), path)
        return True
    except OSError as err:
        logger.warning(
            "cannot cache the ONNX export in %s (%s); exporting to a temporary file", path.parent, err
        )
        return False


def _torch_extractor(
    model: Path | str | None,
    kind: str,
    device: str,
    threads: int | None,
    batch_size: int,
    precision: str | None,
    warmup: bool,
) -> Extractor:
    if kind == "onnx":
        raise ConfigError(
            f"{model}: an ONNX export runs with runtime onnxruntime, openvino or tensorrt; runtime torch "
            "needs a vbl model file or a TorchScript export"
        )
    from vbl_ros.model.extractor import DescriptorExtractor, resolve_device

    if precision == "auto":  # eager PyTorch and TorchScript: their default (fp32; fp16 on CUDA)
        precision = None
    if kind == "torchscript":
        from vbl_ros.export.torchscript import TorchScriptBackend

        assert model is not None
        if precision not in (None, "fp32"):
            raise ConfigError("a TorchScript export runs in fp32; leave precision unset")
        metadata = read_metadata(model)
        backend = TorchScriptBackend(
            Path(model), metadata, str(resolve_device(device)), threads or _cpu_count()
        )
        return ExportedExtractor(backend, metadata, batch_size=batch_size, warmup=warmup)
    return DescriptorExtractor(
        _load_net(model),
        device,
        batch_size=batch_size,
        num_threads=threads,
        precision=precision,
        warmup=warmup,
    )
