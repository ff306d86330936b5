"""Keyframe maps: global descriptors in a FAISS index + keyframe metadata in SQLite.

A map is a folder::

    MAP/manifest.json    format, version, dim, model fingerprint, index type, UTM origin, count
    MAP/descriptors.npy  (N, D) float32 unit-L2 descriptors (memory-mapped on load)
    MAP/keyframes.sqlite id, capture stamp, pose in the map frame (ENU metres), lat/lon
    MAP/index.faiss      the approximate index (``hnsw``/``ivf``; for ``pq`` its rotation and codebooks,
                     the codes being re-computed on load; a flat index is rebuilt)

Row ``i`` of the descriptors, keyframe id ``i`` and FAISS id ``i`` are the same keyframe.
:meth:`KeyframeMap.save` is atomic: the new map is written into a temporary sibling folder, fsynced,
then swapped in; an existing map stays intact until the swap (and is recovered by :meth:`load` if a
crash hits between the two renames). :func:`build_map` makes a map from a bag (docs/CONTRACTS.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbl_ros.errors import ConfigError, MapError, ModelMismatchError, OutputExistsError
from vbl_ros.mapping.pq import PQShards, default_subquantizers
from vbl_ros.robotcar.messages import UtmOrigin

__all__ = ["INDEX_TYPES", "Keyframe", "KeyframeMap", "MapConfig", "UtmOrigin", "build_map"]

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivf", "pq")
FORMAT = "vbl-keyframe-map"
VERSION = 1
_MANIFEST = "manifest.json"
_DESCRIPTORS = "descriptors.npy"
_KEYFRAMES = "keyframes.sqlite"
_INDEX = "index.faiss"
FLAT_ADVICE_KEYFRAMES = 100_000  # build_map suggests the pq index above this size
PQ_MIN_KEYFRAMES = 4096  # a pq map trains its codebooks from this size on; smaller ones search exactly


@dataclass(frozen=True)
class Keyframe:
    """A map keyframe: capture stamp, pose in the map frame (ENU metres, quaternion x y z w), lat/lon."""

    stamp_ns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    latitude: float = math.nan
    longitude: float = math.nan


@dataclass(frozen=True)
class MapConfig:
    """How :func:`build_map` makes a map, and how the map's index searches.

    Attributes:
        spacing_m: distance along the INS track between keyframes (5 m: twice the density of the
            25 m success radius, ~1.5 frames/s at city speeds; 1M keyframes cover 5,000 km).
        index_type: ``"flat"`` (exact inner product, the default), ``"pq"`` (every keyframe scanned
            as a 4-bit product-quantised code, the best ``pq_candidates`` re-ranked exactly: the
            index for large maps, see :mod:`vbl_ros.pq_index`), ``"hnsw"`` or ``"ivf"`` (IVF-Flat).
        batch_size: images per descriptor batch.
        camera_topic: image topic; ``None`` = the contract's compressed centre camera, else raw.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        ivf_nlist: IVF lists; 0 = ``4 * sqrt(N)`` chosen when the index is trained.
        ivf_nprobe: IVF lists visited per query.
        ivf_train_size: at most this many descriptors (an evenly spread, seeded random sample) train
            the IVF k-means; 0 = all of them (FAISS itself caps at 256 per list). Training on all
            1M keyframes with 4000 lists takes minutes on 2 cores; 200k is ~5x faster.
        hnsw_m: HNSW neighbours per node.
        hnsw_ef_construction, hnsw_ef_search: HNSW build and search breadth.
        pq_subquantizers: PQ sub-quantisers (code bytes x 2); 0 = ``dim / 4``. Must divide ``dim``.
        pq_candidates: keyframes proposed by the codes and re-scored exactly per query.
        pq_threads: threads (= shards of the codes) one query is searched on.
        pq_train_size: at most this many descriptors (an evenly spread, seeded random sample) train
            the rotation and codebooks.
    """

    spacing_m: float = 5.0
    index_type: str = "flat"
    batch_size: int = 16
    camera_topic: str | None = None
    device: str = "auto"
    ivf_nlist: int = 0
    ivf_nprobe: int = 64
    ivf_train_size: int = 0
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 256
    pq_subquantizers: int = 0
    pq_candidates: int = 128
    pq_threads: int = 2
    pq_train_size: int = 50_000

    def __post_init__(self) -> None:
        if not self.spacing_m > 0:
            raise ConfigError(f"spacing_m must be > 0, got {self.spacing_m}")
        if self.index_type not in INDEX_TYPES:
            raise ConfigError(f"index_type {self.index_type!r}: choose one of {INDEX_TYPES}")
        if self.batch_size < 1 or self.ivf_nprobe < 1 or self.hnsw_m < 2 or self.hnsw_ef_search < 1:
            raise ConfigError("batch_size, ivf_nprobe, hnsw_ef_search must be >= 1 and hnsw_m >= 2")
        if self.ivf_nlist < 0:
            raise ConfigError("ivf_nlist must be >= 0 (0 = automatic)")
        if self.ivf_train_size < 0:
            raise ConfigError("ivf_train_size must be >= 0 (0 = all descriptors)")
        if self.pq_subquantizers < 0:
            raise ConfigError("pq_subquantizers must be >= 0 (0 = dim / 4)")
        if self.pq_candidates < 1 or self.pq_threads < 1 or self.pq_train_size < 1:
            raise ConfigError("pq_candidates, pq_threads and pq_train_size must be >= 1")


def _index_params(config: MapConfig) -> dict[str, int]:
    return {
        "ivf_nlist": config.ivf_nlist,
        "ivf_nprobe": config.ivf_nprobe,
        "ivf_train_size": config.ivf_train_size,
        "hnsw_m": config.hnsw_m,
        "hnsw_ef_construction": config.hnsw_ef_construction,
        "hnsw_ef_search": config.hnsw_ef_search,
        "pq_subquantizers": config.pq_subquantizers,
        "pq_candidates": config.pq_candidates,
        "pq_threads": config.pq_threads,
        "pq_train_size": config.pq_train_size,
    }


class KeyframeMap:
    """Descriptors of keyframes, searchable by inner product (= cosine similarity for unit vectors).

    Create with :meth:`create` or :meth:`load`; grow with :meth:`add`; persist with :meth:`save`.
    """

    def __init__(
        self,
        dim: int,
        model_fingerprint: str,
        utm_origin: UtmOrigin | None,
        index_type: str = "flat",
        *,
        index_params: dict[str, int] | None = None,
    ) -> None:
        if dim < 1:
            raise MapError(f"descriptor dimension must be >= 1, got {dim}")
        if index_type not in INDEX_TYPES:
            raise MapError(f"index type {index_type!r}: choose one of {INDEX_TYPES}")
        self.dim = int(dim)
        self.model_fingerprint = model_fingerprint
        self.utm_origin = utm_origin
        self.index_type = index_type
        self.index_params = {**_index_params(MapConfig()), **(index_params or {})}
        self.path: Path | None = None
        self._blocks: list[np.ndarray] = []  # descriptor blocks, the first may be a memmap
        self._stamps = np.zeros(0, np.int64)
        self._positions = np.zeros((0, 3), np.float64)
        self._orientations = np.zeros((0, 4), np.float64)
        self._latlon = np.zeros((0, 2), np.float64)
        self._index = None  # faiss index, built lazily
        self._indexed = 0  # rows of the descriptors in self._index

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        dim: int,
        model_fingerprint: str,
        utm_origin: UtmOrigin | None = None,
        index_type: str = "flat",
        *,
        config: MapConfig | None = None,
    ) -> KeyframeMap:
        """An empty map for ``dim``-d descriptors of the model with ``model_fingerprint``."""
        params = _index_params(config) if config is not None else None
        return cls(dim, model_fingerprint, utm_origin, index_type, index_params=params)

    def __len__(self) -> int:
        return len(self._stamps)

    def __repr__(self) -> str:
        return f"KeyframeMap({len(self)} keyframes, {self.dim}-d, {self.index_type}, model {self.model_fingerprint[:12]})"

    # ------------------------------------------------------------------ data
    def add(self, descriptors: np.ndarray, keyframes: Sequence[Keyframe]) -> None:
        """Append ``(M, D)`` descriptors (unit L2) and their ``M`` keyframes."""
        desc = np.ascontiguousarray(np.asarray(descriptors, dtype=np.float32).reshape(-1, self.dim))
        if len(desc) != len(keyframes):
            raise MapError(f"{len(desc)} descriptors but {len(keyframes)} keyframes")
        if not len(desc):
            return
        if not np.all(np.isfinite(desc)):
            raise MapError("descriptors contain NaN or infinity")
        self._blocks.append(desc.copy())
        self._stamps = np.concatenate([self._stamps, [int(k.stamp_ns) for k in keyframes]]).astype(np.int64)
        self._positions = np.concatenate([self._positions, np.array([k.position for k in keyframes], float)])
        self._orientations = np.concatenate(
            [self._orientations, np.array([k.orientation for k in keyframes], float)]
        )
        self._latlon = np.concatenate(
            [self._latlon, np.array([(k.latitude, k.longitude) for k in keyframes], float)]
        )
        if self._index is not None and (self.index_type != "ivf" or self._index.is_trained):
            self._index.add(desc)
            self._indexed += len(desc)

    def descriptors(self) -> np.ndarray:
        """All descriptors ``(N, D)`` float32 (one array; concatenates pending blocks)."""
        if not self._blocks:
            return np.zeros((0, self.dim), np.float32)
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        return self._blocks[0]

    def keyframe(self, i: int) -> Keyframe:
        """Keyframe ``i`` (``0 <= i < len(self)``)."""
        if not 0 <= i < len(self):
            raise IndexError(f"keyframe {i} out of range (map has {len(self)})")
        return Keyframe(
            stamp_ns=int(self._stamps[i]),
            position=tuple(float(v) for v in self._positions[i]),  # type: ignore[arg-type]
            orientation=tuple(float(v) for v in self._orientations[i]),  # type: ignore[arg-type]
            latitude=float(self._latlon[i, 0]),
            longitude=float(self._latlon[i, 1]),
        )

    def positions(self) -> np.ndarray:
        """Keyframe positions ``(N, 3)`` in the map frame (ENU metres)."""
        return self._positions

    def orientations(self) -> np.ndarray:
        """Keyframe orientations ``(N, 4)`` quaternions x y z w."""
        return self._orientations

    def stamps_ns(self) -> np.ndarray:
        """Keyframe capture stamps ``(N,)`` int64 nanoseconds."""
        return self._stamps

    def spacing_m(self) -> float:
        """Median distance between consecutive keyframes (nan with fewer than 2)."""
        if len(self) < 2:
            return math.nan
        steps = np.linalg.norm(np.diff(self._positions, axis=0), axis=1)
        steps = steps[steps > 1e-6]
        return float(np.median(steps)) if len(steps) else math.nan

    # ------------------------------------------------------------------ search
    def _new_index(self, n_train: int, n_total: int | None = None):
        """A new index; IVF: ``4 sqrt(n_total)`` lists by default, at most ``n_train / 39``."""
        import faiss

        p = self.index_params
        if self.index_type == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, int(p["hnsw_m"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(p["hnsw_ef_construction"])
            index.hnsw.efSearch = int(p["hnsw_ef_search"])
            return index
        n_total = n_train if n_total is None else n_total
        nlist = int(p["ivf_nlist"]) or round(4 * math.sqrt(max(n_total, 1)))
        nlist = max(1, min(nlist, n_train // 39 if n_train >= 39 else 1))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(int(p["ivf_nprobe"]), nlist)
        return index

    def prepare(self) -> None:
        """Build the search index now (trains IVF/pq codebooks, encodes pq codes), so that the
        first :meth:`search` is not the slow one: a node calls this at start-up."""
        t0 = time.perf_counter()
        self._ensure_index()
        logger.info("%r ready to search in %.2f s", self, time.perf_counter() - t0)

    def _ensure_index(self) -> None:
        if self._index is not None and self._indexed == len(self):
            return
        desc = self.descriptors()
        if self._index is None and self.index_type == "pq":
            if len(desc) < PQ_MIN_KEYFRAMES:
                return  # too few to train codebooks: _search_reranked scores every keyframe exactly
            sample = _sample_rows(desc, int(self.index_params["pq_train_size"]))
            m = int(self.index_params["pq_subquantizers"]) or default_subquantizers(self.dim)
            self._index = PQShards.train(sample, m, int(self.index_params["pq_threads"]))
        if self._index is None:
            train = desc
            if self.index_type == "ivf":
                train = _sample_rows(desc, int(self.index_params.get("ivf_train_size", 0)))
            index = self._new_index(len(train), len(desc))
            if self.index_type == "ivf":
                if len(desc) == 0:
                    return
                t0 = time.perf_counter()
                index.train(np.ascontiguousarray(train))
                logger.info(
                    "trained IVF (%d lists) on %d of %d descriptors in %.1f s",
                    index.nlist,
                    len(train),
                    len(desc),
                    time.perf_counter() - t0,
                )
            self._index, self._indexed = index, 0
        if self._indexed < len(desc):
            self._index.add(np.ascontiguousarray(desc[self._indexed :]))
            self._indexed = len(desc)

    def set_search_params(
        self, *, nprobe: int | None = None, ef_search: int | None = None, candidates: int | None = None
    ) -> None:
        """Change IVF ``nprobe`` / HNSW ``efSearch`` / PQ ``candidates`` (speed vs agreement with
        exact search)."""
        if candidates is not None:
            if candidates < 1:
                raise ValueError(f"candidates must be >= 1, got {candidates}")
            self.index_params["pq_candidates"] = int(candidates)
        if nprobe is not None:
            self.index_params["ivf_nprobe"] = int(nprobe)
            if self._index is not None and self.index_type == "ivf":
                self._index.nprobe = min(int(nprobe), self._index.nlist)
        if ef_search is not None:
            self.index_params["hnsw_ef_search"] = int(ef_search)
            if self._index is not None and self.index_type == "hnsw":
                self._index.hnsw.efSearch = int(ef_search)

    def search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar keyframes of each query.

        Args:
            descriptors: ``(Q, D)`` (or ``(D,)``) unit-L2 float32 queries.
            k: neighbours per query.

        Returns:
            scores ``(Q, k)`` float32 inner products, descending; ids ``(Q, k)`` int64 keyframe ids,
            ``-1`` (with score ``-inf``) where the map has fewer than ``k`` keyframes.
        """
        q = np.ascontiguousarray(np.asarray(descriptors, dtype=np.float32).reshape(-1, self.dim))
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if len(self) == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        self._ensure_index()
        if self.index_type == "pq":
            return self._search_reranked(q, k)
        scores, ids = self._index.search(q, k)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)

    def _search_reranked(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``pq``: the codes propose ``pq_candidates`` keyframes, exact inner products rank them."""
        desc = self.descriptors()
        if self._index is None:  # fewer than PQ_MIN_KEYFRAMES: every keyframe is a candidate
            cand = np.broadcast_to(np.arange(len(self)), (len(q), len(self)))
        else:
            cand = self._index.propose(q, max(k, int(self.index_params["pq_candidates"])))
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for row, (query, proposed) in enumerate(zip(q, cand, strict=True)):
            proposed = np.unique(proposed[proposed >= 0])  # ascending ids: forward reads of the memmap
            exact = desc[proposed] @ query
            order = np.argsort(-exact, kind="stable")[:k]
            ids[row, : len(order)] = proposed[order]
            scores[row, : len(order)] = exact[order]
        return scores, ids

    # ------------------------------------------------------------------ persistence
    def _manifest(self) -> dict:
        origin = self.utm_origin
        return {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "count": len(self),
            "model_fingerprint": self.model_fingerprint,
            "index_type": self.index_type,
            "index_params": self.index_params,
            "utm_origin": None
            if origin is None
            else {
                "easting": origin.easting,
                "northing": origin.northing,
                "up": origin.up,
                "zone": origin.zone,
            },
            "saved_unix": time.time(),
        }

    def _write_files(self, folder: Path) -> None:
        """Write every file of the map into ``folder`` (fsynced)."""
        desc = self.descriptors()
        with open(folder / _DESCRIPTORS, "wb") as f:
            np.save(f, np.ascontiguousarray(desc, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        db = sqlite3.connect(folder / _KEYFRAMES)
        try:
            db.execute(
                "CREATE TABLE keyframes (id INTEGER PRIMARY KEY, stamp_ns INTEGER NOT NULL, "
                "x REAL, y REAL, z REAL, qx REAL, qy REAL, qz REAL, qw REAL, latitude REAL, longitude REAL)"
            )
            rows = (
                (
                    i,
                    int(s),
                    *map(float, p),
                    *map(float, q),
                    *(None if math.isnan(v) else float(v) for v in ll),
                )
                for i, (s, p, q, ll) in enumerate(
                    zip(self._stamps, self._positions, self._orientations, self._latlon, strict=True)
                )
            )
            db.executemany("INSERT INTO keyframes VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.commit()
        finally:
            db.close()
        _fsync_file(folder / _KEYFRAMES)
        if self.index_type != "flat" and len(self):
            import faiss

            self._ensure_index()
            if self.index_type != "pq":
                faiss.write_index(self._index, str(folder / _INDEX))
            elif self._index is not None:  # None: a map too small for codebooks
                self._index.write(folder / _INDEX)
            if (folder / _INDEX).exists():
                _fsync_file(folder / _INDEX)
        with open(folder / _MANIFEST, "w") as f:
            json.dump(self._manifest(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        _fsync_file(folder)

    def save(self, path: Path | str) -> Path:
        """Write the map to the folder ``path`` atomically; return ``path``.

        The map is written into a temporary sibling folder and fsynced; then an existing map at
        ``path`` is renamed aside, the new one renamed in, and the old one deleted. A crash before
        the swap leaves the old map untouched; a crash between the two renames is repaired by
        :meth:`load`.
        """
        path = Path(path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            self._write_files(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old: Path | None = None
        if path.exists():
            if not (path / _MANIFEST).is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                raise OutputExistsError(f"{path}: exists and is not a vbl map; not overwriting it")
            old = path.parent / f".{path.name}.old-{os.getpid()}-{time.time_ns()}"
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync_file(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.path = path
        logger.info("saved %r to %s", self, path)
        return path

    @classmethod
    def load(
        cls, path: Path | str, expected_fingerprint: str | None = None, *, mmap: bool = True
    ) -> KeyframeMap:
        """Open a map folder written by :meth:`save`.

        Args:
            path: the map folder.
            expected_fingerprint: the fingerprint of the model in use; a map built with another model
                is refused.
            mmap: memory-map the descriptors instead of reading them.

        Raises:
            MapError: missing or corrupt map.
            ModelMismatchError: the map was built with another model.
        """
        path = Path(path).absolute()
        _recover_interrupted_save(path)
        manifest_path = path / _MANIFEST
        if not manifest_path.is_file():
            raise MapError(f"{path}: not a keyframe map (no {_MANIFEST}); build one with 'vbl build-map'")
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("format") != FORMAT:
                raise MapError(f"{path}: {_MANIFEST} is not a vbl keyframe map manifest")
            if manifest.get("version") != VERSION:
                raise MapError(f"{path}: map version {manifest.get('version')}, this vbl reads {VERSION}")
            dim, count = int(manifest["dim"]), int(manifest["count"])
            fingerprint = str(manifest["model_fingerprint"])
            origin = manifest.get("utm_origin")
            utm = UtmOrigin(**origin) if origin else None
            index_type = str(manifest["index_type"])
            params = dict(manifest.get("index_params") or {})
        except (ValueError, KeyError, TypeError) as err:
            raise MapError(f"{manifest_path}: corrupt manifest: {err}") from err
        if expected_fingerprint is not None and expected_fingerprint != fingerprint:
            raise ModelMismatchError(
                f"{path}: the map was built with model fingerprint {fingerprint[:16]}..., but the model "
                f"in use has {expected_fingerprint[:16]}...; descriptors of different models cannot be "
                "compared. Use the model the map was built with, or rebuild the map with this model "
                "('vbl build-map BAG --model MODEL --out MAP')."
            )
        kmap = cls(dim, fingerprint, utm, index_type, index_params=params)
        try:
            desc = np.load(path / _DESCRIPTORS, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise MapError(f"{path / _DESCRIPTORS}: unreadable descriptors: {err}") from err
        if desc.dtype != np.float32 or desc.shape != (count, dim):
            raise MapError(
                f"{path}: descriptors {desc.dtype}{desc.shape}, manifest says float32({count}, {dim})"
            )
        try:
            db = sqlite3.connect(f"file:{path / _KEYFRAMES}?mode=ro", uri=True)
            try:
                rows = db.execute(
                    "SELECT id, stamp_ns, x, y, z, qx, qy, qz, qw, latitude, longitude FROM keyframes ORDER BY id"
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error as err:
            raise MapError(f"{path / _KEYFRAMES}: unreadable keyframe table: {err}") from err
        if len(rows) != count or (rows and (rows[0][0] != 0 or rows[-1][0] != count - 1)):
            raise MapError(f"{path}: {len(rows)} keyframe rows for {count} descriptors")
        table = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64).reshape(
            -1, 11
        )
        kmap._blocks = [desc] if count else []
        kmap._stamps = np.array([r[1] for r in rows], dtype=np.int64)
        kmap._positions = table[:, 2:5].copy()
        kmap._orientations = table[:, 5:9].copy()
        kmap._latlon = table[:, 9:11].copy()
        if index_type == "pq" and count >= PQ_MIN_KEYFRAMES:
            if not (path / _INDEX).is_file():
                raise MapError(f"{path}: {_INDEX} (the pq codebook) is missing; rebuild the map")
            kmap._index = PQShards.read(path / _INDEX, int(kmap.index_params["pq_threads"]))
            if kmap._index.d != dim:
                raise MapError(f"{path / _INDEX}: pq codebook for {kmap._index.d}-d, expected {dim}")
            # no codes yet (_indexed 0): prepare() or the first search computes them
        elif index_type in ("hnsw", "ivf") and count:
            import faiss

            try:
                kmap._index = faiss.read_index(str(path / _INDEX))
            except RuntimeError as err:
                raise MapError(f"{path / _INDEX}: unreadable FAISS index: {err}") from err
            if kmap._index.ntotal != count or kmap._index.d != dim:
                raise MapError(
                    f"{path / _INDEX}: index holds {kmap._index.ntotal} x {kmap._index.d}-d, expected {count} x {dim}"
                )
            kmap._indexed = count
            kmap.set_search_params(nprobe=params.get("ivf_nprobe"), ef_search=params.get("hnsw_ef_search"))
        kmap.path = path
        logger.info("loaded %r from %s", kmap, path)
        return kmap


def _sample_rows(desc: np.ndarray, n_sample: int) -> np.ndarray:
    """At most ``n_sample`` rows of ``desc`` (0 = all): a seeded random sample, in row order."""
    if not 0 < n_sample < len(desc):
        return desc
    rows = np.sort(np.random.default_rng(0).choice(len(desc), n_sample, replace=False))
    return desc[rows]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _recover_interrupted_save(path: Path) -> None:
    """If a save crashed between renaming the old map aside and the new one in, put the old one back."""
    if path.exists() or not path.parent.is_dir():
        return
    olds = sorted(path.parent.glob(f".{path.name}.old-*"))
    olds = [o for o in olds if (o / _MANIFEST).is_file()]
    if olds:
        logger.warning("%s: a save was interrupted; restoring the previous map from %s", path, olds[-1])
        os.rename(olds[-1], path)


def _latlon_function(bag: Path, origin: UtmOrigin | None):
    """``f(positions (N, 3), stamps (N,)) -> (N, 2)`` latitude, longitude: from the UTM origin via
    :mod:`vbl_ros.geo`, else interpolated from ``/gps/fix``, else nan."""
    if origin is not None:
        try:
            from vbl_ros.geo import utm_to_latlon

            def from_utm(positions: np.ndarray, _stamps: np.ndarray) -> np.ndarray:
                lat, lon = utm_to_latlon(
                    positions[:, 0] + origin.easting, positions[:, 1] + origin.northing, origin.zone
                )
                return np.stack([np.asarray(lat, float), np.asarray(lon, float)], axis=1)

            return from_utm
        except ImportError:
            logger.warning("vbl_ros.geo unavailable; latitude/longitude from /gps/fix")
    from vbl_ros.bags import read_gps

    gps = read_gps(bag)
    if gps is None:
        logger.warning("%s: neither a UTM origin nor GPS: keyframes get no latitude/longitude", bag)
        return lambda _p, stamps: np.full((len(stamps), 2), np.nan)
    return lambda _p, stamps: np.stack(gps.interpolate(stamps), axis=1)


def build_map(
    bag: Path | str,
    out: Path | str,
    *,
    model: Path | str | None = None,
    config: MapConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Build a keyframe map from a bag (docs/CONTRACTS.md) and save it to the folder ``out``.

    A frame becomes a keyframe each ``config.spacing_m`` metres travelled along the INS track
    (``/ins/odometry``, interpolated at the image stamp); frames outside the track are skipped.
    Only keyframes are decoded; descriptors are computed in batches.

    Args:
        bag: the bag.
        out: the map folder to create.
        model: a model file; ``None`` = the embedded default model.
        config: spacing, index type, batch size, camera topic, device.
        overwrite: replace an existing map at ``out``.

    Returns:
        ``out``.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        MissingDataError: the bag lacks the camera or odometry topic.
        MapError: no frame lies on the INS track.
    """
    from tqdm import tqdm

    from vbl_ros.bags import read_camera_frames, read_odometry, read_utm_origin
    from vbl_ros.model import DescriptorExtractor, default_model, load_model

    config = config or MapConfig()
    bag, out = Path(bag), Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; choose another --out or remove it")
    logger.info("build_map %s -> %s with %s", bag, out, config)
    trajectory = read_odometry(bag)
    origin = read_utm_origin(bag)
    if origin is None:
        logger.warning("%s: no UTM origin (/map/utm_origin); the map frame is not geo-referenced", bag)
    net = load_model(model) if model is not None else default_model()
    extractor = DescriptorExtractor(net, config.device, batch_size=config.batch_size)
    kmap = KeyframeMap.create(extractor.dim, extractor.fingerprint, origin, config.index_type, config=config)

    next_distance = [0.0]

    def keep(stamp: int) -> bool:
        if not bool(trajectory.contains(stamp)):
            return False
        travelled = float(trajectory.arc_length(stamp)[0])
        if travelled + 1e-9 < next_distance[0]:
            return False
        next_distance[0] = (np.floor(travelled / config.spacing_m) + 1) * config.spacing_m
        return True

    total_m = float(trajectory.arc_length(trajectory.stamps_ns[-1])[0])
    bar = tqdm(total=int(total_m // config.spacing_m) + 1, unit="kf", desc=f"map {out.name}")
    pending_images: list[np.ndarray] = []
    pending_stamps: list[int] = []

    def flush() -> None:
        if not pending_stamps:
            return
        descriptors = extractor(pending_images)
        stamps = np.asarray(pending_stamps, dtype=np.int64)
        positions, orientations = trajectory.interpolate(stamps)
        latlon = to_latlon(positions, stamps)
        kmap.add(
            descriptors,
            [
                Keyframe(int(s), tuple(map(float, p)), tuple(map(float, q)), float(ll[0]), float(ll[1]))  # type: ignore[arg-type]
                for s, p, q, ll in zip(stamps, positions, orientations, latlon, strict=True)
            ],
        )
        bar.update(len(pending_stamps))
        pending_images.clear()
        pending_stamps.clear()

    to_latlon = _latlon_function(bag, origin)
    try:
        for frame in read_camera_frames(bag, config.camera_topic, keep=keep):
            pending_images.append(frame.image_rgb)
            pending_stamps.append(frame.stamp_ns)
            if len(pending_stamps) >= config.batch_size:
                flush()
        flush()
    finally:
        bar.close()
    if len(kmap) == 0:
        raise MapError(f"{bag}: no camera frame lies within the INS track; cannot build a map")
    if config.index_type == "flat" and len(kmap) > FLAT_ADVICE_KEYFRAMES:
        logger.warning(
            "%d keyframes in an exact (flat) map: a query reads them all (~7 ms per 100k keyframes on "
            "a CPU core); rebuild with '--index pq' for ~2 ms at 1M (benchmarks/README.md)",
            len(kmap),
        )
    kmap.save(out)
    logger.info("built %r from %s", kmap, bag)
    return out
