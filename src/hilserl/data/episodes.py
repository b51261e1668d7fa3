"""Whole episodes, and the project's own demo-dataset format.

An `Episode` is what a recording produces and what dataset formats exchange: every raw environment observation
(``{"state": float32[S], "pixels": {camera: uint8 H×W×3}}``, optionally ``"environment_state"``) including the
final next observation, the executed actions, rewards, intervention flags and how the episode ended. Raw, because
what a replay buffer stores depends on the policy config (pixels, or cached backbone features); `fill_buffer`
converts with the caller's ``to_stored`` (e.g. `ObservationProcessor.to_stored`) on the way into a buffer.

A demo dataset (`DemoDataset`) is a folder::

    manifest.json   format, cameras, fps, robot_type, task, created_by, episode count, observation spec
    buffer/         a ReplayBuffer persisted on disk (memmaps + meta.json) holding RAW observations:
                    "state", optional "environment_state", and "pixels.<camera>" uint8 H×W×3

The buffer layout already stores each frame once and keeps every episode's final observation, so episodes are
rebuilt from it exactly (`DemoDataset.episodes()`). The dataset never wraps its ring: an episode that does not fit
is refused before anything is written.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from hilserl.fileio import atomic_write_json

from .replay_buffer import ReplayBuffer
from .spec import KeySpec, Transition, normalize_spec

__all__ = [
    "DemoDataset",
    "Episode",
    "FillCounts",
    "episodes_from_buffer",
    "fill_buffer",
    "observation_spec_from_space",
    "raw_to_stored",
    "stored_to_raw",
]

PIXELS_PREFIX = "pixels."
FEATURES_PREFIX = "features."
_RAW_KEYS = ("state", "environment_state", "pixels")

ToStored = Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]]
InfoFn = Callable[[Mapping[str, np.ndarray], np.ndarray], Mapping[str, float]]


# ---------------------------------------------------------------------------------------------------- observations
def raw_to_stored(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Raw env observation -> the flat layout a pixel buffer stores (``state``, ``pixels.<camera>``, ...)."""
    out = {"state": np.asarray(obs["state"])}
    if "environment_state" in obs:
        out["environment_state"] = np.asarray(obs["environment_state"])
    for cam, image in (obs.get("pixels") or {}).items():
        out[PIXELS_PREFIX + cam] = np.asarray(image)
    return out


def stored_to_raw(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `raw_to_stored`. Cached backbone features cannot be turned back into pixels."""
    out: dict[str, Any] = {}
    pixels: dict[str, np.ndarray] = {}
    for key, value in stored.items():
        if key in ("state", "environment_state"):
            out[key] = np.asarray(value)
        elif key.startswith(PIXELS_PREFIX):
            pixels[key[len(PIXELS_PREFIX):]] = np.asarray(value)
        elif key.startswith(FEATURES_PREFIX):
            raise ValueError(
                f"stored observation key {key!r} holds cached backbone features, not camera pixels; "
                "raw observations cannot be rebuilt from it"
            )
        else:
            raise ValueError(f"stored observation key {key!r} is not 'state', 'environment_state' or 'pixels.<camera>'")
    if "state" not in out:
        raise ValueError("stored observation has no 'state' key")
    if pixels:
        out["pixels"] = pixels
    return out


def observation_spec_from_space(observation_space) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Raw stored-layout spec (``state``, ``environment_state``, ``pixels.<camera>``) of a gymnasium Dict space
    shaped like `SO101GraspCubeEnv.observation_space`."""
    spaces = observation_space.spaces
    spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {"state": (tuple(spaces["state"].shape), np.dtype(np.float32))}
    if "environment_state" in spaces:
        spec["environment_state"] = (tuple(spaces["environment_state"].shape), np.dtype(np.float32))
    if "pixels" in spaces:
        for cam, box in spaces["pixels"].spaces.items():
            spec[PIXELS_PREFIX + cam] = (tuple(box.shape), np.dtype(np.uint8))
    return spec


def _check_raw_observation(obs: Any, where: str, reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalize one raw observation (numpy arrays, exact dtypes) and check it against the first of its episode."""
    if not isinstance(obs, Mapping):
        raise ValueError(f"{where}: expected a dict observation, got {type(obs).__name__}")
    unknown = [k for k in obs if k not in _RAW_KEYS]
    if unknown:
        raise ValueError(f"{where}: unexpected key {unknown[0]!r} (a raw observation holds {list(_RAW_KEYS)})")
    if "state" not in obs:
        raise ValueError(f"{where}: missing key 'state'")
    out: dict[str, Any] = {}
    for key in ("state", "environment_state"):
        if key in obs:
            arr = np.asarray(obs[key])
            if arr.dtype != np.float32 or arr.ndim != 1:
                raise ValueError(f"{where}: {key!r} must be a 1-D float32 array, got {arr.dtype} shape {arr.shape}")
            out[key] = arr
    if "pixels" in obs:
        if not isinstance(obs["pixels"], Mapping):
            raise ValueError(f"{where}: 'pixels' must be a dict camera -> image")
        pixels = {}
        for cam, image in obs["pixels"].items():
            img = np.asarray(image)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(
                    f"{where}: pixels[{cam!r}] must be uint8 H×W×3, got {img.dtype} shape {img.shape}"
                )
            pixels[cam] = img
        out["pixels"] = pixels
    if reference is not None:
        if set(out) != set(reference):
            raise ValueError(f"{where}: keys {sorted(out)} differ from the first observation's {sorted(reference)}")
        for key in ("state", "environment_state"):
            if key in out and out[key].shape != reference[key].shape:
                raise ValueError(f"{where}: {key!r} has shape {out[key].shape}, the episode's first observation "
                                 f"{reference[key].shape}")
        if "pixels" in out:
            if set(out["pixels"]) != set(reference["pixels"]):
                raise ValueError(f"{where}: cameras {sorted(out['pixels'])} differ from the first observation's "
                                 f"{sorted(reference['pixels'])}")
            for cam, img in out["pixels"].items():
                if img.shape != reference["pixels"][cam].shape:
                    raise ValueError(f"{where}: pixels[{cam!r}] has shape {img.shape}, the episode's first "
                                     f"observation {reference['pixels'][cam].shape}")
    return out


# ---------------------------------------------------------------------------------------------------- episode
@dataclass
class Episode:
    """One episode of T steps.

    ``observations`` holds T + 1 raw observations: the one each action was taken in, plus the final next
    observation (a time-out bootstraps from it). ``actions`` is (T, A) float32, the executed action (the human's
    during an intervention; for the discrete-gripper agent the last entry is the gripper command 0 close, 1 stay,
    2 open). ``terminated`` / ``truncated`` describe the last step. ``info`` holds per-step float scalars such as
    ``gripper_penalty`` (each (T,)).
    """

    observations: list[dict[str, Any]]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool = False
    truncated: bool = False
    is_intervention: np.ndarray | None = None
    task: str = ""
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions)
        if actions.ndim != 2 or actions.shape[0] == 0 or actions.dtype.kind not in "fiub":
            raise ValueError(f"episode actions: expected a numeric (T, A) array with T >= 1, got shape "
                             f"{actions.shape} dtype {actions.dtype}")
        self.actions = actions.astype(np.float32, copy=False)
        t = self.actions.shape[0]
        rewards = np.asarray(self.rewards)
        if rewards.shape != (t,) or rewards.dtype.kind not in "fiub":
            raise ValueError(f"episode rewards: expected shape ({t},) to match {t} actions, got {rewards.shape}")
        self.rewards = rewards.astype(np.float32, copy=False)
        if self.is_intervention is None:
            self.is_intervention = np.zeros(t, dtype=bool)
        flags = np.asarray(self.is_intervention)
        if flags.shape != (t,):
            raise ValueError(f"episode is_intervention: expected shape ({t},), got {flags.shape}")
        self.is_intervention = flags.astype(bool, copy=False)
        self.terminated, self.truncated = bool(self.terminated), bool(self.truncated)
        if not isinstance(self.task, str):
            raise ValueError(f"episode task: expected a string, got {type(self.task).__name__}")
        info = {}
        for key, values in dict(self.info).items():
            arr = np.asarray(values)
            if arr.shape != (t,) or arr.dtype.kind not in "fiub":
                raise ValueError(f"episode info[{key!r}]: expected {t} numbers, got shape {arr.shape}")
            info[str(key)] = arr.astype(np.float32, copy=False)
        self.info = info
        obs = list(self.observations)
        if len(obs) != t + 1:
            raise ValueError(f"episode observations: expected {t + 1} (one per action plus the final next "
                             f"observation), got {len(obs)}")
        first = _check_raw_observation(obs[0], "episode observation 0", None)
        self.observations = [first] + [_check_raw_observation(o, f"episode observation {i}", first)
                                       for i, o in enumerate(obs[1:], start=1)]

    @property
    def length(self) -> int:
        """Number of steps (transitions)."""
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.observations[0].get("pixels", {}))

    def stacked(self, key: str) -> np.ndarray:
        """All T + 1 values of ``state`` / ``environment_state`` / ``pixels.<camera>`` as one array."""
        if key.startswith(PIXELS_PREFIX):
            cam = key[len(PIXELS_PREFIX):]
            return np.stack([o["pixels"][cam] for o in self.observations])
        return np.stack([o[key] for o in self.observations])

    def transitions(self, to_stored: ToStored | None = None, info: InfoFn | None = None,
                    info_keys: Iterable[str] | None = None) -> Iterator[Transition]:
        """The episode as replay transitions; each observation is converted once (``to_stored``, default
        `raw_to_stored`). ``info(stored_obs, action)`` computes per-step info scalars; without it the episode's
        own ``info`` arrays are used (only ``info_keys`` of them, if given)."""
        convert = to_stored or raw_to_stored
        stored = [dict(convert(o)) for o in self.observations]
        own = self.info if info_keys is None else {k: self.info[k] for k in info_keys}
        last = self.length - 1
        for i in range(self.length):
            action = self.actions[i]
            step_info = dict(info(stored[i], action)) if info is not None else {k: float(v[i]) for k, v in
                                                                                  own.items()}
            yield Transition(stored[i], action, float(self.rewards[i]), self.terminated and i == last,
                             self.truncated and i == last, stored[i + 1], bool(self.is_intervention[i]), step_info)


# ---------------------------------------------------------------------------------------------------- buffers
@dataclass
class FillCounts:
    """What `fill_buffer` added."""

    episodes: int = 0
    transitions: int = 0
    interventions: int = 0
    terminated: int = 0
    truncated: int = 0


def _buffer_cameras(buffer: ReplayBuffer) -> set[str]:
    return {k.split(".", 1)[1] for k in buffer.spec if k.startswith((PIXELS_PREFIX, FEATURES_PREFIX))}


def _check_fits(buffer: ReplayBuffer, ep: Episode, index: int) -> None:
    """Catch the usual mismatches (action size, state size, cameras) before anything is converted."""
    if ep.action_dim != buffer.action_dim:
        raise ValueError(f"episode {index}: actions have {ep.action_dim} values, the buffer expects "
                         f"{buffer.action_dim}")
    first = ep.observations[0]
    if "state" in buffer.spec and first["state"].shape != buffer.spec["state"].shape:
        raise ValueError(f"episode {index}: 'state' has shape {first['state'].shape}, the buffer expects "
                         f"{buffer.spec['state'].shape}")
    missing = sorted(_buffer_cameras(buffer) - set(ep.cameras))
    if missing:
        raise ValueError(f"episode {index}: camera {missing[0]!r} is missing (episode cameras: "
                         f"{list(ep.cameras)}); map the dataset's camera names to the policy's")
    for key, ks in buffer.spec.items():
        if key.startswith(PIXELS_PREFIX):
            got = first["pixels"][key[len(PIXELS_PREFIX):]].shape
            if got != ks.shape:
                raise ValueError(f"episode {index}: camera images {key!r} have shape {got}, the buffer expects "
                                 f"{ks.shape}")


def fill_buffer(
    buffer: ReplayBuffer,
    episodes: Iterable[Episode],
    to_stored: ToStored | None = None,
    info: InfoFn | None = None,
) -> FillCounts:
    """Add whole episodes to a (demo) buffer, converting each raw observation with ``to_stored`` (e.g.
    `ObservationProcessor.to_stored`, which computes cached backbone features; default `raw_to_stored`).

    Per-step info the buffer stores (``buffer.info_keys``, e.g. ``gripper_penalty``) comes from ``info(stored_obs,
    action)`` when given, else from each episode's ``info`` arrays (info the buffer does not store is left out). An
    episode that ends with neither flag is closed with ``end_episode()`` (it bootstraps from its final
    observation)."""
    counts = FillCounts()
    for index, ep in enumerate(episodes):
        if not isinstance(ep, Episode):
            raise ValueError(f"episode {index}: expected an Episode, got {type(ep).__name__}")
        _check_fits(buffer, ep, index)
        if ep.length + 1 > buffer.capacity:
            raise ValueError(f"episode {index}: {ep.length} steps need {ep.length + 1} slots, the buffer has "
                             f"{buffer.capacity}")
        if info is None:
            tags = tuple(getattr(buffer, "tag_keys", ()))
            if tags:
                raise ValueError(f"the buffer tags every transition with {list(tags)}: feed the episodes' "
                                 "transitions (Episode.transitions) through the owner of the buffer, e.g. "
                                 "Learner.ingest, or pass info=callable(stored_obs, action) returning the tags")
            missing = [k for k in buffer.info_keys if k not in ep.info]
            if missing:
                raise ValueError(f"episode {index}: the buffer stores info key {missing[0]!r} but the episode has "
                                 f"no such values; pass info=callable(stored_obs, action) to compute it")
        if buffer.episode_open:
            buffer.end_episode()
        try:
            transitions = list(ep.transitions(to_stored, info, buffer.info_keys))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"episode {index}: converting its observations failed: {exc!r}") from exc
        for step, t in enumerate(transitions):
            try:
                buffer.add(t)
            except ValueError as exc:
                raise ValueError(f"episode {index}, step {step}: {exc}") from exc
        if buffer.episode_open:
            buffer.end_episode()
        counts.episodes += 1
        counts.transitions += ep.length
        counts.interventions += int(ep.is_intervention.sum())
        counts.terminated += int(ep.terminated)
        counts.truncated += int(ep.truncated)
    return counts


def episodes_from_buffer(buffer: ReplayBuffer, tasks: Sequence[str] | str = "") -> Iterator[Episode]:
    """Rebuild episodes from a raw-observation buffer, oldest first.

    Walks the ring in write order. An episode is a run of consecutive valid transitions; it ends at a terminal or
    truncated transition or where the next slot holds no continuing transition (its final observation). After the
    ring wrapped, the oldest episode may have lost its beginning: it comes out starting where the data does.
    ``tasks``: one task for all episodes, or one per episode.
    """
    # The walk reads the buffer's storage arrays directly: ReplayBuffer offers sampling, not ordered reads.
    frames_written = buffer._frames_written
    cap = buffer.capacity
    filled = min(frames_written, cap)
    start = (buffer._head + 1) % cap if frames_written > cap else 0
    order = (start + np.arange(filled)) % cap
    valid, ep_pos = buffer._valid, buffer._ep_pos
    term, trunc = buffer._terminated, buffer._truncated
    image_keys = set(buffer.image_keys)

    def frame(slot: int) -> dict[str, Any]:
        stored = {}
        for key, arr in buffer._frames.items():
            value = np.array(arr[slot])
            stored[key] = np.ascontiguousarray(value.transpose(1, 2, 0)) if key in image_keys else value
        return stored_to_raw(stored)

    i, count = 0, 0
    while i < filled:
        if not valid[order[i]]:
            i += 1
            continue
        j = i
        while not (term[order[j]] or trunc[order[j]]) and j + 1 < filled and valid[order[j + 1]] \
                and ep_pos[order[j + 1]] == ep_pos[order[j]] + 1:
            j += 1
        slots = order[i:j + 1]
        if j + 1 >= filled:  # cannot happen for a consistent buffer: a transition always writes its next frame
            raise ValueError(f"replay buffer: transition in slot {int(order[j])} has no next frame")
        task = tasks if isinstance(tasks, str) else tasks[count]
        yield Episode(
            observations=[frame(int(s)) for s in order[i:j + 2]],
            actions=np.array(buffer._action[slots]),
            rewards=np.array(buffer._reward[slots]),
            terminated=bool(term[order[j]]),
            truncated=bool(trunc[order[j]]),
            is_intervention=np.array(buffer._intervention[slots]),
            task=task,
            info={k: np.array(arr[slots]) for k, arr in buffer._info.items()},
        )
        count += 1
        i = j + 1


# ---------------------------------------------------------------------------------------------------- demo dataset
_MANIFEST = "manifest.json"
_BUFFER_DIR = "buffer"
_FORMAT = "hilserl.demo_dataset/1"


class DemoDataset:
    """A folder of demonstrations with raw observations (see the module docstring). Use `create` or `open`."""

    def __init__(self, root: Path, manifest: dict[str, Any], buffer: ReplayBuffer) -> None:
        self.root = root
        self.manifest = manifest
        self.buffer = buffer

    # ------------------------------------------------------------------ creating and opening
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        observation_spec: Mapping[str, Any],
        *,
        action_dim: int = 4,
        capacity: int = 20_000,
        fps: int = 10,
        robot_type: str = "so101",
        task: str = "",
        created_by: str = "",
        info_keys: Iterable[str] = (),
    ) -> "DemoDataset":
        """New, empty dataset in ``root`` (which must not exist or be empty).

        ``observation_spec``: raw stored layout ``{"state": ((17,), float32), "pixels.gripper": ((128, 128, 3),
        uint8)}`` (see `observation_spec_from_space`). ``capacity``: frame slots; an episode of T steps uses T + 1.
        ``info_keys``: the per-step info to keep (e.g. ``gripper_penalty``); episodes' other info is not stored.
        """
        root = Path(root)
        spec = normalize_spec(observation_spec)
        for key, ks in spec.items():
            if key.startswith(FEATURES_PREFIX):
                raise ValueError(f"observation spec key {key!r}: a demo dataset stores raw pixels "
                                 "('pixels.<camera>'), not cached backbone features")
            if key.startswith(PIXELS_PREFIX):
                if ks.dtype != np.uint8 or len(ks.shape) != 3 or ks.shape[2] != 3:
                    raise ValueError(f"observation spec key {key!r}: expected uint8 (H, W, 3), got {ks}")
            elif key in ("state", "environment_state"):
                if ks.dtype != np.float32 or len(ks.shape) != 1:
                    raise ValueError(f"observation spec key {key!r}: expected float32 (N,), got {ks}")
            else:
                raise ValueError(f"observation spec key {key!r}: expected 'state', 'environment_state' or "
                                 "'pixels.<camera>'")
        if "state" not in spec:
            raise ValueError("observation spec: 'state' is required")
        if int(fps) <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ValueError(f"{str(root)!r} exists and is not an empty folder; refusing to overwrite it")
        root.mkdir(parents=True, exist_ok=True)
        buffer = ReplayBuffer(int(capacity), spec, int(action_dim), info_keys=tuple(info_keys),
                              storage_dir=root / _BUFFER_DIR)
        manifest = {
            "format": _FORMAT,
            "cameras": [k[len(PIXELS_PREFIX):] for k in spec if k.startswith(PIXELS_PREFIX)],
            "fps": int(fps),
            "robot_type": robot_type,
            "task": task,
            "created_by": created_by,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "episodes": 0,
            "transitions": 0,
            "episode_tasks": [],
            "action_dim": int(action_dim),
            "capacity": int(capacity),
            "info_keys": list(info_keys),
            "observation_spec": {k: {"shape": list(ks.shape), "dtype": ks.dtype.str} for k, ks in spec.items()},
        }
        atomic_write_json(root / _MANIFEST, manifest)
        return cls(root, manifest, buffer)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "DemoDataset":
        """Reopen a dataset written by `create` / `add_episode`."""
        root = Path(root)
        path = root / _MANIFEST
        if not path.exists():
            raise ValueError(f"{str(root)!r} is not a demo dataset: {_MANIFEST} is missing")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else None
            raise ValueError(f"{path}: 'format' is {got!r}, expected {_FORMAT!r}")
        for key in ("fps", "episodes", "episode_tasks", "observation_spec", "action_dim"):
            if key not in manifest:
                raise ValueError(f"{path}: key {key!r} is missing")
        buffer = ReplayBuffer.open(root / _BUFFER_DIR)
        stored_spec = {k: KeySpec(tuple(v["shape"]), np.dtype(v["dtype"]))
                       for k, v in manifest["observation_spec"].items()}
        if stored_spec != buffer.spec or buffer.action_dim != manifest["action_dim"]:
            raise ValueError(f"{path}: observation spec / action_dim do not match the buffer in "
                             f"{root / _BUFFER_DIR}")
        dataset = cls(root, manifest, buffer)
        if buffer.num_episodes != manifest["episodes"]:
            # A crash between flushing the buffer and rewriting the manifest: the buffer is the record.
            warnings.warn(f"{path}: manifest lists {manifest['episodes']} episodes, the buffer holds "
                          f"{buffer.num_episodes}; using the buffer's count", stacklevel=2)
            tasks = list(manifest["episode_tasks"])[: buffer.num_episodes]
            tasks += [manifest.get("task", "")] * (buffer.num_episodes - len(tasks))
            manifest.update(episodes=buffer.num_episodes, transitions=len(buffer), episode_tasks=tasks)
            atomic_write_json(path, manifest)
        return dataset

    # ------------------------------------------------------------------ contents
    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.manifest["cameras"])

    @property
    def fps(self) -> int:
        return int(self.manifest["fps"])

    @property
    def num_episodes(self) -> int:
        return int(self.manifest["episodes"])

    @property
    def free_slots(self) -> int:
        """Frame slots left; an episode of T steps needs T + 1."""
        return self.buffer.capacity - (self.buffer.num_added + self.buffer.num_episodes)

    def add_episode(self, episode: Episode) -> None:
        """Append one episode and make it durable (buffer flushed, then the manifest rewritten)."""
        if not isinstance(episode, Episode):
            raise ValueError(f"expected an Episode, got {type(episode).__name__}")
        index = self.num_episodes
        need = episode.length + 1
        if need > self.free_slots:
            raise ValueError(f"demo dataset {str(self.root)!r} is full: episode {index} needs {need} frame slots, "
                             f"{self.free_slots} of {self.buffer.capacity} are left; create the dataset with a "
                             "larger capacity")
        fill_buffer(self.buffer, [episode])
        self.buffer.flush()
        self.manifest["episodes"] = index + 1
        self.manifest["transitions"] = int(self.manifest.get("transitions", 0)) + episode.length
        self.manifest["episode_tasks"] = list(self.manifest["episode_tasks"]) + [episode.task or
                                                                                 self.manifest.get("task", "")]
        atomic_write_json(self.root / _MANIFEST, self.manifest)

    def episodes(self) -> Iterator[Episode]:
        """Every episode, in the order added, rebuilt exactly from the buffer."""
        return episodes_from_buffer(self.buffer, list(self.manifest["episode_tasks"]))

    def __len__(self) -> int:
        return self.num_episodes

    def close(self) -> None:
        self.buffer.close()

    def __enter__(self) -> "DemoDataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

