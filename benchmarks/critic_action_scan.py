"""Why does a policy servo bang-bang? Scan its critic along each action dimension.

For the deterministic policy of a trained run, on `--episodes` fresh episodes, at every step: hold the policy's
action and sweep one continuous dimension over 21 values in [-1, 1] through the critic ensemble (mean Q). A critic
that can tell a good move from a bad one has its best value inside the range (`interior_argmax`: share of sweeps
whose best value is not at -1 or +1); a critic nearly linear in the action has it at an end, and the actor, which
climbs Q, then commands +-1 (`policy_mean_abs_action`) and reverses (`sign_reversals`: share of action values whose
sign flips from one tick to the next). `q_range`: max - min of Q over a sweep (how much the action matters to it).

    python benchmarks/critic_action_scan.py outputs/demo/train            # the run's last checkpoint
    python benchmarks/critic_action_scan.py RUN --model RUN/best_model    # another policy of the run

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import hilserl  # noqa: F401  (before mujoco)


def scan(run_dir: Path, model_dir: Path | None = None, episodes: int = 6, seed: int = 1000) -> dict:
    from hilserl.agents.registry import load_agent
    from hilserl.config import from_dict
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor
    from hilserl.train.checkpoint import last_checkpoint, resolve_model_dir
    from hilserl.train.config import TrainConfig, upgrade_saved_config

    model_dir = resolve_model_dir(model_dir or last_checkpoint(run_dir))
    agent = load_agent(model_dir).eval()  # the live weights: the critics with the encoder and actor they trained
    cfg = from_dict(TrainConfig, upgrade_saved_config(json.loads((run_dir / "config.json").read_text())))
    env = SO101GraspCubeEnv(cfg.env)
    actor = Actor(env, agent, None, seed=seed)
    dims = agent.config.action_dim
    grid = torch.linspace(-1.0, 1.0, 21)
    interior, q_range, mean_abs, reversals = [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        previous = None
        for _ in range(env.max_episode_steps):
            policy_obs = actor.processor.to_policy(actor.processor.to_stored(obs, shifts=False))
            action = agent.select_action(policy_obs, deterministic=True)
            batch = {k: torch.as_tensor(v).unsqueeze(0) for k, v in policy_obs.items()}
            batch = {k: v if k.startswith(("pixels.", "features.")) else v.float() for k, v in batch.items()}
            with torch.no_grad():
                emb = agent.encoder(agent.encoder.backbone_features(batch)[0], dropout=False)
                for d in range(dims):
                    sweep = torch.as_tensor(action[:dims]).repeat(len(grid), 1)
                    sweep[:, d] = grid
                    q = agent.critic(emb.expand(len(grid), -1), sweep).mean(0)
                    best = int(q.argmax())
                    interior.append(0 < best < len(grid) - 1)
                    q_range.append(float(q.max() - q.min()))
            mean_abs.append(float(np.abs(action[:dims]).mean()))
            if previous is not None:
                reversals.append(float((np.sign(action[:dims]) != np.sign(previous)).mean()))
            previous = action[:dims]
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    env.close()
    return {"interior_argmax": round(float(np.mean(interior)), 3), "q_range": round(float(np.mean(q_range)), 3),
            "policy_mean_abs_action": round(float(np.mean(mean_abs)), 3),
            "sign_reversals": round(float(np.mean(reversals)), 3) if reversals else None,
            "steps": len(mean_abs), "episodes": episodes, "model": str(model_dir)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir", type=Path)
    p.add_argument("--model", type=Path, default=None, help="a checkpoint or model folder (default: the last one)")
    p.add_argument("--episodes", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(scan(args.run_dir, args.model, args.episodes)))


if __name__ == "__main__":
    main()
