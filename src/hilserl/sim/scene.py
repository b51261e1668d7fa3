"""The SO-101 grasp-cube scene, written as MJCF from the arm's kinematic facts.

The kinematic chain (body offsets, hinge axes, joint limits) is the one of the SO-101 "new calib" URDF
(the public SO-ARM100 repository's SO-101 model). Geometry is made of primitives: visual capsules for the links, collision
boxes for the gripper housing, the fixed jaw and the moving jaw, a table plane and a cube. Every geometry is
authored in the *zero-pose world frame* (all joints at 0, gripper pointing along +x) and placed in its body through
a ``<frame>`` that undoes the body's zero-pose transform; that keeps the numbers below readable as world positions.

Rendering is tuned for speed on a CPU: no shadows, no reflections, no skybox, no multisampling, flat colours.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

# (name, parent, pos, quat w-x-y-z, joint range) straight from the URDF facts; all hinge axes are local z.
CHAIN = (
    ("shoulder", "base", (0.0388353, 0.0, 0.0624), (0.0, 0.0, -1.0, 0.0), ("shoulder_pan", -1.91986, 1.91986)),
    ("upper_arm", "shoulder", (-0.0303992, -0.0182778, -0.0542), (0.5, -0.5, -0.5, -0.5),
     ("shoulder_lift", -1.74533, 1.74533)),
    ("lower_arm", "upper_arm", (-0.11257, -0.028, 0.0), (0.707107, 0.0, 0.0, 0.707107), ("elbow_flex", -1.69, 1.69)),
    ("wrist", "lower_arm", (-0.1349, 0.0052, 0.0), (0.707107, 0.0, 0.0, -0.707107), ("wrist_flex", -1.65806, 1.65806)),
    ("gripper", "wrist", (0.0, -0.0611, 0.0181), (0.0172091, -0.0172091, 0.706897, 0.706897),
     ("wrist_roll", -2.74385, 2.84121)),
    ("moving_jaw", "gripper", (0.0202, 0.0188, -0.0234), (0.707107, 0.707107, 0.0, 0.0), ("gripper", -0.174533, 1.74533)),
)
JOINT_NAMES = tuple(link[4][0] for link in CHAIN)
ARM_JOINTS = JOINT_NAMES[:5]
TCP_SITE_POS = (-0.0079, -0.000218, -0.0981274)  # in the gripper body
TCP_SITE_QUAT = (0.707107, 0.0, 0.707107, 0.0)
MASSES = {"base": 0.147, "shoulder": 0.100, "upper_arm": 0.103, "lower_arm": 0.104, "wrist": 0.079,
          "gripper": 0.087, "moving_jaw": 0.012}

# STS3215 servo model as used by public MuJoCo models of the arm.
SERVO = dict(damping=0.60, frictionloss=0.052, armature=0.028, kp=998.22, kv=2.731, force=2.94)

# Zero-pose geometry of the jaws (world frame, gripper pointing +x; the tool point is (0.3914, 0, 0.2265)).
TCP_ZERO = np.array([0.39136, 0.0, 0.22647])
FIXED_JAW_CLEARANCE = 0.015  # fixed jaw's inner face sits this far below the tool point (jaw-separation axis)
JAW_TIP_PAST_TCP = 0.008  # how far the finger tips reach past the tool point along the approach axis
JAW_OPEN_ANGLE = 1.0  # rad, the "open" command (about 8 cm between the tips)
JAW_CLOSED_ANGLE = -0.1  # rad, the "close" command: past contact, so the servo squeezes

# how far the camera alignment may move the gripper camera from its nominal pose: more means a wrong mount or a
# config typo (metres entered as mm), not a correction
MAX_CAMERA_OFFSET_MM = 30.0
MAX_CAMERA_ROTATION_DEG = 30.0
CAMERA_FOVY_RANGE = (10.0, 150.0)  # degrees, the vertical field of view a config may give the gripper camera


def _quat_to_mat(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _mat_to_quat(m: np.ndarray) -> np.ndarray:
    t = np.trace(m)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k]) * 2
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q)


def zero_pose_frames() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World position and rotation of every body with all joints at zero."""
    frames = {"base": (np.zeros(3), np.eye(3))}
    for name, parent, pos, quat, _ in CHAIN:
        p, r = frames[parent]
        frames[name] = (p + r @ np.asarray(pos), r @ _quat_to_mat(quat))
    return frames


_FRAMES = zero_pose_frames()


def _f(*v) -> str:
    return " ".join(f"{x:.6g}" for x in np.ravel(v))


def _zero_frame_open(body: str) -> str:
    """A <frame> inside `body` whose coordinates are zero-pose world coordinates."""
    p, r = _FRAMES[body]
    return f'<frame pos="{_f(-r.T @ p)}" quat="{_f(_mat_to_quat(r.T))}">'


def _look_axes(eye, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF camera xyaxes for a camera at `eye` looking at `target`."""
    fwd = np.asarray(target, float) - np.asarray(eye, float)
    fwd /= np.linalg.norm(fwd)
    x = np.cross(fwd, up)
    x /= np.linalg.norm(x)
    y = np.cross(x, fwd)
    return _f(x, y)


@dataclass
class SceneConfig:
    """What the MJCF contains. Values that change per episode (cube pose, colours, light) are set on the model
    at reset instead, so one compiled model serves every episode."""

    cube_size: float = 0.025  # edge length (m)
    cube_mass: float = 0.02  # kg
    cube_friction: float = 1.0
    cube_rgba: tuple[float, float, float, float] = (0.85, 0.12, 0.1, 1.0)
    table_rgba: tuple[float, float, float, float] = (0.55, 0.5, 0.45, 1.0)
    timestep: float = 0.004
    gripper_camera_fovy: float = 70.0  # vertical FOV; a square render equals the real camera's centred square crop
    gripper_camera_tilt_deg: float = -4.0  # positive tilts toward the moving jaw
    # the camera alignment's correction (`hilserl robot align-camera` writes it), in the camera's own frame:
    # offset (right, up, forward) in mm, rotation (roll, pitch, yaw) in degrees: roll + turns the camera
    # counterclockwise about its view axis, pitch + looks up, yaw + looks left; zeros: the nominal camera
    gripper_camera_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gripper_camera_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    front_camera: bool = True
    extra_cameras: dict = field(default_factory=dict)
    # textures, backdrop walls and distractor objects for domain randomization and the held-out looks
    # (`hilserl.sim.randomization`, `hilserl.sim.looks`); hidden (geom group 3) unless a hook or a look shows them,
    # so the nominal scene renders the same pixels with or without them
    randomization_assets: bool = True

    def validate(self) -> None:
        """The gripper camera's settings (the others are the scene's own facts)."""
        lo, hi = CAMERA_FOVY_RANGE
        if not lo <= self.gripper_camera_fovy <= hi:
            raise ValueError(f"gripper_camera_fovy: expected {lo:g}-{hi:g} degrees (vertical field of view), got "
                             f"{self.gripper_camera_fovy!r}")
        for name, limit, unit in (("gripper_camera_offset_mm", MAX_CAMERA_OFFSET_MM, "mm (right, up, forward)"),
                                  ("gripper_camera_rotation_deg", MAX_CAMERA_ROTATION_DEG,
                                   "degrees (roll, pitch, yaw)")):
            v = getattr(self, name)
            if len(v) != 3 or not all(np.isfinite(x) and abs(x) <= limit for x in v):
                raise ValueError(f"{name}: expected three numbers within ±{limit:g} {unit}, got {v!r}")


# Inertia of each link: a box of the link's mass, (centre, half extents) in zero-pose world coordinates.
LINK_INERTIA_BOXES = {
    "shoulder": ((0.045, 0, 0.085), (0.022, 0.03, 0.025)),
    "upper_arm": ((0.083, -0.018, 0.173), (0.02, 0.02, 0.06)),
    "lower_arm": ((0.165, -0.018, 0.232), (0.07, 0.016, 0.016)),
    "wrist": ((0.258, -0.009, 0.2344), (0.026, 0.02, 0.017)),
    "gripper": ((0.325, 0, 0.226), (0.035, 0.02, 0.025)),
    "moving_jaw": ((0.35, 0, 0.23), (0.035, 0.008, 0.02)),
}
_VISUAL = 'class="visual"'


def build_mjcf(cfg: SceneConfig | None = None) -> str:
    """The scene's MJCF document: assets and defaults, the arm, the cube, the cameras, the actuators.

    With `cfg.randomization_assets` the document also holds the hidden randomization assets, and states the model
    statistics (centre, extent) of the scene without them: the compiler would otherwise widen them to the walls,
    and the extent scales every camera's near clipping plane."""
    cfg = cfg or SceneConfig()
    if not cfg.randomization_assets:
        return _document(cfg, assets=False, statistic="")
    return _document(cfg, assets=True, statistic=_statistic_of(_document(cfg, assets=False, statistic="")))


@functools.lru_cache(maxsize=8)
def _statistic_of(xml: str) -> str:
    """An MJCF <statistic> element holding the centre and extent MuJoCo computes for `xml` (exact doubles)."""
    import mujoco

    m = mujoco.MjModel.from_xml_string(xml)
    center = " ".join(repr(float(v)) for v in m.stat.center)
    return f'  <statistic center="{center}" extent="{float(m.stat.extent)!r}"/>\n'


def _document(cfg: SceneConfig, assets: bool, statistic: str) -> str:
    h = cfg.cube_size / 2
    front, extra = _scene_cameras(cfg)
    return _preamble(cfg, assets, statistic) + f"""  <worldbody>
    <light name="top" pos="0.25 0 0.8" dir="0 0 -1" directional="true" castshadow="false" diffuse="0.6 0.6 0.6"/>
    <geom name="table" type="plane" size="1 1 0.01" material="table" contype="1" conaffinity="1" friction="1 0.005 0.0001"/>
    {_randomization_geoms() if assets else ""}
    <body name="base">
      <geom class="visual" type="cylinder" pos="0.02 0 0.03" size="0.045 0.03" material="servo"/>
      <geom class="visual" type="box" pos="0.04 0 0.055" size="0.03 0.03 0.012" material="arm"/>
      {_body_xml(0, _link_geoms(cfg))}
    </body>
    <body name="cube" pos="0.25 0 {h}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{h} {h} {h}" mass="{cfg.cube_mass}" material="cube" condim="4"
        friction="{cfg.cube_friction} 0.01 0.0001" contype="1" conaffinity="1" group="2"/>
    </body>
    {front}
    {extra}
  </worldbody>
  <contact>
    <pair geom1="fixed_jaw" geom2="moving_jaw" condim="3"/>
    <exclude body1="base" body2="shoulder"/>
  </contact>
  <actuator>
{_actuators_xml()}
  </actuator>
</mujoco>
"""


def _preamble(cfg: SceneConfig, assets: bool, statistic: str) -> str:
    """From <mujoco> to the end of <default>: compiler, physics options, rendering, materials, geom classes."""
    return f"""<mujoco model="so101_grasp_cube">
  <compiler angle="radian" autolimits="true"/>
{statistic}  <option timestep="{cfg.timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
  </visual>
  <asset>
    <material name="arm" rgba="0.95 0.93 0.88 1" specular="0" reflectance="0"/>
    <material name="servo" rgba="0.12 0.12 0.13 1" specular="0" reflectance="0"/>
    <material name="jaw" rgba="0.72 0.72 0.74 1" specular="0" reflectance="0"/>
    <texture name="table" type="2d" builtin="checker" width="64" height="64" rgb1="{_f(cfg.table_rgba[:3])}"
      rgb2="{_f(np.asarray(cfg.table_rgba[:3]) * 0.92)}"/>
    <material name="table" texture="table" texrepeat="12 12" rgba="1 1 1 1" specular="0" reflectance="0"/>
    <material name="cube" rgba="{_f(cfg.cube_rgba)}" specular="0" reflectance="0"/>
    {_randomization_assets() if assets else ""}
  </asset>
  <default>
    <default class="visual"><geom contype="0" conaffinity="0" group="1" density="0"/></default>
    <default class="collision"><geom contype="1" conaffinity="1" group="2" density="0" friction="1 0.005 0.0001"/></default>
    <default class="finger"><geom contype="1" conaffinity="1" group="2" density="0" condim="4" friction="1.5 0.01 0.0001"
      solref="0.008 1" solimp="0.95 0.99 0.001"/></default>
  </default>
"""


# Domain-randomization assets. Textures are overwritten at reset (`hilserl.sim.randomization`); sizes in texels.
DR_TABLE_TEXTURE, DR_TABLE_TEXTURE_SIZE, DR_TABLE_TEXREPEAT = "table_dr", 256, 8  # one tile = 25 cm of table
DR_BACKDROP_TEXTURE, DR_BACKDROP_TEXTURE_SIZE = "backdrop_dr", 128
DR_BACKDROP_GEOMS = ("backdrop_back", "backdrop_side")
# visual-only objects (no contacts), parked until the distractor hook places them: (type, size)
DR_DISTRACTORS = (("box", (0.012, 0.018, 0.010)), ("cylinder", (0.012, 0.015)), ("sphere", (0.011,)),
                  ("box", (0.022, 0.012, 0.005)))
DR_HIDDEN_GROUP = 3  # geom group the camera renderers leave out
# where hidden distractors wait: inside the arm's base, so they leave the model's bounding box (its statistics,
# which set the cameras' near clipping plane) as it is
DR_PARKED = (0.03, 0.0, 0.03)


def _randomization_assets() -> str:
    t, n, b, nb = DR_TABLE_TEXTURE, DR_TABLE_TEXTURE_SIZE, DR_BACKDROP_TEXTURE, DR_BACKDROP_TEXTURE_SIZE
    mats = "\n".join(f'    <material name="distractor{i}" rgba="0.5 0.5 0.5 1" specular="0" reflectance="0"/>'
                     for i in range(len(DR_DISTRACTORS)))
    return f"""<texture name="{t}" type="2d" builtin="flat" width="{n}" height="{n}" rgb1="0.5 0.5 0.5"/>
    <material name="{t}" texture="{t}" texrepeat="{DR_TABLE_TEXREPEAT} {DR_TABLE_TEXREPEAT}" rgba="1 1 1 1"
      specular="0" reflectance="0"/>
    <texture name="{b}" type="2d" builtin="flat" width="{nb}" height="{nb}" rgb1="0.5 0.5 0.5"/>
    <material name="{b}" texture="{b}" texrepeat="4 1.5" rgba="1 1 1 1" specular="0" reflectance="0"/>
{mats}"""


def _randomization_geoms() -> str:
    """Backdrop walls (behind the arm and to its left, facing the scene) and the parked distractors, all hidden."""
    hid = f'class="visual" group="{DR_HIDDEN_GROUP}"'
    # planes, which the model's statistics (extent, hence the cameras' near plane) leave out, with a coarse
    # render grid (third size: MuJoCo draws a plane as quads of that spacing, which cost time even unseen)
    walls = (f'<geom name="backdrop_back" {hid} type="plane" pos="-0.3 0 0.3" xyaxes="0 1 0 0 0 1" '
             f'size="0.8 0.3 0.3" material="{DR_BACKDROP_TEXTURE}"/>\n'
             f'    <geom name="backdrop_side" {hid} type="plane" pos="0.25 0.55 0.3" xyaxes="1 0 0 0 0 1" '
             f'size="0.8 0.3 0.3" material="{DR_BACKDROP_TEXTURE}"/>')
    objs = "\n".join(f'    <geom name="distractor{i}" {hid} type="{kind}" size="{_f(size)}" pos="{_f(DR_PARKED)}" '
                     f'material="distractor{i}"/>' for i, (kind, size) in enumerate(DR_DISTRACTORS))
    return walls + "\n" + objs


def _body_xml(i: int, geoms: dict[str, str]) -> str:
    """Body ``CHAIN[i]`` with its joint, inertia and geometry, and the bodies below it."""
    name, _, pos, quat, (jname, lo, hi) = CHAIN[i]
    inner = _body_xml(i + 1, geoms) if i + 1 < len(CHAIN) and CHAIN[i + 1][1] == name else ""
    site = (f'<site name="tcp" pos="{_f(TCP_SITE_POS)}" quat="{_f(TCP_SITE_QUAT)}" size="0.003" group="4"/>'
            if name == "gripper" else "")
    return (f'<body name="{name}" pos="{_f(pos)}" quat="{_f(quat)}">\n{_joint(jname, lo, hi)}\n{site}\n'
            f'{_zero_frame_open(name)}\n{_inertial(name)}\n{geoms[name]}\n</frame>\n{inner}\n</body>')


def _joint(name: str, lo: float, hi: float) -> str:
    s = SERVO
    return (f'<joint name="{name}" axis="0 0 1" range="{lo} {hi}" damping="{s["damping"]}" '
            f'frictionloss="{s["frictionloss"]}" armature="{s["armature"]}"/>')


def _inertial(body: str) -> str:
    center, half = LINK_INERTIA_BOXES[body]
    m = MASSES[body]
    a, b, c = (2 * np.asarray(half)) ** 2
    diag = m / 12 * np.array([b + c, a + c, a + b])
    return f'<inertial pos="{_f(center)}" mass="{m}" diaginertia="{_f(diag)}"/>'


def _link_geoms(cfg: SceneConfig) -> dict[str, str]:
    """The geometry (and the gripper's camera and sites) of every moving body, in zero-pose world coordinates."""
    return {
        "shoulder": f'<geom {_VISUAL} type="box" pos="0.045 0 0.085" size="0.022 0.03 0.025" material="servo"/>',
        "upper_arm": (f'<geom {_VISUAL} type="capsule" fromto="0.0692 -0.0183 0.1166 0.0972 -0.0183 0.2292" '
                      f'size="0.018" material="arm"/>'),
        "lower_arm": (f'<geom {_VISUAL} type="capsule" fromto="0.0972 -0.0183 0.2292 0.2321 -0.0183 0.2344" '
                      f'size="0.016" material="arm"/>'),
        "wrist": (f'<geom {_VISUAL} type="box" pos="0.258 -0.009 0.2344" size="0.026 0.02 0.017" material="servo"/>'),
        "gripper": _gripper_geoms(cfg),
        "moving_jaw": _moving_jaw_geoms(),
    }


def gripper_camera_frame(cfg: SceneConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gripper camera's position and its x (image right) and y (image up) axes, in zero-pose world coordinates
    (it looks along its -z axis, MuJoCo's convention). The nominal camera sits below the fixed jaw, behind the
    fingers, tilted toward them; `cfg.gripper_camera_offset_mm` and `gripper_camera_rotation_deg` move it in its own
    frame. With both at zero the numbers are exactly the nominal ones."""
    pos = np.array([0.3335, 0.0, TCP_ZERO[2] - 0.004])
    tilt = np.deg2rad(cfg.gripper_camera_tilt_deg)
    x, y = np.array([0.0, -1.0, 0.0]), np.array([-np.sin(tilt), 0.0, np.cos(tilt)])
    offset, rotation = np.asarray(cfg.gripper_camera_offset_mm, float), np.asarray(cfg.gripper_camera_rotation_deg,
                                                                                     float)
    if not offset.any() and not rotation.any():
        return pos, x, y
    frame = np.stack([x, y, np.cross(x, y)], axis=1)  # columns: the camera's x, y, z (z points back from the view)
    right, up, forward = offset / 1000.0
    pos = pos + frame @ np.array([right, up, -forward])
    frame = frame @ camera_correction_matrix(*rotation)
    return pos, frame[:, 0], frame[:, 1]


def camera_correction_matrix(roll_deg: float, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """Rotation in the camera's own frame (x right, y up, z back): yaw about y (+ looks left), then pitch about x
    (+ looks up), then roll about z (+ turns the camera counterclockwise, the picture clockwise)."""
    r, p, w = np.deg2rad([roll_deg, pitch_deg, yaw_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(w), 0, np.sin(w)], [0, 1, 0], [-np.sin(w), 0, np.cos(w)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _gripper_geoms(cfg: SceneConfig) -> str:
    tz = TCP_ZERO[2]
    tip_x = TCP_ZERO[0] + JAW_TIP_PAST_TCP
    fixed_face = tz - FIXED_JAW_CLEARANCE
    cam_pos, cam_x, cam_y = gripper_camera_frame(cfg)
    cam_axes = _f(cam_x, cam_y)
    return "\n".join([
        # servo housing around the roll axis and the jaw servo
        '<geom name="housing" class="collision" type="box" pos="0.31 0.0 0.232" size="0.022 0.021 0.024" '
        'material="arm"/>',
        # fixed jaw: a finger whose inner face is FIXED_JAW_CLEARANCE below the tool point
        f'<geom name="fixed_jaw" class="finger" type="box" pos="{_f((0.332 + tip_x) / 2, 0, fixed_face - 0.004)}" '
        f'size="{_f((tip_x - 0.332) / 2, 0.010, 0.004)}" material="jaw"/>',
        # camera board on the palm, between the jaws, looking out past the finger tips
        f'<geom name="camera_mount" class="visual" type="box" pos="0.3325 0 {tz - 0.004}" '
        f'size="0.001 0.009 0.009" material="servo"/>',
        f'<camera name="gripper" pos="{_f(cam_pos)}" xyaxes="{cam_axes}" fovy="{cfg.gripper_camera_fovy}"/>',
        f'<site name="tcp_zero" pos="{_f(TCP_ZERO)}" size="0.002" rgba="0 1 0 0" group="4"/>',
    ])


def _moving_jaw_geoms() -> str:
    # an arm along the side from the hinge, a drop at the side down to the finger, and a short distal finger: the
    # palm camera looks between the jaws and, with the jaws closed, still past them
    tip_x = TCP_ZERO[0] + JAW_TIP_PAST_TCP
    fixed_face = TCP_ZERO[2] - FIXED_JAW_CLEARANCE
    hinge = _FRAMES["moving_jaw"][0]
    return "\n".join([
        f'<geom name="jaw_arm" class="collision" type="box" pos="{_f((hinge[0] + 0.362) / 2, 0.014, 0.244)}" '
        f'size="{_f((0.362 - hinge[0]) / 2, 0.004, 0.007)}" material="jaw"/>',
        f'<geom name="jaw_drop" class="collision" type="box" pos="{_f(0.358, 0.017, (0.251 + fixed_face + 0.008) / 2)}" '
        f'size="{_f(0.004, 0.003, (0.251 - fixed_face - 0.008) / 2)}" material="jaw"/>',
        f'<geom name="moving_jaw" class="finger" type="box" pos="{_f((0.354 + tip_x) / 2, 0, fixed_face + 0.004)}" '
        f'size="{_f((tip_x - 0.354) / 2, 0.010, 0.004)}" material="jaw"/>',
    ])


def _actuators_xml() -> str:
    s = SERVO
    return "\n".join(
        f'<position name="{j}" joint="{j}" kp="{s["kp"]}" kv="{s["kv"]}" ctrlrange="{lo} {hi}" '
        f'forcerange="{-s["force"]} {s["force"]}"/>'
        for _, _, _, _, (j, lo, hi) in CHAIN
    )


def _scene_cameras(cfg: SceneConfig) -> tuple[str, str]:
    """The fixed cameras: ``front`` (if ``cfg.front_camera``) and ``cfg.extra_cameras``."""
    front_eye, front_target = (0.50, -0.32, 0.30), (0.19, 0.0, 0.07)
    front = (f'<camera name="front" pos="{_f(front_eye)}" xyaxes="{_look_axes(front_eye, front_target)}" fovy="50"/>'
             if cfg.front_camera else "")
    extra = "\n".join(
        f'<camera name="{n}" pos="{_f(e)}" xyaxes="{_look_axes(e, t)}" fovy="{fov}"/>'
        for n, (e, t, fov) in cfg.extra_cameras.items()
    )
    return front, extra
