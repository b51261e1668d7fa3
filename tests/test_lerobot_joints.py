"""LeRobot SO-101 recordings in joint space (state = the 6 joint positions in LeRobot's units, action = 6 joint
targets or end-effector deltas) imported as demonstrations in the policy's layout.

The recordings are written here as LeRobot would: a scripted grasp in the simulation gives joint positions and the
joint targets that moved the arm, converted to LeRobot's units with LeRobot's own formulas (servo steps ->
degrees from the calibrated middle, or -100..100 of the calibrated range; the gripper in 0..100 %)."""

import json

import numpy as np
import pytest
from robot_fakes import CAL_JSON

from hilserl.cli import main
from hilserl.data.demo_dataset import DemoDataset
from hilserl.data.episodes import Episode
from hilserl.data.lerobot_export import export_lerobot
from hilserl.data.lerobot_import import import_lerobot
from hilserl.envs.so101 import SO101Kinematics
from hilserl.data.lerobot_joints import JointSpaceLayout, import_lerobot_joint_space, lerobot_to_radians
from hilserl.robot.calibration import Calibration
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.expert import ScriptedExpert

SCALE = 0.02
CAL = Calibration.from_dict(CAL_JSON)
JOINT_NAMES = [f"{j}.pos" for j in CAL.motors]


def lerobot_values(raw: np.ndarray, cal: Calibration, units: str) -> np.ndarray:
    """Servo steps [T, 6] -> what LeRobot's bus reports (its normalisation, written out here)."""
    out = np.empty_like(raw, dtype=np.float64)
    for j, m in enumerate(cal.motors.values()):
        lo, hi, inv = m.range_min, m.range_max, m.drive_mode == 1
        if j == 5:
            pct = (raw[:, j] - lo) / (hi - lo) * 100
            out[:, j] = 100 - pct if inv else pct
        elif units == "degrees":
            out[:, j] = (raw[:, j] - (lo + hi) / 2) * 360 / 4095
        else:
            norm = (raw[:, j] - lo) / (hi - lo) * 200 - 100
            out[:, j] = -norm if inv else norm
    return out


def to_lerobot(q: np.ndarray, units: str, cal: Calibration = CAL) -> np.ndarray:
    return lerobot_values(np.stack([cal.rad_to_raw_float(x) for x in q]), cal, units).astype(np.float32)


@pytest.fixture(scope="module")
def grasp():
    """One scripted grasp at 10 Hz: states (17), joint targets (6) and the expert's actions."""
    env = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state", action_scale=SCALE))
    expert = ScriptedExpert(env, rng=np.random.default_rng(0))
    obs, _ = env.reset(seed=3)
    states, targets, actions, rewards = [obs["state"]], [], [], []
    for _ in range(60):
        a = expert.act()
        obs, r, terminated, truncated, _ = env.step(a)
        states.append(obs["state"])
        targets.append(env.data.ctrl[:6].copy())
        actions.append(a)
        rewards.append(r)
        if terminated or truncated:
            break
    env.close()
    assert terminated, "the scripted grasp should succeed"
    return np.array(states), np.array(targets), np.array(actions), np.array(rewards, np.float32)


def layout(units="degrees", fps=10, calibration=None, ee_step_m=None) -> JointSpaceLayout:
    cfg = GraspCubeConfig()
    return JointSpaceLayout(units, fps, SCALE, tuple(cfg.workspace_low), tuple(cfg.workspace_high),
                            calibration=calibration, ee_step_m=ee_step_m)


def write_recording(root, states, actions, rewards, fps=10, repeat=1, action_names=None, image_size=None):
    """A LeRobot v3.0 dataset of one episode (state 6, action 6 or 4) at fps * repeat: each frame repeated."""
    s = np.repeat(states[:-1], repeat, axis=0)
    a = np.repeat(actions, repeat, axis=0)
    r = np.zeros(len(a), np.float32)
    r[repeat - 1::repeat] = rewards  # a step's reward at its last frame
    obs = [{"state": x} for x in s] + [{"state": states[-1]}]
    if image_size:
        for t, o in enumerate(obs):
            o["pixels"] = {"gripper": np.full((image_size, image_size, 3), 4 * t % 256, np.uint8)}
    ep = Episode(obs, a, r, True, False, np.ones(len(a), bool), "grasp the cube", {})
    export_lerobot([ep], root, fps=fps * repeat, robot_type="so101_follower", state_names=JOINT_NAMES,
                   action_names=action_names or JOINT_NAMES)
    return root


# ---------------------------------------------------------------------------------------------------- units
@pytest.mark.parametrize("units", ["degrees", "range_m100_100"])
@pytest.mark.parametrize("drive_mode", [0, 1])
def test_lerobot_units_back_to_the_arms_radians(units, drive_mode):
    data = json.loads(json.dumps(CAL_JSON))
    for name in ("elbow_flex", "gripper"):
        data[name]["drive_mode"] = drive_mode
    cal = Calibration.from_dict(data)
    rng = np.random.default_rng(1)
    lo = np.array([m.range_min for m in cal.motors.values()])
    hi = np.array([m.range_max for m in cal.motors.values()])
    raw = rng.uniform(lo, hi, size=(20, 6))
    expected = np.stack([cal.raw_to_rad(r) for r in raw])
    values = lerobot_values(raw, cal, units)
    np.testing.assert_allclose(lerobot_to_radians(values, units, cal), expected, atol=1e-9)
    if units == "degrees" and drive_mode == 0:  # without the file: the same (zero = the calibrated middle)
        np.testing.assert_allclose(lerobot_to_radians(values, units), expected, atol=1e-9)
    with pytest.raises(ValueError, match="calibration"):
        lerobot_to_radians(values, "range_m100_100")
    with pytest.raises(ValueError, match="joint_units"):
        lerobot_to_radians(values, "radians", cal)


# ---------------------------------------------------------------------------------------------------- import
@pytest.mark.parametrize("units", ["degrees", "range_m100_100"])
def test_joint_targets_become_the_policys_state_and_actions(grasp, units, tmp_path):
    states, targets, expert_actions, rewards = grasp
    q = states[:, :6].astype(np.float64)
    root = write_recording(tmp_path / "ds", to_lerobot(q, units), to_lerobot(targets, units), rewards)
    cal = CAL if units == "range_m100_100" else None
    episodes, report = import_lerobot_joint_space(root, layout(units, calibration=cal))
    (ep,) = list(episodes)
    got = np.stack([o["state"] for o in ep.observations])
    assert got.shape == (len(states), 17) and ep.length == len(expert_actions)
    np.testing.assert_allclose(got[:, :6], q, atol=2e-4)  # joints (float32 LeRobot values)
    np.testing.assert_allclose(got[1:, 6:12], (got[1:, :6] - got[:-1, :6]) * 10, atol=1e-3)  # finite differences
    np.testing.assert_array_equal(got[0, 6:12], 0)
    np.testing.assert_allclose(got[:, 12], states[:, 12], atol=2e-4)  # gripper opening
    np.testing.assert_array_equal(got[:, 13], states[:, 13])  # closed flag: the derived commands, as the sim's
    kin = SO101Kinematics()  # the tool point by forward kinematics of the same joints
    np.testing.assert_allclose(got[:, 14:], np.stack([kin.ee_position(x) for x in q]), atol=1e-4)
    np.testing.assert_allclose(got[:, 14:], states[:, 14:], atol=2e-3)  # the sim's (one physics substep older)
    # motion: the delta to the target pose; where the expert moved decisively, the same direction
    big = np.abs(expert_actions[:, :3]) > 0.3
    assert big.sum() >= 5
    agree = np.sign(ep.actions[:, :3][big]) == np.sign(expert_actions[:, :3][big])
    assert agree.mean() > 0.9, agree.mean()
    assert np.corrcoef(ep.actions[:, :3].ravel(), expert_actions[:, :3].ravel())[0, 1] > 0.8
    assert np.all(np.abs(ep.actions[:, :3]) <= 1)
    assert set(np.unique(ep.actions[:, 3])) <= {0.0, 1.0, 2.0} and 0.0 in ep.actions[:, 3]
    np.testing.assert_array_equal(ep.rewards, rewards)
    assert ep.terminated and ep.is_intervention.all()
    assert report.episodes == 1 and report.steps == ep.length and report.stride == 1
    assert report.gripper_commands["close"] >= 1
    text = report.summary()
    assert units in text and "forward kinematics" in text and "clipped" in text


def test_a_30_fps_recording_keeps_every_third_frame(grasp, tmp_path):
    states, targets, _, rewards = grasp
    q = states[:, :6].astype(np.float64)
    at10 = write_recording(tmp_path / "a", to_lerobot(q, "degrees"), to_lerobot(targets, "degrees"), rewards)
    at30 = write_recording(tmp_path / "b", to_lerobot(q, "degrees"), to_lerobot(targets, "degrees"), rewards,
                           repeat=3)
    (a,) = list(import_lerobot_joint_space(at10, layout())[0])
    episodes, report = import_lerobot_joint_space(at30, layout())
    (b,) = list(episodes)
    assert report.stride == 3 and report.frames == 3 * a.length and b.length == a.length
    np.testing.assert_allclose(b.actions, a.actions, atol=1e-6)
    np.testing.assert_allclose(b.rewards, a.rewards)
    np.testing.assert_allclose(np.stack([o["state"] for o in b.observations]),
                               np.stack([o["state"] for o in a.observations]), atol=1e-5)
    with pytest.raises(ValueError, match="fps: .*30 fps.*not a whole multiple.*25 Hz"):
        import_lerobot_joint_space(at30, layout(fps=25))


def test_end_effector_recordings_are_rescaled_to_the_action_scale(grasp, tmp_path):
    states, _, expert_actions, rewards = grasp
    q = states[:, :6].astype(np.float64)
    theirs = expert_actions.copy()
    theirs[:, :3] *= SCALE / 0.04  # recorded with 4 cm per unit: half our values
    root = write_recording(tmp_path / "ee", to_lerobot(q, "degrees"), theirs, rewards,
                           action_names=["x", "y", "z", "gripper"])
    with pytest.raises(ValueError, match="ee_step_m"):
        import_lerobot_joint_space(root, layout())
    episodes, report = import_lerobot_joint_space(root, layout(ee_step_m=0.04))
    (ep,) = list(episodes)
    np.testing.assert_allclose(ep.actions, expert_actions, atol=1e-6)
    assert report.action_layout == "end-effector deltas"


def test_anything_else_is_refused_naming_the_feature(tmp_path):
    ep = Episode([{"state": np.zeros(7, np.float32)}] * 3, np.zeros((2, 6), np.float32), np.zeros(2, np.float32),
                 True, False, np.ones(2, bool), "t", {})
    export_lerobot([ep], tmp_path / "seven", fps=10, robot_type="so101_follower")
    with pytest.raises(ValueError, match="observation.state.*shape \\[7\\].*\\[6\\]"):
        import_lerobot_joint_space(tmp_path / "seven", layout())
    ep = Episode([{"state": np.zeros(6, np.float32)}] * 3, np.zeros((2, 5), np.float32), np.zeros(2, np.float32),
                 True, False, np.ones(2, bool), "t", {})
    export_lerobot([ep], tmp_path / "five", fps=10, robot_type="so101_follower")
    with pytest.raises(ValueError, match="action.*shape \\[5\\]"):
        import_lerobot_joint_space(tmp_path / "five", layout())
    with pytest.raises(ValueError, match="calibration"):
        import_lerobot_joint_space(tmp_path / "five", layout("range_m100_100"))


def test_the_import_command_asks_for_the_units_then_writes_demos(grasp, tmp_path, capsys):
    states, targets, _, rewards = grasp
    q = states[:, :6].astype(np.float64)
    root = write_recording(tmp_path / "ds", to_lerobot(q, "range_m100_100"), to_lerobot(targets, "range_m100_100"),
                           rewards, image_size=64)
    cal_file = tmp_path / "follower.json"
    CAL.save(cal_file)
    args = ["dataset", "import-lerobot", str(root), "--config_path", "configs/sim_grasp.json", "--env.image_size=64",
            f"--env.action_scale={SCALE}"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--joint_units" in err and "6 SO-101 joint positions" in err
    out = tmp_path / "demos"
    assert main([*args, "--out", str(out), "--joint_units", "range_m100_100", "--calibration", str(cal_file)]) == 0
    printed = capsys.readouterr().out
    assert "joint-space recording: 1 episodes" in printed and "1 episodes" in printed
    (ep,) = list(DemoDataset.open(out).episodes())
    assert ep.observations[5]["pixels"]["gripper"].shape == (64, 64, 3)
    kin = SO101Kinematics()
    np.testing.assert_allclose(np.stack([o["state"] for o in ep.observations])[:, 14:],
                               np.stack([kin.ee_position(x) for x in states[:, :6]]), atol=1e-4)
    assert len(list(import_lerobot(root))) == 1  # the source is left as it was
