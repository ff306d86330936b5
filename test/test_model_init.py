"""Model files without training: NetVLAD k-means and PCA fitted on a real bag, ``vbl init-model``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bag_fixtures import LineBag, write_line_bag

from vbl_ros.bags import read_camera_frames
from vbl_ros.cli import main
from vbl_ros.config import load_yaml
from vbl_ros.errors import ConfigError, ModelError, ModelMismatchError, OutputExistsError
from vbl_ros.mapping import KeyframeMap, MapConfig, build_map
from vbl_ros.model import (
    DescriptorExtractor,
    DescriptorNet,
    ModelConfig,
    default_model,
    init_model,
    initialize_model,
    load_model,
    model_fingerprint,
    save_model,
)
from vbl_ros.model.layers import kmeans

MODELS = Path(__file__).resolve().parents[1] / "models"
SMALL = {"input_height": 64, "input_width": 64}  # 2 x 2 local features per frame
VLAD_PCA = ModelConfig(
    aggregation="netvlad", netvlad_clusters=4, projection="pca", projection_dim=16, **SMALL
)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> LineBag:
    return write_line_bag(tmp_path_factory.mktemp("bags") / "line", seed=0)  # 49 frames


@pytest.fixture(scope="module")
def vlad_pca(bag: LineBag) -> DescriptorNet:
    return initialize_model(VLAD_PCA, bag=bag.path, device="cpu")  # all 49 frames (max_images 300)


def _frames(bag: LineBag) -> list[np.ndarray]:
    return [frame.image_rgb for frame in read_camera_frames(bag.path)]


@torch.inference_mode()
def _local_features(config: ModelConfig, images: list[np.ndarray]) -> torch.Tensor:
    """Backbone features ``(N, C, h, w)``, preprocessed the extractor's way."""
    extractor = DescriptorExtractor(DescriptorNet(config), "cpu", warmup=False)
    return extractor.net.local_features(extractor.to_input(extractor.transform.resize_batch(images))).float()


def test_netvlad_centres_are_the_kmeans_of_the_bags_backbone_features(
    bag: LineBag, vlad_pca: DescriptorNet, tmp_path: Path
) -> None:
    feats = _local_features(VLAD_PCA, _frames(bag))
    local = F.normalize(feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]), dim=1)
    assert local.shape == (49 * 4, 320)
    expected = F.normalize(torch.from_numpy(kmeans(local.numpy(), 4, seed=0)), dim=1)
    centres = vlad_pca.aggregation.centroids.detach()
    assert torch.allclose(centres, expected, atol=1e-3)
    # each centre lies among the features (a random init does not) and owns some of them
    nearest = (centres @ local.T).max(dim=1).values
    random_centres = F.normalize(DescriptorNet(VLAD_PCA, pretrained=False).aggregation.centroids, dim=1)
    assert nearest.min() > 0.5 > (random_centres.detach() @ local.T).max()
    assert len(set((local @ centres.T).argmax(1).tolist())) == 4
    # another street gives other centres
    other_bag = write_line_bag(tmp_path / "other", length_m=30.0, seed=7)
    other = initialize_model(
        dataclasses.replace(VLAD_PCA, projection="none"), bag=other_bag.path, device="cpu"
    )
    assert not torch.allclose(other.aggregation.centroids, centres, atol=0.05)


def test_pca_projection_whitens_the_descriptors_it_was_fitted_on(
    bag: LineBag, vlad_pca: DescriptorNet
) -> None:
    assert vlad_pca.dim == 16
    with torch.inference_mode():
        aggregated = vlad_pca.aggregation(_local_features(VLAD_PCA, _frames(bag)))
        projected = vlad_pca.projection(aggregated).numpy()
    assert aggregated.shape == (49, 4 * 320) and projected.shape == (49, 16)
    assert np.allclose(projected.mean(axis=0), 0.0, atol=1e-3)
    assert np.allclose(np.cov(projected, rowvar=False), np.eye(16), atol=0.02)
    descriptors = DescriptorExtractor(vlad_pca, "cpu")(_frames(bag)[:5])
    assert descriptors.shape == (5, 16)
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)


def test_the_model_file_reloads_with_its_fingerprint_and_descriptors(
    bag: LineBag, vlad_pca: DescriptorNet, tmp_path: Path
) -> None:
    path = save_model(vlad_pca, tmp_path / "vlad.pt")
    loaded = load_model(path)
    assert loaded.config == VLAD_PCA
    assert model_fingerprint(loaded) == model_fingerprint(vlad_pca)
    images = _frames(bag)[::6]
    before = DescriptorExtractor(vlad_pca, "cpu")(images)
    after = DescriptorExtractor(loaded, "cpu")(images)
    assert np.allclose(before, after, atol=1e-6)


def test_a_map_built_with_the_model_loads_only_with_that_model(
    bag: LineBag, vlad_pca: DescriptorNet, tmp_path: Path
) -> None:
    model = save_model(vlad_pca, tmp_path / "vlad.pt")
    out = build_map(bag.path, tmp_path / "map", model=model, config=MapConfig(device="cpu"))
    kmap = KeyframeMap.load(out, model_fingerprint(load_model(model)))
    assert len(kmap) >= 10 and kmap.dim == 16
    with pytest.raises(ModelMismatchError):
        KeyframeMap.load(out, model_fingerprint(default_model(ModelConfig(**SMALL))))


def test_gem_needs_no_data_and_is_the_default_model(bag: LineBag, caplog: pytest.LogCaptureFixture) -> None:
    config = ModelConfig(**SMALL)
    with caplog.at_level(logging.INFO, logger="vbl_ros.model.init"):
        net = initialize_model(config, bag=bag.path)
    assert "needs no data" in caplog.text
    assert model_fingerprint(net) == model_fingerprint(default_model(config))


def test_a_linear_projection_is_a_seeded_random_init_that_needs_training(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = ModelConfig(projection="linear", projection_dim=32, **SMALL)
    with caplog.at_level(logging.WARNING, logger="vbl_ros.model.init"):
        a = initialize_model(config, seed=3)
    assert "must be trained" in caplog.text and a.dim == 32
    assert model_fingerprint(a) == model_fingerprint(initialize_model(config, seed=3))
    assert model_fingerprint(a) != model_fingerprint(initialize_model(config, seed=4))


def test_data_is_required_where_needed(bag: LineBag, tmp_path: Path) -> None:
    for config in (
        ModelConfig(aggregation="netvlad", **SMALL),
        VLAD_PCA,
        ModelConfig(projection="pca", projection_dim=8),
    ):
        with pytest.raises(ConfigError, match="--bag"):
            initialize_model(config)
    short = write_line_bag(tmp_path / "short", length_m=10.0)  # 9 frames
    with pytest.raises(ModelError, match=r"9 camera frames, at least 17 are needed"):
        initialize_model(VLAD_PCA, bag=short.path, device="cpu")
    with pytest.raises(ModelError, match=r"at least 16 are needed"):  # 64 clusters / 4 features a frame
        initialize_model(ModelConfig(aggregation="netvlad", **SMALL), bag=short.path, device="cpu")
    with pytest.raises(ConfigError, match="max_images 10: at least 17"):
        initialize_model(VLAD_PCA, bag=bag.path, max_images=10, device="cpu")


def test_an_existing_model_file_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        init_model(out, ModelConfig(**SMALL))
    assert out.read_bytes() == b"keep me"
    init_model(out, ModelConfig(**SMALL), overwrite=True)
    assert load_model(out).dim == 320


def test_the_shipped_configs_load() -> None:
    gem = load_yaml(ModelConfig, MODELS / "gem_efficientnet_lite0.yaml")
    vlad = load_yaml(ModelConfig, MODELS / "netvlad_efficientnet_lite0.yaml")
    assert gem == ModelConfig()  # the embedded default model
    assert vlad.aggregation == "netvlad" and vlad.netvlad_clusters == 64


def test_cli_init_model(bag: LineBag, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "netvlad64_pca8.pt"
    config = MODELS / "netvlad_efficientnet_lite0.yaml"
    args = ["init-model", str(out), "--config", str(config), "--bag", str(bag.path), "--device", "cpu"]
    assert main([*args, "--projection", "pca", "--dim", "8", "--max-images", "12"]) == 0
    path, fingerprint = capsys.readouterr().out.splitlines()
    net = load_model(path)
    assert Path(path) == out and fingerprint == f"fingerprint {model_fingerprint(net)}"
    assert net.config == dataclasses.replace(
        load_yaml(ModelConfig, config), projection="pca", projection_dim=8
    )
    assert net.dim == 8

    before = out.read_bytes()
    assert main(["init-model", str(out), "--aggregation", "gem"]) == 2  # exists: refused
    assert out.read_bytes() == before
    assert main(["init-model", str(out), "--aggregation", "gem", "--overwrite"]) == 0
    assert load_model(out).config == ModelConfig()
    assert main(["init-model", str(tmp_path / "v.pt"), "--aggregation", "netvlad"]) == 2  # no bag
    assert not (tmp_path / "v.pt").exists()
