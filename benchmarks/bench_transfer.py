"""Transfer, measured: pretrain from pixels with domain randomization, evaluate zero-shot on the held-out looks, then
fine-tune on a held-out look from the pretrained policy and, side by side, from scratch.

Per seed, four runs, each in its own process with one torch thread (`--jobs` of them at a time, default 2):

  pretrain   `--pretrain_config` (configs/sim_pretrain.json: every randomization hook on but image_color) for `--pretrain_steps`
             env steps, evaluated every `--eval_every` steps on `--eval_episodes` episodes of the randomized env;
             its last policy is the pretrained policy (also evaluated on `--final_episodes` new randomized episodes)
  zero_shot  that policy, deterministic, on `--zero_shot_episodes` new episodes of every held-out look
             (`hilserl.sim.looks`) in the target env (`--target_config`, configs/sim_grasp.json, with
             `--env.look=<look>`), and in its nominal look for reference (not in the mean)
  finetune   the target env with `--env.look=<--finetune_look>` (default the first held-out look) and
             `--train.init_policy=<the pretrained policy>` for `--finetune_steps`, evaluated every `--eval_every`
             steps on `--eval_episodes` episodes, then its last policy on `--final_episodes` new episodes of that look;
             `--finetune_critic pretrained` (the default, as `train.init_critic`) keeps the pretrained continuous
             critic; `fresh` leaves it behind (`--train.init_critic=false`: needed for an asymmetric critic, which
             reads a pose the target env stands in for not having; it helped when the pretraining was poor, and costs
             time since the canonical view made it good: docs/benchmarks.md);
             `--critic_warmup N` trains only its critics for its first N updates (`--train.critic_warmup`)
  scratch    the same run without init_policy: the same seed, budget, demos and simulated human

Both fine-tune arms also evaluate the policy they start from at env step 0, on the same episodes as their later
evaluations (the pretrained policy; for scratch a freshly initialised one, seeded with the run's seed but not
necessarily the run's own draw), so a pretrained policy that is already at 90% in the look counts 0 steps. The scratch arm does not need the pretraining and starts at once.

Per seed: `zero_shot_success` (the mean over the held-out looks, with the Wilson 95% interval of the pooled
episodes) and `zero_shot` per look; `finetune_steps_to_90`, `scratch_steps_to_90` (env steps at the first evaluation
with success >= 90%, null: never), `steps_to_90_ratio` (finetune / scratch); `finetune_final_success`,
`scratch_final_success` with `..._ci95`; the evaluation curves, run records and wall times under `pretrain`,
`finetune`, `scratch`. Then an aggregate over seeds and whether the targets are met (zero-shot >= 0.70 on
every seed; fine-tuning reaches 90% in at most a third of scratch's env steps on every seed). Prints one JSON object
as its last line.

    python benchmarks/bench_transfer.py                                  # seeds 0 1, 12,000 + 2 x 4,000 steps each
    python benchmarks/bench_transfer.py --seeds 0 1 2 --finetune_look heldout_b -- --policy.mixed_precision=false
    python benchmarks/bench_transfer.py --smoke                          # tiny budgets: checks that it runs
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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_learning  # noqa: E402  (its measures and its per-seed training run)

ROOT = bench_learning.ROOT
PRETRAIN_CONFIG = ROOT / "configs" / "sim_pretrain.json"
TARGET_CONFIG = ROOT / "configs" / "sim_grasp.json"
ZERO_SHOT_SEED_OFFSET = 50_000_000  # the episodes of bench_learning's final evaluation: zero-shot and the
#                                     fine-tuned policy's final evaluation in the fine-tune look are the same episodes
# --smoke: the smallest budgets every stage runs on: 64x64 images, 30-step episodes, batch 32, one demo (the figures
# mean nothing)
SMOKE = {"pretrain_steps": 60, "finetune_steps": 60, "eval_every": 30, "eval_episodes": 1, "zero_shot_episodes": 1,
         "final_episodes": 2}
SMOKE_OVERRIDES = ["--env.image_size=64", "--env.control_time_s=3", "--train.batch_size=32",
                   "--train.training_starts=20", "--train.num_demos=1",
                   # the evaluated average spans ~10 of the 40 updates (the doctor's limit: a quarter of a run)
                   "--policy.average_rate=0.1"]


def heldout_looks() -> list[str]:
    from hilserl.sim.looks import LOOK_NAMES

    return [name for name in LOOK_NAMES if name != "nominal"]


# ------------------------------------------------------------------------------------------------ measures
def ratio_to_90(finetune_steps, scratch_steps, scratch_budget: int) -> dict:
    """Fine-tune's env steps to 90% over scratch's. When scratch never got there its steps are more than its budget,
    so the ratio is below finetune / budget (`ratio_below`). `at_most_a_third` is the target."""
    if finetune_steps is None:
        return {"steps_to_90_ratio": None, "steps_to_90_ratio_below": None, "at_most_a_third": False}
    if scratch_steps is None:
        bound = round(finetune_steps / scratch_budget, 3)
        return {"steps_to_90_ratio": None, "steps_to_90_ratio_below": bound,
                "at_most_a_third": 3 * finetune_steps <= scratch_budget}
    ratio = finetune_steps / scratch_steps if scratch_steps else (0.0 if finetune_steps == 0 else float("inf"))
    return {"steps_to_90_ratio": round(ratio, 3), "steps_to_90_ratio_below": None,
            "at_most_a_third": 3 * finetune_steps <= scratch_steps}


def pooled(per_look: dict) -> tuple[float, list[float]]:
    """The mean success over looks (equal episode counts: the pooled rate) and the pooled Wilson 95% interval."""
    from hilserl.train.evaluate import wilson_interval

    successes = sum(r["successes"] for r in per_look.values())
    episodes = sum(r["episodes"] for r in per_look.values())
    lo, hi = wilson_interval(successes, episodes)
    return round(successes / max(1, episodes), 4), [round(lo, 3), round(hi, 3)]


def aggregate(per_seed: dict) -> dict:
    """Across seeds: the figures the targets are stated in."""
    seeds = list(per_seed.values())
    zero = [r["zero_shot_success"] for r in seeds]
    ratios = [r["steps_to_90_ratio"] for r in seeds if r["steps_to_90_ratio"] is not None]
    out = {
        "seeds": len(seeds),
        "mean_zero_shot_success": round(statistics.fmean(zero), 3),
        "min_zero_shot_success": min(zero),
        "finetune": bench_learning.aggregate({s: r["finetune"] for s, r in per_seed.items()}),
        "scratch": bench_learning.aggregate({s: r["scratch"] for s, r in per_seed.items()}),
        "max_steps_to_90_ratio": max(ratios) if len(ratios) == len(seeds) else None,
        "mean_pretrain_wall_s": round(statistics.fmean(r["pretrain"]["wall_s"] for r in seeds), 1),
    }
    out["targets"] = {"zero_shot_at_least_0.70_every_seed": out["min_zero_shot_success"] >= 0.70,
                      "finetune_at_most_a_third_of_scratch_every_seed": all(r["at_most_a_third"] for r in seeds)}
    return out


# ------------------------------------------------------------------------------------------------ the runs
def _pretrain(job: dict) -> dict:
    summary, res, _ = bench_learning.train_and_evaluate(
        Path(job["config"]), f"pretrain-{job['seed']}", job["seed"], job["steps"], job["eval_every"],
        job["eval_episodes"], job["final_episodes"], Path(job["out"]), job["overrides"])
    from hilserl.train.checkpoint import resolve_model_dir

    # the final evaluation ran in the pretraining env: the randomized scene, as in training
    return {**summary, "policy": str(resolve_model_dir(res.last_checkpoint)), "run_dir": str(res.run_dir)}


def _zero_shot(job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    import hilserl  # noqa: F401  (before mujoco: the headless GL backend)
    from hilserl.agents.registry import load_policy
    from hilserl.config import load_config
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor
    from hilserl.train.config import TrainConfig
    from hilserl.train.evaluate import evaluate

    agent = load_policy(job["policy"])
    out = {}
    for look in job["looks"]:
        t0 = time.perf_counter()
        cfg = load_config(TrainConfig, Path(job["config"]), [*job["overrides"], f"--env.look={look}"])
        env = SO101GraspCubeEnv(cfg.env)
        res = evaluate(Actor(env, agent, None, seed=job["seed"] + 99), job["episodes"],
                       seed_offset=ZERO_SHOT_SEED_OFFSET)
        env.close()
        lo, hi = res.interval
        out[look] = {"success": round(res.success_rate, 4), "ci95": [round(lo, 3), round(hi, 3)],
                     "successes": res.successes, "episodes": res.episodes,
                     "mean_length": round(statistics.fmean(r["steps"] for r in res.rows), 1),
                     "wall_s": round(time.perf_counter() - t0, 1)}
    return out


def _finetune(job: dict) -> dict:
    """A fine-tune arm (with `init_policy`) or the scratch arm (without), plus the step-0 evaluation of the policy it
    starts from, on the episodes of the run's own evaluations."""
    lines: list[str] = []
    init = job.get("init_policy")
    with_critic = job.get("finetune_critic", "pretrained") == "pretrained"
    warmup = job.get("critic_warmup", 0) if init else 0
    overrides = [*job["overrides"], f"--env.look={job['look']}",
                 *([f"--train.init_policy={init}", f"--train.init_critic={str(with_critic).lower()}"] if init else []),
                 *([f"--train.critic_warmup={warmup}"] if warmup else [])]
    summary, res, cfg = bench_learning.train_and_evaluate(
        Path(job["config"]), f"{job['role']}-{job['seed']}", job["seed"], job["steps"], job["eval_every"],
        job["eval_episodes"], job["final_episodes"], Path(job["out"]), overrides, log=lines.append)

    import torch

    from hilserl.agents.registry import make_agent
    from hilserl.envs import env_spaces
    from hilserl.train.actor import Actor
    from hilserl.train.build import make_env, policy_config
    from hilserl.train.checkpoint import load_initial_policy
    from hilserl.train.evaluate import evaluate
    from hilserl.train.learner_loop import FRESH_CRITIC_NOTE

    # the policy the run started from, evaluated like the loop's evaluations (same env, actor seed and episodes)
    torch.manual_seed(job["seed"])
    agent = make_agent(policy_config(cfg, *env_spaces(cfg.env)))
    if init:
        load_initial_policy(agent, init, with_critic)
    env = make_env(cfg)
    # as the run's evaluations act: the averaged weights (which init_policy carries over) where it keeps an average
    start = evaluate(Actor(env, agent.act_with_average(), None, seed=job["seed"] + 1), job["eval_episodes"])
    env.close()
    evals = [(0, round(start.success_rate, 4)), *map(tuple, summary["evals"])]
    records = [{"env_step": 0, **start.summary()}, *res.evals]
    keep = ("env_step", "success_rate", "mean_reward", "mean_length", "action_jitter")
    initialised = [line.split("policy initialised from ", 1)[1].removesuffix(FRESH_CRITIC_NOTE)
                   for line in lines if "policy initialised from " in line]
    saved = json.loads((res.run_dir / "config.json").read_text())
    return {**summary, "env_steps_to_90": bench_learning.first_at(evals, 0.9),
            "min_eval_after_90": bench_learning.min_after(evals, 0.9), "evals": evals,
            "eval_records": [{k: r.get(k) for k in keep} for r in records],
            "start_success": round(start.success_rate, 4), "look": job["look"],
            "init_policy": saved["train"]["init_policy"],  # as the run folder's config.json records it
            "init_critic": saved["train"]["init_critic"] if init else None,
            "critic_warmup": saved["train"]["critic_warmup"],
            "initialised_from": initialised[0] if initialised else None}  # as the training log says


ROLES = {"pretrain": _pretrain, "zero_shot": _zero_shot, "finetune": _finetune, "scratch": _finetune}


def _child(spec: str, result: str) -> None:
    job = json.loads(spec)
    t0 = time.perf_counter()
    out = ROLES[job["role"]](job)
    Path(result).write_text(json.dumps({**out, "process_wall_s": round(time.perf_counter() - t0, 1)}))


def seed_record(pre: dict, zero: dict, fine: dict, scratch: dict, finetune_steps: int) -> dict:
    """One seed's figures, the target's keys first."""
    looks = {k: v for k, v in zero.items() if k not in ("nominal", "process_wall_s")}
    mean, ci = pooled(looks)
    return {
        "zero_shot_success": mean,
        "zero_shot_success_ci95": ci,
        "finetune_steps_to_90": fine["env_steps_to_90"],
        "scratch_steps_to_90": scratch["env_steps_to_90"],
        **ratio_to_90(fine["env_steps_to_90"], scratch["env_steps_to_90"], finetune_steps),
        "finetune_final_success": fine["final_success_rate"],
        "finetune_final_success_ci95": fine["final_success_ci95"],
        "scratch_final_success": scratch["final_success_rate"],
        "scratch_final_success_ci95": scratch["final_success_ci95"],
        "finetune_look": fine["look"],
        "zero_shot": looks,
        "zero_shot_nominal": zero.get("nominal"),  # the target env's nominal look, for reference (not in the mean)
        "pretrain": {"evals": pre["evals"], "final_success_randomized": pre["final_success_rate"],
                     "final_success_randomized_ci95": pre["final_success_ci95"], "env_steps": pre["env_steps"],
                     "episodes": pre["episodes"], "learner_updates": pre["learner_updates"], "wall_s": pre["wall_s"],
                     "policy": pre["policy"]},
        "finetune": fine,
        "scratch": scratch,
        "wall_s": {"pretrain": pre["process_wall_s"], "zero_shot": zero["process_wall_s"],
                   "finetune": fine["process_wall_s"], "scratch": scratch["process_wall_s"]},
    }


def _shown(path: str) -> str:
    """A config path as the JSON shows it: relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--pretrain_steps", type=int, default=12_000)
    p.add_argument("--finetune_steps", type=int, default=4_000, help="env steps of both fine-tune arms")
    p.add_argument("--eval_every", type=int, default=500)
    p.add_argument("--eval_episodes", type=int, default=20)
    p.add_argument("--final_episodes", type=int, default=50)
    p.add_argument("--zero_shot_episodes", type=int, default=50, help="per held-out look")
    p.add_argument("--finetune_look", default=None, help="the held-out look to fine-tune on (default: the first)")
    p.add_argument("--pretrain_config", default=str(PRETRAIN_CONFIG))
    p.add_argument("--target_config", default=str(TARGET_CONFIG),
                   help="the env of zero-shot and both fine-tune arms (with --env.look)")
    p.add_argument("--finetune_critic", choices=("fresh", "pretrained"), default="pretrained",
                   help="the fine-tune arm's continuous critic: the pretrained one (default) or a fresh one")
    p.add_argument("--critic_warmup", type=int, default=0, metavar="N",
                   help="the fine-tune arm's first N updates train only the critics (--train.critic_warmup; 0: off)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each)")
    p.add_argument("--keep_runs", default=None, metavar="DIR",
                   help="keep every run folder (metrics, checkpoints, best model) under DIR instead of deleting them")
    p.add_argument("--smoke", action="store_true", help="tiny budgets: checks that it runs (the figures mean "
                   "nothing): " + " ".join(f"--{k} {v}" for k, v in SMOKE.items()) + " -- " + " ".join(SMOKE_OVERRIDES))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # child processes only
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", metavar="--section.field=value",
                   help="config overrides for every run, e.g. --policy.mixed_precision=false (after --)")
    args = p.parse_args()
    if args.child:
        return _child(args.child, args.result)
    from hilserl.agents.precision import cpu_description

    looks = heldout_looks()
    look = args.finetune_look or looks[0]
    if look not in looks:
        p.error(f"--finetune_look: expected one of {looks}, got {look!r}")
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    overrides = [*(SMOKE_OVERRIDES if args.smoke else []), *args.overrides]
    out = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="hilserl-transfer-"))
    out.mkdir(parents=True, exist_ok=True)
    common = {"eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
              "final_episodes": args.final_episodes, "overrides": overrides}
    t_start = time.perf_counter()

    def launch(job: dict) -> dict:
        result = out / f"{job['role']}-{job['seed']}.json"
        cmd = [sys.executable, __file__, "--child", json.dumps(job), "--result", str(result)]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{job['role']} seed {job['seed']} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(result.read_text())
        brief = {k: r[k] for k in ("env_steps_to_90", "final_success_rate", "wall_s") if k in r}
        print(f"{job['role']} seed {job['seed']}: {json.dumps(brief or r)}", flush=True)
        return r

    def fine_job(role: str, seed: int, init_policy: str | None = None) -> dict:
        return {"role": role, "seed": seed, "config": args.target_config, "steps": args.finetune_steps,
                "look": look, "init_policy": init_policy, "finetune_critic": args.finetune_critic,
                "critic_warmup": args.critic_warmup,
                "out": str(out / role), **common}

    runs: dict = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            # first the pretraining (the longest chain), then scratch (needs nothing); a seed's zero-shot and
            # fine-tune runs are queued as soon as its pretraining is done
            pre = {pool.submit(launch, {"role": "pretrain", "seed": s, "config": args.pretrain_config,
                                        "steps": args.pretrain_steps, "out": str(out / "pretrain"), **common}): s
                   for s in args.seeds}
            later = {pool.submit(launch, fine_job("scratch", s)): ("scratch", s) for s in args.seeds}
            try:
                for fut in as_completed(pre):
                    s = pre[fut]
                    runs[("pretrain", s)] = r = fut.result()
                    later[pool.submit(launch, {"role": "zero_shot", "seed": s, "config": args.target_config,
                                               "policy": r["policy"], "looks": [*looks, "nominal"],
                                               "episodes": args.zero_shot_episodes, "overrides": overrides})] = \
                        ("zero_shot", s)
                    later[pool.submit(launch, fine_job("finetune", s, r["policy"]))] = ("finetune", s)
                for fut in as_completed(list(later)):
                    runs[later[fut]] = fut.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # a failed run: start no more (running ones finish)
                raise
    finally:
        if not args.keep_runs:
            shutil.rmtree(out, ignore_errors=True)
    per_seed = {str(s): seed_record(runs[("pretrain", s)], runs[("zero_shot", s)], runs[("finetune", s)],
                                    runs[("scratch", s)], args.finetune_steps) for s in args.seeds}
    print(json.dumps({
        "aggregate": aggregate(per_seed), "per_seed": per_seed, "smoke": args.smoke,
        "pretrain_steps": args.pretrain_steps, "finetune_steps": args.finetune_steps, "finetune_look": look,
        "finetune_critic": args.finetune_critic, "critic_warmup": args.critic_warmup,
        "heldout_looks": looks, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
        "final_episodes": args.final_episodes, "zero_shot_episodes": args.zero_shot_episodes,
        "pretrain_config": _shown(args.pretrain_config), "target_config": _shown(args.target_config),
        "overrides": overrides, "cpu": cpu_description(), "jobs": args.jobs, "threads_per_run": 1,
        "wall_s": round(time.perf_counter() - t_start, 1)}))


if __name__ == "__main__":
    main()
