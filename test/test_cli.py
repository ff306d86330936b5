"""The ``vbl`` command line end to end: simulate -> convert -> build-map on the tiny simulated RobotCar; init-model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vbl_ros.cli import main
from vbl_ros.mapping import KeyframeMap
from vbl_ros.model import ModelConfig, load_model, model_fingerprint
from vbl_ros.testing import synthetic_scene

pytest.importorskip("mujoco")


@pytest.mark.slow
def test_simulate_convert_build_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = tmp_path / "sim"
    assert main(["simulate", str(sim), "--preset", "tiny", "--seed", "3"]) == 0
    traversals = [Path(line) for line in capsys.readouterr().out.split()]
    assert len(traversals) == 2 and all((t / "gps" / "ins.csv").is_file() for t in traversals)

    bag = tmp_path / "bag"
    sdk = sim / "sdk"
    args = ["convert", "robotcar", str(traversals[0]), str(bag), "--extrinsics", str(sdk / "extrinsics")]
    assert main([*args, "--models", str(sdk / "models"), "--no-side-modality", "--storage", "sqlite3"]) == 0
    assert "missing files skipped: none" in capsys.readouterr().out
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.db3"))

    # The same output again is refused with a named error and exit code 2, and the bag is untouched.
    before = sorted(p.stat().st_mtime_ns for p in bag.iterdir())
    assert main([*args, "--models", str(sdk / "models")]) == 2
    assert sorted(p.stat().st_mtime_ns for p in bag.iterdir()) == before

    kmap = tmp_path / "map"
    assert main(["build-map", str(bag), "--out", str(kmap), "--spacing", "5"]) == 0
    manifest = json.loads((kmap / "manifest.json").read_text())
    assert manifest["count"] >= 8  # a 60 m route, a keyframe each 5 m
    assert (kmap / "keyframes.sqlite").is_file() and (kmap / "descriptors.npy").is_file()

    # --index pq: the same keyframes, searched the same way (a map this small is re-ranked exactly)
    pq = tmp_path / "map-pq"
    assert main(["build-map", str(bag), "--out", str(pq), "--spacing", "5", "--index", "pq"]) == 0
    assert json.loads((pq / "manifest.json").read_text())["index_type"] == "pq"
    flat_map, pq_map = KeyframeMap.load(kmap), KeyframeMap.load(pq)
    queries = flat_map.descriptors()[::3]
    assert np.array_equal(pq_map.search(queries, 3)[1], flat_map.search(queries, 3)[1])


@pytest.mark.usefixtures("one_torch_thread")
def test_init_model_from_an_image_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):
        cv2.imwrite(str(images / f"{i:02d}.png"), cv2.cvtColor(synthetic_scene(i), cv2.COLOR_RGB2BGR))
    out = tmp_path / "netvlad4_pca8.pt"
    args = ["init-model", str(out), "--images", str(images), "--device", "cpu", "--max-images", "10"]
    assert (
        main([*args, "--aggregation", "netvlad", "--clusters", "4", "--projection", "pca", "--dim", "8"]) == 0
    )
    path, fingerprint = capsys.readouterr().out.splitlines()
    net = load_model(path)
    assert Path(path) == out and fingerprint == f"fingerprint {model_fingerprint(net)}"
    assert net.config == ModelConfig(
        aggregation="netvlad", netvlad_clusters=4, projection="pca", projection_dim=8
    )
    assert net.dim == 8

    # --bag and --images together: argparse refuses, exit code 2
    with pytest.raises(SystemExit) as exit_info:
        main(["init-model", str(tmp_path / "both.pt"), "--bag", str(tmp_path), "--images", str(images)])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err
    # neither, for a model that needs data; a folder without images: named errors, exit code 2
    assert main(["init-model", str(tmp_path / "v.pt"), "--aggregation", "netvlad"]) == 2
    assert "--images FOLDER" in caplog.records[-1].getMessage()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["init-model", str(tmp_path / "v.pt"), "--aggregation", "netvlad", "--images", str(empty)]) == 2
    )
    assert "no readable png/jpg image" in caplog.records[-1].getMessage()
    assert not (tmp_path / "v.pt").exists() and not (tmp_path / "both.pt").exists()


def test_bad_input_exits_2_with_a_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "2014-01-01-00-00-00"
    empty.mkdir()
    code = main(
        ["convert", "robotcar", str(empty), str(tmp_path / "out"), "--extrinsics", "x", "--models", "y"]
    )
    assert code == 2
    assert caplog.records and caplog.records[-1].levelname == "ERROR"
    assert not (tmp_path / "out").exists()


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("simulate", "convert", "build-map", "demo"):
        assert command in out
