"""A scripted expert for the grasp-cube task: approach above the cube, descend, close, lift.

It reads the simulator's ground truth (cube pose, tool point, jaw contacts), so it is a simulation-only stand-in
for the person: it fills the demo buffer and plays the human who intervenes. Every decision is made from the
current state, with only a short memory of how long the jaws have been closing, so it recovers from whatever a
policy leaves behind: mid-air, cube nudged or tipped, gripper closed on nothing.
"""

from __future__ import annotations

import numpy as np

from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl.sim.env import SO101GraspCubeEnv
from hilserl.sim.scene import FIXED_JAW_CLEARANCE, JAW_OPEN_ANGLE


class ScriptedExpert:
    """`act()` returns an action in the env's action space for the env's current state."""

    def __init__(self, env, hover: float = 0.025, xy_tol: float = 0.004, close_steps: int = 3,
                 noise: float = 0.0, rng: np.random.Generator | None = None):
        self.env: SO101GraspCubeEnv = env.unwrapped
        self.hover = hover  # height of the tool point above the cube's top while moving sideways
        self.xy_tol = xy_tol
        self.close_steps = close_steps  # control ticks the jaws get to close before the grasp is judged
        self.noise = noise  # std of Gaussian noise on the motion part (makes demos less uniform)
        self.rng = rng or np.random.default_rng()
        self._closing = 0

    def reset(self) -> None:
        self._closing = 0

    def _grasp_point(self, cube: np.ndarray, quat: np.ndarray, sep: np.ndarray) -> np.ndarray:
        """Where the tool point should go so the fixed jaw clears the cube and the moving jaw pushes it home."""
        env = self.env
        h = env.model.geom_size[env.cube_geom]
        rot = env.data.geom_xmat[env.cube_geom].reshape(3, 3)
        extent = float(np.abs(sep @ rot) @ h)  # half-extent of the cube along the jaw-separation axis
        shift = min(0.0, FIXED_JAW_CLEARANCE - extent - 0.003)
        target = cube + shift * sep
        target[2] = cube[2] - h[0] + 0.014  # tool point a little above the cube's centre
        return target

    def act(self, obs=None) -> np.ndarray:
        env = self.env
        cube, quat = env.cube_pose()
        ee = env.data.site_xpos[env.tcp].copy()
        if env.pending_action is not None:  # one tick of action latency: plan from where the held command leads
            ee += np.clip(env.pending_action[:3], -1.0, 1.0) * env.cfg.action_scale
        xmat = env.data.site_xmat[env.tcp].reshape(3, 3)
        sep = xmat[:, 2].copy()  # fixed jaw → moving jaw
        sep[2] = 0.0
        sep /= np.linalg.norm(sep) + 1e-9
        grasp = self._grasp_point(cube, quat, sep)
        cube_top = env.cube_bottom_height() + 2 * float(env.model.geom_size[env.cube_geom][0])
        closed_cmd = env.jaw_target < 0.5 * JAW_OPEN_ANGLE
        grasped = env.is_grasped()
        scale = env.cfg.action_scale
        gripper = GRIPPER_STAY

        if closed_cmd:
            self._closing += 1
        else:
            self._closing = 0

        xy_err = grasp[:2] - ee[:2]
        dist_xy = float(np.linalg.norm(xy_err))
        hover_z = max(grasp[2], cube_top + self.hover)
        descending = ee[2] < hover_z - 0.005  # already on the way down: tolerate a little more xy error
        if closed_cmd and (grasped or self._closing <= self.close_steps):
            # holding (or still closing): lift once the jaws have had time to close
            target = ee.copy()
            if self._closing > self.close_steps:
                target[2] = ee[2] + scale
            gripper = GRIPPER_CLOSE
        elif closed_cmd:
            # closed on nothing or lost the cube: open and back off upward
            target = ee.copy()
            target[2] = max(ee[2], cube_top + self.hover)
            gripper = GRIPPER_OPEN
        elif dist_xy > (2 * self.xy_tol if descending else self.xy_tol):
            # move above the grasp point; rise first if low and far (so the jaws do not sweep the cube away)
            target = np.array([grasp[0], grasp[1], hover_z])
            if ee[2] < cube_top + 0.01 and dist_xy > 0.012:
                target[:2] = ee[:2] + 0.3 * xy_err
            gripper = GRIPPER_OPEN if env.gripper_opening() < 0.9 else GRIPPER_STAY
        else:
            # aligned: descend with open jaws (not faster than the servos follow), close at the bottom
            target = grasp.copy()
            target[2] = max(grasp[2], ee[2] - 0.6 * scale)
            gripper = GRIPPER_STAY
            if ee[2] <= grasp[2] + 0.004 and env.gripper_opening() > 0.7:
                gripper = GRIPPER_CLOSE
        motion = np.clip((target - ee) / scale, -1.0, 1.0)
        if self.noise > 0:
            motion = np.clip(motion + self.rng.normal(0, self.noise, 3), -1.0, 1.0)
        if env.cfg.gripper_mode == "discrete":
            g = float(gripper)
        else:
            g = {GRIPPER_CLOSE: -1.0, GRIPPER_OPEN: 1.0}.get(gripper, 2 * (env.jaw_target - (-0.1)) / (JAW_OPEN_ANGLE + 0.1) - 1)
        return np.append(motion, g).astype(np.float32)


class ExpertPerson:
    """The scripted expert playing the person of `hilserl record` in the simulation: `person(obs, info)` is its
    action, `reset()` starts an episode."""

    def __init__(self, env, noise: float = 0.05, seed: int = 0):
        self.expert = ScriptedExpert(env, noise=noise, rng=np.random.default_rng(seed))

    def reset(self) -> None:
        self.expert.reset()

    def __call__(self, obs, info) -> np.ndarray:
        return self.expert.act()


def expert_success_rate(env, episodes: int, seed: int = 0) -> tuple[int, list[int]]:
    """Run the expert on `episodes` seeded episodes; returns (successes, episode lengths)."""
    expert = ScriptedExpert(env)
    wins, lengths = 0, []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        expert.reset()
        info, t = {"is_success": False}, 0
        for t in range(env.unwrapped.max_episode_steps):
            _, _, term, trunc, info = env.step(expert.act())
            if term or trunc:
                break
        wins += int(info["is_success"])
        lengths.append(t + 1)
    return wins, lengths
