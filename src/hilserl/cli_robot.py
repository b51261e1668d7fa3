"""The real-arm and dataset commands of `hilserl` (registered by `hilserl.cli`):

  hilserl robot calibrate --port /dev/ttyACM0 --out calibration/follower.json
  hilserl robot cameras --config_path configs/so101_grasp.json [--out outputs/cameras]
  hilserl robot align-camera --config_path configs/so101_grasp.json [--out configs/sim_pretrain.json]
  hilserl record --config_path configs/so101_grasp.json --num_episodes 20 --out data/demos
  hilserl dataset import-lerobot LEROBOT_FOLDER --out data/demos --config_path configs/so101_grasp.json
  hilserl dataset export-lerobot data/demos --out LEROBOT_FOLDER [--lossless]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from hilserl.config import ConfigError, from_dict, validate_tree
from hilserl.envs.so101 import SO101EnvConfig
from hilserl.sim.env import GraspCubeConfig


@dataclass
class _EnvSection:
    env: GraspCubeConfig | SO101EnvConfig = field(default_factory=GraspCubeConfig)


def _sections(path: str | None, overrides: list[str], names: tuple[str, ...]) -> dict:
    """The named sections of a training config (others are ignored), with their `--section.key=value` overrides."""
    from hilserl.config import apply_overrides, read_config_file

    data = read_config_file(path) if path is not None else {}
    bad = [o for o in overrides if not o.startswith(tuple(f"--{n}." for n in names))]
    if bad:
        allowed = " or ".join(f"--{n}.key=value" for n in names)
        raise ConfigError(f"{bad[0]}: only {allowed} overrides apply here")
    return apply_overrides({n: data.get(n, {}) for n in names}, overrides)


def load_env_config(path: str | None, overrides: list[str]):
    """The `env` section of a training config (other sections are ignored here), with `--env.key=value`."""
    cfg = from_dict(_EnvSection, _sections(path, overrides, ("env",))).env
    validate_tree(cfg, "env.")
    return cfg


def load_record_config(path: str | None, overrides: list[str]):
    """(env, reward) sections of a training config for `hilserl record`: the demos it records carry the reward
    section's success reward and step penalty. Takes `--env.key=value` and `--reward.key=value`."""
    from hilserl.train.config import RewardConfig

    data = _sections(path, overrides, ("env", "reward"))
    env = from_dict(_EnvSection, {"env": data["env"]}).env
    reward = from_dict(RewardConfig, data["reward"], prefix="reward")
    validate_tree(env, "env.")
    validate_tree(reward, "reward.")
    return env, reward


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def start_console(args):
    """`--console`: the browser console (hilserl.cli's, printing to the terminal)."""
    from hilserl.cli import _start_console, rich_console

    return _start_console(args, rich_console())


def add_console_arguments(parser) -> None:
    from hilserl.cli import _add_console_arguments

    _add_console_arguments(parser)


def _clear_errors(command):
    """Bad datasets, files and settings end the command with their message (which names the file and field),
    not a traceback."""

    def run(args, overrides) -> int:
        try:
            return command(args, overrides)
        except (ValueError, OSError) as e:
            if isinstance(e, ConfigError):
                raise
            return _err(str(e))

    return run


# ----------------------------------------------------------------------------------------------------- robot
def cmd_calibrate(args, overrides) -> int:
    from hilserl.robot import FeetechBus, calibrate

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        return _err(f"--out: {out} exists (pass --overwrite to replace it; keep a copy of the old one)")
    with FeetechBus(args.port) as bus:
        calibrate(bus, path=out)
    print(f"calibration written to {out} (LeRobot's SO-101 calibration format)")
    return 0


def cmd_cameras(args, overrides) -> int:
    from hilserl.robot.cameras import check_cameras, format_camera_checks

    env = load_env_config(args.config_path, overrides)
    if not isinstance(env, SO101EnvConfig):
        return _err("env.type: the camera check is for the real arm; set \"type\": \"so101\" in the env section")
    cams = {name: cam.build(name, env.camera_size(name)) for name, cam in env.cameras.items()}
    checks = check_cameras(cams, Path(args.out), frames=args.frames)
    print(format_camera_checks(checks))
    print(f"what the policy sees: {args.out}/<camera>.png; the full frame with the crop drawn: <camera>_raw.png")
    return 0


def cmd_align_camera(args, overrides) -> int:
    """The real camera's frame blended with the simulation's gripper camera at the arm's measured pose; keys nudge
    the simulation camera; `s` saves the correction into the simulation config (--out)."""
    from hilserl.envs.so101 import _calibration
    from hilserl.robot.align import KEY_HELP, CameraAligner, CameraCorrection, SimGripperCamera
    from hilserl.robot.align_config import load_sim_env, write_correction
    from hilserl.robot.align_session import choose_display, run_alignment
    from hilserl.robot.so101 import SO101Follower

    env = load_env_config(args.config_path, overrides)
    if not isinstance(env, SO101EnvConfig):
        return _err("env.type: the camera alignment is for the real arm: --config_path takes the real-arm config "
                    "(\"type\": \"so101\") and --out the simulation config the correction is saved into")
    if args.camera not in env.cameras:
        return _err(f"--camera: {args.camera!r} is not one of env.cameras ({', '.join(sorted(env.cameras))})")
    sim = load_sim_env(args.out)
    cube_xy = _cube_xy(args.cube_xy)
    size = env.camera_size(args.camera)
    follower = SO101Follower(env.follower_port, _calibration(env.follower_calibration, "follower_calibration"))
    camera = env.cameras[args.camera].build(args.camera, size)
    sim_camera = SimGripperCamera(sim.scene, size, cube_xy)
    aligner = CameraAligner(sim_camera, CameraCorrection.from_scene(sim.scene))
    display = None

    def save(correction) -> str:
        values = write_correction(args.out, correction)
        return f"saved into {args.out} (env.scene): " + ", ".join(f"{k}={v}" for k, v in values.items())

    try:
        follower.connect()
        camera.connect()
        print("Hold the arm: its torque goes off now, so that you can move it by hand.")
        follower.torque(False)
        display = choose_display(args.display, args.view)
        where = "nowhere (hidden)" if cube_xy is None else f"x {cube_xy[0]:.3f} y {cube_xy[1]:.3f} m"
        print(f"The simulated cube is at {where}; put the real one there. Starting from {args.out}: "
              f"{aligner.correction.format()}")
        print("\n".join(KEY_HELP))
        run_alignment(aligner, follower, camera, display, save)
    finally:
        for device in (display, camera, sim_camera, follower):  # the follower last: its close turns torque off
            if device is not None:
                device.close()
    return 0


def _cube_xy(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--cube_xy: expected X,Y in metres in the arm's frame (e.g. 0.25,0) or none, got "
                         f"{text!r}") from None
    if not (0.05 <= x <= 0.5 and abs(y) <= 0.3):
        raise ValueError(f"--cube_xy: expected x in 0.05..0.5 m and |y| <= 0.3 m (in reach, in front of the arm), "
                         f"got {text!r}")
    return x, y


# ----------------------------------------------------------------------------------------------------- record
def cmd_record(args, overrides) -> int:
    from hilserl.data.demo_dataset import DemoDataset
    from hilserl.data.episodes import observation_spec_from_space
    from hilserl.envs import make_env
    from hilserl.sim.expert import ExpertPerson
    from hilserl.train.record import record_demos

    env_cfg, reward = load_record_config(args.config_path, overrides)
    real = isinstance(env_cfg, SO101EnvConfig)
    env, page = make_env(env_cfg), None
    try:
        page = start_console(args) if args.console else None
        steps = int(round(env_cfg.control_time_s * env_cfg.fps))
        ds = DemoDataset.create(args.out, observation_spec_from_space(env.observation_space),
                                capacity=args.num_episodes * (steps + 1), fps=env_cfg.fps,
                                robot_type="so101" if real else "so101_sim", task=args.task,
                                created_by="hilserl record")
        if real:
            print("Recording: grab the leader arm (or take over with the keyboard/gamepad), grasp and lift the "
                  "cube, then press s (success). f = failure, r = re-record, q = quit.")
        person = None if real else ExpertPerson(env, seed=args.seed)
        hooks, record_env = {}, env
        if page is not None:
            record_env, person = page.attach_record(env, person, env_cfg.gripper_mode, None if real else env_cfg.fps)
            hooks = {"before_episode": page.before_episode, "on_outcome": page.recorded}
        summary = record_demos(record_env, ds, args.num_episodes, success_reward=reward.success_reward,
                               step_penalty=reward.step_penalty, person=person, gripper_mode=env_cfg.gripper_mode,
                               keep_failed=args.keep_failed, seed=args.seed, task=args.task, **hooks)
        ds.close()
    finally:
        env.close()
        if page is not None:
            page.close()
    print(f"{summary.saved} episodes saved in {args.out} ({summary.dropped_failed} failed and "
          f"{summary.rerecorded} re-recorded ones not kept). Train with --train.demo_dataset={args.out}")
    return 0


# ----------------------------------------------------------------------------------------------------- dataset
def cmd_import_lerobot(args, overrides) -> int:
    from hilserl.data.demo_dataset import DemoDataset
    from hilserl.data.episodes import observation_spec_from_space
    from hilserl.data.lerobot_import import import_lerobot
    from hilserl.data.lerobot_joints import is_joint_space
    from hilserl.data.lerobot_v3 import image_key
    from hilserl.envs import make_env
    from hilserl.obs_format import PIXELS, STATE

    env_cfg = control_cfg = load_env_config(args.config_path, overrides)
    if isinstance(env_cfg, SO101EnvConfig):  # the spaces are what matter: build the simulation's twin, no hardware
        env_cfg = from_dict(GraspCubeConfig, {"cameras": list(env_cfg.cameras), "image_size": env_cfg.image_size,
                                              "gripper_mode": env_cfg.gripper_mode, "fps": env_cfg.fps})
    env = make_env(env_cfg)
    spaces = env.observation_space.spaces
    cameras = list(spaces[PIXELS].spaces) if PIXELS in spaces else []
    image_keys = [image_key(c) for c in cameras]
    if args.camera_map:
        mapping = dict(item.split("=", 1) for item in args.camera_map.split(","))  # lerobot_key=camera
        image_keys = list(mapping)
    else:
        mapping = None
    image_shape = tuple(spaces[PIXELS][cameras[0]].shape) if cameras else None
    report = None
    if is_joint_space(args.source) and spaces[STATE].shape[0] != 6:
        episodes, report = _import_joint_space(args, control_cfg, image_keys, mapping, image_shape)
    else:
        episodes = import_lerobot(args.source, image_keys=image_keys, camera_names=mapping,
                                  expect_state_dim=spaces[STATE].shape[0],
                                  expect_action_dim=env.action_space.shape[0], expect_image_shape=image_shape,
                                  expect_discrete_gripper=env_cfg.gripper_mode == "discrete",
                                  gripper="to_discrete" if args.gripper_to_discrete else "keep")
    episodes = list(episodes)
    if report is not None:
        print(report.summary())
    steps = sum(e.length + 1 for e in episodes)
    ds = DemoDataset.create(args.out, observation_spec_from_space(env.observation_space), capacity=max(1, steps),
                            fps=env_cfg.fps, task=episodes[0].task if episodes else "",
                            created_by=f"hilserl dataset import-lerobot {args.source}")
    for e in episodes:
        ds.add_episode(e)
    ds.close()
    env.close()
    print(f"{len(episodes)} episodes ({steps - len(episodes)} transitions) imported into {args.out}")
    return 0


def _import_joint_space(args, env_cfg, image_keys, mapping, image_shape):
    """A LeRobot SO-101 recording in joint space: its units must be named; the state and actions are derived."""
    from hilserl.data.lerobot_joints import JointSpaceLayout, import_lerobot_joint_space
    from hilserl.robot.calibration import Calibration

    if args.joint_units is None:
        raise ValueError(f"{args.source}: observation.state holds the 6 SO-101 joint positions in LeRobot's units; "
                         "say which with --joint_units degrees (recorded with use_degrees=true) or --joint_units "
                         "range_m100_100 --calibration FILE (LeRobot's default)")
    layout = JointSpaceLayout(units=args.joint_units, fps=int(env_cfg.fps), action_scale=float(env_cfg.action_scale),
                              workspace_low=tuple(env_cfg.workspace_low), workspace_high=tuple(env_cfg.workspace_high),
                              gripper_mode=env_cfg.gripper_mode,
                              calibration=Calibration.load(args.calibration) if args.calibration else None,
                              ee_step_m=args.ee_step_m)
    return import_lerobot_joint_space(args.source, layout, image_keys=image_keys, camera_names=mapping,
                                      expect_image_shape=image_shape)


def cmd_export_lerobot(args, overrides) -> int:
    from hilserl.data.demo_dataset import DemoDataset
    from hilserl.data.lerobot_export import export_lerobot

    ds = DemoDataset.open(args.source)
    try:
        summary = export_lerobot(ds.episodes(), args.out, fps=int(ds.manifest.get("fps", 10)),
                                 robot_type=ds.manifest.get("robot_type"), lossless=args.lossless,
                                 gripper="to_continuous" if args.gripper_to_continuous else "keep")
    finally:
        ds.close()
    print(f"LeRobot v3.0 dataset written to {args.out}: {summary}")
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("robot", help="the real SO-101: calibrate an arm, check the cameras, align the sim camera")
    rsub = r.add_subparsers(dest="robot_command", required=True)
    x = rsub.add_parser("calibrate", help="calibrate a follower or leader arm (LeRobot-compatible JSON)")
    x.add_argument("--port", required=True, help="serial port of the arm, e.g. /dev/ttyACM0")
    x.add_argument("--out", required=True, help="calibration file to write")
    x.add_argument("--overwrite", action="store_true")
    x.set_defaults(func=_clear_errors(cmd_calibrate))
    x = rsub.add_parser("cameras", help="open every configured camera, report resolution/fps, save what the policy "
                                        "sees")
    x.add_argument("--config_path", required=True)
    x.add_argument("--out", default="outputs/cameras")
    x.add_argument("--frames", type=int, default=10)
    x.set_defaults(func=_clear_errors(cmd_cameras))
    x = rsub.add_parser("align-camera", help="blend the real camera with the simulation's at the arm's pose, nudge "
                                             "the sim camera with keys, save the correction into the sim config")
    x.add_argument("--config_path", required=True, help="the real-arm config (follower, calibration, camera)")
    x.add_argument("--out", default="configs/sim_pretrain.json",
                   help="the simulation config the correction is saved into (env.scene); its current correction "
                        "is the starting point")
    x.add_argument("--camera", default="gripper", help="the real camera (env.cameras) on the gripper")
    x.add_argument("--cube_xy", default="0.25,0",
                   help="where the real cube lies, X,Y m in the arm's frame (0.25,0: the reset point), or none")
    x.add_argument("--display", default="auto", choices=["auto", "window", "file"],
                   help="an OpenCV window, or a PNG rewritten about once a second with keys from the terminal")
    x.add_argument("--view", default="outputs/align_camera/view.png", help="the PNG for --display file")
    x.set_defaults(func=_clear_errors(cmd_align_camera))

    x = sub.add_parser("record", help="record demonstrations into a demo dataset (real arm: leader arm/keys; "
                                      "simulation: the scripted expert)")
    x.add_argument("--config_path", required=True)
    x.add_argument("--num_episodes", type=int, default=20)
    x.add_argument("--out", required=True, help="new demo dataset folder")
    x.add_argument("--task", default="grasp the cube")
    x.add_argument("--keep_failed", action="store_true", help="also keep episodes that ended without success")
    x.add_argument("--seed", type=int, default=0)
    add_console_arguments(x)
    x.set_defaults(func=_clear_errors(cmd_record))

    d = sub.add_parser("dataset", help="demo datasets: LeRobot v3.0 import and export")
    dsub = d.add_subparsers(dest="dataset_command", required=True)
    x = dsub.add_parser("import-lerobot", help="a local LeRobot v3.0 dataset → a demo dataset for training")
    x.add_argument("source")
    x.add_argument("--out", required=True)
    x.add_argument("--config_path", required=True, help="the training config whose env the demos must fit")
    x.add_argument("--camera_map", default="", help="lerobot_key=camera,... (default observation.images.<camera>)")
    x.add_argument("--gripper_to_discrete", action="store_true",
                   help="threshold a continuous gripper column into close/stay/open")
    x.add_argument("--joint_units", choices=["degrees", "range_m100_100"], default=None,
                   help="a joint-space SO-101 recording (state = 6 joint positions): LeRobot's units for it")
    x.add_argument("--calibration", default=None,
                   help="the recording arm's LeRobot calibration JSON (needed for range_m100_100)")
    x.add_argument("--ee_step_m", type=float, default=None,
                   help="end-effector-delta actions: metres per unit action they were recorded with")
    x.set_defaults(func=_clear_errors(cmd_import_lerobot))
    x = dsub.add_parser("export-lerobot", help="a demo dataset → a LeRobot v3.0 dataset (parquet + mp4)")
    x.add_argument("source")
    x.add_argument("--out", required=True)
    x.add_argument("--lossless", action="store_true", help="bit-exact video (larger files)")
    x.add_argument("--gripper_to_continuous", action="store_true")
    x.set_defaults(func=_clear_errors(cmd_export_lerobot))


__all__ = ["add_parsers", "load_env_config"]
