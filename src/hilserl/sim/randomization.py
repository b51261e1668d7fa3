"""Domain randomization hooks for the grasp-cube scene (all off by default).

Each hook perturbs the compiled model around the nominal values it had when the environment was built, once per
reset, so randomization never drifts and turning a hook off restores the nominal scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


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

    @property
    def any(self) -> bool:
        return any((self.light, self.colors, self.camera_pose, self.cube_size, self.cube_friction, self.cube_mass))


class Randomizer:
    """Applies a DomainRandomization to a model; remembers the nominal values to perturb from."""

    def __init__(self, model: mujoco.MjModel, cfg: DomainRandomization):
        self.model = model
        self.cfg = cfg
        self.cube_geom = model.geom("cube").id
        self.cube_body = model.body("cube").id
        self.cube_mat = model.material("cube").id
        self.table_mat = model.material("table").id
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
        }

    def apply(self, rng: np.random.Generator) -> dict:
        """Perturb the model; returns what was drawn (for logging and reproducibility)."""
        m, c, n = self.model, self.cfg, self.nominal
        drawn: dict = {}
        m.light_diffuse[:] = n["light_diffuse"]
        m.light_dir[:] = n["light_dir"]
        if c.light:
            s = rng.uniform(*c.light_scale)
            m.light_diffuse[:] = np.clip(n["light_diffuse"] * s, 0, 1)
            tilt = rng.normal(0, 0.25, size=(m.nlight, 2))
            d = n["light_dir"].copy()
            d[:, :2] += tilt
            m.light_dir[:] = d / np.linalg.norm(d, axis=1, keepdims=True)
            drawn["light_scale"] = float(s)
        for key, mid in (("cube_rgba", self.cube_mat), ("table_rgba", self.table_mat)):
            m.mat_rgba[mid] = n[key]
            if c.colors:
                m.mat_rgba[mid, :3] = np.clip(n[key][:3] + rng.uniform(-c.color_jitter, c.color_jitter, 3), 0, 1)
        m.cam_pos[self.cam] = n["cam_pos"]
        m.cam_quat[self.cam] = n["cam_quat"]
        if c.camera_pose:
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
        self.set_cube_half_size(h)
        m.geom_friction[self.cube_geom] = n["cube_friction"]
        if c.cube_friction:
            m.geom_friction[self.cube_geom, 0] = rng.uniform(*c.cube_friction_range)
            drawn["cube_friction"] = float(m.geom_friction[self.cube_geom, 0])
        mass = rng.uniform(*c.cube_mass_range) if c.cube_mass else n["cube_mass"]
        m.body_mass[self.cube_body] = mass
        m.body_inertia[self.cube_body] = mass * (2 * h) ** 2 / 6
        return drawn

    def set_cube_half_size(self, h: float) -> None:
        m = self.model
        m.geom_size[self.cube_geom] = h
        m.geom_rbound[self.cube_geom] = np.sqrt(3) * h
        m.geom_aabb[self.cube_geom] = [0, 0, 0, h, h, h]
