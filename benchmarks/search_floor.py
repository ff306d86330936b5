"""Why exact search over 1M keyframes takes 51 ms on one 2-core VM and 257 ms on another (issue 10 §3).

Exact search (``IndexFlatIP``, the ``flat`` index, one query, FAISS on 1 thread as the localizer runs
it) reads every descriptor once per query: 1M x 320 float32 = 1.28 GB. This script measures, in one
run with interleaved rounds, how long one query takes over maps of 16 MB to 1.28 GB of descriptors
and how fast one core reads memory, so that the search time of any machine can be read as
``bytes / bandwidth``:

- ``GB/s`` of the search at each size: flat when the descriptors fit in the CPU's last-level cache
  and when they do not; the step between the two is the DRAM's single-core read bandwidth;
- a plain single-thread read of the same array (NumPy sum) as a second measure of that bandwidth;
- FAISS's dispatched SIMD level (AVX2/AVX-512) and the search at each level, to show whether the
  instruction set matters;
- the search near a known place (``spatial_prototype.search_near``, not in the package, exact scores within
  ``--radius`` metres) over the largest map, its keyframes spread over a 20 km x 20 km city (a
  denser map than any real drive set: ~2500 keyframes per km^2), which reads only the disc's rows.

Run: ``.venv/bin/python benchmarks/search_floor.py`` (~2 min; ``--quick`` stops at 256 MB).
"""

from __future__ import annotations

import argparse
import subprocess
import time

import faiss
import numpy as np
from _common import CpuMonitor, machine, percentiles_ms, table, wait_for_quiet, write_results
from spatial_prototype import SpatialGrid, search_near

DIM = 320  # the default model's descriptor dimension


def _cache_info() -> dict[str, str]:
    """lscpu's cache and CPU lines (what the figures depend on)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    keep = ("Model name", "L1d", "L2", "L3", "CPU MHz", "Thread(s) per core", "NUMA node(s)", "Hypervisor")
    rows = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if any(key.strip().startswith(k) for k in keep):
            rows[key.strip()] = value.strip()
    return rows


def _time_queries(index: faiss.IndexFlatIP, queries: np.ndarray) -> list[float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], 20)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 200k keyframes (256 MB)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--radius", type=float, default=150.0, help="near-search radius in m (150)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    sizes = [12_500, 50_000, 200_000] + ([] if args.quick else [1_000_000])
    rng = np.random.default_rng(0)
    print("generating descriptors ...", flush=True)
    x = rng.standard_normal((sizes[-1], DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[rng.integers(0, len(x), 10)] + 0.05 * rng.standard_normal((10, DIM), dtype=np.float32)
    indexes = {}
    for n in sizes:
        index = faiss.IndexFlatIP(DIM)
        index.add(x[:n])
        indexes[n] = index
    positions = rng.uniform(0, 20_000, size=(len(x), 3))
    grid = SpatialGrid(positions, 50.0)
    centers = positions[rng.integers(0, len(x), 200), :2]
    auto_level = faiss.SIMDConfig.get_level_name()
    levels = [("AVX2", faiss.SIMDLevel_AVX2), (auto_level, faiss.SIMDConfig.get_level())]
    levels = [lv for lv in levels if faiss.SIMDConfig.is_simd_level_available(lv[1])]
    print(f"waiting for a quiet machine (FAISS SIMD level {auto_level}) ...", flush=True)
    wait_for_quiet(0.15, 60)
    search: dict[tuple[int, str], list[float]] = {}
    reads: list[float] = []
    near: list[float] = []
    with CpuMonitor() as monitor:
        for _ in range(args.rounds):
            for name, level in levels:
                faiss.SIMDConfig.set_level(level)
                for n in sizes:
                    search.setdefault((n, name), []).extend(_time_queries(indexes[n], queries))
            t0 = time.perf_counter()
            x.sum(dtype=np.float32)
            reads.append(time.perf_counter() - t0)
            for center, q in zip(centers, np.resize(queries, (len(centers), DIM)), strict=True):
                t0 = time.perf_counter()
                search_near(x, grid, q, 20, center, args.radius)
                near.append(time.perf_counter() - t0)
    faiss.SIMDConfig.set_level(levels[-1][1])
    rows = []
    for (n, name), times in sorted(search.items()):
        gb = n * DIM * 4 / 1e9
        p50 = float(np.median(times))
        rows.append(
            {
                "keyframes": n,
                "MB": round(gb * 1e3),
                "simd": name,
                "p50_ms": round(p50 * 1e3, 2),
                "p95_ms": round(float(np.percentile(times, 95)) * 1e3, 2),
                "GB/s": round(gb / p50, 1),
            }
        )
    read_gbs = x.nbytes / 1e9 / float(np.median(reads))
    print(table(rows, ["keyframes", "MB", "simd", "p50_ms", "p95_ms", "GB/s"]))
    print(f"single-thread read of {x.nbytes / 1e9:.2f} GB (NumPy sum): {read_gbs:.1f} GB/s")
    near_stats = percentiles_ms(near)
    in_disc = float(np.mean([len(grid.within(c, args.radius)) for c in centers[:50]]))
    print(
        f"search near a place ({args.radius:.0f} m, ~{in_disc:.0f} keyframes in the disc) over "
        f"{len(x)} keyframes: p50 {near_stats['p50_ms']:.3f} ms, p95 {near_stats['p95_ms']:.3f} ms"
    )
    print(f"others' CPU share during the run: {monitor.others:.2f}")
    cache = _cache_info()
    for k, v in cache.items():
        print(f"{k}: {v}")
    name = "search_floor_quick" if args.quick else "search_floor"
    path = write_results(
        name,
        {
            "machine": machine() | {"lscpu": cache, "faiss": faiss.__version__, "faiss_simd": auto_level},
            "rows": rows,
            "numpy_read_gb_s": read_gbs,
            "near": near_stats | {"radius_m": args.radius, "keyframes_in_disc": in_disc},
            "others_cpu": monitor.others,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
