"""policy.average_rate: the running average of the acting weights is what a run evaluates, keeps and deploys; the
live weights still collect the data and learn, exactly as without it."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hilserl.agents import DrQV2Agent, DrQV2Config, SACAgent, SACConfig, load_agent, load_policy
from hilserl.config import load_config
from hilserl.train.actor import Actor
from hilserl.train.build import make_env
from hilserl.train.checkpoint import load_initial_policy
from hilserl.train.config import TrainConfig
from hilserl.train.evaluate import evaluate
from hilserl.train.loop import train
from test_sac import TINY, make_batch

SMALL = dict(TINY, state_dim=5, action_dim=3, discrete_gripper=True)


def _acting(agent):
    return {k: v.clone() for k, v in agent.state_dict().items()
            if k.startswith(("encoder.", "actor.", "discrete_critic.")) and v.is_floating_point()}


@pytest.mark.parametrize("kind", ["sac", "drqv2"])
def test_the_average_follows_the_live_weights_at_its_rate(kind):
    torch.manual_seed(0)
    agent = SACAgent(SACConfig(**SMALL, average_rate=0.25)) if kind == "sac" else \
        DrQV2Agent(DrQV2Config(**SMALL, average_rate=0.25))
    names = agent.policy_average.names
    assert any(n.startswith("actor.") for n in names) and any(n.startswith("discrete_critic.") for n in names)
    assert any(n.startswith("encoder.") for n in names)
    assert not any(n.startswith(("critic.", "critic_target.", "exploration.", "temperature")) for n in names)
    expected = _acting(agent)  # the average starts at the initial weights
    assert expected.keys() == set(names)
    for seed in range(3):
        agent.update([make_batch(agent.config, seed=2 * seed), make_batch(agent.config, seed=2 * seed + 1)])
        live = _acting(agent)
        expected = {k: v + 0.25 * (live[k] - v) for k, v in expected.items()}
        averaged = agent.policy_average.weights()
        for k in names:
            torch.testing.assert_close(averaged[k], expected[k], rtol=1e-5, atol=1e-6, msg=k)
    assert any(not torch.equal(averaged[k], live[k]) for k in names)  # an average, not a copy


def test_saved_with_the_model_and_loaded_for_acting_in_the_live_weights_place(tmp_path):
    torch.manual_seed(0)
    agent = SACAgent(SACConfig(**SMALL, average_rate=0.1))
    for seed in range(3):
        agent.update([make_batch(agent.config, seed=seed)] * 2)
    agent.save(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert sum(k.startswith("policy_average.") for k in saved) == len(agent.policy_average.names)

    resumed = load_agent(tmp_path)  # a resumed run: live weights and the average as they were
    for k, v in agent.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    deployed = load_policy(tmp_path)  # evaluated and deployed: the average acts
    averaged = agent.policy_average.weights()
    for k in agent.policy_average.names:
        assert torch.equal(deployed.state_dict()[k], averaged[k]), k
    first = next(iter(agent.critic.state_dict()))
    assert torch.equal(deployed.critic.state_dict()[first], agent.critic.state_dict()[first])  # critics: live
    obs = {"state": torch.randn(5)}
    assert not torch.equal(torch.as_tensor(deployed.select_action(obs, deterministic=True)),
                           torch.as_tensor(resumed.select_action(obs, deterministic=True)))

    plain = SACAgent(SACConfig(**SMALL))  # without an average the deployed policy is the live one
    plain.save(tmp_path / "plain")
    deployed_plain = load_policy(tmp_path / "plain")
    assert deployed_plain.policy_average is None
    for k, v in plain.state_dict().items():
        assert torch.equal(deployed_plain.state_dict()[k], v), k


def test_an_initial_policy_brings_its_average_or_starts_one(tmp_path):
    torch.manual_seed(0)
    source = SACAgent(SACConfig(**SMALL, average_rate=0.1))
    for seed in range(3):
        source.update([make_batch(source.config, seed=seed)] * 2)
    source.save(tmp_path / "averaged")
    SACAgent(SACConfig(**SMALL)).save(tmp_path / "plain")

    both = SACAgent(SACConfig(**SMALL, average_rate=0.1))
    load_initial_policy(both, tmp_path / "averaged")  # carries over: its first evaluation scores the deployed policy
    for k, v in source.state_dict().items():
        assert torch.equal(both.state_dict()[k], v), k

    plain = SACAgent(SACConfig(**SMALL))
    load_initial_policy(plain, tmp_path / "averaged")  # the new run keeps none: the live weights, nothing else
    assert plain.policy_average is None
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in source.state_dict().items()
               if not k.startswith("policy_average."))

    fresh = SACAgent(SACConfig(**SMALL, average_rate=0.1))
    load_initial_policy(fresh, tmp_path / "plain")  # the old run kept none: the average starts at its weights
    start = SACAgent.load(tmp_path / "plain").state_dict()
    averaged = fresh.policy_average.weights()
    for k in fresh.policy_average.names:
        assert torch.equal(averaged[k], start[k]) and torch.equal(fresh.state_dict()[k], start[k]), k


TINY_RUN = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
            "--policy.mixed_precision=false", "--train.batch_size=32", "--train.num_demos=2",
            "--train.training_starts=20", "--train.eval_every=60", "--train.eval_episodes=2",
            "--train.checkpoint_every=0", "--train.torch_threads=1", "--train.total_env_steps=150",
            "--buffers.on_disk=false", "--buffers.online_capacity=2000", "--buffers.demo_capacity=1000"]


def test_training_is_unchanged_and_the_evaluations_score_the_average(tmp_path):
    runs = {}
    for name, rate in (("live", 0.0), ("averaged", 0.05)):
        cfg = load_config(TrainConfig, None, [*TINY_RUN, f"--output_dir={tmp_path}", f"--run_name={name}",
                                              f"--policy.average_rate={rate}"])
        runs[name] = (cfg, train(cfg, log=lambda line: None))
    (_, live), (cfg, averaged) = runs["live"], runs["averaged"]
    # the same data and the same live weights: the average only watches
    assert (live.run_dir / "metrics" / "episodes.csv").read_text() == \
        (averaged.run_dir / "metrics" / "episodes.csv").read_text()
    a = load_file(str(live.last_checkpoint / "pretrained_model" / "model.safetensors"))
    b = load_file(str(averaged.last_checkpoint / "pretrained_model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a) and any(k.startswith("policy_average.") for k in b)

    # each evaluation scored the averaged policy: best_model, loaded as deployed, scores exactly what it logged
    best = json.loads((averaged.best_model / "evaluation.json").read_text())
    env = make_env(cfg)
    deployed = Actor(env, load_policy(averaged.best_model), None, seed=cfg.train.seed + 1)
    live_actor = Actor(env, load_agent(averaged.best_model), None, seed=cfg.train.seed + 1)
    again = evaluate(deployed, 2).summary()
    assert {k: again[k] for k in ("mean_reward", "action_jitter", "mean_length")} == \
        {k: best[k] for k in ("mean_reward", "action_jitter", "mean_length")}
    # the live weights act otherwise: their commands differ on the same observations (compared unrounded: an
    # episode summary's rounded jitter can coincide on some CPUs)
    differ = []
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        acts = [a.agent.select_action(a.processor.to_policy(a.processor.to_stored(obs, False)), deterministic=True)
                for a in (deployed, live_actor)]
        differ.append(not np.allclose(acts[0], acts[1], atol=1e-6))
    env.close()
    assert all(differ)
