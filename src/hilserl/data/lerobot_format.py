"""LeRobot dataset v3.0 import and export (parquet + mp4), so users' LeRobot data works both ways.

Layout (LeRobot codebase v3.0, written exactly so; read from a local folder only, nothing is downloaded)::

    meta/info.json        codebase_version "v3.0", robot_type, fps, total_episodes/frames/tasks, chunks_size,
                          data_files_size_in_mb, video_files_size_in_mb, data_path / video_path templates,
                          features {name: {dtype, shape, names[, info]}}
    meta/stats.json       per feature min/max/mean/std/count (images per channel, (3, 1, 1), scaled to [0, 1])
    meta/tasks.parquet    task strings (the pandas index, as LeRobot writes it) and task_index
    meta/episodes/chunk-XXX/file-XXX.parquet   one row per episode: episode_index, tasks, length,
                          data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                          videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}, stats/<key>/<stat>,
                          meta/episodes/chunk_index, meta/episodes/file_index
    data/chunk-XXX/file-XXX.parquet            one row per frame, several episodes per file
    videos/<key>/chunk-XXX/file-XXX.mp4        several episodes back to back; frame t of an episode is the
                          frame presented at from_timestamp + timestamp

A new file starts when the current one would reach its size setting (data and episode metadata: uncompressed
Arrow bytes; video: encoded bytes); a chunk folder holds at most ``chunks_size`` files.

Frame row t of an episode holds the observation the action was taken in, the action and what the step returned:
``observation.state``, ``observation.environment_state`` (if any), ``observation.images.<camera>`` (video),
``action``, ``next.reward``, ``next.done`` (terminated or truncated; last row only), ``next.truncated``,
``complementary_info.is_intervention`` (float32 0/1, the key LeRobot's HIL-SERL actor uses),
``complementary_info.discrete_penalty`` (our ``gripper_penalty``, under LeRobot's name), other info keys as
``complementary_info.<key>``, and ``timestamp``, ``frame_index``, ``episode_index``, ``index``, ``task_index``.

The final next observation of an episode has no row of its own (LeRobot rows are observation/action pairs). The
exporter keeps it in the episode's metadata row (``final_observation/<feature>``: lists for state, PNG bytes for
images), so export -> import returns every episode exactly. Datasets without those columns (any other LeRobot
dataset) end with their last observation repeated, as LeRobot's own dataset -> replay buffer conversion does.
Without ``next.done`` an episode's end is taken as a time limit (truncated: the learner bootstraps); without
``next.truncated`` a ``next.done`` is taken as terminal (LeRobot's convention).

Gripper: LeRobot's HIL-SERL end-effector control uses the same discrete command as this project in the last
action entry (0 close, 1 stay, 2 open; 1 is its neutral action), so discrete actions are exchanged unchanged.
``gripper="to_continuous"`` on export writes the continuous target of the simulation's continuous mode instead
(close -> -1, open -> +1, stay -> the previous target, starting open); ``gripper="to_discrete"`` on import maps a
continuous command or velocity c to close (c <= -threshold), open (c >= threshold) or stay.

Video: H.264 (libx264, yuv420p, CRF 18, GOP 2, as LeRobot's encoder uses GOP 2) is lossy: pixels read back are
close, not equal. Measured on the simulation's 128×128 frames (4 scripted-expert episodes, gripper and front
cameras): mean absolute error 1.7-2.1 per channel value, PSNR 34-39 dB; single values differ by up to about 130 at
the cube's sharp colour edges, where yuv420p halves the colour resolution (yuv444p keeps it, but browsers and many
players cannot decode it). `VIDEO_TOLERANCE` is what the tests allow. ``lossless=True`` writes H.264 RGB at QP 0
(libx264rgb, pixel format gbrp): bit-exact, still an .mp4 that every FFmpeg-based reader (LeRobot's too) decodes,
about 3.5× larger.

Reading uses the FFmpeg binary that ships with imageio-ffmpeg, which also decodes AV1 (LeRobot's default codec)
and HEVC; each frame is matched by its presentation time, within ``tolerance_s`` (LeRobot's 1e-4 s).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .episodes import Episode, episodes_from_buffer
from .replay_buffer import ReplayBuffer
from .video import VideoReader, concat_videos, encode_video

__all__ = [
    "CODEBASE_VERSION",
    "ExportSummary",
    "VIDEO_TOLERANCE",
    "export_lerobot",
    "export_replay_buffer",
    "gripper_to_continuous",
    "gripper_to_discrete",
    "import_lerobot",
]

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
IMAGES_PREFIX = "observation.images."
ACTION_KEY = "action"
REWARD_KEY = "next.reward"
DONE_KEY = "next.done"
TRUNCATED_KEY = "next.truncated"
INFO_PREFIX = "complementary_info."
INTERVENTION_KEY = INFO_PREFIX + "is_intervention"
FINAL_PREFIX = "final_observation/"
# our info key -> LeRobot's complementary_info name
INFO_NAMES = {"gripper_penalty": "discrete_penalty"}
DEFAULT_ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper"]
GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN = 0, 1, 2

VIDEO_TOLERANCE = {"mean_abs": 3.0, "psnr_db": 30.0}
"""Pixel error the tests allow for lossy H.264 (mean absolute error per channel value, PSNR); the measured values
are in the module docstring. Lossless export is compared for equality."""

_MB = 1024**2


# ---------------------------------------------------------------------------------------------------- gripper
def gripper_to_discrete(values: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Continuous gripper command or velocity (-1 close ... +1 open) -> 0 close / 1 stay / 2 open."""
    values = np.asarray(values, dtype=np.float32)
    out = np.full(values.shape, float(GRIPPER_STAY), np.float32)
    out[values <= -threshold] = GRIPPER_CLOSE
    out[values >= threshold] = GRIPPER_OPEN
    return out


def gripper_to_continuous(commands: np.ndarray, initial: float = 1.0) -> np.ndarray:
    """Discrete commands -> the continuous jaw target they set: close -1, open +1, stay keeps the previous one."""
    commands = np.asarray(commands)
    _check_discrete(commands, "action[:, -1]")
    out = np.empty(commands.shape, np.float32)
    target = float(initial)
    for i, c in enumerate(commands):
        if int(c) == GRIPPER_CLOSE:
            target = -1.0
        elif int(c) == GRIPPER_OPEN:
            target = 1.0
        out[i] = target
    return out


def _check_discrete(commands: np.ndarray, where: str) -> None:
    bad = ~np.isin(commands, (GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN))
    if bad.any():
        raise ValueError(f"{where}: value {float(commands[bad][0])!r} is not a discrete gripper command "
                         "(0 close, 1 stay, 2 open); pass gripper='to_discrete' to map a continuous gripper")


# ---------------------------------------------------------------------------------------------------- small helpers
def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's order of files: file-000 ... file-(chunks_size-1) in a chunk, then the next chunk."""
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


def _fixed_list(matrix: np.ndarray, dtype: pa.DataType) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).ravel(), dtype),
                                             matrix.shape[1])


def _png(image_rgb: np.ndarray) -> bytes:
    import cv2  # only needed for final observations and image (non-video) features

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _unpng(data: bytes, where: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{where}: not a decodable image")
    return np.ascontiguousarray(img[..., ::-1])


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


# ---------------------------------------------------------------------------------------------------- video files
class _VideoFiles:
    """The video files of one camera key: episodes appended back to back, a new file at the size setting."""

    def __init__(self, root: Path, key: str, limit_mb: float, chunks_size: int) -> None:
        self.root, self.key, self.limit, self.chunks_size = root, key, limit_mb * _MB, chunks_size
        self.chunk = self.file = 0
        self.pending: list[Path] = []
        self.pending_bytes = 0
        self.frames_in_file = 0
        self.files = 0

    def append(self, episode_video: Path, n_frames: int, fps: int) -> dict[str, Any]:
        size = episode_video.stat().st_size
        if self.pending and self.pending_bytes + size >= self.limit:
            self._flush()
            self.chunk, self.file = _next_file(self.chunk, self.file, self.chunks_size)
            self.frames_in_file = 0
        start = self.frames_in_file
        self.pending.append(episode_video)
        self.pending_bytes += size
        self.frames_in_file += n_frames
        p = f"videos/{self.key}/"
        return {p + "chunk_index": self.chunk, p + "file_index": self.file,
                p + "from_timestamp": start / fps, p + "to_timestamp": (start + n_frames) / fps}

    def _flush(self) -> None:
        out = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk, file_index=self.file)
        concat_videos(self.pending, out)
        self.files += 1
        self.pending, self.pending_bytes = [], 0

    def close(self) -> None:
        if self.pending:
            self._flush()


class _ParquetFiles:
    """Tables appended to chunked parquet files; a new file when the current would reach the size setting."""

    def __init__(self, root: Path, template: str, limit_mb: float, chunks_size: int) -> None:
        self.root, self.template, self.limit, self.chunks_size = root, template, limit_mb * _MB, chunks_size
        self.chunk = self.file = 0
        self.bytes = 0
        self.writer: pq.ParquetWriter | None = None
        self.files = 0

    def append(self, table: pa.Table) -> tuple[int, int]:
        if self.writer is not None and self.bytes + table.nbytes >= self.limit:
            self.writer.close()
            self.writer = None
            self.chunk, self.file = _next_file(self.chunk, self.file, self.chunks_size)
        if self.writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            self.bytes = 0
            self.files += 1
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


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
            mapping = {c: IMAGES_PREFIX + c for c in have}
        elif isinstance(cameras, Mapping):
            mapping = dict(cameras)
        else:
            mapping = {c: IMAGES_PREFIX + c for c in cameras}
        for cam, key in mapping.items():
            if cam not in have:
                raise ValueError(f"camera {cam!r} is not in the episodes (cameras: {have})")
            if "/" in key or not key:
                raise ValueError(f"LeRobot feature key {key!r} for camera {cam!r} must be non-empty without '/'")
        env = first.get("environment_state")
        return cls(int(first["state"].shape[0]), None if env is None else int(env.shape[0]), ep.action_dim,
                   mapping, {c: first["pixels"][c].shape for c in mapping}, tuple(sorted(ep.info)))

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
    cols: dict[str, pa.Array] = {STATE_KEY: _fixed_list(ep.stacked("state")[:t], pa.float32())}
    if schema.env_state_dim is not None:
        cols[ENV_STATE_KEY] = _fixed_list(ep.stacked("environment_state")[:t], pa.float32())
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


def _write_episode_rows(root: Path, rows: list[dict[str, Any]], limit_mb: float, chunks_size: int) -> None:
    """meta/episodes files, split by the same size rule as the data files."""
    probe = pa.Table.from_pylist(rows)
    per_row = max(1.0, probe.nbytes / len(rows))
    chunk = file = 0
    used = 0.0
    for row in rows:
        if used > 0 and used + per_row >= limit_mb * _MB:
            chunk, file = _next_file(chunk, file, chunks_size)
            used = 0.0
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = chunk, file
        used += per_row
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["meta/episodes/chunk_index"], row["meta/episodes/file_index"]), []).append(row)
    for (c, f), group in groups.items():
        path = root / EPISODES_PATH.format(chunk_index=c, file_index=f)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(group), path, compression="snappy")


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
    ``"to_continuous"`` (see the module docstring). ``lossless``: bit-exact video (H.264 RGB, QP 0).
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
    schema: _Schema | None = None
    data = _ParquetFiles(work, DATA_PATH, data_mb, chunks_size)
    videos: dict[str, _VideoFiles] = {}
    tmp = work / ".episode_videos"
    tasks: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    all_stats: dict[str, list[dict[str, np.ndarray]]] = {}
    total_frames = 0
    try:
        for e, ep in enumerate(episodes):
            if not isinstance(ep, Episode):
                raise ValueError(f"episode {e}: expected an Episode, got {type(ep).__name__}")
            if schema is None:
                schema = _Schema.of(ep, cameras)
                videos = {cam: _VideoFiles(work, key, video_mb, chunks_size) for cam, key in schema.cameras.items()}
            else:
                schema.check(ep, e)
            actions = ep.actions.copy()
            if gripper == "to_continuous":
                actions[:, -1] = gripper_to_continuous(actions[:, -1])
            ep_task = task if task is not None else ep.task
            task_index = tasks.setdefault(ep_task, len(tasks))
            table = _frame_table(ep, schema, actions, e, total_frames, task_index, fps)
            chunk, file = data.append(table)
            row: dict[str, Any] = {"episode_index": e, "tasks": [ep_task], "length": ep.length,
                                   "data/chunk_index": chunk, "data/file_index": file,
                                   "dataset_from_index": total_frames,
                                   "dataset_to_index": total_frames + ep.length}
            ep_stats = {name: _stats(_column_values(table, name)) for name in table.column_names}
            for c, (cam, key) in enumerate(schema.cameras.items()):
                images = ep.stacked("pixels." + cam)
                tmp.mkdir(exist_ok=True)
                path = tmp / f"{e:06d}_{c:02d}.mp4"
                encode_video(path, images[:-1], fps, lossless, crf, gop)
                row.update(videos[cam].append(path, ep.length, fps))
                ep_stats[key] = _stats(images[:-1])
            for name, st in ep_stats.items():
                all_stats.setdefault(name, []).append(st)
                for s, v in st.items():
                    row[f"stats/{name}/{s}"] = np.asarray(v).tolist()
            final = ep.observations[-1]
            row[FINAL_PREFIX + STATE_KEY] = final["state"].tolist()
            if schema.env_state_dim is not None:
                row[FINAL_PREFIX + ENV_STATE_KEY] = final["environment_state"].tolist()
            for cam, key in schema.cameras.items():
                row[FINAL_PREFIX + key] = _png(final["pixels"][cam])
            rows.append(row)
            total_frames += ep.length
        if schema is None:
            raise ValueError("no episodes to export")
    finally:
        data.close()
    for v in videos.values():
        v.close()
    shutil.rmtree(tmp, ignore_errors=True)

    _write_episode_rows(work, rows, data_mb, chunks_size)
    (work / TASKS_PATH).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_tasks_table(list(tasks)), work / TASKS_PATH)
    stats = {name: _aggregate(per_ep) for name, per_ep in all_stats.items()}
    (work / STATS_PATH).write_text(json.dumps(_json_stats(stats), indent=4))
    video_info = {"video.codec": "h264", "video.pix_fmt": "gbrp" if lossless else "yuv420p",
                  "video.is_depth_map": False}
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(rows),
        "total_frames": total_frames,
        "total_tasks": len(tasks),
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_mb,
        "video_files_size_in_mb": video_mb,
        "fps": fps,
        "splits": {"train": f"0:{len(rows)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if schema.cameras else None,
        "features": schema.features(fps, state_names, action_names, video_info),
    }
    (work / INFO_PATH).write_text(json.dumps(info, indent=4))
    video_files = {key: videos[cam].files for cam, key in schema.cameras.items()}
    return ExportSummary(work, len(rows), total_frames, data.files, video_files, lossless)


def export_replay_buffer(buffer: ReplayBuffer, root: str | os.PathLike, *, task: str = "",
                         **kwargs: Any) -> ExportSummary:
    """Export the episodes of a raw-pixel replay buffer (oldest first; see `episodes_from_buffer`) with
    `export_lerobot` (keyword arguments as there; ``fps`` and ``robot_type`` are required)."""
    features = [k for k in buffer.spec if k.startswith("features.")]
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


# ---------------------------------------------------------------------------------------------------- reading
def _column_values(table: pa.Table, name: str, where: str = "") -> np.ndarray:
    """A column as numpy: scalars (N,), lists / fixed-size lists (N, D)."""
    col = table.column(name).combine_chunks()
    if col.null_count:
        raise ValueError(f"{where}column {name!r} has {col.null_count} missing values")
    typ = col.type
    if pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
        flat = col.flatten()
        n = len(col)
        if n and len(flat) % n:
            raise ValueError(f"{where}column {name!r}: rows have different lengths")
        width = len(flat) // n if n else 0
        values = flat.to_numpy(zero_copy_only=False)
        return values.reshape(n, width)
    return col.to_numpy(zero_copy_only=False)


class _CameraFrames:
    """Frames of one camera at given times; keeps decoding a file forward while episodes come in order."""

    def __init__(self, key: str, tolerance_s: float, fps: float) -> None:
        self.key, self.tol, self.fps = key, tolerance_s, fps
        self.reader: VideoReader | None = None
        self.pending: tuple[float, np.ndarray] | None = None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.pending = None

    def get(self, path: Path, times: np.ndarray, where: str) -> np.ndarray:
        pos = self.pending[0] if self.pending is not None else None
        behind = pos is not None and times[0] < pos - self.tol
        far_ahead = pos is not None and times[0] > pos + 10.0  # cheaper to seek than to decode 10 s
        if self.reader is None or self.reader.path != path or behind or far_ahead:
            self.close()
            if not path.exists():
                raise ValueError(f"{where}: video file {path} is missing")
            self.reader = VideoReader(path, max(0.0, float(times[0]) - 0.5 / self.fps))
        out = []
        for q in times:
            while True:
                if self.pending is None:
                    self.pending = self.reader.next_frame()
                    if self.pending is None:
                        raise ValueError(f"{where}: {path} ends before the frame at {q:.6f} s "
                                         f"({self.key}); the video is shorter than the episode metadata says")
                t, img = self.pending
                if t < q - self.tol:
                    self.pending = None
                    continue
                if t > q + self.tol:
                    raise ValueError(f"{where}: {path} has no frame within {self.tol} s of {q:.6f} s ({self.key}); "
                                     f"the next frame is at {t:.6f} s")
                out.append(img)
                break
        return np.stack(out)


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: {what} is not valid JSON ({exc})") from exc


def _load_info(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise ValueError(f"LeRobot dataset folder {str(root)!r} does not exist")
    path = root / INFO_PATH
    if not path.exists():
        raise ValueError(f"{path} is missing: {str(root)!r} is not a LeRobot dataset folder (every LeRobot "
                         "dataset keeps its layout and features in meta/info.json)")
    info = _load_json(path, "meta/info.json")
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object")
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        hint = ""
        if isinstance(version, str) and version.startswith(("v1", "v2")):
            hint = ("; convert it with LeRobot's converter first: python -m "
                    "lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=<id> (from v2.1; older versions "
                    "need the v2.1 converter before that)")
        raise ValueError(f"{path}: codebase_version is {version!r}, only {CODEBASE_VERSION!r} is supported{hint}")
    for key, kind, what in (("fps", (int, float), "a number"), ("features", dict, "an object"),
                            ("data_path", str, "a path template"), ("total_episodes", int, "an integer")):
        if not isinstance(info.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is missing or not {what}")
    if info["fps"] <= 0:
        raise ValueError(f"{path}: field 'fps' must be positive, got {info['fps']}")
    for name, ft in info["features"].items():
        if not isinstance(ft, dict) or "dtype" not in ft or not isinstance(ft.get("shape"), list):
            raise ValueError(f"{path}: feature {name!r} needs 'dtype' and a 'shape' list")
    return info


def _image_hw(info_path: Path, key: str, ft: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of a camera feature; LeRobot writes shapes both channels-last and channels-first."""
    shape, names = list(ft["shape"]), [str(n).lower() for n in (ft.get("names") or [])]
    vinfo = ft.get("info") or {}
    if "video.height" in vinfo and "video.width" in vinfo:
        return int(vinfo["video.height"]), int(vinfo["video.width"])
    if len(shape) != 3:
        raise ValueError(f"{info_path}: feature {key!r} has shape {shape}, expected 3 dimensions")
    if names and names[0] in ("c", "channel", "channels"):
        return int(shape[1]), int(shape[2])
    if not names and shape[0] in (1, 3) and shape[2] not in (1, 3):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def _load_tasks(root: Path) -> dict[int, str]:
    path = root / TASKS_PATH
    if not path.exists():
        return {}
    table = pq.read_table(path)
    text_col = None
    meta = table.schema.metadata or {}
    if b"pandas" in meta:
        idx = json.loads(meta[b"pandas"]).get("index_columns") or []
        if idx and isinstance(idx[0], str) and idx[0] in table.column_names:
            text_col = idx[0]
    if text_col is None and "task" in table.column_names:
        text_col = "task"
    if text_col is None or "task_index" not in table.column_names:
        raise ValueError(f"{path}: expected task strings and a 'task_index' column, got {table.column_names}")
    return dict(zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist()))


@dataclass
class _ImportSpec:
    """What to read from a dataset, settled (and checked) before the first episode."""

    root: Path
    info: dict[str, Any]
    state_key: str
    action_key: str
    env_key: str | None
    reward_key: str | None
    cams: dict[str, str]  # LeRobot key -> our camera name
    sizes: dict[str, tuple[int, int]]  # LeRobot key -> (height, width)
    gripper: str
    threshold: float
    expect_discrete: bool | None
    intervention_default: bool
    tolerance_s: float
    tasks: dict[int, str] = field(default_factory=dict)

    @property
    def features(self) -> dict[str, Any]:
        return self.info["features"]

    @property
    def info_path(self) -> Path:
        return self.root / INFO_PATH

    def check_vectors(self, expect_state_dim: int | None, expect_action_dim: int | None) -> None:
        for key, expect, what in ((self.state_key, expect_state_dim, "the robot state"),
                                  (self.action_key, expect_action_dim, "the actions")):
            ft = self._need(key, what)
            if len(ft["shape"]) != 1:
                raise ValueError(f"{self.info_path}: feature {key!r} has shape {ft['shape']}, expected a vector")
            if expect is not None and ft["shape"][0] != expect:
                kind = "state" if key == self.state_key else "action"
                raise ValueError(f"{self.info_path}: feature {key!r} has shape {ft['shape']} but the policy "
                                 f"expects {expect} {kind} values")
        if self.reward_key is not None:
            self._need(self.reward_key, "the rewards; pass reward_key=None to import without rewards")

    def _need(self, key: str, what: str) -> dict[str, Any]:
        if key not in self.features:
            raise ValueError(f"{self.info_path}: feature {key!r} ({what}) is missing; the dataset has "
                             f"{sorted(self.features)}")
        return self.features[key]

    def select_cameras(self, image_keys: Sequence[str] | None, camera_names: Mapping[str, str] | None,
                       expect_image_shape: tuple[int, int, int] | None) -> None:
        cam_keys = [k for k, ft in self.features.items() if ft["dtype"] in ("video", "image")]
        keys = list(cam_keys if image_keys is None else image_keys)
        for key in keys:
            if key not in cam_keys:
                raise ValueError(f"{self.info_path}: camera feature {key!r} is missing; the dataset's cameras "
                                 f"are {cam_keys}")
        names = dict(camera_names or {})
        for key in names:
            if key not in keys:
                raise ValueError(f"camera_names: {key!r} is not among the cameras read {keys}")
        self.cams = {k: names.get(k, k[len(IMAGES_PREFIX):] if k.startswith(IMAGES_PREFIX) else k) for k in keys}
        self.sizes = {k: _image_hw(self.info_path, k, self.features[k]) for k in keys}
        for key, (h, w) in self.sizes.items():
            if expect_image_shape is not None and (h, w, 3) != tuple(expect_image_shape):
                raise ValueError(f"{self.info_path}: camera {key!r} has {h}×{w} images but the policy expects "
                                 f"{tuple(expect_image_shape)}; resize the dataset or the policy's image size")
        if self.video_keys and not isinstance(self.info.get("video_path"), str):
            raise ValueError(f"{self.info_path}: field 'video_path' is missing but the dataset has video features")

    @property
    def video_keys(self) -> list[str]:
        return [k for k in self.cams if self.features[k]["dtype"] == "video"]

    def episode_rows(self) -> list[dict[str, Any]]:
        """Rows of meta/episodes/*/*.parquet (without per-episode stats), checked for the columns we use."""
        files = sorted((self.root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if not files:
            raise ValueError(f"{self.root / EPISODES_DIR} holds no chunk-XXX/file-XXX.parquet files: the episode "
                             "metadata of the LeRobot dataset is missing")
        required = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        required += [f"videos/{k}/{p}" for k in self.video_keys for p in ("chunk_index", "file_index",
                                                                          "from_timestamp")]
        rows = []
        for path in files:
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise ValueError(f"{path}: not a readable parquet file ({exc})") from exc
            missing = [c for c in required if c not in table.column_names]
            if missing:
                raise ValueError(f"{path}: column {missing[0]!r} is missing")
            for row in table.select([c for c in table.column_names if not c.startswith("stats/")]).to_pylist():
                if any(row[c] is None for c in required):
                    raise ValueError(f"{path}: episode {row['episode_index']} has an empty "
                                     f"{next(c for c in required if row[c] is None)!r}")
                row["_file"] = path
                rows.append(row)
        rows.sort(key=lambda r: r["episode_index"])
        if len(rows) != self.info["total_episodes"]:
            raise ValueError(f"{self.info_path}: total_episodes is {self.info['total_episodes']} but "
                             f"{self.root / EPISODES_DIR} describes {len(rows)} episodes")
        return rows


def import_lerobot(
    root: str | os.PathLike,
    *,
    state_key: str = STATE_KEY,
    action_key: str = ACTION_KEY,
    image_keys: Sequence[str] | None = None,
    camera_names: Mapping[str, str] | None = None,
    environment_state_key: str | None = ENV_STATE_KEY,
    reward_key: str | None = REWARD_KEY,
    episodes: Sequence[int] | None = None,
    expect_state_dim: int | None = None,
    expect_action_dim: int | None = None,
    expect_image_shape: tuple[int, int, int] | None = None,
    expect_discrete_gripper: bool | None = None,
    gripper: str = "keep",
    gripper_threshold: float = 0.5,
    intervention_if_missing: bool = True,
    tolerance_s: float = 1e-4,
) -> Iterator[Episode]:
    """Read a local LeRobot v3.0 dataset as `Episode`s (lazily, one episode in memory at a time).

    The dataset's metadata is checked now, before the first episode: a missing or old dataset, a missing feature
    or a shape that does not match what the policy expects (``expect_*``) raises ValueError naming the file and
    field. ``image_keys``: the camera features to read (default every video / image feature); ``camera_names``
    maps a LeRobot key to the camera name the policy uses (default: the key without ``observation.images.``).
    ``environment_state_key`` is read when the dataset has it. ``reward_key=None`` reads no rewards (all zero).
    ``gripper``: ``"keep"`` or ``"to_discrete"`` (see the module docstring). Without an intervention column every
    step gets ``intervention_if_missing`` (recorded demonstrations are the human's actions).
    """
    if gripper not in ("keep", "to_discrete"):
        raise ValueError(f"gripper must be 'keep' or 'to_discrete', got {gripper!r}")
    root = Path(root)
    info = _load_info(root)
    env_key = environment_state_key if environment_state_key in info["features"] else None
    spec = _ImportSpec(root, info, state_key, action_key, env_key, reward_key, {}, {}, gripper, gripper_threshold,
                       expect_discrete_gripper, intervention_if_missing, tolerance_s)
    spec.check_vectors(expect_state_dim, expect_action_dim)
    spec.select_cameras(image_keys, camera_names, expect_image_shape)
    rows = {int(r["episode_index"]): r for r in spec.episode_rows()}
    selected = list(rows) if episodes is None else [int(e) for e in episodes]
    for e in selected:
        if e not in rows:
            raise ValueError(f"episode {e} is not in the dataset (it has episodes 0..{len(rows) - 1})")
    spec.tasks = _load_tasks(root)
    return _read_episodes(spec, [rows[e] for e in selected])


def _read_episodes(spec: _ImportSpec, rows: list[dict[str, Any]]) -> Iterator[Episode]:
    readers = {k: _CameraFrames(k, spec.tolerance_s, float(spec.info["fps"])) for k in spec.video_keys}
    data = _DataFiles(spec)
    try:
        for row in rows:
            yield _read_episode(spec, row, data, readers)
    finally:
        for r in readers.values():
            r.close()


class _DataFiles:
    """The frame rows of one episode, keeping the last data file read (episodes share files)."""

    def __init__(self, spec: _ImportSpec) -> None:
        self.spec = spec
        self.path: Path | None = None
        self.table: pa.Table | None = None

    def episode(self, row: dict[str, Any]) -> tuple[Path, pa.Table]:
        e, length = int(row["episode_index"]), int(row["length"])
        path = self.spec.root / self.spec.info["data_path"].format(chunk_index=int(row["data/chunk_index"]),
                                                                   file_index=int(row["data/file_index"]))
        if path != self.path:
            if not path.exists():
                raise ValueError(f"data file {path} is missing")
            try:
                self.table = pq.read_table(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise ValueError(f"{path}: not a readable parquet file ({exc})") from exc
            self.path = path
            for col in ("episode_index", "frame_index", "timestamp", self.spec.state_key, self.spec.action_key):
                if col not in self.table.column_names:
                    raise ValueError(f"{path}: column {col!r} is missing")
        table = self.table
        rows = np.flatnonzero(_column_values(table, "episode_index", f"{path}: ") == e)
        if len(rows) != length:
            raise ValueError(f"{path}: episode {e} has {len(rows)} frames, its metadata says {length}")
        table = table.take(pa.array(rows))
        frame_index = _column_values(table, "frame_index", f"{path}: ")
        order = np.argsort(frame_index, kind="stable")
        if not np.array_equal(frame_index[order], np.arange(length)):
            raise ValueError(f"{path}: episode {e} frame_index is not 0..{length - 1}")
        return path, table.take(pa.array(order))


def _read_episode(spec: _ImportSpec, row: dict[str, Any], data: _DataFiles,
                  readers: dict[str, _CameraFrames]) -> Episode:
    e, length = int(row["episode_index"]), int(row["length"])
    path, table = data.episode(row)
    where = f"{path} (episode {e}): "

    def vectors(key: str) -> np.ndarray:
        values = _column_values(table, key, where).reshape(length, -1).astype(np.float32)
        if values.shape[1] != spec.features[key]["shape"][0]:
            raise ValueError(f"{where}column {key!r} has {values.shape[1]} values per frame, meta/info.json "
                             f"says {spec.features[key]['shape'][0]}")
        return values

    def scalars(key: str | None) -> np.ndarray | None:
        if key is None or key not in table.column_names:
            return None
        return _column_values(table, key, where).reshape(length, -1)[:, 0]

    state = vectors(spec.state_key)
    env_state = vectors(spec.env_key) if spec.env_key else None
    actions = vectors(spec.action_key)
    if spec.gripper == "to_discrete":
        actions[:, -1] = gripper_to_discrete(actions[:, -1], spec.threshold)
    elif spec.expect_discrete:
        _check_discrete(actions[:, -1], f"{where}column {spec.action_key!r} (last entry)")
    rewards = scalars(spec.reward_key)
    if spec.reward_key is not None and rewards is None:
        raise ValueError(f"{where}column {spec.reward_key!r} is missing")
    terminated, truncated = _episode_end(scalars(DONE_KEY), scalars(TRUNCATED_KEY), where)
    flags = scalars(INTERVENTION_KEY)
    interventions = flags.astype(np.float64) > 0.5 if flags is not None else np.full(length, spec.intervention_default)
    info = {}
    theirs_to_ours = {v: k for k, v in INFO_NAMES.items()}
    for col in table.column_names:
        if col.startswith(INFO_PREFIX) and col != INTERVENTION_KEY:
            values = _column_values(table, col, where)
            if values.ndim == 1 and values.dtype.kind in "fiub":  # per-step scalars only
                name = col[len(INFO_PREFIX):]
                info[theirs_to_ours.get(name, name)] = values.astype(np.float32)
    images = _episode_images(spec, row, table, readers, where)
    observations = []
    for i in range(length):
        obs: dict[str, Any] = {"state": state[i]}
        if env_state is not None:
            obs["environment_state"] = env_state[i]
        if images:
            obs["pixels"] = {cam: frames[i] for cam, frames in images.items()}
        observations.append(obs)
    observations.append(_final_observation(spec, row, observations[-1]))
    task = spec.tasks.get(int(scalars("task_index")[0])) if "task_index" in table.column_names else None
    if task is None:
        task = (row.get("tasks") or [""])[0]
    return Episode(observations, actions, rewards if rewards is not None else np.zeros(length, np.float32),
                   terminated, truncated, interventions, task, info)


def _episode_end(done: np.ndarray | None, truncated: np.ndarray | None, where: str) -> tuple[bool, bool]:
    """(terminated, truncated) from next.done / next.truncated; see the module docstring for missing columns."""
    if done is None:
        return False, True
    done = done.astype(bool)
    if done[:-1].any():
        raise ValueError(f"{where}column {DONE_KEY!r} is true before the last frame (frame "
                         f"{int(np.flatnonzero(done[:-1])[0])} of {len(done)})")
    cut = bool(truncated[-1]) if truncated is not None else False
    return bool(done[-1]) and not cut, cut


def _episode_images(spec: _ImportSpec, row: dict[str, Any], table: pa.Table, readers: dict[str, _CameraFrames],
                    where: str) -> dict[str, np.ndarray]:
    e = int(row["episode_index"])
    timestamps = _column_values(table, "timestamp", where).astype(np.float64)
    images = {}
    for key, cam in spec.cams.items():
        if key in readers:
            video = spec.root / spec.info["video_path"].format(
                video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]),
                file_index=int(row[f"videos/{key}/file_index"]))
            frames = readers[key].get(video, float(row[f"videos/{key}/from_timestamp"]) + timestamps,
                                      f"episode {e}")
        else:  # an "image" feature: encoded images inside the parquet rows
            if key not in table.column_names:
                raise ValueError(f"{where}image column {key!r} is missing")
            frames = np.stack([_unpng(c["bytes"] if isinstance(c, dict) else c, f"{where}{key} frame {i}")
                               for i, c in enumerate(table.column(key).to_pylist())])
        if frames.shape[1:3] != spec.sizes[key]:
            h, w = spec.sizes[key]
            raise ValueError(f"episode {e}: camera {key!r} frames are {frames.shape[2]}×{frames.shape[1]}, "
                             f"meta/info.json says {w}×{h}")
        images[cam] = frames
    return images


def _final_observation(spec: _ImportSpec, row: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """The exporter's final_observation/* columns, else the last observation repeated."""
    final = dict(last)
    if row.get(FINAL_PREFIX + spec.state_key) is not None:
        final["state"] = np.asarray(row[FINAL_PREFIX + spec.state_key], np.float32)
    if spec.env_key and row.get(FINAL_PREFIX + spec.env_key) is not None:
        final["environment_state"] = np.asarray(row[FINAL_PREFIX + spec.env_key], np.float32)
    if "pixels" in final:
        final["pixels"] = dict(final["pixels"])
        for key, cam in spec.cams.items():
            if row.get(FINAL_PREFIX + key) is not None:
                final["pixels"][cam] = _unpng(row[FINAL_PREFIX + key],
                                              f"{row['_file']}: episode {row['episode_index']} {key}")
    return final
