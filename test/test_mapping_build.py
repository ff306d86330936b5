"""The build_map step on a real bag, through Python and through ``vbl build-map``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from bag_fixtures import T0_NS, write_line_bag

from vbl_ros.cli import main
from vbl_ros.errors import OutputExistsError
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.mapping import KeyframeMap, MapConfig, PqIndexConfig, build_map
from vbl_ros.model import (
    DescriptorExtractor,
    DescriptorNet,
    ModelConfig,
    load_model,
    model_fingerprint,
    save_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """The pretrained default architecture at a 64x64 input (fast), saved as a model file."""
    net = DescriptorNet(ModelConfig(input_height=64, input_width=64))
    return save_model(net, tmp_path_factory.mktemp("model") / "small.pt"), model_fingerprint(net)


@pytest.fixture(scope="module")
def line_bag(tmp_path_factory):
    return write_line_bag(tmp_path_factory.mktemp("bag") / "line", length_m=60.0, camera_hz=4.0)


def test_build_map_from_a_bag_respects_spacing(line_bag, small_model, tmp_path) -> None:
    model_path, fingerprint = small_model
    out = build_map(
        line_bag.path,
        tmp_path / "map",
        model=model_path,
        config=MapConfig(spacing_m=10.0, batch_size=3, device="cpu"),
    )
    assert out == tmp_path / "map"
    kmap = KeyframeMap.load(out, expected_fingerprint=fingerprint)
    assert len(kmap) == 7  # 0, 10, ..., 60 m
    assert kmap.positions()[:, 0] == pytest.approx(np.arange(0, 61, 10.0))
    assert kmap.keyframe(2).stamp_ns == T0_NS + 4 * 10**9
    assert kmap.utm_origin == UtmOrigin(619000.0, 5736000.0, 100.0, "30U")
    k = kmap.keyframe(6)
    assert 51.7 < k.latitude < 51.8 and -1.3 < k.longitude < -1.2
    # a frame of the bag retrieves its own keyframe
    extractor = DescriptorExtractor(load_model(model_path), "cpu")
    _, ids = kmap.search(extractor([line_bag.frame_at(30.0)]), 1)
    assert ids[0, 0] == 3
    with pytest.raises(OutputExistsError):
        build_map(line_bag.path, out, model=model_path, config=MapConfig())


def test_vbl_build_map_picks_the_index_from_the_flag_or_the_config(line_bag, small_model, tmp_path) -> None:
    model_path, _ = small_model
    common = [str(line_bag.path), "--model", str(model_path), "--spacing", "10"]
    assert main(["build-map", *common, "--out", str(tmp_path / "flat")]) == 0
    assert main(["build-map", *common, "--out", str(tmp_path / "pq"), "--index", "pq"]) == 0
    manifest = json.loads((tmp_path / "pq" / "manifest.json").read_text())
    assert manifest["index_type"] == "pq" and manifest["index_params"]["pq_candidates"] == 128
    flat, pq = KeyframeMap.load(tmp_path / "flat"), KeyframeMap.load(tmp_path / "pq")
    assert pq.index_config == PqIndexConfig()
    queries = flat.descriptors()
    assert np.array_equal(pq.search(queries, 3)[1], flat.search(queries, 3)[1])  # small: re-ranked exactly
    # a YAML MapConfig with the index's settings; --index of the same kind keeps them
    config = tmp_path / "map.yaml"
    config.write_text(yaml.safe_dump({"device": "cpu", "index": {"kind": "pq", "candidates": 256}}))
    out = tmp_path / "pq256"
    assert main(["build-map", *common, "--out", str(out), "--config", str(config), "--index", "pq"]) == 0
    assert KeyframeMap.load(out).index_config == PqIndexConfig(candidates=256)
    # an existing map is refused with a named error (exit code 2)
    assert main(["build-map", *common, "--out", str(out)]) == 2
