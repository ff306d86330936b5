"""The map's indexes on real FAISS: typed configs, flat/ivf/hnsw/pq agreement with exact search, pq shards."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from mapping_fixtures import DIM, keyframes, random_map, route_descriptors, unit

from vbl_ros.config import from_dict, load_yaml
from vbl_ros.errors import ConfigError, MapError
from vbl_ros.mapping import (
    INDEXES,
    FlatIndexConfig,
    HnswIndexConfig,
    IvfIndexConfig,
    KeyframeMap,
    MapConfig,
    PqIndexConfig,
    index_config,
)
from vbl_ros.mapping.indexes import PQ_MIN_KEYFRAMES, ivf_list_count


# ---------------------------------------------------------------------- configs
def test_index_configs_are_typed_and_loaded_from_yaml(tmp_path) -> None:
    assert MapConfig().index == FlatIndexConfig()
    assert index_config("pq", candidates=64) == PqIndexConfig(candidates=64)
    assert index_config({"kind": "ivf", "nprobe": 8}) == IvfIndexConfig(nprobe=8)
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump({"spacing_m": 2.0, "index": {"kind": "hnsw", "ef_search": 64}}))
    assert load_yaml(MapConfig, path) == MapConfig(spacing_m=2.0, index=HnswIndexConfig(ef_search=64))
    assert from_dict(MapConfig, {"index": "pq"}).index == PqIndexConfig()  # a kind's name: its defaults


@pytest.mark.parametrize("kind", list(INDEXES))
def test_every_kind_finds_each_keyframe_and_keeps_its_settings(kind, tmp_path) -> None:
    config_class, _ = INDEXES[kind]
    assert config_class.kind == kind and index_config(kind) == config_class()
    kmap, desc = random_map(200, kind)
    assert np.array_equal(kmap.search(desc, 1)[1][:, 0], np.arange(200))
    reloaded = KeyframeMap.load(kmap.save(tmp_path / kind))
    assert reloaded.index_config == kmap.index_config
    assert np.array_equal(reloaded.search(desc, 1)[1][:, 0], np.arange(200))


def test_bad_index_settings_are_refused_with_named_errors() -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        index_config("lsh")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(MapConfig, {"index": {"kind": "pq", "nprobe": 8}})
    with pytest.raises(ConfigError, match="kind"):
        from_dict(MapConfig, {"index": {"candidates": 8}})
    with pytest.raises(ConfigError, match="index must be"):
        MapConfig(index=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="candidates"):
        PqIndexConfig(candidates=0)
    with pytest.raises(ConfigError, match="subquantizers"):
        PqIndexConfig(subquantizers=-1)
    with pytest.raises(ConfigError, match="train_size"):
        IvfIndexConfig(train_size=-1)
    with pytest.raises(ConfigError, match="hnsw m"):
        HnswIndexConfig(m=1)
    with pytest.raises(ConfigError, match="spacing_m"):
        MapConfig(spacing_m=0)
    kmap, _ = random_map(10, "hnsw")
    with pytest.raises(ConfigError, match="cannot be changed on a hnsw index"):
        kmap.set_search_params(nprobe=8)
    with pytest.raises(ConfigError, match="ef_search"):
        kmap.set_search_params(ef_search=0)


# ---------------------------------------------------------------------- ivf, hnsw
@pytest.mark.parametrize("index", [IvfIndexConfig(nprobe=16), HnswIndexConfig()], ids=["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact_on_easy_data(index, tmp_path) -> None:
    rng = np.random.default_rng(3)
    n = 4000
    desc = unit(rng.normal(size=(n, DIM)))
    queries = unit(desc[:200] + 0.05 * rng.normal(size=(200, DIM)))
    exact = KeyframeMap.create(DIM, "fp", None, "flat")
    exact.add(desc, keyframes(n))
    approx = KeyframeMap.create(DIM, "fp", None, index)
    approx.add(desc[:3000], keyframes(3000))
    approx.search(queries[:1], 1)  # trains IVF / builds HNSW on the first 3000
    approx.add(desc[3000:], keyframes(n - 3000, start=3000))  # grows the trained index
    _, ids_exact = exact.search(queries, 1)
    _, ids_approx = approx.search(queries, 1)
    assert np.mean(ids_exact[:, 0] == ids_approx[:, 0]) >= 0.98
    reloaded = KeyframeMap.load(approx.save(tmp_path / "m"))
    assert reloaded.index_config == index
    assert np.array_equal(reloaded.search(queries, 1)[1], ids_approx)


def test_search_settings_change_a_built_index_and_are_saved(tmp_path) -> None:
    rng = np.random.default_rng(7)
    desc = unit(rng.normal(size=(2000, DIM)))
    queries = unit(desc[:200] + 0.1 * rng.normal(size=(200, DIM)))
    exact = KeyframeMap.create(DIM, "fp")
    exact.add(desc, keyframes(2000))
    kmap = KeyframeMap.create(DIM, "fp", None, IvfIndexConfig(nlist=32, nprobe=32))
    kmap.add(desc, keyframes(2000))
    every_list = kmap.search(queries, 1)[1]  # nprobe = nlist: an exact search
    assert np.array_equal(every_list, exact.search(queries, 1)[1])
    kmap.set_search_params(nprobe=1)
    one_list = kmap.search(queries, 1)[1]
    assert np.mean(one_list == every_list) < 0.9  # fewer lists visited: some matches missed
    reloaded = KeyframeMap.load(kmap.save(tmp_path / "m"))
    assert reloaded.index_config == IvfIndexConfig(nlist=32, nprobe=1)
    assert np.array_equal(reloaded.search(queries, 1)[1], one_list)


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
    config = IvfIndexConfig(nlist=16, nprobe=8, train_size=1000)
    approx = KeyframeMap.create(DIM, "fp", None, config)
    approx.add(desc, keyframes(n))
    _, ids = approx.search(queries, 1)
    assert trained_on == [1000]
    assert approx._index.nlist == 16 and approx._index.ntotal == n
    assert np.mean(ids[:, 0] == np.arange(200)) >= 0.98
    reloaded = KeyframeMap.load(approx.save(tmp_path / "m"))
    assert reloaded.index_config.train_size == 1000
    assert np.array_equal(reloaded.search(queries, 1)[1], ids)


def test_the_automatic_ivf_list_count_follows_the_map_not_the_sample() -> None:
    auto = IvfIndexConfig(train_size=200_000)
    assert ivf_list_count(auto, 200_000, 1_000_000) == 4000  # 4 sqrt(N)
    assert ivf_list_count(auto, 2000, 1_000_000) == 2000 // 39  # capped at 39 points per list
    assert ivf_list_count(IvfIndexConfig(nlist=16), 1000, 1000) == 16
    assert ivf_list_count(auto, 10, 10) == 1


# ---------------------------------------------------------------------- the pq index
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


def pq_map(desc: np.ndarray, **settings) -> KeyframeMap:
    kmap = KeyframeMap.create(DIM, "fp", None, PqIndexConfig(train_size=3000, **settings))
    kmap.add(desc, keyframes(len(desc)))
    return kmap


def test_pq_ranks_its_candidates_exactly_and_agrees_with_exact_search(pq_data, tmp_path) -> None:
    desc, queries, (_, exact_ids) = pq_data
    kmap = pq_map(desc)
    scores, ids = kmap.search(queries, 10)
    assert kmap._index.shards is not None and kmap._index.shards.ntotal == len(desc)  # the codes were used
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
    assert reloaded.index_config.candidates == 256
    assert np.array_equal(reloaded.search(queries, 10)[1], ids_256)


def test_pq_shards_merge_and_grow_correctly(pq_data, tmp_path) -> None:
    desc, queries, (_, exact_ids) = pq_data
    one = pq_map(desc, threads=1)
    three = pq_map(desc, threads=3)
    ids_one, ids_three = one.search(queries, 10)[1], three.search(queries, 10)[1]
    assert three._index.shards.sizes == [2000, 2000, 2000]
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
    assert three._index.shards.sizes == [2000, 2000, 2500]
    reloaded = KeyframeMap.load(three.save(tmp_path / "grown"))  # re-encoded evenly on load
    assert np.array_equal(reloaded.search(extra[::25], 1)[1], found)
    assert reloaded._index.shards.sizes == [2167, 2166, 2167]


def test_a_small_pq_map_searches_exactly_and_trains_once_it_is_large(pq_data, tmp_path) -> None:
    kmap, desc = random_map(300, "pq")
    exact, _ = random_map(300, "flat")
    queries = unit(desc[:20] + 0.3)
    assert np.array_equal(kmap.search(queries, 5)[1], exact.search(queries, 5)[1])
    assert kmap._index.shards is None  # under PQ_MIN_KEYFRAMES no codebook is trained
    path = kmap.save(tmp_path / "small")
    assert not (path / "index.faiss").exists()
    assert np.array_equal(KeyframeMap.load(path).search(queries, 5)[1], exact.search(queries, 5)[1])
    # grown past PQ_MIN_KEYFRAMES, the codebooks are trained on every keyframe and the codes used
    more = pq_data[0][:PQ_MIN_KEYFRAMES]
    kmap.add(more, keyframes(len(more), start=300))
    _, ids = kmap.search(more[:50], 1)
    assert kmap._index.shards is not None and kmap._index.shards.ntotal == 300 + len(more)
    assert np.array_equal(ids[:, 0], 300 + np.arange(50))


def test_pq_refuses_bad_shapes_with_named_errors(pq_data, tmp_path) -> None:
    desc = pq_data[0]
    with pytest.raises(MapError, match="divide"):
        pq_map(desc, subquantizers=5)
    with pytest.raises(MapError, match="projection"):
        KeyframeMap.create(2048, "fp", None, "pq")
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
