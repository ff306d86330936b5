"""The side modality: auxiliary and hallucination learn depth from the LIDAR maps, and their model files run on RGB alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from training_fixtures import small_config, training_bags

from vbl_ros.model import (
    DescriptorExtractor,
    DescriptorNet,
    HallucinationNet,
    ModelConfig,
    SideBranchConfig,
    load_model,
    model_fingerprint,
    save_model,
)
from vbl_ros.model.heads import stage_features
from vbl_ros.model.io import build_net
from vbl_ros.training import train
from vbl_ros.training.dataset import FrameDataset, side_scale
from vbl_ros.training.frames import cache_drive, frame_set
from vbl_ros.training.losses import masked_l1_sum, triplet_losses
from vbl_ros.training.mining import TupleBatch, mine
from vbl_ros.training.triplets import find_triplets
from vbl_ros.training.variants import build_training_net, freeze_batchnorm

SMALL = ModelConfig(input_height=64, input_width=64)


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory):
    return training_bags(tmp_path_factory)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("variant", ["auxiliary", "hallucination"])
def test_the_side_loss_falls_in_a_few_steps(bags, tmp_path, variant: str) -> None:
    config = small_config(bags, tmp_path, variant=variant)
    torch.manual_seed(0)
    net = build_training_net(config)
    from vbl_ros.model.transforms import InputTransform

    transform = InputTransform.from_config(net.net.config)
    drives = [
        cache_drive(b, transform, tmp_path, spacing_m=6.0, modalities=("depth",)) for b in (bags.a, bags.b)
    ]
    frames = frame_set(drives, drives[0])
    dataset = FrameDataset(frames, transform, "depth", side_scale(frames, "depth"))
    triplets = find_triplets(frames.positions, frames.headings, frames.drive, pos_radius_m=10.0,
                             max_heading_deg=20.0, neg_radius_m=25.0)  # fmt: skip
    tuples, _ = mine(triplets, [0, 3, 6, 9], np.random.default_rng(0), mode="random", num_negatives=1,
                     negative_pool=8, margin=0.1)  # fmt: skip
    batch = TupleBatch.from_tuples(tuples)
    x = dataset.inputs(batch.frames, torch.device("cpu"))
    target = dataset.targets(batch.frames, torch.device("cpu"))
    index = [torch.as_tensor(a) for a in (batch.query, batch.positive, batch.negative, batch.pair_tuple)]
    decoder = {id(p) for p in net.decoder_parameters()}
    optimizer = torch.optim.Adam([
        {"params": [p for p in net.parameters() if p.requires_grad and id(p) not in decoder], "lr": 1e-4},
        {"params": [p for p in net.parameters() if id(p) in decoder], "lr": 3e-3},
    ])  # fmt: skip
    net.train()
    freeze_batchnorm(net)
    history = []
    for _ in range(8):
        out = net(x)
        triplet = sum(triplet_losses(out[k], *index, margin=0.1).mean() for k in net.descriptor_keys)
        total, count = masked_l1_sum(out["side_map"], target)
        l1 = total / count
        optimizer.zero_grad()
        (triplet + l1).backward()
        optimizer.step()
        history.append((float(l1.detach()), float((triplet + l1).detach())))
    assert count > 1000  # pixels with a LIDAR return in the batch
    assert history[-1][0] < 0.8 * history[0][0], history  # the predicted depth approaches the LIDAR's
    assert history[-1][1] < history[0][1], history


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_trained_hallucination_model_runs_on_rgb_alone(bags, tmp_path) -> None:
    config = small_config(bags, tmp_path / "cache", variant="hallucination", val_bag=None, map_bag=None)
    result = train(config, tmp_path / "run", max_steps=None)
    net = load_model(result.model)
    assert isinstance(net, HallucinationNet) and net.config.side == SideBranchConfig("depth", 32)
    assert any(k.startswith("decoder.") for k in net.state_dict())
    assert any(k.startswith("side_encoder.") for k in net.state_dict())
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    extractor = DescriptorExtractor(net, "cpu", warmup=False)
    d = extractor([image])
    assert d.shape == (1, 640) and np.isclose(np.linalg.norm(d), 1.0, atol=1e-5)
    # the extractor runs the fused descriptor [f_I(x), f_D(G(x))], normalised
    with torch.inference_mode():
        branches = net.branches(extractor.to_input(extractor.transform.resize_batch([image])))
    assert np.allclose(d, branches.descriptor.numpy(), atol=1e-5)
    assert branches.side_map.shape == (1, 1, 64, 64)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_the_auxiliary_decoder_is_dropped_from_the_model_file(bags, tmp_path) -> None:
    config = small_config(bags, tmp_path / "cache", variant="auxiliary", val_bag=None, map_bag=None)
    result = train(config, tmp_path / "run")
    net = load_model(result.model)
    assert type(net) is DescriptorNet
    assert set(net.state_dict()) == set(DescriptorNet(SMALL, pretrained=False).state_dict())


def test_rgb_baseline_has_the_parameters_of_hallucination(bags, tmp_path) -> None:
    counts = {}
    for variant in ("hallucination", "rgb-baseline"):
        net = build_training_net(small_config(bags, tmp_path, variant=variant))
        counts[variant] = sum(p.numel() for p in net.parameters())
        assert isinstance(net.net, HallucinationNet)
    assert counts["hallucination"] == counts["rgb-baseline"]
    aux = build_training_net(small_config(bags, tmp_path, variant="auxiliary"))
    assert aux.net.dim == 320 and aux.decoder is not None


def test_stage_features_end_with_the_backbone_output() -> None:
    net = DescriptorNet(SMALL, pretrained=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(stage_features(net.backbone, x)[-1], net.backbone(x))


def test_model_files_without_a_side_branch_keep_their_fingerprint(tmp_path) -> None:
    """The ``side`` key is absent from the fingerprint when unset: files written before it existed load."""
    net = DescriptorNet(SMALL, pretrained=False)
    path = save_model(net, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["side"]  # as a file written before the side branch existed
    torch.save(payload, path)
    assert model_fingerprint(load_model(path)) == payload["fingerprint"] == model_fingerprint(net)
    hallucination = build_net(
        ModelConfig(input_height=64, input_width=64, side=SideBranchConfig()), pretrained=False
    )
    assert model_fingerprint(hallucination) != model_fingerprint(net)
    with pytest.raises(Exception, match="side branch"):
        DescriptorNet(hallucination.config)
