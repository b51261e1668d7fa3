"""The privileged auxiliary loss: in the simulation the cube's pose rides along with the camera images
(env.privileged_state) as the target of a head trained with the critic; the policy never reads it, and a run
that starts from such a policy (train.init_policy) drops the head."""

import numpy as np
import pytest
import torch

from hilserl.agents import SACAgent, SACConfig
from hilserl.agents.losses import privileged_loss
from hilserl.config import ConfigError, load_config
from hilserl.envs import env_spaces
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.train.build import policy_config
from hilserl.train.checkpoint import load_initial_policy
from hilserl.train.config import TrainConfig

PIXELS = dict(state_dim=3, action_dim=2, discrete_gripper=True, cameras=("gripper",), image_size=(32, 32),
              encoder="conv", conv_channels=(8, 8), conv_strides=(2, 2), hidden_dims=(32, 32),
              discrete_critic_hidden_dims=(16, 16), image_feature_dim=16, state_feature_dim=8,
              mixed_precision=False)


def test_the_simulation_gives_the_cube_pose_beside_the_images():
    env = SO101GraspCubeEnv(GraspCubeConfig(image_size=32, privileged_state=True))
    try:
        assert env.observation_space["environment_state"].shape == (6,)
        obs, info = env.reset(seed=3)
        assert obs["pixels"]["gripper"].shape == (32, 32, 3)
        pose = obs["environment_state"]
        np.testing.assert_allclose(pose[:3], info["cube_pos"], atol=1e-6)
        np.testing.assert_allclose(pose[3:], info["cube_pos"] - info["ee_pos"], atol=1e-6)
        obs, *_ , info = env.step(np.array([1.0, 0.0, 0.0, 1.0], np.float32))
        np.testing.assert_allclose(obs["environment_state"][3:], info["cube_pos"] - info["ee_pos"], atol=1e-6)
    finally:
        env.close()
    plain = SO101GraspCubeEnv(GraspCubeConfig(image_size=32))
    try:
        assert "environment_state" not in plain.observation_space.spaces  # off by default
    finally:
        plain.close()
    state = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state", privileged_state=True))  # the pose is an input there
    try:
        assert state.observation_space["environment_state"].shape == (6,) and "pixels" not in state.observation_space
    finally:
        state.close()


def _cfg(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, "configs/sim_grasp.json", ["--env.image_size=32", *overrides])


def test_the_pose_is_a_target_never_an_input_and_both_settings_go_together():
    cfg = _cfg("--env.privileged_state=true", "--policy.privileged_aux_weight=1.0")
    obs_space, act_space = env_spaces(cfg.env)
    policy = policy_config(cfg, obs_space, act_space)
    assert policy.privileged_dim == 6 and policy.environment_state_dim == 0
    with pytest.raises(ConfigError, match="policy.privileged_aux_weight"):
        cfg = _cfg("--policy.privileged_aux_weight=1.0")  # no pose to predict: refused, not silently ignored
        policy_config(cfg, *env_spaces(cfg.env))
    with pytest.raises(ConfigError, match="env.privileged_state"):
        cfg = _cfg("--env.privileged_state=true")  # a pose nobody uses
        policy_config(cfg, *env_spaces(cfg.env))
    state = load_config(TrainConfig, "configs/sim_grasp_state.json", [])
    policy = policy_config(state, *env_spaces(state.env))  # without cameras the cube pose stays an input
    assert policy.environment_state_dim == 6 and policy.privileged_dim == 0


def _batch(b: int, seed: int) -> dict:
    """Images whose bright square sits where the 'cube' is: the pose is readable from the pixels alone."""
    g = torch.Generator().manual_seed(seed)

    def obs():
        pos = torch.randint(2, 26, (b, 2), generator=g)
        img = torch.zeros(b, 3, 32, 32, dtype=torch.uint8)
        for i, (r, c) in enumerate(pos.tolist()):
            img[i, :, r:r + 4, c:c + 4] = 255
        pose = torch.zeros(b, 6)
        pose[:, 3:5] = (pos.float() - 14) / 400.0  # metres: ±3 cm
        return {"state": torch.randn(b, 3, generator=g), "pixels.gripper": img, "environment_state": pose}

    actions = torch.rand(b, 3, generator=g) * 2 - 1
    actions[:, -1] = torch.randint(0, 3, (b,), generator=g).float()
    return {"observations": obs(), "next_observations": obs(), "actions": actions,
            "rewards": torch.zeros(b), "terminals": torch.zeros(b), "is_intervention": torch.zeros(b)}


def _pose_error(agent: SACAgent, batch: dict) -> float:
    with torch.no_grad():
        prep = agent.prepare_batch(batch)
        return privileged_loss(agent.privileged_head(agent.encoder(prep["obs"], dropout=False)),
                               prep["obs"]["environment_state"]).item()


def test_the_head_learns_the_pose_from_the_images_and_the_policy_ignores_it():
    torch.manual_seed(0)
    agent = SACAgent(SACConfig(**PIXELS, privileged_dim=6, privileged_aux_weight=10.0, augmentation_pad=0))
    untrained = SACAgent(SACConfig(**PIXELS, privileged_dim=6, privileged_aux_weight=0.0, augmentation_pad=0))
    held_out = _batch(64, seed=99)
    before = _pose_error(agent, held_out)
    for step in range(300):
        metrics = agent.update(_batch(32, seed=step))
    assert "privileged_loss" in metrics
    after = _pose_error(agent, held_out)
    assert after < 0.25 * before, (before, after)  # held-out images: it reads the square's place
    head = {k: v.clone() for k, v in untrained.privileged_head.state_dict().items()}
    for step in range(5):
        assert "privileged_loss" not in untrained.update(_batch(32, seed=step))
    assert all(torch.equal(v, untrained.privileged_head.state_dict()[k]) for k, v in head.items())  # weight 0: off

    obs = {k: v[:4] for k, v in held_out["observations"].items()}
    other = dict(obs, environment_state=torch.randn(4, 6) * 10)
    np.testing.assert_array_equal(agent.select_action(obs, deterministic=True),
                                  agent.select_action(other, deterministic=True))


def test_a_run_starting_from_the_policy_drops_the_head(tmp_path):
    torch.manual_seed(1)
    pretrained = SACAgent(SACConfig(**PIXELS, privileged_dim=6, privileged_aux_weight=1.0))
    pretrained.save(tmp_path / "with_head")
    plain = SACAgent(SACConfig(**PIXELS))  # e.g. fine-tuning on the real arm: no pose there
    load_initial_policy(plain, tmp_path / "with_head")
    assert not any(k.startswith("privileged_head.") for k in plain.state_dict())
    for name, value in plain.state_dict().items():
        assert torch.equal(value, pretrained.state_dict()[name]), name
    plain.save(tmp_path / "without_head")
    again = SACAgent(SACConfig(**PIXELS, privileged_dim=6, privileged_aux_weight=1.0))
    fresh_head = {k: v.clone() for k, v in again.privileged_head.state_dict().items()}
    load_initial_policy(again, tmp_path / "without_head")  # a head of its own, fresh
    assert torch.equal(again.actor.state_dict()[next(iter(again.actor.state_dict()))],
                       plain.actor.state_dict()[next(iter(plain.actor.state_dict()))])
    assert all(torch.equal(v, again.privileged_head.state_dict()[k]) for k, v in fresh_head.items())


# ------------------------------------------------------------------------------------------ the asymmetric critic
def _pose_reward_batch(b: int, seed: int) -> dict:
    """Images of noise, a reward the pose alone decides (how far the cube lies to the left, ±0.5): only a critic
    that reads the pose can fit it."""
    g = torch.Generator().manual_seed(seed)

    def obs():
        pose = (torch.rand(b, 6, generator=g) - 0.5) * 0.1  # metres: ±5 cm
        img = torch.randint(0, 256, (b, 3, 32, 32), generator=g, dtype=torch.uint8)
        return {"state": torch.randn(b, 3, generator=g), "pixels.gripper": img, "environment_state": pose}

    batch = {"observations": obs(), "next_observations": obs()}
    actions = torch.rand(b, 3, generator=g) * 2 - 1
    actions[:, -1] = torch.randint(0, 3, (b,), generator=g).float()
    rewards = batch["observations"]["environment_state"][:, 3] * 10.0
    return {**batch, "actions": actions, "rewards": rewards, "terminals": torch.ones(b),
            "is_intervention": torch.zeros(b)}


def test_the_asymmetric_critic_values_the_pose_and_the_acting_parts_never_see_it():
    torch.manual_seed(2)
    asym = SACAgent(SACConfig(**PIXELS, privileged_dim=6, asymmetric_critic=True, augmentation_pad=0))
    plain = SACAgent(SACConfig(**PIXELS, privileged_dim=6, privileged_aux_weight=1.0, augmentation_pad=0))
    for step in range(200):
        batch = _pose_reward_batch(32, seed=step)
        asym.update_critic(batch)
        plain.update_critic(batch)
    held_out = _pose_reward_batch(256, seed=1000)  # terminal transitions: Q should be the reward itself

    def error(agent: SACAgent) -> float:
        with torch.no_grad():
            prep = agent.prepare_batch(held_out)
            q = agent.critic(agent.encoder(prep["obs"], dropout=False), prep["actions"], agent._privileged(prep["obs"]))
            return (q.mean(0) - prep["rewards"]).pow(2).mean().item()

    variance = held_out["rewards"].var().item()  # about 1/12
    assert error(asym) < 0.4 * variance and error(plain) > 0.75 * variance, (error(asym), error(plain), variance)
    metrics = asym.update(_pose_reward_batch(32, seed=999))
    assert np.isfinite(metrics["actor_loss"])  # the actor's loss reads Q with the pose

    obs = {k: v[:4] for k, v in _pose_reward_batch(4, seed=5)["observations"].items()}
    other = dict(obs, environment_state=torch.randn(4, 6))
    np.testing.assert_array_equal(asym.select_action(obs, deterministic=True),  # gripper choice included
                                  asym.select_action(other, deterministic=True))
    with pytest.raises(ValueError, match="asymmetric_critic"):
        SACAgent(SACConfig(**PIXELS, asymmetric_critic=True))  # no pose to read


def test_the_asymmetric_critic_needs_the_pose_and_a_fine_tune_without_it_starts_a_fresh_critic(tmp_path):
    cfg = _cfg("--env.privileged_state=true", "--policy.asymmetric_critic=true")  # the critic alone uses the pose
    assert policy_config(cfg, *env_spaces(cfg.env)).privileged_dim == 6
    with pytest.raises(ConfigError, match="policy.asymmetric_critic"):
        cfg = _cfg("--policy.asymmetric_critic=true")
        policy_config(cfg, *env_spaces(cfg.env))

    torch.manual_seed(3)
    pretrained = SACAgent(SACConfig(**PIXELS, privileged_dim=6, privileged_aux_weight=1.0, asymmetric_critic=True))
    pretrained.save(tmp_path / "asym")
    plain = SACAgent(SACConfig(**PIXELS))  # the real arm: no pose
    with pytest.raises(ValueError, match="init_critic=false"):
        load_initial_policy(plain, tmp_path / "asym")
    fresh = {k: v.clone() for k, v in plain.critic.state_dict().items()}
    load_initial_policy(plain, tmp_path / "asym", with_critic=False)
    assert all(torch.equal(v, plain.critic.state_dict()[k]) for k, v in fresh.items())
    for part in ("actor", "discrete_critic", "encoder"):
        for name, value in getattr(plain, part).state_dict().items():
            assert torch.equal(value, getattr(pretrained, part).state_dict()[name]), (part, name)
