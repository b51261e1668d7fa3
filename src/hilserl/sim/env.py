"""`hilserl/SO101GraspCube-v0`: the SO-101 grasping a cube, controlled like the real arm.

Control runs at `fps` (10 Hz). An action is an end-effector delta in [-1, 1]^3 scaled by `action_scale` metres, plus
a gripper command: discrete (0 = close, 1 = stay, 2 = open) or continuous (-1 closed … +1 open). The target is
clamped to the workspace bounds, turned into joint targets by damped least-squares IK with the gripper pointing
down, and sent to position servos modelled on the STS3215; physics runs in substeps between control ticks. Domain
randomization (`hilserl.sim.randomization`) can also delay every command by one tick and put play on the jaw, and a
held-out look (`hilserl.sim.looks`, `look=`) fixes the scene's appearance.

Success (`info["is_success"]`) is ground truth: the cube touches both jaws and its bottom is at least
`success_lift` above the table. Touching, pushing or squeezing the cube against the table is not a success. The
env's own reward is that ground truth as a number (1.0 on the successful step, else 0.0); the reward a policy trains
on comes from the `reward` section of the training config (`success_reward`, `step_penalty`), applied by
`hilserl.train.build.make_env` (`hilserl.reward.wrapper.SuccessRewardWrapper`; the reward classifier's wrapper
uses the same two settings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from hilserl.kinematics import DampedLeastSquaresIK
from hilserl.obs_format import ENV_STATE, PIXELS, STATE, canonical_camera
from hilserl.sim.canonical import CanonicalView
from hilserl.sim.looks import LOOK_NAMES
from hilserl.sim.randomization import DomainRandomization, Randomizer
from hilserl.sim.rendering import CameraRenderer
from hilserl.sim.scene import ARM_JOINTS, JAW_CLOSED_ANGLE, JAW_OPEN_ANGLE, SceneConfig, build_mjcf

from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, STATE_CLOSED
DOWN = np.array([0.0, 0.0, -1.0])


@dataclass
class GraspCubeConfig:
    type: str = "sim"  # the simulation (env.type "so101" is the real arm: hilserl.envs.so101.SO101EnvConfig)
    fps: int = 10
    control_time_s: float = 10.0
    action_scale: float = 0.02  # metres per unit action per step
    gripper_mode: str = "discrete"  # "discrete" (close/stay/open) or "continuous"
    obs_type: str = "pixels_state"  # "pixels_state" or "state" (state + privileged cube pose, no images)
    # pixels_state: the observation also carries the cube's pose as `environment_state`, never an input of the
    # policy, only the target of its privileged auxiliary loss (policy.privileged_aux_weight; docs/training.md).
    # A "state" observation has the pose as an input anyway.
    privileged_state: bool = False
    cameras: tuple[str, ...] = ("gripper",)  # add "front" for the fixed scene camera
    image_size: int = 128
    success_lift: float = 0.02  # m the cube's bottom must be above the table while held
    ee_reset_pos: tuple[float, float, float] = (0.25, 0.0, 0.03)
    ee_reset_noise_xy: float = 0.03
    ee_reset_noise_z: float = 0.02
    cube_offset_xy: float = 0.03  # cube centre within ± this of the gripper's reset position
    cube_yaw_range: float = math.pi / 4  # ± rad; π/4 covers every orientation of a cube
    workspace_low: tuple[float, float, float] = (0.16, -0.10, 0.01)
    workspace_high: tuple[float, float, float] = (0.30, 0.10, 0.08)
    settle_s: float = 0.1  # physics time after a reset before the first observation
    scene: SceneConfig = field(default_factory=SceneConfig)
    randomization: DomainRandomization = field(default_factory=DomainRandomization)
    look: str = "nominal"  # a held-out scene appearance (hilserl.sim.looks), e.g. "heldout_a"
    # every camera also in the nominal look, as camera "<camera>_canonical" (hilserl.sim.canonical): with domain
    # randomization, the learner pulls the randomized frame's embedding onto it. Pretraining only; never a policy input
    canonical_view: bool = False

    # keys this section no longer has, with where they went (`hilserl.config.from_dict` names them in its error)
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "success_reward": "moved to reward.success_reward (the reward section is the only home of reward shaping)",
        "step_penalty": "moved to reward.step_penalty (the reward section is the only home of reward shaping)",
        "reward_type": "removed: the reward section shapes every reward (reward.success_reward, "
                       "reward.step_penalty); for the old sparse 1/0 reward set them to 1 and 0",
    }

    def validate(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"env.{name}: expected {what}, got {getattr(self, name)!r}")

        need(self.type == "sim", "type", "'sim' for the simulation")
        need(self.fps > 0, "fps", "a positive integer")
        need(self.control_time_s > 0, "control_time_s", "> 0 seconds")
        need(self.action_scale > 0, "action_scale", "> 0 metres")
        need(self.gripper_mode in ("discrete", "continuous"), "gripper_mode", "'discrete' or 'continuous'")
        need(self.obs_type in ("pixels_state", "state"), "obs_type", "'pixels_state' or 'state'")
        need(self.image_size >= 16, "image_size", ">= 16 pixels")
        known = {"gripper", "front"} | set(self.scene.extra_cameras)
        need(set(self.cameras) <= known and len(self.cameras) > 0, "cameras", f"a non-empty subset of {sorted(known)}")
        need(not self.canonical_view or self.obs_type == "pixels_state", "canonical_view",
             "false with obs_type 'state' (it is a second render of the cameras)")
        need(all(lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high)), "workspace_low",
             "each bound below workspace_high")
        need(self.look in LOOK_NAMES, "look", f"one of {list(LOOK_NAMES)}")
        try:
            self.randomization.validate()
        except ValueError as e:
            raise ValueError(f"env.randomization.{e}") from None
        try:
            self.scene.validate()  # the gripper camera, with the alignment's correction (hilserl robot align-camera)
        except ValueError as e:
            raise ValueError(f"env.scene.{e}") from None
        if (self.randomization.after_placement or self.look != "nominal") and not self.scene.randomization_assets:
            raise ValueError("env.scene.randomization_assets: expected true, the appearance hooks and the looks "
                             "need the scene's randomization textures, backdrop and distractors")


def _unit_option(options: dict, name: str, what: str, default: float | None) -> float | None:
    """A reset option that lies in [0, 1] (`hilserl.train.curriculum`): ``region_scale``, the start region's size as
    a fraction of the configured one (the cube's offset and the gripper's reset noise; 1 when absent), and
    ``view_share``, the chance that this episode's view is randomized (the view hooks of ``env.randomization``; None
    when absent: always)."""
    value = options.get(name, default)
    if value is not None and (not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
        raise ValueError(f"reset option {name}: expected {what} in [0, 1], got {value!r}")
    return value


def jaw_target(command: float, gripper_mode: str, current: float) -> float:
    """The jaw angle a gripper command asks for (sim and real arm alike): discrete 0 close / 1 stay / 2 open, or a
    continuous command in [-1, 1] from closed to open."""
    if gripper_mode == "discrete":
        cmd = int(np.clip(np.rint(command), 0, 2))
        return JAW_CLOSED_ANGLE if cmd == GRIPPER_CLOSE else JAW_OPEN_ANGLE if cmd == GRIPPER_OPEN else current
    u = (float(np.clip(command, -1.0, 1.0)) + 1.0) / 2.0
    return JAW_CLOSED_ANGLE + u * (JAW_OPEN_ANGLE - JAW_CLOSED_ANGLE)


class SO101GraspCubeEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: GraspCubeConfig | None = None, render_mode: str | None = None, **overrides):
        cfg = config or GraspCubeConfig()
        if overrides:
            cfg = GraspCubeConfig(**{**asdict_shallow(cfg), **overrides})
        cfg.validate()
        if "front" in cfg.cameras and not cfg.scene.front_camera:
            cfg.scene.front_camera = True
        self.cfg = cfg
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.fps}
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(cfg.scene))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.n_substeps = max(1, round(1.0 / (cfg.fps * m.opt.timestep)))
        self.max_episode_steps = int(round(cfg.control_time_s * cfg.fps))
        self.ik = DampedLeastSquaresIK(m)
        self.tcp = m.site("tcp").id
        self.arm_qadr = m.jnt_qposadr[[m.joint(j).id for j in ARM_JOINTS]]
        self.jaw_qadr = m.jnt_qposadr[m.joint("gripper").id]
        self.joint_qadr = np.append(self.arm_qadr, self.jaw_qadr)
        self.joint_dofadr = m.jnt_dofadr[[m.joint(j).id for j in (*ARM_JOINTS, "gripper")]]
        self.cube_qadr = m.jnt_qposadr[m.joint("cube").id]
        self.cube_body = m.body("cube").id
        self.cube_geom = m.geom("cube").id
        self.table_geom = m.geom("table").id
        self.fixed_jaw = m.geom("fixed_jaw").id
        self.moving_jaw = m.geom("moving_jaw").id
        robot_bodies = {m.body(b).id for b in ("gripper", "moving_jaw", "wrist", "lower_arm")}
        self.robot_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in robot_bodies])
        self.low = np.array(cfg.workspace_low, dtype=float)
        self.high = np.array(cfg.workspace_high, dtype=float)
        # copied before the randomizer first touches the model: the nominal look
        self.canonical = CanonicalView(m) if cfg.canonical_view else None
        self.randomizer = Randomizer(m, cfg.randomization, cfg.look)
        self.home_qpos = self._home_pose()

        n_cont = 3
        if cfg.gripper_mode == "discrete":
            self.action_space = spaces.Box(np.array([-1, -1, -1, 0], np.float32), np.array([1, 1, 1, 2], np.float32))
        else:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(n_cont + 1,), dtype=np.float32)
        obs = {STATE: spaces.Box(-np.inf, np.inf, shape=(self.state_dim,), dtype=np.float32)}
        if cfg.obs_type == "pixels_state":
            s = cfg.image_size
            obs[PIXELS] = spaces.Dict({c: spaces.Box(0, 255, (s, s, 3), np.uint8) for c in self.camera_names})
        if cfg.obs_type == "state" or cfg.privileged_state:
            obs[ENV_STATE] = spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
        self.observation_space = spaces.Dict(obs)

        self._renderers: dict[int, CameraRenderer] = {}  # square camera images, one renderer per size
        self._video_renderer: CameraRenderer | None = None
        self._ee_target = np.zeros(3)
        self._jaw_target = JAW_OPEN_ANGLE
        self._jaw_servo = JAW_OPEN_ANGLE  # what the jaw servo is sent: the target through the backlash's play
        self._pending_action: np.ndarray | None = None  # the command that action latency holds for one tick
        self._steps = 0

    # ------------------------------------------------------------------ layout
    STATE_LAYOUT = ("joint_pos[6]", "joint_vel[6]", "gripper_opening[1]", "gripper_closed_cmd[1]", "ee_pos[3]")
    state_dim = 17
    STATE_GRIPPER_CLOSED = STATE_CLOSED  # index of the gripper's closed-command flag in `state`

    @property
    def camera_names(self) -> tuple[str, ...]:
        """The observation's cameras: ``cfg.cameras``, then their canonical views with ``canonical_view``."""
        cams = tuple(self.cfg.cameras)
        return cams + (tuple(canonical_camera(c) for c in cams) if self.cfg.canonical_view else ())

    def _home_pose(self) -> np.ndarray:
        q = np.zeros(self.model.nq)
        q[self.cube_qadr:self.cube_qadr + 7] = [0.25, 0.0, 0.0125, 1, 0, 0, 0]
        res = self.ik.solve(self.cfg.ee_reset_pos, q, DOWN)
        q[self.ik.qadr] = res.qpos
        q[self.jaw_qadr] = JAW_OPEN_ANGLE
        return q

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        m, d, c = self.model, self.data, self.cfg
        options = options or {}
        share = _unit_option(options, "view_share", "a probability", None)
        self.randomizer.view = share is None or bool(rng.random() < share)
        self._randomization = self.randomizer.apply(rng) if c.randomization.before_placement else {}
        if share is not None:
            self._randomization["view_randomized"] = self.randomizer.view
        mujoco.mj_resetData(m, d)
        if c.randomization.before_placement:
            mujoco.mj_setConst(m, d)  # masses/sizes changed: recompute the derived constants (constraint scaling)
        region = float(_unit_option(options, "region_scale", "a fraction", 1.0))
        ee = np.array(options.get("ee_pos", c.ee_reset_pos), dtype=float)
        if "ee_pos" not in options:
            ee[:2] += rng.uniform(-c.ee_reset_noise_xy, c.ee_reset_noise_xy, 2) * region
            ee[2] += rng.uniform(-c.ee_reset_noise_z, c.ee_reset_noise_z) * region
        ee = np.clip(ee, self.low, self.high)
        q = self.home_qpos.copy()
        q[self.ik.qadr] = self.ik.solve(ee, q, DOWN).qpos
        d.qpos[:] = q
        d.qvel[:] = 0
        self._jaw_target = JAW_OPEN_ANGLE
        d.ctrl[:] = q[self.joint_qadr]
        self._place_cube(rng, ee, options.get("cube_pos"), options.get("cube_yaw"), region)
        qz, qw = d.qpos[self.cube_qadr + 6], d.qpos[self.cube_qadr + 3]
        # the reset options that give this start again (`hilserl.train.curriculum.HardStarts` replays it)
        start = {"ee_pos": [float(v) for v in ee],
                 "cube_pos": [float(v) for v in d.qpos[self.cube_qadr:self.cube_qadr + 2]],
                 "cube_yaw": float(2 * math.atan2(qz, qw))}
        if self.randomizer.active_after_placement:  # never changes the start state: drawn after placement
            cube_xy = d.qpos[self.cube_qadr:self.cube_qadr + 2].copy()
            self._randomization.update(self.randomizer.apply_after_placement(rng, cube_xy))
            self._upload_textures(self.randomizer.take_dirty_textures())
            mujoco.mj_kinematics(m, d)  # moved distractors
        if self.canonical is not None:
            self.canonical.sync(m)
        self._jaw_servo = JAW_OPEN_ANGLE
        self._pending_action = None
        for _ in range(max(0, round(c.settle_s / m.opt.timestep))):
            mujoco.mj_step(m, d)
        self._ee_target = self._tcp_pos().copy()
        self._steps = 0
        self._last_targets = [self._ee_target.copy()]
        return self._observation(), {**self._info(False), "start": start}

    def _place_cube(self, rng, ee, cube_pos=None, cube_yaw=None, region: float = 1.0) -> None:
        m, d, c = self.model, self.data, self.cfg
        h = float(m.geom_size[self.cube_geom][0])
        for _ in range(100):
            if cube_pos is not None:
                xy = np.asarray(cube_pos, dtype=float)[:2]
            else:
                xy = ee[:2] + rng.uniform(-c.cube_offset_xy, c.cube_offset_xy, 2) * region
            yaw = float(cube_yaw) if cube_yaw is not None else rng.uniform(-c.cube_yaw_range, c.cube_yaw_range)
            d.qpos[self.cube_qadr:self.cube_qadr + 3] = [xy[0], xy[1], h + 1e-4]
            d.qpos[self.cube_qadr + 3:self.cube_qadr + 7] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
            mujoco.mj_forward(m, d)
            if not self._cube_touches_robot():
                return
            if cube_pos is not None:
                raise ValueError(f"reset option cube_pos={tuple(cube_pos)}: the cube would be inside the gripper; "
                                 "place it away from the jaws or raise ee_pos")
        # nothing free near the gripper (very low reset): put the cube in front of the jaws
        d.qpos[self.cube_qadr:self.cube_qadr + 3] = [ee[0] + 0.05, ee[1], h + 1e-4]
        mujoco.mj_forward(m, d)

    def _cube_touches_robot(self, margin: float = 0.003) -> bool:
        m, d = self.model, self.data
        for g in self.robot_geoms:
            if m.geom_contype[g] == 0:
                continue
            dist = mujoco.mj_geomDistance(m, d, int(g), self.cube_geom, margin, None)
            if dist < margin:
                return True
        return False

    def step(self, action):
        m, d, c = self.model, self.data, self.cfg
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (4,):
            raise ValueError(f"action: expected 4 values (dx, dy, dz, gripper), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action: expected finite values, got {a}")
        if self.randomizer.effects.latency:  # one tick late: apply the previous command (none at first: stand still)
            a, self._pending_action = self._pending_action, a.copy()
        delta = np.zeros(3) if a is None else np.clip(a[:3], -1.0, 1.0) * c.action_scale
        if a is not None:
            self._apply_gripper(a[3])
        measured = self._tcp_pos()
        anchor = self._ee_target if np.linalg.norm(measured - self._ee_target) < 0.01 else measured
        target = np.clip(anchor + delta, self.low, self.high)
        self._ee_target = target
        self._last_targets.append(target.copy())
        q_arm = self.ik.solve(target, self._ik_seed(), DOWN).qpos
        d.ctrl[:4] = q_arm
        d.ctrl[4] = self.home_qpos[self.arm_qadr[4]]
        d.ctrl[5] = self._jaw_servo_target()
        for _ in range(self.n_substeps):
            mujoco.mj_step(m, d)
        self._steps += 1
        success = self.is_success()
        reward = self._reward(success)
        terminated = bool(success)
        truncated = self._steps >= self.max_episode_steps and not terminated
        return self._observation(), reward, terminated, truncated, self._info(success)

    def _ik_seed(self) -> np.ndarray:
        q = self.data.qpos.copy()
        q[self.ik.qadr] = self.data.ctrl[:4]
        return q

    def _apply_gripper(self, g: float) -> None:
        self._jaw_target = jaw_target(g, self.cfg.gripper_mode, self._jaw_target)

    def _jaw_servo_target(self) -> float:
        """The jaw target after the backlash's play b: the jaw follows the target only once the target leaves
        ±b/2 around it, so it stops b/2 short of each commanded angle and ignores reversals smaller than b."""
        b = self.randomizer.effects.backlash
        self._jaw_servo = float(np.clip(self._jaw_servo, self._jaw_target - b / 2, self._jaw_target + b / 2))
        return self._jaw_servo

    @staticmethod
    def _reward(success: bool) -> float:
        """The ground truth as a number; `hilserl.reward.wrapper.SuccessRewardWrapper` shapes it."""
        return 1.0 if success else 0.0

    # ------------------------------------------------------------------ ground truth
    def _tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp]

    def jaw_contacts(self) -> tuple[bool, bool]:
        """Whether the cube touches the fixed jaw and the moving jaw."""
        d = self.data
        n = d.ncon
        if n == 0:
            return False, False
        g = d.contact.geom[:n]
        with_cube = (g == self.cube_geom).any(axis=1)
        other = np.where(g[:, 0] == self.cube_geom, g[:, 1], g[:, 0])[with_cube]
        return bool((other == self.fixed_jaw).any()), bool((other == self.moving_jaw).any())

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.xpos[self.cube_body].copy(), self.data.xquat[self.cube_body].copy()

    def cube_bottom_height(self) -> float:
        """Lowest point of the cube above the table (exact for any orientation)."""
        h = self.model.geom_size[self.cube_geom]
        rot = self.data.geom_xmat[self.cube_geom].reshape(3, 3)
        return float(self.data.geom_xpos[self.cube_geom][2] - np.abs(rot[2]) @ h)

    def is_grasped(self) -> bool:
        fixed, moving = self.jaw_contacts()
        return fixed and moving

    def is_success(self) -> bool:
        return self.is_grasped() and self.cube_bottom_height() >= self.cfg.success_lift

    def gripper_opening(self) -> float:
        q = self.data.qpos[self.jaw_qadr]
        return float(np.clip(q / JAW_OPEN_ANGLE, 0.0, 1.0))

    @property
    def jaw_target(self) -> float:
        return self._jaw_target

    @property
    def pending_action(self) -> np.ndarray | None:
        """The command that action latency holds back until the next step (None without latency)."""
        return self._pending_action

    @property
    def ee_target(self) -> np.ndarray:
        return self._ee_target.copy()

    def _state(self) -> np.ndarray:
        d = self.data
        return np.concatenate([
            d.qpos[self.joint_qadr], d.qvel[self.joint_dofadr],
            [self.gripper_opening(), float(self._jaw_target < 0.5 * JAW_OPEN_ANGLE)],
            self._tcp_pos(),
        ]).astype(np.float32)

    def _observation(self) -> dict:
        obs = {STATE: self._state()}
        if self.cfg.obs_type == "pixels_state":
            obs[PIXELS] = {cam: self.render_camera(cam) for cam in self.cfg.cameras}
            if self.canonical is not None:
                views = self.canonical.render(self.data, self.cfg.cameras, self.cfg.image_size)
                obs[PIXELS].update({canonical_camera(cam): img for cam, img in views.items()})
        if self.cfg.obs_type == "state" or self.cfg.privileged_state:
            cube = self.data.xpos[self.cube_body]
            obs[ENV_STATE] = np.concatenate([cube, cube - self._tcp_pos()]).astype(np.float32)
        return obs

    def _info(self, success: bool) -> dict:
        cube_pos, cube_quat = self.cube_pose()
        fixed, moving = self.jaw_contacts()
        return {
            "is_success": bool(success),
            "cube_pos": cube_pos,
            "cube_quat": cube_quat,
            "ee_pos": self._tcp_pos().copy(),
            "ee_quat": _mat_quat(self.data.site_xmat[self.tcp]),
            "ee_target": self._ee_target.copy(),
            "jaw_contacts": (fixed, moving),
            "cube_bottom_height": self.cube_bottom_height(),
            "gripper_opening": self.gripper_opening(),
            "step": self._steps,
        }

    # ------------------------------------------------------------------ images
    def render_camera(self, camera: str, size: int | None = None) -> np.ndarray:
        size = size or self.cfg.image_size
        if size not in self._renderers:
            self._renderers[size] = CameraRenderer(self.model, size, size)
        img = self._renderers[size].render(self.data, camera)
        corrupt = self.randomizer.effects.image  # the randomized camera's blur, noise and compression
        return corrupt(img) if corrupt is not None else img

    def _upload_textures(self, texids: list[int]) -> None:
        for r in (*self._renderers.values(), self._video_renderer):
            if r is not None:
                r.upload_textures(texids)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._video_renderer is None:
            self._video_renderer = CameraRenderer(self.model, 360, 480)
        cam = "front" if self.cfg.scene.front_camera else "gripper"
        return self._video_renderer.render(self.data, cam)

    def close(self):
        for r in (*self._renderers.values(), self._video_renderer):
            if r is not None:
                r.close()
        self._renderers, self._video_renderer = {}, None
        if self.canonical is not None:
            self.canonical.close()


def _mat_quat(xmat: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(xmat, dtype=np.float64).reshape(9))
    return q


def asdict_shallow(cfg) -> dict:
    """Top-level fields of a dataclass without deep-copying nested configs."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


__all__ = ["SO101GraspCubeEnv", "GraspCubeConfig", "asdict"]
