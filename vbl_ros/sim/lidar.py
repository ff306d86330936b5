"""A simulated SICK LMS-151 (RobotCar's ``lms_front``): 541 beams over 270 degrees, by ray casting.

A scan is cast from the sensor's pose ``T_world_lms`` in the scan plane (the sensor's x-y plane)
at angles -135..135 degrees (0.5 degree steps, angle 0 along the sensor's x axis) with
``mujoco.mj_multiRay`` against the same MuJoCo model the camera renders. Hits within range become
``(x, y, reflectance)`` in the sensor frame, as RobotCar's ``lms_front/<unix_us>.bin`` stores them;
beams without a return are left out. Reflectance comes from the hit surface's class (the geom's
name prefix, see :data:`vbl_ros.sim.scene.REFLECTANCE`), scaled by the incidence angle, with noise.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np

__all__ = ["LMS_ANGLES", "LMS_MAX_RANGE", "LidarScanner", "geom_reflectance"]

LMS_ANGLES = np.radians(np.linspace(-135.0, 135.0, 541))
LMS_MAX_RANGE = 50.0


def geom_reflectance(model: mujoco.MjModel, table: dict[str, float], default: float = 0.3) -> np.ndarray:
    """``(ngeom,)`` base reflectance of each geom from its name's prefix (``road_3`` -> ``road``)."""
    out = np.full(model.ngeom, default, dtype=float)
    for k in range(model.ngeom):
        name = model.geom(k).name
        prefix = name.split("_", 1)[0]
        out[k] = table.get(prefix, default)
    return out


class LidarScanner:
    """Cast LMS-151 scans in a MuJoCo model (the same model and data the renderer uses)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, reflectance: np.ndarray, *,
                 max_range: float = LMS_MAX_RANGE, angles: np.ndarray = LMS_ANGLES) -> None:  # fmt: skip
        self.model = model
        self.data = data
        self.reflectance = np.asarray(reflectance, dtype=float)
        self.max_range = float(max_range)
        self.angles = np.asarray(angles, dtype=float)
        self._local = np.stack([np.cos(self.angles), np.sin(self.angles), np.zeros_like(self.angles)], axis=1)
        n = len(self.angles)
        self._geomid = np.zeros(n, dtype=np.int32)
        self._dist = np.zeros(n, dtype=np.float64)
        self._normal = np.zeros(3 * n, dtype=np.float64)
        self._groups = np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8)

    def cast(self, t_world_lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(distance, geom id, unit normal)`` per beam; distance -1 and id -1 without a hit."""
        directions = (self._local @ t_world_lms[:3, :3].T).ravel()
        origin = np.ascontiguousarray(t_world_lms[:3, 3], dtype=np.float64)
        mujoco.mj_multiRay(self.model, self.data, origin, directions, self._groups, 1, -1, self._geomid,
                           self._dist, self._normal, len(self.angles), self.max_range)  # fmt: skip
        dist = self._dist.copy()
        geom = self._geomid.copy()
        miss = (geom < 0) | (dist < 0) | (dist > self.max_range)
        dist[miss] = -1.0
        geom[miss] = -1
        return dist, geom, self._normal.reshape(-1, 3).copy()

    def scan(self, t_world_lms: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``(N, 3)`` float64 ``(x, y, reflectance)`` of the returns, in the sensor frame."""
        dist, geom, normal = self.cast(t_world_lms)
        hit = dist > 0
        world_dirs = self._local[hit] @ t_world_lms[:3, :3].T
        cos_incidence = np.abs(np.einsum("ij,ij->i", world_dirs, normal[hit]))
        refl = self.reflectance[geom[hit]] * (0.55 + 0.45 * cos_incidence)
        if rng is not None:
            refl = refl * (1.0 + 0.05 * rng.standard_normal(refl.shape))
        x = dist[hit] * np.cos(self.angles[hit])
        y = dist[hit] * np.sin(self.angles[hit])
        return np.stack([x, y, np.clip(refl, 0.0, 1.0)], axis=1)
