"""Maps, model files and reports get the modes the umask gives any new file, so another user (a node
running as another account) can read them; atomic writes alone (mkstemp/mkdtemp) would make them private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from vbl_ros.files import write_text_atomic
from vbl_ros.mapping import Keyframe, KeyframeMap


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077])
def umask(request: pytest.FixtureRequest):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_a_saved_map_follows_the_umask(tmp_path: Path, umask: int) -> None:
    kmap = KeyframeMap.create(4, "fingerprint")
    kmap.add(
        np.eye(4, dtype=np.float32)[:2],
        [Keyframe(1, (0, 0, 0), (0, 0, 0, 1)), Keyframe(2, (1, 0, 0), (0, 0, 0, 1))],
    )
    folder = kmap.save(tmp_path / "map")
    assert _mode(folder) == 0o777 & ~umask
    files = list(folder.iterdir())
    assert files and all(_mode(f) == 0o666 & ~umask for f in files), {f.name: oct(_mode(f)) for f in files}


def test_a_model_file_and_a_text_file_follow_the_umask(tmp_path: Path, umask: int) -> None:
    torch = pytest.importorskip("torch")
    from vbl_ros.model import DescriptorNet, ModelConfig, save_model

    torch.manual_seed(0)
    path = save_model(
        DescriptorNet(ModelConfig(input_height=32, input_width=32), pretrained=False), tmp_path / "m.pt"
    )
    assert _mode(path) == 0o666 & ~umask
    write_text_atomic(tmp_path / "report.md", "# report\n")
    assert _mode(tmp_path / "report.md") == 0o666 & ~umask
