"""DrQ-v2 (policy.type drqv2): noise schedule, acting, the critic target and actor loss, learning, save/load,
the weights an actor gets, init_policy, the config switch and a tiny end-to-end run."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

import hilserl.agents.drqv2 as drqv2
from hilserl.agents import DrQV2Agent, DrQV2Config, SACAgent, SACConfig, load_agent, make_agent
from hilserl.agents.exploration import linear_schedule, noisy_action
from hilserl.agents.losses import deterministic_actor_loss
from hilserl.config import ConfigError, load_config
from hilserl.distributed import codec
from hilserl.train.actor import policy_weights
from hilserl.train.checkpoint import load_initial_policy
from hilserl.train.config import TrainConfig

TINY = dict(hidden_dims=(32, 32), discrete_critic_hidden_dims=(16, 16), state_feature_dim=8, mixed_precision=False)


def config(**kw) -> DrQV2Config:
    return DrQV2Config(**{"state_dim": 4, "action_dim": 2, **TINY, **kw})


def batch(cfg, b: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(b, cfg.full_action_dim, generator=g) * 2 - 1
    if cfg.discrete_gripper:
        actions[:, -1] = torch.randint(0, 3, (b,), generator=g).float()
    return {"observations": {"state": torch.randn(b, cfg.state_dim, generator=g)},
            "next_observations": {"state": torch.randn(b, cfg.state_dim, generator=g)},
            "actions": actions, "rewards": torch.randn(b, generator=g),
            "terminals": (torch.rand(b, generator=g) < 0.2).float()}


def zero_mean(agent: DrQV2Agent) -> None:
    """The actor's mean action becomes 0 everywhere (its output layer zeroed)."""
    with torch.no_grad():
        agent.actor.mean.weight.zero_()
        agent.actor.mean.bias.zero_()


# --------------------------------------------------------------------------------------------- noise schedule
def test_noise_schedule_values():
    assert linear_schedule(1.0, 0.1, 2000, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 2000, 500) == pytest.approx(0.775)
    assert linear_schedule(1.0, 0.1, 2000, 1000) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 2000, 2000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 2000, 10_000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0, 0) == pytest.approx(0.1)  # no schedule: the final std from the start
    agent = DrQV2Agent(config(noise_std_start=1.0, noise_std_end=0.2, noise_std_steps=4))
    stds = []
    for i in range(6):
        stds.append(agent.noise_std)
        metrics = agent.update(batch(agent.config, seed=i))
        assert metrics["noise_std"] == pytest.approx(stds[-1])  # the update used the std it started with
    assert stds == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2])
    assert int(agent.exploration.step) == agent.num_actor_updates == 6


def test_defaults_are_drqv2s():
    cfg = DrQV2Config()
    assert (cfg.type, cfg.tau, cfg.n_step, cfg.actor_q, cfg.utd_ratio) == ("drqv2", 0.01, 3, "min", 1)
    assert (cfg.noise_std_start, cfg.noise_std_end, cfg.noise_clip) == (1.0, 0.1, 0.3)
    with pytest.raises(ValueError, match="noise_clip"):
        DrQV2Config(noise_clip=0.0)
    with pytest.raises(ValueError, match="type"):
        SACConfig(type="drqv2")  # the type picks the config class, never the other way round
    with pytest.raises(TypeError, match="DrQV2Config"):
        DrQV2Agent(SACConfig(state_dim=4, action_dim=2))


# --------------------------------------------------------------------------------------------- acting
def test_deterministic_action_is_the_actor_mean_and_greedy_gripper():
    torch.manual_seed(0)
    agent = DrQV2Agent(config(discrete_gripper=True))
    obs = torch.randn(5, 4)
    action = agent.select_action({"state": obs.numpy()}, deterministic=True)
    agent.eval()
    with torch.no_grad():
        emb = agent.encoder.encode({"state": obs})
        mean = agent.actor(emb)
        gripper = agent.discrete_critic(emb).mean(0).argmax(-1)
    np.testing.assert_allclose(action[:, :2], mean.numpy(), atol=1e-6)
    np.testing.assert_array_equal(action[:, 2], gripper.float().numpy())
    again = agent.select_action({"state": obs.numpy()}, deterministic=True)
    np.testing.assert_array_equal(action, again)


@pytest.mark.parametrize("step, std", [(0, 0.5), (10, 0.3), (20, 0.1)])
def test_exploration_noise_follows_the_schedule(step, std):
    torch.manual_seed(0)
    agent = DrQV2Agent(config(noise_std_start=0.5, noise_std_end=0.1, noise_std_steps=20))
    zero_mean(agent)
    agent.exploration.step.fill_(step)
    obs = np.zeros((20_000, 4), np.float32)
    actions = agent.select_action({"state": obs})
    assert actions.mean() == pytest.approx(0.0, abs=0.01)
    clamped = np.clip(np.random.default_rng(1).normal(0.0, std, 1_000_000), -1, 1).std()  # N(0, std^2) in [-1, 1]
    assert actions.std() == pytest.approx(clamped, rel=0.03)
    assert np.abs(actions).max() > 0.3  # acting noise is not clipped (only the target's and the actor loss's are)
    assert np.abs(actions).max() <= 1.0


def test_noisy_action_clips_noise_and_passes_the_gradient_through_the_clamp():
    mean = torch.tensor([[0.0, 0.95, -0.95]] * 4000, requires_grad=True)
    a = noisy_action(mean, std=5.0, clip=0.3, generator=torch.Generator().manual_seed(0))
    assert ((a - mean).abs() <= 0.3 + 1e-6).all() and (a.abs() <= 1.0).all()
    assert ((a[:, 0] - mean[:, 0]).abs() > 0.299).float().mean() > 0.9  # std 5: nearly every draw is clipped
    a.sum().backward()
    assert torch.equal(mean.grad, torch.ones_like(mean))  # straight-through: clamped rows still get gradient


# --------------------------------------------------------------------------------------------- losses
def test_critic_target_uses_clipped_noise_and_the_min_of_the_target_critics():
    torch.manual_seed(0)
    agent = DrQV2Agent(config(noise_std_start=10.0, noise_std_end=10.0, critic_ensemble_size=2))
    b = batch(agent.config)
    prep = agent.prepare_batch(b)
    seen = {}
    hook = agent.critic_target.register_forward_hook(
        lambda m, inp, out: seen.update(features=inp[0], actions=inp[1], q=out))
    with torch.no_grad():
        next_emb = agent.encoder(prep["next_obs"], dropout=False)
        target = agent._td_target(prep, next_emb)
        mean = agent.actor(next_emb)
    hook.remove()
    noise = seen["actions"] - mean
    assert (noise.abs() <= 0.3 + 1e-6).all(), "the target's noise must be clipped to +-noise_clip"
    assert (noise.abs() > 0.29).float().mean() > 0.5  # std 10: most draws hit the clip (or the action bound)
    assert seen["q"].shape == (2, 64)
    expected = prep["rewards"] + agent.config.discount * (1 - prep["terminals"]) * seen["q"].min(dim=0).values
    torch.testing.assert_close(target, expected)
    # n-step batches bootstrap with their own discount per row
    prep["discounts"] = torch.full((64,), 0.5)
    torch.manual_seed(1)
    with torch.no_grad():
        t2 = agent._td_target(prep, next_emb)
    torch.manual_seed(1)
    with torch.no_grad():
        q2 = agent.critic_target(next_emb, noisy_action(agent.actor(next_emb), 10.0, 0.3))
    torch.testing.assert_close(t2, prep["rewards"] + 0.5 * (1 - prep["terminals"]) * q2.min(dim=0).values)


def test_actor_loss_is_minus_min_q_of_a_clipped_noisy_action(monkeypatch):
    q = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    assert deterministic_actor_loss(q).item() == pytest.approx(-(1.0 + 2.0) / 2)
    assert deterministic_actor_loss(q, "mean").item() == pytest.approx(-(2.0 + 3.5) / 2)
    torch.manual_seed(0)
    agent = DrQV2Agent(config(noise_std_start=10.0, noise_std_end=10.0))
    seen = {}
    real = drqv2.deterministic_actor_loss
    monkeypatch.setattr(drqv2, "deterministic_actor_loss", lambda q, reduce: (seen.update(q=q, reduce=reduce),
                                                                               real(q, reduce))[1])
    hook = agent.critic.register_forward_hook(lambda m, inp, out: seen.update(actions=inp[1], emb=inp[0]))
    critic0 = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    encoder0 = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
    actor0 = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    with torch.no_grad():
        emb = agent.encoder(agent.prepare_batch(batch(agent.config))["obs"])
    metrics = agent.actor_step(emb)
    hook.remove()
    assert seen["reduce"] == "min" and seen["q"].shape == (2, 64)
    assert metrics["actor_loss"] == pytest.approx(-seen["q"].min(0).values.mean().item(), rel=1e-5)
    with torch.no_grad():
        mean = DrQV2Agent.__dict__["_continuous_action"](agent, emb, True)  # noqa: the mean before the step
    assert ((seen["actions"] - mean).abs() <= 0.3 + 0.05).all()  # noisy, clipped (the step moved the mean a bit)
    assert any(not torch.equal(actor0[k], v) for k, v in agent.actor.state_dict().items())
    assert all(torch.equal(critic0[k], v) for k, v in agent.critic.state_dict().items())
    assert all(torch.equal(encoder0[k], v) for k, v in agent.encoder.state_dict().items())


def test_target_critics_follow_with_tau():
    torch.manual_seed(0)
    agent = DrQV2Agent(config())
    target0 = [p.clone() for p in agent.critic_target.parameters()]
    agent.update(batch(agent.config))
    for t0, t, o in zip(target0, agent.critic_target.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(t, 0.99 * t0 + 0.01 * o)


# --------------------------------------------------------------------------------------------- learning
def test_drqv2_learns_a_contextual_bandit():
    """One step per episode: the observation is a goal g in [-1, 1]^2, the reward -|a - g|^2, then the episode ends.
    The deterministic policy must learn a ~ g (a random policy misses by ~0.8 on average)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agent = DrQV2Agent(config(state_dim=2, hidden_dims=(64, 64), state_feature_dim=32, noise_std_start=0.5,
                              noise_std_end=0.1, noise_std_steps=500, n_step=1))
    n = 2500  # about 14 s; the distance was 0.07-0.11 on seeds 0-2 (1,500 steps: 0.13-0.23)
    goals = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    actions = np.zeros((n, 2), np.float32)
    for step in range(n):
        actions[step] = agent.select_action({"state": goals[step]})
        if step >= 100:
            idx = rng.integers(0, step + 1, 128)
            g, a = torch.from_numpy(goals[idx]), torch.from_numpy(actions[idx])
            agent.update({"observations": {"state": g}, "next_observations": {"state": g}, "actions": a,
                          "rewards": -((a - g) ** 2).sum(-1), "terminals": torch.ones(128)})
    test = rng.uniform(-0.9, 0.9, (200, 2)).astype(np.float32)
    learned = agent.select_action({"state": test}, deterministic=True)
    error = float(np.linalg.norm(learned - test, axis=1).mean())
    random_error = float(np.linalg.norm(rng.uniform(-1, 1, (200, 2)) - test, axis=1).mean())
    print(f"mean distance to the goal: learned {error:.3f}, random {random_error:.3f}")
    assert error < min(0.2, 0.2 * random_error)  # within 0.2 of the goal and 80% of the way from random


# --------------------------------------------------------------------------------------------- save / load
def test_save_load_roundtrip_identical_and_pickle_free(tmp_path, monkeypatch):
    torch.manual_seed(0)
    agent = DrQV2Agent(config(discrete_gripper=True))
    for i in range(3):
        agent.update(batch(agent.config, seed=i))

    def forbidden(*a, **k):
        raise AssertionError("pickle used")

    for mod, name in ((pickle, "dump"), (pickle, "dumps"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(mod, name, forbidden)
    agent.save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["agent.json", "model.safetensors", "optimizer.safetensors"]
    meta = json.loads((tmp_path / "agent.json").read_text())
    assert meta["format"] == "hilserl.drqv2/1" and meta["config"]["type"] == "drqv2"
    loaded = load_agent(tmp_path)
    assert isinstance(loaded, DrQV2Agent) and loaded.config == agent.config
    for k, v in agent.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert int(loaded.exploration.step) == 3 and loaded.noise_std == agent.noise_std
    assert loaded.num_actor_updates == agent.num_actor_updates == 3
    assert loaded.optimizers["actor"].state_dict()["state"]  # Adam state restored
    obs = {"state": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)}
    np.testing.assert_array_equal(loaded.select_action(obs, True), agent.select_action(obs, True))


def test_actor_gets_the_exploration_step_with_the_policy_weights():
    from hilserl.train.actor import Actor

    torch.manual_seed(0)
    learner_agent = DrQV2Agent(config())
    for i in range(4):
        learner_agent.update(batch(learner_agent.config, seed=i))
    weights = policy_weights(learner_agent)
    assert "exploration.step" in weights and not any(k.startswith("critic") for k in weights)
    spec = codec.weights_spec(weights)
    received = codec.decode_weights(codec.encode_weights(weights, 4, 0.0), spec, 1 << 24)  # over the wire
    actor_agent = DrQV2Agent(config())
    actor = Actor.__new__(Actor)  # only the weights seam
    actor.agent = actor_agent
    actor.load_policy_weights(received, 4)
    assert int(actor_agent.exploration.step) == 4 and actor_agent.noise_std == learner_agent.noise_std
    obs = {"state": np.zeros((2, 4), np.float32)}
    np.testing.assert_array_equal(actor_agent.select_action(obs, True), learner_agent.select_action(obs, True))


def test_init_policy_copies_a_drqv2_policy_and_refuses_the_other_type(tmp_path):
    torch.manual_seed(0)
    source = DrQV2Agent(config(discrete_gripper=True))
    for i in range(2):
        source.update(batch(source.config, seed=i))
    source.save(tmp_path / "drq" / "pretrained_model")
    fresh = make_agent(config(discrete_gripper=True))
    assert isinstance(fresh, DrQV2Agent)
    load_initial_policy(fresh, tmp_path / "drq")
    for k, v in source.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert int(fresh.exploration.step) == 2  # the pretrained policy's exploration level, like SAC's temperature
    assert fresh.num_actor_updates == 0 and all(not o.state for o in fresh.optimizers.values())

    SACAgent(SACConfig(state_dim=4, action_dim=2, discrete_gripper=True, **TINY)).save(tmp_path / "sac")
    with pytest.raises(ValueError, match="policy.type 'sac' policy and this run trains policy.type 'drqv2'"):
        load_initial_policy(make_agent(config(discrete_gripper=True)), tmp_path / "sac")
    with pytest.raises(ValueError, match="policy.type 'drqv2' policy and this run trains policy.type 'sac'"):
        load_initial_policy(make_agent(SACConfig(state_dim=4, action_dim=2, discrete_gripper=True, **TINY)),
                            tmp_path / "drq")


# --------------------------------------------------------------------------------------------- config
def test_policy_type_switches_the_config_and_keeps_the_pixel_defaults():
    sac = load_config(TrainConfig, "configs/sim_grasp.json", [])
    drq = load_config(TrainConfig, "configs/sim_grasp.json", ["--policy.type=drqv2", "--policy.noise_std_steps=500"])
    assert type(sac.policy) is SACConfig and type(drq.policy) is DrQV2Config
    for key in ("encoder", "backbone_trim_head", "cached_features", "critic_trunk_dim", "action_smoothness",
                "utd_ratio", "discount"):  # the file's settings (and the pixel defaults) hold for both
        assert getattr(drq.policy, key) == getattr(sac.policy, key), key
    assert (drq.policy.tau, drq.policy.n_step, drq.policy.actor_q, drq.policy.noise_std_steps) == (0.01, 3, "min", 500)
    bare = load_config(TrainConfig, None, ["--policy.type=drqv2"])
    assert bare.policy.critic_trunk_dim == 50 and bare.policy.cached_features and bare.policy.utd_ratio == 1
    with pytest.raises(ConfigError, match="policy.noise_clip: a DrQ-v2 setting"):
        load_config(TrainConfig, None, ["--policy.noise_clip=0.2"])
    with pytest.raises(ConfigError, match="policy.type: expected one of"):
        load_config(TrainConfig, None, ["--policy.type=ppo"])


# --------------------------------------------------------------------------------------------- end to end
E2E = ["--env.obs_type=state", "--policy.type=drqv2", "--policy.hidden_dims=[32, 32]",
       "--policy.discrete_critic_hidden_dims=[32, 32]", "--policy.noise_std_steps=100", "--train.batch_size=32",
       "--train.num_demos=2", "--train.training_starts=20", "--train.checkpoint_every=0", "--train.log_every=20",
       "--train.torch_threads=1", "--buffers.online_capacity=5000", "--buffers.demo_capacity=2000"]


def test_train_evaluate_resume_and_init_policy_end_to_end(tmp_path):
    from rich.console import Console

    from hilserl.cli import run_eval
    from hilserl.train.loop import train

    def cfg(steps, name, *extra):
        return load_config(TrainConfig, None, [*E2E, f"--output_dir={tmp_path}", f"--run_name={name}",
                                               f"--train.total_env_steps={steps}", *extra])

    lines = []
    res = train(cfg(120, "drq", "--train.eval_every=100", "--train.eval_episodes=2"), log=lines.append)
    assert res.evals and res.learner_updates > 0 and res.best_model is not None
    model = res.last_checkpoint / "pretrained_model"
    assert json.loads((model / "agent.json").read_text())["format"] == "hilserl.drqv2/1"
    agent = load_agent(model)
    assert isinstance(agent, DrQV2Agent) and int(agent.exploration.step) == res.learner_updates
    assert agent.config.n_step == 3 and any(line.startswith("Step 20:") and "noise_std=" in line for line in lines)

    res2 = train(cfg(res.env_steps + 50, "drq"), resume=True, log=lines.append)
    assert res2.env_steps > res.env_steps and res2.learner_updates > res.learner_updates
    assert int(load_agent(res2.last_checkpoint / "pretrained_model").exploration.step) == res2.learner_updates

    res3 = train(cfg(60, "from_drq", f"--train.init_policy={res2.run_dir}"), log=lines.append)
    assert any(line.startswith("policy initialised from") for line in lines)
    assert isinstance(load_agent(res3.last_checkpoint / "pretrained_model"), DrQV2Agent)
    with pytest.raises(ValueError, match="policy.type"):
        train(load_config(TrainConfig, None, [*[o for o in E2E if "drqv2" not in o and "noise" not in o],
                                              f"--output_dir={tmp_path}", "--run_name=sac_from_drq",
                                              "--train.total_env_steps=40", f"--train.init_policy={res2.run_dir}"]),
              log=lines.append)

    summary = run_eval(str(res2.run_dir), 2, tmp_path / "eval", False, 0, 0,
                       Console(file=open(tmp_path / "eval.txt", "w")))
    assert summary["episodes"] == 2
