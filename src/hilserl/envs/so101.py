"""`SO101RealEnv`: the real SO-101 behind the same gymnasium interface as the simulation.

Same observation and action spaces as `SO101GraspCubeEnv` for the same settings, so a policy trained (or
pretrained) in the simulation runs on the arm: pixels keyed by camera name, a 17-D state (joint positions, joint
velocities by finite differences, gripper opening 0-1, gripper closed command 0/1, tool-point position), and the
action [dx, dy, dz, gripper] with the EE delta × `action_scale`, clamped to the workspace and solved by the
simulation's damped least-squares IK (gripper pointing down, wrist roll held) into joint targets for the follower.

Control is paced at `fps` (10 Hz): each step sends its targets, sleeps until the next tick and then observes;
a step that took longer than a tick is reported in ``info["control_overrun_s"]`` (never caught up by rushing).
The env gives reward 0 and never terminates: on the real arm the reward classifier wrapper decides success,
and the episode is truncated after ``control_time_s``. A person can take over through the leader arm, the
keyboard or a gamepad; ``info`` then has ``is_intervention`` and ``intervention_action`` (the action that was
executed instead of the policy's; store that one), and ``teleop_events`` (success/failure/re-record/quit keys).

The arms and cameras are injected, so the whole env runs against fakes in tests; `make_so101_env` builds the
real ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from hilserl.config import ConfigError, from_dict
from hilserl.kinematics import DampedLeastSquaresIK
from hilserl.obs_format import CANONICAL_SUFFIX, is_canonical_camera
from hilserl.robot.cameras import CameraConfig
from hilserl.robot.intervention import DetectorConfig
from hilserl.robot.teleop import Event, HumanInput
from hilserl.sim.env import SO101GraspCubeEnv, jaw_target
from hilserl.sim.scene import JAW_OPEN_ANGLE, JOINT_NAMES, SceneConfig, build_mjcf

DOWN = np.array([0.0, 0.0, -1.0])
INTERVENTION_SOURCES = ("leader", "keyboard", "gamepad", "none")


def _default_cameras() -> dict[str, CameraConfig]:
    # a typical SO-101 gripper camera: 640x480, centred 480x480 square, resized to the policy's image size
    return {"gripper": CameraConfig(index=0, width=640, height=480, fps=30, crop=(0, 80, 480, 480))}


@dataclass
class SO101EnvConfig:
    """The real arm (``env`` with ``type: "so101"``). Fields named as in `GraspCubeConfig` mean the same."""

    type: str = "so101"
    fps: int = 10  # control rate (Hz)
    control_time_s: float = 10.0  # episode length; max_episode_steps = control_time_s * fps
    action_scale: float = 0.02  # metres per unit action per step
    gripper_mode: str = "discrete"  # "discrete" (close/stay/open) or "continuous"
    image_size: int = 128  # square policy images, unless a camera sets its own size
    cameras: dict[str, CameraConfig] = field(default_factory=_default_cameras)
    ee_reset_pos: tuple[float, float, float] = (0.25, 0.0, 0.03)
    ee_reset_noise_xy: float = 0.03
    ee_reset_noise_z: float = 0.02
    workspace_low: tuple[float, float, float] = (0.16, -0.10, 0.01)
    workspace_high: tuple[float, float, float] = (0.30, 0.10, 0.08)
    reset_time_s: float = 2.0  # wait at the reset pose (the person re-places the cube)
    reset_joint_step: float = 0.05  # rad per tick while moving to the reset pose (0.5 rad/s at 10 Hz)
    reset_tolerance: float = 0.02  # rad; the reset motion ends when every joint is this close
    reset_max_steps: int = 150  # ticks allowed for the reset motion
    follower_port: str = "/dev/ttyACM0"
    leader_port: str = "/dev/ttyACM1"
    follower_calibration: str | None = None  # calibration JSON written by the calibration step
    leader_calibration: str | None = None
    intervention: str = "leader"  # who can take over: "leader", "keyboard", "gamepad" or "none"
    keyboard_events: bool = True  # success/failure/re-record/quit keys from the terminal, whatever the source
    gamepad_path: str = "/dev/input/js0"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    leader_gripper_close_below: float = 0.35  # leader jaw opening (0-1) that means "close"
    leader_gripper_open_above: float = 0.65  # ... and "open"

    def __post_init__(self) -> None:
        cams = {}
        if not isinstance(self.cameras, Mapping):
            raise ValueError(f"cameras: expected an object {{name: {{index, crop, size, ...}}}}, got {self.cameras!r}")
        for name, cam in self.cameras.items():
            if is_canonical_camera(name):
                raise ValueError(f"cameras.{name}: a name ending in {CANONICAL_SUFFIX!r} is the simulation's canonical "
                                 "view, never a policy input; name the camera otherwise")
            if isinstance(cam, CameraConfig):
                cams[name] = cam
            elif isinstance(cam, Mapping):
                try:
                    cams[name] = from_dict(CameraConfig, dict(cam), prefix=f"cameras.{name}")
                except ConfigError as e:
                    raise ValueError(str(e)) from None
            else:
                raise ValueError(f"cameras.{name}: expected an object with the fields of CameraConfig, got {cam!r}")
        self.cameras = cams
        if isinstance(self.detector, Mapping):
            self.detector = from_dict(DetectorConfig, dict(self.detector), prefix="detector")

    @property
    def max_episode_steps(self) -> int:
        return int(round(self.control_time_s * self.fps))

    def camera_size(self, name: str) -> tuple[int, int]:
        size = self.cameras[name].size
        return tuple(size) if size is not None else (self.image_size, self.image_size)

    def validate(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"env.{name}: expected {what}, got {getattr(self, name)!r}")

        need(self.type == "so101", "type", "'so101' for the real arm")
        need(self.fps > 0, "fps", "a positive integer")
        need(self.control_time_s > 0, "control_time_s", "> 0 seconds")
        need(self.action_scale > 0, "action_scale", "> 0 metres")
        need(self.gripper_mode in ("discrete", "continuous"), "gripper_mode", "'discrete' or 'continuous'")
        need(self.image_size >= 16, "image_size", ">= 16 pixels")
        need(all(lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high)), "workspace_low",
             "each bound below workspace_high")
        need(self.reset_time_s >= 0, "reset_time_s", ">= 0 seconds")
        need(0 < self.reset_joint_step <= 0.2, "reset_joint_step", "0 < rad per tick <= 0.2 (a slow reset)")
        need(self.reset_tolerance > 0, "reset_tolerance", "> 0 rad")
        need(self.reset_max_steps >= 1, "reset_max_steps", ">= 1")
        need(self.intervention in INTERVENTION_SOURCES, "intervention", f"one of {list(INTERVENTION_SOURCES)}")
        need(self.ee_reset_noise_xy >= 0 and self.ee_reset_noise_z >= 0, "ee_reset_noise_xy",
             "non-negative reset offsets")


class SO101Kinematics:
    """Forward and inverse kinematics of the arm on the simulation's MuJoCo model. The real arm's readings are in
    the model's joint convention (the calibration maps them), so the same numbers mean the same pose."""

    def __init__(self, model: mujoco.MjModel | None = None):
        self.model = model or mujoco.MjModel.from_xml_string(build_mjcf(SceneConfig()))
        self.ik = DampedLeastSquaresIK(self.model)
        self.qadr = np.array([self.model.jnt_qposadr[self.model.joint(j).id] for j in JOINT_NAMES])
        self._qpos = self.model.qpos0.copy()
        # the IK solves the first four joints (pan, lift, elbow, wrist flex); wrist roll and jaw are held
        assert list(self.ik.qadr) == list(self.qadr[:4])

    def _full(self, q: np.ndarray) -> np.ndarray:
        qpos = self._qpos.copy()
        qpos[self.qadr] = q
        return qpos

    def ee_position(self, q: np.ndarray) -> np.ndarray:
        """Tool-point position (m) for six joint values (radians)."""
        return self.ik.forward(self._full(np.asarray(q, dtype=float)))[0]

    def solve(self, ee_pos: np.ndarray, seed_q: np.ndarray) -> np.ndarray:
        """Six joint values putting the tool point at `ee_pos`, gripper down; roll and jaw copied from the seed."""
        seed_q = np.asarray(seed_q, dtype=float)
        q = seed_q.copy()
        q[:4] = self.ik.solve(np.asarray(ee_pos, dtype=float), self._full(seed_q), DOWN).qpos
        return q


def so101_spaces(cfg: SO101EnvConfig) -> tuple[spaces.Dict, spaces.Box]:
    """The real env's (observation_space, action_space): the simulation's for the same settings."""
    if cfg.gripper_mode == "discrete":
        action_space = spaces.Box(np.array([-1, -1, -1, 0], np.float32), np.array([1, 1, 1, 2], np.float32))
    else:
        action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
    obs = {"state": spaces.Box(-np.inf, np.inf, shape=(SO101GraspCubeEnv.state_dim,), dtype=np.float32)}
    if cfg.cameras:
        obs["pixels"] = spaces.Dict({name: spaces.Box(0, 255, (*cfg.camera_size(name), 3), np.uint8)
                                     for name in cfg.cameras})
    return spaces.Dict(obs), action_space


class SO101RealEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    STATE_LAYOUT = SO101GraspCubeEnv.STATE_LAYOUT
    state_dim = SO101GraspCubeEnv.state_dim
    STATE_GRIPPER_CLOSED = SO101GraspCubeEnv.STATE_GRIPPER_CLOSED

    def __init__(self, config: SO101EnvConfig, follower, cameras: Mapping[str, object], human=None,
                 event_sources: Sequence[object] = (), kinematics: SO101Kinematics | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 leader=None, render_mode: str | None = None):
        """follower: an SO-101 follower (or a fake with the same methods); cameras: {name: camera} for every name
        in `config.cameras`; human: an intervention source (`LeaderArmIntervention`, `TeleopIntervention`) or
        None; event_sources: extra `poll() -> [Event]` sources (the keyboard next to the leader arm); leader: the
        leader arm, only so that `close()` releases it."""
        config.validate()
        missing = sorted(set(config.cameras) - set(cameras))
        if missing:
            raise ValueError(f"cameras: no camera object for {missing} (configured: {sorted(config.cameras)})")
        self.cfg = cfg = config
        self.follower = follower
        self.leader = leader
        self.cameras = {name: cameras[name] for name in cfg.cameras}
        self.human = human
        self.event_sources = list(event_sources)
        self.kin = kinematics or SO101Kinematics()
        self.clock = clock
        self.sleep = sleep
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.fps}
        self.period = 1.0 / cfg.fps
        self.max_episode_steps = cfg.max_episode_steps
        self.low = np.array(cfg.workspace_low, dtype=float)
        self.high = np.array(cfg.workspace_high, dtype=float)
        home = np.zeros(len(JOINT_NAMES))
        home[:] = self.kin.solve(cfg.ee_reset_pos, home)
        home[5] = JAW_OPEN_ANGLE
        self.home_q = home

        self.observation_space, self.action_space = so101_spaces(cfg)

        self._q = home.copy()
        self._q_prev = home.copy()
        self._t_obs = 0.0
        self._dt_obs = self.period
        self._ee_target = self.kin.ee_position(home)
        self._jaw_target = JAW_OPEN_ANGLE
        self._sent = home.copy()
        self._next_tick = 0.0
        self._steps = 0
        self._last_pixels: dict[str, np.ndarray] = {}
        self._connected = False
        self._closed = False

    # ------------------------------------------------------------------ timing
    def _wait_for_tick(self) -> float:
        """Sleep until the next control tick; returns how late this tick already was (0 when on time)."""
        self._next_tick += self.period
        late = self.clock() - self._next_tick
        if late < 0:
            self.sleep(-late)
            return 0.0
        self._next_tick = self.clock()  # start a fresh schedule instead of rushing to catch up
        return late

    # ------------------------------------------------------------------ gym API
    def _connect(self) -> None:
        if self._connected:
            return
        self.follower.connect()
        if self.leader is not None:
            self.leader.connect()
        for cam in self.cameras.values():
            cam.connect()
        self._connected = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._connect()
        c, rng = self.cfg, self.np_random
        options = options or {}
        ee = np.array(options.get("ee_pos", c.ee_reset_pos), dtype=float)
        if "ee_pos" not in options:
            ee[:2] += rng.uniform(-c.ee_reset_noise_xy, c.ee_reset_noise_xy, 2)
            ee[2] += rng.uniform(-c.ee_reset_noise_z, c.ee_reset_noise_z)
        ee = np.clip(ee, self.low, self.high)
        goal = self.kin.solve(ee, self.home_q)
        goal[4], goal[5] = self.home_q[4], JAW_OPEN_ANGLE
        if self.human is not None:
            self.human.reset()  # nobody intervenes; the leader arm is stiff again and follows the reset motion
        reset_error = self._move_to(goal)
        if c.reset_time_s > 0:
            self.sleep(c.reset_time_s)
        events = self._poll_events()
        self._t_obs = self.clock()  # an observation is stamped with its tick, before the reads
        self._q = self._read_joints()
        self._q_prev = self._q.copy()
        self._dt_obs = self.period
        self._ee_target = self.kin.ee_position(self._q)
        self._jaw_target = JAW_OPEN_ANGLE
        self._next_tick = self._t_obs
        self._steps = 0
        obs = self._observation(zero_velocity=True)
        info = self._info(HumanInput(False), events, 0.0)
        info["reset_joint_error"] = reset_error
        return obs, info

    def _move_to(self, goal: np.ndarray) -> float:
        """Walk the follower to `goal` along a straight joint-space path in bounded steps, one per tick (the leader
        follows along); then wait, still ticking, until every joint is within `reset_tolerance` or the tick budget
        is spent. Returns the largest remaining joint error (rad)."""
        c = self.cfg
        q = self._read_joints()
        command = q.copy()
        self._next_tick = self.clock()
        for _ in range(c.reset_max_steps):
            if np.array_equal(command, goal) and np.max(np.abs(goal - q)) <= c.reset_tolerance:
                break
            command = command + np.clip(goal - command, -c.reset_joint_step, c.reset_joint_step)
            self._sent = np.asarray(self.follower.send_joint_targets(command), dtype=float)
            if self.human is not None:
                self.human.track(self._sent)  # the leader moves along with the follower
            self._wait_for_tick()
            q = self._read_joints()
        if self.human is not None:
            self.human.track(q)
        return float(np.max(np.abs(goal - q)))

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (4,):
            raise ValueError(f"action: expected 4 values (dx, dy, dz, gripper), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action: expected finite values, got {a}")
        if not self._connected:
            raise RuntimeError("step() before reset(): call reset() first")
        anchor = self._anchor()
        human = HumanInput(False)
        if self.human is not None:
            human = self.human.step(self._q, anchor, self._jaw_target < 0.5 * JAW_OPEN_ANGLE)
        events = list(human.events) + self._poll_events()
        executed = a
        if human.is_intervention and human.action is not None:
            executed = np.asarray(human.action, dtype=np.float64)
        targets = self._joint_targets(executed, anchor)
        self._sent = np.asarray(self.follower.send_joint_targets(targets), dtype=float)
        overrun = self._wait_for_tick()
        now = self.clock()
        self._q_prev = self._q
        self._q = self._read_joints()
        self._dt_obs = round(now - self._t_obs, 6)  # µs: clocks are no finer, and reruns give equal numbers
        self._t_obs = now
        self._steps += 1
        obs = self._observation()
        truncated = self._steps >= self.max_episode_steps
        return obs, 0.0, False, truncated, self._info(human, events, overrun)

    def _anchor(self) -> np.ndarray:
        """Where the delta starts: the last target while the arm keeps up with it, else where the arm is (as in
        the simulation: an arm held back by the table or the cube does not wind up an unreachable target)."""
        measured = self.kin.ee_position(self._q)
        return self._ee_target.copy() if np.linalg.norm(measured - self._ee_target) < 0.01 else measured

    def _joint_targets(self, action: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        c = self.cfg
        delta = np.clip(action[:3], -1.0, 1.0) * c.action_scale
        self._apply_gripper(float(action[3]))
        self._ee_target = np.clip(anchor + delta, self.low, self.high)
        seed = self._sent.copy()
        targets = self.kin.solve(self._ee_target, seed)
        targets[4] = self.home_q[4]
        targets[5] = self._jaw_target
        return targets

    def _apply_gripper(self, g: float) -> None:
        self._jaw_target = jaw_target(g, self.cfg.gripper_mode, self._jaw_target)

    def _read_joints(self) -> np.ndarray:
        q = np.asarray(self.follower.read_joint_positions(), dtype=float).reshape(-1)
        if q.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(q)):
            raise RuntimeError(f"follower: read_joint_positions returned {q}, expected {len(JOINT_NAMES)} finite "
                               f"radians ({', '.join(JOINT_NAMES)})")
        return q

    def _poll_events(self) -> list[Event]:
        events: list[Event] = []
        for source in self.event_sources:
            events.extend(source.poll())
        return events

    # ------------------------------------------------------------------ observation
    def gripper_opening(self) -> float:
        return float(np.clip(self._q[5] / JAW_OPEN_ANGLE, 0.0, 1.0))

    def _state(self, zero_velocity: bool = False) -> np.ndarray:
        vel = np.zeros(6) if zero_velocity else (self._q - self._q_prev) / max(self._dt_obs, 1e-3)
        return np.concatenate([
            self._q, vel, [self.gripper_opening(), float(self._jaw_target < 0.5 * JAW_OPEN_ANGLE)],
            self.kin.ee_position(self._q),
        ]).astype(np.float32)

    def _observation(self, zero_velocity: bool = False) -> dict:
        obs = {"state": self._state(zero_velocity)}
        if self.cameras:
            pixels = {}
            for name, cam in self.cameras.items():
                img = np.asarray(cam.read())
                want = (*self.cfg.camera_size(name), 3)
                if img.shape != want or img.dtype != np.uint8:
                    raise RuntimeError(f"camera {name!r}: read() gave {img.dtype} {img.shape}, expected uint8 {want}")
                pixels[name] = img
            self._last_pixels = pixels
            obs["pixels"] = pixels
        return obs

    def _info(self, human: HumanInput, events: list[Event], overrun: float) -> dict:
        info = {
            "is_intervention": bool(human.is_intervention),
            "teleop_events": [e.value for e in events],
            "ee_pos": self.kin.ee_position(self._q),
            "ee_target": self._ee_target.copy(),
            "joint_targets": self._sent.copy(),
            "step": self._steps,
            "control_overrun_s": float(overrun),
            "control_period_s": float(self._dt_obs),
        }
        if human.is_intervention and human.action is not None:
            info["intervention_action"] = np.asarray(human.action, dtype=np.float32).copy()
        if human.tracking_error is not None:
            info["tracking_error"] = human.tracking_error
        return info

    # ------------------------------------------------------------------ images, shutdown
    def render(self):
        if self.render_mode != "rgb_array" or not self._last_pixels:
            return None
        return next(iter(self._last_pixels.values())).copy()

    def close(self):
        """Release everything; each device is closed even if another fails (torque off is the arms' own close)."""
        if self._closed:
            return
        self._closed = True
        errors = []
        devices = [self.human, *self.event_sources, *self.cameras.values(), self.leader, self.follower]
        for dev in devices:
            if dev is None or not hasattr(dev, "close"):
                continue
            try:
                dev.close()
            except Exception as e:  # keep closing the rest; report the first failure
                errors.append(e)
        if errors:
            raise errors[0]


def _calibration(path: str | None, key: str):
    from hilserl.robot.calibration import Calibration

    if not path:
        raise ConfigError(f"env.{key}: required for the real arm: the arm's calibration JSON (LeRobot's format, "
                          "written by the calibration step)")
    if not Path(path).is_file():
        raise ConfigError(f"env.{key}: no such file {path!r}")
    return Calibration.load(path)


def make_so101_env(cfg: SO101EnvConfig, render_mode: str | None = None) -> SO101RealEnv:
    """Build the real env: follower, leader (when it is the intervention source), cameras, keyboard, gamepad."""
    cfg.validate()
    from hilserl.robot import so101  # imported here: the simulation never needs the servo bus
    from hilserl.robot.teleop import GamepadEvents, KeyboardEvents, LeaderArmIntervention, TeleopIntervention

    kin = SO101Kinematics()
    follower = so101.SO101Follower(cfg.follower_port, _calibration(cfg.follower_calibration, "follower_calibration"))
    cameras = {name: cam.build(name, cfg.camera_size(name)) for name, cam in cfg.cameras.items()}
    leader, human, events = None, None, []
    keyboard = KeyboardEvents() if (cfg.keyboard_events or cfg.intervention == "keyboard") else None
    if cfg.intervention == "leader":
        leader = so101.SO101Leader(cfg.leader_port, _calibration(cfg.leader_calibration, "leader_calibration"))
        human = LeaderArmIntervention(follower, leader, kin, cfg.detector.build(), cfg.action_scale,
                                      cfg.workspace_low, cfg.workspace_high, cfg.gripper_mode,
                                      cfg.leader_gripper_close_below, cfg.leader_gripper_open_above)
    elif cfg.intervention == "keyboard":
        human, keyboard = TeleopIntervention(keyboard, cfg.gripper_mode), None
    elif cfg.intervention == "gamepad":
        human = TeleopIntervention(GamepadEvents(cfg.gamepad_path), cfg.gripper_mode)
    if keyboard is not None:
        events.append(keyboard)
    return SO101RealEnv(cfg, follower, cameras, human=human, event_sources=events, kinematics=kin, leader=leader,
                        render_mode=render_mode)


__all__ = ["SO101EnvConfig", "SO101Kinematics", "SO101RealEnv", "make_so101_env", "so101_spaces",
           "INTERVENTION_SOURCES"]
