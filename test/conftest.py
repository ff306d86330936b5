"""Test-wide settings: offscreen rendering for MuJoCo (must be chosen before mujoco is imported)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
