"""Learning in the simulation as a fair experiment: several seeds, the same budget, 50-episode final evaluations.

For each config (pixels: gripper camera + proprioception; state: proprioception + cube position) and each seed,
train with 20 scripted demos and the simulated human, evaluate the deterministic policy every `--eval_every` env
steps on `--eval_episodes` random episodes, and finally evaluate the last policy on `--final_episodes` (50) new
episodes. Seeds run `--jobs` at a time (default 2, one torch thread each: a 2-core machine runs two at once).

Per seed:
  env_steps_to_90       env steps at the first evaluation with success >= 90% (null: never)
  final_success_rate    the last policy on 50 new episodes, with `final_success_ci95` (Wilson 95% interval)
  min_eval_after_90     the lowest evaluation after the first >= 90% one (stability; null if never 90%)
  action_jitter         the deterministic policy's mean |a_t - a_t-1| per tick in the final evaluation (-1..1)
  quarter_success       final success per quarter of the cube's start region (front/back = x above/below the
                        nominal gripper position, left/right = y above/below it): an "easy positions only"
                        policy shows up as one quarter far below the others
The aggregate (per config, and per arm with `--compare_no_human`): median env steps to 90%, the lowest and mean
final success, the lowest evaluation after 90% over all seeds, mean jitter, the lowest quarter.
`--compare_no_human` runs every seed a second time with the simulated human switched off (demos stay), so the value
of the interventions is measured. Prints one JSON object as its last line.

    python benchmarks/bench_learning.py --configs pixels --seeds 0 1 2 3 4 --env_steps 10000
    python benchmarks/bench_learning.py --configs pixels --seeds 0 1 2 -- --env.action_scale=0.02   # overrides
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"pixels": ROOT / "configs" / "sim_grasp.json", "state": ROOT / "configs" / "sim_grasp_state.json"}
QUARTERS = ("front_left", "front_right", "back_left", "back_right")


# ------------------------------------------------------------------------------------------------ measures
def first_at(evals: list, threshold: float):
    """Env step of the first evaluation at or above `threshold` ((env_step, success) pairs), else None."""
    for step, success in evals:
        if success >= threshold:
            return step
    return None


def min_after(evals: list, threshold: float):
    """The lowest evaluation after (not including) the first one at or above `threshold`; None if never reached
    or nothing came after it."""
    for i, (_, success) in enumerate(evals):
        if success >= threshold:
            later = [s for _, s in evals[i + 1:]]
            return min(later) if later else None
    return None


def quarter_of(cube_x: float, cube_y: float, centre: tuple[float, float]) -> str:
    """Which quarter of the cube's start region (x: front = farther from the robot base; y: left = positive)."""
    return ("front" if cube_x >= centre[0] else "back") + "_" + ("left" if cube_y >= centre[1] else "right")


def quarter_success(rows: list[dict], centre: tuple[float, float]) -> dict:
    """Success rate and episode count per quarter of the cube's start region."""
    out = {}
    for q in QUARTERS:
        picked = [r["success"] for r in rows if quarter_of(r["cube_x"], r["cube_y"], centre) == q]
        out[q] = {"success": round(sum(picked) / len(picked), 3) if picked else None, "episodes": len(picked)}
    return out


def aggregate(per_seed: dict) -> dict:
    """Across seeds: the figures the project's targets are stated in."""
    runs = list(per_seed.values())
    to90 = [r["env_steps_to_90"] for r in runs]
    reached = [s for s in to90 if s is not None]
    dips = [r["min_eval_after_90"] for r in runs if r["min_eval_after_90"] is not None]
    quarters = [q["success"] for r in runs for q in r["quarter_success"].values() if q["success"] is not None]
    jitters = [r["action_jitter"] for r in runs if r["action_jitter"] is not None]
    finals = [r["final_success_rate"] for r in runs]
    return {
        "seeds": len(runs),
        # a seed that never reached 90% counts as slower than every seed that did
        "median_env_steps_to_90": (statistics.median([s if s is not None else float("inf") for s in to90])
                                   if len(reached) * 2 > len(to90) else None),
        "seeds_reaching_90": len(reached),
        "min_final_success": min(finals),
        "mean_final_success": round(statistics.fmean(finals), 3),
        "min_eval_after_90": min(dips) if dips else None,
        "mean_action_jitter": round(statistics.fmean(jitters), 3) if jitters else None,
        "min_quarter_success": min(quarters) if quarters else None,
        "mean_wall_s": round(statistics.fmean(r["wall_s"] for r in runs), 1),
    }


# ------------------------------------------------------------------------------------------------ one run
def run_one(name: str, seed: int, steps: int, eval_every: int, eval_episodes: int, final_episodes: int,
            out: Path, overrides: list[str]) -> dict:
    """Train one seed and evaluate its last policy (runs in its own process, one torch thread)."""
    return train_and_evaluate(CONFIGS[name], f"{name}-{seed}", seed, steps, eval_every, eval_episodes,
                              final_episodes, out, overrides)[0]


def train_and_evaluate(config_path: Path, run_name: str, seed: int, steps: int, eval_every: int, eval_episodes: int,
                       final_episodes: int, out: Path, overrides: list[str], log=lambda line: None):
    """`run_one` for any config and run name (benchmarks/bench_transfer.py uses it too): the per-seed record, the
    run's `TrainResult` (run folder, last checkpoint) and its config. `log` receives the training log's lines."""
    import torch

    torch.set_num_threads(1)
    import hilserl  # noqa: F401  (before mujoco: the headless GL backend)
    from hilserl.agents.registry import load_policy
    from hilserl.config import load_config
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor
    from hilserl.train.checkpoint import resolve_model_dir
    from hilserl.train.config import TrainConfig
    from hilserl.train.evaluate import evaluate
    from hilserl.train.loop import train

    cfg = load_config(TrainConfig, config_path, [
        f"--train.total_env_steps={steps}", f"--train.eval_every={eval_every}",
        f"--train.eval_episodes={eval_episodes}", f"--train.checkpoint_every={steps}", f"--train.seed={seed}",
        f"--output_dir={out}", f"--run_name={run_name}", "--buffers.on_disk=false", "--train.torch_threads=1",
        *overrides])
    t0 = time.perf_counter()
    res = train(cfg, log=log)
    train_s = time.perf_counter() - t0
    env = SO101GraspCubeEnv(cfg.env)
    agent = load_policy(resolve_model_dir(res.last_checkpoint))  # SAC or DrQ-v2, as deployed (averaged weights)
    final = evaluate(Actor(env, agent, None, seed=seed + 99), final_episodes, seed_offset=50_000_000)
    env.close()
    evals = [(ev["env_step"], ev["success_rate"]) for ev in res.evals]
    lo, hi = final.interval
    summary = {
        "env_steps_to_90": first_at(evals, 0.9),
        "final_success_rate": final.success_rate,
        "final_success_ci95": [round(lo, 3), round(hi, 3)],
        "final_episodes": final.episodes,
        "min_eval_after_90": min_after(evals, 0.9),
        "action_jitter": final.action_jitter,
        # jitter is the mean |a_t - a_t-1| per tick: a grasp's one descend-to-lift reversal weighs more in a short
        # episode, so read it beside the episode length
        "final_mean_length": round(statistics.fmean(r["steps"] for r in final.rows), 1),
        "action_reversals": final.action_reversals,  # back-and-forth changes per change: shaking, not speed
        "quarter_success": quarter_success(final.rows, tuple(cfg.env.ee_reset_pos[:2])),
        "evals": evals,
        "env_steps": res.env_steps,
        "episodes": res.episodes,
        "learner_updates": res.learner_updates,
        "wall_s": round(train_s, 1),
    }
    return summary, res, cfg


# the arms of the experiment: extra overrides per arm (the simulated human on, as configured, or off; demos stay)
ARMS = {"human": [], "no_human": ["--human.enabled=false"]}


def _child(args) -> None:
    result = run_one(args.configs[0], args.seeds[0], args.env_steps, args.eval_every, args.eval_episodes,
                     args.final_episodes, Path(args.out), args.overrides)
    Path(args.result).write_text(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", nargs="+", default=["pixels"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--env_steps", type=int, default=4000)
    p.add_argument("--eval_every", type=int, default=500)
    p.add_argument("--eval_episodes", type=int, default=20)
    p.add_argument("--final_episodes", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2, help="seeds trained at once (one torch thread each)")
    p.add_argument("--compare_no_human", action="store_true",
                   help="also train every seed with the simulated human switched off")
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=None,
                   help="the arms to run (default: human; with --compare_no_human: both)")
    p.add_argument("--keep_runs", default=None, metavar="DIR",
                   help="keep every run folder (metrics, checkpoints, best model) under DIR instead of deleting them")
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)  # child processes only
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", metavar="--section.field=value",
                   help="config overrides for every run, e.g. --env.action_scale=0.02 (after --)")
    args = p.parse_args()
    from hilserl.agents.precision import cpu_description

    if args.result:
        return _child(args)

    names = args.arms or (["human", "no_human"] if args.compare_no_human else ["human"])
    arms = {name: ARMS[name] for name in names}
    out = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="hilserl-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, arm, seed) for name in args.configs for arm in arms for seed in args.seeds]

    def launch(job) -> tuple:
        name, arm, seed = job
        result = out / f"{name}-{arm}-{seed}.json"
        cmd = [sys.executable, __file__, "--configs", name, "--seeds", str(seed), "--env_steps", str(args.env_steps),
               "--eval_every", str(args.eval_every), "--eval_episodes", str(args.eval_episodes),
               "--final_episodes", str(args.final_episodes), "--out", str(out / arm), "--result", str(result),
               "--", *args.overrides, *arms[arm]]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} {arm} seed {seed} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(result.read_text())
        print(f"{name} {arm} seed {seed}: {json.dumps(r)}", flush=True)
        return job, r

    results: dict = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for (name, arm, seed), r in pool.map(launch, jobs):
                results.setdefault(name, {}).setdefault(arm, {})[str(seed)] = r
    finally:
        if not args.keep_runs:
            shutil.rmtree(out, ignore_errors=True)
    summary = {}
    for name, by_arm in results.items():
        summary[name] = {}
        for arm, per_seed in by_arm.items():
            summary[name][arm] = {"aggregate": aggregate(per_seed), "per_seed": per_seed}
    print(json.dumps({**summary, "env_steps": args.env_steps, "overrides": args.overrides, "demos": 20,
                      "cpu": cpu_description(), "jobs": args.jobs, "threads_per_run": 1}))


if __name__ == "__main__":
    main()
