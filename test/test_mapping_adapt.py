"""``vbl build-map --adapt``: a model fitted on the map's keyframes, saved in the map and loaded with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bag_fixtures import write_line_bag
from evaluate_fixtures import query_bag, small_model

from vbl_ros.cli import main
from vbl_ros.errors import ConfigError, MapError, ModelMismatchError
from vbl_ros.mapping import KeyframeMap, MapConfig, build_map
from vbl_ros.mapping.adapt import AdaptConfig, resolve_model
from vbl_ros.model import default_model, load_model, model_fingerprint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 64x64 input (2 x 2 local features a frame), 8 clusters, PCA to 6 with >= 2 keyframes per dimension
ADAPT = AdaptConfig(input_height=64, input_width=64, clusters=8, pca_dim=6, max_images=50)
CONFIG = MapConfig(spacing_m=5.0, batch_size=8, device="cpu", adapt=ADAPT)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 60 m street (13 keyframes every 5 m) mapped with an adapted model; a query drive along it."""
    root = tmp_path_factory.mktemp("adapt")
    bag = write_line_bag(root / "map_bag", length_m=60.0, camera_hz=4.0)
    map_dir = build_map(bag.path, root / "map", config=CONFIG)
    return {"root": root, "bag": bag, "map": map_dir, "query": query_bag(root / "sunny").path}


def test_the_adapted_model_is_written_into_the_map_with_its_own_fingerprint(setup) -> None:
    map_dir = setup["map"]
    manifest = json.loads((map_dir / "manifest.json").read_text())
    assert manifest["model_file"] == "model.pt"
    net = load_model(map_dir / "model.pt")
    assert net.config.aggregation == "netvlad" and net.config.netvlad_clusters == 8
    assert net.config.projection == "pca" and net.dim == 6  # 13 keyframes >= 2 x 6
    assert (net.config.input_height, net.config.input_width) == (64, 64)
    fingerprint = model_fingerprint(net)
    assert manifest["model_fingerprint"] == fingerprint != model_fingerprint(default_model())
    kmap = KeyframeMap.load(map_dir, expected_fingerprint=fingerprint)
    assert len(kmap) == 13 and kmap.dim == 6 and kmap.model_file == "model.pt"
    assert sorted(p.name for p in setup["root"].iterdir() if p.name.startswith(".")) == []


def test_too_few_keyframes_for_pca_keep_netvlads_full_descriptor(setup, tmp_path) -> None:
    adapt = AdaptConfig(input_height=64, input_width=64, clusters=4, pca_dim=16)  # 13 < 2 x 16
    out = build_map(setup["bag"].path, tmp_path / "map", config=MapConfig(device="cpu", adapt=adapt))
    net = load_model(out / "model.pt")
    assert net.config.projection == "none" and net.dim == 4 * 320
    assert KeyframeMap.load(out, expected_fingerprint=model_fingerprint(net)).dim == 4 * 320


def test_readers_of_the_map_load_its_model_and_refuse_another(setup, tmp_path) -> None:
    map_dir = setup["map"]
    assert resolve_model(None, map_dir) == map_dir / "model.pt"
    other = small_model(tmp_path / "other.pt")
    assert resolve_model(other, map_dir) == other  # an explicit model wins, and is checked below
    assert resolve_model(None, None) is None

    # vbl evaluate without --model: the map's own model
    out = tmp_path / "report"
    common = ["evaluate", "--map", str(map_dir), "--offline", "--threshold", "10"]
    assert main([*common, "--out", str(out), str(setup["query"])]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["queries"]["sunny"]["recall_at"]["5"] >= 0.8
    # an explicit model that is not the map's is refused (exit 2: a user error)
    assert main([*common, "--model", str(other), "--out", str(tmp_path / "r2"), str(setup["query"])]) == 2
    assert not (tmp_path / "r2").exists()


def test_the_node_loads_the_maps_model(setup, tmp_path) -> None:
    pytest.importorskip("rclpy")
    from vbl_ros.localizer import LocalizerConfig
    from vbl_ros.ros.localize_node import build_localizer
    from vbl_ros.ros.params import NodeParams

    map_dir = setup["map"]
    localizer = build_localizer(NodeParams(map=str(map_dir), device="cpu"), LocalizerConfig())
    result = localizer.process(setup["bag"].frame_at(30.0), 1)
    assert result.matches and abs(result.matches[0].keyframe.position[0] - 30.0) <= 5.0
    other = small_model(tmp_path / "other.pt")
    with pytest.raises(ModelMismatchError):
        build_localizer(NodeParams(model=str(other), map=str(map_dir), device="cpu"), LocalizerConfig())


def test_add_keeps_the_maps_model_and_adapt_refuses_add_or_a_model(setup, tmp_path) -> None:
    map_dir = build_map(setup["bag"].path, tmp_path / "map", config=CONFIG)
    fingerprint = KeyframeMap.load(map_dir).model_fingerprint
    build_map(setup["query"], map_dir, add=True, config=MapConfig(device="cpu"))  # no --model: the map's
    kmap = KeyframeMap.load(map_dir, expected_fingerprint=fingerprint)
    assert len(kmap) > 13 and kmap.model_file == "model.pt"
    assert model_fingerprint(load_model(map_dir / "model.pt")) == fingerprint
    with pytest.raises(ConfigError, match="drop --adapt"):
        build_map(setup["query"], map_dir, add=True, config=CONFIG)
    with pytest.raises(ConfigError, match="drop --model"):
        build_map(setup["query"], tmp_path / "m2", model=map_dir / "model.pt", config=CONFIG)
    # a loaded map saved elsewhere takes its model along
    copy = KeyframeMap.load(map_dir).save(tmp_path / "copy")
    assert (copy / "model.pt").read_bytes() == (map_dir / "model.pt").read_bytes()
    assert resolve_model(None, copy) == copy / "model.pt"
    # a map without a model of its own: readers use the default; a folder that is no map is refused
    plain = KeyframeMap.create(4, "fp", None)
    plain.save(tmp_path / "plain")
    assert resolve_model(None, tmp_path / "plain") is None
    with pytest.raises(MapError, match="not a keyframe map"):
        resolve_model(None, tmp_path)
    # a map whose model file went missing is refused with the reason
    (map_dir / "model.pt").unlink()
    with pytest.raises(MapError, match="missing"):
        KeyframeMap.load(map_dir)


def test_cli_adapt_with_settings_from_yaml(setup, tmp_path) -> None:
    config = tmp_path / "map.yaml"
    config.write_text(yaml.safe_dump({"device": "cpu", "adapt": {"input_height": 64, "input_width": 64,
                                                                  "clusters": 4, "pca_dim": 0}}))  # fmt: skip
    out = tmp_path / "map"
    argv = ["build-map", str(setup["bag"].path), "--out", str(out), "--config", str(config), "--adapt"]
    assert main(argv) == 0
    net = load_model(out / "model.pt")
    assert net.config.netvlad_clusters == 4 and net.config.projection == "none"
    config.write_text(yaml.safe_dump({"adapt": {"clusters": 0}}))
    assert main([*argv[:-1], "--overwrite"]) == 2  # a bad setting: a user error
    assert Path(out / "model.pt").is_file()
