"""Demo recording: the simulation with the scripted expert as the person, and the real-arm stack end to end on an
emulated servo bus (Feetech protocol over a pseudo-terminal, SO101Follower, SO101RealEnv, a fake camera)."""

import numpy as np
import pytest

from hilserl.data.demo_dataset import DemoDataset
from hilserl.data.episodes import observation_spec_from_space
from hilserl.envs.so101 import SO101EnvConfig, SO101Kinematics, SO101RealEnv
from hilserl.robot import Calibration, FeetechBus, SO101Follower
from hilserl.robot.cameras import CameraConfig, FakeCamera
from hilserl.robot.teleop import Event, HumanInput
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.expert import ExpertPerson
from hilserl.train.record import hold_still, record_demos, record_episode
from robot_fakes import CAL_JSON, FakeClock, IdealFollower, calibrated_emulator

REWARD = {"success_reward": 7.0, "step_penalty": -0.1}  # the caller's reward section (hilserl record passes it)



def test_sim_recording_with_the_expert_as_the_person(tmp_path):
    env = SO101GraspCubeEnv(GraspCubeConfig(cameras=("gripper",), image_size=64))
    person = ExpertPerson(env, noise=0.0)

    ds = DemoDataset.create(tmp_path / "demos", observation_spec_from_space(env.observation_space), capacity=400)
    lines = []
    summary = record_demos(env, ds, 2, **REWARD, person=person, log=lines.append)
    assert summary.saved == 2 and not summary.quit
    ds.close()
    episodes = list(DemoDataset.open(tmp_path / "demos").episodes())
    assert len(episodes) == 2 and [e.length for e in episodes] == summary.lengths
    for ep in episodes:
        assert ep.terminated and not ep.truncated
        assert ep.rewards[-1] == 7.0 and np.all(ep.rewards[:-1] == np.float32(-0.1))  # the values passed in
        assert ep.is_intervention.all()  # every action was the person's
        assert ep.observations[0]["pixels"]["gripper"].shape == (64, 64, 3)
    assert "episode 2/2: SUCCESS" in lines[-1]


def test_rerecord_and_failure_are_not_kept_and_quit_stops(tmp_path):
    class ScriptedEvents:
        """A fake env wrapper: the person presses keys at given steps of given episodes."""

        def __init__(self, env, plan):
            self.env, self.plan, self.episode, self.t = env, plan, -1, 0
            self.observation_space = env.observation_space

        def reset(self, seed=None):
            self.episode += 1
            self.t = 0
            return self.env.reset(seed=seed)

        def step(self, action):
            obs, r, term, trunc, info = self.env.step(action)
            self.t += 1
            key = self.plan.get((self.episode, self.t))
            info = {**info, "is_success": False, "teleop_events": [key] if key else []}
            return obs, r, False, trunc, info

    env = ScriptedEvents(SO101GraspCubeEnv(GraspCubeConfig(obs_type="state")),
                         {(0, 3): "rerecord", (1, 4): "failure", (2, 2): "success", (3, 1): "quit"})
    ds = DemoDataset.create(tmp_path / "d", observation_spec_from_space(env.observation_space), capacity=100)
    summary = record_demos(env, ds, 5, **REWARD, log=lambda s: None)
    assert (summary.rerecorded, summary.dropped_failed, summary.saved, summary.quit) == (1, 1, 1, True)
    (ep,) = list(ds.episodes())
    assert ep.length == 2 and ep.terminated and not ep.is_intervention.any()  # nobody moved: hold-still actions
    np.testing.assert_array_equal(ep.actions, np.stack([hold_still("discrete")] * 2))


def test_real_arm_stack_on_an_emulated_bus_records_a_demo_and_leaves_torque_off(tmp_path):
    """SO101RealEnv → SO101Follower → FeetechBus → pseudo-terminal → emulated STS3215 servos. The person lifts the
    arm for 4 steps and presses SUCCESS; the demo lands in the dataset and closing the env turns torque off."""
    cal = Calibration.from_dict(CAL_JSON)
    emu = calibrated_emulator(cal, q=[0.0, -0.5, 0.6, 0.9, 0.0, 0.5], max_step_per_tick=40)
    try:
        follower = SO101Follower(emu.port, cal, bus=FeetechBus(emu.port, timeout_s=0.1))

        class Person:
            def __init__(self):
                self.t = 0

            def reset(self):
                self.t = 0

            def track(self, q):
                pass

            def step(self, follower_q, ee_reference=None, gripper_closed=None):
                self.t += 1
                events = [Event.SUCCESS] if self.t == 4 else []
                return HumanInput(True, np.array([0.0, 0.0, 1.0, 1.0], np.float32), events)

            def close(self):
                pass

        cfg = SO101EnvConfig(cameras={"gripper": CameraConfig(index=0, crop=(0, 80, 480, 480))}, reset_time_s=0.0,
                             reset_joint_step=0.2, ee_reset_noise_xy=0.0, ee_reset_noise_z=0.0,
                             ee_reset_pos=(0.22, 0.0, 0.03), intervention="none", keyboard_events=False)
        frame = np.full((480, 640, 3), 90, np.uint8)
        camera = FakeCamera(lambda i: frame, crop=(0, 80, 480, 480), size=(128, 128), name="gripper")
        clock = FakeClock()
        env = SO101RealEnv(cfg, follower, {"gripper": camera}, human=Person(), kinematics=SO101Kinematics(),
                           clock=clock, sleep=clock.sleep)
        ds = DemoDataset.create(tmp_path / "real", observation_spec_from_space(env.observation_space), capacity=50)
        outcome, episode = record_episode(env, **REWARD)
        assert outcome == "success" and episode.length == 4 and episode.is_intervention.all()
        ds.add_episode(episode)
        assert emu.torque_enabled(1) and emu.goal_writes  # the follower was driven through the bus
        z = [o["state"][16] for o in episode.observations]
        assert z[-1] > z[0] + 0.01  # the arm went up as the person asked (servo lag allowed)
        env.close()
        assert not any(emu.torque_enabled(i) for i in range(1, 7))
        assert [e.length for e in DemoDataset.open(tmp_path / "real").episodes()] == [4]
    finally:
        emu.stop()


def test_hold_still_is_no_motion_and_gripper_unchanged():
    np.testing.assert_array_equal(hold_still("discrete"), [0, 0, 0, 1])
    np.testing.assert_array_equal(hold_still("continuous"), [0, 0, 0, 1])
    with pytest.raises(ValueError):
        record_episode(SO101GraspCubeEnv(GraspCubeConfig(obs_type="state")), **REWARD,
                       person=lambda o, i: np.zeros(3))


def test_reward_recording_on_the_real_env_toggles_the_label_with_the_success_key(tmp_path):
    """The person presses SUCCESS at step 3 (label on) and at step 6 (off); a RE-RECORD episode is dropped."""
    from hilserl.reward.dataset import DatasetWriter, load_dataset
    from hilserl.reward.recording import record_with_env

    class Keys:
        def __init__(self, plan):
            self.plan, self.t = plan, 0

        def poll(self):
            self.t += 1
            return list(self.plan.get(self.t, []))

        def close(self):
            pass

    cfg = SO101EnvConfig(cameras={"gripper": CameraConfig(index=0, crop=(0, 80, 480, 480))}, reset_time_s=0.0,
                         control_time_s=0.8, intervention="none", keyboard_events=False, image_size=64)
    clock = FakeClock()
    frames = iter(range(10_000))
    camera = FakeCamera(lambda i: np.full((480, 640, 3), next(frames) % 250, np.uint8), crop=(0, 80, 480, 480),
                        size=(64, 64), name="gripper")
    # polls: one at reset, then one per step; episode 1 is re-recorded at its 2nd step (polls 1-3), episode 2
    # starts at poll 4, and its step k polls 4 + k
    keys = Keys({3: [Event.RERECORD], 4 + 3: [Event.SUCCESS], 4 + 6: [Event.SUCCESS]})
    env = SO101RealEnv(cfg, IdealFollower(q0=[0.0, -0.5, 0.6, 0.9, 0.0, 0.5]), {"gripper": camera}, event_sources=[keys], kinematics=SO101Kinematics(),
                       clock=clock, sleep=clock.sleep)
    states = []  # the state of every observation the recording saw

    class Spy:
        def reset(self):
            obs, info = env.reset()
            states.append(obs["state"])
            return obs, info

        def step(self, action):
            obs, *rest = env.step(action)
            states.append(obs["state"])
            return (obs, *rest)

    writer = DatasetWriter(tmp_path / "reward", ["gripper"], (64, 64, 3), source="so101", with_arm=True)
    res = record_with_env(writer, Spy(), 1, hold_action=hold_still("discrete"), log=lambda s: None)
    assert (res["saved"], res["dropped"]) == (1, 1)
    ds = load_dataset(tmp_path / "reward")
    labels = ds.labels.astype(bool).tolist()
    assert len(labels) == 8 and labels == [False, False, False, True, True, True, False, False]
    # every frame with what the arm measured then (the kept episode's 8 frames: its reset and 7 steps; the last
    # step's observation ends the episode unrecorded): the gripper's opening, velocity and closed command, and the
    # tool's height
    kept = np.stack(states[-9:-1])
    assert ds.arm.shape == (8, 4) and np.array_equal(ds.arm, kept[:, [12, 11, 13, 16]])


def test_hilserl_record_on_the_real_arm_path_end_to_end(tmp_path):
    """`hilserl record` with an `env.type: so101` config: the factory builds SO101Follower on the emulator's
    serial port (from a calibration file), an OpenCV camera (a video file OpenCV opens like a device), and records
    an episode; torque is off when the command ends."""
    import json

    import cv2

    from hilserl.cli import main

    cal = Calibration.from_dict(CAL_JSON)
    cal.save(tmp_path / "follower.json")
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(5):
        writer.write(np.full((480, 640, 3), 40 * i, np.uint8))
    writer.release()
    emu = calibrated_emulator(cal, q=[0.0, -0.5, 0.6, 0.9, 0.0, 0.5], max_step_per_tick=40)
    try:
        cfg = {"env": {"type": "so101", "follower_port": str(emu.port),
                       "follower_calibration": str(tmp_path / "follower.json"), "intervention": "none",
                       "keyboard_events": False, "reset_time_s": 0.0, "reset_joint_step": 0.2,
                       "control_time_s": 0.3, "ee_reset_noise_xy": 0.0, "ee_reset_noise_z": 0.0,
                       "image_size": 64, "cameras": {"gripper": {"index": str(video), "crop": [0, 80, 480, 480]}}}}
        (tmp_path / "so101.json").write_text(json.dumps(cfg))
        code = main(["record", "--config_path", str(tmp_path / "so101.json"), "--num_episodes", "1",
                     "--out", str(tmp_path / "demos"), "--keep_failed"])
        assert code == 0
        (ep,) = list(DemoDataset.open(tmp_path / "demos").episodes())
        assert ep.length == 3 and ep.truncated and not ep.is_intervention.any()  # nobody took over: held still
        assert ep.observations[0]["pixels"]["gripper"].shape == (64, 64, 3)
        assert emu.goal_writes and not any(emu.torque_enabled(i) for i in range(1, 7))
    finally:
        emu.stop()
