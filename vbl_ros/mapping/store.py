"""The keyframe store: descriptors + keyframe table (SQLite) + manifest, searched through an index.

A map is a folder::

    MAP/manifest.json    format, version, dim, model fingerprint, index kind and settings, UTM origin, count
    MAP/descriptors.npy  (N, D) float32 unit-L2 descriptors (memory-mapped on load)
    MAP/keyframes.sqlite id, capture stamp, pose in the map frame (ENU metres), lat/lon
    MAP/index.faiss      the index, for kinds that are saved (``hnsw``/``ivf``; for ``pq`` its rotation
                         and codebooks, the codes being re-computed on load); ``flat`` is rebuilt
    MAP/model.pt         only in a map that carries its own model (``vbl build-map --adapt``): the
                         manifest's ``model_file`` names it (:func:`map_model_file`)

Row ``i`` of the descriptors, keyframe id ``i`` and index id ``i`` are the same keyframe. The store
knows indexes only through :class:`vbl_ros.mapping.indexes.Index`. :meth:`KeyframeMap.save` is
atomic: the new map is written into a temporary sibling folder, fsynced, then swapped in; an
existing map stays intact until the swap, and a crash between the two renames is undone by
:func:`recover_map`, which every reader calls (load, save, build_map, the node, ``vbl repair-map``).

The manifest is version 1: ``index_type`` names the kind and ``index_params`` holds its settings
as ``<kind>_<setting>`` (maps written before the typed index configs list every kind's settings
that way; only the map's own kind is read).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vbl_ros.errors import ConfigError, MapError, ModelMismatchError, OutputExistsError
from vbl_ros.files import fsync_path, output_error, recover_dir, replace_dir, temp_dir
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.mapping.indexes import INDEXES, IndexConfig, index_config, new_index

__all__ = ["Keyframe", "KeyframeMap", "check_model_fingerprint", "map_model_file", "recover_map"]

logger = logging.getLogger(__name__)

FORMAT = "vbl-keyframe-map"
VERSION = 1
_MANIFEST = "manifest.json"
_DESCRIPTORS = "descriptors.npy"
_KEYFRAMES = "keyframes.sqlite"
_INDEX = "index.faiss"


@dataclass(frozen=True)
class Keyframe:
    """A map keyframe: capture stamp, pose in the map frame (ENU metres, quaternion x y z w), lat/lon."""

    stamp_ns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    latitude: float = math.nan
    longitude: float = math.nan


class KeyframeMap:
    """Descriptors of keyframes, searchable by inner product (= cosine similarity for unit vectors).

    Create with :meth:`create` or :meth:`load`; grow with :meth:`add`; persist with :meth:`save`.

    Args:
        dim: descriptor dimension.
        model_fingerprint: fingerprint of the model that computes the descriptors.
        utm_origin: UTM origin of the map frame, if known.
        index: the index's config, or a kind's name (``"flat"``, ``"pq"``, ...) for its defaults.

    Attributes:
        model_file: the name of the model file stored in the map's folder (a map that carries its own
            model, e.g. adapted to it), or ``None``; :meth:`save` is given the file to copy in.
    """

    def __init__(
        self,
        dim: int,
        model_fingerprint: str,
        utm_origin: UtmOrigin | None = None,
        index: IndexConfig | str = "flat",
    ) -> None:
        if dim < 1:
            raise MapError(f"descriptor dimension must be >= 1, got {dim}")
        self.dim = int(dim)
        self.model_fingerprint = model_fingerprint
        self.utm_origin = utm_origin
        self.model_file: str | None = None
        self._model_source: Path | None = None  # the model file of a loaded map (saved with it again)
        self._blocks: list[np.ndarray] = []  # descriptor blocks, the first may be a memmap
        self._stamps = np.zeros(0, np.int64)
        self._positions = np.zeros((0, 3), np.float64)
        self._orientations = np.zeros((0, 4), np.float64)
        self._latlon = np.zeros((0, 2), np.float64)
        # keyframe rows added since the arrays above were last joined (joined once, when read:
        # adding keyframes a few at a time to a large map must not copy the map each time)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self.index_config = index_config(index) if isinstance(index, str) else index
        self._index = new_index(self.index_config, self.dim, self.descriptors)

    @classmethod
    def create(
        cls,
        dim: int,
        model_fingerprint: str,
        utm_origin: UtmOrigin | None = None,
        index: IndexConfig | str = "flat",
    ) -> KeyframeMap:
        """An empty map for ``dim``-d descriptors of the model with ``model_fingerprint``."""
        return cls(dim, model_fingerprint, utm_origin, index)

    def __len__(self) -> int:
        return len(self._stamps) + self._pending_rows

    def _join_pending(self) -> None:
        """Join the keyframe rows added since the last read into the arrays (one copy)."""
        if not self._pending:
            return
        stamps, positions, orientations, latlon = zip(*self._pending, strict=True)
        self._stamps = np.concatenate([self._stamps, *stamps])
        self._positions = np.concatenate([self._positions, *positions])
        self._orientations = np.concatenate([self._orientations, *orientations])
        self._latlon = np.concatenate([self._latlon, *latlon])
        self._pending, self._pending_rows = [], 0

    def __repr__(self) -> str:
        return (
            f"KeyframeMap({len(self)} keyframes, {self.dim}-d, {self.index_config.kind}, "
            f"model {self.model_fingerprint[:12]})"
        )

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
        indexed_all = self._index.ntotal == len(self)
        self._blocks.append(desc.copy())
        self._pending.append(
            (
                np.array([int(k.stamp_ns) for k in keyframes], np.int64),
                np.array([k.position for k in keyframes], np.float64).reshape(-1, 3),
                np.array([k.orientation for k in keyframes], np.float64).reshape(-1, 4),
                np.array([(k.latitude, k.longitude) for k in keyframes], np.float64).reshape(-1, 2),
            )
        )
        self._pending_rows += len(keyframes)
        if indexed_all and self._index.ntotal:  # a built index grows now; an unbuilt one is built lazily
            self._index.add(self._blocks[-1])

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
        self._join_pending()
        return Keyframe(
            stamp_ns=int(self._stamps[i]),
            position=tuple(float(v) for v in self._positions[i]),  # type: ignore[arg-type]
            orientation=tuple(float(v) for v in self._orientations[i]),  # type: ignore[arg-type]
            latitude=float(self._latlon[i, 0]),
            longitude=float(self._latlon[i, 1]),
        )

    def positions(self) -> np.ndarray:
        """Keyframe positions ``(N, 3)`` in the map frame (ENU metres)."""
        self._join_pending()
        return self._positions

    def orientations(self) -> np.ndarray:
        """Keyframe orientations ``(N, 4)`` quaternions x y z w."""
        self._join_pending()
        return self._orientations

    def stamps_ns(self) -> np.ndarray:
        """Keyframe capture stamps ``(N,)`` int64 nanoseconds."""
        self._join_pending()
        return self._stamps

    def spacing_m(self) -> float:
        """Median distance between consecutive keyframes (nan with fewer than 2)."""
        if len(self) < 2:
            return math.nan
        steps = np.linalg.norm(np.diff(self.positions(), axis=0), axis=1)
        steps = steps[steps > 1e-6]
        return float(np.median(steps)) if len(steps) else math.nan

    # ------------------------------------------------------------------ search
    def _sync_index(self) -> None:
        """Give the index the rows it lacks (the first time, all of them: it is built on them)."""
        indexed = self._index.ntotal
        if indexed < len(self):
            self._index.add(self.descriptors()[indexed:])

    def prepare(self) -> None:
        """Build the search index now (trains IVF/pq codebooks, encodes pq codes), so that the
        first :meth:`search` is not the slow one: a node calls this at start-up."""
        t0 = time.perf_counter()
        self._sync_index()
        logger.info("%r ready to search in %.2f s", self, time.perf_counter() - t0)

    def set_search_params(self, **settings: int) -> None:
        """Change search-time settings of the index (speed vs agreement with exact search):
        ``nprobe`` (ivf), ``ef_search`` (hnsw), ``candidates`` (pq); saved with the map.

        Raises:
            ConfigError: a setting the map's index kind does not have, or an invalid value.
        """
        self.index_config = self.index_config.with_search_params(**settings)
        self._index.set_search_params(self.index_config)

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
        self._sync_index()
        return self._index.search(q, k)

    # ------------------------------------------------------------------ persistence
    def _manifest(self) -> dict[str, Any]:
        origin = self.utm_origin
        kind = self.index_config.kind
        return {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "count": len(self),
            "model_fingerprint": self.model_fingerprint,
            "index_type": kind,
            "index_params": {f"{kind}_{name}": value for name, value in self.index_config.to_dict().items()},
            "utm_origin": None
            if origin is None
            else {
                "easting": origin.easting,
                "northing": origin.northing,
                "up": origin.up,
                "zone": origin.zone,
            },
            "saved_unix": time.time(),
        } | ({"model_file": self.model_file} if self.model_file else {})

    def _write_files(self, folder: Path, model: Path | None) -> None:
        """Write every file of the map into ``folder`` (fsynced), with a copy of ``model``."""
        model = model or self._model_source
        if self.model_file:
            if model is None:
                raise MapError(f"the map carries its model {self.model_file!r}: give save() the model file")
            shutil.copyfile(model, folder / self.model_file)
            fsync_path(folder / self.model_file)
        desc = self.descriptors()
        with open(folder / _DESCRIPTORS, "wb") as f:
            np.save(f, np.ascontiguousarray(desc, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        self._join_pending()
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
        fsync_path(folder / _KEYFRAMES)
        if self._index.saved and len(self):
            self._sync_index()
            self._index.write(folder / _INDEX)
            if (folder / _INDEX).exists():
                fsync_path(folder / _INDEX)
        with open(folder / _MANIFEST, "w") as f:
            json.dump(self._manifest(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        fsync_path(folder)

    def save(self, path: Path | str, *, model: Path | str | None = None) -> Path:
        """Write the map to the folder ``path`` atomically; return ``path``.

        ``model``: the model file copied into the map as :attr:`model_file` (needed when it is set;
        it may be the copy inside the map being replaced); ``None``: a loaded map's own copy.

        The map is written into a temporary sibling folder and fsynced; then an existing map at
        ``path`` is renamed aside, the new one renamed in, and the old one deleted. A crash before
        the swap leaves the old map untouched; a crash between the two renames is repaired by
        :func:`recover_map`, which :meth:`load`, :meth:`save`, ``build_map``, the node and
        ``vbl repair-map`` call.

        Raises:
            OutputExistsError: ``path`` exists and is not a map.
            OutputError: the disk is full or the folder not writable (nothing half-written is left).
        """
        path = Path(path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_map(path)
        if path.exists() and not (path / _MANIFEST).is_file():
            raise OutputExistsError(f"{path}: exists and is not a vbl map; not overwriting it")
        tmp = temp_dir(path)
        try:
            self._write_files(tmp, Path(model) if model is not None else None)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            named = output_error(err, path) if isinstance(err, OSError) else None
            if named is not None:
                raise named from err
            raise
        replace_dir(tmp, path)
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
        recover_map(path)
        manifest_path = path / _MANIFEST
        if not manifest_path.is_file():
            if path.exists():
                raise MapError(f"{path}: not a keyframe map (no {_MANIFEST}); build one with 'vbl build-map'")
            raise MapError(f"{path}: map not found; build one with 'vbl build-map BAG --out {path}'")
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
            index = _index_config_of(str(manifest["index_type"]), dict(manifest.get("index_params") or {}))
            model_file = manifest.get("model_file")
        except (ValueError, KeyError, TypeError, ConfigError) as err:
            raise MapError(f"{manifest_path}: corrupt manifest: {err}") from err
        if expected_fingerprint is not None:
            check_model_fingerprint(path, fingerprint, expected_fingerprint)
        if model_file is not None and not (path / str(model_file)).is_file():
            raise MapError(f"{path}: the manifest names the map's model {model_file!r}, which is missing")
        kmap = cls(dim, fingerprint, utm, index)
        kmap.model_file = None if model_file is None else str(model_file)
        kmap._model_source = None if model_file is None else path / str(model_file)
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
        index_cls = INDEXES[index.kind][1]
        kmap._index = index_cls.read(path / _INDEX, index, dim, kmap.descriptors, count)
        logger.info("loaded %r from %s", kmap, path)
        return kmap


def check_model_fingerprint(path: Path | str, map_fingerprint: str, model_fingerprint: str) -> None:
    """Refuse a map at ``path`` built with another model than the one in use.

    Raises:
        ModelMismatchError: the fingerprints differ.
    """
    if map_fingerprint != model_fingerprint:
        raise ModelMismatchError(
            f"{path}: the map was built with model fingerprint {map_fingerprint[:16]}..., but the model "
            f"in use has {model_fingerprint[:16]}...; descriptors of different models cannot be "
            "compared. Use the model the map was built with, or rebuild the map with this model "
            "('vbl build-map BAG --model MODEL --out MAP')."
        )


def map_model_file(path: Path | str) -> Path | None:
    """The model file a map carries in its folder (``vbl build-map --adapt``), or ``None``.

    Raises:
        MapError: no map at ``path``, or its manifest is unreadable.
    """
    path = Path(path).absolute()
    recover_map(path)
    try:
        name = json.loads((path / _MANIFEST).read_text()).get("model_file")
    except FileNotFoundError as err:
        raise MapError(
            f"{path}: not a keyframe map (no {_MANIFEST}); build one with 'vbl build-map'"
        ) from err
    except (OSError, ValueError, AttributeError) as err:
        raise MapError(f"{path / _MANIFEST}: corrupt manifest: {err}") from err
    return None if name is None else path / str(name)


def _index_config_of(kind: str, params: dict[str, Any]) -> IndexConfig:
    """The index config of a manifest: its kind's ``<kind>_<setting>`` entries of ``index_params``."""
    if kind not in INDEXES:
        raise MapError(
            f"index type {kind!r} is unknown to this vbl (it knows {list(INDEXES)}); rebuild the map"
        )
    prefix = f"{kind}_"
    return index_config(
        kind, **{k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    )


def recover_map(path: Path | str) -> list[str]:
    """Repair what an interrupted save of the map at ``path`` left behind; return what was done.

    A save killed between its two renames leaves the previous map hidden beside ``path``
    (``.NAME.old-*``): it is put back. Temporary folders of killed saves (``.NAME.tmp-*``, complete
    or not) are deleted, never taken for a map. Safe to call any time: a save still running in
    another process is left alone.
    """
    return recover_dir(path, _MANIFEST)
