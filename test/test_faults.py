"""Bad inputs and real faults, table-driven: every ``vbl`` command and the ``localize`` node, run as
real processes, end with exit code 2 and a named error (no traceback), and leave every existing
artefact as it was; a map replace killed between its renames is undone by every reader."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bag_fixtures import cut_copy, write_line_bag, write_mcap_copy
from mapping_fixtures import random_map
from ros_helpers import LOCALIZE, REPO, unique_domain_id

VBL = Path(sys.executable).with_name("vbl")
FILE_LIMIT = 4096  # bytes: RLIMIT_FSIZE for the "full disk" cases (the map's descriptors need more)


# ---------------------------------------------------------------------------------------- fixtures
def _vbl(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(VBL), *map(str, args)], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artefacts the cases read (and must leave unchanged): bags good and bad, maps, model files."""
    root = tmp_path_factory.mktemp("faults")
    write_line_bag(root / "line", length_m=40.0)
    write_mcap_copy(root / "line", root / "line_mcap")
    cut_copy(root / "line", root / "line_db3_cut", 0.02)  # cut inside its first pages: nothing readable
    cut_copy(root / "line_mcap", root / "line_mcap_cut")  # cut inside its only chunk: nothing readable
    (root / "not_a_bag").mkdir()
    (root / "not_a_bag" / "notes.txt").write_text("a folder of notes, not a bag\n")
    random_map(20)[0].save(root / "map")  # a map of model "fp-a": the faults never reach the search
    (root / "model.pt").write_bytes(b"stands for a model file the commands must not replace\n")
    (root / "garbage.pt").write_bytes(b"not a model at all\n")
    (root / "existing.onnx").write_bytes(b"an earlier export\n")
    shutil.copytree(root / "map", root / "cut_map")
    os.truncate(root / "cut_map" / "descriptors.npy", 100)
    shutil.copytree(root / "map", root / "bad_manifest_map")
    (root / "bad_manifest_map" / "manifest.json").write_text('{"format": "vbl-keyframe-map", "vers')
    configs = {
        "model_float.yaml": "netvlad_clusters: 2.5\n",
        "map_string.yaml": "spacing_m: far\n",
        "train_float.yaml": "epochs: 1.5\n",
        "sim_string.yaml": "seed: many\n",
        "demo_odd.yaml": "no_such_key: 1\n",
    }
    for name, text in configs.items():
        (root / name).write_text(text)
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------- faults
def _read_only(folder: Path) -> Callable[[list[str]], list[str]]:
    """Run a command with ``folder`` read-only: a read-only bind mount in a mount namespace of its
    own when root (root ignores modes), else the folder's mode."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda argv: argv
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0"', str(folder)], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(
            f"running as root without mount namespaces: no way to make a folder read-only ({probe.stderr!r})"
        )
    return lambda argv: [
        "unshare",
        "-m",
        "sh",
        "-c",
        'mount --bind -o ro "$0" "$0" && exec "$@"',
        str(folder),
        *argv,
    ]


def _file_size_limit() -> None:
    """In the child: writes beyond FILE_LIMIT bytes fail with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


@dataclass(frozen=True)
class Case:
    """One command on one bad input or fault. ``args`` name shared artefacts as ``{S}/...`` and the
    case's own folder as ``{T}/...``; ``fault`` is ``read-only`` (of ``{T}/ro``) or ``full-disk``."""

    id: str
    args: tuple[str, ...]
    error: str
    fault: str = ""
    node: bool = False
    seed_ro: tuple[str, ...] = field(default=())  # shared artefacts copied into {T}/ro first


CASES = [
    # build-map
    Case("build-map missing bag", ("build-map", "{T}/nowhere", "--out", "{T}/map"), "MissingDataError"),
    Case("build-map folder not a bag", ("build-map", "{S}/not_a_bag", "--out", "{T}/map"), "BagError"),
    Case("build-map truncated sqlite3", ("build-map", "{S}/line_db3_cut", "--out", "{T}/map"), "BagError"),
    Case("build-map truncated mcap", ("build-map", "{S}/line_mcap_cut", "--out", "{T}/map"), "BagError"),
    Case("build-map existing map", ("build-map", "{S}/line", "--out", "{S}/map"), "OutputExistsError"),
    Case("build-map add to no map", ("build-map", "{S}/line", "--add", "--out", "{T}/map"), "MapError"),
    Case(
        "build-map wrong-type config",
        ("build-map", "{S}/line", "--out", "{T}/map", "--config", "{S}/map_string.yaml"),
        "ConfigError",
    ),
    Case(
        "build-map read-only output",
        ("build-map", "{S}/line", "--overwrite", "--out", "{T}/ro/map"),
        "OutputError",
        fault="read-only",
        seed_ro=("map",),
    ),
    Case(
        "build-map full disk", ("build-map", "{S}/line", "--out", "{T}/map"), "OutputError", fault="full-disk"
    ),
    # convert
    Case(
        "convert missing traversal",
        ("convert", "robotcar", "{T}/nowhere", "{T}/bag", "--extrinsics", "{T}/e", "--models", "{T}/m"),
        "MissingDataError",
    ),
    Case(
        "convert read-only output",
        ("convert", "robotcar", "{T}/nowhere", "{T}/ro/bag", "--extrinsics", "{T}/e", "--models", "{T}/m"),
        "OutputError",
        fault="read-only",
    ),
    # init-model
    Case(
        "init-model float for an int",
        ("init-model", "{T}/m.pt", "--config", "{S}/model_float.yaml"),
        "ConfigError",
    ),
    Case("init-model existing output", ("init-model", "{S}/model.pt"), "OutputExistsError"),
    Case(
        "init-model truncated bag",
        (
            "init-model",
            "{T}/m.pt",
            "--aggregation",
            "netvlad",
            "--clusters",
            "4",
            "--bag",
            "{S}/line_mcap_cut",
        ),
        "BagError",
    ),
    Case(
        "init-model read-only output",
        ("init-model", "{T}/ro/model.pt", "--overwrite"),
        "OutputError",
        fault="read-only",
        seed_ro=("model.pt",),
    ),
    Case("init-model full disk", ("init-model", "{T}/m.pt"), "OutputError", fault="full-disk"),
    # export
    Case("export corrupt model", ("export", "{S}/garbage.pt", "--out", "{T}/m.onnx"), "ModelError"),
    Case("export missing model", ("export", "{T}/nowhere.pt", "--out", "{T}/m.onnx"), "ModelError"),
    Case(
        "export existing output",
        ("export", "{S}/garbage.pt", "--out", "{S}/existing.onnx"),
        "OutputExistsError",
    ),
    Case(
        "export read-only output",
        ("export", "--out", "{T}/ro/existing.onnx", "--overwrite"),
        "OutputError",
        fault="read-only",
        seed_ro=("existing.onnx",),
    ),
    Case(
        "export full disk",
        ("export", "--format", "torchscript", "--out", "{T}/m.ts"),
        "OutputError",
        fault="full-disk",
    ),
    # train
    Case(
        "train missing bag",
        ("train", "--out", "{T}/run", "--train-bags", "{T}/nowhere", "{S}/line"),
        "MissingDataError",
    ),
    Case(
        "train truncated bag",
        ("train", "--out", "{T}/run", "--train-bags", "{S}/line_db3_cut", "{S}/line"),
        "BagError",
    ),
    Case(
        "train float for an int",
        (
            "train",
            "--config",
            "{S}/train_float.yaml",
            "--out",
            "{T}/run",
            "--train-bags",
            "{S}/line",
            "{S}/line",
        ),
        "ConfigError",
    ),
    Case(
        "train read-only output",
        ("train", "--out", "{T}/ro/run", "--train-bags", "{S}/line", "{S}/line_mcap"),
        "OutputError",
        fault="read-only",
    ),
    # evaluate
    Case(
        "evaluate missing map",
        ("evaluate", "--offline", "--map", "{T}/nowhere", "--out", "{T}/r", "{S}/line"),
        "MapError",
    ),
    Case(
        "evaluate corrupt map",
        ("evaluate", "--offline", "--map", "{S}/cut_map", "--out", "{T}/r", "{S}/line"),
        "MapError",
    ),
    Case(
        "evaluate not a bag",
        ("evaluate", "--offline", "--map", "{S}/map", "--out", "{T}/r", "{S}/not_a_bag"),
        "BagError",
    ),
    Case(
        "evaluate missing report", ("evaluate", "--compare", "{T}/nowhere", "--out", "{T}/c"), "ReportError"
    ),
    Case(
        "evaluate read-only output",
        ("evaluate", "--offline", "--map", "{S}/map", "--out", "{T}/ro/r", "{S}/line"),
        "OutputError",
        fault="read-only",
    ),
    # simulate, demo, repair-map
    Case(
        "simulate wrong-type config",
        ("simulate", "{T}/sim", "--config", "{S}/sim_string.yaml"),
        "ConfigError",
    ),
    Case(
        "simulate read-only output",
        ("simulate", "{T}/ro/sim", "--preset", "tiny"),
        "OutputError",
        fault="read-only",
    ),
    Case(
        "demo unknown config key",
        ("demo", "--out", "{T}/demo", "--config", "{S}/demo_odd.yaml"),
        "ConfigError",
    ),
    Case("demo read-only output", ("demo", "--out", "{T}/ro/demo"), "OutputError", fault="read-only"),
    Case("repair-map not a map", ("repair-map", "{S}/not_a_bag"), "MapError"),
    Case("repair-map missing", ("repair-map", "{T}/nowhere"), "MapError"),
    # the node
    Case("node unreadable map", ("-p", "map:={S}/bad_manifest_map"), "MapError", node=True),
    Case("node missing map", ("-p", "map:={T}/nowhere"), "ConfigError", node=True),
    Case("node corrupt model", ("-p", "model:={S}/garbage.pt"), "ModelError", node=True),
    Case("node bad parameter", ("-p", "top_k:=0"), "ConfigError", node=True),
]


def _run_case(case: Case, shared: Path, tmp: Path) -> subprocess.CompletedProcess:
    args = [a.replace("{S}", str(shared)).replace("{T}", str(tmp)) for a in case.args]
    wrap: Callable[[list[str]], list[str]] = lambda argv: argv  # noqa: E731
    preexec = None
    if case.fault == "read-only":
        (tmp / "ro").mkdir()
        for name in case.seed_ro:
            src = shared / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / "ro" / name)
        wrap = _read_only(tmp / "ro")
    elif case.fault == "full-disk":
        preexec = _file_size_limit
    if case.node:
        from vbl_ros.ros.process import ros_env

        argv = [str(LOCALIZE), "--ros-args", *args]
        env = ros_env(unique_domain_id())
    else:
        argv, env = [str(VBL), *args], None
    return subprocess.run(
        wrap(argv), capture_output=True, text=True, timeout=300, cwd=REPO, env=env, preexec_fn=preexec
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_ends_in_a_named_error_and_changes_nothing(case: Case, shared: Path, tmp_path: Path) -> None:
    before = _hashes(shared)
    result = _run_case(case, shared, tmp_path)
    output = result.stderr + result.stdout
    assert result.returncode == 2, output[-3000:]
    assert case.error in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert _hashes(shared) == before
    for name in case.seed_ro:  # the read-only folder's artefacts are as they were
        kept, src = tmp_path / "ro" / name, shared / name
        if src.is_dir():
            assert _hashes(kept) == _hashes(src)
        else:
            assert kept.read_bytes() == src.read_bytes()
    leftovers = [p.name for p in tmp_path.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"


# ---------------------------------------------------------------------------------------- kills
def _kill_save(map_dir: Path, point: str) -> None:
    """Load the map at ``map_dir`` and save it again in a process killed (SIGKILL) at ``point``."""
    code = (
        "import sys; from vbl_ros.mapping import KeyframeMap; KeyframeMap.load(sys.argv[1]).save(sys.argv[1])"
    )
    env = {**os.environ, "VBL_FAULT": point}
    result = subprocess.run(
        [sys.executable, "-c", code, str(map_dir)], env=env, capture_output=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def _hidden_map(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A map (of model ``fp-a``) whose replace was killed between its renames: the path is empty."""
    kmap, _ = random_map(20)
    map_dir = kmap.save(tmp_path / "maps" / "m")
    before = _hashes(map_dir)
    _kill_save(map_dir, "replace-between-renames")
    assert not map_dir.exists()
    # the old map aside, the new one complete in its temporary folder, nothing at the path
    assert sorted(p.name.split("-")[0] for p in map_dir.parent.iterdir()) == [".m.old", ".m.tmp"]
    return map_dir, before


def test_cli_replace_killed_between_renames_is_repaired(shared: Path, tmp_path: Path) -> None:
    """``vbl build-map --overwrite`` killed between its renames; ``vbl repair-map`` puts the old map back."""
    map_dir = tmp_path / "map"
    shutil.copytree(shared / "map", map_dir)
    before = _hashes(map_dir)
    killed = _vbl(
        "build-map",
        shared / "line_mcap",
        "--overwrite",
        "--out",
        map_dir,
        env={**os.environ, "VBL_FAULT": "replace-between-renames"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not map_dir.exists()
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".map.old-")]
    assert len(hidden) == 1, list(tmp_path.iterdir())
    repaired = _vbl("repair-map", map_dir)
    assert repaired.returncode == 0, repaired.stderr
    assert "restored the previous version" in repaired.stderr and "repaired" in repaired.stdout
    assert _hashes(map_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map"]


@pytest.mark.parametrize("reader", ["python", "build-map", "evaluate", "node"])
def test_every_reader_restores_a_hidden_map(reader: str, tmp_path: Path) -> None:
    map_dir, before = _hidden_map(tmp_path)
    if reader == "python":
        from vbl_ros.mapping import KeyframeMap

        assert len(KeyframeMap.load(map_dir)) == 20
    else:
        if reader == "build-map":  # finds the map: refuses to replace it without --overwrite
            bag = write_line_bag(tmp_path / "bag", length_m=10.0).path
            argv = [str(VBL), "build-map", str(bag), "--out", str(map_dir)]
            expected, env = "OutputExistsError", None
        elif reader == "evaluate":  # finds the map: refuses it as built with another model
            bag = write_line_bag(tmp_path / "bag", length_m=10.0).path
            argv = [
                str(VBL),
                "evaluate",
                "--offline",
                "--map",
                str(map_dir),
                "--out",
                str(tmp_path / "r"),
                str(bag),
            ]
            expected, env = "ModelMismatchError", None
        else:
            from vbl_ros.ros.process import ros_env

            argv = [str(LOCALIZE), "--ros-args", "-p", f"map:={map_dir}"]
            expected, env = "ModelMismatchError", ros_env(unique_domain_id())
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
        output = result.stderr + result.stdout
        assert result.returncode == 2 and expected in output, output[-3000:]
        assert "Traceback" not in output
    assert _hashes(map_dir) == before
    assert sorted(p.name for p in map_dir.parent.iterdir()) == ["m"]


def test_a_save_killed_before_the_swap_leaves_no_map_lookalike(tmp_path: Path) -> None:
    """A killed save's complete temporary folder is removed by the next reader, never taken for a map."""
    kmap, _ = random_map(20)
    map_dir = kmap.save(tmp_path / "maps" / "m")
    before = _hashes(map_dir)
    _kill_save(map_dir, "replace-before-swap")
    stray = [p for p in map_dir.parent.iterdir() if p.name.startswith(".m.tmp-")]
    assert len(stray) == 1 and (stray[0] / "manifest.json").is_file()  # complete, yet not a map
    repaired = _vbl("repair-map", map_dir)
    assert repaired.returncode == 0, repaired.stderr
    assert "incomplete temporary copy" in repaired.stderr
    assert sorted(p.name for p in map_dir.parent.iterdir()) == ["m"]
    assert _hashes(map_dir) == before


def test_too_little_space_is_refused_before_the_work(tmp_path: Path) -> None:
    from vbl_ros.errors import OutputError
    from vbl_ros.files import check_output

    free = shutil.disk_usage(tmp_path).free
    check_output(tmp_path / "map", free // 2, "map")
    with pytest.raises(OutputError, match=r"needs about .* free: free some space"):
        check_output(tmp_path / "a" / "b" / "map", free * 2, "map")
    assert list(tmp_path.iterdir()) == []  # the checks write nothing
