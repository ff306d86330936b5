"""``vbl demo`` end to end on the tiny simulation: every step for real, the node over DDS included."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("mujoco")


@pytest.mark.slow
def test_demo_on_the_tiny_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vbl_ros.ros.demo import DemoConfig, run_demo

    monkeypatch.setenv("VBL_DEMO_DOMAIN_ID", str(150 + os.getpid() % 60))
    report = run_demo(tmp_path, DemoConfig(preset="tiny", map_spacing_m=2.0, replay_rate=2.0))

    assert report.frames_sent >= 25  # the tiny query drive
    assert report.frames_answered >= 0.9 * report.frames_sent, "the node answered too few frames"
    assert 0.0 < report.recall_at_1 <= 1.0
    assert report.map_keyframes >= 20
    assert 0 < report.latency_p50_ms <= report.latency_p95_ms < 5000
    saved = json.loads((tmp_path / "demo_report.json").read_text())
    assert saved["frames_sent"] == report.frames_sent and saved["recall_at_1"] == report.recall_at_1
    plot = Path(report.plot)
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ready" in (tmp_path / "localize_node.log").read_text()

    # A second run reuses the simulation, the bags and the map, and replays again.
    again = run_demo(tmp_path, DemoConfig(preset="tiny", map_spacing_m=2.0, replay_rate=2.0))
    assert again.map_keyframes == report.map_keyframes
    assert again.frames_sent == report.frames_sent
