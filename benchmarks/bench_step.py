"""Where one environment step of the pixel config goes: rendering + physics, the frozen backbone's features for the
stored frame, acting, sampling the batches and the update, and one evaluation step (features of the unshifted frame
+ acting + physics). Measured in float32 (updates and backbone: a CPU without native bf16) and with the config's
defaults side by side, one torch thread, median over the measured steps. Prints one JSON object as its last line.

    python benchmarks/bench_step.py                 # configs/sim_grasp.json
    python benchmarks/bench_step.py --steps 40 --updates 6   # quicker
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import hilserl  # noqa: F401  (before mujoco)

ROOT = Path(__file__).resolve().parents[1]


def profile(config: Path, overrides: list[str], steps: int, updates: int) -> dict:
    from hilserl.agents.sac import SACAgent
    from hilserl.config import load_config
    from hilserl.data import Transition
    from hilserl.train.actor import Actor
    from hilserl.train.build import make_env, policy_config
    from hilserl.train.config import TrainConfig
    from hilserl.train.learner import Learner

    cfg = load_config(TrainConfig, config, ["--buffers.on_disk=false", *overrides])
    env = make_env(cfg)
    policy = policy_config(cfg, env.observation_space, env.action_space)
    agent = SACAgent(policy)
    actor = Actor(env, agent, None, seed=0)
    learner = Learner(policy, cfg.buffers, actor.processor.spec, cfg.train.batch_size, None, 0, "cpu")
    times: dict[str, list[float]] = {}

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    obs, _ = env.reset(seed=0)
    stored = actor.processor.to_stored(obs)
    for i in range(steps):
        action = timed("act_ms", agent.select_action, actor.processor.to_policy(stored), deterministic=False)
        next_obs, reward, terminated, truncated, _ = timed("env_step_ms", env.step, action)
        next_stored = timed("features_ms", actor.processor.to_stored, next_obs)
        info = {"grasp_penalty": 0.0} if policy.discrete_gripper else {}
        learner.add(Transition(stored, action, float(reward), bool(terminated), bool(truncated), next_stored,
                               i % 4 == 0, info))
        stored = next_stored
        if terminated or truncated:
            obs, _ = env.reset(seed=i + 1)
            stored = actor.processor.to_stored(obs)
    for _ in range(updates):
        with learner.lock:
            for j in range(len(learner._batches)):
                learner._batches[j] = timed("sample_ms", learner.sampler.sample, cfg.train.batch_size,
                                            out=learner._batches[j])
        timed("update_ms", learner.agent.update, list(learner._batches))
    obs, _ = env.reset(seed=10_000)
    for _ in range(steps // 2):  # an evaluation step: no augmented copies, deterministic action
        policy_obs = timed("eval_features_ms", actor.processor.to_stored, obs, False)
        action = agent.select_action(actor.processor.to_policy(policy_obs), deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    out = {k: round(1000 * float(np.median(v[2:] if len(v) > 4 else v)), 2) for k, v in times.items()}
    out["sample_ms"] = round(out["sample_ms"] * policy.utd_ratio, 2)  # utd_ratio batches per update
    per_step = (out["act_ms"] + out["env_step_ms"] + out["features_ms"]
                + cfg.train.updates_per_env_step * (out["sample_ms"] + out["update_ms"]))
    out["train_step_ms"] = round(per_step, 1)
    out["precision"] = agent.precision_summary()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs" / "sim_grasp.json"))
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--updates", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    float32 = profile(Path(args.config), ["--policy.mixed_precision=false", "--policy.backbone_dtype=float32"],
                      args.steps, args.updates)
    default = profile(Path(args.config), [], args.steps, args.updates)
    from hilserl.agents.precision import cpu_description

    print(json.dumps({"float32": float32, "default": default, "cpu": cpu_description(), "threads": 1}))


if __name__ == "__main__":
    main()
