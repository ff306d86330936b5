"""Runtimes behind the extractor: no torch for exported files, threads, named errors, maps across runtimes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from bag_fixtures import write_line_bag
from export_fixtures import Exported, small_exports, street_frames

from vbl_ros.cli import main
from vbl_ros.errors import BadFrameError, ConfigError, RuntimeUnavailableError
from vbl_ros.export import build_extractor, choose_runtime, installed_runtimes
from vbl_ros.export.cache import DEFAULT_WEIGHTS, default_model_key
from vbl_ros.export.onnx import PARITY_COSINE
from vbl_ros.export.runtimes import bf16_native
from vbl_ros.images import resize_batch
from vbl_ros.mapping import KeyframeMap, MapConfig, build_map
from vbl_ros.model import DescriptorExtractor, InputTransform, ModelConfig, default_model, model_fingerprint
from vbl_ros.model.backbones import efficientnet_lite_weights_path

HAS_CUDA_ORT = "CUDAExecutionProvider" in ort.get_available_providers()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    return small_exports(tmp_path_factory)


def test_the_torch_free_resize_gives_the_bytes_of_the_model_transform() -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (48, 80, 3), np.uint8),  # shrinks one side: INTER_AREA
        rng.integers(0, 256, (20, 30, 3), np.uint8),  # grows: INTER_LINEAR
        rng.integers(0, 256, (64, 64, 3), np.uint8),  # as is
        rng.integers(0, 256, (100, 50), np.uint8),  # grey
    ]
    transform = InputTransform.from_config(ModelConfig(input_height=64, input_width=64))
    assert np.array_equal(resize_batch(images, 64, 64), transform.resize_batch(images))
    with pytest.raises(BadFrameError, match="image 1: expected uint8"):
        resize_batch([images[0], images[0].astype(np.float32)], 64, 64)
    with pytest.raises(BadFrameError, match="expected shape"):
        resize_batch([np.zeros((8, 8, 4), np.uint8)], 64, 64)


NO_TORCH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import vbl_ros.localizer, vbl_ros.mapping
    from vbl_ros.export import build_extractor
    path, runtime = sys.argv[1], sys.argv[2]
    extractor = build_extractor(path, runtime=runtime, device="cpu", threads=1)
    out = extractor([np.full((48, 64, 3), 100, np.uint8)])
    rss_mb = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
    print(json.dumps({"torch": "torch" in sys.modules, "norm": float(np.linalg.norm(out)),
                      "fingerprint": extractor.fingerprint, "rss_mb": rss_mb}))
    """
)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_an_exported_model_runs_without_importing_torch(exports, runtime: str) -> None:
    e = exports["gem"]
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(e.onnx), runtime], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    assert report["norm"] == pytest.approx(1.0, abs=1e-5) and report["fingerprint"] == e.fingerprint
    assert report["rss_mb"] < 400, report  # the node budget; PyTorch alone takes ~1 GB


def test_threads_are_set_and_runtimes_do_not_spin(exports) -> None:
    e = exports["gem"]
    ort_extractor = build_extractor(e.onnx, runtime="onnxruntime", device="cpu", threads=1, warmup=False)
    options = ort_extractor.backend.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    ov_extractor = build_extractor(e.onnx, runtime="openvino", device="cpu", threads=2, warmup=False)
    assert ov_extractor.backend.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    assert ov_extractor.backend.compiled.get_property("NUM_STREAMS") == 1


def test_auto_runs_model_files_and_onnx_files_in_the_fastest_fp32_cpu_runtime(
    exports, tmp_path, monkeypatch
) -> None:
    e = exports["gem"]
    monkeypatch.setenv("VBL_CACHE_DIR", str(tmp_path / "cache"))
    expected = "onnxruntime" if "onnxruntime" in installed_runtimes() else "openvino"
    assert choose_runtime("vbl-model") == choose_runtime("onnx") == expected
    assert choose_runtime("torchscript") == "torch"
    assert build_extractor(e.onnx, device="cpu", threads=1, warmup=False).runtime == expected
    # a model file is exported once into the cache; the next start loads the cached file
    first = build_extractor(e.model, device="cpu", threads=1, warmup=False)
    assert first.runtime == expected and first.fingerprint == e.fingerprint
    (cached,) = (tmp_path / "cache" / "exports").glob("*.onnx")
    stamp = cached.stat().st_mtime_ns
    second = build_extractor(e.model, device="cpu", threads=1, warmup=False)
    assert cached.stat().st_mtime_ns == stamp and second.fingerprint == e.fingerprint
    images = street_frames(6)
    reference = DescriptorExtractor(e.net, "cpu")(images)
    assert (second(images) * reference).sum(1).min() >= PARITY_COSINE
    # a cached file cut short is made again, not used
    cached.write_bytes(cached.read_bytes()[:1000])
    third = build_extractor(e.model, device="cpu", threads=1, warmup=False)
    assert (third(images) * reference).sum(1).min() >= PARITY_COSINE


def test_auto_runs_a_model_file_in_torch_without_an_onnx_runtime(exports, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without them looks like
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert choose_runtime("vbl-model") == "torch"
    assert isinstance(build_extractor(exports["gem"].model, device="cpu", warmup=False), DescriptorExtractor)


def test_a_runtime_that_is_not_installed_is_named_with_its_package(exports, monkeypatch) -> None:
    e = exports["gem"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it looks like
    with pytest.raises(RuntimeUnavailableError, match="pip install onnxruntime"):
        build_extractor(e.onnx, runtime="onnxruntime", device="cpu")
    assert build_extractor(e.onnx, device="cpu", threads=1, warmup=False).runtime == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(RuntimeUnavailableError, match="pip install openvino"):
        build_extractor(e.onnx, runtime="openvino", device="cpu")
    with pytest.raises(RuntimeUnavailableError, match="pip install onnxruntime"):
        build_extractor(e.onnx, device="cpu")  # auto: none left


def test_a_file_or_setting_a_runtime_cannot_take_is_refused_clearly(exports) -> None:
    e = exports["gem"]
    cases = [
        ({"runtime": "tensorflow"}, ConfigError, "choose one of auto, torch"),
        ({"runtime": "torch"}, ConfigError, "an ONNX export runs with runtime onnxruntime"),
        ({"runtime": "onnxruntime", "precision": "bf16"}, ConfigError, "use openvino for bf16"),
        ({"runtime": "tensorrt", "device": "cpu"}, ConfigError, "tensorrt needs a GPU"),
        ({"runtime": "openvino", "device": "cuda"}, ConfigError, "openvino runs on the CPU"),
        ({"runtime": "openvino", "threads": 0}, ConfigError, "threads must be >= 1"),
        ({"device": "tpu"}, ConfigError, "use 'auto', 'cpu' or 'cuda'"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            build_extractor(e.onnx, **{"device": "cpu", **kwargs})
    with pytest.raises(ConfigError, match="fp16 with runtime torch needs CUDA"):
        build_extractor(e.model, runtime="torch", device="cpu", precision="fp16")
    if not HAS_CUDA_ORT:
        with pytest.raises(RuntimeUnavailableError, match="pip install onnxruntime-gpu"):
            build_extractor(e.onnx, runtime="onnxruntime", device="cuda")


def test_openvino_bf16_keeps_the_ranking_where_the_cpu_has_bf16(exports) -> None:
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(ConfigError, match="no bf16 support"):
            build_extractor(exports["gem"].onnx, runtime="openvino", device="cpu", precision="bf16")
        return
    e = exports["gem"]
    keyframes, queries = street_frames(30), street_frames(30, offset_px=3)
    fp32 = build_extractor(e.onnx, runtime="openvino", device="cpu", threads=1)
    bf16 = build_extractor(e.onnx, runtime="openvino", device="cpu", threads=1, precision="bf16")
    assert bf16.precision == "bf16"
    a, b = bf16(keyframes), fp32(keyframes)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(1).min() > 0.99  # bf16 keeps 8 bits of mantissa: close, not the fp32 parity
    assert np.array_equal((bf16(queries) @ a.T).argmax(1), (fp32(queries) @ b.T).argmax(1))


def test_precision_auto_is_bf16_in_openvino_on_a_cpu_with_native_bf16_else_fp32(exports, monkeypatch) -> None:
    """The node's default precision: OpenVINO bf16 where the CPU runs bf16 natively, fp32 elsewhere."""
    e = exports["gem"]
    fp32_runtime = "onnxruntime" if "onnxruntime" in installed_runtimes() else "openvino"
    native = bf16_native()
    chosen = build_extractor(e.onnx, device="cpu", threads=1, precision="auto", warmup=False)
    assert (chosen.runtime, chosen.precision) == (("openvino", "bf16") if native else (fp32_runtime, "fp32"))
    assert build_extractor(e.model, runtime="torch", device="cpu", precision="auto").precision == "fp32"
    ort_auto = build_extractor(e.onnx, runtime="onnxruntime", device="cpu", precision="auto", warmup=False)
    assert ort_auto.precision == "fp32"
    # unset (the map builder's choice) stays fp32 in the fp32 runtime
    unset = build_extractor(e.onnx, device="cpu", threads=1, warmup=False)
    assert (unset.runtime, unset.precision) == (fp32_runtime, "fp32")
    # without OpenVINO, auto is ONNX Runtime fp32
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert not bf16_native()
    without = build_extractor(e.onnx, device="cpu", threads=1, precision="auto", warmup=False)
    assert (without.runtime, without.precision) == ("onnxruntime", "fp32")


CACHED_DEFAULT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import vbl_ros.localizer, vbl_ros.mapping
    from vbl_ros.export import build_extractor
    extractor = build_extractor(None, runtime=sys.argv[1], device="cpu", threads=1, precision="auto")
    out = extractor([np.full((48, 64, 3), 100, np.uint8)])
    rss_mb = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
    print(json.dumps({"torch": "torch" in sys.modules, "norm": float(np.linalg.norm(out)),
                      "fingerprint": extractor.fingerprint, "rss_mb": rss_mb, "runtime": extractor.runtime}))
    """
)


def test_a_cached_start_of_the_default_model_needs_no_torch(tmp_path: Path, monkeypatch) -> None:
    """The default model's cache key is computed without building it: a cached start never imports torch."""
    module, filename = DEFAULT_WEIGHTS  # the file the default backbone loads, found without torch
    weights = efficientnet_lite_weights_path(ModelConfig().backbone)
    assert (weights.parent.parent.name, weights.name) == (module, filename)
    monkeypatch.setenv("VBL_CACHE_DIR", str(tmp_path / "cache"))
    key = default_model_key()
    assert key.startswith("default-") and key == default_model_key()
    first = build_extractor(None, runtime="onnxruntime", device="cpu", threads=1, warmup=False)  # exports
    assert [p.name for p in (tmp_path / "cache" / "exports").iterdir()] == [f"{key}.onnx"]
    fingerprint = model_fingerprint(default_model())
    assert first.fingerprint == fingerprint
    for runtime in ("auto", "onnxruntime"):
        result = subprocess.run(
            [sys.executable, "-c", CACHED_DEFAULT, runtime], capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["torch"] is False, report
        assert report["fingerprint"] == fingerprint and report["norm"] == pytest.approx(1.0, abs=1e-5)
        assert report["rss_mb"] < 400, report  # the node budget
    assert [p.name for p in (tmp_path / "cache" / "exports").iterdir()] == [f"{key}.onnx"]  # not made again


@pytest.fixture(scope="module")
def line_bag(tmp_path_factory):
    return write_line_bag(tmp_path_factory.mktemp("bag") / "line", length_m=60.0, camera_hz=4.0)


def test_a_map_built_in_one_runtime_is_used_in_another(exports, line_bag, tmp_path: Path) -> None:
    e = exports["gem"]
    config = MapConfig(spacing_m=10.0, batch_size=4, device="cpu", threads=1)
    torch_map = build_map(line_bag.path, tmp_path / "torch", model=e.model, config=config)
    common = ["--spacing", "10", "--runtime", "openvino", "--config", str(_threads_yaml(tmp_path))]
    assert (
        main(
            ["build-map", str(line_bag.path), "--model", str(e.onnx), "--out", str(tmp_path / "ov"), *common]
        )
        == 0
    )
    for runtime, model in (("onnxruntime", e.onnx), ("openvino", e.onnx), ("torch", e.model)):
        extractor = build_extractor(model, runtime=runtime, device="cpu", threads=1)
        for folder in (torch_map, tmp_path / "ov"):
            kmap = KeyframeMap.load(folder, expected_fingerprint=extractor.fingerprint)  # accepted
            _, ids = kmap.search(extractor([line_bag.frame_at(30.0)]), 1)
            assert ids[0, 0] == 3
    a, b = KeyframeMap.load(torch_map), KeyframeMap.load(tmp_path / "ov")
    assert a.model_fingerprint == b.model_fingerprint == e.fingerprint
    assert (a.descriptors() * b.descriptors()).sum(1).min() >= PARITY_COSINE


def _threads_yaml(folder: Path) -> Path:
    path = folder / "map.yaml"
    path.write_text("threads: 1\nbatch_size: 4\ndevice: cpu\n")
    return path
