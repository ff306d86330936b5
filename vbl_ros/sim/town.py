"""The town along a route as plain numbers: streets, buildings, street furniture, parked cars.

:func:`build_town` lays out the town (a :class:`Town`), deterministic by seed: roads and pavements
along the route's streets and a little way into the side streets, buildings with their own facade
textures (:mod:`vbl_ros.sim.textures`), trees, street lights, sign posts, bollards, bins and parking
bays. :func:`parked_cars` fills parking bays differently for each traversal.
:func:`vbl_ros.sim.scene.town_spec` turns them into a MuJoCo model. The world frame is local ENU
(x east, y north, z up, metres); the road surface is at z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vbl_ros.sim.route import Route
from vbl_ros.sim.textures import SIGN_COLOURS, facade_texture, sign_texture

__all__ = [
    "ROAD_HALF_WIDTH",
    "PAVEMENT_WIDTH",
    "PropBox",
    "Building",
    "ParkedCar",
    "Town",
    "build_town",
    "parked_cars",
]

ROAD_HALF_WIDTH = 6.0  # kerb line from the street's centre line
PAVEMENT_WIDTH = 3.5
FRONT_SETBACK = ROAD_HALF_WIDTH + PAVEMENT_WIDTH  # building fronts from the centre line
PARKING_OFFSET = 5.0


@dataclass(frozen=True)
class PropBox:
    """A primitive geom: ``kind`` (mujoco geom type name), class name, size, pose and colour."""

    kind: str  # "box", "cylinder", "ellipsoid"
    cls: str  # surface class, a key of vbl_ros.sim.scene.REFLECTANCE
    size: tuple[float, float, float]
    pos: tuple[float, float, float]
    yaw: float
    rgba: tuple[float, float, float, float]
    texture: int = -1  # index into Town.sign_textures, or -1


@dataclass(frozen=True)
class Building:
    """An axis-aligned block ``[x0, x1] x [y0, y1] x [0, height]``, its facade ``front_width`` m wide."""

    x0: float
    x1: float
    y0: float
    y1: float
    height: float
    texture: np.ndarray = field(repr=False)  # (H, W, 3) uint8, row 0 at the top
    front_width: float = 0.0


@dataclass(frozen=True)
class ParkedCar:
    """A car in a parking bay: centre ``x, y`` on the ground, heading ``yaw``, size and colour."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class Town:
    """Everything static in the town, as numbers (:func:`vbl_ros.sim.scene.town_spec` makes the model)."""

    route: Route
    roads: list[tuple[float, float, float, float]]  # axis-aligned rectangles x0, x1, y0, y1
    pavements: list[tuple[float, float, float, float]]
    buildings: list[Building]
    props: list[PropBox]
    street_lights: np.ndarray  # (L, 3) lamp positions
    parking: np.ndarray  # (P, 3) x, y, yaw of parking bays
    sign_textures: list[np.ndarray] = field(repr=False)
    extent: float = 0.0


def _rect_overlaps(
    rect: tuple[float, float, float, float], others: list[tuple[float, float, float, float]]
) -> bool:
    x0, x1, y0, y1 = rect
    return any(
        x0 < b1 - 0.01 and b0 < x1 - 0.01 and y0 < d1 - 0.01 and d0 < y1 - 0.01 for b0, b1, d0, d1 in others
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
    pavements = _subtract_rects(pavements, roads)
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
                    tex = facade_texture(street_rng, width, height, floors)
                    buildings.append(Building(*rect, height=height, texture=tex, front_width=width))
                    # A shop sign sticking out, an awning now and then.
                    if street_rng.random() < 0.35:
                        sw, sh = float(min(width * 0.6, street_rng.uniform(2.0, 5.0))), 0.8
                        c = p + direction * (u + width / 2) + normal * side * (FRONT_SETBACK - 0.1)
                        sign_textures.append(sign_texture(street_rng, sw, sh))
                        props.append(PropBox("box", "shop", (sw / 2, 0.1, sh / 2), (c[0], c[1], 3.9), yaw,
                                             (1, 1, 1, 1), texture=len(sign_textures) - 1))  # fmt: skip
                    if street_rng.random() < 0.2:
                        aw = float(min(width * 0.8, 6.0))
                        c = p + direction * (u + width / 2) + normal * side * (FRONT_SETBACK - 0.7)
                        col = tuple(
                            float(v) for v in SIGN_COLOURS[street_rng.integers(len(SIGN_COLOURS))] / 255
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
                                     (0.95, 0.9, 0.7, 1)))  # fmt: skip
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
                col = tuple(float(v) for v in SIGN_COLOURS[street_rng.integers(len(SIGN_COLOURS))] / 255)
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
        if is_route:  # give-way lines where the route street meets the junctions
            for side in (-1.0, 1.0):
                for u in (start, end):
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
