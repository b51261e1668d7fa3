"""SO-101 recordings made with LeRobot's own tools, in joint space, as demonstrations in the policy's layout.

A LeRobot SO-101 dataset stores ``observation.state`` as the six joint positions in LeRobot's units and
``action`` as six joint targets (leader-arm teleoperation) or as end-effector deltas (its HIL-SERL end-effector
mode: [dx, dy, dz] in [-1, 1] times its step size, plus the gripper command). The policy here reads a 17-value
state and an end-effector delta in units of ``action_scale`` at the control rate. `import_lerobot_joint_space`
derives one from the other and reports what it derived (`JointImportReport.summary`):

* **Joint angles** in the simulation's radians (the convention of `hilserl.robot.calibration`, which the real
  arm's readings follow). LeRobot normalises servo steps with the arm's calibration (range_min / range_max):

  - ``units="degrees"`` (LeRobot's ``use_degrees=true``): an arm joint is ``(steps - mid) * 360 / 4095`` degrees
    from the middle of its calibrated range, which is this project's zero too, so radians are
    ``degrees * 4095 / 4096 * pi / 180`` (LeRobot divides a turn into 4095 steps, the servo has 4096);
  - ``units="range_m100_100"`` (LeRobot's default for arm joints): ``-100..100`` across the calibrated range,
    so it needs the arm's calibration file (LeRobot's JSON) to become servo steps and then radians;
  - the gripper is always ``0..100`` % of its calibrated range, which maps linearly onto the jaw's range.

  With a calibration file, every value goes through servo steps as the real arm reads them (its ``drive_mode``
  honoured as LeRobot applies it).
* **Frames**: a dataset recorded at k times the control rate (LeRobot records at 30 fps, the policy acts at 10 Hz)
  keeps every k-th frame; a step's reward is the sum over its k frames, and it counts as an intervention if any
  of them was one. The rate must be a whole multiple of the control rate.
* **State** ``[joints(6), joint velocities(6), gripper opening, gripper closed flag, tool point(3)]`` as the real
  arm's env builds it: velocities by finite differences between kept frames (zero on the first), the opening as
  jaw angle / open angle, the closed flag from the gripper commands derived so far (the arm's jaw target), the
  tool point by forward kinematics of the simulation's model.
* **Actions** from joint targets: exactly what the leader-arm intervention computes on the arm
  (`hilserl.robot.teleop.leader_action`): the tool-point delta from the follower to the target pose (clamped to
  the workspace) divided by ``action_scale`` and clipped to [-1, 1] (the report says how often it clipped), and
  the gripper as close / stay / open with hysteresis. From end-effector deltas: each motion value times the
  recording's step size (``ee_step_m``, LeRobot's ``end_effector_step_sizes``) divided by ``action_scale`` and
  clipped; a discrete gripper command is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np

from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl.obs_format import STATE
from hilserl.robot.calibration import GRIPPER_RANGE_RAD, JOINT_NAMES, Calibration
from hilserl.robot.teleop import leader_action
from hilserl.sim.env import jaw_target
from hilserl.sim.scene import JAW_OPEN_ANGLE

from .episodes import Episode
from .lerobot_import import import_lerobot, load_info
from .lerobot_v3 import ACTION_KEY, REWARD_KEY, STATE_KEY, check_discrete

__all__ = ["JOINT_UNITS", "JointImportReport", "JointSpaceLayout", "import_lerobot_joint_space",
           "is_joint_space", "lerobot_to_radians"]

JOINT_UNITS = ("degrees", "range_m100_100")
STEPS_PER_TURN = 4096  # the servo's resolution; LeRobot's degree conversion divides by STEPS_PER_TURN - 1
JOINTS = len(JOINT_NAMES)


@dataclass(frozen=True)
class JointSpaceLayout:
    """How to read a joint-space recording: LeRobot's units for it, and the policy's control settings."""

    units: str  # "degrees" or "range_m100_100" (see the module docstring)
    fps: int  # the policy's control rate (Hz)
    action_scale: float  # metres per unit action per step
    workspace_low: tuple[float, float, float]
    workspace_high: tuple[float, float, float]
    gripper_mode: str = "discrete"
    calibration: Calibration | None = None  # the recording arm's LeRobot calibration file, loaded
    ee_step_m: float | None = None  # end-effector recordings: metres per unit action (LeRobot's step size)

    def validate(self) -> None:
        if self.units not in JOINT_UNITS:
            raise ValueError(f"joint_units: expected one of {list(JOINT_UNITS)} (LeRobot's use_degrees=true records "
                             f"'degrees', its default 'range_m100_100'), got {self.units!r}")
        if self.units == "range_m100_100" and self.calibration is None:
            raise ValueError("calibration: joint_units 'range_m100_100' are fractions of each joint's calibrated "
                             "range; give the recording arm's LeRobot calibration file (JSON)")
        if int(self.fps) <= 0:
            raise ValueError(f"fps: expected a positive control rate, got {self.fps}")
        if not self.action_scale > 0:
            raise ValueError(f"action_scale: expected > 0 metres, got {self.action_scale}")
        if self.gripper_mode not in ("discrete", "continuous"):
            raise ValueError(f"gripper_mode: expected 'discrete' or 'continuous', got {self.gripper_mode!r}")
        if self.ee_step_m is not None and not self.ee_step_m > 0:
            raise ValueError(f"ee_step_m: expected > 0 metres per unit action, got {self.ee_step_m}")


@dataclass
class JointImportReport:
    """What `import_lerobot_joint_space` derived; filled in while its episodes are read."""

    units: str
    action_layout: str  # "joint targets" or "end-effector deltas"
    dataset_fps: float
    stride: int
    calibration: str | None
    episodes: int = 0
    frames: int = 0
    steps: int = 0
    clipped_values: int = 0  # motion values clipped to [-1, 1]
    gripper_commands: dict[str, int] = field(default_factory=lambda: {"close": 0, "stay": 0, "open": 0})

    @property
    def clipped_fraction(self) -> float:
        return self.clipped_values / max(1, 3 * self.steps)

    def summary(self) -> str:
        source = (f"calibration {self.calibration}" if self.calibration else
                  "degrees from each joint's calibrated middle, gripper in % of its range")
        return (f"joint-space recording: {self.episodes} episodes, {self.frames} frames at {self.dataset_fps:g} fps "
                f"-> {self.steps} steps (every {self.stride}. frame); joints in LeRobot {self.units} -> radians "
                f"({source}); state derived: velocities by finite differences, gripper opening and closed flag, "
                f"tool point by forward kinematics; actions from {self.action_layout} -> end-effector deltas "
                f"({100 * self.clipped_fraction:.1f}% of motion values clipped to [-1, 1]); gripper commands "
                f"close/stay/open {self.gripper_commands['close']}/{self.gripper_commands['stay']}/"
                f"{self.gripper_commands['open']}")


# ---------------------------------------------------------------------------------------------------- units
def lerobot_to_radians(values: np.ndarray, units: str, calibration: Calibration | None = None) -> np.ndarray:
    """[T, 6] joint values in LeRobot's units (arm joints in `units`, the gripper in 0..100 %) -> [T, 6] radians in
    the simulation's convention."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != JOINTS:
        raise ValueError(f"joint values: expected [frames, {JOINTS}] ordered {JOINT_NAMES}, got shape {v.shape}")
    if units not in JOINT_UNITS:
        raise ValueError(f"joint_units: expected one of {list(JOINT_UNITS)}, got {units!r}")
    if calibration is None:
        if units != "degrees":
            raise ValueError(f"calibration: joint_units {units!r} need the recording arm's calibration file")
        q = np.empty_like(v)
        q[:, :5] = np.deg2rad(v[:, :5]) * (STEPS_PER_TURN - 1) / STEPS_PER_TURN
        low, high = GRIPPER_RANGE_RAD
        q[:, 5] = low + v[:, 5] / 100.0 * (high - low)
        return q
    raw = np.empty_like(v)
    for j, name in enumerate(JOINT_NAMES):
        m = calibration.motors[name]
        lo, hi, inverted = m.range_min, m.range_max, m.drive_mode == 1
        if name == "gripper":  # LeRobot: 100 - % when inverted
            pct = 100.0 - v[:, j] if inverted else v[:, j]
            raw[:, j] = lo + pct / 100.0 * (hi - lo)
        elif units == "degrees":  # LeRobot ignores drive_mode here
            raw[:, j] = (lo + hi) / 2 + v[:, j] * (STEPS_PER_TURN - 1) / 360.0
        else:
            norm = -v[:, j] if inverted else v[:, j]
            raw[:, j] = lo + (norm + 100.0) / 200.0 * (hi - lo)
    return np.stack([calibration.raw_to_rad(r) for r in raw])


# ---------------------------------------------------------------------------------------------------- dataset
def is_joint_space(root: str | os.PathLike, state_key: str = STATE_KEY) -> bool:
    """Does the dataset's state hold the six SO-101 joint positions (and nothing else)?"""
    ft = load_info(root)["features"].get(state_key)
    return ft is not None and list(ft.get("shape", [])) == [JOINTS]


def import_lerobot_joint_space(
    root: str | os.PathLike,
    layout: JointSpaceLayout,
    *,
    kinematics=None,
    image_keys: Sequence[str] | None = None,
    camera_names: Mapping[str, str] | None = None,
    expect_image_shape: tuple[int, int, int] | None = None,
    reward_key: str | None = REWARD_KEY,
    episodes: Sequence[int] | None = None,
) -> tuple[Iterator[Episode], JointImportReport]:
    """Read a LeRobot v3.0 SO-101 dataset recorded in joint space as `Episode`s in the policy's layout (lazily).

    Returns the episodes and a report that fills in as they are read. ``kinematics``: an object with
    ``ee_position(q)`` (default: the simulation's model, `hilserl.envs.so101.SO101Kinematics`). The metadata is
    checked now: the state must be 6 joint values, the action 6 joint targets or 3-4 end-effector values (these
    need ``layout.ee_step_m``), the frame rate a whole multiple of ``layout.fps``.
    """
    layout.validate()
    info = load_info(root)
    features = info["features"]
    for key, what in ((STATE_KEY, "the joint positions"), (ACTION_KEY, "the actions")):
        if key not in features:
            raise ValueError(f"{root}: feature {key!r} ({what}) is missing; the dataset has {sorted(features)}")
    if list(features[STATE_KEY]["shape"]) != [JOINTS]:
        raise ValueError(f"{root}: feature {STATE_KEY!r} has shape {features[STATE_KEY]['shape']}, a joint-space "
                         f"SO-101 recording has [{JOINTS}] ({', '.join(JOINT_NAMES)})")
    action_dim = int(features[ACTION_KEY]["shape"][0])
    if action_dim not in (JOINTS, 3, 4):
        raise ValueError(f"{root}: feature {ACTION_KEY!r} has shape {features[ACTION_KEY]['shape']}, expected "
                         f"[{JOINTS}] (joint targets) or [3] / [4] (end-effector deltas [+ gripper])")
    if action_dim != JOINTS and layout.ee_step_m is None:
        raise ValueError(f"ee_step_m: the dataset's actions are end-effector deltas ({action_dim} values); give the "
                         "step size they were recorded with (LeRobot's end_effector_step_sizes, metres per unit) "
                         "so they can be rescaled to action_scale")
    dataset_fps = float(info["fps"])
    stride = dataset_fps / layout.fps
    if abs(stride - round(stride)) > 1e-6 or round(stride) < 1:
        raise ValueError(f"fps: the dataset was recorded at {dataset_fps:g} fps, which is not a whole multiple of "
                         f"the policy's control rate {layout.fps} Hz (env.fps)")
    if kinematics is None:
        from hilserl.envs.so101 import SO101Kinematics
        kinematics = SO101Kinematics()
    report = JointImportReport(layout.units, "joint targets" if action_dim == JOINTS else "end-effector deltas",
                               dataset_fps, int(round(stride)),
                               layout.calibration.source if layout.calibration is not None else None)
    raw = import_lerobot(root, image_keys=image_keys, camera_names=camera_names, reward_key=reward_key,
                         episodes=episodes, expect_image_shape=expect_image_shape, intervention_if_missing=True)

    def convert_all() -> Iterator[Episode]:
        for ep in raw:
            yield _convert(ep, layout, kinematics, report)

    return convert_all(), report


def _convert(ep: Episode, layout: JointSpaceLayout, kin, report: JointImportReport) -> Episode:
    k, length = report.stride, ep.length
    keep = np.arange(0, length, k)  # the kept frames; step i spans frames keep[i] .. keep[i] + k - 1
    n = len(keep)
    states = np.stack([o[STATE] for o in ep.observations])  # [length + 1, 6]
    q_all = lerobot_to_radians(states, layout.units, layout.calibration)
    q = np.concatenate([q_all[keep], q_all[-1:]])  # [n + 1]: the kept frames and the final observation
    ee = np.stack([kin.ee_position(qi) for qi in q])  # the tool point, once per kept frame
    motion, commands = _actions(ep.actions[keep], q, ee, layout, kin, report)
    closed = _closed_flags(q[0], commands, layout.gripper_mode)
    vel = np.zeros_like(q)
    vel[1:] = (q[1:] - q[:-1]) * layout.fps
    opening = np.clip(q[:, 5] / JAW_OPEN_ANGLE, 0.0, 1.0)
    state = np.concatenate([q, vel, opening[:, None], closed[:, None], ee], axis=1).astype(np.float32)
    observations = []
    for i, frame in enumerate(list(keep) + [length]):
        obs = {key: value for key, value in ep.observations[frame].items() if key != STATE}
        obs[STATE] = state[i]
        observations.append(obs)
    bounds = np.append(keep, length)
    rewards = np.add.reduceat(np.asarray(ep.rewards, np.float64), keep).astype(np.float32)
    interventions = np.array([bool(np.any(ep.is_intervention[a:b])) for a, b in zip(bounds[:-1], bounds[1:])])
    actions = np.concatenate([motion, commands[:, None]], axis=1).astype(np.float32)
    report.episodes += 1
    report.frames += length
    report.steps += n
    return Episode(observations, actions, rewards, ep.terminated, ep.truncated, interventions, ep.task, {})


def _actions(actions: np.ndarray, q: np.ndarray, ee: np.ndarray, layout: JointSpaceLayout, kin,
             report: JointImportReport) -> tuple[np.ndarray, np.ndarray]:
    """([n, 3] motion in [-1, 1], [n] gripper values) for the kept frames' actions; q: [n + 1] radians, ee their
    tool points."""
    n = len(actions)
    motion, gripper = np.zeros((n, 3)), np.zeros(n)
    if actions.shape[1] == JOINTS:
        targets = lerobot_to_radians(actions, layout.units, layout.calibration)
        jaw = q[0, 5]
        for i in range(n):
            a = leader_action(kin, targets[i], q[i], layout.action_scale, layout.workspace_low,
                              layout.workspace_high, _is_closed(jaw), layout.gripper_mode, ee_reference=ee[i])
            motion[i], gripper[i] = a[:3], a[3]
            report.clipped_values += int(np.sum(np.abs(a[:3]) >= 1.0))  # at the bound: clipped (or exactly 1)
            jaw = jaw_target(gripper[i], layout.gripper_mode, jaw)
    else:
        scaled = actions[:, :3] * layout.ee_step_m / layout.action_scale
        report.clipped_values += int(np.sum(np.abs(scaled) > 1.0))
        motion = np.clip(scaled, -1.0, 1.0)
        if actions.shape[1] == 4:
            gripper = actions[:, 3].astype(np.float64)
            if layout.gripper_mode == "discrete":
                check_discrete(gripper, f"{ACTION_KEY} (last entry, the gripper command)")
        elif layout.gripper_mode == "discrete":  # no gripper column: the jaw stays as it is
            gripper = np.full(n, float(GRIPPER_STAY))
        else:
            gripper = 2.0 * np.clip(q[:-1, 5] / JAW_OPEN_ANGLE, 0.0, 1.0) - 1.0
    if layout.gripper_mode == "discrete":
        for c, name in ((GRIPPER_CLOSE, "close"), (GRIPPER_OPEN, "open"), (GRIPPER_STAY, "stay")):
            report.gripper_commands[name] += int(np.sum(np.rint(gripper) == c))
    return motion, gripper


def _is_closed(jaw: float) -> bool:
    return bool(jaw < 0.5 * JAW_OPEN_ANGLE)


def _closed_flags(q0: np.ndarray, gripper: np.ndarray, mode: str) -> np.ndarray:
    """[n + 1] closed flags (the jaw target below half open, as the arm's state has it): before each step, from
    the first frame's jaw and then the commands, and at the end."""
    jaw = float(q0[5])
    flags = [_is_closed(jaw)]
    for g in gripper:
        jaw = jaw_target(float(g), mode, jaw)
        flags.append(_is_closed(jaw))
    return np.array(flags, dtype=np.float32)
