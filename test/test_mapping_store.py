"""Keyframe maps: build from a real bag, spacing, save/reload/grow, atomic save, fingerprints, indexes."""

from __future__ import annotations

import numpy as np
import pytest
from bag_fixtures import T0_NS, write_line_bag

import vbl_ros.mapping.store as km
from vbl_ros.errors import ConfigError, MapError, ModelMismatchError, OutputExistsError
from vbl_ros.mapping import Keyframe, KeyframeMap, MapConfig, build_map
from vbl_ros.model import DescriptorNet, ModelConfig, model_fingerprint, save_model
from vbl_ros.robotcar.messages import UtmOrigin

DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def keyframes(n: int, start: int = 0) -> list[Keyframe]:
    return [
        Keyframe(
            stamp_ns=(start + i) * 10**9,
            position=(float(start + i), 2.0, 0.5),
            orientation=(0.0, 0.0, 0.0, 1.0),
            latitude=51.7,
            longitude=-1.2,
        )
        for i in range(n)
    ]


def random_map(n: int = 50, index_type: str = "flat", seed: int = 0) -> tuple[KeyframeMap, np.ndarray]:
    desc = unit(np.random.default_rng(seed).normal(size=(n, DIM)))
    kmap = KeyframeMap.create(DIM, "fp-a", UtmOrigin(600000.0, 5700000.0, 10.0, "30U"), index_type)
    kmap.add(desc, keyframes(n))
    return kmap, desc


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
    kmap = KeyframeMap.load(out, expected_fingerprint=fingerprint)
    assert len(kmap) == 7  # 0, 10, ..., 60 m
    assert kmap.positions()[:, 0] == pytest.approx(np.arange(0, 61, 10.0))
    assert kmap.keyframe(2).stamp_ns == T0_NS + 4 * 10**9
    assert kmap.utm_origin == UtmOrigin(619000.0, 5736000.0, 100.0, "30U")
    k = kmap.keyframe(6)
    assert 51.7 < k.latitude < 51.8 and -1.3 < k.longitude < -1.2
    # a frame of the bag retrieves its own keyframe
    from vbl_ros.model import DescriptorExtractor, load_model

    extractor = DescriptorExtractor(load_model(model_path), "cpu")
    _, ids = kmap.search(extractor([line_bag.frame_at(30.0)]), 1)
    assert ids[0, 0] == 3
    with pytest.raises(OutputExistsError):
        build_map(line_bag.path, out, model=model_path, config=MapConfig())


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
    assert np.array_equal(loaded.descriptors(), desc)
    more = unit(np.random.default_rng(9).normal(size=(5, DIM)))
    loaded.add(more, keyframes(5, start=30))
    assert loaded.search(more[2], 1)[1][0, 0] == 32
    loaded.save(path)  # in place, over the map it was loaded from
    again = KeyframeMap.load(path)
    assert len(again) == 35 and again.keyframe(34).position == (34.0, 2.0, 0.5)
    assert again.search(desc[10], 1)[1][0, 0] == 10
    assert not list(tmp_path.glob(".m.*"))  # no temporary folders left


def test_a_crash_mid_save_leaves_the_old_map_intact(tmp_path, monkeypatch) -> None:
    kmap, _ = random_map(20)
    path = kmap.save(tmp_path / "m")
    bigger, _ = random_map(40, seed=1)

    def crash(*_args, **_kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(km, "_fsync_file", crash)
    with pytest.raises(OSError, match="simulated"):
        bigger.save(path)
    monkeypatch.undo()
    assert len(KeyframeMap.load(path)) == 20
    assert not list(tmp_path.glob(".m.*"))


def test_a_crash_between_the_renames_is_recovered(tmp_path, monkeypatch) -> None:
    kmap, _ = random_map(20)
    path = kmap.save(tmp_path / "m")
    real_rename = km.os.rename
    calls = []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the new map's rename into place
            raise OSError("power cut (simulated)")
        real_rename(src, dst)

    monkeypatch.setattr(km.os, "rename", rename)
    with pytest.raises(OSError):
        random_map(40, seed=1)[0].save(path)
    monkeypatch.undo()
    assert not path.exists()
    assert len(KeyframeMap.load(path)) == 20  # the old map is put back


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


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact_on_easy_data(index_type, tmp_path) -> None:
    rng = np.random.default_rng(3)
    n = 4000
    desc = unit(rng.normal(size=(n, DIM)))
    queries = unit(desc[:200] + 0.05 * rng.normal(size=(200, DIM)))
    exact = KeyframeMap.create(DIM, "fp", None, "flat")
    exact.add(desc, keyframes(n))
    approx = KeyframeMap.create(DIM, "fp", None, index_type, config=MapConfig(ivf_nprobe=16))
    approx.add(desc[:3000], keyframes(3000))
    approx.search(queries[:1], 1)  # trains IVF / builds HNSW on the first 3000
    approx.add(desc[3000:], keyframes(n - 3000, start=3000))  # grows the trained index
    _, ids_exact = exact.search(queries, 1)
    _, ids_approx = approx.search(queries, 1)
    assert np.mean(ids_exact[:, 0] == ids_approx[:, 0]) >= 0.98
    reloaded = KeyframeMap.load(approx.save(tmp_path / "m"))
    assert np.array_equal(reloaded.search(queries, 1)[1], ids_approx)


def test_ivf_trains_on_a_sample_when_asked(tmp_path, monkeypatch) -> None:
    import faiss

    rng = np.random.default_rng(4)
    n = 4000
    desc = unit(rng.normal(size=(n, DIM)))
    queries = unit(desc[:200] + 0.05 * rng.normal(size=(200, DIM)))
    trained_on: list[int] = []
    train = faiss.IndexIVFFlat.train

    def spy(self, x):
        trained_on.append(len(x))
        return train(self, x)

    monkeypatch.setattr(faiss.IndexIVFFlat, "train", spy)
    config = MapConfig(ivf_nlist=16, ivf_nprobe=8, ivf_train_size=1000)
    approx = KeyframeMap.create(DIM, "fp", None, "ivf", config=config)
    approx.add(desc, keyframes(n))
    _, ids = approx.search(queries, 1)
    assert trained_on == [1000]
    assert approx._index.nlist == 16 and approx._index.ntotal == n
    assert np.mean(ids[:, 0] == np.arange(200)) >= 0.98
    reloaded = KeyframeMap.load(approx.save(tmp_path / "m"))
    assert reloaded.index_params["ivf_train_size"] == 1000
    assert np.array_equal(reloaded.search(queries, 1)[1], ids)
    # the automatic list count follows the map's size, not the sample's (capped at sample / 39)
    auto = KeyframeMap.create(DIM, "fp", None, "ivf", config=MapConfig(ivf_train_size=200_000))
    assert auto._new_index(200_000, 1_000_000).nlist == 4000
    assert auto._new_index(2000, 1_000_000).nlist == 2000 // 39
    with pytest.raises(ConfigError):
        MapConfig(ivf_train_size=-1)


# ---------------------------------------------------------------------- the pq index
def route_descriptors(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    """Keyframes along routes of 500: consecutive descriptors correlated, as along a drive."""
    x = rng.normal(size=(n, dim))
    for i in range(1, n):
        if i % 500:
            x[i] = 0.8 * x[i - 1] + 0.6 * x[i]
    return unit(x)


@pytest.fixture(scope="module")
def pq_data():
    rng = np.random.default_rng(5)
    n = 6000
    desc = route_descriptors(n, rng)
    truth = rng.integers(0, n, 300)
    queries = unit(desc[truth] + 0.12 * rng.normal(size=(300, DIM)))
    exact = KeyframeMap.create(DIM, "fp", None, "flat")
    exact.add(desc, keyframes(n))
    return desc, queries, exact.search(queries, 10)


def pq_map(desc: np.ndarray, **overrides) -> KeyframeMap:
    config = MapConfig(index_type="pq", pq_train_size=3000, **overrides)
    kmap = KeyframeMap.create(DIM, "fp", None, "pq", config=config)
    kmap.add(desc, keyframes(len(desc)))
    return kmap


def test_pq_ranks_its_candidates_exactly_and_agrees_with_exact_search(pq_data, tmp_path) -> None:
    desc, queries, (_, exact_ids) = pq_data
    kmap = pq_map(desc)
    scores, ids = kmap.search(queries, 10)
    assert kmap._index is not None and kmap._index.ntotal == len(desc)  # the codes were used
    assert np.mean(ids[:, 0] == exact_ids[:, 0]) >= 0.98
    # the scores are exact inner products of the returned keyframes, in descending order
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", desc[ids], queries), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # proposing only k candidates leaves the codes' own (approximate) ranking: fewer agree
    kmap.set_search_params(candidates=10)
    _, ids_codes_only = kmap.search(queries, 10)
    assert np.mean(ids_codes_only == exact_ids) < np.mean(ids == exact_ids)
    kmap.set_search_params(candidates=256)
    ids_256 = kmap.search(queries, 10)[1]
    # saved, the codebook and the setting come back and the codes are re-computed: the same answers
    path = kmap.save(tmp_path / "pq")
    assert (path / "index.faiss").is_file()
    reloaded = KeyframeMap.load(path)
    assert reloaded.index_params["pq_candidates"] == 256
    assert np.array_equal(reloaded.search(queries, 10)[1], ids_256)


def test_pq_shards_merge_and_grow_correctly(pq_data, tmp_path) -> None:
    desc, queries, (_, exact_ids) = pq_data
    one = pq_map(desc, pq_threads=1)
    three = pq_map(desc, pq_threads=3)
    ids_one, ids_three = one.search(queries, 10)[1], three.search(queries, 10)[1]
    assert three._index.sizes == [2000, 2000, 2000]
    # shard offsets translate to the right keyframe ids: both agree with exact search (each shard
    # proposes its own best, so deeper ranks may differ where the codes are close)
    assert np.mean(ids_one[:, 0] == exact_ids[:, 0]) >= 0.98
    assert np.mean(ids_three[:, 0] == exact_ids[:, 0]) >= 0.98
    assert np.mean(ids_one == ids_three) >= 0.9
    # grow a trained map: the new keyframes (appended to the last shard) are found by their ids
    rng = np.random.default_rng(6)
    extra = route_descriptors(500, rng)
    three.add(extra, keyframes(500, start=len(desc)))
    _, found = three.search(extra[::25], 1)
    assert np.array_equal(found[:, 0], len(desc) + np.arange(0, 500, 25))
    assert three._index.sizes == [2000, 2000, 2500]
    reloaded = KeyframeMap.load(three.save(tmp_path / "grown"))  # re-encoded evenly on load
    assert np.array_equal(reloaded.search(extra[::25], 1)[1], found)
    assert reloaded._index.sizes == [2167, 2166, 2167]


def test_a_small_pq_map_searches_exactly(tmp_path) -> None:
    kmap, desc = random_map(300, "pq")
    exact, _ = random_map(300, "flat")
    queries = unit(desc[:20] + 0.3)
    assert np.array_equal(kmap.search(queries, 5)[1], exact.search(queries, 5)[1])
    assert kmap._index is None  # under PQ_MIN_KEYFRAMES no codebook is trained
    path = kmap.save(tmp_path / "small")
    assert not (path / "index.faiss").exists()
    assert np.array_equal(KeyframeMap.load(path).search(queries, 5)[1], exact.search(queries, 5)[1])


def test_pq_refuses_bad_settings_with_named_errors(pq_data, tmp_path) -> None:
    desc = pq_data[0]
    with pytest.raises(ConfigError, match="pq_candidates"):
        MapConfig(pq_candidates=0)
    with pytest.raises(ConfigError, match="pq_subquantizers"):
        MapConfig(pq_subquantizers=-1)
    with pytest.raises(MapError, match="divide"):
        pq_map(desc, pq_subquantizers=5).search(desc[:1], 1)
    wide = KeyframeMap.create(2048, "fp", None, "pq")
    wide.add(
        unit(np.random.default_rng(0).normal(size=(km.PQ_MIN_KEYFRAMES, 2048))),
        keyframes(km.PQ_MIN_KEYFRAMES),
    )
    with pytest.raises(MapError, match="projection"):
        wide.search(np.ones((1, 2048), np.float32), 1)
    path = pq_map(desc).save(tmp_path / "pq")
    (path / "index.faiss").unlink()
    with pytest.raises(MapError, match="missing"):
        KeyframeMap.load(path)


def test_prepare_builds_the_index_before_the_first_search(pq_data, tmp_path) -> None:
    desc = pq_data[0]
    reloaded = KeyframeMap.load(pq_map(desc).save(tmp_path / "pq"))
    assert reloaded._index.ntotal == 0  # opening a pq map reads the codebook, not the codes
    reloaded.prepare()
    assert reloaded._index.ntotal == len(desc)
