"""A procedural town along a route, as a MuJoCo model (``mujoco.MjSpec``), deterministic by seed.

:func:`build_town` lays out the town as plain numbers (a :class:`Town`): roads and pavements along the
route's streets and a little way into the side streets, buildings with their own facade textures
(window grids, colours, brick or render, shop fronts with signs), trees, street lights, sign posts,
bollards, bins and parking bays. :func:`parked_cars` fills parking bays differently for each
traversal. :func:`town_spec` turns a town, its parked cars and a :class:`~vbl_ros.sim.render.Condition`
into a ``mujoco.MjSpec`` (snow on the ground, lit shop signs at night, lights).

Every solid geom is a box, cylinder, ellipsoid or a closed mesh in group 0, so the renderer and the
LIDAR ray caster (:mod:`vbl_ros.sim.lidar`) see the same surfaces. Large faces are meshes split into
a grid of about 2 m, because the renderer lights per vertex (street lights at night need vertices).
The world frame is local ENU (x east, y north, z up, metres); the road surface is at z = 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import itertools
from dataclasses import dataclass, field

import mujoco
import numpy as np

from vbl_ros.sim.render import Condition
from vbl_ros.sim.route import Route

__all__ = [
    "ROAD_HALF_WIDTH",
    "PropBox",
    "Building",
    "ParkedCar",
    "Town",
    "build_town",
    "parked_cars",
    "town_spec",
    "REFLECTANCE",
]

ROAD_HALF_WIDTH = 6.0  # kerb line from the street's centre line
PAVEMENT_WIDTH = 3.5
FRONT_SETBACK = ROAD_HALF_WIDTH + PAVEMENT_WIDTH  # building fronts from the centre line
KERB_HEIGHT = 0.12
PARKING_OFFSET = 5.0
MESH_STEP = 2.0
TEXTURE_PX_PER_M = 12.0

# LIDAR reflectance per surface class (prefix of the geom name), roughly as an LMS-151 sees them.
REFLECTANCE = {
    "road": 0.18,
    "mark": 0.85,
    "pave": 0.3,
    "ground": 0.25,
    "bldg": 0.45,
    "sign": 0.9,
    "shop": 0.6,
    "awning": 0.4,
    "tree": 0.35,
    "trunk": 0.3,
    "pole": 0.55,
    "lamp": 0.7,
    "car": 0.6,
    "glass": 0.1,
    "wheel": 0.08,
    "bin": 0.35,
    "bollard": 0.6,
}


@dataclass(frozen=True)
class PropBox:
    """A primitive geom: ``kind`` (mujoco geom type name), class name, size, pose and colour."""

    kind: str  # "box", "cylinder", "ellipsoid"
    cls: str  # surface class, a key of REFLECTANCE
    size: tuple[float, float, float]
    pos: tuple[float, float, float]
    yaw: float
    rgba: tuple[float, float, float, float]
    emissive: bool = False  # glows at night (lamps, lit signs)
    texture: int = -1  # index into Town.sign_textures, or -1


@dataclass(frozen=True)
class Building:
    """An axis-aligned block ``[x0, x1] x [y0, y1] x [0, height]`` whose front faces ``front``."""

    x0: float
    x1: float
    y0: float
    y1: float
    height: float
    front: str  # "+x", "-x", "+y", "-y"
    texture: np.ndarray = field(repr=False)  # (H, W, 3) uint8, row 0 at the top
    front_width: float = 0.0


@dataclass(frozen=True)
class ParkedCar:
    x: float
    y: float
    yaw: float
    length: float
    width: float
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class Town:
    """Everything static in the town, as numbers (see :func:`town_spec` for the MuJoCo model)."""

    route: Route
    roads: list[tuple[float, float, float, float]]  # axis-aligned rectangles x0, x1, y0, y1
    pavements: list[tuple[float, float, float, float]]
    buildings: list[Building]
    props: list[PropBox]
    street_lights: np.ndarray  # (L, 3) lamp positions
    parking: np.ndarray  # (P, 3) x, y, yaw of parking bays
    sign_textures: list[np.ndarray] = field(repr=False)
    extent: float = 0.0


# ----------------------------------------------------------------------------- textures

_WALL_COLOURS = np.array(
    [
        [150, 70, 50],  # red brick
        [170, 100, 70],  # orange brick
        [205, 190, 160],  # cream stone (Oxford)
        [220, 205, 170],  # Cotswold
        [235, 235, 228],  # white render
        [180, 180, 178],  # grey concrete
        [120, 120, 125],  # dark concrete
        [190, 160, 120],  # sandstone
        [110, 140, 160],  # painted blue
        [150, 170, 120],  # painted green
        [220, 190, 110],  # painted yellow
        [200, 130, 120],  # painted pink
        [95, 75, 65],  # dark brick
        [60, 80, 95],  # glass office
    ],
    dtype=float,
)
_SIGN_COLOURS = np.array(
    [[200, 30, 30], [30, 60, 170], [20, 120, 60], [230, 200, 40], [20, 20, 20], [240, 240, 240],
     [130, 30, 120], [240, 120, 20], [0, 140, 160]],
    dtype=float,
)  # fmt: skip


def _noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] of shape (h, w)."""
    gh, gw = max(h // scale, 1) + 2, max(w // scale, 1) + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw))
    ys = np.linspace(0, gh - 2, h)
    xs = np.linspace(0, gw - 2, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


def _text_band(rng: np.random.Generator, h: int, w: int, background: np.ndarray) -> np.ndarray:
    """A sign: a coloured band with blocky "letters" in a contrasting colour."""
    band = np.empty((h, w, 3))
    band[:] = background
    ink = np.array([255.0, 255.0, 255.0]) if background.mean() < 140 else np.array([20.0, 20.0, 30.0])
    if rng.random() < 0.3:
        ink = _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))]
    margin = max(h // 5, 1)
    x = int(rng.integers(margin, max(margin + 1, w // 6)))
    glyph_w = max(int(h * rng.uniform(0.35, 0.6)), 2)
    while x + glyph_w < w - margin:
        glyph = rng.random((5, 3)) < 0.55
        gh = h - 2 * margin
        block = np.kron(glyph, np.ones((max(gh // 5, 1), max(glyph_w // 3, 1)))).astype(bool)
        bh, bw = block.shape
        region = band[margin : margin + bh, x : x + bw]
        region[block[: region.shape[0], : region.shape[1]]] = ink
        x += bw + max(glyph_w // 3, 1)
        if rng.random() < 0.15:
            x += glyph_w
    return band


def facade_texture(rng: np.random.Generator, width_m: float, height_m: float, floors: int) -> np.ndarray:
    """A building front as an RGB image (row 0 at the top): walls, windows, doors, a shop front."""
    px = TEXTURE_PX_PER_M
    w = int(np.clip(round(width_m * px), 32, 512))
    h = int(np.clip(round(height_m * px), 32, 512))
    sx, sy = w / width_m, h / height_m  # pixels per metre
    wall = _WALL_COLOURS[rng.integers(len(_WALL_COLOURS))] * rng.uniform(0.85, 1.1, size=3)
    img = np.empty((h, w, 3))
    img[:] = wall
    img *= 1.0 + 0.08 * _noise(rng, h, w, 16)[..., None] + 0.04 * _noise(rng, h, w, 3)[..., None]
    style = rng.choice(["brick", "render", "panels", "glass"], p=[0.4, 0.35, 0.15, 0.1])
    if style == "brick":
        course = max(int(0.25 * sy), 2)
        img[::course] *= 0.8
        for r0 in range(0, h, course):
            shift = (r0 // course % 2) * max(int(0.5 * sx), 1)
            img[r0 : r0 + course, shift :: max(int(0.6 * sx), 2)] *= 0.85
    elif style == "panels":
        pw, ph = max(int(rng.uniform(1.2, 3.0) * sx), 3), max(int(rng.uniform(1.0, 1.6) * sy), 3)
        img[::ph] *= 0.7
        img[:, ::pw] *= 0.7
    floor_h = height_m / floors
    bay_w = rng.uniform(2.2, 4.0)
    bays = max(int(width_m / bay_w), 1)
    bay_w = width_m / bays
    win_w = bay_w * rng.uniform(0.35, 0.7)
    win_h = floor_h * rng.uniform(0.4, 0.65)
    glass = np.array([40.0, 50.0, 65.0]) * rng.uniform(0.6, 1.4)
    frame = np.array([235.0, 235.0, 230.0]) if rng.random() < 0.6 else wall * 0.5
    mullion = rng.random() < 0.5
    arched = rng.random() < 0.15
    shutters = rng.random() < 0.12
    shutter_col = _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))] * 0.8
    shop = rng.random() < 0.55
    if style == "glass":
        glass = np.array([70.0, 95.0, 120.0]) * rng.uniform(0.8, 1.2)
        win_w, win_h = bay_w * 0.9, floor_h * 0.8
    for f in range(floors):
        z_floor = f * floor_h
        if f == 0 and shop:
            continue
        for b in range(bays):
            if rng.random() < 0.04:
                continue  # a blind window
            cx = (b + 0.5) * bay_w
            z0 = z_floor + floor_h * 0.3 if f > 0 else z_floor + 0.9
            x0, x1 = int((cx - win_w / 2) * sx), int((cx + win_w / 2) * sx)
            r1 = h - int(z0 * sy)
            r0 = h - int((z0 + win_h) * sy)
            fr = max(int(0.08 * sx), 1)
            img[max(r0 - fr, 0) : r1 + fr, max(x0 - fr, 0) : x1 + fr] = frame
            pane = glass * rng.uniform(0.7, 1.3)
            if rng.random() < 0.15:
                pane = np.array([200.0, 190.0, 160.0]) * rng.uniform(0.7, 1.0)  # curtains
            img[r0:r1, x0:x1] = pane
            # a sky reflection gradient on the pane
            grad = np.linspace(1.25, 0.85, max(r1 - r0, 1))[:, None, None]
            img[r0:r1, x0:x1] *= grad[: img[r0:r1, x0:x1].shape[0]]
            if mullion and x1 - x0 > 4:
                mid = (x0 + x1) // 2
                img[r0:r1, mid - fr // 2 : mid + max(fr // 2, 1)] = frame
                midr = (r0 + r1) // 2
                img[midr - fr // 2 : midr + max(fr // 2, 1), x0:x1] = frame
            if arched:
                img[max(r0 - 2 * fr, 0) : r0, x0:x1] = wall * 0.7
            if shutters and x0 - int(0.4 * sx) > 0:
                img[r0:r1, x0 - int(0.4 * sx) : x0 - fr] = shutter_col
                img[r0:r1, x1 + fr : min(x1 + int(0.4 * sx), w)] = shutter_col
            img[min(r1 + fr, h - 1) : min(r1 + 2 * fr, h), max(x0 - 2 * fr, 0) : x1 + 2 * fr] *= 0.7  # sill
        if f > 0 and rng.random() < 0.3:
            row = h - int(z_floor * sy)
            img[max(row - 2, 0) : row + 1] *= 0.75  # string course
    # Ground floor: a shop front with a sign, or a door.
    if shop:
        sign_h = max(int(0.7 * sy), 4)
        top = h - int(min(floor_h, 3.6) * sy)
        bottom = h - int(0.5 * sy)
        img[top + sign_h : bottom, int(0.3 * sx) : w - int(0.3 * sx)] = glass * rng.uniform(0.8, 1.6)
        img[bottom:, :] = wall * 0.6
        colour = _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))]
        img[top : top + sign_h, :] = _text_band(rng, sign_h, w, colour)
        door_x = int(rng.uniform(0.1, 0.8) * w)
        img[top + sign_h : h, door_x : door_x + int(1.0 * sx)] = wall * 0.35
    else:
        door_x = int(rng.uniform(0.05, 0.85) * w)
        door = _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))] * 0.7
        img[h - int(2.2 * sy) :, door_x : door_x + max(int(1.0 * sx), 2)] = door
    # Cornice, grime, a poster or graffiti here and there.
    img[: max(int(0.4 * sy), 2)] *= 0.7
    img *= (1.0 - 0.15 * np.clip(_noise(rng, h, w, 40), 0, 1))[..., None]
    for _ in range(int(rng.integers(0, 3))):
        pw, ph = int(rng.uniform(0.6, 2.5) * sx), int(rng.uniform(0.6, 1.6) * sy)
        x0, r0 = int(rng.integers(0, max(w - pw, 1))), h - int(rng.uniform(0.3, 2.0) * sy) - ph
        img[max(r0, 0) : r0 + ph, x0 : x0 + pw] = rng.uniform(30, 250, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def sign_texture(rng: np.random.Generator, width_m: float, height_m: float) -> np.ndarray:
    """A shop sign board with lettering (row 0 at the top)."""
    w = int(np.clip(width_m * 24, 16, 256))
    h = int(np.clip(height_m * 24, 8, 64))
    colour = _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))]
    return np.clip(_text_band(rng, h, w, colour), 0, 255).astype(np.uint8)


def _ground_texture(rng: np.random.Generator, kind: str) -> np.ndarray:
    n = 256
    if kind == "asphalt":
        base = np.array([78.0, 78.0, 82.0])
        img = base * (1.0 + 0.12 * _noise(rng, n, n, 2)[..., None] + 0.1 * _noise(rng, n, n, 32)[..., None])
        for _ in range(6):  # patches
            x, y, s = [*rng.integers(0, n - 40, size=2).tolist(), int(rng.integers(10, 40))]
            img[y : y + s, x : x + s] *= rng.uniform(0.8, 1.1)
    elif kind == "paving":
        base = np.array([165.0, 160.0, 150.0])
        img = base * (1.0 + 0.06 * _noise(rng, n, n, 3)[..., None])
        img[::64] *= 0.7
        img[:, ::64] *= 0.7
        for r in range(4):
            for c in range(4):
                img[r * 64 + 1 : (r + 1) * 64, c * 64 + 1 : (c + 1) * 64] *= rng.uniform(0.9, 1.08)
    else:  # grass / verge
        base = np.array([80.0, 110.0, 60.0])
        img = base * (1.0 + 0.2 * _noise(rng, n, n, 4)[..., None] + 0.15 * _noise(rng, n, n, 40)[..., None])
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- layout


def _rect_overlaps(
    rect: tuple[float, float, float, float], others: list[tuple[float, float, float, float]]
) -> bool:
    x0, x1, y0, y1 = rect
    return any(
        x0 < b1 - 0.01 and b0 < x1 - 0.01 and y0 < d1 - 0.01 and d0 < y1 - 0.01 for b0, b1, d0, d1 in others
    )


def build_town(route: Route, seed: int, *, side_street_m: float = 40.0) -> Town:
    """Lay out the town along ``route`` (deterministic for a seed)."""
    rng = np.random.default_rng([seed, 1])
    points = route.points
    gx, gy = route.grid_x, route.grid_y
    route_edges = {tuple(sorted(e)) for e in route.edges()}
    roads: list[tuple[float, float, float, float]] = []
    pavements: list[tuple[float, float, float, float]] = []
    rw, pw = ROAD_HALF_WIDTH, PAVEMENT_WIDTH
    # Streets: every route edge, and side-street stubs from each route node.
    streets: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (start, end, is_route)
    nodes = [tuple(n) for n in route.nodes.tolist()]
    for a, b in route.edges():
        streets.append((np.array([gx[a[0]], gy[a[1]]]), np.array([gx[b[0]], gy[b[1]]]), True))
    for node in nodes:
        for di, dj in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            other = (node[0] + di, node[1] + dj)
            if tuple(sorted((node, other))) in route_edges:
                continue
            p = np.array([gx[node[0]], gy[node[1]]])
            if 0 <= other[0] < len(gx) and 0 <= other[1] < len(gy):
                q = np.array([gx[other[0]], gy[other[1]]])
                length = min(side_street_m, 0.5 * np.linalg.norm(q - p))
            else:
                length = side_street_m
            streets.append((p, p + np.array([di, dj], dtype=float) * length, False))
    for p, q, _ in streets:
        lo, hi = np.minimum(p, q), np.maximum(p, q)
        if p[1] == q[1]:  # east-west street
            roads.append((lo[0], hi[0], p[1] - rw, p[1] + rw))
            pavements.append((lo[0], hi[0], p[1] + rw, p[1] + rw + pw))
            pavements.append((lo[0], hi[0], p[1] - rw - pw, p[1] - rw))
        else:
            roads.append((p[0] - rw, p[0] + rw, lo[1], hi[1]))
            pavements.append((p[0] + rw, p[0] + rw + pw, lo[1], hi[1]))
            pavements.append((p[0] - rw - pw, p[0] - rw, lo[1], hi[1]))
    for node in nodes:  # intersection squares and pavement corners
        x, y = gx[node[0]], gy[node[1]]
        roads.append((x - rw, x + rw, y - rw, y + rw))
        for sx in (-1, 1):
            for sy in (-1, 1):
                xa, xb = sorted((x + sx * rw, x + sx * (rw + pw)))
                ya, yb = sorted((y + sy * rw, y + sy * (rw + pw)))
                pavements.append((xa, xb, ya, yb))
    # Pavements must not cover roads (side streets cross them): cut them where a road is.
    pavements = [r for r in _subtract_rects(pavements, roads)]
    road_rects = roads + pavements

    buildings: list[Building] = []
    footprints: list[tuple[float, float, float, float]] = list(road_rects)
    props: list[PropBox] = []
    sign_textures: list[np.ndarray] = []
    lights: list[tuple[float, float, float]] = []
    parking: list[tuple[float, float, float]] = []
    for p, q, is_route in streets:
        length = float(np.linalg.norm(q - p))
        direction = (q - p) / length
        normal = np.array([-direction[1], direction[0]])
        yaw = float(np.arctan2(direction[1], direction[0]))
        start = FRONT_SETBACK
        end = length - FRONT_SETBACK if is_route else length
        if end - start < 4.0:
            continue
        street_rng = np.random.default_rng(rng.integers(2**63))
        trees = street_rng.random() < 0.6
        for side in (-1.0, 1.0):
            # Buildings shoulder to shoulder along the street.
            u = start + street_rng.uniform(0.0, 2.0)
            while u < end - 4.0:
                width = float(min(street_rng.uniform(6.0, 20.0), end - u))
                depth = float(street_rng.uniform(10.0, 18.0))
                floors = int(street_rng.integers(2, 7))
                height = floors * float(street_rng.uniform(2.9, 3.6)) + float(street_rng.uniform(0.0, 1.0))
                a = p + direction * u + normal * side * FRONT_SETBACK
                b = p + direction * (u + width) + normal * side * (FRONT_SETBACK + depth)
                rect = (min(a[0], b[0]), max(a[0], b[0]), min(a[1], b[1]), max(a[1], b[1]))
                if not _rect_overlaps(rect, footprints):
                    footprints.append(rect)
                    front_dir = -normal * side
                    front = (
                        ("+x" if front_dir[0] > 0.5 else "-x")
                        if abs(front_dir[0]) > 0.5
                        else ("+y" if front_dir[1] > 0.5 else "-y")
                    )
                    tex = facade_texture(street_rng, width, height, floors)
                    buildings.append(
                        Building(*rect, height=height, front=front, texture=tex, front_width=width)
                    )
                    # A shop sign sticking out, an awning now and then.
                    if street_rng.random() < 0.35:
                        sw, sh = float(min(width * 0.6, street_rng.uniform(2.0, 5.0))), 0.8
                        c = p + direction * (u + width / 2) + normal * side * (FRONT_SETBACK - 0.1)
                        sign_textures.append(sign_texture(street_rng, sw, sh))
                        props.append(PropBox("box", "shop", (sw / 2, 0.1, sh / 2), (c[0], c[1], 3.9), yaw,
                                             (1, 1, 1, 1), emissive=True, texture=len(sign_textures) - 1))  # fmt: skip
                    if street_rng.random() < 0.2:
                        aw = float(min(width * 0.8, 6.0))
                        c = p + direction * (u + width / 2) + normal * side * (FRONT_SETBACK - 0.7)
                        col = tuple(
                            float(v) for v in _SIGN_COLOURS[street_rng.integers(len(_SIGN_COLOURS))] / 255
                        )
                        props.append(PropBox("box", "awning", (aw / 2, 0.7, 0.05), (c[0], c[1], 3.0), yaw,
                                             (*col, 1.0)))  # fmt: skip
                u += width + (street_rng.uniform(1.0, 5.0) if street_rng.random() < 0.25 else 0.0)
            # Street furniture on the pavement.
            lamp_phase = street_rng.uniform(0.0, 28.0) if side > 0 else street_rng.uniform(14.0, 28.0)
            for u in np.arange(max(start, 3.0) + lamp_phase % 28.0, end - 2.0, 28.0):
                base = p + direction * u + normal * side * (rw + 0.5)
                props.append(PropBox("cylinder", "pole", (0.08, 3.0, 0), (base[0], base[1], 3.0), 0.0,
                                     (0.25, 0.27, 0.28, 1)))  # fmt: skip
                arm = p + direction * u + normal * side * (rw - 0.4)
                props.append(PropBox("box", "pole", (0.9, 0.05, 0.05), (arm[0], arm[1], 6.0),
                                     float(np.arctan2(normal[1], normal[0])), (0.25, 0.27, 0.28, 1)))  # fmt: skip
                lamp = p + direction * u + normal * side * (rw - 1.2)
                props.append(PropBox("box", "lamp", (0.3, 0.15, 0.08), (lamp[0], lamp[1], 5.9), yaw,
                                     (0.95, 0.9, 0.7, 1), emissive=True))  # fmt: skip
                lights.append((lamp[0], lamp[1], 5.7))
            if trees:
                for u in np.arange(
                    start + street_rng.uniform(3.0, 10.0), end - 2.0, street_rng.uniform(9.0, 15.0)
                ):
                    base = p + direction * u + normal * side * (rw + 1.6 + street_rng.uniform(-0.2, 0.2))
                    if any(np.hypot(base[0] - lx, base[1] - ly) < 3.0 for lx, ly, _ in lights):
                        continue
                    trunk_h = float(street_rng.uniform(1.8, 3.0))
                    props.append(PropBox("cylinder", "trunk", (0.14, trunk_h / 2, 0), (base[0], base[1], trunk_h / 2),
                                         0.0, (0.35, 0.27, 0.2, 1)))  # fmt: skip
                    r = float(street_rng.uniform(1.3, 2.4))
                    green = np.array([0.22, 0.42, 0.16]) * street_rng.uniform(0.7, 1.3, size=3)
                    props.append(PropBox("ellipsoid", "tree", (r, r, r * street_rng.uniform(1.0, 1.5)),
                                         (base[0], base[1], trunk_h + r * 0.9), 0.0,
                                         (*np.clip(green, 0, 1).tolist(), 1.0)))  # fmt: skip
            for _ in range(int(street_rng.integers(1, 4))):  # sign posts
                u = street_rng.uniform(start, end)
                base = p + direction * u + normal * side * (rw + 0.4)
                props.append(PropBox("cylinder", "pole", (0.04, 1.3, 0), (base[0], base[1], 1.3), 0.0,
                                     (0.5, 0.5, 0.5, 1)))  # fmt: skip
                col = tuple(float(v) for v in _SIGN_COLOURS[street_rng.integers(len(_SIGN_COLOURS))] / 255)
                if street_rng.random() < 0.5:
                    props.append(PropBox("cylinder", "sign", (0.35, 0.02, 0), (base[0], base[1], 2.8),
                                         yaw, (*col, 1.0)))  # fmt: skip
                else:
                    props.append(PropBox("box", "sign", (0.02, 0.4, 0.3), (base[0], base[1], 2.8), yaw,
                                         (*col, 1.0)))  # fmt: skip
            for _ in range(int(street_rng.integers(0, 3))):  # bins and bollards
                u = street_rng.uniform(start, end)
                base = p + direction * u + normal * side * (rw + 0.5)
                if street_rng.random() < 0.5:
                    props.append(PropBox("cylinder", "bin", (0.3, 0.5, 0), (base[0], base[1], 0.5), 0.0,
                                         (0.1, 0.3, 0.15, 1)))  # fmt: skip
                else:
                    for k in range(3):
                        bb = base + direction * 1.2 * k
                        props.append(PropBox("cylinder", "bollard", (0.09, 0.5, 0), (bb[0], bb[1], 0.5), 0.0,
                                             (0.15, 0.15, 0.15, 1)))  # fmt: skip
            # Parking bays along the kerb, away from junctions.
            for u in np.arange(start + 8.0, end - 8.0, 6.0):
                c = p + direction * u + normal * side * PARKING_OFFSET
                heading = yaw if side > 0 else yaw + np.pi
                parking.append((c[0], c[1], heading))
        # Road markings: dashed centre line, give-way lines at the ends.
        for u in np.arange(start - 2.0, end, 9.0):
            c = p + direction * (u + 1.5)
            props.append(
                PropBox("box", "mark", (1.5, 0.08, 0.005), (c[0], c[1], 0.005), yaw, (0.9, 0.9, 0.85, 1))
            )
        for side in (-1.0, 1.0):
            for u in (start, end):
                if (u == end and not is_route) or (u == start and not is_route):
                    continue
                c = p + direction * u + normal * side * rw * 0.5
                if street_rng.random() < 0.5:
                    props.append(PropBox("box", "mark", (0.15, rw * 0.48, 0.005), (c[0], c[1], 0.005), yaw,
                                         (0.9, 0.9, 0.85, 1)))  # fmt: skip
        if is_route and street_rng.random() < 0.4:  # a zebra crossing
            u = street_rng.uniform(start + 10.0, max(end - 10.0, start + 10.5))
            for k in np.arange(-rw + 0.5, rw - 0.3, 1.0):
                c = p + direction * u + normal * k
                props.append(
                    PropBox("box", "mark", (1.5, 0.25, 0.005), (c[0], c[1], 0.005), yaw, (0.92, 0.92, 0.9, 1))
                )
    extent = float(max(np.ptp(points[:, 0]), np.ptp(points[:, 1]), 50.0)) + 100.0
    return Town(
        route=route,
        roads=roads,
        pavements=pavements,
        buildings=buildings,
        props=props,
        street_lights=np.array(lights, dtype=float).reshape(-1, 3),
        parking=np.array(parking, dtype=float).reshape(-1, 3),
        sign_textures=sign_textures,
        extent=extent,
    )


def _subtract_rects(
    rects: list[tuple[float, float, float, float]], holes: list[tuple[float, float, float, float]]
) -> list[tuple[float, float, float, float]]:
    """Axis-aligned rectangles minus other rectangles, as a list of axis-aligned pieces."""
    out = list(rects)
    for hx0, hx1, hy0, hy1 in holes:
        nxt: list[tuple[float, float, float, float]] = []
        for x0, x1, y0, y1 in out:
            if x0 >= hx1 - 1e-6 or hx0 >= x1 - 1e-6 or y0 >= hy1 - 1e-6 or hy0 >= y1 - 1e-6:
                nxt.append((x0, x1, y0, y1))
                continue
            if x0 < hx0:
                nxt.append((x0, hx0, y0, y1))
            if hx1 < x1:
                nxt.append((hx1, x1, y0, y1))
            cx0, cx1 = max(x0, hx0), min(x1, hx1)
            if y0 < hy0:
                nxt.append((cx0, cx1, y0, hy0))
            if hy1 < y1:
                nxt.append((cx0, cx1, hy1, y1))
        out = [r for r in nxt if r[1] - r[0] > 0.05 and r[3] - r[2] > 0.05]
    return out


def parked_cars(town: Town, seed: int, traversal: int, *, occupancy: float = 0.45) -> list[ParkedCar]:
    """Cars in the parking bays for one traversal: which bays, colours and small offsets vary."""
    rng = np.random.default_rng([seed, 2, traversal])
    colours = [(0.8, 0.1, 0.1), (0.1, 0.2, 0.6), (0.9, 0.9, 0.9), (0.1, 0.1, 0.1), (0.5, 0.5, 0.55),
               (0.2, 0.4, 0.25), (0.85, 0.75, 0.2), (0.4, 0.25, 0.15), (0.6, 0.7, 0.8)]  # fmt: skip
    cars = []
    for x, y, yaw in town.parking:
        if rng.random() > occupancy:
            continue
        shift = rng.uniform(-0.8, 0.8)
        col = colours[int(rng.integers(len(colours)))]
        cars.append(
            ParkedCar(
                x=float(x + shift * np.cos(yaw)),
                y=float(y + shift * np.sin(yaw)),
                yaw=float(yaw + rng.uniform(-0.03, 0.03)),
                length=float(rng.uniform(3.8, 4.8)),
                width=float(rng.uniform(1.65, 1.85)),
                rgba=(*col, 1.0),
            )
        )
    return cars


# ----------------------------------------------------------------------------- MuJoCo model


def _box_mesh(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    z0: float,
    z1: float,
    *,
    uv_wall: tuple[float, float],
    uv_top: tuple[float, float] | None,
    step: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed box (no bottom) as a mesh split into a grid of ``step``, with texture coordinates.

    Walls get ``u = metres along the wall / uv_wall[0]``, ``v = height / uv_wall[1]``; the top gets
    ``(x, y) / uv_top`` or a constant near the texture's top edge.
    """
    step = MESH_STEP if step is None else step
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    uvs: list[np.ndarray] = []
    count = 0

    def quad_grid(origin: np.ndarray, du: np.ndarray, dv: np.ndarray, uv0: np.ndarray, uv_du: np.ndarray,
                  uv_dv: np.ndarray) -> None:  # fmt: skip
        nonlocal count
        n_u = max(int(np.ceil(np.linalg.norm(du) / step)), 1)
        n_v = max(int(np.ceil(np.linalg.norm(dv) / step)), 1)
        su, sv = np.meshgrid(np.linspace(0, 1, n_u + 1), np.linspace(0, 1, n_v + 1), indexing="ij")
        su, sv = su.ravel(), sv.ravel()
        verts.append(origin + su[:, None] * du + sv[:, None] * dv)
        uvs.append(uv0 + su[:, None] * uv_du + sv[:, None] * uv_dv)
        idx = np.arange((n_u + 1) * (n_v + 1)).reshape(n_u + 1, n_v + 1) + count
        a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
        faces.append(np.stack([a, b, c], 1))
        faces.append(np.stack([a, c, d], 1))
        count += (n_u + 1) * (n_v + 1)

    corners = [(x0, y1), (x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    height = z1 - z0
    for (ax, ay), (bx, by) in itertools.pairwise(corners):
        a = np.array([ax, ay, z0])
        du = np.array([bx - ax, by - ay, 0.0])
        dv = np.array([0.0, 0.0, height])
        length = float(np.linalg.norm(du))
        quad_grid(
            a, du, dv, np.zeros(2), np.array([length / uv_wall[0], 0.0]), np.array([0.0, height / uv_wall[1]])
        )
    origin = np.array([x0, y0, z1])
    du, dv = np.array([x1 - x0, 0.0, 0.0]), np.array([0.0, y1 - y0, 0.0])
    if uv_top is None:
        quad_grid(origin, du, dv, np.array([0.01, 0.995]), np.zeros(2), np.zeros(2))
    else:
        quad_grid(origin, du, dv, np.array([x0 / uv_top[0], y0 / uv_top[1]]),
                  np.array([(x1 - x0) / uv_top[0], 0.0]), np.array([0.0, (y1 - y0) / uv_top[1]]))  # fmt: skip
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs)


def _add_texture(spec: mujoco.MjSpec, name: str, image: np.ndarray) -> None:
    """Add an RGB texture; ``image`` has row 0 at the top (MuJoCo's v = 0 is the first data row)."""
    flipped = np.ascontiguousarray(image[::-1])
    tex = spec.add_texture(
        name=name,
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        width=image.shape[1],
        height=image.shape[0],
        nchannel=3,
    )
    tex.data = flipped.tobytes()


def _add_material(spec: mujoco.MjSpec, name: str, texture: str | None = None, **kwargs: object) -> None:
    mat = spec.add_material(name=name, **kwargs)
    if texture is not None:
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = texture


def _yaw_quat(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _snowy(rgba: tuple[float, ...], amount: float) -> list[float]:
    return [float(c * (1 - amount) + 0.93 * amount) for c in rgba[:3]] + [float(rgba[3])]


_GEOM_TYPES = {
    "box": mujoco.mjtGeom.mjGEOM_BOX,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
}


def town_spec(
    town: Town,
    cars: list[ParkedCar],
    condition: Condition,
    *,
    width: int,
    height: int,
    camera: tuple[float, float, float, float],
    g_camera_image: np.ndarray,
    max_lights: int = 5,
    region: tuple[float, float, float, float] | None = None,
) -> mujoco.MjSpec:
    """The town as a MuJoCo model with a mocap body ``rig`` carrying camera ``camera`` and headlights.

    ``camera`` is ``(fx, fy, cx, cy)`` in pixels for images of ``width`` x ``height`` and
    ``g_camera_image`` the model's optical-to-vehicle transform; the rig's frame is the vehicle frame
    (x forward, y right, z down). ``max_lights`` street-light slots are added
    (placed per frame by the renderer) when the condition has street lights on.

    With ``region = (x0, x1, y0, y1)`` only the geoms overlapping that rectangle are added (with the
    same names, sizes and poses): a smaller model for fast ray casting in part of the town.
    """

    def wanted(x0: float, x1: float, y0: float, y1: float) -> bool:
        if region is None:
            return True
        return x0 <= region[1] and region[0] <= x1 and y0 <= region[3] and region[2] <= y1

    spec = mujoco.MjSpec()
    spec.modelname = "vbl_town"
    spec.compiler.degree = False
    spec.stat.extent = 100.0
    spec.stat.center = [0.0, 0.0, 0.0]
    spec.visual.global_.offwidth = width
    spec.visual.global_.offheight = height
    spec.visual.map.znear = 0.002  # x extent: 0.2 m
    spec.visual.map.zfar = 6.0  # 600 m
    spec.visual.quality.shadowsize = 2048
    spec.visual.quality.offsamples = 0
    condition.apply_to_spec(spec)
    snow = condition.snow
    rng = np.random.default_rng(7)

    for kind, cover in (("asphalt", 0.7), ("paving", 0.9), ("grass", 0.95)):
        image = _ground_texture(rng, kind).astype(float)
        if snow:  # snow cover: towards white, with the texture's pattern left as slush and tracks
            image = image * (1 - cover * snow) + 240.0 * cover * snow * (0.93 + 0.07 * image / 255.0)
        _add_texture(spec, kind, np.clip(image, 0, 255).astype(np.uint8))
    road_rgba = [1, 1, 1, 1]
    wet = condition.wet
    _add_material(spec, "road", "asphalt", rgba=road_rgba, specular=0.6 if wet else 0.1, shininess=0.8 if wet else 0.1,
                  reflectance=0.15 if wet else 0.0)  # fmt: skip
    _add_material(spec, "paving", "paving", rgba=[1, 1, 1, 1], specular=0.1)
    _add_material(spec, "grass", "grass", rgba=[1, 1, 1, 1], texrepeat=[0.2, 0.2],
                  texuniform=True)  # fmt: skip
    wb = spec.worldbody
    wb.add_geom(name="ground", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[town.extent * 3, town.extent * 3, 1.0],
                pos=[float(np.mean(town.route.points[:, 0])), float(np.mean(town.route.points[:, 1])), -0.03],
                material="grass", contype=0, conaffinity=0)  # fmt: skip

    def add_mesh_geom(name: str, mesh: tuple[np.ndarray, np.ndarray, np.ndarray], material: str) -> None:
        v, f, t = mesh
        centre = v.mean(axis=0)
        spec.add_mesh(name=name, uservert=(v - centre).ravel().tolist(), userface=f.ravel().tolist(),
                      usertexcoord=t.ravel().tolist())  # fmt: skip
        wb.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_MESH, meshname=name, material=material,
                    pos=centre.tolist(), contype=0, conaffinity=0)  # fmt: skip

    for k, (x0, x1, y0, y1) in enumerate(town.roads):
        if not wanted(x0, x1, y0, y1):
            continue
        add_mesh_geom(
            f"road_{k}", _box_mesh(x0, x1, y0, y1, -0.1, 0.0, uv_wall=(8, 8), uv_top=(8.0, 8.0)), "road"
        )
    for k, (x0, x1, y0, y1) in enumerate(town.pavements):
        if not wanted(x0, x1, y0, y1):
            continue
        add_mesh_geom(f"pave_{k}", _box_mesh(x0, x1, y0, y1, -0.1, KERB_HEIGHT, uv_wall=(2, 2), uv_top=(2.0, 2.0)),
                      "paving")  # fmt: skip
    for k, b in enumerate(town.buildings):
        if not wanted(b.x0, b.x1, b.y0, b.y1):
            continue
        _add_texture(spec, f"facade_{k}", b.texture)
        _add_material(spec, f"facade_{k}", f"facade_{k}", specular=0.15, shininess=0.2)
        along = b.front_width
        add_mesh_geom(f"bldg_{k}", _box_mesh(b.x0, b.x1, b.y0, b.y1, 0.0, b.height, uv_wall=(along, b.height),
                                             uv_top=None), f"facade_{k}")  # fmt: skip
        if snow:
            wb.add_geom(name=f"bldg_roof_{k}", type=mujoco.mjtGeom.mjGEOM_BOX,
                        size=[(b.x1 - b.x0) / 2 - 0.05, (b.y1 - b.y0) / 2 - 0.05, 0.1],
                        pos=[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2, b.height + 0.1],
                        rgba=[0.95, 0.95, 0.97, 1], contype=0, conaffinity=0)  # fmt: skip
    for k, tex in enumerate(town.sign_textures):
        _add_texture(spec, f"sign_{k}", tex)
        glow = 0.6 if condition.street_lights else 0.0
        _add_material(spec, f"sign_{k}", f"sign_{k}", emission=glow)
    lamp_glow = 1.0 if condition.street_lights else 0.0
    for k, prop in enumerate(town.props):
        reach = max(prop.size)
        if not wanted(prop.pos[0] - reach, prop.pos[0] + reach, prop.pos[1] - reach, prop.pos[1] + reach):
            continue
        rgba = list(prop.rgba)
        if snow and prop.cls in ("tree",):
            rgba = _snowy(prop.rgba, 0.45 * snow)
        kwargs: dict[str, object] = {}
        if prop.texture >= 0:
            kwargs["material"] = f"sign_{prop.texture}"
        else:
            kwargs["rgba"] = rgba
        if prop.cls == "lamp":
            kwargs.pop("rgba", None)
            _add_material(spec, f"lampmat_{k}", None, rgba=rgba, emission=lamp_glow)
            kwargs["material"] = f"lampmat_{k}"
        size = list(prop.size)
        if prop.kind == "cylinder" and prop.cls == "sign":
            # A round sign: a flat cylinder facing along the street.
            quat = _quat_mul(_yaw_quat(prop.yaw), [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0])
        else:
            quat = _yaw_quat(prop.yaw)
        wb.add_geom(name=f"{prop.cls}_{k}", type=_GEOM_TYPES[prop.kind], size=size, pos=list(prop.pos), quat=quat,
                    contype=0, conaffinity=0, **kwargs)  # fmt: skip
    for k, car in enumerate(cars):
        if not wanted(car.x - car.length, car.x + car.length, car.y - car.length, car.y + car.length):
            continue
        body = wb.add_body(name=f"parked_{k}", pos=[car.x, car.y, 0.0], quat=_yaw_quat(car.yaw))
        rgba = _snowy(car.rgba, 0.0)
        body.add_geom(name=f"car_{k}_body", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=[car.length / 2, car.width / 2, 0.33], pos=[0, 0, 0.68], rgba=rgba,
                      contype=0, conaffinity=0)  # fmt: skip
        cabin_rgba = _snowy(car.rgba, 0.8) if snow else rgba
        body.add_geom(name=f"car_{k}_cabin", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=[car.length * 0.27, car.width / 2 - 0.08, 0.26], pos=[-0.15, 0, 1.27], rgba=cabin_rgba,
                      contype=0, conaffinity=0)  # fmt: skip
        body.add_geom(name=f"glass_{k}", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=[car.length * 0.27 + 0.02, car.width / 2 - 0.1, 0.17], pos=[-0.15, 0, 1.3],
                      rgba=[0.12, 0.15, 0.2, 1], contype=0, conaffinity=0)  # fmt: skip
        for sx in (-1, 1):
            for sy in (-1, 1):
                body.add_geom(name=f"wheel_{k}_{sx}_{sy}", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                              size=[0.32, 0.1, 0], pos=[sx * car.length * 0.32, sy * (car.width / 2 - 0.05), 0.32],
                              quat=[np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0], rgba=[0.05, 0.05, 0.05, 1],
                              contype=0, conaffinity=0)  # fmt: skip
    # The vehicle rig: vehicle frame = stereo camera frame (x forward, y right, z down).
    rig = wb.add_body(name="rig", mocap=True)
    fx, fy, cx, cy = camera
    cam = rig.add_camera(name="stereo_centre")
    # MuJoCo cameras look along -z with y up; the optical frame looks along z with y down.
    r_vehicle_mjcam = np.asarray(g_camera_image, dtype=float)[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, r_vehicle_mjcam.ravel())
    cam.quat = q.tolist()
    cam.pos = np.asarray(g_camera_image, dtype=float)[:3, 3].tolist()
    cam.resolution = [width, height]
    cam.sensor_size = [width * 1e-3, height * 1e-3]
    cam.focal_pixel = [fx, fy]
    # Measured: MuJoCo shifts the image by minus its principal offset (see test_sim: projection).
    cam.principal_pixel = [(width - 1) / 2.0 - cx, (height - 1) / 2.0 - cy]
    if condition.headlights:
        for side in (-0.75, 0.75):
            rig.add_light(name=f"headlight_{'l' if side < 0 else 'r'}", type=mujoco.mjtLightType.mjLIGHT_SPOT,
                          pos=[1.8, side, 1.0], dir=[1.0, 0.0, 0.12], cutoff=35.0, exponent=8.0,
                          diffuse=[0.9, 0.88, 0.8], specular=[0.1, 0.1, 0.1], ambient=[0, 0, 0],
                          attenuation=[1.0, 0.0, 0.0015], castshadow=False)  # fmt: skip
    if condition.street_lights:
        for k in range(max_lights):
            wb.add_light(name=f"street_{k}", type=mujoco.mjtLightType.mjLIGHT_SPOT, pos=[0, 0, -100],
                         dir=[0, 0, -1], cutoff=65.0, exponent=2.0, diffuse=[1.0, 0.82, 0.55],
                         specular=[0.05, 0.05, 0.05], ambient=[0, 0, 0], attenuation=[1.0, 0.0, 0.012],
                         castshadow=False)  # fmt: skip
    return spec


def _quat_mul(a: list[float], b: list[float]) -> list[float]:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ]
