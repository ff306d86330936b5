"""Keyframe map retrieval at 1M keyframes on descriptors with *measured* statistics.

``retrieval.py`` measures on a hand-made spectrum (variance ~ i^-0.75). This script repeats its
measurement (its functions, imported: ``build``, ``latency``, ``top1``, ``choose``) on synthetic
descriptors whose statistics are measured from the default model (EfficientNet-Lite0 + GeM, 320-d)
on the ``vbl demo`` run, ``benchmarks/data/descriptor_stats.json``: the eigenvalues of the centred
descriptors, the median cosine of consecutive keyframes 2 m apart, of unrelated keyframes (> 50 m)
and the distribution (p10 / p50 / p90) of a query's cosine to its true keyframe.

Model: a descriptor is ``normalise(m + p)``: ``m`` a fixed mean direction, ``p`` the place component
with independent coordinates in the eigenbasis scaled by ``sqrt(eigenvalue)``, following an AR(1)
(Ornstein-Uhlenbeck) process along each route, correlation ``rho(d) = rho_2m ** (d / 2 m)`` at
distance ``d``. ``|m|`` is calibrated so that independent places give the measured unrelated cosine,
``rho_2m`` so that keyframes 2 m apart give the measured consecutive cosine; the map is built at
``MapConfig``'s default spacing of 5 m, so consecutive keyframes have ``rho_5m = rho_2m ** 2.5``.
A query is a point at a uniform offset ``s`` in [0, 5) m after a keyframe (the place component
drawn from the process conditioned on both neighbouring keyframes, a Brownian-bridge-like step),
seen in another condition: ``p_q = a p(s) + sqrt(1 - a^2) e`` with ``e`` a fresh place draw;
``a`` per query from a two-piece normal fitted so that, on a 2 m map like the demo's (query
``U(0, 1)`` m from its nearest keyframe), the query-to-true-keyframe cosine has the measured p10 /
p50 / p90. Its true keyframe in the 5 m map is the nearest one.

Measured through :class:`vbl_ros.mapping.KeyframeMap` (``create``, ``add`` with ``Keyframe``
objects in 100k chunks, ``search(q, 20)``, ``set_search_params``) exactly like ``retrieval.py``:
single-query latency p50/p95 with FAISS on 1 thread, top-1 agreement with exact search over 1000
queries, same-place agreement, build time and memory, for flat, pq, IVF (trained on a 200k sample
via ``IvfIndexConfig.train_size``) and, with ``--hnsw``, HNSW (``--kinds`` picks among them).

    .venv/bin/python benchmarks/retrieval_measured.py [--quick] [--hnsw]

writes ``benchmarks/results/retrieval_measured.json`` (``--quick``: 100k keyframes,
``retrieval_measured_quick.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import retrieval
from _common import (
    load_average,
    machine,
    measured_quietly,
    table,
    wait_for_quiet,
    write_results,
)

from vbl_ros.mapping import MapConfig, index_config

NAME = "retrieval_measured"
STATS = Path(__file__).resolve().parent / "data" / "descriptor_stats.json"
SPACING_M = retrieval.SPACING_M  # 5 m, MapConfig's default spacing
DEMO_SPACING_M = 2.0
ROUTE_LEN = 2000  # keyframes per route: 10 km at 5 m
SAME_PLACE = 3  # keyframes (15 m at 5 m), as retrieval.py
K = retrieval.K
THREADS = (1,)

# index settings measured at each size: (label, index type, MapConfig overrides, sweep name, values)
SETTINGS: tuple[tuple[str, str, dict, str, tuple[int, ...]], ...] = (
    ("flat", "flat", {}, "", (0,)),
    ("pq", "pq", {}, "candidates", (64, 128, 256, 512, 1024, 2048, 4096)),
    (
        "ivf 4000 lists",
        "ivf",
        {"ivf_nlist": 4000, "ivf_train_size": 200_000},
        "nprobe",
        (4, 8, 16, 32, 64, 128, 256),
    ),
    (
        "ivf 1024 lists",
        "ivf",
        {"ivf_nlist": 1024, "ivf_train_size": 200_000},
        "nprobe",
        (2, 4, 8, 16, 32, 64),
    ),
)
HNSW_SETTING = (
    "hnsw M 16",
    "hnsw",
    {"hnsw_m": 16, "hnsw_ef_construction": 40},
    "ef_search",
    (16, 32, 64, 128),
)


# ---------------------------------------------------------------------- the descriptor model
class Model:
    """Descriptor model calibrated to the measured statistics (see the module docstring)."""

    def __init__(self, stats: dict, rng: np.random.Generator) -> None:
        self.stats = stats
        lam = np.clip(np.asarray(stats["eigenvalues"], np.float64), 0, None)
        self.scale = np.sqrt(lam).astype(np.float32)
        self.dim = len(lam)
        u = np.abs(rng.standard_normal(self.dim))  # GeM of ReLU features: a positive mean direction
        self.mean_dir = (u / np.linalg.norm(u)).astype(np.float32)
        self.mean_norm = float(np.sqrt(lam.sum()))  # replaced by calibrate()
        self.rho_2m = 0.5
        self.a_median, self.a_sigma_low, self.a_sigma_high = 0.5, 0.1, 0.1
        self.calibration: dict = {}

    # place components and descriptors
    def place(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, self.dim), dtype=np.float32) * self.scale

    def descriptor(self, p: np.ndarray, mean_norm: float | None = None) -> np.ndarray:
        x = p + np.float32(self.mean_norm if mean_norm is None else mean_norm) * self.mean_dir
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def rho(self, d_m: np.ndarray | float) -> np.ndarray:
        return np.float32(self.rho_2m) ** (np.asarray(d_m, np.float32) / np.float32(DEMO_SPACING_M))

    def step(self, p: np.ndarray, rho: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The process ``d`` metres on from ``p`` (``rho = rho(d)``, per row or scalar)."""
        rho = np.asarray(rho, np.float32).reshape(-1, 1) if np.ndim(rho) else np.float32(rho)
        return rho * p + np.sqrt(1 - rho**2) * self.place(len(p), rng)

    def condition(self, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another condition at the same place: ``a p + sqrt(1 - a^2) e``, ``a`` per row."""
        z = rng.standard_normal(len(p))
        a = self.a_median + np.where(z < 0, self.a_sigma_low, self.a_sigma_high) * z
        a = np.clip(a, 0.0, 1.0).astype(np.float32)[:, None]
        return a * p + np.sqrt(1 - a**2) * self.place(len(p), rng)

    # calibration on samples of pairs
    def _cos(self, p1: np.ndarray, p2: np.ndarray, mean_norm: float | None = None) -> np.ndarray:
        return (self.descriptor(p1, mean_norm) * self.descriptor(p2, mean_norm)).sum(1)

    def calibrate(self, rng: np.random.Generator, m: int = 40_000) -> dict:
        s = self.stats
        p1, p2 = self.place(m, rng), self.place(m, rng)
        # |m|: unrelated places (independent place components) at the measured median cosine
        lo, hi = 0.0, 10.0 * self.mean_norm
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.median(self._cos(p1, p2, mid)) < s["unrelated_cos_median"] else (lo, mid)
        self.mean_norm = (lo + hi) / 2
        # rho_2m: keyframes 2 m apart at the measured median cosine
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            c = np.median(self._cos(p1, np.float32(mid) * p1 + np.float32(np.sqrt(1 - mid**2)) * p2))
            lo, hi = (mid, hi) if c < s["consecutive_cos_2m_median"] else (lo, mid)
        self.rho_2m = (lo + hi) / 2
        # a: the query-to-true-keyframe cosine on a 2 m map (query U(0, 1) m from its keyframe)
        t10, t90 = s["query_true_cos_p10_p90"]
        t50 = s["query_true_cos_median"]
        keyframe = self.place(m, rng)
        delta = rng.uniform(0, DEMO_SPACING_M / 2, m)
        at_query = self.step(keyframe, self.rho(delta), rng)
        cond_rng_state = rng.bit_generator.state
        for _ in range(12):
            rng.bit_generator.state = cond_rng_state  # same draws each round: a smooth fit
            c = self._cos(keyframe, self.condition(at_query, rng))
            c10, c50, c90 = np.percentile(c, [10, 50, 90])
            slope = (1 - s["unrelated_cos_median"]) * 0.9
            self.a_median += (t50 - c50) / slope
            self.a_sigma_low *= (t50 - t10) / max(c50 - c10, 1e-6)
            self.a_sigma_high *= (t90 - t50) / max(c90 - c50, 1e-6)
        rng.bit_generator.state = cond_rng_state
        c = self._cos(keyframe, self.condition(at_query, rng))
        p_next = self.step(p1, self.rho_2m, rng)
        lam = self.scale.astype(np.float64) ** 2
        frac = np.cumsum(lam) / lam.sum()
        self.calibration = {
            "mean_norm_model": self.mean_norm / float(np.sqrt(self.mean_norm**2 + lam.sum())),
            "mean_norm_measured": s["mean_norm"],
            "rho_2m": self.rho_2m,
            "rho_5m": float(self.rho(SPACING_M)),
            "condition_a_median_sigma_low_high": [self.a_median, self.a_sigma_low, self.a_sigma_high],
            "dims_for_80_90_pct_variance": [
                int(np.searchsorted(frac, 0.8)) + 1,
                int(np.searchsorted(frac, 0.9)) + 1,
            ],
            "model_2m_unrelated_cos_median": float(np.median(self._cos(p1, p2))),
            "model_2m_consecutive_cos_median": float(np.median(self._cos(p1, p_next))),
            "model_2m_query_true_cos_p10_p50_p90": [float(v) for v in np.percentile(c, [10, 50, 90])],
            "target_unrelated_cos_median": s["unrelated_cos_median"],
            "target_consecutive_cos_2m_median": s["consecutive_cos_2m_median"],
            "target_query_true_cos_p10_p50_p90": [t10, t50, t90],
        }
        return self.calibration


def make_data(
    model: Model, n: int, n_queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """``n`` map descriptors along routes of ``ROUTE_LEN`` keyframes 5 m apart; ``n_queries``
    queries. Returns (db, queries, true ids, measured statistics of the generated data)."""
    assert n % ROUTE_LEN == 0, "whole routes"
    db = np.empty((n, model.dim), np.float32)
    for i in range(0, n, 100_000):
        db[i : i + 100_000] = model.place(min(100_000, n - i), rng)
    routes = db.reshape(n // ROUTE_LEN, ROUTE_LEN, model.dim)  # a view
    rho = np.float32(model.rho(SPACING_M))
    innov = np.float32(np.sqrt(1 - rho**2))
    for t in range(1, ROUTE_LEN):
        routes[:, t] *= innov
        routes[:, t] += rho * routes[:, t - 1]
    # queries: keyframe i of a route (not its last), offset s in [0, 5) m towards i + 1
    ids = rng.integers(0, n, n_queries)
    ids = np.where(ids % ROUTE_LEN == ROUTE_LEN - 1, ids - 1, ids)
    s = rng.uniform(0, SPACING_M, n_queries).astype(np.float32)
    r_s, r_rest, r_l = model.rho(s), model.rho(SPACING_M - s), rho
    w1 = ((r_s - r_l * r_rest) / (1 - r_l**2))[:, None]
    w2 = ((r_rest - r_l * r_s) / (1 - r_l**2))[:, None]
    var = np.clip(1 - w1[:, 0] * r_s - w2[:, 0] * r_rest, 0, None)[:, None]
    at_query = w1 * db[ids] + w2 * db[ids + 1] + np.sqrt(var) * model.place(n_queries, rng)
    queries = np.ascontiguousarray(model.descriptor(model.condition(at_query, rng)))
    true_ids = np.where(s < SPACING_M / 2, ids, ids + 1)
    for i in range(0, n, 100_000):
        db[i : i + 100_000] = model.descriptor(db[i : i + 100_000])
    # statistics of what was generated
    j = rng.integers(0, n - 1, 20_000)
    j = j[j % ROUTE_LEN != ROUTE_LEN - 1]
    a, b = rng.integers(0, n, (2, 20_000))
    far = (a // ROUTE_LEN != b // ROUTE_LEN) | (np.abs(a - b) * SPACING_M > 50)
    q_cos = (queries * db[true_ids]).sum(1)
    stats = {
        "consecutive_cos_5m_median": float(np.median((db[j] * db[j + 1]).sum(1))),
        "unrelated_cos_median": float(np.median((db[a[far]] * db[b[far]]).sum(1))),
        "query_nearest_keyframe_cos_p10_p50_p90": [float(v) for v in np.percentile(q_cos, [10, 50, 90])],
    }
    return db, queries, true_ids, stats


# ---------------------------------------------------------------------- measurement
def same_place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.abs(a - b) <= SAME_PLACE) & (a // ROUTE_LEN == b // ROUTE_LEN)


def run_size(
    n: int, model: Model, settings, *, n_queries: int, n_latency: int, n_latency_flat: int, seed: int, log
) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    db, queries, true_ids, data_stats = make_data(model, n, n_queries, rng)
    log.info(
        "n=%d: data in %.1f s: %s (load %.2f)", n, time.perf_counter() - t0, data_stats, load_average()[0]
    )
    rows: list[dict] = []
    exact_ids = None
    for label, kind, overrides, sweep, values in settings:
        config = MapConfig(
            index=index_config(kind, **{k.removeprefix(f"{kind}_"): v for k, v in overrides.items()})
        )
        kmap, build_stats = retrieval.build(kind, db, config, chunk=100_000, route_len=ROUTE_LEN)
        base = {"n": n, "index": label, "index_type": kind, **overrides, **build_stats}
        if kind == "ivf":
            base["ivf_nlist"] = int(kmap._index.nlist)  # read-only look, for the report
        log.info("n=%d %s: built %s", n, label, {k: round(v, 2) for k, v in build_stats.items()})
        for v in values:
            if sweep:
                kmap.set_search_params(**{sweep: v})
            faiss.omp_set_num_threads(2)
            ids, _ = retrieval.top1(kmap, queries)
            row = {**base, "param": f"{sweep}={v}" if sweep else ""}
            if kind == "flat":
                exact_ids = ids
                row["exact_top1_is_true_keyframe"] = float((ids == true_ids).mean())
                row["exact_at_true_place"] = float(same_place(ids, true_ids).mean())
                timed = queries[: n_latency_flat if n >= 100_000 else n_latency]
            else:
                assert exact_ids is not None, "flat runs first"
                timed = queries[:n_latency]
            row["agreement"] = float((ids == exact_ids).mean())
            row["same_place_agreement"] = float(same_place(ids, exact_ids).mean())
            row["at_true_place"] = float(same_place(ids, true_ids).mean())
            found = same_place(exact_ids, true_ids)  # queries where exact search finds the place
            row["at_true_place_where_exact_finds_it"] = float(same_place(ids, true_ids)[found].mean())
            lat, busy, tries = measured_quietly(partial(retrieval.latency, kmap, timed, THREADS))
            rows.append({**row, **retrieval._flatten(lat), "others_cpu": busy, "attempts": tries})
            log.info(
                "n=%d %s %s: agreement %.4f same place %.4f p50 %.3f p95 %.3f ms (others %.0f%%)",
                n,
                label,
                row["param"],
                row["agreement"],
                row["same_place_agreement"],
                lat["threads_1"]["p50_ms"],
                lat["threads_1"]["p95_ms"],
                100 * busy,
            )
        del kmap
        gc.collect()
    del db
    gc.collect()
    return rows, data_stats


def main(
    *,
    quick: bool,
    sizes: tuple[int, ...],
    hnsw: bool,
    kinds: tuple[str, ...],
    n_queries: int,
    n_latency: int,
    seed: int,
    out: Path | None,
) -> Path:
    log = logging.getLogger(NAME)
    if quick:
        sizes = (100_000,)
    stats = json.loads(STATS.read_text())
    model = Model(stats, np.random.default_rng(seed))
    calib = model.calibrate(np.random.default_rng(seed + 1))
    print("calibration (model vs measured on the demo):")
    for key in ("unrelated_cos_median", "consecutive_cos_2m_median"):
        print(f"  {key}: model {calib['model_2m_' + key.replace('_2m', '')]:.4f}  measured {stats[key]:.4f}")
    print(
        "  query_true_cos p10/p50/p90 (2 m map): model "
        + " / ".join(f"{v:.4f}" for v in calib["model_2m_query_true_cos_p10_p50_p90"])
        + "  measured "
        + " / ".join(f"{v:.4f}" for v in calib["target_query_true_cos_p10_p50_p90"])
    )
    print(
        f"  rho_2m {calib['rho_2m']:.3f} -> rho_5m = rho_2m^2.5 = {calib['rho_5m']:.3f}; "
        f"mean norm model {calib['mean_norm_model']:.4f} measured {stats['mean_norm']:.4f}; "
        f"dims for 80/90 % variance {calib['dims_for_80_90_pct_variance']}"
    )
    info = machine()
    info["faiss"] = faiss.__version__
    log.info("%s: sizes %s, %s", NAME, sizes, info)
    busy = wait_for_quiet(0.15, 300.0, log=log.info)
    log.info("starting; other processes use %.0f%% of the CPU; load %s", 100 * busy, load_average())
    t_start = time.perf_counter()
    settings = tuple(
        s for s in SETTINGS + ((HNSW_SETTING,) if hnsw else ()) if s[1] in kinds or s[1] == "flat"
    )
    rows: list[dict] = []
    generated: dict[int, dict] = {}
    for n in sizes:
        r, generated[n] = run_size(
            n,
            model,
            settings,
            n_queries=n_queries,
            n_latency=n_latency,
            n_latency_flat=60,
            seed=seed,
            log=log,
        )
        rows += r
        print(f"generated at n={n} (5 m spacing): {generated[n]}")
    best = retrieval.choose(rows, THREADS)
    best_place = retrieval.choose(rows, THREADS, "same_place_agreement")
    target_n = max(sizes)
    met = any(
        b["p95_ms"] <= retrieval.TARGET_P95_MS for b in best if b["n"] == target_n and b["index"] != "flat"
    )
    cols = ["n", "index", "param", "agreement", "same_place_agreement", "at_true_place"]
    cols += ["at_true_place_where_exact_finds_it"]
    cols += ["p50_ms_threads_1", "p95_ms_threads_1", "index_build_s", "add_s", "map_rss_mib", "others_cpu"]
    print(table(rows, cols))
    print("\nfastest setting with >= 98 % top-1 agreement (FAISS 1 thread):")
    print(table(best, ["n", "index", "param", "p50_ms", "p95_ms", "agreement", "same_place_agreement"]))
    print("fastest setting with >= 98 % same-place agreement:")
    print(table(best_place, ["n", "index", "param", "p50_ms", "p95_ms", "agreement", "same_place_agreement"]))
    print(f"target ({target_n} keyframes, p95 <= {retrieval.TARGET_P95_MS} ms, agreement >= 98 %): {met}")
    payload = {
        "benchmark": NAME,
        "command": " ".join(["benchmarks/retrieval_measured.py", *sys.argv[1:]]),
        "machine": info,
        "dim": model.dim,
        "k": K,
        "faiss_threads": 1,
        "spacing_m": SPACING_M,
        "route_len": ROUTE_LEN,
        "same_place_keyframes": SAME_PLACE,
        "stats_file": str(STATS.relative_to(STATS.parents[2])),
        "calibration": calib,
        "generated": {str(k): v for k, v in generated.items()},
        "rows": rows,
        "best": best,
        "best_same_place": best_place,
        "target": {
            "n": target_n,
            "p95_ms": retrieval.TARGET_P95_MS,
            "agreement": retrieval.TARGET_AGREEMENT,
            "met": met,
        },
        "load_average_at_end": load_average(),
        "wall_s": time.perf_counter() - t_start,
    }
    return write_results(NAME + ("_quick" if quick else ""), payload, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100k keyframes only")
    p.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")), default=(1_000_000,))
    p.add_argument("--hnsw", action="store_true", help="also HNSW (M 16, efConstruction 40)")
    p.add_argument(
        "--kinds",
        type=lambda s: tuple(s.split(",")),
        default=("pq", "ivf", "hnsw"),
        help="indexes besides flat",
    )
    p.add_argument("--queries", type=int, default=1000, help="queries for top-1 agreement")
    p.add_argument("--latency-queries", type=int, default=300, help="single queries timed per setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    path = main(
        quick=a.quick,
        sizes=a.sizes,
        hnsw=a.hnsw,
        kinds=a.kinds,
        n_queries=a.queries,
        n_latency=a.latency_queries,
        seed=a.seed,
        out=a.out,
    )
    print(f"results: {path}")
