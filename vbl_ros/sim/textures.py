"""Procedural textures as RGB images (row 0 at the top): building facades, shop signs and ground."""

from __future__ import annotations

import numpy as np

__all__ = ["SIGN_COLOURS", "TEXTURE_PX_PER_M", "facade_texture", "ground_texture", "sign_texture"]

TEXTURE_PX_PER_M = 12.0  # facade texture resolution

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
SIGN_COLOURS = np.array(
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
        ink = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]
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
    shutter_col = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))] * 0.8
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
        colour = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]
        img[top : top + sign_h, :] = _text_band(rng, sign_h, w, colour)
        door_x = int(rng.uniform(0.1, 0.8) * w)
        img[top + sign_h : h, door_x : door_x + int(1.0 * sx)] = wall * 0.35
    else:
        door_x = int(rng.uniform(0.05, 0.85) * w)
        door = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))] * 0.7
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
    colour = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]
    return np.clip(_text_band(rng, h, w, colour), 0, 255).astype(np.uint8)


def ground_texture(rng: np.random.Generator, kind: str) -> np.ndarray:
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
