"""int8 post-training quantisation of an ONNX export: metadata, the same fingerprint, runs in both ONNX runtimes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_fixtures import Exported, small_exports, street_frames

from vbl_ros.errors import ConfigError, ModelError, OutputExistsError
from vbl_ros.export import build_extractor, read_metadata
from vbl_ros.export.quantize import quantize_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    return small_exports(tmp_path_factory)


def test_int8_keeps_the_fingerprint_says_int8_and_runs(exports, tmp_path: Path) -> None:
    e = exports["gem"]
    keyframes = street_frames(30)
    int8 = quantize_onnx(e.onnx, tmp_path / "int8.onnx", keyframes[::2])
    metadata = read_metadata(int8)
    assert metadata.precision == "int8" and metadata.fingerprint == e.fingerprint
    assert metadata.extra["calibration_images"] == "15"
    fp32 = build_extractor(e.onnx, runtime="onnxruntime", device="cpu", threads=1)(keyframes)
    for runtime in ("onnxruntime", "openvino"):
        extractor = build_extractor(int8, runtime=runtime, device="cpu", threads=1)
        assert extractor.precision == "int8"
        out = extractor(keyframes)
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        assert (out * fp32).sum(1).mean() > 0.8, runtime  # close to fp32, not equal: see precision_recall.py
    with pytest.raises(ModelError, match="starts from an fp32 ONNX export"):
        quantize_onnx(int8, tmp_path / "again.onnx", keyframes)
    with pytest.raises(OutputExistsError):
        quantize_onnx(e.onnx, int8, keyframes)
    with pytest.raises(ConfigError, match="at least 8 images"):
        quantize_onnx(e.onnx, tmp_path / "few.onnx", keyframes[:3])
    with pytest.raises(ConfigError, match="int8 export runs as exported"):
        build_extractor(int8, runtime="openvino", device="cpu", precision="bf16")
