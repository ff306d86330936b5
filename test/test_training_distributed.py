"""Several processes with torchrun and DDP (gloo on the CPU) train the model one process trains on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("mujoco")

from training_fixtures import small_config, training_bags

from vbl_ros.config import to_dict
from vbl_ros.training import train
from vbl_ros.training.checkpoint import load_checkpoint

STEPS = 3


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory):
    return training_bags(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_gloo_processes_train_what_one_process_trains(bags, tmp_path: Path) -> None:
    # partial mining with a cache computed in two shards and gathered; 4 queries per step, 2 per process
    config = small_config(bags, tmp_path / "cache", val_bag=None, map_bag=None, cache_refresh_queries=4)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    two = tmp_path / "two"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "vbl_ros.cli", "train", "--config", str(path), "--out", str(two), "--max-steps", str(STEPS)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process 1 of 2 joined (gloo)" in done.stderr
    one = tmp_path / "one"
    train(config, one, max_steps=STEPS)

    a = load_checkpoint(two / "checkpoints" / "last.pt")
    b = load_checkpoint(one / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == STEPS
    # the same tuples were mined (the caches agree), and the weights agree far within one step's change
    assert torch.allclose(a["cache"], b["cache"], atol=1e-5)
    moved = max(float((b["model"][k] - c).abs().max()) for k, c in _initial(config).items())
    apart = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in b["model"])
    assert moved > 1e-4 and apart < 0.01 * moved, (apart, moved)
    assert not (two / "model.pt").exists()  # stopped runs are not finished runs


def _initial(config) -> dict[str, torch.Tensor]:
    """The training network's starting weights (what both runs start from)."""
    from vbl_ros.training.variants import build_training_net

    torch.manual_seed(config.seed)
    return {k: v for k, v in build_training_net(config).state_dict().items() if v.is_floating_point()}
