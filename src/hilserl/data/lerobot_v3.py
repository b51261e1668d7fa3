"""The LeRobot dataset v3.0 format (parquet + mp4) as hilserl reads and writes it: the layout, the column names,
the gripper convention and the cell encodings that `lerobot_import` and `lerobot_export` share.

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
``complementary_info.discrete_penalty`` (our ``grasp_penalty``, under LeRobot's name), other info keys as
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

import numpy as np
import pyarrow as pa

from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl.obs_format import check_camera

__all__ = [
    "CODEBASE_VERSION",
    "VIDEO_TOLERANCE",
    "camera_of_image_key",
    "check_discrete",
    "column_values",
    "gripper_to_continuous",
    "gripper_to_discrete",
    "image_key",
    "png_bytes",
    "png_image",
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
INFO_NAMES = {"grasp_penalty": "discrete_penalty"}

VIDEO_TOLERANCE = {"mean_abs": 3.0, "psnr_db": 30.0}
"""Pixel error the tests allow for lossy H.264 (mean absolute error per channel value, PSNR); the measured values
are in the module docstring. Lossless export is compared for equality."""


# ---------------------------------------------------------------------------------------------------- cameras
def image_key(camera: str) -> str:
    """LeRobot's feature key of one of our cameras (`hilserl.obs_format`): ``observation.images.<camera>``."""
    return IMAGES_PREFIX + check_camera(camera)


def camera_of_image_key(key: str) -> str:
    """The camera name a LeRobot image feature gets by default: the key without ``observation.images.`` (a key
    without that prefix, e.g. ``observation.image``, is used whole)."""
    return key[len(IMAGES_PREFIX):] if key.startswith(IMAGES_PREFIX) else key


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
    check_discrete(commands, "action[:, -1]")
    out = np.empty(commands.shape, np.float32)
    target = float(initial)
    for i, c in enumerate(commands):
        if int(c) == GRIPPER_CLOSE:
            target = -1.0
        elif int(c) == GRIPPER_OPEN:
            target = 1.0
        out[i] = target
    return out


def check_discrete(commands: np.ndarray, where: str) -> None:
    """Raise ValueError naming ``where`` unless every command is 0 close, 1 stay or 2 open."""
    bad = ~np.isin(commands, (GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN))
    if bad.any():
        raise ValueError(f"{where}: value {float(commands[bad][0])!r} is not a discrete gripper command "
                         "(0 close, 1 stay, 2 open); pass gripper='to_discrete' to map a continuous gripper")


# ---------------------------------------------------------------------------------------------------- cells
def png_bytes(image_rgb: np.ndarray) -> bytes:
    """An RGB image as PNG bytes (how final observations and image features are stored in parquet cells)."""
    import cv2  # only needed for final observations and image (non-video) features

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def png_image(data: bytes, where: str) -> np.ndarray:
    """PNG (or any OpenCV-decodable) bytes as an RGB image; ValueError naming ``where`` if undecodable."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{where}: not a decodable image")
    return np.ascontiguousarray(img[..., ::-1])


def column_values(table: pa.Table, name: str, where: str = "") -> np.ndarray:
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
