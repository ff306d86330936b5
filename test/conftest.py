"""Test-wide settings: offscreen rendering for MuJoCo (must be chosen before mujoco is imported), and
an export cache of the test run's own (``runtime: auto`` exports model files to ONNX once and keeps
them there; the user's ``~/.cache/vbl`` is left alone)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if "VBL_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["VBL_CACHE_DIR"] = tempfile.mkdtemp(prefix="vbl-test-cache-")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch work on one thread (the CI machine has 2 cores shared by everything)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
