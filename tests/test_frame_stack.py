"""policy.frame_stack: the policy reads each camera's last k frames of the episode, oldest first, the first repeated
at an episode start: the frozen backbone runs on every frame and the head takes the k maps side by side; the replay
buffer stacks the stored single frames by index, and the actor keeps the same stack while it acts."""

import dataclasses

import numpy as np
import pytest
import torch

import hilserl  # noqa: F401  (before mujoco)
from hilserl.agents.registry import make_agent
from hilserl.agents.sac import SACAgent, SACConfig
from hilserl.config import load_config
from hilserl.data import ReplayBuffer
from hilserl.sim.env import SO101GraspCubeEnv
from hilserl.train.actor import Actor
from hilserl.train.checkpoint import load_initial_policy
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train


def _agent(env, **kw):
    return SACAgent(SACConfig(state_dim=env.state_dim, action_dim=3, discrete_gripper=True, cameras=("gripper",),
                              encoder="efficientnet_lite0", backbone_trim_head=True, backbone_dtype="float32", **kw))


def test_the_backbone_runs_on_every_frame_and_the_head_takes_the_maps_side_by_side():
    env = SO101GraspCubeEnv(control_time_s=0.2)
    agent = _agent(env, frame_stack=3)
    frames = torch.randint(0, 256, (2, 3, 3, *agent.config.image_size), dtype=torch.uint8)  # [B, k, 3, H, W]
    pre = agent.encoder.backbone_features({"state": torch.zeros(2, env.state_dim),
                                           "pixels.gripper": frames.flatten(1, 2)})[0]
    one = agent.encoder.backbone(frames.flatten(0, 1)).view(2, 3, 320, 4, 4)
    assert pre["gripper"].shape == (2, 3 * 320, 4, 4)
    torch.testing.assert_close(pre["gripper"], one.flatten(1, 2))  # oldest frame's maps first
    assert agent.encoder.heads["gripper"].pool.kernel.shape[0] == 3 * 320
    with pytest.raises(ValueError, match="frame_stack"):
        SACConfig(state_dim=3, action_dim=3, cameras=("gripper",), frame_stack=0).validate()
    env.close()


def test_the_actor_acts_on_the_episodes_last_frames_as_the_buffer_stacks_them():
    env = SO101GraspCubeEnv(control_time_s=0.5)  # 5 steps
    agent = _agent(env, frame_stack=3, cached_features=True, num_cached_shifts=2)
    seen = []
    act = agent.select_action
    agent.select_action = lambda obs, deterministic=False: (seen.append(obs["features.gripper"].copy()),
                                                            act(obs, deterministic))[1]
    actor = Actor(env, agent, None, seed=3)
    stored = []
    actor.run_episode(1, 0, stored.append, explore=False)
    maps = [t.observation["features.gripper"] for t in stored]  # [K, 320, 4, 4] per step
    assert len(seen) == len(maps) == 5
    for t, policy_input in enumerate(seen):
        want = np.concatenate([maps[max(t - back, 0)][0] for back in (2, 1, 0)], 0)  # unshifted view, oldest first
        np.testing.assert_array_equal(policy_input, want.astype(np.float32))
    # the buffer built as the learner builds it gives the same stacks (in one of its views) for the same frames
    spec = {k: (v.shape, v.dtype) for k, v in stored[0].observation.items()}
    buf = ReplayBuffer(50, spec, agent.config.full_action_dim, info_keys=("grasp_penalty",), frame_stack=3,
                       stack_keys=("features.gripper",), view_keys=("features.gripper",), rng=0)
    for tr in stored:
        buf.add(tr)
    b = buf.sample(200)
    steps = [next(i for i, tr in enumerate(stored) if np.array_equal(tr.observation["state"], s))
             for s in b["observations"]["state"].numpy()]
    for row, t in zip(b["observations"]["features.gripper"].numpy(), steps):
        assert any(np.array_equal(row, np.concatenate([maps[max(t - back, 0)][v] for back in (2, 1, 0)], 0))
                   for v in range(2))
    # a new episode starts its own stack: its first frame three times
    seen.clear()
    actor.run_episode(2, 0, None, explore=False)
    first = seen[0].reshape(3, 320, 4, 4)
    assert np.array_equal(first[0], first[2]) and not np.array_equal(seen[0], seen[-1])
    env.close()


def test_a_run_with_stacked_frames_trains_and_its_checkpoint_keeps_the_setting(tmp_path):
    """The conv encoder takes the k frames as 3k channels (DrQ-v2); the learner's buffers stack by index (one frame
    stored per step) and a checkpoint brings the setting back."""
    args = ["--policy.type=drqv2", "--policy.encoder=conv", "--policy.cached_features=false",
            "--policy.backbone_trim_head=false", "--policy.frame_stack=3", "--policy.conv_channels=[8, 8]",
            "--policy.conv_strides=[2, 2]", "--policy.hidden_dims=[32, 32]",
            "--policy.discrete_critic_hidden_dims=[32, 32]", "--env.image_size=32", "--train.batch_size=16",
            "--train.num_demos=1", "--train.training_starts=10", "--train.eval_every=0", "--train.checkpoint_every=0",
            "--train.log_every=1000", "--train.torch_threads=1", "--buffers.online_capacity=1000",
            "--buffers.demo_capacity=1000", "--run_name=stack", f"--output_dir={tmp_path}",
            "--train.total_env_steps=40"]
    res = train(load_config(TrainConfig, "configs/sim_grasp.json", args), log=lambda s: None)
    assert res.learner_updates > 0
    buf = ReplayBuffer.open(res.run_dir / "buffers" / "online")
    assert buf.frame_stack == 3 and buf.stack_keys == ("pixels.gripper",)
    assert buf.spec["pixels.gripper"].shape == (32, 32, 3)  # one frame stored per step
    assert buf.sample(4)["observations"]["pixels.gripper"].shape == (4, 9, 32, 32)
    buf.close()
    cfg = load_config(TrainConfig, str(res.last_checkpoint / "pretrained_model" / "train_config.json"), [])
    assert cfg.policy.frame_stack == 3
    # a run that reads one frame cannot start from it (the heads' inputs differ): refused, naming the field
    other = make_agent(dataclasses.replace(cfg.policy, frame_stack=1))
    with pytest.raises(ValueError, match=r"policy.frame_stack: 3 there, 1 here"):
        load_initial_policy(other, res.run_dir)
