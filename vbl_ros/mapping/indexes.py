"""The keyframe map's search indexes behind one interface, each kind with its typed config.

A kind is a frozen config dataclass (its settings, validated) and an :class:`Index` class (how it
adds, searches, writes and reads), paired in :data:`INDEXES`; nothing else names the kinds:

- ``flat``: exact inner product over every keyframe (the default; up to ~100k keyframes);
- ``pq``: every keyframe scanned as a 4-bit product-quantised code, the best candidates re-scored
  exactly (the index for large maps, :mod:`vbl_ros.mapping.pq`);
- ``ivf``: IVF-Flat (k-means lists, ``nprobe`` of them visited per query);
- ``hnsw``: an HNSW graph over the float descriptors.

Row ``i`` of the map's descriptors is id ``i`` of its index. An index is built lazily by its
first :meth:`Index.add`, which receives every row the map holds then (so that IVF lists and pq
codebooks are trained on all of them); later adds append rows.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vbl_ros.config import from_dict
from vbl_ros.errors import ConfigError, MapError
from vbl_ros.mapping.pq import PQShards, check_pq_shape, default_subquantizers

__all__ = [
    "INDEXES",
    "PQ_MIN_KEYFRAMES",
    "FlatIndexConfig",
    "HnswIndexConfig",
    "Index",
    "IndexConfig",
    "IvfIndexConfig",
    "PqIndexConfig",
    "index_config",
    "ivf_list_count",
    "new_index",
]

logger = logging.getLogger(__name__)

PQ_MIN_KEYFRAMES = 4096  # a pq map trains its codebooks from this size on; smaller ones search exactly

Vectors = Callable[[], np.ndarray]
"""Returns the map's descriptors ``(N, D)`` float32; row ``i`` is id ``i``."""


# ---------------------------------------------------------------------- configs
class IndexConfig:
    """Base of the index configs: frozen dataclasses with the kind's name and search-time settings.

    Not a dataclass itself, so that :func:`vbl_ros.config.from_dict` hands a ``MapConfig``'s
    ``index`` mapping to :class:`vbl_ros.mapping.MapConfig`, which builds the kind named in it.
    """

    kind: ClassVar[str]
    search_params: ClassVar[tuple[str, ...]] = ()  # fields that may change on a built index

    def with_search_params(self, **params: int) -> IndexConfig:
        """This config with search-time settings changed (validated like the original)."""
        unknown = sorted(set(params) - set(self.search_params))
        if unknown:
            raise ConfigError(
                f"{unknown} cannot be changed on a {self.kind} index; its search settings are "
                f"{list(self.search_params) or 'none'}"
            )
        return dataclasses.replace(self, **params)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (the kind not included)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_config_value(self) -> dict[str, Any]:
        """``{"kind": ..., **settings}``: how a ``MapConfig``'s ``index`` is written to YAML
        (:func:`vbl_ros.config.to_dict`) and read back (:func:`index_config`)."""
        return {"kind": self.kind, **self.to_dict()}


@dataclasses.dataclass(frozen=True)
class FlatIndexConfig(IndexConfig):
    """Exact inner-product search over every keyframe: no settings."""

    kind: ClassVar[str] = "flat"


@dataclasses.dataclass(frozen=True)
class IvfIndexConfig(IndexConfig):
    """IVF-Flat.

    Attributes:
        nlist: lists; 0 = ``4 * sqrt(N)`` chosen when the index is trained (at most ``train / 39``).
        nprobe: lists visited per query.
        train_size: at most this many descriptors (an evenly spread, seeded random sample) train the
            k-means; 0 = all of them (FAISS itself caps at 256 per list). Training on all 1M
            keyframes with 4000 lists takes minutes on 2 cores; 200k is ~5x faster.
    """

    kind: ClassVar[str] = "ivf"
    search_params: ClassVar[tuple[str, ...]] = ("nprobe",)
    nlist: int = 0
    nprobe: int = 64
    train_size: int = 0

    def __post_init__(self) -> None:
        if self.nlist < 0:
            raise ConfigError(f"ivf nlist must be >= 0 (0 = automatic), got {self.nlist}")
        if self.nprobe < 1:
            raise ConfigError(f"ivf nprobe must be >= 1, got {self.nprobe}")
        if self.train_size < 0:
            raise ConfigError(f"ivf train_size must be >= 0 (0 = all descriptors), got {self.train_size}")


@dataclasses.dataclass(frozen=True)
class HnswIndexConfig(IndexConfig):
    """HNSW over the float descriptors.

    Attributes:
        m: neighbours per node.
        ef_construction: build breadth.
        ef_search: search breadth.
    """

    kind: ClassVar[str] = "hnsw"
    search_params: ClassVar[tuple[str, ...]] = ("ef_search",)
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 256

    def __post_init__(self) -> None:
        if self.m < 2:
            raise ConfigError(f"hnsw m must be >= 2, got {self.m}")
        if self.ef_construction < 1 or self.ef_search < 1:
            raise ConfigError(
                f"hnsw ef_construction and ef_search must be >= 1, got {self.ef_construction}, {self.ef_search}"
            )


@dataclasses.dataclass(frozen=True)
class PqIndexConfig(IndexConfig):
    """The pq index: OPQ + 4-bit fast-scan codes in shards, candidates re-scored exactly.

    Attributes:
        subquantizers: PQ sub-quantisers (code bytes x 2); 0 = ``dim / 4``. Must divide ``dim``.
        candidates: keyframes proposed by the codes and re-scored exactly per query.
        threads: threads (= shards of the codes) one query is searched on.
        train_size: at most this many descriptors (an evenly spread, seeded random sample) train the
            rotation and codebooks.
    """

    kind: ClassVar[str] = "pq"
    search_params: ClassVar[tuple[str, ...]] = ("candidates",)
    subquantizers: int = 0
    candidates: int = 128
    threads: int = 2
    train_size: int = 50_000

    def __post_init__(self) -> None:
        if self.subquantizers < 0:
            raise ConfigError(f"pq subquantizers must be >= 0 (0 = dim / 4), got {self.subquantizers}")
        if self.candidates < 1 or self.threads < 1 or self.train_size < 1:
            raise ConfigError(
                "pq candidates, threads and train_size must be >= 1, got "
                f"{self.candidates}, {self.threads}, {self.train_size}"
            )


# ---------------------------------------------------------------------- the interface
class Index(ABC):
    """A searchable index over a map's descriptors, by inner product (cosine for unit vectors).

    Args:
        config: the kind's config.
        dim: descriptor dimension.
        vectors: the map's descriptors, for indexes that read them at search time (pq re-scores
            its candidates on them).
    """

    saved: ClassVar[bool] = False  # written into the map folder; else rebuilt from the descriptors

    def __init__(self, config: IndexConfig, dim: int, vectors: Vectors) -> None:
        self.config = config
        self.dim = int(dim)
        self._vectors = vectors

    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Rows of the map this index covers."""

    @abstractmethod
    def add(self, rows: np.ndarray) -> None:
        """Append the map's next rows ``(n, D)`` (the first call gets every row the map holds)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(Q, k)`` float32, descending, and ids ``(Q, k)`` int64 of each query's best rows;
        ``-1`` with score ``-inf`` where fewer than ``k`` are found."""

    def set_search_params(self, config: IndexConfig) -> None:
        """Use ``config`` (this kind's, with other search-time settings) from now on."""
        self.config = config

    @abstractmethod
    def write(self, path: Path) -> None:
        """Write the index to the file ``path`` (nothing for an index that is not ``saved``)."""

    @classmethod
    @abstractmethod
    def read(cls, path: Path, config: IndexConfig, dim: int, vectors: Vectors, count: int) -> Index:
        """The index of a map of ``count`` rows whose folder holds ``path`` (written by
        :meth:`write`, if the kind is ``saved``); it covers :attr:`ntotal` rows, the map adds the rest."""


class _FaissIndex(Index):
    """A FAISS index over the float descriptors, made by :meth:`_make` at the first add."""

    def __init__(self, config: IndexConfig, dim: int, vectors: Vectors) -> None:
        super().__init__(config, dim, vectors)
        self._faiss: Any = None

    @abstractmethod
    def _make(self, rows: np.ndarray) -> Any:
        """A new (trained) FAISS index for these first rows; they are added after."""

    @property
    def ntotal(self) -> int:
        return 0 if self._faiss is None else int(self._faiss.ntotal)

    def add(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if not len(rows):
            return
        if self._faiss is None:
            self._faiss = self._make(rows)
        self._faiss.add(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self._faiss.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.where(ids < 0, -np.inf, scores).astype(np.float32), ids.astype(np.int64)

    def write(self, path: Path) -> None:
        if not self.saved or self._faiss is None:
            return
        import faiss

        faiss.write_index(self._faiss, str(path))

    @classmethod
    def read(cls, path: Path, config: IndexConfig, dim: int, vectors: Vectors, count: int) -> Index:
        index = cls(config, dim, vectors)
        if not cls.saved or count == 0:
            return index
        import faiss

        try:
            index._faiss = faiss.read_index(str(path))
        except RuntimeError as err:
            raise MapError(f"{path}: unreadable FAISS index: {err}; rebuild the map") from err
        if index._faiss.ntotal != count or index._faiss.d != dim:
            raise MapError(
                f"{path}: index holds {index._faiss.ntotal} x {index._faiss.d}-d, expected {count} x {dim}; "
                "rebuild the map"
            )
        index.set_search_params(config)
        return index


class FlatIndex(_FaissIndex):
    """Exact search (``IndexFlatIP``); rebuilt from the descriptors when a map is opened."""

    def _make(self, rows: np.ndarray) -> Any:
        import faiss

        return faiss.IndexFlatIP(self.dim)


class HnswIndex(_FaissIndex):
    """``IndexHNSWFlat`` by inner product."""

    saved = True
    config: HnswIndexConfig

    def _make(self, rows: np.ndarray) -> Any:
        import faiss

        index = faiss.IndexHNSWFlat(self.dim, self.config.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config.ef_construction
        index.hnsw.efSearch = self.config.ef_search
        return index

    def set_search_params(self, config: IndexConfig) -> None:
        super().set_search_params(config)
        if self._faiss is not None:
            self._faiss.hnsw.efSearch = self.config.ef_search


def ivf_list_count(config: IvfIndexConfig, n_train: int, n_total: int) -> int:
    """IVF lists: ``config.nlist`` or ``4 sqrt(n_total)``, at most ``n_train / 39`` (FAISS wants 39
    training points per list), at least 1."""
    nlist = config.nlist or round(4 * math.sqrt(max(n_total, 1)))
    return max(1, min(nlist, n_train // 39 if n_train >= 39 else 1))


class IvfIndex(_FaissIndex):
    """``IndexIVFFlat`` by inner product, trained on (a sample of) the rows of the first add."""

    saved = True
    config: IvfIndexConfig

    @property
    def nlist(self) -> int:
        """Lists of the trained index (0 before the first add)."""
        return 0 if self._faiss is None else int(self._faiss.nlist)

    def _make(self, rows: np.ndarray) -> Any:
        import faiss

        train = sample_rows(rows, self.config.train_size)
        nlist = ivf_list_count(self.config, len(train), len(rows))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        index.train(np.ascontiguousarray(train))
        logger.info(
            "trained IVF (%d lists) on %d of %d descriptors in %.1f s",
            nlist,
            len(train),
            len(rows),
            time.perf_counter() - t0,
        )
        index.nprobe = min(self.config.nprobe, nlist)
        return index

    def set_search_params(self, config: IndexConfig) -> None:
        super().set_search_params(config)
        if self._faiss is not None:
            self._faiss.nprobe = min(self.config.nprobe, self.nlist)


class PqIndex(Index):
    """pq codes propose ``candidates`` rows per query (:class:`vbl_ros.mapping.pq.PQShards`), exact
    inner products on the float descriptors rank them. Under :data:`PQ_MIN_KEYFRAMES` rows no
    codebook is trained and every row is a candidate (an exact search)."""

    saved = True
    config: PqIndexConfig

    def __init__(self, config: PqIndexConfig, dim: int, vectors: Vectors) -> None:
        super().__init__(config, dim, vectors)
        self.subquantizers = config.subquantizers or default_subquantizers(self.dim)
        check_pq_shape(self.dim, self.subquantizers)
        self.shards: PQShards | None = None  # None: too few rows for codebooks
        self._exact_rows = 0  # rows covered while there is no codebook

    @property
    def ntotal(self) -> int:
        return self._exact_rows if self.shards is None else self.shards.ntotal

    def add(self, rows: np.ndarray) -> None:
        if self.shards is not None:
            self.shards.add(rows)
            return
        total = self._exact_rows + len(rows)
        if total < PQ_MIN_KEYFRAMES:
            self._exact_rows = total
            return
        every = self._vectors()[:total]
        sample = sample_rows(every, self.config.train_size)
        self.shards = PQShards.train(sample, self.subquantizers, self.config.threads)
        self.shards.add(every)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        desc = self._vectors()
        if self.shards is None:
            proposals = np.broadcast_to(np.arange(self._exact_rows), (len(queries), self._exact_rows))
        else:
            proposals = self.shards.propose(queries, max(k, self.config.candidates))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, (query, proposed) in enumerate(zip(queries, proposals, strict=True)):
            proposed = np.unique(proposed[proposed >= 0])  # ascending ids: forward reads of a memmap
            exact = desc[proposed] @ query
            order = np.argsort(-exact, kind="stable")[:k]
            ids[row, : len(order)] = proposed[order]
            scores[row, : len(order)] = exact[order]
        return scores, ids

    def write(self, path: Path) -> None:
        if self.shards is not None:  # None: a map too small for codebooks
            self.shards.write(path)

    @classmethod
    def read(cls, path: Path, config: IndexConfig, dim: int, vectors: Vectors, count: int) -> Index:
        """The rotation and codebooks, without codes: the first add re-computes them."""
        index = cls(config, dim, vectors)  # type: ignore[arg-type]
        if count < PQ_MIN_KEYFRAMES:
            return index
        if not path.is_file():
            raise MapError(f"{path} (the pq codebook) is missing; rebuild the map")
        index.shards = PQShards.read(path, index.config.threads)
        if index.shards.d != dim:
            raise MapError(f"{path}: pq codebook for {index.shards.d}-d, expected {dim}; rebuild the map")
        return index


# ---------------------------------------------------------------------- the registry
INDEXES: dict[str, tuple[type[IndexConfig], type[Index]]] = {
    config.kind: (config, index)
    for config, index in (
        (FlatIndexConfig, FlatIndex),
        (PqIndexConfig, PqIndex),
        (IvfIndexConfig, IvfIndex),
        (HnswIndexConfig, HnswIndex),
    )
}
"""Every index kind: ``{name: (config class, index class)}``."""


def index_config(kind: str | Mapping[str, Any], **settings: Any) -> IndexConfig:
    """The config of the index ``kind`` with ``settings`` on top of its defaults.

    ``kind`` may also be a mapping ``{"kind": name, **settings}`` (a YAML ``index:`` entry).

    Raises:
        ConfigError: an unknown kind or setting, or an invalid value.
    """
    if isinstance(kind, Mapping):
        values = dict(kind)
        if "kind" not in values:
            raise ConfigError(f"index {values}: name its kind, e.g. 'kind: pq' (one of {list(INDEXES)})")
        return index_config(str(values.pop("kind")), **values, **settings)
    if kind not in INDEXES:
        raise ConfigError(f"index kind {kind!r}: choose one of {list(INDEXES)}")
    return from_dict(INDEXES[kind][0], settings, source=f"{kind} index")


def new_index(config: IndexConfig, dim: int, vectors: Vectors) -> Index:
    """An empty index of ``config``'s kind."""
    return INDEXES[config.kind][1](config, dim, vectors)


def sample_rows(rows: np.ndarray, n_sample: int) -> np.ndarray:
    """At most ``n_sample`` rows (0 = all): a seeded random sample, in row order."""
    if not 0 < n_sample < len(rows):
        return rows
    chosen = np.sort(np.random.default_rng(0).choice(len(rows), n_sample, replace=False))
    return rows[chosen]
