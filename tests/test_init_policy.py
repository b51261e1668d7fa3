"""train.init_policy: a new run starts from a trained policy (e.g. pretrained in the simulation), and refuses one
that does not fit."""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from hilserl.agents import SACAgent, SACConfig
from hilserl.config import load_config
from hilserl.envs import env_spaces
from hilserl.train.build import policy_config
from hilserl.train.checkpoint import ARCHITECTURE_FIELDS, load_initial_policy
from hilserl.train.config import TrainConfig
from hilserl.train.learner_loop import open_learner
from hilserl.train.run_folder import RunFolder
from hilserl.train.loop import train

SMALL = dict(state_dim=5, action_dim=3, discrete_gripper=True, hidden_dims=(32, 32),
             discrete_critic_hidden_dims=(16, 16), state_feature_dim=8, mixed_precision=False)


def _trained(cfg: SACConfig, seed: int = 1) -> SACAgent:
    """An agent whose every weight differs from a fresh one's."""
    torch.manual_seed(seed)
    agent = SACAgent(cfg)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for b in agent.buffers():
            if b.is_floating_point():
                b.add_(0.1)
    return agent


def test_initial_policy_copies_every_weight_and_nothing_else(tmp_path):
    cfg = SACConfig(**SMALL)
    source = _trained(cfg)
    source.num_critic_updates = 123
    source.save(tmp_path / "pretrained_model")
    torch.manual_seed(2)
    fresh = SACAgent(cfg)
    assert load_initial_policy(fresh, tmp_path) == tmp_path / "pretrained_model"  # a folder above it is accepted
    for name, value in source.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    assert fresh.temperature.item() == pytest.approx(source.temperature.item())
    assert fresh.num_critic_updates == 0  # a new run: counters and optimizers start fresh
    assert all(not opt.state for opt in fresh.optimizers.values())


def test_policy_of_another_shape_is_refused_naming_the_fields(tmp_path):
    _trained(SACConfig(**{**SMALL, "hidden_dims": (64, 64), "critic_ensemble_size": 3})).save(tmp_path)
    fresh = SACAgent(SACConfig(**SMALL))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_initial_policy(fresh, tmp_path)
    text = str(err.value)
    assert "train.init_policy" in text and "policy.hidden_dims: [64, 64] there, [32, 32] here" in text
    assert "policy.critic_ensemble_size: 3 there, 2 here" in text
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # nothing half-loaded


def test_policy_trained_on_another_backbone_is_refused(tmp_path):
    pixels = dict(SMALL, cameras=("gripper",), image_size=(32, 32), encoder="resnet10", image_feature_dim=16,
                  backbone_dtype="float32")
    torch.manual_seed(5)
    SACAgent(SACConfig(**pixels)).save(tmp_path)  # random ResNet-10 of one seed
    torch.manual_seed(6)
    with pytest.raises(ValueError, match="policy.backbone_weights"):
        load_initial_policy(SACAgent(SACConfig(**pixels)), tmp_path)


def test_missing_policy_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.init_policy"):
        load_initial_policy(SACAgent(SACConfig(**SMALL)), tmp_path / "nothing")


TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--policy.mixed_precision=false", "--train.batch_size=32", "--train.num_demos=1", "--train.eval_every=0",
        "--train.checkpoint_every=0", "--train.torch_threads=1", "--buffers.online_capacity=2000",
        "--buffers.demo_capacity=1000"]


def test_train_starts_from_the_initial_policy(tmp_path):
    lines = []
    pre = train(load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", "--run_name=sim",
                                                "--train.total_env_steps=80", "--train.training_starts=20"]),
                log=lines.append)
    pretrained = load_file(str(pre.last_checkpoint / "pretrained_model" / "model.safetensors"))
    # the second run stops before its first update: its checkpoint holds exactly the weights it started from
    res = train(load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", "--run_name=fine_tune",
                                                "--train.total_env_steps=30", "--train.training_starts=1000",
                                                f"--train.init_policy={pre.run_dir}"]), log=lines.append)
    assert res.learner_updates == 0
    assert any(line.startswith("policy initialised from") and str(pre.run_dir) in line for line in lines)
    started = load_file(str(res.last_checkpoint / "pretrained_model" / "model.safetensors"))
    assert started.keys() == pretrained.keys()
    for name, value in pretrained.items():
        assert torch.equal(started[name], value), name

    # `hilserl learner` starts from it the same way
    cfg = load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", "--run_name=remote",
                                          f"--train.init_policy={pre.last_checkpoint}"])
    run = RunFolder.open(cfg, resume=False)
    learner = open_learner(cfg, run, False, lines.append).learner
    try:
        for name, value in pretrained.items():
            assert torch.equal(learner.agent.state_dict()[name], value), name
    finally:
        learner.close()
        run.close()


def test_a_policy_pretrained_in_simulation_fits_the_real_arm_config():
    """configs/sim_grasp.json and configs/so101_grasp.json build the same networks, so the first can start the
    second (train.init_policy)."""
    shapes = {}
    for name in ("sim_grasp", "so101_grasp"):
        cfg = load_config(TrainConfig, f"configs/{name}.json", [])
        shapes[name] = {k: v for k, v in dataclasses.asdict(policy_config(cfg, *env_spaces(cfg.env))).items()
                        if k in ARCHITECTURE_FIELDS}
    assert shapes["sim_grasp"] == shapes["so101_grasp"]


def test_the_critic_can_be_left_behind(tmp_path):
    """train.init_critic=false: actor, image heads, gripper critic and temperature from the policy; the continuous
    critic and its target as the new agent built them."""
    cfg = SACConfig(**SMALL)
    source = _trained(cfg)
    source.save(tmp_path / "pretrained_model")
    torch.manual_seed(2)
    fresh = SACAgent(cfg)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    load_initial_policy(fresh, tmp_path, with_critic=False)
    for name, value in fresh.state_dict().items():
        expected = before[name] if name.startswith(("critic.", "critic_target.")) else source.state_dict()[name]
        assert torch.equal(value, expected), name
    assert any(k.startswith("critic.") for k in before) and any(k.startswith("discrete_critic.") for k in before)
    assert load_config(TrainConfig, None, ["--train.init_critic=false"]).train.init_critic is False


def test_a_critic_warmup_keeps_the_loaded_actor_until_it_ends(tmp_path):
    """train.critic_warmup: the first updates of a run from train.init_policy train only the critics."""
    short = [*TINY, f"--output_dir={tmp_path}", "--env.control_time_s=3", "--train.total_env_steps=1",
             "--train.training_starts=10"]  # one 30-step episode: 21 updates
    pre = train(load_config(TrainConfig, None, [*short, "--run_name=sim"]))
    pretrained = load_file(str(pre.last_checkpoint / "pretrained_model" / "model.safetensors"))

    def fine_tune(warmup: int) -> dict:
        res = train(load_config(TrainConfig, None, [
            *short, f"--run_name=warmup{warmup}", f"--train.critic_warmup={warmup}", "--train.log_every=5",
            f"--train.init_policy={pre.run_dir}"]))
        assert res.learner_updates == 21
        header = (res.run_dir / "metrics" / "learner.csv").read_text().splitlines()[0].split(",")
        assert {"critic_loss", "actor_loss", "temperature"} <= set(header)  # the warm-up rows have every column
        return load_file(str(res.last_checkpoint / "pretrained_model" / "model.safetensors"))

    actor = [k for k in pretrained if k.startswith(("actor.", "temperature"))]
    critic = "critic.net.members.0.0.0.weight"
    during = fine_tune(100)  # every update a warm-up one
    assert actor and all(torch.equal(during[k], pretrained[k]) for k in actor)
    assert not torch.equal(during[critic], pretrained[critic])  # loaded, then trained
    after = fine_tune(10)  # the last 11 move the actor
    assert not all(torch.equal(after[k], pretrained[k]) for k in actor)
    with pytest.raises(ValueError, match="train.critic_warmup: 15 is for a run that starts from a trained policy"):
        load_config(TrainConfig, None, ["--train.critic_warmup=15"])


@pytest.mark.parametrize("kind", ["sac", "drqv2"])
def test_a_warmup_update_reports_the_policy_loss_but_moves_only_the_critics(kind):
    from hilserl.agents.drqv2 import DrQV2Agent, DrQV2Config

    torch.manual_seed(0)
    agent = SACAgent(SACConfig(**SMALL, average_rate=0.1)) if kind == "sac" else DrQV2Agent(DrQV2Config(**SMALL))
    g = torch.Generator().manual_seed(0)
    obs = lambda: {"state": torch.randn(16, 5, generator=g)}  # noqa: E731
    actions = torch.rand(16, 4, generator=g) * 2 - 1
    actions[:, -1] = 1.0
    batch = {"observations": obs(), "next_observations": obs(), "actions": actions, "rewards": torch.rand(16),
             "terminals": torch.zeros(16)}
    # the critics and the encoder they train move; the policy's own weights do not
    held = {k: v.clone() for k, v in agent.state_dict().items()
            if not k.startswith(("critic", "discrete_critic", "encoder."))}
    noise = agent.noise_std if kind == "drqv2" else None
    metrics = agent.update(batch, actor=False)
    assert "actor_loss" in metrics and "critic_loss" in metrics
    for name, value in held.items():
        assert torch.equal(agent.state_dict()[name], value), name  # actor, temperature, running average
    assert agent.num_actor_updates == 0 and agent.num_critic_updates == 1
    if kind == "drqv2":
        assert agent.noise_std == noise  # the exploration schedule waits too
    agent.update(batch)
    assert agent.num_actor_updates == 1
    assert not all(torch.equal(agent.state_dict()[k], v) for k, v in held.items() if k.startswith("actor."))
