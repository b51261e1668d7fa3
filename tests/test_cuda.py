"""The learner on a GPU (`train.device=cuda`): agents update and act there, features computed there match the CPU's,
checkpoints written there load on a CPU, and a short training run (state and pixels) completes. Skipped where torch
sees no CUDA device; the suite never needs one."""

import json

import numpy as np
import pytest
import torch

import hilserl  # noqa: F401  (before mujoco)
from hilserl.agents import SACAgent, SACConfig
from hilserl.agents.registry import load_agent, make_agent
from hilserl.config import load_config
from hilserl.train.config import TrainConfig
from test_sac import make_batch  # batches on the CPU, as the learner samples them: the agent moves them

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = dict(hidden_dims=(32, 32), discrete_critic_hidden_dims=(16, 16), image_feature_dim=16, state_feature_dim=8)


def params_on_cuda(agent):
    return all(p.device.type == "cuda" for p in agent.parameters())


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_sac_updates_on_cuda_from_a_cpu_batch(mixed_precision):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=18, action_dim=3, discrete_gripper=True, mixed_precision=mixed_precision, **SMALL)
    agent = SACAgent(cfg).to("cuda")
    before = {k: v.detach().clone() for k, v in agent.critic.state_dict().items()}
    metrics = agent.update([make_batch(cfg, seed=0), make_batch(cfg, seed=1)])
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert params_on_cuda(agent) and agent.mixed_precision_active == mixed_precision
    assert any(not torch.equal(before[k], v) for k, v in agent.critic.state_dict().items())
    a = agent.select_action({"state": np.zeros(18, np.float32)}, deterministic=True)
    assert isinstance(a, np.ndarray) and a.shape == (4,) and np.all(np.abs(a[:3]) <= 1) and a[3] in (0, 1, 2)


def test_same_weights_give_the_same_q_values_on_cpu_and_cuda():
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=18, action_dim=4, mixed_precision=False, **SMALL)
    cpu = SACAgent(cfg)
    gpu = SACAgent(cfg).to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    batch = make_batch(cfg)
    with torch.no_grad():
        q_cpu = cpu.critic(cpu.encoder(cpu.prepare_batch(batch)["obs"]), batch["actions"])
        prep = gpu.prepare_batch(batch)
        q_gpu = gpu.critic(gpu.encoder(prep["obs"]), prep["actions"])
    torch.testing.assert_close(q_gpu.cpu(), q_cpu, atol=1e-4, rtol=1e-4)


def test_cached_features_computed_on_cuda_match_the_cpu_and_train():
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=18, action_dim=4, cameras=("gripper",), image_size=(128, 128),
                    encoder="efficientnet_lite0", backbone_trim_head=True, cached_features=True, num_cached_shifts=2,
                    augmentation_pad=0, backbone_dtype="float32", **SMALL)  # no shifts: both devices see the same
    cpu = SACAgent(cfg)
    gpu = SACAgent(cfg).to("cuda")
    frames = torch.randint(0, 256, (6, 3, 128, 128), dtype=torch.uint8)
    f_cpu, f_gpu = cpu.precompute_features(frames), gpu.precompute_features(frames)
    assert f_gpu.shape == f_cpu.shape == (6, 2, 320, 4, 4) and f_gpu.dtype == torch.float16
    # cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa): a few maps differ by ~0.03
    torch.testing.assert_close(f_gpu.float().cpu(), f_cpu.float(), atol=5e-2, rtol=5e-2)
    metrics = gpu.update([make_batch(cfg, features=tuple(f_gpu.shape[1:])) for _ in range(2)])
    assert all(np.isfinite(v) for v in metrics.values())
    a = gpu.select_action({"state": np.zeros(18, np.float32), "pixels.gripper": frames[0].numpy()})
    assert a.shape == (4,)


def test_checkpoint_written_on_cuda_loads_on_the_cpu_with_the_same_actions(tmp_path):
    torch.manual_seed(0)
    cfg = SACConfig(state_dim=18, action_dim=3, discrete_gripper=True, **SMALL)
    agent = SACAgent(cfg).to("cuda")
    agent.update(make_batch(cfg))
    agent.save(tmp_path / "m")
    loaded = load_agent(tmp_path / "m", "cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    obs = {"state": np.random.default_rng(0).standard_normal(18).astype(np.float32)}
    np.testing.assert_allclose(loaded.select_action(obs, True)[:3], agent.select_action(obs, True)[:3], atol=1e-4)
    back = load_agent(tmp_path / "m", "cuda")
    assert params_on_cuda(back)
    back.update(make_batch(cfg, seed=3))  # optimizer moments restored onto the GPU


def test_drqv2_updates_and_acts_on_cuda():
    cfg = load_config(TrainConfig, None, ["--policy.type=drqv2", "--policy.hidden_dims=[32, 32]"]).policy
    cfg = type(cfg).from_dict({**cfg.to_dict(), "state_dim": 18, "action_dim": 3, "discrete_gripper": True,
                               "cameras": [], "cached_features": False})
    agent = make_agent(cfg).to("cuda")
    metrics = agent.update([make_batch(cfg, seed=s) for s in range(2)])
    assert all(np.isfinite(v) for v in metrics.values()) and params_on_cuda(agent)
    assert agent.select_action({"state": np.zeros(18, np.float32)}).shape == (4,)


E2E = ["--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]", "--train.batch_size=32",
       "--train.num_demos=2", "--train.training_starts=20", "--train.checkpoint_every=0", "--train.log_every=50",
       "--train.torch_threads=1", "--buffers.online_capacity=5000", "--buffers.demo_capacity=2000",
       "--train.device=cuda", "--train.eval_every=100", "--train.eval_episodes=2"]


@pytest.mark.parametrize("obs", ["state", "pixels"])
def test_training_with_train_device_cuda_completes_and_its_policy_evaluates_on_the_cpu(tmp_path, obs):
    from rich.console import Console

    from hilserl.cli import run_eval
    from hilserl.train.loop import train

    path = None if obs == "state" else "configs/sim_grasp.json"
    extra = ["--env.obs_type=state"] if obs == "state" else ["--buffers.on_disk=false"]
    cfg = load_config(TrainConfig, path, [*E2E, *extra, f"--output_dir={tmp_path}", f"--run_name={obs}",
                                          "--train.total_env_steps=150"])
    lines = []
    res = train(cfg, log=lines.append)
    assert res.env_steps >= 150 and res.learner_updates > 0 and res.evals
    model = res.last_checkpoint / "pretrained_model"
    assert json.loads((model / "train_config.json").read_text())["train"]["device"] == "cuda"
    summary = run_eval(str(model), 2, None, False, 0, 0, Console(file=open(tmp_path / "eval.txt", "w")))
    assert summary["episodes"] == 2
