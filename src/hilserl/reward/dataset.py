"""Reward-classifier datasets: labelled frames on disk, the real-arm recording API, simulation collection, and
the split by episode.

Layout of a dataset folder (no pickle anywhere; every array is a plain ``.npy`` read with ``allow_pickle=False``)::

    manifest.json                 format + version, cameras, image shape, label counts, one entry per episode
    episodes/000000_gripper.npy   uint8 [T, H, W, 3], one file per episode and camera
    episodes/000000_labels.npy    uint8 [T] (1 = success), one per episode
    episodes/000000_steps.npy     int32 [T], the control step of each frame within its episode

The manifest is rewritten (atomically) after every episode, so an interrupted recording is a valid, smaller dataset.

Frames of one episode are strongly correlated (10 Hz, the scene barely changes between frames), so train/test
splits are always by episode (``split_by_episode``): a frame-level split would put near-duplicates on both sides
and report an accuracy the classifier does not have on new episodes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hilserl.fileio import atomic_write, atomic_write_json

FORMAT = "hilserl.reward_dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the file and what is wrong."""


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)

    atomic_write(path, write)


# ============================================================================================= writing
class DatasetWriter:
    """Writes episodes of labelled frames. ``add_episode`` stores one episode; the manifest follows every call."""

    def __init__(self, root: str | os.PathLike, cameras: Iterable[str], image_shape: tuple[int, int, int],
                 source: str = "sim", overwrite: bool = False, info: dict | None = None):
        self.root = Path(root)
        self.cameras = tuple(cameras)
        self.image_shape = tuple(int(s) for s in image_shape)
        if not self.cameras:
            raise ValueError("cameras: at least one camera is needed")
        if len(self.image_shape) != 3 or self.image_shape[2] != 3:
            raise ValueError(f"image_shape: expected (H, W, 3), got {self.image_shape}")
        if (self.root / MANIFEST).exists() and not overwrite:
            raise FileExistsError(f"{self.root} already holds a reward dataset ({MANIFEST}); choose another folder")
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        self.source = source
        self.info = dict(info or {})
        self.episodes: list[dict] = []
        self._write_manifest()

    @property
    def num_positive(self) -> int:
        return sum(e["num_positive"] for e in self.episodes)

    @property
    def num_negative(self) -> int:
        return sum(e["num_frames"] - e["num_positive"] for e in self.episodes)

    def add_episode(self, frames: Mapping[str, np.ndarray], labels, steps=None, kind: str = "",
                    meta: dict | None = None) -> dict | None:
        """frames: camera -> uint8 [T, H, W, 3]; labels: [T] booleans; steps: [T] step indices (default 0..T-1).
        An empty episode (T = 0) is skipped and returns None."""
        labels = np.asarray(labels).astype(bool).reshape(-1)
        t = labels.shape[0]
        if t == 0:
            return None
        missing = [c for c in self.cameras if c not in frames]
        if missing:
            raise ValueError(f"frames: no images for camera(s) {missing} (dataset cameras: {list(self.cameras)})")
        arrays = {}
        for cam in self.cameras:
            a = np.asarray(frames[cam])
            if a.dtype != np.uint8 or a.shape != (t, *self.image_shape):
                raise ValueError(f"frames[{cam!r}]: expected uint8 {(t, *self.image_shape)}, got {a.dtype} {a.shape}")
            arrays[cam] = np.ascontiguousarray(a)
        steps = np.arange(t, dtype=np.int32) if steps is None else np.asarray(steps, dtype=np.int32).reshape(-1)
        if steps.shape[0] != t:
            raise ValueError(f"steps: expected {t} values, got {steps.shape[0]}")
        ep_id = len(self.episodes)
        files = {}
        for cam, a in arrays.items():
            files[cam] = f"episodes/{ep_id:06d}_{cam}.npy"
            _atomic_save_npy(self.root / files[cam], a)
        files["labels"] = f"episodes/{ep_id:06d}_labels.npy"
        _atomic_save_npy(self.root / files["labels"], labels.astype(np.uint8))
        files["steps"] = f"episodes/{ep_id:06d}_steps.npy"
        _atomic_save_npy(self.root / files["steps"], steps)
        entry = {"id": ep_id, "kind": kind, "num_frames": int(t), "num_positive": int(labels.sum()), "files": files,
                 **(meta or {})}
        self.episodes.append(entry)
        self._write_manifest()
        return entry

    def _write_manifest(self) -> None:
        pos, neg = self.num_positive, self.num_negative
        atomic_write_json(self.root / MANIFEST, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "source": self.source,
            "cameras": list(self.cameras), "image_shape": list(self.image_shape), "image_dtype": "uint8",
            "num_frames": pos + neg, "label_counts": {"positive": pos, "negative": neg},
            "num_episodes": len(self.episodes), "info": self.info, "episodes": self.episodes,
        })


# ============================================================================================= reading
@dataclass
class RewardDataset:
    root: Path
    cameras: tuple[str, ...]
    image_shape: tuple[int, int, int]
    images: dict[str, np.ndarray]  # camera -> uint8 [N, H, W, 3]
    labels: np.ndarray  # bool [N]
    episode_ids: np.ndarray  # int64 [N]
    steps: np.ndarray  # int32 [N]
    episodes: list[dict] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_positive(self) -> int:
        return int(self.labels.sum())

    @property
    def num_negative(self) -> int:
        return len(self) - self.num_positive


def load_dataset(root: str | os.PathLike) -> RewardDataset:
    """Read and check a dataset folder; every problem is a ``DatasetError`` naming the file."""
    root = Path(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath}: not found (is {root} a reward dataset folder?)")
    try:
        man = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{mpath}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise DatasetError(f"{mpath}: not a reward dataset manifest (format {man.get('format')!r}, "
                           f"expected {FORMAT!r})" if isinstance(man, dict) else f"{mpath}: not a JSON object")
    if man.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{mpath}: format_version {man.get('format_version')!r}, this hilserl reads "
                           f"{FORMAT_VERSION}")
    for key in ("cameras", "image_shape", "episodes", "label_counts"):
        if key not in man:
            raise DatasetError(f"{mpath}: missing field {key!r}")
    cameras = tuple(man["cameras"])
    shape = tuple(int(s) for s in man["image_shape"])
    images: dict[str, list] = {c: [] for c in cameras}
    labels, ep_ids, steps = [], [], []
    for ep in man["episodes"]:
        files = ep.get("files", {})
        t = int(ep["num_frames"])
        for cam in cameras:
            a = _load_npy(root, files.get(cam), f"episode {ep['id']} camera {cam!r}")
            if a.dtype != np.uint8 or a.shape != (t, *shape):
                raise DatasetError(f"{root / files[cam]}: expected uint8 {(t, *shape)}, got {a.dtype} {a.shape}")
            images[cam].append(a)
        lab = _load_npy(root, files.get("labels"), f"episode {ep['id']} labels")
        if lab.shape != (t,):
            raise DatasetError(f"{root / files['labels']}: expected {t} labels, got shape {lab.shape}")
        if int(lab.astype(bool).sum()) != int(ep["num_positive"]):
            raise DatasetError(f"{root / files['labels']}: {int(lab.astype(bool).sum())} positives, the manifest "
                               f"says {ep['num_positive']}")
        labels.append(lab.astype(bool))
        st = _load_npy(root, files["steps"], f"episode {ep['id']} steps") if "steps" in files else np.arange(t)
        steps.append(st.astype(np.int32))
        ep_ids.append(np.full(t, int(ep["id"]), dtype=np.int64))
    n_pos = sum(int(x.sum()) for x in labels)
    n = sum(len(x) for x in labels)
    counts = man["label_counts"]
    if counts.get("positive") != n_pos or counts.get("negative") != n - n_pos:
        raise DatasetError(f"{mpath}: label_counts {counts} do not match the episode files "
                           f"(positive {n_pos}, negative {n - n_pos})")
    h, w, c = shape
    cat = (lambda xs, empty: np.concatenate(xs) if xs else empty)
    return RewardDataset(
        root=root, cameras=cameras, image_shape=shape,
        images={cam: cat(images[cam], np.zeros((0, h, w, c), np.uint8)) for cam in cameras},
        labels=cat(labels, np.zeros(0, bool)), episode_ids=cat(ep_ids, np.zeros(0, np.int64)),
        steps=cat(steps, np.zeros(0, np.int32)), episodes=list(man["episodes"]), manifest=man)


def _load_npy(root: Path, rel: str | None, what: str) -> np.ndarray:
    if rel is None:
        raise DatasetError(f"{root / MANIFEST}: {what}: no file listed")
    path = root / rel
    if not path.is_file():
        raise DatasetError(f"{path}: missing ({what})")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: unreadable .npy ({what}): {e}") from None


# ============================================================================================= split
def split_by_episode(episode_ids: np.ndarray, labels: np.ndarray, test_fraction: float = 0.25,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (train, test) with every episode entirely on one side. Stratified: episodes with at least
    one positive frame and episodes without are split separately, so both sides see positives."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    episode_ids = np.asarray(episode_ids)
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    eps = np.unique(episode_ids)
    has_pos = np.array([labels[episode_ids == e].any() for e in eps])
    test_eps = []
    for group in (eps[has_pos], eps[~has_pos]):
        if len(group) == 0:
            continue
        k = int(round(test_fraction * len(group)))
        if len(group) >= 2:
            k = min(max(k, 1), len(group) - 1)
        else:
            k = 0
        test_eps.extend(rng.permutation(group)[:k].tolist())
    test_mask = np.isin(episode_ids, np.array(test_eps, dtype=episode_ids.dtype))
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


# ============================================================================================= recording (real arm)
def record_episode(writer: DatasetWriter, frames: Iterable[Mapping[str, np.ndarray]],
                   label_source: Callable[[], bool], max_frames: int | None = None, kind: str = "recorded",
                   meta: dict | None = None) -> dict | None:
    """Record one episode from any frame source: ``frames`` yields camera -> uint8 [H, W, 3] dicts (a camera loop
    on the real arm; the iteration ends the episode), and ``label_source()`` is asked once per frame, right after
    the frame arrives, whether the scene is a success (on the real arm: is the key / leader-arm signal held).
    Writes the episode with ``writer`` and returns its manifest entry."""
    per_cam: dict[str, list] = {c: [] for c in writer.cameras}
    labels = []
    for i, frame in enumerate(frames):
        if max_frames is not None and i >= max_frames:
            break
        for cam in writer.cameras:
            if cam not in frame:
                raise ValueError(f"frame {i}: no image for camera {cam!r} (got {sorted(frame)})")
            per_cam[cam].append(np.asarray(frame[cam], dtype=np.uint8))
        labels.append(bool(label_source()))
    if not labels:
        return None
    return writer.add_episode({c: np.stack(v) for c, v in per_cam.items()}, labels, kind=kind, meta=meta)


def record_with_env(writer: DatasetWriter, env, num_episodes: int, *, hold_action: np.ndarray,
                    log: Callable[[str], None] = print) -> dict:
    """Record labelled episodes from an env whose person moves the arm and presses keys (the real SO-101 with the
    leader arm, keyboard or gamepad; `hilserl.envs.so101`). The label is a switch: the SUCCESS key (or gamepad
    button) turns it on — press it when the cube is held up — and off again; FAILURE turns it off; RE-RECORD drops
    the episode; QUIT stops. A terminal cannot see a key being *held*, so a press toggles. Every frame of every
    camera in ``writer.cameras`` is stored with the label in force when it was taken."""
    saved = dropped = 0
    quit_ = False
    while saved < num_episodes and not quit_:
        obs, _ = env.reset()
        frames: dict[str, list] = {c: [] for c in writer.cameras}
        labels: list[bool] = []
        label, keep, done = False, True, False
        while not done:
            for cam in writer.cameras:
                if cam not in obs["pixels"]:
                    raise ValueError(f"camera {cam!r}: not in the env's observation (it has {sorted(obs['pixels'])})")
                frames[cam].append(np.asarray(obs["pixels"][cam], dtype=np.uint8))
            labels.append(label)
            obs, _, terminated, truncated, info = env.step(hold_action)
            for event in info.get("teleop_events", ()):
                if event == "success":
                    label = not label
                    log(f"label: {'SUCCESS' if label else 'not a success'}")
                elif event == "failure":
                    label = False
                elif event == "rerecord":
                    keep, done = False, True
                elif event == "quit":
                    keep, done, quit_ = False, True, True
            done = done or terminated or truncated
        if not keep:
            dropped += 1
            continue
        writer.add_episode({c: np.stack(v) for c, v in frames.items()}, labels, kind="recorded")
        saved += 1
        log(f"episode {saved}/{num_episodes}: {len(labels)} frames, {sum(labels)} labelled success")
    return {"saved": saved, "dropped": dropped, "quit": quit_, "positives": writer.num_positive,
            "negatives": writer.num_negative}


# ============================================================================================= simulation
SIM_KINDS = ("expert_hold", "expert_drop", "squeeze", "close_on_nothing", "push", "touch_top", "random")


class _SimEpisode:
    """Drives the simulation for one collection episode and records (frame, ground-truth label) pairs."""

    def __init__(self, env, cameras, rng: np.random.Generator, keep: Callable[[bool], bool],
                 frame_keep: float = 1.0):
        self.env = env
        self.frame_keep = frame_keep
        self.cameras = cameras
        self.rng = rng
        self.keep = keep  # whether a frame with this label is still wanted
        self.frames: dict[str, list] = {c: [] for c in cameras}
        self.labels: list[bool] = []
        self.steps: list[int] = []
        self.t = 0

    def record(self) -> None:
        label = self.env.is_success()
        if self.rng.random() < self.frame_keep and self.keep(label):
            for cam in self.cameras:
                self.frames[cam].append(self.env.render_camera(cam))
            self.labels.append(label)
            self.steps.append(self.t)

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


def collect_sim_dataset(out: str | os.PathLike, num_positive: int = 200, num_negative: int = 1000, seed: int = 0,
                        image_size: int = 128, cameras: tuple[str, ...] = ("gripper", "front"), overwrite: bool = False,
                        frame_keep: float = 0.4, max_episodes: int = 2000, log: Callable[[str], None] | None = None,
                        env_overrides: dict | None = None) -> Path:
    """Write a labelled dataset from the simulation: labels are the simulator's ground truth (``is_success``),
    episodes a rotating mix of

    * ``expert_hold``: the scripted expert grasps and lifts, then keeps holding (negatives before, positives once
      lifted, including high in the workspace);
    * ``expert_drop``: grasp, lift, hold a little, then open: the cube falls (lifted and dropped);
    * ``squeeze``: the expert closes on the cube but never lifts it (or lifts it less than the success height);
    * ``close_on_nothing``: the gripper closes next to the cube and rises;
    * ``push``: the open or closed gripper sweeps low through the cube (touched / pushed);
    * ``touch_top``: the closed gripper presses on the cube from above;
    * ``random``: uniformly random actions.

    Cameras: the gripper camera alone cannot tell a cube lifted 2 cm from one squeezed on the table (the jaws and
    cube look the same; measured: ~0.95 held-out accuracy and 0.90 precision at 0.5), so the default adds the
    fixed ``front`` camera, which the simulated scene always has (the wrapper renders it when the policy's
    observation lacks it).

    Each frame is stored with probability ``frame_keep`` (consecutive frames are near-duplicates; more, shorter
    episodes give more variety for the same number of frames). Once a class has enough frames, frames of that class are no longer stored (and the mix shifts to the episode
    kinds that still provide the missing class)."""
    from hilserl.sim.env import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY, GraspCubeConfig, SO101GraspCubeEnv
    from hilserl.sim.expert import ScriptedExpert

    cfg = GraspCubeConfig(obs_type="state", image_size=image_size, cameras=tuple(cameras), **(env_overrides or {}))
    env = SO101GraspCubeEnv(cfg)
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(out, cameras, (image_size, image_size, 3), source="sim", overwrite=overwrite,
                           info={"seed": seed, "labels": "simulation ground truth (is_success)",
                                 "kinds": list(SIM_KINDS), "frame_keep": frame_keep})
    if not 0.0 < frame_keep <= 1.0:
        raise ValueError(f"frame_keep: expected a value in (0, 1], got {frame_keep}")
    log = log or (lambda s: None)
    weights_neg = {"expert_hold": 1, "expert_drop": 2, "squeeze": 3, "close_on_nothing": 2, "push": 2,
                   "touch_top": 1, "random": 1}
    try:
        for ep in range(max_episodes):
            need_pos = writer.num_positive < num_positive
            need_neg = writer.num_negative < num_negative
            if not (need_pos or need_neg):
                break
            if need_pos and not need_neg:
                kind = "expert_hold" if ep % 3 else "expert_drop"
            elif need_neg and not need_pos:
                kinds = [k for k in SIM_KINDS if k not in ("expert_hold",)]
                kind = kinds[ep % len(kinds)]
            else:
                pool = [k for k, w in weights_neg.items() for _ in range(w)]
                kind = pool[ep % len(pool)]
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
            rec = _SimEpisode(env, cameras, rng, keep, frame_keep)
            rec.record()
            _run_kind(kind, env, expert, rec, rng, GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY)
            entry = writer.add_episode({c: np.stack(v) if v else np.zeros((0, image_size, image_size, 3), np.uint8)
                                        for c, v in rec.frames.items()}, rec.labels, rec.steps, kind=kind,
                                       meta={"seed": ep_seed})
            if entry is not None:
                log(f"episode {entry['id']:4d} {kind:<16} frames {entry['num_frames']:3d} "
                    f"positive {entry['num_positive']:3d} | total {writer.num_positive} positive, "
                    f"{writer.num_negative} negative")
    finally:
        env.close()
    return Path(out)


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
        lift = float(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.012)]))  # stays below the 2 cm success height
        ee = env.data.site_xpos[env.tcp].copy()
        for _ in range(int(rng.integers(10, 25))):
            target = ee + np.array([0, 0, lift])
            if env.cube_bottom_height() > 0.6 * env.cfg.success_lift:
                target = env.data.site_xpos[env.tcp].copy()
            rec.move(target, CLOSE, 1)
    elif kind == "close_on_nothing":
        cube, _ = env.cube_pose()
        ang = rng.uniform(0, 2 * np.pi)
        off = cube + np.array([np.cos(ang), np.sin(ang), 0.0]) * rng.uniform(0.035, 0.05)
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
        rec.move([start[0], start[1], 2 * h + 0.02], grip, 8)
        rec.move([start[0], start[1], h + 0.003], grip, 5)
        rec.move([end[0], end[1], h + 0.003], grip, int(rng.integers(6, 12)))
        rec.move([end[0], end[1], 2 * h + 0.03], grip, 5)
    elif kind == "touch_top":
        cube, _ = env.cube_pose()
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


def dataset_summary(ds: RewardDataset) -> str:
    kinds: dict[str, list[int]] = {}
    for e in ds.episodes:
        k = kinds.setdefault(e.get("kind", ""), [0, 0, 0])
        k[0] += 1
        k[1] += e["num_positive"]
        k[2] += e["num_frames"] - e["num_positive"]
    lines = [f"{ds.root}: {len(ds)} frames ({ds.num_positive} positive, {ds.num_negative} negative) in "
             f"{len(ds.episodes)} episodes, cameras {list(ds.cameras)}, images {ds.image_shape}"]
    for k, (n, p, q) in sorted(kinds.items()):
        lines.append(f"  {k or '-':<18} {n:4d} episodes {p:5d} positive {q:5d} negative")
    return "\n".join(lines)


__all__ = ["FORMAT_VERSION", "DatasetError", "DatasetWriter", "RewardDataset", "load_dataset", "split_by_episode",
           "record_episode", "collect_sim_dataset", "dataset_summary", "SIM_KINDS"]
