"""Camera alignment without a GUI: the simulation's gripper camera rendered at the real arm's measured pose with a
correction, compared with the real camera, and the keys that nudge the correction.

`hilserl robot align-camera` (`hilserl.robot.align_session`) is the front end: it reads the follower's joints
(radians, through its calibration, as the real env reads them) and the camera's frame as the policy sees it (the
configured crop and resize), and hands both to `CameraAligner.view`, which renders the simulation at those joints
(`SimGripperCamera`) with the current `CameraCorrection`, measures the match (`hilserl.robot.align_readout`) and
composes the view. `CameraAligner.press` maps a key to a nudge, a step size change, undo, save or quit.

There is no automatic search: at one pose a sideways offset of a millimetre and a fraction of a degree of yaw or
roll look alike, so a search that lowers the readout can move the numbers away from the real mounting (tried: the
edge error reached the true correction's while roll ended 1.75° off). The person moves the arm to other poses and
judges.

The correction is the simulation's: `env.scene.gripper_camera_offset_mm` (right, up, forward in the camera's own
frame), `env.scene.gripper_camera_rotation_deg` (roll, pitch, yaw) and `env.scene.gripper_camera_fovy` (the vertical
field of view) of a simulation config, which the scene builds its gripper camera from
(`hilserl.sim.scene.gripper_camera_frame`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np

from hilserl.robot.align_readout import Readout, compose_view, measure
from hilserl.sim.rendering import CameraRenderer
from hilserl.sim.scene import (CAMERA_FOVY_RANGE, JOINT_NAMES, MAX_CAMERA_OFFSET_MM, MAX_CAMERA_ROTATION_DEG,
                               SceneConfig, build_mjcf)

DEFAULT_CUBE_XY = (0.25, 0.0)  # the reset point: 21 cm in front of the shoulder-pan axis, on the arm's centre line


@dataclass(frozen=True)
class CameraCorrection:
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # right, up, forward, in the camera's frame
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # roll (+ counterclockwise), pitch (+ up), yaw (+ left)
    fovy_deg: float = 70.0  # vertical field of view

    @classmethod
    def from_scene(cls, scene: SceneConfig) -> "CameraCorrection":
        return cls(tuple(float(v) for v in scene.gripper_camera_offset_mm),
                   tuple(float(v) for v in scene.gripper_camera_rotation_deg), float(scene.gripper_camera_fovy))

    def apply(self, scene: SceneConfig) -> SceneConfig:
        """`scene` with this correction's gripper camera."""
        return dataclasses.replace(scene, gripper_camera_offset_mm=tuple(self.offset_mm),
                                   gripper_camera_rotation_deg=tuple(self.rotation_deg),
                                   gripper_camera_fovy=float(self.fovy_deg))

    def validate(self) -> None:
        """Raises ValueError naming the scene field (env.scene.…) that is out of range."""
        try:
            self.apply(SceneConfig()).validate()
        except ValueError as e:
            raise ValueError(f"env.scene.{e}") from None

    def as_vector(self) -> np.ndarray:
        return np.array([*self.offset_mm, *self.rotation_deg, self.fovy_deg], float)

    @classmethod
    def from_vector(cls, v) -> "CameraCorrection":
        v = [round(float(x), 4) + 0.0 for x in v]  # + 0.0: no -0.0 in the config
        return cls(tuple(v[0:3]), tuple(v[3:6]), v[6])

    def format(self) -> str:
        (x, y, z), (r, p, w) = self.offset_mm, self.rotation_deg
        return (f"offset right {x:+.2f} up {y:+.2f} forward {z:+.2f} mm | roll {r:+.2f} pitch {p:+.2f} "
                f"yaw {w:+.2f} deg | fov {self.fovy_deg:.2f} deg")


class SimGripperCamera:
    """Renders the simulation's gripper camera at given joint positions with a given correction.

    The scene is built once from `scene` (a simulation config's `env.scene`); a correction only moves the camera:
    its position, orientation and field of view are taken from the MJCF the scene would write with that correction
    (compiled without the other assets, 2 ms), so the camera is exactly the one of an env built from a config
    holding the correction. The cube rests at `cube_xy` (where the person put the real one), or out of sight with
    None. The table is drawn plain, in the mean colour of its checker: that pattern is the simulation's invention,
    and its lines would only stand beside the real desk's own in the edge comparison.
    """

    def __init__(self, scene: SceneConfig, size: tuple[int, int] = (128, 128),
                 cube_xy: Sequence[float] | None = DEFAULT_CUBE_XY):
        self.scene = scene
        self.size = (int(size[0]), int(size[1]))
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(scene))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.cam = m.camera("gripper").id
        self.qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in JOINT_NAMES])
        cube = m.jnt_qposadr[m.joint("cube").id]
        half = float(m.geom_size[m.geom("cube").id][0])
        xyz = (0.0, 0.0, -1.0) if cube_xy is None else (float(cube_xy[0]), float(cube_xy[1]), half)
        self.data.qpos[cube:cube + 7] = [*xyz, 1.0, 0.0, 0.0, 0.0]  # below the table is out of sight
        table = m.material("table").id
        m.mat_texid[table] = -1
        m.mat_rgba[table, :3] = np.asarray(scene.table_rgba[:3]) * 0.96  # between the checker's two colours
        self.renderer = CameraRenderer(m, *self.size)
        self._correction: CameraCorrection | None = None

    def _set_camera(self, correction: CameraCorrection) -> None:
        if correction == self._correction:
            return
        scene = correction.apply(dataclasses.replace(self.scene, randomization_assets=False))
        small = mujoco.MjModel.from_xml_string(build_mjcf(scene))
        cam = small.camera("gripper").id
        self.model.cam_pos[self.cam] = small.cam_pos[cam]
        self.model.cam_quat[self.cam] = small.cam_quat[cam]
        self.model.cam_fovy[self.cam] = small.cam_fovy[cam]
        self._correction = correction

    def render(self, joints: Sequence[float], correction: CameraCorrection) -> np.ndarray:
        q = np.asarray(joints, dtype=float).reshape(-1)
        if q.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(q)):
            raise ValueError(f"joints: expected {len(JOINT_NAMES)} finite radians ({', '.join(JOINT_NAMES)}), "
                             f"got {q}")
        self._set_camera(correction)
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)  # the cameras' world poses
        return self.renderer.render(self.data, "gripper")

    def close(self) -> None:
        self.renderer.close()


# key: (field index in CameraCorrection.as_vector, direction, what it does)
NUDGES = {
    "l": (0, +1, "camera right"), "j": (0, -1, "camera left"),
    "i": (1, +1, "camera up"), "k": (1, -1, "camera down"),
    "u": (2, +1, "camera forward"), "o": (2, -1, "camera back"),
    "r": (3, +1, "roll counterclockwise"), "y": (3, -1, "roll clockwise"),
    "t": (4, +1, "pitch up"), "g": (4, -1, "pitch down"),
    "f": (5, +1, "yaw left"), "h": (5, -1, "yaw right"),
    "+": (6, +1, "wider field of view"), "=": (6, +1, "wider field of view"), "-": (6, -1, "narrower field of view"),
}
STEPS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)  # mm, degrees, degrees of field of view per press
KEY_HELP = ("keys: j/l i/k u/o move left/right, up/down, forward/back | f/h t/g r/y yaw, pitch, roll | +/- fov",
            "[ ] step size | z undo | 0 back to the start | s save | q quit")
_LIMITS = np.array([MAX_CAMERA_OFFSET_MM] * 3 + [MAX_CAMERA_ROTATION_DEG] * 3)


@dataclass
class AlignView:
    sim: np.ndarray  # the simulated frame
    readout: Readout
    image: np.ndarray  # the composed view (camera, simulation, blend, edges, text)


class CameraAligner:
    """The alignment's state, no GUI: the correction, its step size and history, what each key does."""

    def __init__(self, camera: SimGripperCamera, start: CameraCorrection, step: float = 1.0):
        start.validate()
        self.camera = camera
        self.start = self.correction = start
        self.step_index = int(np.argmin([abs(s - step) for s in STEPS]))
        self.history: list[CameraCorrection] = []
        self.message = ""

    @property
    def step(self) -> float:
        return STEPS[self.step_index]

    def view(self, joints: Sequence[float], real: np.ndarray, scale: int = 3) -> AlignView:
        """Render at `joints` with the current correction, measure against `real` (the policy's view of the
        camera) and compose the picture."""
        real = np.asarray(real)
        if real.dtype != np.uint8 or real.shape != (*self.camera.size, 3):
            raise ValueError(f"camera frame: expected uint8 {(*self.camera.size, 3)} (the policy's view), got "
                             f"{real.dtype} {real.shape}")
        sim = self.camera.render(joints, self.correction)
        readout = measure(real, sim)
        lines = [self.correction.format(), readout.format(),
                 f"step {self.step:g} mm / deg{' | ' + self.message if self.message else ''}", *KEY_HELP]
        return AlignView(sim, readout, compose_view(real, sim, lines, scale))

    def press(self, key: str) -> str:
        """Apply one key; returns what it asked for: "nudge", "step", "undo", "reset", "save", "quit" or "" (a key
        without a meaning). `message` says what happened."""
        if key in NUDGES:
            index, sign, what = NUDGES[key]
            self._nudge(index, sign * self.step, what)
            return "nudge"
        if key in ("[", "]"):
            self.step_index = min(max(self.step_index + (1 if key == "]" else -1), 0), len(STEPS) - 1)
            self.message = f"step {self.step:g}"
            return "step"
        if key == "z":
            if self.history:
                self.correction = self.history.pop()
                self.message = "undone"
            else:
                self.message = "nothing to undo"
            return "undo"
        if key == "0":
            self.set(self.start)
            self.message = "back to the starting correction"
            return "reset"
        if key == "s":
            return "save"
        if key in ("q", "\x1b"):
            return "quit"
        return ""

    def set(self, correction: CameraCorrection) -> None:
        """Make `correction` the current one (undo goes back to the one before)."""
        correction.validate()
        if correction != self.correction:
            self.history.append(self.correction)
            self.correction = correction

    def _nudge(self, index: int, delta: float, what: str) -> None:
        v = self.correction.as_vector()
        v[index] += delta
        lo, hi = (CAMERA_FOVY_RANGE if index == 6 else (-_LIMITS[index], _LIMITS[index]))
        clamped = min(max(v[index], lo), hi)
        self.message = f"{what} {abs(delta):g}" + (f" (limit {clamped:g})" if clamped != v[index] else "")
        v[index] = clamped
        self.set(CameraCorrection.from_vector(v))


__all__ = ["AlignView", "CameraAligner", "CameraCorrection", "DEFAULT_CUBE_XY", "KEY_HELP", "NUDGES", "STEPS",
           "SimGripperCamera"]
