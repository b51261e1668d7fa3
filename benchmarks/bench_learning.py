"""Learning curves in the simulation: how many environment steps until the policy grasps reliably.

For each config (pixels: gripper camera + proprioception; state: proprioception + cube position), train with
20 scripted demos and the simulated human, evaluate the deterministic policy every `--eval_every` env steps on
`--eval_episodes` random episodes, and finally on 50 episodes with random cube and end-effector resets.
`env_steps_to_80` / `env_steps_to_90`: env steps at the first evaluation at or above that success rate (null if
never). `final_success_rate`: the last checkpoint on 50 new episodes; `best_model_success_rate`: the same 50
episodes for the policy of the best evaluation during training. Prints one JSON object as its last line.

    python benchmarks/bench_learning.py                     # both configs
    python benchmarks/bench_learning.py --configs pixels    # just one
    python benchmarks/bench_learning.py --configs pixels -- --policy.mixed_precision=true   # config overrides
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import hilserl  # noqa: F401
from hilserl.config import load_config
from hilserl.train.actor import Actor
from hilserl.train.config import TrainConfig
from hilserl.train.evaluate import evaluate
from hilserl.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"pixels": ROOT / "configs" / "sim_grasp.json", "state": ROOT / "configs" / "sim_grasp_state.json"}


def first_at(evals: list[dict], threshold: float):
    for ev in evals:
        if ev["success_rate"] >= threshold:
            return ev["env_step"]
    return None


def run(name: str, steps: int, eval_every: int, eval_episodes: int, final_episodes: int, out: Path,
        seed: int, overrides: list[str] = ()) -> dict:
    from hilserl.agents.sac import SACAgent
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.checkpoint import resolve_model_dir

    cfg = load_config(TrainConfig, CONFIGS[name], [
        f"--train.total_env_steps={steps}", f"--train.eval_every={eval_every}",
        f"--train.eval_episodes={eval_episodes}", f"--train.checkpoint_every={steps}", f"--train.seed={seed}",
        f"--output_dir={out}", f"--run_name={name}", "--buffers.on_disk=false", *overrides])
    t0 = time.perf_counter()
    res = train(cfg, log=lambda line: print(line, flush=True) if not line.startswith("Episode") else None)
    train_s = time.perf_counter() - t0
    env = SO101GraspCubeEnv(cfg.env)
    agent = SACAgent.load(resolve_model_dir(res.last_checkpoint))
    final = evaluate(Actor(env, agent, None, seed=seed + 99), final_episodes, seed_offset=50_000_000)
    best = None
    if res.best_model is not None:
        best_agent = SACAgent.load(res.best_model)
        best = evaluate(Actor(env, best_agent, None, seed=seed + 99), final_episodes, seed_offset=50_000_000)
    env.close()
    lo, hi = final.interval
    return {
        "env_steps_to_80": first_at(res.evals, 0.8),
        "env_steps_to_90": first_at(res.evals, 0.9),
        "final_success_rate": final.success_rate,
        "final_success_ci95": [round(lo, 3), round(hi, 3)],
        "final_episodes": final.episodes,
        "best_model_success_rate": None if best is None else best.success_rate,
        "best_model_env_step": None if best is None else json.loads(
            (res.best_model / "evaluation.json").read_text())["env_step"],
        "env_steps": res.env_steps,
        "episodes": res.episodes,
        "learner_updates": res.learner_updates,
        "wall_s": round(train_s, 1),
        "evals": [(ev["env_step"], ev["success_rate"]) for ev in res.evals],
        "config": str(CONFIGS[name].relative_to(ROOT)),
        "overrides": list(overrides),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", nargs="+", default=["pixels", "state"], choices=sorted(CONFIGS))
    p.add_argument("--env_steps", type=int, default=4000)
    p.add_argument("--eval_every", type=int, default=500)
    p.add_argument("--eval_episodes", type=int, default=20)
    p.add_argument("--final_episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="--section.field=value",
                   help="config overrides for every run, e.g. --policy.mixed_precision=true (after --)")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="hilserl-bench-"))
    results = {}
    try:
        for name in args.configs:
            results[name] = run(name, args.env_steps, args.eval_every, args.eval_episodes, args.final_episodes,
                                out, args.seed, args.overrides)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({**results, "demos": 20, "machine": "2-core CPU, no GPU"}))


if __name__ == "__main__":
    main()
