"""Shared helpers of the benchmarks: timing statistics, memory, machine description, tables, JSON."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean / max in milliseconds of a list of durations in seconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "mean_ms": float(a.mean()),
        "max_ms": float(a.max()),
        "n": len(a),
    }


def rss_mib() -> float:
    """Current resident set size of this process (MiB), from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, object]:
    """What the figures were taken on."""
    info: dict[str, object] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": load_average(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = git_commit()
    if commit != "unknown":
        info["git_commit"] = commit
    return info


def git_commit() -> str:
    """The repository's commit (with ``+dirty`` when tracked files have changes), or ``unknown``."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """A plain-text table of ``rows`` (dicts) restricted to ``columns``."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, object], out: Path | None = None) -> Path:
    """Write ``payload`` as ``benchmarks/results/<name>.json`` (or ``out``); return the path."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


class CpuMonitor:
    """Share of the machine's CPU time used by *other* processes while the ``with`` block ran.

    The benchmark's own CPU time (and that of its finished children) is subtracted, so a value near 0
    means the measurement was undisturbed; 0.5 means other processes kept one of two cores busy.
    """

    def __enter__(self) -> CpuMonitor:
        self._busy0, self._total0 = _cpu_jiffies()
        t = os.times()
        self._own0 = t.user + t.system + t.children_user + t.children_system
        self.others = float("nan")
        return self

    def stop(self) -> float:
        busy, total = _cpu_jiffies()
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system - self._own0
        tick = os.sysconf("SC_CLK_TCK")
        if total > self._total0:
            self.others = max(0.0, ((busy - self._busy0) - own * tick) / (total - self._total0))
        return self.others

    def __exit__(self, *exc: object) -> None:
        self.stop()


def others_busy(interval_s: float = 2.0) -> float:
    """Share of the machine's CPU used by other processes over the next ``interval_s`` seconds."""
    import time

    with CpuMonitor() as m:
        time.sleep(interval_s)
    return m.others


def wait_for_quiet(max_busy: float = 0.15, timeout_s: float = 600.0, log=print) -> float:
    """Wait (up to ``timeout_s``) until other processes use less than ``max_busy`` of the CPU over
    a 3 s window; return the last share seen (go on anyway at the timeout, and say so)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        busy = others_busy(3.0)
        if busy <= max_busy:
            return busy
        if time.monotonic() > deadline:
            log(
                f"machine still busy ({busy:.0%} of the CPU used by others) after {timeout_s:.0f} s; going on"
            )
            return busy
        time.sleep(5.0)


def measured_quietly(fn, *, max_busy: float = 0.2, attempts: int = 3, wait_s: float = 90.0):
    """``fn()`` under a :class:`CpuMonitor`; repeated (after waiting for a quiet machine) while other
    processes used more than ``max_busy`` of the CPU meanwhile. Returns ``(result, others_busy,
    attempts_made)`` of the least disturbed attempt."""
    best = None
    for attempt in range(1, attempts + 1):
        with CpuMonitor() as m:
            result = fn()
        if best is None or m.others < best[1]:
            best = (result, m.others, attempt)
        if m.others <= max_busy:
            break
        if attempt < attempts:
            wait_for_quiet(max_busy, wait_s, log=lambda _msg: None)
    assert best is not None
    return best[0], best[1], best[2]
