"""DescriptorNet for training: the feature map beside the descriptor, and frozen backbone stages."""

from __future__ import annotations

import pytest
import torch

from vbl_ros.errors import ConfigError
from vbl_ros.model import DescriptorNet, ModelConfig, model_fingerprint
from vbl_ros.model.backbones import Backbone, build_backbone

SMALL = ModelConfig(input_height=64, input_width=96)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(config: ModelConfig = SMALL) -> DescriptorNet:
    torch.manual_seed(0)
    return DescriptorNet(config, pretrained=False)


def test_forward_returns_the_feature_map_beside_the_descriptor() -> None:
    net = _net(ModelConfig(aggregation="netvlad", netvlad_clusters=4, input_height=64, input_width=96)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        descriptors, features = net(x, return_features=True)
        assert torch.equal(descriptors, net(x))
        assert torch.equal(features, net.local_features(x))
        assert net(torch.randn(1, 3, 224, 224), return_features=True)[1].shape == (1, 320, 7, 7)
    assert descriptors.shape == (2, 4 * 320)
    assert features.shape == (2, 320, 2, 3)  # ceil(64 / 32), ceil(96 / 32)


def _stage_parameters(backbone: Backbone) -> list[set[str]]:
    names = {id(p): n for n, p in backbone.named_parameters()}
    return [
        {names[id(p)] for module in backbone.stage_modules(i) for p in module.parameters()}
        for i in range(backbone.num_stages)
    ]


@pytest.mark.parametrize(
    ("name", "layer", "stages"),
    [
        ("efficientnet_lite0", "blocks", 8),
        ("efficientnet_lite0", "head", 9),
        ("efficientnet_lite1", "blocks", 8),
        ("efficientnet_lite2", "head", 9),
        ("resnet18", "layer4", 5),
        ("resnet18", "layer3", 4),
        ("vgg16", "conv5_3", 5),
        ("alexnet", "conv5", 3),
        ("mobilenet_v3_small", "features", 13),
    ],
)
def test_the_stages_hold_every_backbone_parameter_once(name: str, layer: str, stages: int) -> None:
    backbone = build_backbone(name, layer=layer, pretrained=False)
    per_stage = _stage_parameters(backbone)
    assert len(per_stage) == backbone.num_stages == stages
    assert all(per_stage)
    every = [n for stage in per_stage for n in stage]
    assert len(every) == len(set(every))
    assert set(every) == {n for n, _ in backbone.named_parameters()}


def test_frozen_stages_do_not_change_in_a_training_step_and_the_others_do() -> None:
    net = _net()
    fingerprint = model_fingerprint(net)
    keys = list(net.state_dict())
    net.freeze_backbone_stages(3)
    assert model_fingerprint(net) == fingerprint and list(net.state_dict()) == keys  # nothing stored

    net.train()
    frozen = [m for i in range(3) for m in net.backbone.stage_modules(i)]
    trainable = [m for i in range(3, net.backbone.num_stages) for m in net.backbone.stage_modules(i)]
    assert not any(m.training for f in frozen for m in f.modules())
    assert all(m.training for t in trainable for m in t.modules())
    assert not any(p.requires_grad for f in frozen for p in f.parameters())
    assert all(p.requires_grad for t in trainable for p in t.parameters())

    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    x, target = torch.randn(4, 3, 64, 96), torch.nn.functional.normalize(torch.randn(4, 320), dim=1)
    loss = -(net(x) * target).sum()
    loss.backward()
    optimiser.step()
    after = net.state_dict()

    frozen_keys = {f"backbone.body.{n}." for i in range(3) for n in net.backbone.stages[i]}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    is_frozen = [k for k in before if any(k.startswith(prefix) for prefix in frozen_keys)]
    assert is_frozen and not changed & set(is_frozen)  # weights and BatchNorm statistics alike
    trainable_weights = [k for k in before if k not in is_frozen and k.endswith("weight")]
    assert set(trainable_weights) <= changed
    assert any(k.endswith("running_mean") for k in changed)  # unfrozen BatchNorm kept learning

    net.freeze_backbone_stages(0)  # everything trainable again
    assert all(p.requires_grad for p in net.parameters()) and all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())


def test_freezing_more_stages_than_the_backbone_has_is_refused() -> None:
    net = _net()
    net.freeze_backbone_stages(net.backbone.num_stages)  # all of them: allowed
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert net.aggregation.p.requires_grad  # GeM's exponent is not part of the backbone
    with pytest.raises(ConfigError, match=r"has 8 stages; choose 0 \.\. 8"):
        net.freeze_backbone_stages(9)
    with pytest.raises(ConfigError):
        net.freeze_backbone_stages(-1)


def test_a_frozen_net_copies_with_its_frozen_stages() -> None:
    import copy

    net = _net()
    net.freeze_backbone_stages(2)
    clone = copy.deepcopy(net).train()
    assert clone.backbone.frozen_stages == 2
    assert not clone.backbone.stage_modules(1)[0].training and clone.backbone.stage_modules(2)[0].training
