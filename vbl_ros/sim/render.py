"""Offscreen rendering of the simulated town with MuJoCo (RGB and depth), and weather conditions.

A :class:`Condition` sets the sky, the lights (overcast sky light, low sun with shadows, dusk, night
with headlights and street lights), MuJoCo's fog, snow on the ground (applied when the world is
built), wet roads, and image post-processing (rain streaks, snowflakes, exposure, sensor noise).

:class:`SceneRenderer` renders the camera on the model's mocap body ``rig`` at vehicle poses
``T_world_vehicle``. Depth is metres along the optical axis (0 where nothing was hit), exactly the
geometry the LIDAR ray caster sees.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dataclasses import dataclass

import cv2
import mujoco
import numpy as np

from vbl_ros.errors import ConfigError

__all__ = ["Condition", "CONDITIONS", "SceneRenderer", "post_process", "condition"]

Rgb = tuple[float, float, float]


@dataclass(frozen=True)
class Condition:
    """Appearance of one traversal. Fog distances in metres; colours in [0, 1]."""

    name: str
    tags: tuple[str, ...]
    sky_top: Rgb
    sky_bottom: Rgb
    ambient: float
    sky_light: float  # diffuse light from above (overcast sky), no shadows
    sun_dir: tuple[float, float, float] | None = None  # direction the sunlight travels (world ENU)
    sun_colour: Rgb = (1.0, 0.95, 0.85)
    shadows: bool = False
    fog: tuple[float, float, Rgb] | None = None  # (start, end, colour)
    street_lights: bool = False
    headlights: bool = False
    snow: float = 0.0  # 0..1 snow cover
    wet: bool = False
    rain: float = 0.0  # 0..1 rain streak density
    snowfall: float = 0.0  # 0..1 snowflake density
    gain: float = 1.0  # exposure
    tint: Rgb = (1.0, 1.0, 1.0)
    noise: float = 1.5  # sensor noise, grey levels
    hour: float = 12.0  # local time of day of the traversal (for its folder name)

    def apply_to_spec(self, spec: mujoco.MjSpec) -> None:
        """Sky box, global lights and fog of this condition on a model being built."""
        sky = spec.add_texture(
            name="sky",
            type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
            builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
            rgb1=list(self.sky_top),
            rgb2=list(self.sky_bottom),
            width=64,
            height=384,
        )
        del sky
        spec.visual.headlight.active = 0
        spec.visual.headlight.ambient = [0.0, 0.0, 0.0]
        spec.visual.headlight.diffuse = [0.0, 0.0, 0.0]
        spec.visual.headlight.specular = [0.0, 0.0, 0.0]
        amb = [self.ambient] * 3
        spec.worldbody.add_light(name="sky_light", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                                 pos=[0, 0, 100], dir=[0.25, 0.35, -1.0], diffuse=[self.sky_light] * 3,
                                 ambient=amb, specular=[0.05] * 3, castshadow=False)  # fmt: skip
        if self.sun_dir is not None:
            spec.worldbody.add_light(name="sun", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                                     pos=[0, 0, 100], dir=list(self.sun_dir), diffuse=list(self.sun_colour),
                                     ambient=[0, 0, 0], specular=[0.3] * 3, castshadow=self.shadows)  # fmt: skip
        extent = spec.stat.extent
        if self.fog is not None:
            start, end, colour = self.fog
            spec.visual.map.fogstart = start / extent
            spec.visual.map.fogend = end / extent
            spec.visual.rgba.fog = [*colour, 1.0]
        spec.visual.map.shadowclip = 0.6  # x extent: 60 m around the camera
        spec.visual.map.haze = 0.0


CONDITIONS: dict[str, Condition] = {
    "overcast": Condition(
        "overcast", ("overcast",), (0.72, 0.74, 0.78), (0.88, 0.88, 0.88), ambient=0.5, sky_light=0.45, hour=11.0
    ),
    "sun": Condition(
        "sun", ("sun",), (0.3, 0.5, 0.88), (0.72, 0.82, 0.95), ambient=0.32, sky_light=0.15,
        sun_dir=(-0.55, 0.45, -0.7), sun_colour=(0.95, 0.9, 0.78), shadows=False, gain=1.05, hour=14.0,
    ),
    "dusk": Condition(
        "dusk", ("dusk",), (0.2, 0.22, 0.42), (0.95, 0.55, 0.3), ambient=0.16, sky_light=0.05,
        sun_dir=(0.85, -0.3, -0.22), sun_colour=(0.7, 0.42, 0.25), shadows=False, street_lights=True,
        headlights=True, tint=(1.05, 0.95, 0.85), noise=2.5, hour=16.5,
    ),
    "night": Condition(
        "night", ("night",), (0.01, 0.012, 0.03), (0.05, 0.045, 0.06), ambient=0.025, sky_light=0.0,
        street_lights=True, headlights=True, gain=1.3, noise=4.0, hour=19.0,
    ),
    "rain": Condition(
        "rain", ("rain", "overcast"), (0.5, 0.52, 0.55), (0.62, 0.63, 0.65), ambient=0.32, sky_light=0.25,
        fog=(30.0, 260.0, (0.55, 0.57, 0.6)), headlights=True, wet=True, rain=0.7, gain=0.95, noise=2.5,
        hour=9.5,
    ),
    "snow": Condition(
        "snow", ("snow",), (0.8, 0.82, 0.85), (0.92, 0.92, 0.94), ambient=0.55, sky_light=0.4,
        fog=(20.0, 220.0, (0.86, 0.87, 0.9)), snow=1.0, snowfall=0.6, tint=(0.97, 0.99, 1.04), hour=9.0,
    ),
    "fog": Condition(
        "fog", ("fog", "overcast"), (0.7, 0.71, 0.73), (0.75, 0.76, 0.78), ambient=0.45, sky_light=0.35,
        fog=(4.0, 70.0, (0.74, 0.75, 0.77)), headlights=True, hour=8.5,
    ),
}  # fmt: skip


def condition(name: str) -> Condition:
    """The :class:`Condition` called ``name``."""
    try:
        return CONDITIONS[name]
    except KeyError as err:
        raise ConfigError(f"unknown condition {name!r}; choose from {sorted(CONDITIONS)}") from err


def post_process(rgb: np.ndarray, cond: Condition, rng: np.random.Generator) -> np.ndarray:
    """Camera effects of ``cond`` on a rendered RGB image: exposure, tint, rain, snow, noise."""
    img = rgb.astype(np.float32)
    h, w = img.shape[:2]
    img *= np.asarray(cond.tint, dtype=np.float32) * cond.gain
    if cond.rain > 0:
        img = cv2.GaussianBlur(img, (0, 0), 0.6)
        layer = np.zeros((h, w), np.float32)
        n = int(cond.rain * h * w / 150)
        xs = rng.uniform(0, w, n)
        ys = rng.uniform(0, h, n)
        length = rng.uniform(0.03, 0.1, n) * h
        slant = rng.normal(0.15, 0.03)
        for x, y, ln in zip(xs, ys, length, strict=False):
            cv2.line(layer, (int(x), int(y)), (int(x + slant * ln), int(y + ln)), 1.0, 1, cv2.LINE_AA)
        img = img * (1 - 0.25 * layer[..., None]) + 200.0 * 0.25 * layer[..., None]
        for _ in range(int(rng.integers(3, 8))):  # drops on the lens
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.02, 0.05) * w
            mask = np.zeros((h, w), np.float32)
            cv2.circle(mask, (int(cx), int(cy)), int(r), 1.0, -1, cv2.LINE_AA)
            blurred = cv2.GaussianBlur(img, (0, 0), 3.0)
            img = img * (1 - mask[..., None]) + blurred * mask[..., None]
    if cond.snowfall > 0:
        layer = np.zeros((h, w), np.float32)
        n = int(cond.snowfall * h * w / 300)
        for x, y, r in zip(
            rng.uniform(0, w, n), rng.uniform(0, h, n), rng.gamma(1.5, 0.5, n) * w / 320, strict=False
        ):
            cv2.circle(
                layer, (int(x), int(y)), max(round(r), 1), float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA
            )
        layer = cv2.GaussianBlur(layer, (0, 0), 0.7)
        img = img * (1 - layer[..., None]) + 245.0 * layer[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1.0 - 0.12 * r2)[..., None]  # vignetting
    img += rng.normal(0.0, cond.noise, size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class SceneRenderer:
    """Render the ``stereo_centre`` camera of a town model at vehicle poses.

    Street-light slots (lights named ``street_<k>``) are moved to the street lamps nearest the view
    for each frame, since the renderer shades with a handful of lights only.
    """

    def __init__(self, model: mujoco.MjModel, width: int, height: int, cond: Condition,
                 street_lights: np.ndarray | None = None) -> None:  # fmt: skip
        self.model = model
        self.data = mujoco.MjData(model)
        self.condition = cond
        self.width, self.height = width, height
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        self._rig = model.body("rig").mocapid[0]
        self._slots = [
            model.light(k).id for k in range(model.nlight) if model.light(k).name.startswith("street_")
        ]
        self._lamps = np.zeros((0, 3)) if street_lights is None else np.asarray(street_lights, dtype=float)
        self._zfar = model.vis.map.zfar * model.stat.extent

    def close(self) -> None:
        self._renderer.close()

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_pose(self, t_world_vehicle: np.ndarray) -> None:
        """Place the rig (camera and headlights) and the street-light slots; update kinematics."""
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(t_world_vehicle[:3, :3]).ravel())
        self.data.mocap_pos[self._rig] = t_world_vehicle[:3, 3]
        self.data.mocap_quat[self._rig] = quat
        if self._slots and len(self._lamps):
            ahead = t_world_vehicle[:3, 3] + 15.0 * t_world_vehicle[:3, 0]
            order = np.argsort(np.linalg.norm(self._lamps[:, :2] - ahead[:2], axis=1))
            for slot, lamp in zip(self._slots, order, strict=False):
                self.model.light_pos[slot] = self._lamps[lamp]
                self.model.light_dir[slot] = (0.0, 0.0, -1.0)
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    def render(self, t_world_vehicle: np.ndarray, *, depth: bool = False,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
        """``(rgb uint8 (H, W, 3), depth float32 (H, W) or None)`` at pose ``T_world_vehicle``.

        ``rng`` drives the post-processing (rain, snow, noise); without it the image is the raw render.
        """
        self.set_pose(t_world_vehicle)
        r = self._renderer
        r.update_scene(self.data, camera="stereo_centre")
        r.scene.flags[mujoco.mjtRndFlag.mjRND_FOG] = self.condition.fog is not None
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.condition.shadows
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        rgb = r.render().copy()
        depth_map = None
        if depth:
            r.enable_depth_rendering()
            try:
                r.update_scene(self.data, camera="stereo_centre")
                depth_map = r.render().astype(np.float32)
            finally:
                r.disable_depth_rendering()
            depth_map[depth_map >= 0.99 * self._zfar] = 0.0
        if rng is not None:
            rgb = post_process(rgb, self.condition, rng)
        return rgb, depth_map
