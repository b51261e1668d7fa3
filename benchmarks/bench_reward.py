"""The reward classifier in the simulation: held-out accuracy, and RL with it against RL with ground truth.

1. Record a labelled dataset in the simulation (`collect_sim_dataset`: ~200 positives, ~1,000 negatives from
   expert, hard-negative and random episodes; gripper + front cameras; labels = ground truth).
2. Train the classifier (frozen EfficientNet-Lite0, trim_head, cached shifts, 300 head steps), measure it on
   held-out episodes (split by episode) and pick the threshold for precision 0.99.
3. Train SAC twice with the same budget (state-only config, `--steps` env steps, same seed): once with
   reward.type=ground_truth and once with reward.type=classifier (the classifier renders its cameras itself, the
   policy sees only state). Both final policies are evaluated the same way: `--final_episodes` deterministic
   episodes in the plain simulation, success = ground truth. The classifier run's policy is also rolled out in
   the classifier-wrapped env to count classifier/ground-truth disagreements and false successes.

Prints one JSON object as its last line. Use `--torch_threads=1` when other jobs share the machine.

    python benchmarks/bench_reward.py                  # everything (~10 min on 1 core)
    python benchmarks/bench_reward.py --skip_rl        # dataset + classifier only (~1.5 min)
    python benchmarks/bench_reward.py --smoke          # every stage on a tiny budget (seconds; figures mean nothing)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

import hilserl  # noqa: F401
from hilserl.config import load_config
from hilserl.reward import collect_sim_dataset, load_classifier, load_dataset, train_classifier, wrap_with_classifier
from hilserl.reward.dataset import dataset_summary
from hilserl.reward.train import ClassifierTrainConfig, format_report
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
STATE_CONFIG = ROOT / "configs" / "sim_grasp_state.json"
# --smoke: the smallest budget every stage runs on (the split by episode needs positives on both sides)
SMOKE = {"num_positive": 20, "num_negative": 30, "head_steps": 5, "steps": 60, "final_episodes": 1,
         "rollout_episodes": 1, "demos": 1}


def rl_run(name: str, steps: int, out: Path, seed: int, threads: int, final_episodes: int, extra: list[str]):
    from hilserl.agents.sac import SACAgent
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor
    from hilserl.train.checkpoint import resolve_model_dir
    from hilserl.train.evaluate import evaluate

    cfg = load_config(TrainConfig, STATE_CONFIG, [
        f"--train.total_env_steps={steps}", "--train.eval_every=0", f"--train.checkpoint_every={steps}",
        f"--train.seed={seed}", f"--train.torch_threads={threads}", f"--output_dir={out}", f"--run_name={name}",
        "--buffers.on_disk=false", *extra])
    t0 = time.perf_counter()
    res = train(cfg, log=lambda line: print(f"[{name}] {line}", flush=True) if not line.startswith("Episode") else None)
    train_s = time.perf_counter() - t0
    agent = SACAgent.load(resolve_model_dir(res.last_checkpoint))
    env = SO101GraspCubeEnv(cfg.env)
    final = evaluate(Actor(env, agent, None, seed=seed + 99), final_episodes, seed_offset=50_000_000)
    env.close()
    out_rec = {"success": final.success_rate, "episodes": final.episodes, "train_s": round(train_s, 1),
               "train_episodes": res.episodes, "agent": agent, "cfg": cfg}
    print(f"[{name}] final ground-truth success {final.success_rate:.2f} ({final.successes}/{final.episodes}) "
          f"after {res.env_steps} env steps, {res.episodes} episodes, {train_s:.0f} s", flush=True)
    return out_rec


def classifier_rollouts(agent, cfg, classifier, episodes: int, seed: int) -> dict:
    """The classifier-trained policy in the classifier-wrapped env: disagreements and false successes."""
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor

    env = wrap_with_classifier(SO101GraspCubeEnv(cfg.env), cfg.reward, classifier)
    actor = Actor(env, agent, None, seed=seed + 7)
    frames = disagree = clf_success = false_success = gt_success = 0
    for ep in range(episodes):
        last = {}

        def on_step(obs, info, last=last):
            nonlocal frames, disagree
            if "classifier_disagrees" in info:
                frames += 1
                disagree += int(info["classifier_disagrees"])
            last.update(info)
            last["gt_any"] = last.get("gt_any", False) or bool(info.get("is_success"))

        actor.run_episode(90_000_000 + ep, 0, None, explore=False, on_step=on_step)
        clf_success += int(last.get("classifier_success", False))
        false_success += int(last.get("classifier_false_success", False))
        gt_success += int(last.get("gt_any", False))
    env.close()
    return {"episodes": episodes, "classifier_successes": clf_success, "ground_truth_successes": gt_success,
            "classifier_false_successes": false_success, "frame_disagreement_rate": round(disagree / max(1, frames), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num_positive", type=int, default=200)
    ap.add_argument("--num_negative", type=int, default=1000)
    ap.add_argument("--cameras", default="gripper,front")
    ap.add_argument("--head_steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=3000, help="env steps per RL run")
    ap.add_argument("--final_episodes", type=int, default=50)
    ap.add_argument("--rollout_episodes", type=int, default=20,
                    help="episodes of the classifier run's policy in the classifier-wrapped env")
    ap.add_argument("--demos", type=int, default=None, help="scripted demos per RL run (default: the config's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch_threads", type=int, default=1)
    ap.add_argument("--skip_rl", action="store_true")
    ap.add_argument("--out", default=None, help="keep everything here (default: a temporary folder)")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny budget for every stage (checks that it runs; the figures mean nothing): "
                         + ", ".join(f"--{k} {v}" for k, v in SMOKE.items()))
    args = ap.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    torch.set_num_threads(args.torch_threads)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_reward_"))
    t0 = time.perf_counter()
    try:
        ds_dir = out / "dataset"
        if ds_dir.exists():
            shutil.rmtree(ds_dir)
        collect_sim_dataset(ds_dir, args.num_positive, args.num_negative, seed=args.seed,
                            cameras=tuple(args.cameras.split(",")))
        ds = load_dataset(ds_dir)
        print(dataset_summary(ds), flush=True)
        collect_s = time.perf_counter() - t0
        res = train_classifier(ds, out / "classifier", ClassifierTrainConfig(steps=args.head_steps, seed=args.seed,
                                                                             torch_threads=args.torch_threads),
                               log=lambda s: print(s, flush=True))
        print(format_report(res), flush=True)
        result = {**{k: res.summary()[k] for k in ("accuracy", "precision", "recall", "f1", "threshold", "n_train",
                                                   "n_test")},
                  "confusion_matrix": res.metrics["confusion_matrix"], "target_reached": res.target_reached,
                  "metrics_at_0.5": {k: res.metrics_at_half[k] for k in ("accuracy", "precision", "recall", "f1")},
                  "cameras": list(ds.cameras), "n_positive": ds.num_positive, "n_negative": ds.num_negative,
                  "n_episodes": len(ds.episodes), "collect_s": round(collect_s, 1),
                  "classifier_train_s": round(res.seconds, 1)}
        if not args.skip_rl:
            demos = [] if args.demos is None else [f"--train.num_demos={args.demos}"]
            gt = rl_run("ground_truth", args.steps, out / "runs", args.seed, args.torch_threads,
                        args.final_episodes, ["--reward.type=ground_truth", *demos])
            cl = rl_run("classifier", args.steps, out / "runs", args.seed, args.torch_threads, args.final_episodes,
                        ["--reward.type=classifier", f"--reward.classifier_path={out / 'classifier'}", *demos])
            roll = classifier_rollouts(cl["agent"], cl["cfg"], load_classifier(out / "classifier"),
                                       args.rollout_episodes, args.seed)
            result.update({
                "rl_success_with_classifier": round(cl["success"], 4),
                "rl_success_with_ground_truth": round(gt["success"], 4),
                "rl_env_steps": args.steps, "rl_final_episodes": args.final_episodes, "rl_config": "sim_grasp_state",
                "rl_train_s": {"ground_truth": gt["train_s"], "classifier": cl["train_s"]},
                "rl_train_episodes": {"ground_truth": gt["train_episodes"], "classifier": cl["train_episodes"]},
                "classifier_policy_rollouts": roll,
            })
        else:
            result.update({"rl_success_with_classifier": None, "rl_success_with_ground_truth": None})
        result["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
