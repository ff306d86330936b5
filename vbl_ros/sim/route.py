"""A route through a grid of streets, and vehicle trajectories along it.

The world frame is local ENU: x east, y north, z up, metres. A :class:`Route` is a path over the
intersections of a grid of streets (axis-aligned, uneven block lengths). :func:`drive` drives it on
the left-hand lane (as in Oxford) with corners rounded to arcs, a per-traversal speed and lateral
offset, and a little body roll and pitch; the :class:`~vbl_ros.geometry.trajectory.Trajectory` it
returns gives ``T_world_vehicle`` (vehicle = x forward, y right, z down, the RobotCar stereo camera's
frame) at any stamp (nanoseconds from the start of the drive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vbl_ros.errors import ConfigError
from vbl_ros.geometry.frames import NED_TO_ENU
from vbl_ros.geometry.rotations import euler_to_rotation
from vbl_ros.geometry.trajectory import Trajectory

__all__ = ["Route", "plan_route", "drive", "seconds_to_ns"]
_DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1))


@dataclass(frozen=True)
class Route:
    """A path over grid intersections and the grid itself.

    Attributes:
        grid_x: ``(nx,)`` x of the north-south streets.
        grid_y: ``(ny,)`` y of the east-west streets.
        nodes: ``(K, 2)`` integer grid indices ``(i, j)`` of the intersections visited, in order.
    """

    grid_x: np.ndarray
    grid_y: np.ndarray
    nodes: np.ndarray

    @property
    def points(self) -> np.ndarray:
        """``(K, 2)`` positions of the visited intersections."""
        return np.stack([self.grid_x[self.nodes[:, 0]], self.grid_y[self.nodes[:, 1]]], axis=1)

    @property
    def length(self) -> float:
        """Length of the polyline through the intersections (before rounding corners)."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())

    def edges(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The grid edges the route drives, as pairs of grid indices."""
        return [
            (tuple(a), tuple(b))
            for a, b in zip(self.nodes[:-1].tolist(), self.nodes[1:].tolist(), strict=False)
        ]


def plan_route(
    rng: np.random.Generator, length_m: float, block_m: tuple[float, float] = (50.0, 90.0)
) -> Route:
    """A self-avoiding walk over a random street grid, at least ``length_m`` long.

    The walk prefers going straight (as a bus route would) and turns now and then.
    """
    if length_m <= 0 or block_m[0] <= 20.0 or block_m[1] < block_m[0]:
        raise ConfigError(f"invalid route: length {length_m} m, blocks {block_m} m (blocks must exceed 20 m)")
    mean_block = 0.5 * (block_m[0] + block_m[1])
    n = int(np.ceil(length_m / mean_block / 2.0)) + 3
    grid_x = np.concatenate([[0.0], np.cumsum(rng.uniform(*block_m, size=n - 1))])
    grid_y = np.concatenate([[0.0], np.cumsum(rng.uniform(*block_m, size=n - 1))])
    for _attempt in range(200):
        start = (int(rng.integers(1, n - 1)), int(rng.integers(1, n - 1)))
        nodes = [start]
        heading = int(rng.integers(4))
        total = 0.0
        while total < length_m:
            i, j = nodes[-1]
            options = []
            for turn in (0, 1, -1):
                d = (heading + turn) % 4
                ni, nj = i + _DIRECTIONS[d][0], j + _DIRECTIONS[d][1]
                if 0 <= ni < n and 0 <= nj < n and (ni, nj) not in nodes:
                    options.append((turn, d, (ni, nj)))
            if not options:
                break
            weights = np.array([0.6 if turn == 0 else 0.2 for turn, _, _ in options])
            turn, heading, nxt = options[int(rng.choice(len(options), p=weights / weights.sum()))]
            nodes.append(nxt)
            total += abs(grid_x[nxt[0]] - grid_x[i]) + abs(grid_y[nxt[1]] - grid_y[j])
        if total >= length_m:
            return Route(grid_x=grid_x, grid_y=grid_y, nodes=np.array(nodes, dtype=int))
    raise ConfigError(f"could not plan a route of {length_m} m; try another seed or a shorter route")


def _rounded_polyline(points: np.ndarray, radius: float, step: float) -> np.ndarray:
    """Dense points along a polyline whose corners are replaced by circular arcs."""
    out: list[np.ndarray] = [points[:1]]
    current = points[0]
    for k in range(1, len(points)):
        a, b = points[k - 1], points[k]
        if k + 1 < len(points):
            c = points[k + 1]
            d_in = (b - a) / np.linalg.norm(b - a)
            d_out = (c - b) / np.linalg.norm(c - b)
            r = min(radius, 0.45 * np.linalg.norm(b - a), 0.45 * np.linalg.norm(c - b))
            cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
            if abs(cross) < 1e-9:
                end = b
                arc = None
            else:
                angle = np.arccos(np.clip(np.dot(d_in, d_out), -1.0, 1.0))
                cut = r * np.tan(angle / 2.0)
                end = b - d_in * cut
                normal = np.array([-d_in[1], d_in[0]]) * np.sign(cross)
                centre = end + normal * r
                start_angle = np.arctan2(*(end - centre)[::-1])
                n_arc = max(int(np.ceil(r * angle / step)), 2)
                angles = start_angle + np.sign(cross) * angle * np.linspace(0.0, 1.0, n_arc + 1)[1:]
                arc = centre + r * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        else:
            end, arc = b, None
        n_line = max(int(np.ceil(np.linalg.norm(end - current) / step)), 1)
        out.append(current + (end - current) * np.linspace(0.0, 1.0, n_line + 1)[1:, None])
        if arc is not None:
            out.append(arc)
            current = arc[-1]
        else:
            current = end
    return np.concatenate(out, axis=0)


def drive(
    route: Route,
    rng: np.random.Generator,
    *,
    speed: float,
    lane_offset: float = 2.0,
    lateral_jitter: float = 0.3,
    speed_jitter: float = 0.1,
    corner_radius: float = 9.0,
    camera_height: float = 1.75,
    dt: float = 0.01,
) -> Trajectory:
    """Drive ``route`` on the left lane; ``T_world_vehicle`` sampled every ``dt`` seconds: speed and lateral offset vary per traversal (from ``rng``).

    The car slows down in corners; the offset from the centre line is ``lane_offset`` plus a
    per-traversal constant and a slow wander (both within ``lateral_jitter``).
    """
    step = 0.05
    centre = _rounded_polyline(route.points, corner_radius, step)
    seg = np.linalg.norm(np.diff(centre, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    centre = centre[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(centre, axis=0), axis=1))])
    tangent = np.gradient(centre, s, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    left = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    phase, wander_len = rng.uniform(0, 2 * np.pi), rng.uniform(60.0, 120.0)
    constant = rng.uniform(-0.6, 0.6) * lateral_jitter
    offset = lane_offset + constant + 0.4 * lateral_jitter * np.sin(2 * np.pi * s / wander_len + phase)
    path = centre + left * offset[:, None]
    # Speed: per-traversal factor, slower in corners (curvature of the centre line).
    heading_c = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
    curvature = np.abs(np.gradient(heading_c, s))
    kernel = np.ones(int(15.0 / step)) / int(15.0 / step)
    curvature = np.convolve(curvature, kernel, mode="same")
    v0 = speed * (1.0 + rng.uniform(-1.0, 1.0) * speed_jitter)
    v = v0 / (1.0 + 6.0 * curvature * v0 / 10.0)
    v = np.maximum(v, 2.0)
    path_s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    t_of_s = np.concatenate([[0.0], np.cumsum(np.diff(path_s) / (0.5 * (v[1:] + v[:-1])))])
    times = np.arange(0.0, t_of_s[-1], dt)
    s_t = np.interp(times, t_of_s, path_s)
    xy = np.stack([np.interp(s_t, path_s, path[:, 0]), np.interp(s_t, path_s, path[:, 1])], axis=1)
    d = np.gradient(xy, times, axis=0)
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    roll_amp, roll_freq = float(rng.uniform(0.002, 0.006)), float(rng.uniform(0.3, 0.7))
    pitch_amp, pitch_freq = float(rng.uniform(0.002, 0.006)), float(rng.uniform(0.5, 1.0))
    roll = roll_amp * np.sin(2 * np.pi * roll_freq * times)
    pitch = pitch_amp * np.sin(2 * np.pi * pitch_freq * times + 1.0)
    poses = np.tile(np.eye(4), (len(times), 1, 1))
    for k in range(len(times)):
        yaw_ned = np.pi / 2.0 - heading[k]
        poses[k, :3, :3] = NED_TO_ENU @ euler_to_rotation(roll[k], pitch[k], yaw_ned)
    poses[:, :2, 3] = xy
    poses[:, 2, 3] = camera_height
    return Trajectory.from_poses(seconds_to_ns(times), poses, source="simulated drive")


def seconds_to_ns(seconds: np.ndarray | float) -> np.ndarray:
    """Stamps in nanoseconds of times in seconds (rounded to the nanosecond)."""
    return np.round(np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64)
