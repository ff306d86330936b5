"""The ``vbl`` command line end to end on the tiny simulated RobotCar: simulate -> convert -> build-map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vbl_ros.cli import main
from vbl_ros.mapping import KeyframeMap

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
