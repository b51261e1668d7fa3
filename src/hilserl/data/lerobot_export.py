"""Write hilserl `Episode`s (or a raw-pixel replay buffer) as a LeRobot dataset v3.0 folder (`export_lerobot`,
`export_replay_buffer`). The format and its conventions are described in `lerobot_v3`."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hilserl.obs_format import ENV_STATE, PIXELS, STATE, is_feature_key, pixel_key

from .episodes import Episode, episodes_from_buffer
from .lerobot_v3 import (
    ACTION_KEY,
    CODEBASE_VERSION,
    DATA_PATH,
    DONE_KEY,
    ENV_STATE_KEY,
    FINAL_PREFIX,
    INFO_NAMES,
    INFO_PATH,
    INFO_PREFIX,
    INTERVENTION_KEY,
    REWARD_KEY,
    STATE_KEY,
    STATS_PATH,
    TASKS_PATH,
    TRUNCATED_KEY,
    VIDEO_PATH,
    column_values,
    gripper_to_continuous,
    image_key,
    png_bytes,
)
from .lerobot_chunks import ParquetFiles, VideoFiles, write_episode_rows
from .replay_buffer import ReplayBuffer
from .video import encode_video

__all__ = ["ExportSummary", "export_lerobot", "export_replay_buffer"]

DEFAULT_ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper"]


# ---------------------------------------------------------------------------------------------------- small helpers
def _fixed_list(matrix: np.ndarray, dtype: pa.DataType) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).ravel(), dtype),
                                             matrix.shape[1])


# ---------------------------------------------------------------------------------------------------- stats
def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-episode stats: over frames for vectors ((D,); scalars (1,)), per channel for images."""
    if values.ndim == 4:  # images N×H×W×3 -> (3, 1, 1), scaled to [0, 1]
        x = values.astype(np.float64) / 255.0
        axes, shape = (0, 1, 2), (3, 1, 1)
        return {"min": x.min(axis=axes).reshape(shape), "max": x.max(axis=axes).reshape(shape),
                "mean": x.mean(axis=axes).reshape(shape), "std": x.std(axis=axes).reshape(shape),
                "count": np.array([len(values)])}
    x = values.astype(np.float64).reshape(len(values), -1)
    return {"min": x.min(axis=0), "max": x.max(axis=0), "mean": x.mean(axis=0), "std": x.std(axis=0),
            "count": np.array([len(values)])}


def _aggregate(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine per-episode stats (count-weighted mean, parallel variance), as LeRobot does."""
    counts = np.array([float(s["count"][0]) for s in stats])
    total = counts.sum()
    means = np.stack([s["mean"] for s in stats])
    w = counts.reshape(-1, *([1] * (means.ndim - 1)))
    mean = (means * w).sum(axis=0) / total
    var = ((np.stack([s["std"] for s in stats]) ** 2 + (means - mean) ** 2) * w).sum(axis=0) / total
    return {"min": np.min(np.stack([s["min"] for s in stats]), axis=0),
            "max": np.max(np.stack([s["max"] for s in stats]), axis=0),
            "mean": mean, "std": np.sqrt(var), "count": np.array([int(total)])}


# ---------------------------------------------------------------------------------------------------- export
@dataclass
class ExportSummary:
    """What `export_lerobot` wrote (file counts per kind, to check the chunking)."""

    root: Path
    episodes: int
    frames: int
    data_files: int
    video_files: dict[str, int] = field(default_factory=dict)
    lossless: bool = False


@dataclass
class _Schema:
    """Everything fixed by the first episode; later episodes must match it."""

    state_dim: int
    env_state_dim: int | None
    action_dim: int
    cameras: dict[str, str]  # our camera -> LeRobot key
    image_shapes: dict[str, tuple[int, int, int]]
    info_keys: tuple[str, ...]

    @classmethod
    def of(cls, ep: Episode, cameras: Sequence[str] | Mapping[str, str] | None) -> "_Schema":
        first = ep.observations[0]
        have = list(ep.cameras)
        if cameras is None:
            mapping = {c: image_key(c) for c in have}
        elif isinstance(cameras, Mapping):
            mapping = dict(cameras)
        else:
            mapping = {c: image_key(c) for c in cameras}
        for cam, key in mapping.items():
            if cam not in have:
                raise ValueError(f"camera {cam!r} is not in the episodes (cameras: {have})")
            if "/" in key or not key:
                raise ValueError(f"LeRobot feature key {key!r} for camera {cam!r} must be non-empty without '/'")
        env = first.get(ENV_STATE)
        return cls(int(first[STATE].shape[0]), None if env is None else int(env.shape[0]), ep.action_dim,
                   mapping, {c: first[PIXELS][c].shape for c in mapping}, tuple(sorted(ep.info)))

    def check(self, ep: Episode, index: int) -> None:
        missing = [c for c in self.cameras if c not in ep.cameras]
        if missing:
            raise ValueError(f"episode {index}: camera {missing[0]!r} is missing (the first episode has it; "
                             "a dataset has one layout)")
        probe = _Schema.of(ep, self.cameras)
        for name in ("state_dim", "env_state_dim", "action_dim", "image_shapes", "info_keys"):
            if getattr(probe, name) != getattr(self, name):
                raise ValueError(f"episode {index}: {name} is {getattr(probe, name)!r}, the first episode's "
                                 f"{getattr(self, name)!r} (a dataset has one layout)")

    def info_columns(self) -> dict[str, str]:
        return {k: INFO_PREFIX + INFO_NAMES.get(k, k) for k in self.info_keys}

    def features(self, fps: int, state_names, action_names, video_info: dict[str, Any]) -> dict[str, Any]:
        def vec(n: int, names) -> dict[str, Any]:
            if names is not None and len(names) != n:
                raise ValueError(f"{len(names)} names given for a feature of {n} values: {list(names)}")
            return {"dtype": "float32", "shape": [n], "names": list(names) if names is not None else None}

        f: dict[str, Any] = {STATE_KEY: vec(self.state_dim, state_names)}
        if self.env_state_dim is not None:
            f[ENV_STATE_KEY] = vec(self.env_state_dim, None)
        for cam, key in self.cameras.items():
            h, w, c = self.image_shapes[cam]
            f[key] = {"dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
                      "info": {"video.height": h, "video.width": w, **video_info, "video.fps": fps,
                               "video.channels": c, "has_audio": False}}
        if action_names is None and self.action_dim == len(DEFAULT_ACTION_NAMES):
            action_names = DEFAULT_ACTION_NAMES
        f[ACTION_KEY] = vec(self.action_dim, action_names)
        f[REWARD_KEY] = {"dtype": "float32", "shape": [1], "names": None}
        f[DONE_KEY] = {"dtype": "bool", "shape": [1], "names": None}
        f[TRUNCATED_KEY] = {"dtype": "bool", "shape": [1], "names": None}
        f[INTERVENTION_KEY] = {"dtype": "float32", "shape": [1], "names": ["is_intervention"]}
        for col in self.info_columns().values():
            f[col] = {"dtype": "float32", "shape": [1], "names": [col[len(INFO_PREFIX):]]}
        for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                            ("index", "int64"), ("task_index", "int64")):
            f[name] = {"dtype": dtype, "shape": [1], "names": None}
        return f


def _frame_table(ep: Episode, schema: _Schema, actions: np.ndarray, episode_index: int, first_index: int,
                 task_index: int, fps: int) -> pa.Table:
    t = ep.length
    last = np.zeros(t, bool)
    last[-1] = True
    cols: dict[str, pa.Array] = {STATE_KEY: _fixed_list(ep.stacked(STATE)[:t], pa.float32())}
    if schema.env_state_dim is not None:
        cols[ENV_STATE_KEY] = _fixed_list(ep.stacked(ENV_STATE)[:t], pa.float32())
    cols[ACTION_KEY] = _fixed_list(actions, pa.float32())
    cols[REWARD_KEY] = pa.array(ep.rewards, pa.float32())
    cols[DONE_KEY] = pa.array(last & (ep.terminated or ep.truncated), pa.bool_())
    cols[TRUNCATED_KEY] = pa.array(last & ep.truncated, pa.bool_())
    cols[INTERVENTION_KEY] = pa.array(ep.is_intervention.astype(np.float32), pa.float32())
    for key, col in schema.info_columns().items():
        cols[col] = pa.array(ep.info[key], pa.float32())
    frame_index = np.arange(t, dtype=np.int64)
    cols["timestamp"] = pa.array((frame_index / fps).astype(np.float32), pa.float32())
    cols["frame_index"] = pa.array(frame_index, pa.int64())
    cols["episode_index"] = pa.array(np.full(t, episode_index, np.int64), pa.int64())
    cols["index"] = pa.array(first_index + frame_index, pa.int64())
    cols["task_index"] = pa.array(np.full(t, task_index, np.int64), pa.int64())
    return pa.table(cols)


def _tasks_table(tasks: list[str]) -> pa.Table:
    """Task strings as the pandas index (how LeRobot's ``DataFrame.to_parquet`` stores them), task_index column."""
    table = pa.table({"task_index": pa.array(np.arange(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _json_stats(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    return {k: {s: np.asarray(v).tolist() for s, v in st.items()} for k, st in stats.items()}


def export_lerobot(
    episodes: Iterable[Episode],
    root: str | os.PathLike,
    *,
    fps: int,
    robot_type: str | None,
    task: str | None = None,
    camera_keys: Sequence[str] | Mapping[str, str] | None = None,
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    lossless: bool = False,
    crf: int = 18,
    gop: int = 2,
    gripper: str = "keep",
    chunks_size: int = 1000,
    data_files_size_in_mb: float = 100,
    video_files_size_in_mb: float = 500,
) -> ExportSummary:
    """Write episodes as a LeRobot v3.0 dataset in ``root`` (a new or empty folder; it appears complete or not at
    all: everything is written into a temporary sibling folder and renamed at the end).

    ``robot_type``: LeRobot's name for the robot (e.g. ``"so101_follower"``; None if unknown). ``camera_keys``:
    which cameras to write (default all), or a mapping camera -> LeRobot feature key (default
    ``observation.images.<camera>``). ``task``: the task string of every episode (default each episode's own
    ``task``). ``gripper``: ``"keep"`` (discrete commands as they are, LeRobot HIL-SERL's convention) or
    ``"to_continuous"`` (see `lerobot_v3`). ``lossless``: bit-exact video (H.264 RGB, QP 0).
    """
    root = Path(root)
    if int(fps) <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps}")
    if gripper not in ("keep", "to_continuous"):
        raise ValueError(f"gripper must be 'keep' or 'to_continuous', got {gripper!r}")
    if int(chunks_size) <= 0 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
        raise ValueError("chunks_size, data_files_size_in_mb and video_files_size_in_mb must be positive")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{str(root)!r} exists and is not an empty folder; refusing to overwrite it")
    fps = int(fps)
    work = root.parent / f".{root.name}.partial-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        summary = _export_into(episodes, work, fps=fps, robot_type=robot_type, task=task, cameras=camera_keys,
                               state_names=state_names, action_names=action_names, lossless=lossless, crf=crf,
                               gop=gop, gripper=gripper, chunks_size=int(chunks_size),
                               data_mb=data_files_size_in_mb, video_mb=video_files_size_in_mb)
        if root.exists():
            root.rmdir()
        os.replace(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    summary.root = root
    return summary


def _export_into(episodes: Iterable[Episode], work: Path, *, fps: int, robot_type, task, cameras, state_names,
                 action_names, lossless: bool, crf: int, gop: int, gripper: str, chunks_size: int,
                 data_mb: float, video_mb: float) -> ExportSummary:
    writer = _DatasetWriter(work, fps=fps, task=task, cameras=cameras, gripper=gripper, lossless=lossless, crf=crf,
                            gop=gop, chunks_size=chunks_size, data_mb=data_mb, video_mb=video_mb)
    try:
        for e, ep in enumerate(episodes):
            writer.add(e, ep)
        if writer.schema is None:
            raise ValueError("no episodes to export")
    finally:
        writer.data.close()
    writer.close_videos()
    writer.write_metadata(robot_type, state_names, action_names)
    return writer.summary()


class _DatasetWriter:
    """One export into ``work``: frame rows and videos episode by episode, then the metadata files."""

    def __init__(self, work: Path, *, fps: int, task: str | None, cameras, gripper: str, lossless: bool, crf: int,
                 gop: int, chunks_size: int, data_mb: float, video_mb: float) -> None:
        self.work, self.fps, self.task, self.cameras, self.gripper = work, fps, task, cameras, gripper
        self.lossless, self.crf, self.gop = lossless, crf, gop
        self.chunks_size, self.data_mb, self.video_mb = chunks_size, data_mb, video_mb
        self.schema: _Schema | None = None
        self.data = ParquetFiles(work, DATA_PATH, data_mb, chunks_size)
        self.videos: dict[str, VideoFiles] = {}
        self.tmp = work / ".episode_videos"
        self.tasks: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.stats: dict[str, list[dict[str, np.ndarray]]] = {}
        self.total_frames = 0

    def add(self, e: int, ep: Episode) -> None:
        """Write episode ``e``'s frame rows and videos; keep its metadata row and stats for `write_metadata`."""
        if not isinstance(ep, Episode):
            raise ValueError(f"episode {e}: expected an Episode, got {type(ep).__name__}")
        if self.schema is None:
            self.schema = _Schema.of(ep, self.cameras)
            self.videos = {cam: VideoFiles(self.work, key, self.video_mb, self.chunks_size)
                           for cam, key in self.schema.cameras.items()}
        else:
            self.schema.check(ep, e)
        actions = ep.actions.copy()
        if self.gripper == "to_continuous":
            actions[:, -1] = gripper_to_continuous(actions[:, -1])
        ep_task = self.task if self.task is not None else ep.task
        task_index = self.tasks.setdefault(ep_task, len(self.tasks))
        table = _frame_table(ep, self.schema, actions, e, self.total_frames, task_index, self.fps)
        chunk, file = self.data.append(table)
        row: dict[str, Any] = {"episode_index": e, "tasks": [ep_task], "length": ep.length,
                               "data/chunk_index": chunk, "data/file_index": file,
                               "dataset_from_index": self.total_frames,
                               "dataset_to_index": self.total_frames + ep.length}
        ep_stats = {name: _stats(column_values(table, name)) for name in table.column_names}
        self._write_videos(e, ep, row, ep_stats)
        for name, st in ep_stats.items():
            self.stats.setdefault(name, []).append(st)
            for s, v in st.items():
                row[f"stats/{name}/{s}"] = np.asarray(v).tolist()
        row.update(_final_observation_cells(ep, self.schema))
        self.rows.append(row)
        self.total_frames += ep.length

    def _write_videos(self, e: int, ep: Episode, row: dict[str, Any], ep_stats: dict[str, Any]) -> None:
        """Each camera's frames (all but the final observation) appended to its video files; row and stats."""
        for c, (cam, key) in enumerate(self.schema.cameras.items()):
            images = ep.stacked(pixel_key(cam))
            self.tmp.mkdir(exist_ok=True)
            path = self.tmp / f"{e:06d}_{c:02d}.mp4"
            encode_video(path, images[:-1], self.fps, self.lossless, self.crf, self.gop)
            row.update(self.videos[cam].append(path, ep.length, self.fps))
            ep_stats[key] = _stats(images[:-1])

    def close_videos(self) -> None:
        for v in self.videos.values():
            v.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_metadata(self, robot_type: str | None, state_names, action_names) -> None:
        """meta/episodes, meta/tasks.parquet, meta/stats.json and meta/info.json, after the last episode."""
        work, schema = self.work, self.schema
        write_episode_rows(work, self.rows, self.data_mb, self.chunks_size)
        (work / TASKS_PATH).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_tasks_table(list(self.tasks)), work / TASKS_PATH)
        stats = {name: _aggregate(per_ep) for name, per_ep in self.stats.items()}
        (work / STATS_PATH).write_text(json.dumps(_json_stats(stats), indent=4))
        video_info = {"video.codec": "h264", "video.pix_fmt": "gbrp" if self.lossless else "yuv420p",
                      "video.is_depth_map": False}
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": len(self.rows),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_mb,
            "video_files_size_in_mb": self.video_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if schema.cameras else None,
            "features": schema.features(self.fps, state_names, action_names, video_info),
        }
        (work / INFO_PATH).write_text(json.dumps(info, indent=4))

    def summary(self) -> ExportSummary:
        video_files = {key: self.videos[cam].files for cam, key in self.schema.cameras.items()}
        return ExportSummary(self.work, len(self.rows), self.total_frames, self.data.files, video_files,
                             self.lossless)


def _final_observation_cells(ep: Episode, schema: _Schema) -> dict[str, Any]:
    """The episode's final next observation (it has no frame row) as final_observation/* metadata cells."""
    final = ep.observations[-1]
    cells: dict[str, Any] = {FINAL_PREFIX + STATE_KEY: final[STATE].tolist()}
    if schema.env_state_dim is not None:
        cells[FINAL_PREFIX + ENV_STATE_KEY] = final[ENV_STATE].tolist()
    for cam, key in schema.cameras.items():
        cells[FINAL_PREFIX + key] = png_bytes(final[PIXELS][cam])
    return cells


def export_replay_buffer(buffer: ReplayBuffer, root: str | os.PathLike, *, task: str = "",
                         **kwargs: Any) -> ExportSummary:
    """Export the episodes of a raw-pixel replay buffer (oldest first; see `episodes_from_buffer`) with
    `export_lerobot` (keyword arguments as there; ``fps`` and ``robot_type`` are required)."""
    features = [k for k in buffer.spec if is_feature_key(k)]
    if features:
        raise ValueError(
            f"cannot export this replay buffer: it is a cached-feature buffer (key {features[0]!r} holds the frozen "
            "backbone's feature maps, not camera pixels), so it has no images to write as video. Export the "
            "demonstrations from their demo dataset (DemoDataset keeps raw pixels), or train with "
            "--policy.cached_features=false so the buffers keep pixels."
        )
    if len(buffer) == 0:
        raise ValueError("the replay buffer holds no transitions: nothing to export")
    return export_lerobot(episodes_from_buffer(buffer, task), root, task=task, **kwargs)

