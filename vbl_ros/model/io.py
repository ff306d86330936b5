"""Model files: weights + full :class:`ModelConfig` + fingerprint, written atomically.

A model file is a ``torch.save`` dict ``{"format": "vbl-model", "version": 1, "config": {...},
"state_dict": {...}, "fingerprint": "<sha256 hex>"}``. The fingerprint is the SHA-256 of the
canonical JSON of the config and of every tensor's name, dtype, shape and bytes, so two files with
the same fingerprint compute the same descriptors; maps record it and refuse another model.

The config's ``side`` key (a hallucination model's second branch, added after version 1) enters the
fingerprint only when set, so the fingerprints of every earlier model file and map stay valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from vbl_ros.config import from_dict, to_dict
from vbl_ros.errors import ConfigError, ModelError
from vbl_ros.files import fsync_path, write_file_atomic
from vbl_ros.model.hallucination import HallucinationNet
from vbl_ros.model.net import DescriptorNet, ModelConfig

__all__ = ["build_net", "default_model", "load_model", "model_fingerprint", "save_model"]

logger = logging.getLogger(__name__)

FORMAT = "vbl-model"
VERSION = 1


def _config_json(config: ModelConfig) -> str:
    values = to_dict(config)
    if values.get("side") is None:  # a key added after version 1: absent when unset (old fingerprints hold)
        values.pop("side", None)
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def build_net(config: ModelConfig, *, pretrained: bool = True) -> DescriptorNet:
    """The network a config describes: a :class:`DescriptorNet`, or a
    :class:`~vbl_ros.model.hallucination.HallucinationNet` when ``config.side`` is set."""
    if config.side is not None:
        return HallucinationNet(config, pretrained=pretrained)
    return DescriptorNet(config, pretrained=pretrained)


def _fingerprint(config: ModelConfig, state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(_config_json(config).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype!s}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_fingerprint(net: DescriptorNet) -> str:
    """SHA-256 (hex) of the net's config and weights."""
    return _fingerprint(net.config, net.state_dict())


def save_model(net: DescriptorNet, path: Path | str) -> Path:
    """Write ``net`` to ``path`` atomically (temp file, fsync, rename); return the path.

    An existing file at ``path`` is replaced only once the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu").float() if v.is_floating_point() else v.detach().to("cpu")
        for k, v in net.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_dict(net.config),
        "state_dict": state,
        "fingerprint": _fingerprint(net.config, state),
    }
    write_file_atomic(path, lambda f: torch.save(payload, f))
    fsync_path(path.parent)
    logger.info("saved model %s (fingerprint %s)", path, payload["fingerprint"][:12])
    return path


def load_model(path: Path | str) -> DescriptorNet:
    """Load a model file written by :func:`save_model` (in eval mode, on the CPU).

    Raises:
        ModelError: file missing, not a vbl model, corrupt, or its weights do not match its fingerprint.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found; make one with 'vbl init-model' or omit it for the default"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a corrupt file
        # torch's own text about weights_only would point the wrong way: a vbl model needs no pickles
        first_line = "" if "weights_only" in f"{err}" else f": {' '.join(f'{err}'.split())[:200]}"
        raise ModelError(
            f"{path}: not a readable vbl model file ({type(err).__name__}{first_line}); the file is damaged "
            "or of another kind: write it again with 'vbl init-model' or 'vbl train'"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a vbl model file (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise ModelError(f"{path}: model file version {payload.get('version')}, this vbl reads {VERSION}")
    try:
        config = from_dict(ModelConfig, dict(payload["config"]), source=str(path))
        state = payload["state_dict"]
        fingerprint = payload["fingerprint"]
    except (KeyError, TypeError, ConfigError) as err:
        raise ModelError(f"{path}: incomplete or invalid model file: {err}") from err
    if _fingerprint(config, state) != fingerprint:
        raise ModelError(f"{path}: weights do not match the stored fingerprint: the file is corrupt")
    net = build_net(config, pretrained=False)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{path}: weights do not fit the configured architecture: {err}") from err
    logger.info("loaded model %s (fingerprint %s)", path, fingerprint[:12])
    return net.eval()


def default_model(config: ModelConfig | None = None) -> DescriptorNet:
    """The embedded default: pretrained EfficientNet-Lite0 (shipped weights) + GeM; nothing downloaded.

    ``config`` may change the input size or the layer, but not require training.
    """
    config = config or ModelConfig()
    if config.side is not None:
        raise ModelError(
            "a hallucination model (side branch) is trained: make it with 'vbl train' and load it"
        )
    if config.aggregation == "netvlad" or config.projection == "pca":
        raise ModelError(
            "the default model is backbone + GeM without fitting; NetVLAD centres and a PCA projection "
            "are fitted on frames: make a model file with 'vbl init-model' and load it"
        )
    if config.projection == "linear":
        raise ModelError("the default model has no learned projection: a 'linear' projection must be trained")
    return DescriptorNet(config, pretrained=True).eval()
