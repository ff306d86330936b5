"""The keyframe store: search, save/reload/grow, atomic save and recovery, fingerprints, old manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mapping_fixtures import DIM, ORIGIN, keyframes, random_map, unit

import vbl_ros.mapping.store as store
from vbl_ros.errors import MapError, ModelMismatchError
from vbl_ros.mapping import FlatIndexConfig, HnswIndexConfig, IvfIndexConfig, KeyframeMap, PqIndexConfig


def test_search_returns_scores_and_ids() -> None:
    kmap, desc = random_map()
    scores, ids = kmap.search(desc[[3, 7]], 3)
    assert ids[:, 0].tolist() == [3, 7] and scores[:, 0] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    scores, ids = kmap.search(desc[0], 60)  # more than the map holds
    assert ids.shape == (1, 60) and (ids[0, 50:] == -1).all() and np.isneginf(scores[0, 50:]).all()
    empty = KeyframeMap.create(DIM, "fp", None)
    assert empty.search(desc[0], 2)[1].tolist() == [[-1, -1]]


def test_save_reload_and_grow(tmp_path) -> None:
    kmap, desc = random_map(30)
    path = kmap.save(tmp_path / "m")
    loaded = KeyframeMap.load(path, expected_fingerprint="fp-a")
    assert len(loaded) == 30 and loaded.keyframe(4) == kmap.keyframe(4)
    assert loaded.utm_origin == ORIGIN
    assert np.array_equal(loaded.descriptors(), desc)
    more = unit(np.random.default_rng(9).normal(size=(5, DIM)))
    loaded.add(more, keyframes(5, start=30))
    assert loaded.search(more[2], 1)[1][0, 0] == 32
    loaded.save(path)  # in place, over the map it was loaded from
    again = KeyframeMap.load(path)
    assert len(again) == 35 and again.keyframe(34).position == (34.0, 2.0, 0.5)
    assert again.search(desc[10], 1)[1][0, 0] == 10
    assert not list(tmp_path.glob(".m.*"))  # no temporary folders left


def test_keyframes_added_one_at_a_time_between_reads_equal_one_add(tmp_path) -> None:
    whole, desc = random_map(40)
    pieces = KeyframeMap.create(DIM, "fp-a", ORIGIN)
    for i, kf in enumerate(keyframes(40)):
        pieces.add(desc[i : i + 1], [kf])
        assert len(pieces) == i + 1
        if i % 7 == 0:  # reads in between join what was added so far
            assert pieces.keyframe(i) == kf and len(pieces.positions()) == i + 1
            assert pieces.search(desc[i], 1)[1][0, 0] == i
    for read in ("positions", "orientations", "stamps_ns"):
        assert np.array_equal(getattr(pieces, read)(), getattr(whole, read)())
    pieces.add(desc[:2], keyframes(2, start=40))  # not read before saving: saved all the same
    again = KeyframeMap.load(pieces.save(tmp_path / "m"))
    assert len(again) == 42 and again.keyframe(41).position == (41.0, 2.0, 0.5)
    assert np.array_equal(again.descriptors()[:40], desc)


def test_a_crash_mid_save_leaves_the_old_map_intact(tmp_path, monkeypatch) -> None:
    kmap, _ = random_map(20)
    path = kmap.save(tmp_path / "m")
    bigger, _ = random_map(40, seed=1)

    def crash(*_args, **_kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store, "fsync_path", crash)
    with pytest.raises(OSError, match="simulated"):
        bigger.save(path)
    monkeypatch.undo()
    assert len(KeyframeMap.load(path)) == 20
    assert not list(tmp_path.glob(".m.*"))


def test_a_failed_rename_puts_the_old_map_back(tmp_path, monkeypatch) -> None:
    """An error (not a kill: see test_faults.py) on the new map's rename restores the old one at once."""
    kmap, _ = random_map(20)
    path = kmap.save(tmp_path / "m")
    real_rename = store.os.rename
    calls = []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the new map's rename into place
            raise OSError("power cut (simulated)")
        real_rename(src, dst)

    monkeypatch.setattr(store.os, "rename", rename)
    with pytest.raises(OSError):
        random_map(40, seed=1)[0].save(path)
    monkeypatch.undo()
    assert len(KeyframeMap.load(path)) == 20  # the old map is back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # and nothing else is left


def test_a_map_of_another_model_is_refused(tmp_path) -> None:
    path = random_map(5)[0].save(tmp_path / "m")
    with pytest.raises(ModelMismatchError) as err:
        KeyframeMap.load(path, expected_fingerprint="fp-b")
    assert "fp-a" in str(err.value) and "fp-b" in str(err.value) and "build-map" in str(err.value)


def test_corrupt_or_missing_maps_raise_map_error(tmp_path) -> None:
    with pytest.raises(MapError):
        KeyframeMap.load(tmp_path / "nothing")
    path = random_map(5)[0].save(tmp_path / "m")
    (path / "descriptors.npy").write_bytes(b"garbage")
    with pytest.raises(MapError):
        KeyframeMap.load(path)
    with pytest.raises(MapError):
        KeyframeMap.create(DIM, "fp").add(np.ones((2, DIM)), keyframes(3))


def _rewrite_manifest(path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_the_manifest_names_the_index_and_its_settings(tmp_path) -> None:
    path = random_map(5, PqIndexConfig(candidates=64, threads=1))[0].save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["index_type"] == "pq"
    assert manifest["index_params"] == {
        "pq_subquantizers": 0,
        "pq_candidates": 64,
        "pq_threads": 1,
        "pq_train_size": 50_000,
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("flat", None),
        ("ivf", IvfIndexConfig(nlist=4, nprobe=3, train_size=0)),
        ("hnsw", HnswIndexConfig(m=16, ef_construction=80, ef_search=40)),
        ("pq", PqIndexConfig(subquantizers=8, candidates=256, threads=2, train_size=50_000)),
    ],
)
def test_maps_written_before_the_typed_index_configs_load(kind, expected, tmp_path) -> None:
    """Their manifests list every kind's settings as ``<kind>_<setting>``; only the map's own are read."""
    kmap, desc = random_map(100, kind)
    path = kmap.save(tmp_path / "m")
    old_params = {  # as the writer before the typed configs wrote them (with non-default values)
        "ivf_nlist": 4,
        "ivf_nprobe": 3,
        "ivf_train_size": 0,
        "hnsw_m": 16,
        "hnsw_ef_construction": 80,
        "hnsw_ef_search": 40,
        "pq_subquantizers": 8,
        "pq_candidates": 256,
        "pq_threads": 2,
        "pq_train_size": 50000,
    }
    _rewrite_manifest(path, index_params=old_params)
    loaded = KeyframeMap.load(path)
    assert loaded.index_config == (expected or FlatIndexConfig())
    assert np.array_equal(loaded.search(desc[:10], 1)[1][:, 0], np.arange(10))


def test_a_manifest_with_an_unknown_index_or_setting_is_refused(tmp_path) -> None:
    path = random_map(5)[0].save(tmp_path / "m")
    _rewrite_manifest(path, index_type="lsh")
    with pytest.raises(MapError, match="'lsh' is unknown"):
        KeyframeMap.load(path)
    _rewrite_manifest(path, index_type="pq", index_params={"pq_candidates": 0})
    with pytest.raises(MapError, match=r"corrupt manifest.*candidates"):
        KeyframeMap.load(path)
    _rewrite_manifest(path, index_type="ivf", index_params={"ivf_nprobes": 8})
    with pytest.raises(MapError, match="unknown key"):
        KeyframeMap.load(path)
