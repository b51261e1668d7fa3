"""The canonical view: each camera's frame of the same state, rendered in the nominal look.

With ``env.canonical_view`` the simulation renders every camera twice: once as the episode's randomized scene looks
(textures, light, colours, distractors, camera pose and field of view, image corruption) and once from a copy of
the model taken before any randomization touched it, posed like the live one. The learner then teaches the image
heads to give a randomized frame the embedding of its canonical twin (`hilserl.agents.sac`, ``canonical_view``),
so reinforcement learning sees one scene while the encoder learns to see through all of them: paired
randomized/canonical renders as in RCAN (James et al. 2019, "Sim-to-Real via Sim-to-Sim") with the critic trained
on both views as in SVEA (Hansen, Su & Wang 2021, "Stabilizing Deep Q-Learning with ConvNets and Vision
Transformers under Data Augmentation").

Only the physical parts of a randomization follow the live model here (the cube's size, which the arm grasps);
what is only appearance stays nominal. The canonical frame is a training aid of the simulation: the real arm has
none, and a policy never reads it.
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np

from hilserl.sim.randomization import set_cube_half_size
from hilserl.sim.rendering import CameraRenderer


class CanonicalView:
    """Renders cameras of a live model's state in the nominal look. Build it before the live model is randomized."""

    def __init__(self, model: mujoco.MjModel):
        self.model = copy.deepcopy(model)
        self.data = mujoco.MjData(self.model)
        self.cube_geom = self.model.geom("cube").id
        self._renderers: dict[int, CameraRenderer] = {}

    def sync(self, live: mujoco.MjModel) -> None:
        """Take over the live model's physical randomization (the cube's size); call after each reset's draw."""
        set_cube_half_size(self.model, self.cube_geom, float(live.geom_size[self.cube_geom][0]))

    def render(self, data: mujoco.MjData, cameras, size: int) -> dict[str, np.ndarray]:
        """{camera: uint8 [size, size, 3]}: each of `cameras` at the live state `data`, in the nominal look (the
        pose is computed once for all of them)."""
        d = self.data
        d.qpos[:] = data.qpos
        if self.model.nmocap:
            d.mocap_pos[:], d.mocap_quat[:] = data.mocap_pos, data.mocap_quat
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_camlight(self.model, d)
        if size not in self._renderers:
            self._renderers[size] = CameraRenderer(self.model, size, size)
        return {cam: self._renderers[size].render(d, cam) for cam in cameras}

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers = {}
