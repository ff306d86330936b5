"""``vbl export --format torchscript``: parity with eager PyTorch, metadata in the archive, the torch runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_fixtures import Exported, small_exports, street_frames

from vbl_ros.errors import ConfigError
from vbl_ros.export import ExportedExtractor, build_extractor, read_metadata
from vbl_ros.export.onnx import PARITY_COSINE
from vbl_ros.model import DescriptorExtractor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    return small_exports(tmp_path_factory)


@pytest.mark.parametrize("arch", ["gem", "netvlad_pca", "hallucination"])
def test_torchscript_matches_eager_pytorch(exports, arch: str) -> None:
    e = exports[arch]
    images = street_frames(12, step_px=17)
    reference = DescriptorExtractor(e.net, "cpu")(images)
    extractor = build_extractor(e.torchscript, device="cpu", threads=1)  # auto: torch for TorchScript
    assert isinstance(extractor, ExportedExtractor) and extractor.runtime == "torch"
    assert extractor.fingerprint == e.fingerprint and extractor.dim == e.net.dim
    out = extractor(images)
    assert (out * reference).sum(1).min() >= PARITY_COSINE
    assert np.array_equal(np.argsort(-(out @ out.T), axis=1), np.argsort(-(reference @ reference.T), axis=1))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_archive_carries_fingerprint_and_config(exports) -> None:
    e = exports["gem"]
    metadata = read_metadata(e.torchscript)
    assert metadata.fingerprint == e.fingerprint and metadata.file_format == "torchscript"
    assert metadata.config["aggregation"] == "gem" and metadata.dim == 320
    extra = {"vbl_export.json": ""}
    module = torch.jit.load(str(e.torchscript), _extra_files=extra)
    assert e.fingerprint in str(extra["vbl_export.json"])
    batch = torch.zeros((3, 64, 64, 3), dtype=torch.uint8)
    assert module(batch).shape == (3, 320)  # the batch dimension is not fixed by tracing


def test_torchscript_runs_in_torch_only(exports) -> None:
    with pytest.raises(ConfigError, match="runs with runtime torch"):
        build_extractor(exports["gem"].torchscript, runtime="onnxruntime", device="cpu")
