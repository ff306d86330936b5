"""``vbl train`` end to end on tiny simulated drives: the run folder, exact resume, the model file in use, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("mujoco")

from bag_fixtures import write_line_bag
from training_fixtures import small_config, training_bags

from vbl_ros.cli import main
from vbl_ros.config import to_dict
from vbl_ros.model import DescriptorExtractor, DescriptorNet, load_model, model_fingerprint
from vbl_ros.training import train
from vbl_ros.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory):
    return training_bags(tmp_path_factory)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frame_cache")


def _state(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_interrupted_and_resumed_run_gives_the_same_weights(bags, cache_dir: Path, tmp_path: Path) -> None:
    config = small_config(bags, cache_dir, epochs=2)
    whole = train(config, tmp_path / "whole")
    assert whole.model == tmp_path / "whole" / "model.pt" and whole.steps >= 16

    # stopped mid-epoch 1 (after a cache refresh, before the next), then mid-epoch 2, then to the end
    parts = tmp_path / "parts"
    first = train(config, parts, max_steps=4)
    assert first.model is None and first.steps == 4 and not (parts / "model.pt").exists()
    assert train(None, parts, resume=True, max_steps=whole.steps // 2 + 3).model is None
    last = train(None, parts, resume=True)
    assert last.steps == whole.steps

    a, b = _state(tmp_path / "whole"), _state(parts)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["cache"], b["cache"]) and a["mining_rng"] == b["mining_rng"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert all(
        torch.equal(a["optimizer"]["state"][i]["exp_avg"], b["optimizer"]["state"][i]["exp_avg"])
        for i in a["optimizer"]["state"]
    )
    assert a["history"] == b["history"] and a["epoch"] == b["epoch"] == 2
    assert model_fingerprint(load_model(whole.model)) == model_fingerprint(load_model(last.model))
    # the last stages moved from the pretrained start, the frozen first ones did not
    start = DescriptorNet(config.model).state_dict()
    assert not torch.equal(
        start["backbone.body.2.6.0.conv_pw.weight"], a["model"]["net.backbone.body.2.6.0.conv_pw.weight"]
    )
    assert torch.equal(start["backbone.body.0.weight"], a["model"]["net.backbone.body.0.weight"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_the_run_folder_and_a_model_that_build_map_uses(
    bags, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = small_config(bags, cache_dir)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(run / "model.pt") and out[1].startswith("validation (best): recall@1 ")

    assert yaml.safe_load((run / "config.yaml").read_text())["train_bags"] == [str(bags.a), str(bags.b)]
    assert "validation: R@1" in (run / "train.log").read_text()
    metrics = (run / "metrics.csv").read_text()
    for name in ("loss/total", "loss/triplet_descriptor", "val/recall@1", "mining/tuples_per_query", "lr"):
        assert f",{name}," in metrics
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    result = json.loads((run / "result.json").read_text())
    assert set(result["validation"]) >= {"recall@1", "recall@5", "recall@10"}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt"}

    net = load_model(run / "model.pt")
    assert result["fingerprint"] == model_fingerprint(net)
    extractor = DescriptorExtractor(net, "cpu", warmup=False)
    d = extractor([np.zeros((120, 160, 3), np.uint8)])
    assert d.shape == (1, 320) and np.isclose(np.linalg.norm(d), 1.0)

    kmap = tmp_path / "map"
    assert main(["build-map", str(bags.map), "--out", str(kmap), "--model", str(run / "model.pt")]) == 0
    assert json.loads((kmap / "manifest.json").read_text())["model_fingerprint"] == result["fingerprint"]

    # the same RUN_DIR again: refused, untouched; --overwrite starts it again
    before = (run / "model.pt").stat().st_mtime_ns
    assert main(["train", "--config", str(path), "--out", str(run)]) == 2
    assert (run / "model.pt").stat().st_mtime_ns == before


def _origin_only_bag(path: Path) -> Path:
    """A real bag with a UTM origin and nothing else (no odometry, no camera)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST)
    T = store.types
    msg = T["geometry_msgs/msg/PointStamped"](
        header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="utm_30U"
        ),
        point=T["geometry_msgs/msg/Point"](x=620000.0, y=5734000.0, z=60.0),
    )
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/map/utm_origin", msg.__msgtype__, typestore=store)
        writer.write(conn, 10**9, store.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.mark.usefixtures("one_torch_thread")
def test_bad_input_is_a_named_error_exit_2_and_no_run(
    bags, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    line = write_line_bag(tmp_path / "line").path  # a real drive ~1.8 km from the simulated town, no depth
    empty = _origin_only_bag(tmp_path / "empty")
    base = to_dict(small_config(bags, cache_dir))
    cases = {
        "one drive": ({"train_bags": [str(bags.a)]}, "at least two"),
        "unknown key": ({"learning_rate": 0.1}, "unknown key"),
        "wrong type": ({"batch_size": "four"}, "must be an integer"),
        "no odometry": ({"train_bags": [str(bags.a), str(empty)]}, "/ins/odometry"),
        "too few frames": ({"batch_size": 500}, "fewer than batch_size 500"),
        "far validation": ({"val_bag": str(line)}, "no validation frame lies within"),
        "no depth": (
            {"train_bags": [str(bags.a), str(line)], "variant": "auxiliary"},
            "convert the traversal",
        ),
    }
    for name, (change, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        run = tmp_path / f"run {name}"
        caplog.clear()
        assert main(["train", "--config", str(path), "--out", str(run)]) == 2, name
        assert message in caplog.records[-1].getMessage(), name
        assert not run.exists(), name  # nothing half-written
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "start the run without --resume" in caplog.records[-1].getMessage()
