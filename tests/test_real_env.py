"""The real-arm env against an in-memory SO-101 (an ideal position servo that reaches each sent target),
fake cameras and an injectable clock: gymnasium API, same spaces as the simulation, EE motion, workspace bounds,
10 Hz pacing, reset motion, interventions and the env factory."""

import json

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from hilserl.config import ConfigError
from hilserl.envs import env_config, env_type, make_env
from hilserl.envs.so101 import SO101EnvConfig, SO101Kinematics, SO101RealEnv
from hilserl.robot.cameras import CameraConfig, FakeCamera, OpenCVCamera
from hilserl.robot.teleop import Event, HumanInput, LeaderArmIntervention, TeleopIntervention
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.scene import JAW_CLOSED_ANGLE, JAW_OPEN_ANGLE
from robot_fakes import FakeClock

LIMITS = np.array([[-1.91986, 1.91986], [-1.74533, 1.74533], [-1.69, 1.69], [-1.65806, 1.65806],
                   [-2.74385, 2.84121], [-0.174533, 1.74533]])


class FakeFollower:
    """SO101Follower's API in memory: clamps targets to the joint limits and a maximum step, and (ideal servo)
    is at the sent target at the next read. Reading takes `read_time` seconds of the fake clock."""

    def __init__(self, clock=None, q0=None, max_step=2.0, read_time=0.0):
        self.q = np.zeros(6) if q0 is None else np.array(q0, float)
        self.max_step, self.clock, self.read_time = max_step, clock, read_time
        self.sent, self.connected, self.closed, self.torque_on = [], False, False, True

    def connect(self):
        self.connected = True

    def read_joint_positions(self):
        if self.clock is not None:
            self.clock.now += self.read_time
        return self.q.copy()

    def send_joint_targets(self, q):
        q = np.clip(np.asarray(q, float), LIMITS[:, 0], LIMITS[:, 1])
        q = self.q + np.clip(q - self.q, -self.max_step, self.max_step)
        self.sent.append(q.copy())
        self.q = q.copy()
        return q

    def torque(self, on):
        self.torque_on = on

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def kin():
    return SO101Kinematics()


def frame(i=0):
    f = np.zeros((480, 640, 3), np.uint8)
    f[:, 80:560] = (30, 120, 200)
    return f


def make_env_under_test(kin, clock=None, human=None, event_sources=(), leader=None, **cfg):
    cfg.setdefault("cameras", {"gripper": CameraConfig(index=0, crop=(0, 80, 480, 480))})
    config = SO101EnvConfig(**cfg)
    clock = clock or FakeClock()
    follower = FakeFollower(clock)
    cams = {name: FakeCamera(frame, crop=c.crop, size=config.camera_size(name), name=name)
            for name, c in config.cameras.items()}
    env = SO101RealEnv(config, follower, cams, human=human, event_sources=event_sources, kinematics=kin,
                       clock=clock, sleep=clock.sleep, leader=leader)
    return env, follower, clock


def ee(obs):
    return obs["state"][14:17].astype(float)


def test_passes_the_gymnasium_env_checker(kin):
    env, _, _ = make_env_under_test(kin)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("gripper_mode", ["discrete", "continuous"])
@pytest.mark.parametrize("cameras, size", [(("gripper",), 128), (("gripper", "front"), 96)])
def test_spaces_equal_the_simulation(kin, gripper_mode, cameras, size):
    sim = SO101GraspCubeEnv(GraspCubeConfig(cameras=cameras, image_size=size, gripper_mode=gripper_mode))
    real, _, _ = make_env_under_test(kin, gripper_mode=gripper_mode, image_size=size,
                                     cameras={c: CameraConfig(index=i, crop=(0, 80, 480, 480))
                                              for i, c in enumerate(cameras)})
    assert real.observation_space == sim.observation_space
    assert real.action_space == sim.action_space
    assert real.STATE_GRIPPER_CLOSED == sim.STATE_GRIPPER_CLOSED
    sim.close()


def test_kinematics_agree_with_the_simulation(kin):
    sim = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state"))
    sim.reset(seed=3)
    mujoco.mj_forward(sim.model, sim.data)  # site positions for the current joints (mj_step lags by one)
    q = sim.data.qpos[sim.joint_qadr]
    np.testing.assert_allclose(kin.ee_position(q), sim.data.site_xpos[sim.tcp], atol=1e-9)
    sim.close()


@pytest.mark.parametrize("action, axis, sign", [
    ([1, 0, 0, 1], 0, 1), ([-1, 0, 0, 1], 0, -1), ([0, 1, 0, 1], 1, 1), ([0, -1, 0, 1], 1, -1),
    ([0, 0, 1, 1], 2, 1), ([0, 0, -0.5, 1], 2, -0.5),
])
def test_actions_move_the_tool_point_in_the_commanded_direction(kin, action, axis, sign):
    env, follower, _ = make_env_under_test(kin)
    obs, _ = env.reset(options={"ee_pos": (0.23, 0.0, 0.045)})
    np.testing.assert_allclose(ee(obs), [0.23, 0.0, 0.045], atol=1e-3)
    obs2, reward, terminated, truncated, info = env.step(np.array(action, np.float32))
    moved = ee(obs2) - ee(obs)
    expected = np.zeros(3)
    expected[axis] = sign * 0.02
    np.testing.assert_allclose(moved, expected, atol=1.5e-3)
    np.testing.assert_allclose(kin.ee_position(follower.q), ee(obs2), atol=1e-6)
    assert reward == 0.0 and not terminated and not truncated and not info["is_intervention"]


def test_targets_stay_in_the_workspace_under_random_actions(kin):
    """The EE target is clamped to the workspace and the joint targets put the tool point there. (The follower
    here has no step limit, so it reaches every joint target; a real follower's step limit can make the path
    between two targets leave the straight line, as the simulated servos do.)"""
    env, follower, _ = make_env_under_test(kin)
    follower.max_step = np.inf
    low, high = np.array(env.cfg.workspace_low), np.array(env.cfg.workspace_high)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(150):
        a = rng.uniform(-1, 1, 4)
        a[3] = rng.integers(0, 3)
        obs, *_, info = env.step(a)
        assert np.all(info["ee_target"] >= low - 1e-9) and np.all(info["ee_target"] <= high + 1e-9)
        p = ee(obs)
        np.testing.assert_allclose(kin.ee_position(info["joint_targets"]), p, atol=1e-6)
        assert np.all(p >= low - 1e-3) and np.all(p <= high + 1e-3), p


def test_state_layout(kin):
    env, follower, _ = make_env_under_test(kin)
    obs, _ = env.reset(seed=1)
    s = obs["state"]
    assert s.dtype == np.float32 and s.shape == (17,)
    np.testing.assert_allclose(s[:6], follower.q, atol=1e-6)
    np.testing.assert_array_equal(s[6:12], 0.0)  # at rest after a reset
    assert s[12] == pytest.approx(1.0) and s[13] == 0.0  # jaws open, no close command
    q_before = follower.q.copy()
    obs, *_ = env.step(np.array([0.0, 1.0, 0.0, 0.0]))  # move left and close
    s = obs["state"]
    np.testing.assert_allclose(s[6:12], (follower.q - q_before) / 0.1, rtol=1e-4, atol=1e-4)
    assert follower.q[5] == pytest.approx(JAW_CLOSED_ANGLE)
    assert s[12] == 0.0 and s[13] == 1.0
    np.testing.assert_allclose(s[14:17], kin.ee_position(follower.q), atol=1e-6)


def test_continuous_gripper(kin):
    env, follower, _ = make_env_under_test(kin, gripper_mode="continuous")
    env.reset(seed=0)
    env.step(np.array([0, 0, 0, 0.0]))  # half open
    assert follower.q[5] == pytest.approx((JAW_CLOSED_ANGLE + JAW_OPEN_ANGLE) / 2)


def test_pacing_holds_the_control_rate_and_reports_overruns(kin):
    clock = FakeClock()
    env, follower, _ = make_env_under_test(kin, clock=clock)
    follower.read_time = 0.004  # each servo read costs 4 ms
    env.reset(seed=0)
    times = []
    for k in range(6):
        clock.now += 0.25 if k == 3 else 0.03  # the policy's thinking time; step 3 is too slow
        *_, info = env.step(np.zeros(4))
        times.append(clock.now)
        if k == 3:
            assert info["control_overrun_s"] == pytest.approx(0.25 + 0.004 - 0.1, abs=1e-6)
            assert info["control_period_s"] == pytest.approx(0.25 + 0.004, abs=1e-6)
        else:
            assert info["control_overrun_s"] == 0.0
            assert info["control_period_s"] == pytest.approx(0.1, abs=1e-5)
    periods = np.diff(times)
    np.testing.assert_allclose(periods[[0, 1, 4]], 0.1, atol=1e-5)  # on time again after the slow step


def test_reset_moves_slowly_to_the_randomised_home_pose_and_waits(kin):
    clock = FakeClock()
    env, follower, _ = make_env_under_test(kin, clock=clock, reset_joint_step=0.05, reset_time_s=2.0)
    follower.q = np.array([0.5, -0.5, 0.3, 0.2, 0.4, 0.1])  # wherever the last episode ended
    t0 = clock.now
    obs, info = env.reset(seed=5)
    steps = np.diff(np.array([np.array([0.5, -0.5, 0.3, 0.2, 0.4, 0.1])] + follower.sent), axis=0)
    assert np.abs(steps).max() <= 0.05 + 1e-12  # bounded joint steps, one per tick
    assert len(follower.sent) >= 10  # 0.5 rad at 0.05 rad per tick
    assert clock.now - t0 >= 2.0 + 0.1 * len(follower.sent) - 1e-6  # paced ticks, then the reset wait
    assert info["reset_joint_error"] <= env.cfg.reset_tolerance
    p = ee(obs)
    assert abs(p[0] - 0.25) <= 0.03 + 1e-3 and abs(p[1]) <= 0.03 + 1e-3 and abs(p[2] - 0.03) <= 0.02 + 1e-3
    assert follower.q[4] == pytest.approx(0.0) and follower.q[5] == pytest.approx(JAW_OPEN_ANGLE)
    offsets = {tuple(np.round(ee(env.reset(seed=s)[0]), 4)) for s in range(5)}
    assert len(offsets) == 5  # a different start every episode


def test_episode_truncates_and_never_terminates(kin):
    env, _, _ = make_env_under_test(kin, control_time_s=0.5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_human_action_replaces_the_policy_action(kin):
    class Human:
        def __init__(self):
            self.active, self.resets = False, 0

        def reset(self):
            self.resets += 1

        def track(self, q):
            pass

        def step(self, follower_q, ee_reference=None, gripper_closed=None):
            if not self.active:
                return HumanInput(False)
            return HumanInput(True, np.array([0.0, 0.0, 1.0, 1.0], np.float32), [Event.INTERVENE_ON])

        def close(self):
            pass

    human = Human()
    env, follower, _ = make_env_under_test(kin, human=human)
    obs, _ = env.reset(options={"ee_pos": (0.23, 0.0, 0.03)})
    assert human.resets == 1
    obs1, *_, info = env.step(np.array([1.0, 0.0, 0.0, 1.0]))
    assert not info["is_intervention"] and "intervention_action" not in info
    human.active = True
    obs2, *_, info = env.step(np.array([1.0, 0.0, 0.0, 1.0]))  # the policy says +x, the person +z
    assert info["is_intervention"] and info["teleop_events"] == ["intervene_on"]
    np.testing.assert_array_equal(info["intervention_action"], [0, 0, 1, 1])
    d = ee(obs2) - ee(obs1)
    assert d[2] == pytest.approx(0.02, abs=1.5e-3) and abs(d[0]) < 1.5e-3


def test_leader_arm_intervention_drives_the_follower(kin):
    class Leader(FakeFollower):
        held = False

        def send_joint_targets(self, q):
            return self.q.copy() if self.held else super().send_joint_targets(q)

    clock = FakeClock()
    leader = Leader()
    config_kw = dict(clock=clock, leader=leader)
    env, follower, _ = make_env_under_test(kin, **config_kw)
    human = LeaderArmIntervention(follower, leader, kin, env.cfg.detector.build(), env.cfg.action_scale,
                                  env.cfg.workspace_low, env.cfg.workspace_high)
    env.human = human
    obs, _ = env.reset(options={"ee_pos": (0.22, 0.0, 0.04)})
    assert leader.connected and leader.torque_on
    np.testing.assert_allclose(leader.q, follower.q, atol=1e-9)  # the leader followed the reset motion
    for _ in range(3):
        obs, *_, info = env.step(np.zeros(4))
        assert not info["is_intervention"]
    start = ee(obs)
    goal = start + np.array([0.0, 0.06, 0.0])  # the person moves the leader 6 cm to the left and holds it
    leader.q = kin.solve(goal, leader.q)
    leader.held = True
    path = []
    for _ in range(4):
        obs, *_, info = env.step(np.array([0.0, -1.0, 0.0, 1.0]))  # the policy pulls right
        assert info["is_intervention"] and "tracking_error" in info
        path.append(ee(obs)[1])
    assert not leader.torque_on
    np.testing.assert_allclose(np.diff([start[1], *path]), [0.02, 0.02, 0.02, 0.0], atol=2e-3)
    np.testing.assert_allclose(ee(obs), goal, atol=2e-3)
    env.close()
    assert leader.closed and follower.closed


def test_keyboard_events_reach_info(kin):
    class Keys:
        def __init__(self):
            self.pending = [Event.SUCCESS]

        def poll(self):
            out, self.pending = self.pending, []
            return out

        def action(self):
            return np.zeros(4, np.float32)

        def close(self):
            self.closed = True

    keys = Keys()
    env, _, _ = make_env_under_test(kin, event_sources=[keys])
    _, info = env.reset(seed=0)
    assert info["teleop_events"] == ["success"]
    keys.pending = [Event.QUIT]
    *_, info = env.step(np.zeros(4))
    assert info["teleop_events"] == ["quit"]
    env.close()
    assert keys.closed


def test_bad_inputs_are_refused(kin):
    env, _, _ = make_env_under_test(kin)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action: expected 4 values"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 1]))
    config = SO101EnvConfig(cameras={"gripper": CameraConfig(), "front": CameraConfig(index=2)})
    with pytest.raises(ValueError, match=r"no camera object for \['front'\]"):
        SO101RealEnv(config, FakeFollower(), {"gripper": FakeCamera([frame()])}, kinematics=kin)
    with pytest.raises(ValueError, match="env.intervention"):
        SO101RealEnv(SO101EnvConfig(intervention="pedal"), FakeFollower(), {"gripper": None}, kinematics=kin)
    with pytest.raises(ValueError, match="cameras.wrist_canonical: .*canonical view"):
        SO101EnvConfig(cameras={"wrist_canonical": CameraConfig()})  # the simulation's name for a training aid


def test_close_closes_every_device_even_if_one_fails(kin):
    env, follower, _ = make_env_under_test(kin)

    class Broken:
        def poll(self):
            return []

        def close(self):
            raise OSError("gone")

    env.event_sources = [Broken()]
    with pytest.raises(OSError, match="gone"):
        env.close()
    assert follower.closed and env.cameras["gripper"].closed


# ============================================================================================== factory
def test_factory_chooses_by_type(monkeypatch, tmp_path):
    assert env_type(GraspCubeConfig()) == "sim" and env_type({}) == "sim"
    assert env_type(SO101EnvConfig()) == "so101"
    with pytest.raises(ConfigError, match="env.type: expected one of"):
        env_type({"type": "ur5"})
    assert isinstance(env_config({"type": "so101", "action_scale": 0.03}), SO101EnvConfig)
    with pytest.raises(ConfigError, match=r"env\.acton_scale: unknown key"):
        env_config({"type": "so101", "acton_scale": 0.03})
    sim = make_env({"type": "sim", "obs_type": "state"})
    assert isinstance(sim, SO101GraspCubeEnv)
    sim.close()

    made = {}

    class Arm(FakeFollower):
        def __init__(self, port, calibration):
            super().__init__()
            self.calibration = calibration
            made[port] = self

    import hilserl.robot.so101 as so101

    monkeypatch.setattr(so101, "SO101Follower", Arm)
    monkeypatch.setattr(so101, "SO101Leader", Arm)
    calib = {n: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 1000, "range_max": 3000}
             for i, n in enumerate(("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll",
                                    "gripper"))}
    (tmp_path / "follower.json").write_text(json.dumps(calib))
    (tmp_path / "leader.json").write_text(json.dumps(calib))
    arms = {"follower_calibration": str(tmp_path / "follower.json"),
            "leader_calibration": str(tmp_path / "leader.json")}
    with pytest.raises(ConfigError, match="env.follower_calibration: required"):
        make_env({"type": "so101"})
    real = make_env({"type": "so101", "keyboard_events": False, "follower_port": "/dev/F", "leader_port": "/dev/L",
                     **arms})
    assert isinstance(real, SO101RealEnv) and isinstance(real.human, LeaderArmIntervention)
    assert real.follower is made["/dev/F"] and real.human.leader is made["/dev/L"] and real.leader is made["/dev/L"]
    assert made["/dev/F"].calibration.motors["gripper"].range_max == 3000
    cam = real.cameras["gripper"]
    assert isinstance(cam, OpenCVCamera) and cam.crop == (0, 80, 480, 480) and cam.size == (128, 128)
    (tmp_path / "js0").write_bytes(b"")
    pad_env = make_env(SO101EnvConfig(intervention="gamepad", keyboard_events=False,
                                      gamepad_path=str(tmp_path / "js0"), **arms))
    assert isinstance(pad_env.human, TeleopIntervention)
    pad_env.human.close()
    none_env = make_env(SO101EnvConfig(intervention="none", keyboard_events=False, **arms))
    assert none_env.human is None and none_env.event_sources == []
