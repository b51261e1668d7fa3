"""The project's own demo-dataset format: a folder of demonstrations with raw observations.

A demo dataset (`DemoDataset`) is a folder::

    manifest.json   format, cameras, fps, robot_type, task, created_by, episode count, observation spec
    buffer/         a ReplayBuffer persisted on disk (memmaps + meta.json) holding RAW observations:
                    "state", optional "environment_state", and "pixels.<camera>" uint8 H×W×3

The buffer layout already stores each frame once and keeps every episode's final observation, so episodes are
rebuilt from it exactly (`DemoDataset.episodes()`, see `episodes.episodes_from_buffer`). The dataset never wraps
its ring: an episode that does not fit is refused before anything is written.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from hilserl.fileio import atomic_write_json
from hilserl.obs_format import STATE, VECTOR_KEYS, camera_of, is_feature_key, is_pixel_key

from .episodes import Episode, episodes_from_buffer, fill_buffer
from .replay_buffer import ReplayBuffer
from .spec import KeySpec, normalize_spec

__all__ = ["DemoDataset"]

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
        ``info_keys``: the per-step info to keep (e.g. ``grasp_penalty``); episodes' other info is not stored.
        """
        root = Path(root)
        info_keys = tuple(info_keys)  # read twice below: a generator would be empty the second time
        spec = normalize_spec(observation_spec)
        for key, ks in spec.items():
            if is_feature_key(key):
                raise ValueError(f"observation spec key {key!r}: a demo dataset stores raw pixels "
                                 "('pixels.<camera>'), not cached backbone features")
            if is_pixel_key(key):
                if ks.dtype != np.uint8 or len(ks.shape) != 3 or ks.shape[2] != 3:
                    raise ValueError(f"observation spec key {key!r}: expected uint8 (H, W, 3), got {ks}")
            elif key in VECTOR_KEYS:
                if ks.dtype != np.float32 or len(ks.shape) != 1:
                    raise ValueError(f"observation spec key {key!r}: expected float32 (N,), got {ks}")
            else:
                raise ValueError(f"observation spec key {key!r}: expected 'state', 'environment_state' or "
                                 "'pixels.<camera>'")
        if STATE not in spec:
            raise ValueError("observation spec: 'state' is required")
        if int(fps) <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ValueError(f"{str(root)!r} exists and is not an empty folder; refusing to overwrite it")
        root.mkdir(parents=True, exist_ok=True)
        buffer = ReplayBuffer(int(capacity), spec, int(action_dim), info_keys=info_keys,
                              storage_dir=root / _BUFFER_DIR)
        manifest = {
            "format": _FORMAT,
            "cameras": [camera_of(k) for k in spec if is_pixel_key(k)],
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

