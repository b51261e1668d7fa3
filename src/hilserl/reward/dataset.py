"""Reward-classifier datasets: labelled frames on disk (writing, reading, checking), the split by episode, and a
summary. Filling one: `hilserl.reward.recording` (the real arm, any frame source) and `hilserl.reward.sim_dataset`
(the simulation's ground truth).

Layout of a dataset folder (no pickle anywhere; every array is a plain ``.npy`` read with ``allow_pickle=False``)::

    manifest.json                 format + version, cameras, image shape, label counts, one entry per episode
    episodes/000000_gripper.npy   uint8 [T, H, W, 3], one file per episode and camera
    episodes/000000_labels.npy    uint8 [T] (1 = success), one per episode
    episodes/000000_steps.npy     int32 [T], the control step of each frame within its episode
    episodes/000000_arm.npy       float32 [T, F], what the arm measured at each frame (the manifest's
                                  ``arm_state`` names the F values; recordings store ``ARM_STATE``: the gripper's
                                  opening, velocity and closed command, the end-effector's height); only in
                                  datasets recorded with it

The manifest is rewritten (atomically) after every episode, so an interrupted recording is a valid, smaller dataset.

Frames of one episode are strongly correlated (10 Hz, the scene barely changes between frames), so train/test
splits are always by episode (``split_by_episode``): a frame-level split would put near-duplicates on both sides
and report an accuracy the classifier does not have on new episodes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hilserl.fileio import atomic_write, atomic_write_json

FORMAT = "hilserl.reward_dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# What the arm itself knows about a lift, whatever the camera sees, at their places in the policy's state vector
# (``SO101GraspCubeEnv.STATE_LAYOUT``, the same on the real arm): the gripper's opening (0 closed .. 1 open), its
# velocity (rad/s; 0 when the jaws have stopped, on a cube or closed), whether it was commanded closed (1) or open
# (0), and the end-effector's height (z in the arm's base frame, m; the base stands on the table). A half-open
# gripper at lifting height is a held cube only when the jaws were told to close and have stopped.
ARM_FIELDS = {"gripper_velocity": 11, "gripper_opening": 12, "gripper_closed_cmd": 13, "ee_height": 16}
ARM_STATE = ("gripper_opening", "gripper_velocity", "gripper_closed_cmd", "ee_height")  # what recordings store
LEGACY_ARM_STATE = ("gripper_opening", "ee_height")  # datasets and classifiers made before the velocity and command
_STATE_DIM = 17


def check_arm_fields(fields, where: str) -> tuple[str, ...]:
    """``fields`` as a tuple of known ``ARM_FIELDS`` names, or a ValueError naming ``where``."""
    fields = tuple(fields)
    unknown = [f for f in fields if f not in ARM_FIELDS]
    if unknown or not fields or len(set(fields)) != len(fields):
        raise ValueError(f"{where}: expected distinct names from {list(ARM_FIELDS)}, got {list(fields)}")
    return fields


def arm_state(state, fields: tuple[str, ...] = ARM_STATE) -> np.ndarray:
    """The arm values ``fields`` (float32 [..., len(fields)]) of policy state vector(s) [..., 17]."""
    s = np.asarray(state, dtype=np.float32)
    if s.ndim == 0 or s.shape[-1] != _STATE_DIM:
        raise ValueError(f"state: expected the arm's {_STATE_DIM}-value state vector (joint positions and "
                         f"velocities, gripper, end-effector position), got shape {tuple(s.shape)}")
    return np.ascontiguousarray(s[..., [ARM_FIELDS[f] for f in fields]])


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
                 source: str = "sim", overwrite: bool = False, info: dict | None = None, with_arm: bool = False):
        """with_arm: every episode also stores what the arm measured (``add_episode(..., arm=...)``)."""
        self.root = Path(root)
        self.with_arm = bool(with_arm)
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
                    meta: dict | None = None, arm=None) -> dict | None:
        """frames: camera -> uint8 [T, H, W, 3]; labels: [T] booleans; steps: [T] step indices (default 0..T-1);
        arm: [T, 4] ``ARM_STATE`` values (required exactly when the writer is ``with_arm``). An empty episode
        (T = 0) is skipped and returns None."""
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
        if self.with_arm != (arm is not None):
            raise ValueError(f"arm: this dataset stores what the arm measured with every frame; give arm=[T, "
                             f"{len(ARM_STATE)}]"
                             if self.with_arm else "arm: this dataset was opened without with_arm=True")
        if arm is not None:
            arm = np.asarray(arm, dtype=np.float32)
            if arm.shape != (t, len(ARM_STATE)) or not np.isfinite(arm).all():
                raise ValueError(f"arm: expected finite float32 [{t}, {len(ARM_STATE)}] ({', '.join(ARM_STATE)}), "
                                 f"got shape {arm.shape}")
        ep_id = len(self.episodes)
        files = {}
        for cam, a in arrays.items():
            files[cam] = f"episodes/{ep_id:06d}_{cam}.npy"
            _atomic_save_npy(self.root / files[cam], a)
        files["labels"] = f"episodes/{ep_id:06d}_labels.npy"
        _atomic_save_npy(self.root / files["labels"], labels.astype(np.uint8))
        files["steps"] = f"episodes/{ep_id:06d}_steps.npy"
        _atomic_save_npy(self.root / files["steps"], steps)
        if arm is not None:
            files["arm"] = f"episodes/{ep_id:06d}_arm.npy"
            _atomic_save_npy(self.root / files["arm"], arm)
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
            "num_episodes": len(self.episodes), "info": self.info,
            **({"arm_state": list(ARM_STATE)} if self.with_arm else {}), "episodes": self.episodes,
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
    arm: np.ndarray | None = None  # float32 [N, F] (arm_fields), when the dataset was recorded with it
    arm_fields: tuple[str, ...] | None = None  # what the columns of `arm` are (ARM_FIELDS names)
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
    labels, ep_ids, steps, arms = [], [], [], []
    with_arm = "arm_state" in man
    fields = None
    if with_arm:
        named = man["arm_state"]
        try:
            if not isinstance(named, list):
                raise ValueError(f"{mpath}: arm_state: expected a list of names from {list(ARM_FIELDS)}, got "
                                 f"{named!r}")
            fields = check_arm_fields(named, f"{mpath}: arm_state")
        except ValueError as e:
            raise DatasetError(str(e)) from None
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
        if with_arm:
            a = _load_npy(root, files.get("arm"), f"episode {ep['id']} arm state")
            if a.shape != (t, len(fields)) or not np.isfinite(a).all():
                raise DatasetError(f"{root / files['arm']}: expected finite [{t}, {len(fields)}] arm values "
                                   f"({', '.join(fields)}), got shape {a.shape}")
            arms.append(a.astype(np.float32))
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
        steps=cat(steps, np.zeros(0, np.int32)),
        arm=cat(arms, np.zeros((0, len(fields)), np.float32)) if with_arm else None, arm_fields=fields,
        episodes=list(man["episodes"]), manifest=man)


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


def dataset_summary(ds: RewardDataset) -> str:
    kinds: dict[str, list[int]] = {}
    for e in ds.episodes:
        k = kinds.setdefault(e.get("kind", ""), [0, 0, 0])
        k[0] += 1
        k[1] += e["num_positive"]
        k[2] += e["num_frames"] - e["num_positive"]
    lines = [f"{ds.root}: {len(ds)} frames ({ds.num_positive} positive, {ds.num_negative} negative) in "
             f"{len(ds.episodes)} episodes, cameras {list(ds.cameras)}, images {ds.image_shape}"
             + (f", arm state {list(ds.arm_fields)}" if ds.arm is not None else "")]
    for k, (n, p, q) in sorted(kinds.items()):
        lines.append(f"  {k or '-':<18} {n:4d} episodes {p:5d} positive {q:5d} negative")
    return "\n".join(lines)


__all__ = ["ARM_FIELDS", "ARM_STATE", "FORMAT_VERSION", "LEGACY_ARM_STATE", "DatasetError", "arm_state",
           "check_arm_fields", "DatasetWriter", "RewardDataset", "load_dataset", "split_by_episode",
           "dataset_summary"]
