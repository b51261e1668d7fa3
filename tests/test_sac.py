"""SAC agent: what trains what, target updates, temperature, double DQN, entropy backup, save/load, config."""

import copy
import json
import os
import pickle

import pytest
import torch

import hilserl.agents.sac as sac
from hilserl.agents import SACAgent, SACConfig
from hilserl.agents.losses import actor_loss, double_dqn_target, td_target
from hilserl.gripper import grasp_penalty

# float32 updates: these tests compare against values computed in float32 (mixed precision has its own tests)
TINY = dict(hidden_dims=(32, 32), discrete_critic_hidden_dims=(16, 16), image_feature_dim=16, state_feature_dim=8,
            mixed_precision=False)


def make_batch(cfg: SACConfig, b: int = 16, seed: int = 0, features: tuple | None = None):
    g = torch.Generator().manual_seed(seed)

    def obs():
        o = {"state": torch.randn(b, cfg.state_dim, generator=g)}
        for cam in cfg.cameras:
            if features is not None:
                o["features." + cam] = torch.randn(b, *features, generator=g).half()
            else:
                o["pixels." + cam] = torch.randint(0, 256, (b, 3, *cfg.image_size), dtype=torch.uint8, generator=g)
        return o

    actions = torch.rand(b, cfg.full_action_dim, generator=g) * 2 - 1
    if cfg.discrete_gripper:
        actions[:, -1] = torch.randint(0, 3, (b,), generator=g).float()
    return {
        "observations": obs(),
        "next_observations": obs(),
        "actions": actions,
        "rewards": torch.randn(b, generator=g),
        "terminals": (torch.rand(b, generator=g) < 0.2).float(),
        "is_intervention": torch.zeros(b),
    }


def pixel_config(**kw):
    base = dict(state_dim=3, action_dim=2, cameras=("front",), image_size=(32, 32), encoder="resnet10",
                backbone_dtype="float32", **TINY)
    base.update(kw)
    return SACConfig(**base)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def actor_step_only(agent, batch):
    """One actor + temperature step on a batch's (detached) observation embedding, as `SACAgent.update` runs it."""
    prep = agent.prepare_batch(batch)
    with torch.no_grad():
        obs_emb = agent.encoder(prep["obs"])
    return agent.actor_step(obs_emb)


# --------------------------------------------------------------------------------------------- who trains what
def test_frozen_backbone_untouched_and_head_trained_by_critic_only():
    torch.manual_seed(0)
    agent = SACAgent(pixel_config())
    batch = make_batch(agent.config)
    backbone0, heads0, proj0 = (snapshot(agent.encoder.backbone), snapshot(agent.encoder.heads),
                                snapshot(agent.encoder.state_proj))
    actor0 = snapshot(agent.actor)

    actor_step_only(agent, batch)
    assert changed(actor0, agent.actor)
    assert not changed(heads0, agent.encoder.heads), "the actor loss must not train the encoder head"
    assert not changed(proj0, agent.encoder.state_proj)

    agent.update_critic(batch)
    assert changed(heads0, agent.encoder.heads), "the critic loss must train the encoder head"
    assert changed(proj0, agent.encoder.state_proj)

    for _ in range(2):
        agent.update([batch, make_batch(agent.config, seed=1)])
    assert not changed(backbone0, agent.encoder.backbone)
    assert all(p.grad is None for p in agent.encoder.backbone.parameters())
    assert not agent.encoder.backbone.module.training
    # the backbone is in no optimizer
    backbone_ids = {id(p) for p in agent.encoder.backbone.parameters()}
    for opt in agent.optimizers.values():
        assert not backbone_ids & {id(p) for g in opt.param_groups for p in g["params"]}


def test_conv_encoder_trained_by_critic_only():
    torch.manual_seed(0)
    agent = SACAgent(pixel_config(encoder="conv", conv_channels=(8, 8), conv_strides=(2, 2)))
    batch = make_batch(agent.config)
    conv0 = snapshot(agent.encoder.convs)
    actor_step_only(agent, batch)
    assert not changed(conv0, agent.encoder.convs)
    agent.update_critic(batch)
    assert changed(conv0, agent.encoder.convs)


# --------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("discrete", [False, True])
def test_target_networks_move_by_exactly_tau(discrete):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=4, action_dim=2, discrete_gripper=discrete, tau=0.05, **TINY)
    agent = SACAgent(cfg)
    # make online and target differ first, so the check is not trivially satisfied
    for _ in range(3):
        agent.update_critic(make_batch(cfg, seed=3))
    pairs = [(agent.critic_target, agent.critic)]
    if discrete:
        pairs.append((agent.discrete_critic_target, agent.discrete_critic))
    old = [snapshot(t) for t, _ in pairs]
    agent.update_critic(make_batch(cfg, seed=4))
    for (target, online), before in zip(pairs, old):
        for name, new_t in target.state_dict().items():
            expected = (1 - cfg.tau) * before[name] + cfg.tau * online.state_dict()[name]
            assert torch.allclose(new_t, expected, atol=1e-6), name
        assert changed(before, target)


def test_mixed_precision_forwards_use_the_weights_of_the_moment():
    """Under bf16 autocast every critic forward of a UTD loop (and the actor step's) must use the critic weights
    as they are then, not a bf16 copy cached before an optimizer step changed them."""
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=4, action_dim=2, utd_ratio=3, **{**TINY, "mixed_precision": True})
    agent = SACAgent(cfg)
    seen = []

    def recompute_with_fresh_weights(module, args, out):
        if torch.is_grad_enabled():
            fresh = copy.deepcopy(module)  # new weight tensors: nothing cached for them
            fresh._forward_hooks.clear()
            with torch.no_grad():
                seen.append((out.detach().clone(), fresh(*args)))

    agent.critic.register_forward_hook(recompute_with_fresh_weights)
    agent.update([make_batch(cfg, seed=s) for s in range(3)])
    assert len(seen) == 4  # three critic steps and the actor step
    for i, (out, fresh) in enumerate(seen):
        assert torch.equal(out, fresh), f"forward {i} used stale weights"


@pytest.mark.parametrize("mode,native,expected", [("auto", True, torch.bfloat16), ("auto", False, torch.float32),
                                                   (True, False, torch.bfloat16), (False, True, torch.float32)])
def test_mixed_precision_auto_follows_the_cpu(monkeypatch, mode, native, expected):
    monkeypatch.setattr(sac, "native_bf16", lambda device_type: native)
    cfg = SACConfig(state_dim=4, action_dim=2, **{**TINY, "mixed_precision": mode})
    agent = SACAgent(cfg)
    assert agent.mixed_precision_active == (expected == torch.bfloat16)
    dtypes = []
    first_layer = agent.critic.net.members[0][0][0]
    first_layer.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    metrics = agent.update(make_batch(cfg))
    assert dtypes and set(dtypes) == {expected}
    assert all(p.dtype == torch.float32 for p in agent.parameters())  # weights stay float32
    assert all(isinstance(v, float) and v == v for v in metrics.values())
    acting = []
    agent.actor.trunk[0].register_forward_hook(lambda m, args, out: acting.append(out.dtype))
    action = agent.select_action({"state": torch.zeros(4)})
    assert acting == [torch.float32] and action.dtype.name == "float32"  # acting never under autocast


def test_temperature_rises_below_target_entropy_and_falls_above():
    cfg = SACConfig(state_dim=4, action_dim=2, **TINY)
    for target_entropy, direction in [(50.0, +1), (-50.0, -1)]:
        torch.manual_seed(0)
        agent = SACAgent(SACConfig(**{**cfg.to_dict(), "target_entropy": target_entropy}))
        t0 = agent.temperature.item()
        assert t0 == pytest.approx(0.01, rel=1e-5)
        for _ in range(3):
            actor_step_only(agent, make_batch(cfg))
        assert (agent.temperature.item() - t0) * direction > 0


def test_log_temperature_parametrisation():
    agent = SACAgent(SACConfig(state_dim=4, action_dim=2, temperature_parametrization="log", temperature_init=0.2))
    assert agent.temperature.item() == pytest.approx(0.2, rel=1e-5)


def test_default_target_entropy_uses_continuous_dims_only():
    agent = SACAgent(SACConfig(state_dim=4, action_dim=3, discrete_gripper=True, **TINY))
    assert agent.target_entropy == -1.5


def test_double_dqn_uses_online_argmax_and_target_value():
    rewards = torch.tensor([1.0, 0.0])
    terminals = torch.tensor([0.0, 1.0])
    online = torch.tensor([[[5.0, 0.0, 1.0], [0.0, 9.0, 0.0]]])  # argmax: 0, 1
    target = torch.tensor([[[2.0, 0.0, 100.0], [7.0, 3.0, 50.0]]])  # its own argmax would be 2
    out = double_dqn_target(rewards, terminals, online, target, discount=0.5)
    assert torch.allclose(out, torch.tensor([1.0 + 0.5 * 2.0, 0.0]))
    # ensembles: argmax of the online mean, min of the target members
    online2 = torch.stack([online[0], online[0] * 0.5])
    target2 = torch.stack([target[0], target[0] - 1.0])
    out2 = double_dqn_target(rewards, torch.zeros(2), online2, target2, discount=1.0)
    assert torch.allclose(out2, torch.tensor([1.0 + 1.0, 0.0 + 2.0]))


def test_agent_discrete_target_is_double_dqn_with_penalty(monkeypatch):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=4, action_dim=2, discrete_gripper=True, **TINY)
    agent = SACAgent(cfg)
    # make online and target nets disagree
    with torch.no_grad():
        for p in agent.discrete_critic_target.parameters():
            p.add_(torch.randn_like(p))
    batch = make_batch(cfg)
    batch["grasp_penalty"] = torch.full((16,), -0.02)
    seen = {}
    real = sac.double_dqn_target

    def spy(rewards, terminals, next_q_online, next_q_target, discount):
        seen.update(rewards=rewards, online=next_q_online, target=next_q_target)
        seen["out"] = real(rewards, terminals, next_q_online, next_q_target, discount)
        return seen["out"]

    monkeypatch.setattr(sac, "double_dqn_target", spy)
    prep = agent.prepare_batch(batch)
    with torch.no_grad():
        next_emb = agent.encoder(prep["next_obs"])
        online = agent.discrete_critic(next_emb)
        target = agent.discrete_critic_target(next_emb)
    agent.critic_step(prep)
    assert torch.allclose(seen["online"], online) and torch.allclose(seen["target"], target)
    assert not torch.equal(online.argmax(-1), target.argmax(-1))
    assert torch.allclose(seen["rewards"], batch["rewards"] - 0.02)
    best = online[0].argmax(-1)
    expected = batch["rewards"] - 0.02 + cfg.discount * (1 - batch["terminals"]) * target[0].gather(
        -1, best[:, None]).squeeze(-1)
    assert torch.allclose(seen["out"], expected, atol=1e-6)


def test_grasp_penalty_where_the_command_changes_the_gripper_state():
    cfg = SACConfig(state_dim=4, action_dim=2, discrete_gripper=True, **TINY)
    batch = make_batch(cfg, b=4)
    batch["grasp_penalty"] = torch.tensor([-0.5, 0.0, -0.5, 0.0])
    prep = SACAgent(cfg).prepare_batch(batch)
    assert torch.allclose(prep["grasp_penalty"], torch.tensor([-0.5, 0.0, -0.5, 0.0]))
    del batch["grasp_penalty"]
    assert torch.count_nonzero(SACAgent(cfg).prepare_batch(batch)["grasp_penalty"]) == 0
    closed = torch.tensor([0.0, 0.0, 1.0, 1.0])
    command = torch.tensor([0, 2, 2, 1])  # close while open, open while open, open while closed, stay
    assert torch.allclose(grasp_penalty(closed, command, -0.02), torch.tensor([-0.02, 0.0, -0.02, 0.0]))


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_backup_entropy_switches_the_entropy_term(monkeypatch, backup_entropy):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=4, action_dim=2, backup_entropy=backup_entropy, temperature_init=0.5, **TINY)
    agent = SACAgent(cfg)
    seen = {}
    real = sac.td_target

    def spy(rewards, terminals, next_q, discount, next_log_prob=None, temperature=0.0):
        seen.update(next_q=next_q, log_prob=next_log_prob, out=real(rewards, terminals, next_q, discount,
                                                                     next_log_prob, temperature))
        return seen["out"]

    monkeypatch.setattr(sac, "td_target", spy)
    batch = make_batch(cfg)
    agent.update_critic(batch)
    plain = batch["rewards"] + cfg.discount * (1 - batch["terminals"]) * seen["next_q"].min(0).values
    if backup_entropy:
        assert seen["log_prob"] is not None
        expected = plain - cfg.discount * (1 - batch["terminals"]) * 0.5 * seen["log_prob"]
        assert not torch.allclose(seen["out"], plain)
    else:
        assert seen["log_prob"] is None
        expected = plain
    assert torch.allclose(seen["out"], expected, atol=1e-5)


def test_td_target_function():
    r, d = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    q = torch.tensor([[3.0, 3.0], [2.0, 5.0]])
    assert torch.allclose(td_target(r, d, q, 0.5), torch.tensor([2.0, 1.0]))
    lp = torch.tensor([-2.0, -2.0])
    assert torch.allclose(td_target(r, d, q, 0.5, lp, 0.1), torch.tensor([1.0 + 0.5 * (2.0 + 0.2), 1.0]))


def test_critic_subsampling_uses_subset(monkeypatch):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=4, action_dim=2, critic_ensemble_size=5, critic_subsample_size=2, **TINY)
    agent = SACAgent(cfg)
    seen = {}
    real = sac.td_target
    monkeypatch.setattr(sac, "td_target", lambda r, d, q, *a: (seen.setdefault("shape", q.shape), real(r, d, q, *a))[1])
    agent.update_critic(make_batch(cfg))
    assert seen["shape"][0] == 2


# --------------------------------------------------------------------------------------------- acting, modes
def test_select_action_shapes_and_gripper_index():
    torch.manual_seed(0)
    cfg = pixel_config(discrete_gripper=True, gripper_epsilon=1.0)
    agent = SACAgent(cfg)
    obs = {"state": torch.randn(3).numpy(), "pixels.front": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8).numpy()}
    a = agent.select_action(obs, deterministic=True)
    assert a.shape == (3,) and (abs(a[:2]) <= 1).all() and a[2] in (0.0, 1.0, 2.0)
    assert (agent.select_action(obs, deterministic=True) == a).all()
    batch_obs = {k: torch.as_tensor(v).unsqueeze(0).repeat(64, *[1] * v.ndim) for k, v in obs.items()}
    many = agent.select_action(batch_obs, deterministic=False)
    assert many.shape == (64, 3) and set(many[:, 2].tolist()) == {0.0, 1.0, 2.0}  # epsilon = 1: random


def test_cached_mode_updates_and_acts_from_pixels():
    torch.manual_seed(0)
    cfg = pixel_config(cached_features=True, num_cached_shifts=3)
    agent = SACAgent(cfg)
    frames = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    feats = agent.precompute_features(frames)
    assert feats.shape == (5, 3, 512, 1, 1) and feats.dtype == torch.float16
    batch = make_batch(cfg, features=(3, 512, 1, 1))
    metrics = agent.update([batch, batch])
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert agent.select_action({"state": torch.randn(3), "pixels.front": frames[0]}).shape == (2,)


# --------------------------------------------------------------------------------------------- save / load
def test_save_load_roundtrip_identical_and_pickle_free(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = pixel_config(encoder="conv", conv_channels=(8, 8), conv_strides=(2, 2), discrete_gripper=True)
    agent = SACAgent(cfg)
    for seed in range(3):
        agent.update([make_batch(cfg, seed=seed), make_batch(cfg, seed=seed + 10)])

    def forbidden(*a, **k):
        raise AssertionError("pickle / torch.save / torch.load must not be used")

    for mod, name in [(pickle, "dump"), (pickle, "dumps"), (pickle, "load"), (pickle, "loads"),
                      (pickle, "Pickler"), (pickle, "Unpickler"), (torch, "save"), (torch, "load")]:
        monkeypatch.setattr(mod, name, forbidden)
    agent.save(tmp_path / "ckpt")
    loaded = SACAgent.load(tmp_path / "ckpt")
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path / "ckpt")) == ["agent.json", "model.safetensors", "optimizer.safetensors"]
    meta = json.loads((tmp_path / "ckpt" / "agent.json").read_text())
    assert meta["counters"] == {"num_critic_updates": 6, "num_actor_updates": 3}
    assert SACConfig.from_dict(meta["config"]) == cfg
    for k, v in agent.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    for name, opt in agent.optimizers.items():
        a_state, b_state = opt.state_dict(), loaded.optimizers[name].state_dict()
        assert a_state["param_groups"] == b_state["param_groups"]
        assert a_state["state"].keys() == b_state["state"].keys() and a_state["state"]
        for idx in a_state["state"]:
            for key, value in a_state["state"][idx].items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b_state["state"][idx][key])), (name, key)
    obs = {"state": torch.randn(3), "pixels.front": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)}
    assert (agent.select_action(obs, True) == loaded.select_action(obs, True)).all()
    # the next update is identical too (optimizer moments and step counts restored)
    batch = make_batch(cfg, seed=99)
    torch.manual_seed(5)
    agent.update(batch)
    torch.manual_seed(5)
    loaded.update(batch)
    for k, v in agent.state_dict().items():
        assert torch.allclose(v, loaded.state_dict()[k], atol=1e-6), k


# --------------------------------------------------------------------------------------------- config
def test_config_defaults_match_reference():
    cfg = SACConfig()
    assert cfg.temperature_init == 0.01 and cfg.discount == 0.97 and cfg.tau == 0.005
    assert cfg.hidden_dims == (256, 256) and cfg.activation == "tanh" and cfg.critic_ensemble_size == 2
    assert cfg.backup_entropy is False and cfg.actor_lr == cfg.critic_lr == cfg.temperature_lr == 3e-4
    assert cfg.resolved_target_entropy == -2.0 and cfg.augmentation_pad == 4 and cfg.grasp_penalty == -0.02


@pytest.mark.parametrize("field,value", [("discount", 1.5), ("tau", 0.0), ("critic_subsample_size", 3),
                                         ("encoder", "vit"), ("activation", "swish"), ("utd_ratio", 0),
                                         ("temperature_init", -1.0), ("mixed_precision", "bf16"),
                                         ("actor_q", "max"), ("average_rate", 1.0), ("average_rate", -0.1)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SACConfig(**{field: value})


def test_cached_mode_rejects_conv_encoder():
    with pytest.raises(ValueError, match="cached_features"):
        SACConfig(cameras=("a",), encoder="conv", cached_features=True)


def test_per_row_discounts_replace_the_configured_discount():
    """n-step batches carry `discounts`: a row with discount 0 bootstraps nothing, so the TD target is its reward;
    both critics (continuous and gripper) use them."""
    cfg = SACConfig(state_dim=5, action_dim=2, discrete_gripper=True, cameras=(), hidden_dims=(32, 32))
    agent = SACAgent(cfg)
    batch = make_batch(cfg, b=16)
    batch["grasp_penalty"] = torch.full((16,), -0.02)
    plain = agent.critic_step(agent.prepare_batch(batch))[0]
    assert plain["td_target_mean"] != pytest.approx(batch["rewards"].mean().item(), abs=1e-4)
    batch["discounts"] = torch.zeros(16)
    seen = {}
    real = sac.double_dqn_target
    sac.double_dqn_target = lambda *a: seen.setdefault("t", real(*a))
    try:
        m = agent.critic_step(agent.prepare_batch(batch))[0]
    finally:
        sac.double_dqn_target = real
    assert m["td_target_mean"] == pytest.approx(batch["rewards"].mean().item(), abs=1e-5)
    assert torch.allclose(seen["t"], batch["rewards"] + batch["grasp_penalty"])


def test_critic_trunk_compresses_the_observation_before_the_action_joins():
    """critic_trunk_dim: each critic member maps the observation features to that width (Linear, LayerNorm, tanh)
    and then reads [trunk output, action]; it trains, and a policy saved with it loads with it."""
    cfg = SACConfig(state_dim=5, action_dim=2, cameras=(), hidden_dims=(32, 32), critic_trunk_dim=8)
    agent = SACAgent(cfg)
    for trunk, member in zip(agent.critic.trunks, agent.critic.net.members):
        assert trunk[0].out_features == 8 and member[0][0].in_features == 8 + 2
    before = snapshot(agent.critic.trunks)
    agent.update([make_batch(cfg), make_batch(cfg, seed=1)])
    assert changed(before, agent.critic.trunks)
    with pytest.raises(ValueError, match="critic_trunk_dim"):
        SACConfig(state_dim=5, action_dim=2, critic_trunk_dim=0)


# --------------------------------------------------------------------------------------------- smoothness (CAPS)
def _mean_gap(agent, batch):
    """mean |mu(s) - mu(s')| of the deterministic policy over a batch's consecutive observations."""
    with torch.no_grad():
        prep = agent.prepare_batch(batch)
        now, _ = agent.actor(agent.encoder(prep["obs"], dropout=False), deterministic=True)
        nxt, _ = agent.actor(agent.encoder(prep["next_obs"], dropout=False), deterministic=True)
    return (now - nxt).abs().mean().item()


@pytest.mark.parametrize("smoothness", [0.0, 5.0])
def test_action_smoothness_pulls_consecutive_mean_actions_together(smoothness):
    """The same 40 updates from the same start: with the CAPS term the policy's mean action changes much less
    between an observation and the next one; without it the term is neither computed nor reported."""
    torch.manual_seed(0)
    agent = SACAgent(SACConfig(state_dim=6, action_dim=3, action_smoothness=smoothness, **TINY))
    batch = make_batch(agent.config, b=64)
    gaps = [_mean_gap(agent, batch)]
    for _ in range(40):
        metrics = agent.update([batch, batch])
    gaps.append(_mean_gap(agent, batch))
    if smoothness:
        assert metrics["policy_smoothness"] == pytest.approx(gaps[-1], rel=0.5)
        assert gaps[-1] < 0.5 * gaps[0], gaps
    else:
        assert "policy_smoothness" not in metrics
        assert gaps[-1] > 0.7 * gaps[0], gaps


def test_actor_q_min_charges_the_actor_for_critic_disagreement():
    """actor_q="min": the actor's loss reads the ensemble's minimum, i.e. the mean minus half the two critics' gap,
    so actions where the critics disagree (little data) look worse than under "mean"; the agent's own update uses it."""
    torch.manual_seed(0)
    agent = SACAgent(SACConfig(state_dim=6, action_dim=3, actor_q="min", **TINY))
    batch = make_batch(agent.config, b=64)
    with torch.no_grad():
        emb = agent.encoder(agent.prepare_batch(batch)["obs"])
        actions, log_prob = agent.actor(emb)
        q = agent.critic(emb, actions)
    gap = (q[0] - q[1]).abs().mean().item()
    assert gap > 0
    alpha = agent.temperature.item()
    low, mean = actor_loss(log_prob, q, alpha, "min").item(), actor_loss(log_prob, q, alpha).item()
    assert low - mean == pytest.approx(gap / 2, rel=1e-4)
    with torch.no_grad():  # the agent's own actor step reports the loss with the minimum
        torch.manual_seed(1)
        a2, lp2 = agent.actor(emb)
        expected = actor_loss(lp2, agent.critic(emb, a2), alpha, "min").item()
    torch.manual_seed(1)
    assert agent.actor_step(emb)["actor_loss"] == pytest.approx(expected, rel=1e-4)


def test_update_metrics_are_python_floats_read_once_per_update(monkeypatch):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=5, action_dim=2, discrete_gripper=True, action_smoothness=1.0, **TINY)
    agent = SACAgent(cfg)
    item_calls = []
    original = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: item_calls.append(1) or original(t))
    metrics = agent.update([make_batch(cfg, seed=0), make_batch(cfg, seed=1)])
    assert not item_calls  # one stacked copy for every metric, no per-metric device-to-host read
    assert {"critic_loss", "q_mean", "discrete_critic_loss", "actor_loss", "temperature", "entropy",
            "policy_smoothness"} <= set(metrics)
    assert all(type(v) is float for v in metrics.values()), metrics
    assert metrics["temperature"] == pytest.approx(agent.temperature.item())
