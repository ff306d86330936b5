"""The town as a MuJoCo model (``mujoco.MjSpec``): meshes, materials, props, cars, lights, camera rig.

:func:`town_spec` turns a :class:`~vbl_ros.sim.town.Town`, its parked cars and a
:class:`~vbl_ros.sim.render.Condition` into a ``mujoco.MjSpec`` (snow on the ground, lit shop signs
at night, lights). Every solid geom is a box, cylinder, ellipsoid or a closed mesh in group 0, so the
renderer and the LIDAR ray caster (:mod:`vbl_ros.sim.lidar`) see the same surfaces; a geom's name
starts with its surface class, a key of :data:`REFLECTANCE`. Large faces are meshes split into a
grid of about 2 m, because the renderer lights per vertex (street lights at night need vertices).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import itertools

import mujoco
import numpy as np

from vbl_ros.sim.render import Condition
from vbl_ros.sim.textures import ground_texture
from vbl_ros.sim.town import ParkedCar, Town

__all__ = ["REFLECTANCE", "town_spec"]

KERB_HEIGHT = 0.12
MESH_STEP = 2.0

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed box (no bottom) as a mesh split into a grid of ``MESH_STEP``, with texture coordinates.

    Walls get ``u = metres along the wall / uv_wall[0]``, ``v = height / uv_wall[1]``; the top gets
    ``(x, y) / uv_top`` or a constant near the texture's top edge.
    """
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    uvs: list[np.ndarray] = []
    count = 0

    def quad_grid(origin: np.ndarray, du: np.ndarray, dv: np.ndarray, uv0: np.ndarray, uv_du: np.ndarray,
                  uv_dv: np.ndarray) -> None:  # fmt: skip
        nonlocal count
        n_u = max(int(np.ceil(np.linalg.norm(du) / MESH_STEP)), 1)
        n_v = max(int(np.ceil(np.linalg.norm(dv) / MESH_STEP)), 1)
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


def _quat_mul(a: list[float], b: list[float]) -> list[float]:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ]


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
        image = ground_texture(rng, kind).astype(float)
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
        rgba = list(car.rgba)
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
