"""Read a local LeRobot dataset v3.0 folder as hilserl `Episode`s (`import_lerobot`), checking its metadata against
what the policy expects before the first episode. The format and its conventions are described in `lerobot_v3`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hilserl.obs_format import ENV_STATE, PIXELS, STATE

from .episodes import Episode
from .lerobot_v3 import (
    ACTION_KEY,
    CODEBASE_VERSION,
    DONE_KEY,
    ENV_STATE_KEY,
    EPISODES_DIR,
    FINAL_PREFIX,
    INFO_NAMES,
    INFO_PATH,
    INFO_PREFIX,
    INTERVENTION_KEY,
    REWARD_KEY,
    STATE_KEY,
    TASKS_PATH,
    TRUNCATED_KEY,
    camera_of_image_key,
    check_discrete,
    column_values,
    gripper_to_discrete,
    png_image,
)
from .video import VideoReader

__all__ = ["import_lerobot", "load_info"]


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


def load_info(root: str | os.PathLike) -> dict[str, Any]:
    """A dataset folder's meta/info.json, checked for the fields every reader needs (ValueError naming them)."""
    root = Path(root)
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
        self.cams = {k: names.get(k, camera_of_image_key(k)) for k in keys}
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
    ``gripper``: ``"keep"`` or ``"to_discrete"`` (see `lerobot_v3`). Without an intervention column every
    step gets ``intervention_if_missing`` (recorded demonstrations are the human's actions).
    """
    if gripper not in ("keep", "to_discrete"):
        raise ValueError(f"gripper must be 'keep' or 'to_discrete', got {gripper!r}")
    root = Path(root)
    info = load_info(root)
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
        rows = np.flatnonzero(column_values(table, "episode_index", f"{path}: ") == e)
        if len(rows) != length:
            raise ValueError(f"{path}: episode {e} has {len(rows)} frames, its metadata says {length}")
        table = table.take(pa.array(rows))
        frame_index = column_values(table, "frame_index", f"{path}: ")
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
        values = column_values(table, key, where).reshape(length, -1).astype(np.float32)
        if values.shape[1] != spec.features[key]["shape"][0]:
            raise ValueError(f"{where}column {key!r} has {values.shape[1]} values per frame, meta/info.json "
                             f"says {spec.features[key]['shape'][0]}")
        return values

    def scalars(key: str | None) -> np.ndarray | None:
        if key is None or key not in table.column_names:
            return None
        return column_values(table, key, where).reshape(length, -1)[:, 0]

    state = vectors(spec.state_key)
    env_state = vectors(spec.env_key) if spec.env_key else None
    actions = vectors(spec.action_key)
    if spec.gripper == "to_discrete":
        actions[:, -1] = gripper_to_discrete(actions[:, -1], spec.threshold)
    elif spec.expect_discrete:
        check_discrete(actions[:, -1], f"{where}column {spec.action_key!r} (last entry)")
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
            values = column_values(table, col, where)
            if values.ndim == 1 and values.dtype.kind in "fiub":  # per-step scalars only
                name = col[len(INFO_PREFIX):]
                info[theirs_to_ours.get(name, name)] = values.astype(np.float32)
    images = _episode_images(spec, row, table, readers, where)
    observations = []
    for i in range(length):
        obs: dict[str, Any] = {STATE: state[i]}
        if env_state is not None:
            obs[ENV_STATE] = env_state[i]
        if images:
            obs[PIXELS] = {cam: frames[i] for cam, frames in images.items()}
        observations.append(obs)
    observations.append(_final_observation(spec, row, observations[-1]))
    task = spec.tasks.get(int(scalars("task_index")[0])) if "task_index" in table.column_names else None
    if task is None:
        task = (row.get("tasks") or [""])[0]
    return Episode(observations, actions, rewards if rewards is not None else np.zeros(length, np.float32),
                   terminated, truncated, interventions, task, info)


def _episode_end(done: np.ndarray | None, truncated: np.ndarray | None, where: str) -> tuple[bool, bool]:
    """(terminated, truncated) from next.done / next.truncated; see `lerobot_v3` for missing columns."""
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
    timestamps = column_values(table, "timestamp", where).astype(np.float64)
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
            frames = np.stack([png_image(c["bytes"] if isinstance(c, dict) else c, f"{where}{key} frame {i}")
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
        final[STATE] = np.asarray(row[FINAL_PREFIX + spec.state_key], np.float32)
    if spec.env_key and row.get(FINAL_PREFIX + spec.env_key) is not None:
        final[ENV_STATE] = np.asarray(row[FINAL_PREFIX + spec.env_key], np.float32)
    if PIXELS in final:
        final[PIXELS] = dict(final[PIXELS])
        for key, cam in spec.cams.items():
            if row.get(FINAL_PREFIX + key) is not None:
                final[PIXELS][cam] = png_image(row[FINAL_PREFIX + key],
                                              f"{row['_file']}: episode {row['episode_index']} {key}")
    return final
