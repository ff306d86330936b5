"""Small models exported once per test session (ONNX exports take ~10 s each) and street frames to map.

:func:`small_exports` writes, under the session's temporary folder, two 64x64 models as model files,
ONNX and TorchScript: the pretrained default architecture with GeM, NetVLAD (8 clusters, k-means
on street frames) with a 32-d PCA projection fitted on the same frames, and the side-modality
``hallucination`` model (GeM image encoder + depth decoder G + depth encoder E_D, as ``vbl train``
writes it; its decoder untrained, which does not matter for parity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from bag_fixtures import street_texture

from vbl_ros.cli import main
from vbl_ros.export import export_model
from vbl_ros.model import DescriptorNet, ModelConfig, initialize_model, model_fingerprint, save_model
from vbl_ros.model.hallucination import HallucinationNet
from vbl_ros.model.heads import SideBranchConfig

SIZE = {"input_height": 64, "input_width": 64}
ARCHITECTURES = {
    "gem": ModelConfig(**SIZE),
    "netvlad_pca": ModelConfig(
        aggregation="netvlad", netvlad_clusters=8, projection="pca", projection_dim=32, **SIZE
    ),
    "hallucination": ModelConfig(side=SideBranchConfig("depth", 16), **SIZE),
}


@dataclass(frozen=True)
class Exported:
    name: str
    net: DescriptorNet
    fingerprint: str
    model: Path  # the vbl model file
    onnx: Path
    torchscript: Path


def street_frames(n: int, *, step_px: int = 10, offset_px: int = 0, seed: int = 3) -> list[np.ndarray]:
    """``n`` RGB frames (48x64) along one street texture, ``step_px`` apart, starting at ``offset_px``."""
    texture = street_texture(n * step_px / 4 + 20, seed=seed)
    return [np.ascontiguousarray(texture[:, offset_px + i * step_px :][:, :64]) for i in range(n)]


_CACHE: dict[int, dict[str, Exported]] = {}


def small_exports(factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """Every architecture, exported once per session (ONNX through ``vbl export``, the command line)."""
    key = id(factory)
    if key not in _CACHE:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            folder = factory.mktemp("exports")
            out: dict[str, Exported] = {}
            for name, config in ARCHITECTURES.items():
                if name == "gem":
                    net = DescriptorNet(config).eval()
                elif name == "hallucination":
                    net = HallucinationNet(config).eval()
                else:
                    net = initialize_model(config, images=street_frames(40, seed=7), device="cpu")
                model = save_model(net, folder / f"{name}.pt")
                onnx, ts = folder / f"{name}.onnx", folder / f"{name}.ts"
                assert main(["export", str(model), "--format", "onnx", "--out", str(onnx)]) == 0
                export_model(model, ts, file_format="torchscript")
                out[name] = Exported(name, net, model_fingerprint(net), model, onnx, ts)
            _CACHE[key] = out
        finally:
            torch.set_num_threads(threads)
    return _CACHE[key]
