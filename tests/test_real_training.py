"""The real-arm training path without hardware: recorded demos feed the demo buffer, the actor stores the person's
actions from the env, and the learner learns the shapes of a real-arm config without opening any port."""

import numpy as np
import pytest

from hilserl.agents.sac import SACAgent
from hilserl.config import ConfigError, load_config
from hilserl.data.demo_dataset import DemoDataset
from hilserl.data.episodes import observation_spec_from_space
from hilserl.envs import env_spaces
from hilserl.envs.so101 import SO101EnvConfig, SO101Kinematics, SO101RealEnv
from hilserl.robot.cameras import CameraConfig, FakeCamera
from hilserl.robot.teleop import HumanInput
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.train.actor import Actor
from hilserl.train.build import policy_config
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train
from hilserl.train.record import record_demos
from robot_fakes import FakeClock, IdealFollower

TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=16", "--train.training_starts=10", "--train.eval_every=0", "--train.checkpoint_every=0",
        "--train.torch_threads=1", "--buffers.online_capacity=2000", "--buffers.demo_capacity=2000",
        "--run_name=demos"]


def _record_sim_demos(path, n):
    from hilserl.sim.expert import ExpertPerson

    env = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state"))
    ds = DemoDataset.create(path, observation_spec_from_space(env.observation_space), capacity=600)
    reward = TrainConfig().reward
    summary = record_demos(env, ds, n, success_reward=reward.success_reward, step_penalty=reward.step_penalty,
                           person=ExpertPerson(env), log=lambda s: None)
    ds.close()
    return sum(summary.lengths)


def test_training_fills_the_demo_buffer_from_a_recorded_dataset_once(tmp_path):
    transitions = _record_sim_demos(tmp_path / "demos", 3)
    args = [*TINY, f"--output_dir={tmp_path}", f"--train.demo_dataset={tmp_path / 'demos'}"]
    lines = []
    res = train(load_config(TrainConfig, None, [*args, "--train.total_env_steps=30"]), log=lines.append)
    assert any(f"demo buffer: {transitions} transitions" in line for line in lines)
    assert not any("expert episodes" in line for line in lines)  # the scripted expert made none
    from hilserl.data import ReplayBuffer

    demo = ReplayBuffer.open(res.run_dir / "buffers" / "demo")
    assert len(demo) == transitions and demo.num_episodes == 3
    demo.close()
    lines.clear()
    train(load_config(TrainConfig, None, [*args, "--train.total_env_steps=60"]), resume=True, log=lines.append)
    demo = ReplayBuffer.open(res.run_dir / "buffers" / "demo")
    assert len(demo) == transitions  # a resumed run does not load the demos a second time
    demo.close()


def test_a_demo_dataset_with_other_cameras_is_refused(tmp_path):
    env = SO101GraspCubeEnv(GraspCubeConfig(cameras=("front",), image_size=32))
    ds = DemoDataset.create(tmp_path / "front", observation_spec_from_space(env.observation_space), capacity=10)
    ds.close()
    cfg = load_config(TrainConfig, None, [*TINY, "--env.obs_type=pixels_state", "--env.cameras=[\"gripper\"]",
                                          "--env.image_size=32", "--policy.encoder=conv",
                                          "--policy.backbone_trim_head=false", "--policy.cached_features=false",
                                          f"--output_dir={tmp_path}",
                                          f"--train.demo_dataset={tmp_path / 'front'}", "--train.total_env_steps=5"])
    with pytest.raises(ValueError, match=r"train.demo_dataset: .* holds cameras \['front'\]"):
        train(cfg, log=lambda s: None)


def test_real_arm_config_needs_a_classifier_and_recorded_demos():
    with pytest.raises(ConfigError, match="reward.type"):
        load_config(TrainConfig, "configs/so101_grasp.json", ["--reward.type=ground_truth"])
    with pytest.raises(ConfigError, match="train.demo_dataset"):
        load_config(TrainConfig, "configs/so101_grasp.json", ["--train.demo_dataset=null"])
    cfg = load_config(TrainConfig, "configs/so101_grasp.json")
    assert isinstance(cfg.env, SO101EnvConfig)


def test_learner_shapes_for_the_real_arm_come_without_hardware():
    cfg = load_config(TrainConfig, "configs/so101_grasp.json", ["--env.follower_port=/dev/does-not-exist"])
    obs_space, act_space = env_spaces(cfg.env)  # must not open the port
    sim_obs, sim_act = env_spaces(GraspCubeConfig(cameras=("gripper",)))
    assert obs_space == sim_obs and act_space == sim_act

    policy = policy_config(cfg, obs_space, act_space)
    assert policy.cameras == ("gripper",) and policy.state_dim == 17 and policy.discrete_gripper


def test_actor_on_the_real_env_stores_the_persons_action_as_an_intervention():
    class Person:
        """Takes over on steps 3 and 4 and moves the arm up."""

        t = 0

        def reset(self):
            self.t = 0

        def track(self, q):
            pass

        def step(self, follower_q, ee_reference=None, gripper_closed=None):
            self.t += 1
            if self.t in (3, 4):
                return HumanInput(True, np.array([0.0, 0.0, 1.0, 1.0], np.float32), [])
            return HumanInput(False)

        def close(self):
            pass

    cfg = SO101EnvConfig(cameras={"gripper": CameraConfig(index=0)}, image_size=32, control_time_s=0.6,
                         reset_time_s=0.0, intervention="none", keyboard_events=False)
    clock = FakeClock()
    camera = FakeCamera(lambda i: np.full((32, 32, 3), 100, np.uint8), size=(32, 32), name="gripper")
    env = SO101RealEnv(cfg, IdealFollower(), {"gripper": camera}, human=Person(), kinematics=SO101Kinematics(),
                       clock=clock, sleep=clock.sleep)
    tcfg = load_config(TrainConfig, None, ["--policy.encoder=conv", "--policy.backbone_trim_head=false",
                                           "--policy.cached_features=false", "--policy.hidden_dims=[32, 32]"])
    agent = SACAgent(policy_config(tcfg, env.observation_space, env.action_space))
    stored = []
    stats = Actor(env, agent, None, seed=0).run_episode(1, 0, stored.append)
    assert stats.length == 6 and stats.intervention_steps == 2 and not stats.success
    assert [t.is_intervention for t in stored] == [False, False, True, True, False, False]
    for t in stored[2:4]:
        np.testing.assert_array_equal(t.action, [0, 0, 1, 1])
    assert np.isnan(stats.cube_start[0])  # the real arm does not know where the cube is
    assert stored[0].observation["pixels.gripper"].shape == (32, 32, 3)


def test_evaluation_on_the_real_env_records_its_cameras_and_uses_the_classifier_flag(tmp_path):
    from hilserl.train.evaluate import evaluate

    cfg = SO101EnvConfig(cameras={"gripper": CameraConfig(index=0)}, image_size=32, control_time_s=0.3,
                         reset_time_s=0.0, intervention="none", keyboard_events=False)
    clock = FakeClock()
    camera = FakeCamera(lambda i: np.full((32, 32, 3), 100, np.uint8), size=(32, 32), name="gripper")
    env = SO101RealEnv(cfg, IdealFollower(), {"gripper": camera}, kinematics=SO101Kinematics(), clock=clock,
                       sleep=clock.sleep)
    tcfg = load_config(TrainConfig, None, ["--policy.encoder=conv", "--policy.backbone_trim_head=false",
                                           "--policy.cached_features=false", "--policy.hidden_dims=[32, 32]"])
    agent = SACAgent(policy_config(tcfg, env.observation_space, env.action_space))
    res = evaluate(Actor(env, agent, None, seed=0), 2, fixed_reset=True, video_path=tmp_path / "v.mp4",
                   video_episodes=2)
    assert res.episodes == 2 and res.successes == 0  # the raw env never claims a success by itself
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "v.mp4")
    assert frames.shape[0] == 2 * 4 and frames.shape[1] >= 256  # reset + 3 steps per episode, upscaled camera
