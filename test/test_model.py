"""Descriptor network: pretrained backbone, GeM/NetVLAD/projection, model files, extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from vbl_ros.errors import BadFrameError, ModelError
from vbl_ros.model import (
    DescriptorExtractor,
    DescriptorNet,
    ModelConfig,
    default_model,
    load_model,
    model_fingerprint,
    save_model,
)
from vbl_ros.model.backbones import (
    build_backbone,
    efficientnet_lite_classifier,
    efficientnet_lite_weights_path,
    map_efficientnet_lite_keys,
)
from vbl_ros.model.layers import GeM, L2Norm, NetVLAD, Projection

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
LITE_VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture(scope="module")
def net() -> DescriptorNet:
    return default_model()


def _imagenet_input(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def _lite_weights_or_skip(name: str) -> Path:
    """The variant's weights path; Lite1/2 are optional (not in requirements.txt): skip when absent."""
    try:
        return efficientnet_lite_weights_path(name)
    except ModelError as err:
        if name == "efficientnet_lite0":
            raise  # the default backbone's package is a dependency
        pytest.skip(f"optional package not installed: {err}")


@pytest.mark.parametrize("name", LITE_VARIANTS)
def test_the_shipped_backbone_weights_classify_chelsea_as_a_cat(name: str) -> None:
    _lite_weights_or_skip(name)
    classifier = efficientnet_lite_classifier(name)
    with torch.inference_mode():
        probs = classifier(_imagenet_input(data.chelsea())).softmax(-1)[0]
        coffee = classifier(_imagenet_input(data.coffee())).argmax(-1).item()
    assert probs.argmax().item() in CAT_CLASSES
    assert probs[list(CAT_CLASSES)].sum() > 0.8
    assert coffee == 967  # espresso


@pytest.mark.parametrize(
    ("name", "keys", "blocks", "channels"),
    [
        ("efficientnet_lite0", 296, 16, 320),
        ("efficientnet_lite1", 386, 21, 320),
        ("efficientnet_lite2", 386, 21, 352),
    ],
)
def test_key_mapping_covers_every_weight(name: str, keys: int, blocks: int, channels: int) -> None:
    sd = torch.load(_lite_weights_or_skip(name), map_location="cpu", weights_only=True)
    backbone = build_backbone(name, pretrained=False)
    stages = tuple(len(stage) for stage in backbone.body[2])
    assert sum(stages) == blocks and backbone.out_channels == channels
    mapped = map_efficientnet_lite_keys(sd, stages)
    assert len(mapped) == len(sd) == keys
    assert "blocks.6.0.conv_pwl.weight" in mapped and "classifier.weight" in mapped
    with pytest.raises(ModelError):
        map_efficientnet_lite_keys({"_weird.weight": torch.zeros(1)})
    with pytest.raises(ModelError):  # Lite1/2 weights do not fit Lite0's 16 blocks
        map_efficientnet_lite_keys({"_blocks.20._expand_conv.weight": torch.zeros(1)})


def test_an_unknown_lite_variant_is_refused() -> None:
    with pytest.raises(ModelError, match="efficientnet_lite0"):
        efficientnet_lite_weights_path("efficientnet_lite9")
    with pytest.raises(ModelError, match="efficientnet_lite0"):
        build_backbone("efficientnet_lite9")


def test_default_net_gives_unit_320d_descriptors(net) -> None:
    assert net.dim == 320 and net.backbone.out_channels == 320
    with torch.inference_mode():
        out = net(torch.randn(2, 3, 96, 128))
    assert out.shape == (2, 320)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_gem_netvlad_projection_shapes_and_norms() -> None:
    x = torch.rand(3, 16, 5, 7)
    gem = GeM(p=3.0)(x)
    assert gem.shape == (3, 16)
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(2, 3)), atol=1e-5)  # p=1: average pooling
    vlad = NetVLAD(num_clusters=4, dim=16)(x)
    assert vlad.shape == (3, 64) and torch.allclose(vlad.norm(dim=1), torch.ones(3), atol=1e-5)
    proj = Projection(64, 8)
    assert L2Norm()(proj(vlad)).norm(dim=1).tolist() == pytest.approx([1.0] * 3, abs=1e-5)
    with pytest.raises(ValueError):
        Projection(8, 64)


def test_netvlad_kmeans_init_assigns_features_to_their_centre() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)).astype(np.float32) * 5
    feats = np.concatenate([c + rng.normal(size=(50, 16)).astype(np.float32) * 0.3 for c in centres])
    layer = NetVLAD(num_clusters=4, dim=16)
    layer.init_from_features(feats)
    normed = torch.nn.functional.normalize(torch.from_numpy(feats), dim=1)
    assign = layer.conv(normed[:, :, None, None]).flatten(1).argmax(1).numpy()
    # every true cluster maps onto a single learned centre, all different
    groups = [set(assign[i * 50 : (i + 1) * 50].tolist()) for i in range(4)]
    assert all(len(g) == 1 for g in groups) and len(set().union(*groups)) == 4
    with pytest.raises(ValueError):
        layer.init_from_features(feats[:2])


def test_pca_projection_whitens() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 12)) * np.linspace(0.1, 5, 12)
    proj = Projection(12, 4)
    proj.fit_pca(x)
    y = proj(torch.from_numpy(x).float()).detach().numpy()
    assert np.allclose(np.cov(y, rowvar=False), np.eye(4), atol=0.05)


def test_netvlad_model_dim_with_projection() -> None:
    config = ModelConfig(
        aggregation="netvlad",
        netvlad_clusters=8,
        projection="linear",
        projection_dim=64,
        input_height=64,
        input_width=64,
    )
    model = DescriptorNet(config, pretrained=False)
    assert model.dim == 64
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 64)


def test_model_file_round_trip_and_fingerprint(net, tmp_path) -> None:
    path = save_model(net, tmp_path / "m.pt")
    loaded = load_model(path)
    assert model_fingerprint(loaded) == model_fingerprint(net)
    assert loaded.config == net.config
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), net.eval()(x), atol=1e-6)
    with torch.no_grad():
        loaded.aggregation.p.add_(0.5)
    assert model_fingerprint(loaded) != model_fingerprint(net)
    assert not list(tmp_path.glob(".m.pt.*"))


def test_corrupt_or_missing_model_files_raise_model_error(net, tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.pt")
    path = save_model(net, tmp_path / "m.pt")
    blob = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelError):
        load_model(tmp_path / "truncated.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["aggregation.p"] = payload["state_dict"]["aggregation.p"] + 1
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ModelError, match="fingerprint"):
        load_model(tmp_path / "tampered.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a vbl model"):
        load_model(tmp_path / "other.pt")


def test_torchvision_backbones_need_a_local_weights_file(tmp_path) -> None:
    with pytest.raises(ModelError, match="local ImageNet weights"):
        build_backbone("resnet18")
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    backbone = build_backbone("resnet18", weights=tmp_path / "r18.pth")
    assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    with pytest.raises(ModelError):
        build_backbone("vgg16", weights=tmp_path / "r18.pth")
    with pytest.raises(ModelError, match="unknown backbone"):
        build_backbone("nope")


def test_extractor_cpu_path(net) -> None:
    extractor = DescriptorExtractor(net, "cpu")
    assert extractor.device.type == "cpu" and extractor.dim == 320
    assert extractor.fingerprint == model_fingerprint(net)
    cat, coffee = data.chelsea(), data.coffee()
    out = extractor([cat, coffee, cat[::2, ::2], data.camera()])
    assert out.shape == (4, 320) and out.dtype == np.float32
    assert np.linalg.norm(out, axis=1) == pytest.approx([1.0] * 4, abs=1e-5)
    assert out[0] @ out[2] > out[0] @ out[1]  # the same cat at half size beats the coffee
    # batching does not change results
    single = np.vstack([extractor([img]) for img in (cat, coffee)])
    assert np.allclose(single, out[:2], atol=1e-5)
    assert extractor([]).shape == (0, 320)
    with pytest.raises(BadFrameError):
        extractor([np.zeros((4, 4, 3), np.float32)])
