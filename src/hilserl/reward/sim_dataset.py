"""A labelled reward-classifier dataset from the simulation: the labels are its ground truth (``is_success``), the
episodes a mix of scripted kinds chosen to show the classifier near misses (``SIM_KINDS``)."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hilserl.reward.dataset import ARM_STATE, DatasetWriter, arm_state


SIM_KINDS = ("expert_hold", "expert_drop", "squeeze", "close_on_nothing", "push", "touch_top", "random")
# episodes of each kind per rotation while both classes are still missing (mostly the near misses)
_MIXED_WEIGHTS = {"expert_hold": 1, "expert_drop": 2, "squeeze": 3, "close_on_nothing": 2, "push": 2, "touch_top": 1,
                  "random": 1}


class _SimEpisode:
    """Drives the simulation for one collection episode and records (frame, ground-truth label) pairs."""

    def __init__(self, env, cameras, rng: np.random.Generator, keep: Callable[[bool], bool],
                 frame_keep: float = 1.0, watch=None):
        self.env = env
        self.watch = watch
        self.frame_keep = frame_keep
        self.cameras = cameras
        self.rng = rng
        self.keep = keep  # whether a frame with this label is still wanted
        self.frames: dict[str, list] = {c: [] for c in cameras}
        self.labels: list[bool] = []
        self.steps: list[int] = []
        self.arm: list[np.ndarray] = []  # ARM_STATE per kept frame
        self.lift: list[float] = []  # the cube's bottom above the table (m) per kept frame: why the label is what it is
        self.held: list[bool] = []  # both jaws on the cube
        self.t = 0

    def record(self) -> None:
        label = self.env.is_success()
        if self.rng.random() < self.frame_keep and self.keep(label):
            for cam in self.cameras:
                self.frames[cam].append(self.env.render_camera(cam))
            self.labels.append(label)
            self.steps.append(self.t)
            self.arm.append(arm_state(self.env._state()))
            self.lift.append(round(self.env.cube_bottom_height(), 4))
            self.held.append(self.env.is_grasped())
            if self.watch is not None:
                self.watch.show({c: self.frames[c][-1] for c in self.cameras}, label)

    def step(self, action) -> None:
        self.env.step(action)
        self.t += 1
        self.record()

    def move(self, target, gripper: int, steps: int, noise: float = 0.0) -> None:
        env = self.env
        scale = env.cfg.action_scale
        for _ in range(steps):
            ee = env.data.site_xpos[env.tcp]
            motion = np.clip((np.asarray(target) - ee) / scale, -1, 1)
            if noise:
                motion = np.clip(motion + self.rng.normal(0, noise, 3), -1, 1)
            self.step(np.append(motion, gripper).astype(np.float32))

    def expert_until(self, expert, cond: Callable[[], bool], max_steps: int) -> bool:
        for _ in range(max_steps):
            if cond():
                return True
            self.step(expert.act())
        return cond()


def _check_counts(num_positive, num_negative, frame_keep: float) -> None:
    for name, value in (("num_positive", num_positive), ("num_negative", num_negative)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")
    if num_positive + num_negative == 0:
        raise ValueError("num_positive, num_negative: at least one frame is needed, both are 0")
    if not 0.0 < frame_keep <= 1.0:
        raise ValueError(f"frame_keep: expected a value in (0, 1], got {frame_keep}")


def collect_sim_dataset(out: str | os.PathLike, num_positive: int = 200, num_negative: int = 1000, seed: int = 0,
                        image_size: int = 128, cameras: tuple[str, ...] = ("gripper", "front"), overwrite: bool = False,
                        frame_keep: float = 0.4, max_episodes: int = 2000, log: Callable[[str], None] | None = None,
                        env_overrides: dict | None = None, env_config=None, watch=None) -> Path:
    """Write a labelled dataset from the simulation: labels are the simulator's ground truth (``is_success``),
    episodes a rotating mix of

    * ``expert_hold``: the scripted expert grasps and lifts, then keeps holding (negatives before, positives once
      lifted, including high in the workspace);
    * ``expert_drop``: grasp, lift, hold a little, then open: the cube falls (lifted and dropped);
    * ``squeeze``: the expert closes on the cube and holds it on the table or less than 0.6 of the success height
      up;
    * ``close_on_nothing``: the gripper closes next to the cube, beside the jaws' closing line (nothing between
      them), and rises;
    * ``push``: the open or closed gripper sweeps low through the cube (touched / pushed);
    * ``touch_top``: the closed gripper presses on the cube from above;
    * ``random``: uniformly random actions.

    ``close_on_nothing``, ``push`` and ``touch_top`` first rise clear of the cube and set the jaws there: a reset can
    start with the cube between the open jaws, and closing on it there made them grasps and lifts (near the success
    height, or over it) under a name that says otherwise.

    Cameras: the gripper camera alone cannot tell a cube lifted 2 cm from one squeezed on the table (the jaws and
    cube look the same; measured: ~0.95 held-out accuracy and 0.90 precision at 0.5), so the default adds the
    fixed ``front`` camera, which the simulated scene always has (the wrapper renders it when the policy's
    observation lacks it).

    Each frame is stored with probability ``frame_keep`` (consecutive frames are near-duplicates; more, shorter
    episodes give more variety for the same number of frames). Once a class has enough frames, frames of that class
    are no longer stored (and the mix shifts to the episode kinds that still provide the missing class).

    ``env_config`` (a simulation ``GraspCubeConfig``, e.g. the ``env`` section of ``configs/sim_pretrain.json``) is
    the simulation the frames come from: its domain-randomization hooks, held-out look (``look``), scene and motion
    settings apply; the dataset sets ``obs_type``, ``cameras`` and ``image_size`` itself. Default: the simulation's
    defaults (no randomization, the nominal look). ``env_overrides`` replace top-level fields of it. The manifest
    records the look and the hooks that were on, and each episode what its reset drew (``drawn``). Every frame is
    stored with what the arm measured then (``ARM_STATE``: the gripper's opening, velocity and closed command, the
    end-effector's height), and each episode lists, frame by frame, the ground truth behind the labels
    (``cube_lift``: the cube's bottom above the table, m; ``held``: both jaws on it; see ``near_the_bar``).

    ``watch`` (the browser console, `hilserl.console.session.Console` after its ``watch()``) sees every frame with
    its label and every episode's counts, and may pause or stop the collection between episodes (what was written
    so far stays a valid dataset)."""
    from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.sim.expert import ScriptedExpert

    cfg = sim_dataset_env_config(env_config, image_size, cameras, env_overrides)
    _check_counts(num_positive, num_negative, frame_keep)
    env = SO101GraspCubeEnv(cfg)
    rng = np.random.default_rng(seed)
    hooks = [f.name for f in dataclasses.fields(cfg.randomization)
             if isinstance(getattr(cfg.randomization, f.name), bool) and getattr(cfg.randomization, f.name)]
    writer = DatasetWriter(out, cameras, (image_size, image_size, 3), source="sim", overwrite=overwrite,
                           info={"seed": seed, "labels": "simulation ground truth (is_success)",
                                 "kinds": list(SIM_KINDS), "frame_keep": frame_keep, "look": cfg.look,
                                 "randomization": hooks, "action_scale": cfg.action_scale,
                                 "success_lift": cfg.success_lift}, with_arm=True)
    log = log or (lambda s: None)
    try:
        for ep in range(max_episodes):
            need_pos = writer.num_positive < num_positive
            need_neg = writer.num_negative < num_negative
            if not (need_pos or need_neg):
                break
            if watch is not None and not watch.before_episode():
                log(f"stopped from the console at {writer.num_positive} positive, {writer.num_negative} negative")
                break
            kind = _episode_kind(ep, need_pos, need_neg)
            counts = {"pos": writer.num_positive, "neg": writer.num_negative}

            def keep(label: bool, counts=counts) -> bool:
                key = "pos" if label else "neg"
                target = num_positive if label else num_negative
                if counts[key] >= target:
                    return False
                counts[key] += 1
                return True

            ep_seed = int(seed * 100_003 + ep)
            env.reset(seed=ep_seed)
            expert = ScriptedExpert(env, noise=float(rng.uniform(0.0, 0.15)), rng=rng)
            rec = _SimEpisode(env, cameras, rng, keep, frame_keep, watch)
            if watch is not None:
                watch.start_episode(ep + 1)
            rec.record()
            _run_kind(kind, env, expert, rec, rng, GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY)
            entry = writer.add_episode({c: np.stack(v) if v else np.zeros((0, image_size, image_size, 3), np.uint8)
                                        for c, v in rec.frames.items()}, rec.labels, rec.steps, kind=kind,
                                       arm=np.reshape(rec.arm, (len(rec.labels), len(ARM_STATE))),
                                       meta={"seed": ep_seed, "look": cfg.look,
                                             "drawn": _drawn_summary(getattr(env, "_randomization", {})),
                                             "cube_lift": rec.lift, "held": rec.held})
            if watch is not None:
                watch.reward_recorded("saved" if entry is not None else "nothing kept", len(rec.labels),
                                      int(sum(rec.labels)), kind)
            if entry is not None:
                log(f"episode {entry['id']:4d} {kind:<16} frames {entry['num_frames']:3d} "
                    f"positive {entry['num_positive']:3d} | total {writer.num_positive} positive, "
                    f"{writer.num_negative} negative")
    finally:
        env.close()
    return Path(out)


def near_the_bar(ds) -> np.ndarray:
    """bool [N]: the frames of a simulation dataset that are not successes only by millimetres: the cube held in
    both jaws with its bottom at least half the success height up (ground truth, ``cube_lift`` and ``held`` per
    episode). No camera tells a cube 1.8 cm up from one 2 cm up; a classifier that calls these successes has seen a
    real grasp and lift, not a faked one. All False for datasets recorded without the ground truth."""
    out = np.zeros(len(ds.labels), bool)
    bar = ds.manifest.get("info", {}).get("success_lift")  # written with the ground truth
    if bar is None:
        return out
    for e in ds.episodes:
        lift, held = e.get("cube_lift"), e.get("held")
        if lift is None or held is None:
            continue
        idx = np.flatnonzero(ds.episode_ids == e["id"])
        if len(idx) != len(lift) or len(idx) != len(held):
            raise ValueError(f"episodes[{e['id']}].cube_lift / held: expected {len(idx)} values (one per frame), "
                             f"got {len(lift)} / {len(held)}")
        out[idx] = np.asarray(held, bool) & (np.asarray(lift, float) >= 0.5 * float(bar))
    return out & ~ds.labels.astype(bool)


def sim_dataset_env_config(env_config=None, image_size: int = 128, cameras: tuple[str, ...] = ("gripper", "front"),
                           env_overrides: dict | None = None):
    """The simulation config the dataset's frames come from: ``env_config`` (default: the simulation's defaults)
    with the dataset's own ``obs_type`` (state: the frames are rendered on demand), ``cameras`` and ``image_size``,
    without the canonical view (a policy's training aid), then ``env_overrides``; validated (errors name the field,
    ``env.look: …``). A copy: the caller's config is never changed."""
    from hilserl.sim.env import GraspCubeConfig

    if env_config is None:
        env_config = GraspCubeConfig()
    if not isinstance(env_config, GraspCubeConfig):
        raise ValueError(f"env.type: a reward dataset from the simulation needs a simulation env section "
                         f"(env.type 'sim'), got {getattr(env_config, 'type', type(env_config).__name__)!r}")
    fields = {f.name for f in dataclasses.fields(GraspCubeConfig)}
    unknown = sorted(set(env_overrides or {}) - fields)
    if unknown:
        raise ValueError(f"env.{unknown[0]}: not a simulation setting")
    cfg = dataclasses.replace(copy.deepcopy(env_config), obs_type="state", image_size=int(image_size),
                              cameras=tuple(cameras), canonical_view=False, **copy.deepcopy(env_overrides or {}))
    cfg.validate()
    return cfg


# what a held-out look fixes in place of the hooks' draws (hilserl.sim.looks): not shown when a look is on
_LOOK_FIXES = ("light_scale", "color_temperature", "table_texture", "background")


def _drawn_summary(drawn: dict) -> dict:
    """What a reset's randomization drew, small enough for the manifest: numbers rounded, textures by family; with
    a held-out look, the draws it overrode are left out."""
    out: dict = {}
    for k, v in drawn.items():
        if "look" in drawn and k in _LOOK_FIXES:
            continue
        if isinstance(v, dict) and "family" in v:
            out[k] = v["family"]
        elif isinstance(v, (bool, str)):
            out[k] = v
        elif isinstance(v, (int, float, np.floating, np.integer)):
            out[k] = round(float(v), 4)
        elif k == "distractors":
            out[k] = len(v)
    return out


def _episode_kind(ep: int, need_pos: bool, need_neg: bool) -> str:
    """Episode ``ep``'s kind: the expert's kinds while only positives are missing, the others while only negatives
    are, else a rotation through ``_MIXED_WEIGHTS``."""
    if need_pos and not need_neg:
        return "expert_hold" if ep % 3 else "expert_drop"
    if need_neg and not need_pos:
        kinds = [k for k in SIM_KINDS if k not in ("expert_hold",)]
        return kinds[ep % len(kinds)]
    pool = [k for k, w in _MIXED_WEIGHTS.items() for _ in range(w)]
    return pool[ep % len(pool)]


def _jaw_axis(env) -> np.ndarray:
    """Unit vector (x, y) along which the jaws close, from the fixed jaw to the moving one."""
    d = env.data.geom_xpos[env.moving_jaw][:2] - env.data.geom_xpos[env.fixed_jaw][:2]
    return d / max(float(np.linalg.norm(d)), 1e-9)


def _clear_of_the_cube(rec: _SimEpisode, env, h: float, grip: int, open_cmd: int) -> None:
    """Open the jaws and rise straight up above the cube's top, then set the gripper: a reset may start with the
    cube between the open jaws, and a kind that is not a grasp must not close on it there."""
    ee = env.data.site_xpos[env.tcp].copy()
    rec.move([ee[0], ee[1], max(ee[2], 2 * h + 0.03)], open_cmd, 3)
    rec.move([ee[0], ee[1], max(ee[2], 2 * h + 0.03)], grip, 3)


def _run_kind(kind, env, expert, rec: _SimEpisode, rng, CLOSE, OPEN, STAY) -> None:
    h = float(env.model.geom_size[env.cube_geom][0])
    lifted = lambda: env.is_success()  # noqa: E731
    if kind in ("expert_hold", "expert_drop"):
        ok = rec.expert_until(expert, lifted, 60)
        if not ok:
            return
        hold = int(rng.integers(8, 30)) if kind == "expert_hold" else int(rng.integers(1, 6))
        for _ in range(hold):  # keep lifting (to the workspace top) / holding, as a policy would
            rec.step(expert.act())
        if kind == "expert_drop":
            ee = env.data.site_xpos[env.tcp].copy()
            rec.move(ee + rng.uniform(-0.01, 0.01, 3), OPEN, int(rng.integers(8, 16)))
    elif kind == "squeeze":
        ok = rec.expert_until(expert, lambda: env.is_grasped(), 60)
        if not ok:
            return
        # the cube's bottom held at `lift` above the table, under 0.6 of the success height; steered by the cube
        # itself: the expert may already be lifting when both jaws first touch (a cube caught 1.9 cm up is not a
        # squeeze, and no camera tells it from one 2 cm up)
        lift = float(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.6 * env.cfg.success_lift)]))
        for _ in range(int(rng.integers(10, 25))):
            ee = env.data.site_xpos[env.tcp]
            dz = np.clip(0.5 * (lift - env.cube_bottom_height()), -0.003, 0.003)  # gently: the arm lags a tick
            rec.move(ee + np.array([0.0, 0.0, dz]), CLOSE, 1)
    elif kind == "close_on_nothing":
        cube, _ = env.cube_pose()
        # beside the cube across the jaws' closing line, so the cube is never between them (a cube caught in the
        # jaws is a grasp, and lifted 1.6 cm no camera tells it from a success)
        jaw = _jaw_axis(env)
        ang = np.arctan2(jaw[0], -jaw[1]) + rng.choice([0.0, np.pi]) + rng.uniform(-0.5, 0.5)  # ⟂ to it, ±29°
        off = cube + np.array([np.cos(ang), np.sin(ang), 0.0]) * rng.uniform(0.035, 0.05)
        _clear_of_the_cube(rec, env, h, OPEN, OPEN)
        rec.move([off[0], off[1], 2 * h + 0.02], OPEN, 8, noise=0.1)
        rec.move([off[0], off[1], h + 0.002], STAY, 6)
        rec.move([off[0], off[1], h + 0.002], CLOSE, 4)
        rec.move([off[0], off[1], h + rng.uniform(0.02, 0.05)], CLOSE, int(rng.integers(6, 15)))
    elif kind == "push":
        cube, _ = env.cube_pose()
        ang = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(ang), np.sin(ang), 0.0])
        start, end = cube - 0.05 * d, cube + 0.04 * d
        grip = CLOSE if rng.random() < 0.5 else OPEN
        _clear_of_the_cube(rec, env, h, grip, OPEN)  # jaws set before they reach the cube: a push, not a grasp
        rec.move([start[0], start[1], 2 * h + 0.02], grip, 8)
        rec.move([start[0], start[1], h + 0.003], grip, 5)
        rec.move([end[0], end[1], h + 0.003], grip, int(rng.integers(6, 12)))
        rec.move([end[0], end[1], 2 * h + 0.03], grip, 5)
    elif kind == "touch_top":
        cube, _ = env.cube_pose()
        _clear_of_the_cube(rec, env, h, CLOSE, OPEN)  # shut before they reach it: open, they would close on it
        rec.move([cube[0], cube[1], 2 * h + 0.02], CLOSE, 10, noise=0.05)
        rec.move([cube[0], cube[1], 2 * h - 0.01], CLOSE, 6)
        rec.move([cube[0], cube[1], 2 * h + 0.03], CLOSE, 5)
    elif kind == "random":
        for _ in range(int(rng.integers(20, 50))):
            a = rng.uniform(-1, 1, 4).astype(np.float32)
            a[3] = float(rng.integers(0, 3))
            rec.step(a)
    else:
        raise ValueError(f"unknown episode kind {kind!r}")


__all__ = ["SIM_KINDS", "collect_sim_dataset", "near_the_bar", "sim_dataset_env_config"]
