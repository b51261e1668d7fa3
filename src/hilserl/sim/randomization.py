"""Domain randomization hooks for the grasp-cube scene (all off by default).

Each hook perturbs the compiled model around the nominal values it had when the environment was built, once per
reset, so randomization never drifts and turning a hook off restores the nominal scene.

Two phases. `Randomizer.apply` (light, colours, camera pose, cube size/friction/mass) runs before the gripper and
cube are placed, as it always has. `Randomizer.apply_after_placement` (table and backdrop textures, distractors,
field of view, colour temperature, image corruption, action latency, gripper backlash, and the held-out look of
`hilserl.sim.looks`) runs after, so none of these changes an episode's start state: the same seed gives the same
arm and cube with or without them. Per-step effects (latency, backlash, image corruption) are left in
`Randomizer.effects` for the env to use.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from hilserl.sim.image_noise import ImageCorruption
from hilserl.sim.looks import LOOKS, Look, look_texture
from hilserl.sim.scene import (DR_BACKDROP_GEOMS, DR_BACKDROP_TEXTURE, DR_DISTRACTORS, DR_HIDDEN_GROUP,
                               DR_TABLE_TEXTURE)
from hilserl.sim.textures import blackbody_gain, draw_training_texture

_BEFORE = ("light", "colors", "camera_pose", "cube_size", "cube_friction", "cube_mass")
_AFTER = ("table_texture", "background", "distractors", "camera_fov", "color_temperature", "image_noise",
          "image_blur", "image_color", "image_jpeg", "action_latency", "gripper_backlash")
_RANGES = ("light_scale", "cube_size_range", "cube_friction_range", "cube_mass_range", "table_texture_scale",
           "distractor_count", "distractor_distance", "color_temperature_range", "image_noise_std",
           "image_blur_sigma", "image_saturation", "image_contrast", "image_jpeg_quality", "gripper_backlash_range")
# the hooks that change only what the camera sees (the rest change the physics or the timing): the ones the view
# curriculum (`train.view_curriculum`) leaves at nominal in an episode it does not randomize
VIEW_HOOKS = ("light", "colors", "camera_pose", "table_texture", "background", "distractors", "camera_fov",
              "color_temperature", "image_noise", "image_blur", "image_color", "image_jpeg")


@dataclass
class DomainRandomization:
    light: bool = False  # light intensity and direction
    light_scale: tuple[float, float] = (0.5, 1.3)
    colors: bool = False  # cube and table colours
    color_jitter: float = 0.15
    camera_pose: bool = False  # gripper camera position/orientation jitter
    camera_pos_jitter: float = 0.003  # m
    camera_rot_jitter_deg: float = 3.0
    cube_size: bool = False
    cube_size_range: tuple[float, float] = (0.022, 0.028)  # edge length, m
    cube_friction: bool = False
    cube_friction_range: tuple[float, float] = (0.6, 1.2)
    cube_mass: bool = False
    cube_mass_range: tuple[float, float] = (0.01, 0.05)  # kg
    # --- drawn after the arm and cube are placed: never change an episode's start state
    table_texture: bool = False  # procedural table texture: a training family in training colours
    table_texture_scale: tuple[float, float] = (0.5, 2.0)  # pattern fineness (1: 2-6 cells per 25 cm tile)
    background: bool = False  # the backdrop walls appear, with a procedural texture (seen by the front camera)
    distractors: bool = False  # small visual-only objects (no contacts) on the table around the cube
    distractor_count: tuple[int, int] = (1, 4)  # how many, at most len(scene.DR_DISTRACTORS)
    distractor_distance: tuple[float, float] = (0.045, 0.10)  # m from the cube's centre
    camera_fov: bool = False  # gripper camera's vertical field of view
    camera_fovy_jitter_deg: float = 4.0  # ± degrees around the nominal
    color_temperature: bool = False  # tint of every light (headlight and scene light)
    color_temperature_range: tuple[float, float] = (4500.0, 8500.0)  # K; 6500 K is the nominal white
    image_noise: bool = False  # additive Gaussian noise on every camera frame, fresh each frame
    image_noise_std: tuple[float, float] = (1.0, 6.0)  # grey levels (0-255)
    image_blur: bool = False  # Gaussian blur of every camera frame
    image_blur_sigma: tuple[float, float] = (0.3, 1.0)  # px
    image_color: bool = False  # the camera's colour processing: saturation and contrast of every camera frame
    image_saturation: tuple[float, float] = (0.6, 1.8)  # times each pixel's colour away from its grey
    image_contrast: tuple[float, float] = (0.75, 1.35)  # times each pixel's distance from the frame's mean grey
    image_jpeg: bool = False  # JPEG round trip of every camera frame
    image_jpeg_quality: tuple[int, int] = (40, 90)
    action_latency: bool = False  # the env applies the previous step's command (one control tick late)
    action_latency_prob: float = 1.0  # fraction of episodes with the delay
    gripper_backlash: bool = False  # play between the jaw servo and the jaw
    gripper_backlash_range: tuple[float, float] = (0.0, 0.08)  # rad of play

    @property
    def any(self) -> bool:
        return self.before_placement or self.after_placement

    @property
    def before_placement(self) -> bool:
        """Hooks applied before the gripper and cube are placed (they may change the model's physics)."""
        return any(getattr(self, h) for h in _BEFORE)

    @property
    def after_placement(self) -> bool:
        """Hooks applied after placement (appearance, image, latency, backlash); the start state stays the same."""
        return any(getattr(self, h) for h in _AFTER)

    def validate(self) -> None:
        for name in _RANGES:
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}: expected low <= high, got {getattr(self, name)!r}")
        lo, hi = self.distractor_count
        if not 0 <= lo <= hi <= len(DR_DISTRACTORS):
            raise ValueError(f"distractor_count: expected 0 <= low <= high <= {len(DR_DISTRACTORS)}, got "
                             f"{self.distractor_count!r}")
        if not 1 <= self.image_jpeg_quality[0] <= self.image_jpeg_quality[1] <= 100:
            raise ValueError(f"image_jpeg_quality: expected values in 1..100, got {self.image_jpeg_quality!r}")
        if not 0.0 <= self.action_latency_prob <= 1.0:
            raise ValueError(f"action_latency_prob: expected 0..1, got {self.action_latency_prob!r}")
        for name in ("table_texture_scale", "distractor_distance", "image_noise_std", "image_blur_sigma",
                     "image_saturation", "image_contrast", "gripper_backlash_range"):
            if getattr(self, name)[0] < 0:
                raise ValueError(f"{name}: expected non-negative values, got {getattr(self, name)!r}")
        if self.color_temperature_range[0] < 1000.0:
            raise ValueError(f"color_temperature_range: expected >= 1000 K, got {self.color_temperature_range!r}")


@dataclass
class Effects:
    """One episode's per-step effects, for the env."""
    latency: bool = False  # apply the previous step's command
    backlash: float = 0.0  # rad of play between the jaw servo and the jaw
    image: ImageCorruption | None = None  # applied to every camera frame


class Randomizer:
    """Applies a DomainRandomization (and a look) to a model; remembers the nominal values to perturb from."""

    def __init__(self, model: mujoco.MjModel, cfg: DomainRandomization, look: str = "nominal"):
        self.model = model
        self.cfg = cfg
        self.look: Look | None = LOOKS[look]
        self.look_name = look
        self.cube_geom = model.geom("cube").id
        self.cube_body = model.body("cube").id
        self.cube_mat = model.material("cube").id
        self.table_mat = model.material("table").id
        self.table_geom = model.geom("table").id
        self.cam = model.camera("gripper").id
        self.nominal = {
            "light_diffuse": model.light_diffuse.copy(),
            "light_dir": model.light_dir.copy(),
            "cube_rgba": model.mat_rgba[self.cube_mat].copy(),
            "table_rgba": model.mat_rgba[self.table_mat].copy(),
            "cam_pos": model.cam_pos[self.cam].copy(),
            "cam_quat": model.cam_quat[self.cam].copy(),
            "cube_size": model.geom_size[self.cube_geom].copy(),
            "cube_friction": model.geom_friction[self.cube_geom].copy(),
            "cube_mass": float(model.body_mass[self.cube_body]),
            "cam_fovy": float(model.cam_fovy[self.cam]),
            "headlight": (model.vis.headlight.ambient.copy(), model.vis.headlight.diffuse.copy()),
        }
        self.effects = Effects()
        # False for one reset: the view hooks stay at nominal (the env's `view_share` reset option; the physics
        # and timing hooks are drawn as configured)
        self.view = True
        self._dirty_textures: set[int] = set()
        self._texture_key: dict[int, object] = {}  # what each randomization texture holds now
        self.has_assets = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXTURE, DR_TABLE_TEXTURE) >= 0
        if self.has_assets:
            self.table_tex = model.texture(DR_TABLE_TEXTURE).id
            self.table_dr_mat = model.material(DR_TABLE_TEXTURE).id
            self.backdrop_tex = model.texture(DR_BACKDROP_TEXTURE).id
            self.backdrop_geoms = [model.geom(g).id for g in DR_BACKDROP_GEOMS]
            self.distractor_geoms = [model.geom(f"distractor{i}").id for i in range(len(DR_DISTRACTORS))]
            self.distractor_mats = [model.material(f"distractor{i}").id for i in range(len(DR_DISTRACTORS))]
            self.nominal["table_matid"] = int(model.geom_matid[self.table_geom])
            self.nominal["distractor_pos"] = model.geom_pos[self.distractor_geoms].copy()

    def _on(self, hook: str) -> bool:
        """Whether `hook` is drawn this reset: configured, and not a view hook in an episode with a nominal view."""
        return bool(getattr(self.cfg, hook)) and (self.view or hook not in VIEW_HOOKS)

    @property
    def active_after_placement(self) -> bool:
        return self.cfg.after_placement or self.look is not None

    def apply(self, rng: np.random.Generator) -> dict:
        """Perturb the model; returns what was drawn (for logging and reproducibility)."""
        m, c, n = self.model, self.cfg, self.nominal
        drawn: dict = {}
        m.light_diffuse[:] = n["light_diffuse"]
        m.light_dir[:] = n["light_dir"]
        if self._on("light"):
            s = rng.uniform(*c.light_scale)
            m.light_diffuse[:] = np.clip(n["light_diffuse"] * s, 0, 1)
            tilt = rng.normal(0, 0.25, size=(m.nlight, 2))
            d = n["light_dir"].copy()
            d[:, :2] += tilt
            m.light_dir[:] = d / np.linalg.norm(d, axis=1, keepdims=True)
            drawn["light_scale"] = float(s)
        for key, mid in (("cube_rgba", self.cube_mat), ("table_rgba", self.table_mat)):
            m.mat_rgba[mid] = n[key]
            if self._on("colors"):
                m.mat_rgba[mid, :3] = np.clip(n[key][:3] + rng.uniform(-c.color_jitter, c.color_jitter, 3), 0, 1)
        m.cam_pos[self.cam] = n["cam_pos"]
        m.cam_quat[self.cam] = n["cam_quat"]
        if self._on("camera_pose"):
            m.cam_pos[self.cam] = n["cam_pos"] + rng.uniform(-c.camera_pos_jitter, c.camera_pos_jitter, 3)
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            angle = np.deg2rad(rng.uniform(-c.camera_rot_jitter_deg, c.camera_rot_jitter_deg))
            dq = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
            q = np.zeros(4)
            mujoco.mju_mulQuat(q, n["cam_quat"], dq)
            m.cam_quat[self.cam] = q
        h = n["cube_size"][0]
        if c.cube_size:
            h = rng.uniform(*c.cube_size_range) / 2
            drawn["cube_size"] = 2 * float(h)
        set_cube_half_size(self.model, self.cube_geom, h)
        m.geom_friction[self.cube_geom] = n["cube_friction"]
        if c.cube_friction:
            m.geom_friction[self.cube_geom, 0] = rng.uniform(*c.cube_friction_range)
            drawn["cube_friction"] = float(m.geom_friction[self.cube_geom, 0])
        mass = rng.uniform(*c.cube_mass_range) if c.cube_mass else n["cube_mass"]
        m.body_mass[self.cube_body] = mass
        m.body_inertia[self.cube_body] = mass * (2 * h) ** 2 / 6
        return drawn

    # ------------------------------------------------------------------ after placement
    def apply_after_placement(self, rng: np.random.Generator, cube_xy) -> dict:
        """The appearance, image and dynamics hooks and the look; returns what was drawn. Call
        `take_dirty_textures` afterwards and re-upload those textures to every live renderer."""
        if not self.has_assets:
            raise ValueError("env.scene.randomization_assets: must be true for the appearance hooks and the looks")
        m, c, n = self.model, self.cfg, self.nominal
        drawn: dict = {}
        self._restore_appearance()
        if self._on("table_texture"):
            tex, drawn["table_texture"] = draw_training_texture(rng, m.tex_width[self.table_tex], c.table_texture_scale)
            self._write_texture(self.table_tex, tex, key=None)
            m.geom_matid[self.table_geom] = self.table_dr_mat
        if self._on("background"):
            tex, drawn["background"] = draw_training_texture(rng, m.tex_width[self.backdrop_tex])
            self._write_texture(self.backdrop_tex, tex, key=None)
            m.geom_group[self.backdrop_geoms] = 1
        if self._on("distractors"):
            drawn["distractors"] = self._place_distractors(rng, np.asarray(cube_xy, float)[:2])
        if self._on("camera_fov"):
            m.cam_fovy[self.cam] = n["cam_fovy"] + rng.uniform(-c.camera_fovy_jitter_deg, c.camera_fovy_jitter_deg)
            drawn["camera_fovy"] = float(m.cam_fovy[self.cam])
        if self._on("color_temperature"):
            drawn["color_temperature"] = float(rng.uniform(*c.color_temperature_range))
            self._tint_lights(drawn["color_temperature"])
        drawn.update(self._draw_effects(rng))
        if self.look is not None:
            self._apply_look(self.look)
            drawn["look"] = self.look_name
        return drawn

    def take_dirty_textures(self) -> list[int]:
        """Ids of the textures rewritten since the last call (to upload to the renderers)."""
        ids, self._dirty_textures = sorted(self._dirty_textures), set()
        return ids

    def _restore_appearance(self) -> None:
        m, n = self.model, self.nominal
        if not self.cfg.before_placement:  # else `apply` has just set the light and camera pose this reset
            m.light_diffuse[:], m.light_dir[:] = n["light_diffuse"], n["light_dir"]
            m.cam_pos[self.cam], m.cam_quat[self.cam] = n["cam_pos"], n["cam_quat"]
        m.geom_matid[self.table_geom] = n["table_matid"]
        m.geom_group[self.backdrop_geoms] = DR_HIDDEN_GROUP
        m.geom_group[self.distractor_geoms] = DR_HIDDEN_GROUP
        m.geom_pos[self.distractor_geoms] = n["distractor_pos"]
        m.cam_fovy[self.cam] = n["cam_fovy"]
        m.vis.headlight.ambient[:], m.vis.headlight.diffuse[:] = n["headlight"]
        self.effects = Effects()

    def _write_texture(self, texid: int, tex: np.ndarray, key) -> None:
        """Write `tex` into the model's texture `texid`; `key` names fixed content (None: fresh every time)."""
        if key is not None and self._texture_key.get(texid) == key:
            return
        m = self.model
        adr, h, w = m.tex_adr[texid], m.tex_height[texid], m.tex_width[texid]
        m.tex_data[adr:adr + h * w * 3] = np.asarray(tex, np.uint8).reshape(-1)
        self._texture_key[texid] = key
        self._dirty_textures.add(texid)

    def _place_distractors(self, rng: np.random.Generator, cube_xy: np.ndarray) -> list:
        """Put some distractors on the table around the cube, apart from it and from each other."""
        m, c = self.model, self.cfg
        count = int(rng.integers(c.distractor_count[0], c.distractor_count[1] + 1))
        placed: list[np.ndarray] = []
        out = []
        for g, mat in zip(self.distractor_geoms[:count], self.distractor_mats[:count]):
            for _ in range(20):
                angle, r = rng.uniform(0, 2 * np.pi), rng.uniform(*c.distractor_distance)
                xy = cube_xy + r * np.array([np.cos(angle), np.sin(angle)])
                if all(np.linalg.norm(xy - p) > 0.035 for p in placed):
                    break
            else:
                continue
            placed.append(xy)
            size = m.geom_size[g]
            half_height = {mujoco.mjtGeom.mjGEOM_BOX: size[2], mujoco.mjtGeom.mjGEOM_CYLINDER: size[1]}.get(
                m.geom_type[g], size[0])
            m.geom_pos[g] = [xy[0], xy[1], half_height]
            yaw = rng.uniform(0, np.pi)
            m.geom_quat[g] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            m.mat_rgba[mat, :3] = _distractor_colour(rng)
            m.geom_group[g] = 1
            out.append([round(float(v), 4) for v in (*xy, yaw)])
        return out

    def _tint_lights(self, kelvin: float) -> None:
        gain = blackbody_gain(kelvin)
        m = self.model
        m.light_diffuse[:] = np.clip(m.light_diffuse * gain, 0, 1)
        amb, dif = self.nominal["headlight"]
        m.vis.headlight.ambient[:] = np.clip(amb * gain, 0, 1)
        m.vis.headlight.diffuse[:] = np.clip(dif * gain, 0, 1)

    def _draw_effects(self, rng: np.random.Generator) -> dict:
        c = self.cfg
        drawn: dict = {}
        if any(self._on(h) for h in ("image_noise", "image_blur", "image_color", "image_jpeg")):
            img = ImageCorruption()
            if self._on("image_blur"):
                img.blur_sigma = drawn["image_blur_sigma"] = float(rng.uniform(*c.image_blur_sigma))
            if self._on("image_noise"):
                img.noise_std = drawn["image_noise_std"] = float(rng.uniform(*c.image_noise_std))
                img.rng = np.random.default_rng(int(rng.integers(2 ** 63)))
            if self._on("image_color"):
                img.saturation = drawn["image_saturation"] = float(rng.uniform(*c.image_saturation))
                img.contrast = drawn["image_contrast"] = float(rng.uniform(*c.image_contrast))
            if self._on("image_jpeg"):
                lo, hi = c.image_jpeg_quality
                img.jpeg_quality = drawn["image_jpeg_quality"] = int(rng.integers(lo, hi + 1))
            self.effects.image = img
        if c.action_latency:
            self.effects.latency = drawn["action_latency"] = bool(rng.random() < c.action_latency_prob)
        if c.gripper_backlash:
            self.effects.backlash = drawn["gripper_backlash"] = float(rng.uniform(*c.gripper_backlash_range))
        return drawn

    def _apply_look(self, look: Look) -> None:
        """Fix the table and backdrop, the light and the camera offset to the look's (overriding those hooks)."""
        m, n = self.model, self.nominal
        for texid, which in ((self.table_tex, "table"), (self.backdrop_tex, "backdrop")):
            tex = look_texture(self.look_name, which, int(m.tex_width[texid]))
            self._write_texture(texid, tex, key=(self.look_name, which))
        m.geom_matid[self.table_geom] = self.table_dr_mat
        m.geom_group[self.backdrop_geoms] = 1
        m.light_diffuse[:] = np.clip(n["light_diffuse"] * look.light_scale, 0, 1)
        d = n["light_dir"].copy()
        d[:, :2] += look.light_tilt
        m.light_dir[:] = d / np.linalg.norm(d, axis=1, keepdims=True)
        m.vis.headlight.ambient[:], m.vis.headlight.diffuse[:] = n["headlight"]
        self._tint_lights(look.color_temperature_k)
        m.cam_pos[self.cam] = n["cam_pos"] + np.asarray(look.camera_offset)
        m.cam_quat[self.cam] = rotate_quat(n["cam_quat"], look.camera_rot_axis, np.deg2rad(look.camera_rot_deg))


def set_cube_half_size(model: mujoco.MjModel, geom: int, h: float) -> None:
    """Make the cube geom `geom` a cube of half edge `h` (m), with the bounds collision and rendering read."""
    model.geom_size[geom] = h
    model.geom_rbound[geom] = np.sqrt(3) * h
    model.geom_aabb[geom] = [0, 0, 0, h, h, h]


def rotate_quat(quat, axis, angle: float) -> np.ndarray:
    """`quat` followed by a rotation of `angle` rad about `axis` in its own frame."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    dq = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
    q = np.zeros(4)
    mujoco.mju_mulQuat(q, np.asarray(quat, float), dq)
    return q


def _distractor_colour(rng: np.random.Generator) -> np.ndarray:
    """A distractor's colour: any hue but the cube's red (hue within 0.08 of red is skipped), fairly saturated."""
    import colorsys

    h = rng.uniform(0.08, 0.92)
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95)))
