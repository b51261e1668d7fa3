"""Frames for the encoder probe, each with the cube position it shows.

Simulation: the gripper camera at the arm's reset pose with its reset noise (±`ee_reset_noise_xy` in x/y,
±`ee_reset_noise_z` in z), the cube drawn over its start region (within ±`cube_offset_xy` of the tool point in x
and y, yaw within ±`cube_yaw_range`, never inside the jaws) — the draws `SO101GraspCubeEnv.reset` makes, done here
so each frame's numbers are known. The position a probe must predict is the cube's offset from the tool point
(x forward, away from the robot's base; y to the robot's left), which is what the camera on the gripper can see.

A folder of real images: ``DIR/positions.csv`` with the header ``image,x,y`` and optionally ``yaw``: ``image`` a
path relative to DIR (PNG or JPEG), ``x`` and ``y`` the cube's position in metres in one fixed frame (keep the arm
still and move the cube, or give the offset from the gripper), ``yaw`` in radians. Each image is centre-cropped to
a square and resized to the probe's image size.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

POSITIONS_FILE = "positions.csv"
MIN_FRAMES = 10


class ProbeInputError(ValueError):
    """A folder of images or its positions file that the probe cannot use; the message names the file and field."""


@dataclass
class ProbeFrames:
    images: np.ndarray  # uint8 [N, H, W, 3]
    positions: np.ndarray  # float64 [N, 2]: cube x, y in metres (simulation: offset from the tool point)
    yaw: np.ndarray | None  # float64 [N] radians, or None when the source has none
    source: str  # "simulation" or the folder
    names: list[str]  # one label per frame, for messages and the contact sheet
    marks: np.ndarray | None = None  # float64 [N, 2]: (column, row) where the cube's centre projects (simulation)

    def __len__(self) -> int:
        return len(self.images)


# ------------------------------------------------------------------------------------------------ simulation
def render_sim_frames(n: int, image_size: int = 128, seed: int = 0, config=None, progress=None) -> ProbeFrames:
    """`n` gripper-camera frames from the simulation, the cube and the arm drawn as `reset` draws them."""
    from hilserl.obs_format import PIXELS
    from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv

    cfg = config or GraspCubeConfig(cameras=("gripper",), image_size=image_size)
    env = SO101GraspCubeEnv(cfg)
    rng = np.random.default_rng(seed)
    base = np.asarray(cfg.ee_reset_pos, dtype=float)
    noise = np.array([cfg.ee_reset_noise_xy, cfg.ee_reset_noise_xy, cfg.ee_reset_noise_z])
    images, positions, yaws, marks = [], [], [], []
    try:
        for i in range(n):
            for _ in range(100):
                ee = base + rng.uniform(-noise, noise)
                cube_xy = ee[:2] + rng.uniform(-cfg.cube_offset_xy, cfg.cube_offset_xy, 2)
                options = {"ee_pos": ee, "cube_pos": cube_xy,
                           "cube_yaw": rng.uniform(-cfg.cube_yaw_range, cfg.cube_yaw_range)}
                try:
                    obs, info = env.reset(seed=int(rng.integers(2**31)), options=options)
                    break
                except ValueError:  # the cube would be inside the jaws: draw again, as reset itself does
                    continue
            else:
                raise RuntimeError("could not place the cube outside the jaws in 100 draws")
            images.append(obs[PIXELS]["gripper"])
            positions.append(info["cube_pos"][:2] - info["ee_pos"][:2])
            yaws.append(quat_yaw(info["cube_quat"]))
            marks.append(project_point(env, info["cube_pos"], "gripper", cfg.image_size))
            if progress is not None:
                progress(i + 1, n)
    finally:
        env.close()
    names = [f"sim {i}" for i in range(n)]
    return ProbeFrames(np.stack(images), np.array(positions), np.array(yaws), "simulation", names, np.array(marks))


def quat_yaw(quat: np.ndarray) -> float:
    """Rotation about the vertical of a (w, x, y, z) quaternion, in radians."""
    w, x, y, z = (float(v) for v in quat)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def project_point(env, point: np.ndarray, camera: str, size: int) -> np.ndarray:
    """(column, row) of a world point in a square render of `camera` (pinhole with the camera's vertical FOV);
    NaN when the point is behind the camera."""
    m, d = env.model, env.data
    cam = m.camera(camera).id
    rot = d.cam_xmat[cam].reshape(3, 3)  # columns: the camera's x (right), y (up), z (back) in the world
    p = rot.T @ (np.asarray(point, dtype=float) - d.cam_xpos[cam])
    if p[2] >= 0:
        return np.array([np.nan, np.nan])
    f = (size / 2) / math.tan(math.radians(m.cam_fovy[cam]) / 2)
    return np.array([size / 2 + f * p[0] / -p[2], size / 2 - f * p[1] / -p[2]])


# ------------------------------------------------------------------------------------------------ real images
def read_image_folder(folder: str | Path, image_size: int = 128) -> ProbeFrames:
    """Images and their cube positions from ``folder/positions.csv`` (format in the module docstring)."""
    folder = Path(folder)
    table = folder / POSITIONS_FILE
    if not folder.is_dir():
        raise ProbeInputError(f"{folder}: not a folder (expected images and {POSITIONS_FILE})")
    if not table.is_file():
        raise ProbeInputError(f"{table}: missing; expected a CSV with the header image,x,y[,yaw] (x, y in metres)")
    with open(table, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        for col in ("image", "x", "y"):
            if col not in header:
                raise ProbeInputError(f"{table}: no field {col!r} in the header {header}; expected image,x,y[,yaw]")
        has_yaw = "yaw" in header
        rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k is not None}, reader.line_num)
                for row in reader]
    if len(rows) < MIN_FRAMES:
        raise ProbeInputError(f"{table}: {len(rows)} rows; the probe needs at least {MIN_FRAMES} images")
    images, positions, yaws, names = [], [], [], []
    for row, line in rows:
        where = f"{table} line {line}"
        values = [_number(row.get(col, ""), where, col) for col in ("x", "y", *(("yaw",) if has_yaw else ()))]
        images.append(_load_image(folder, row.get("image", ""), where, image_size))
        positions.append(values[:2])
        yaws.append(values[2] if has_yaw else 0.0)
        names.append(row["image"])
    positions = np.array(positions)
    for j, col in enumerate("xy"):
        if np.ptp(positions[:, j]) == 0:
            raise ProbeInputError(f"{table}: field {col!r} is the same in every row; move the cube between images")
    return ProbeFrames(np.stack(images), positions, np.array(yaws) if has_yaw else None, str(folder), names)


def _number(text: str, where: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        unit = "radians" if field == "yaw" else "metres"
        raise ProbeInputError(f"{where}, field {field!r}: expected a number in {unit}, got {text!r}") from None
    if not math.isfinite(value):
        raise ProbeInputError(f"{where}, field {field!r}: expected a finite number, got {text!r}")
    return value


def _load_image(folder: Path, name: str, where: str, size: int) -> np.ndarray:
    import cv2

    if not name:
        raise ProbeInputError(f"{where}, field 'image': empty; expected an image path relative to {folder}")
    path = folder / name
    if not path.is_file():
        raise ProbeInputError(f"{where}, field 'image': file not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProbeInputError(f"{where}, field 'image': not a readable image: {path}")
    h, w = bgr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = bgr[top:top + s, left:left + s]
    return cv2.cvtColor(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------------ contact sheet
def save_sheet(frames: ProbeFrames, path: str | Path, count: int = 16, columns: int = 4, scale: int = 2) -> Path:
    """A grid of the first `count` frames, each labelled with its position in cm (and, in the simulation, a green
    ring where the cube's centre projects): a look at what the probe is given."""
    import cv2

    tiles = []
    for i in range(min(count, len(frames))):
        tile = np.ascontiguousarray(np.kron(frames.images[i], np.ones((scale, scale, 1), dtype=np.uint8)))
        if frames.marks is not None and np.isfinite(frames.marks[i]).all():
            c, r = (frames.marks[i] * scale).round().astype(int)
            cv2.circle(tile, (int(c), int(r)), 6 * scale, (0, 255, 0), 1)
        x, y = frames.positions[i] * 100
        label = f"x{x:+.1f} y{y:+.1f} cm"
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path
