"""The codes of the ``pq`` index: every keyframe scanned as a compact code, in parallel shards.

Why another index: an exact search reads every descriptor (1M keyframes x 320 float32 = 1.28 GB
per query, ~50 ms on a core), and the graph (HNSW) and inverted-file (IVF) indexes lose the match
when the query is far from it in descriptor space, as a query in another season is
(``benchmarks/README.md``). This index still scans every keyframe, but as a 4-bit product-quantised
code (``dim / 4`` sub-quantisers of 16 centroids: 40 bytes for 320-d) after a learned rotation
(OPQ) that spreads the variance evenly over the sub-quantisers. FAISS's fast-scan kernels compare
codes with SIMD shuffles: 1M codes of 40 bytes take ~1.7 ms on one core, ~1.2 ms split over two.

:class:`PQShards` only *proposes* candidates (each shard its best ``candidates / threads``);
:class:`vbl_ros.mapping.indexes.PqIndex` re-scores all of them with exact inner products on the
map's float descriptors. The final ranking is therefore the exact one whenever exact search's best
keyframes are among the candidates.

The trained rotation and codebooks are what :meth:`PQShards.write` saves (a few hundred KiB); the
codes are re-computed from the map's descriptors when a map is opened (about 2 s per million).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vbl_ros.errors import MapError

__all__ = ["MAX_DIM", "PQShards", "check_pq_shape", "default_subquantizers"]

logger = logging.getLogger(__name__)

MAX_DIM = 1024  # OPQ trains a dim x dim rotation: beyond this, project the descriptor first
_BITS = 4  # fast-scan codes: 16 centroids per sub-quantiser
_OPQ_ITERATIONS = 20  # FAISS's default 50 takes 2.7x longer, candidates no better (synthetic 100k)
_ENCODE_CHUNK = 65_536  # rows rotated and encoded at a time (bounds the temporary copy)


def default_subquantizers(dim: int) -> int:
    """``dim / 4`` sub-quantisers (4 dimensions each), the setting measured in the benchmarks."""
    return max(1, dim // 4)


def check_pq_shape(dim: int, subquantizers: int) -> None:
    """Refuse descriptors too wide for OPQ and sub-quantiser counts that do not divide ``dim``."""
    if dim > MAX_DIM:
        raise MapError(
            f"the pq index supports descriptors of up to {MAX_DIM} dimensions, these have {dim}; "
            "use a model with a projection (e.g. 'vbl init-model ... --projection pca --dim 256') "
            "or the hnsw/ivf/flat index"
        )
    if subquantizers < 1 or dim % subquantizers:
        raise MapError(
            f"pq subquantizers {subquantizers} must be >= 1 and divide the descriptor dimension {dim}; "
            f"choose a divisor of {dim} (0 = dim / 4)"
        )


class PQShards:
    """OPQ rotation + 4-bit fast-scan PQ codes of all rows, split into contiguous shards.

    Row ``i`` (in the order of :meth:`add`) is id ``i``. Shard ``s`` holds a contiguous range of
    rows; the first :meth:`add` spreads its rows evenly, later ones append to the last shard (a
    reopened map spreads all its rows evenly again). A search runs shard 0 on the calling thread and the others on a
    pool of ``threads - 1`` workers (FAISS releases the GIL), each proposing its own best rows.
    """

    def __init__(self, template, threads: int) -> None:
        """``template``: a trained, empty ``IndexPreTransform(OPQMatrix, IndexPQFastScan)``."""
        import faiss

        self.template = template
        self.rotation = faiss.downcast_VectorTransform(template.chain.at(0))
        self.d = int(template.d)
        self.threads = max(1, int(threads))
        codebook = faiss.downcast_index(template.index)
        self._parts = [faiss.clone_index(codebook) for _ in range(self.threads)]
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(cls, sample: np.ndarray, subquantizers: int, threads: int) -> PQShards:
        """Learn the rotation and the codebooks from ``sample`` ``(n, dim)`` unit-L2 descriptors."""
        import faiss

        sample = np.ascontiguousarray(sample, dtype=np.float32)
        dim = sample.shape[1]
        check_pq_shape(dim, subquantizers)
        template = faiss.index_factory(
            dim, f"OPQ{subquantizers},PQ{subquantizers}x{_BITS}fs", faiss.METRIC_INNER_PRODUCT
        )
        rotation = faiss.downcast_VectorTransform(template.chain.at(0))
        rotation.niter = _OPQ_ITERATIONS
        # fit the rotation for the 4-bit codes in use (FAISS's OPQ fits it for 8-bit ones by default)
        rotation_pq = faiss.ProductQuantizer(dim, subquantizers, _BITS)
        rotation.pq = rotation_pq
        t0 = time.perf_counter()
        template.train(sample)
        rotation.pq = None  # rotation_pq is freed with this frame
        logger.info(
            "trained pq (OPQ%d, %d-bit codes of %d bytes) on %d descriptors in %.1f s",
            subquantizers,
            _BITS,
            subquantizers * _BITS // 8,
            len(sample),
            time.perf_counter() - t0,
        )
        return cls(template, threads)

    @classmethod
    def read(cls, path: Path, threads: int) -> PQShards:
        """The rotation and codebooks saved by :meth:`write` (no codes: :meth:`add` the rows)."""
        import faiss

        try:
            template = faiss.read_index(str(path))
        except RuntimeError as err:
            raise MapError(f"{path}: unreadable pq codebook: {err}") from err
        if not isinstance(template, faiss.IndexPreTransform) or template.chain.size() != 1:
            raise MapError(f"{path}: not a pq codebook (expected an OPQ rotation and PQ codes)")
        return cls(template, threads)

    def write(self, path: Path) -> None:
        """Save the rotation and the codebooks (the template holds no codes)."""
        import faiss

        faiss.write_index(self.template, str(path))

    # ------------------------------------------------------------------ data
    @property
    def ntotal(self) -> int:
        return sum(self.sizes)

    @property
    def sizes(self) -> list[int]:
        """Rows per shard."""
        return [int(p.ntotal) for p in self._parts]

    def _rotate(self, x: np.ndarray) -> np.ndarray:
        return self.rotation.apply(np.ascontiguousarray(x, dtype=np.float32))

    def _encode_into(self, part, x: np.ndarray) -> None:
        for start in range(0, len(x), _ENCODE_CHUNK):
            part.add(self._rotate(x[start : start + _ENCODE_CHUNK]))

    def add(self, x: np.ndarray) -> None:
        """Append rows ``(n, dim)``; the first call spreads them over all shards."""
        if self.ntotal == 0:
            bounds = np.linspace(0, len(x), self.threads + 1).round().astype(int)
            for part, lo, hi in zip(self._parts, bounds[:-1], bounds[1:], strict=True):
                self._encode_into(part, x[lo:hi])
        else:
            self._encode_into(self._parts[-1], x)

    # ------------------------------------------------------------------ search
    def propose(self, q: np.ndarray, candidates: int) -> np.ndarray:
        """Ids ``(Q, shards * ceil(candidates / shards))``: each shard's best rows by the codes,
        unordered across shards; ``-1`` where a shard has fewer rows."""
        per_shard = -(-int(candidates) // self.threads)
        rotated = self._rotate(q)
        offsets = np.cumsum([0, *self.sizes[:-1]])

        def shard(s: int) -> np.ndarray:
            ids = self._parts[s].search(rotated, per_shard)[1]
            return np.where(ids >= 0, ids + offsets[s], -1)

        if self.threads == 1:
            return shard(0)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="vbl-pq")
        others = [self._pool.submit(shard, s) for s in range(1, self.threads)]
        return np.concatenate([shard(0), *(f.result() for f in others)], axis=1)
