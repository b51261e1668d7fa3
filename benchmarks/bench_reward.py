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

`--robust` measures instead whether the classifier survives a camera it never saw (no RL):

1. three classifiers: *nominal* (the simulation's defaults, no randomization; images only), *randomized* (the
   env section of `--train_config`, `configs/sim_pretrain.json`: every randomization hook on but image_color; a
   held-out look there is refused; images only) and *randomized_arm* (the same frames, the images and what the arm measured:
   the gripper's opening, velocity and command and the end-effector's height, with the arm-only veto, as
   `hilserl reward train` does by default); each picks its
   threshold for precision 0.99 on its own held-out split (by episode), as `hilserl reward train` does;
2. evaluation datasets from episodes neither saw (other seeds): `nominal`, `camera_pose` (the simulation's
   defaults with only the gripper-camera pose jitter, up to 3 mm / 3 degrees), and the held-out looks `heldout_a`,
   `heldout_b`, `heldout_c` (`--eval_config`'s env with `env.look` set: the look's table, backdrop, light and
   camera mounting, with the preset's other hooks still drawing);
3. every classifier on every evaluation set at its own threshold: precision, recall, accuracy, counts; and how
   many false positives are near the bar (the cube held in both jaws, its bottom 1-2 cm up: no success only by
   millimetres, `near_the_bar`), with the precision without those frames (`precision_away_from_the_bar`,
   `target_met_away_from_the_bar`) beside the plain one (`target_met_on_heldout_looks`).
   `--errors DIR` saves a PNG per classifier and set of its false positives and false negatives.

Prints one JSON object as its last line. Use `--torch_threads=1` when other jobs share the machine.

    python benchmarks/bench_reward.py                  # everything (~10 min on 1 core)
    python benchmarks/bench_reward.py --skip_rl        # dataset + classifier only (~1.5 min)
    python benchmarks/bench_reward.py --smoke          # every stage on a tiny budget (seconds; figures mean nothing)
    python benchmarks/bench_reward.py --robust         # nominal vs randomized classifier on held-out looks
    python benchmarks/bench_reward.py --robust --smoke # the same on a tiny budget
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

import hilserl  # noqa: F401
from hilserl.config import load_config
from hilserl.reward import collect_sim_dataset, load_classifier, load_dataset, train_classifier, wrap_with_classifier
from hilserl.reward.dataset import dataset_summary
from hilserl.reward.sim_dataset import near_the_bar
from hilserl.reward.train import ClassifierTrainConfig, format_report
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
STATE_CONFIG = ROOT / "configs" / "sim_grasp_state.json"
# --smoke: the smallest budget every stage runs on (the split by episode needs positives on both sides)
SMOKE = {"num_positive": 20, "num_negative": 30, "head_steps": 5, "steps": 60, "final_episodes": 1,
         "rollout_episodes": 1, "demos": 1}
PRESET_CONFIG = ROOT / "configs" / "sim_pretrain.json"
EVAL_SETS = ("nominal", "camera_pose", "heldout_a", "heldout_b", "heldout_c")
# --robust --smoke: tiny datasets (figures mean nothing)
ROBUST_SMOKE = {"num_positive": 20, "num_negative": 30, "train_positive": 20, "train_negative": 30,
                "eval_positive": 4, "eval_negative": 8, "head_steps": 5, "train_head_steps": 5}
TARGET = {"precision": 0.99, "recall": 0.95}


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


# ============================================================================================= --robust
def cpu_info() -> dict:
    """The CPU's model name (as lscpu shows it) and whether it has native bf16 (avx512_bf16)."""
    import os

    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": name or platform.processor() or platform.machine(), "avx512_bf16": "avx512_bf16" in flags,
            "cores": os.cpu_count()}


def env_section(path) -> "object":
    from hilserl.cli_robot import load_env_config

    return load_env_config(str(path), [])


def robust_datasets(args, out: Path) -> dict:
    """Collect the two training datasets and the evaluation sets; returns name -> dataset folder."""
    import dataclasses

    from hilserl.sim.env import GraspCubeConfig

    train_env = env_section(args.train_config)
    if train_env.look != "nominal":
        raise SystemExit(f"--train_config {args.train_config}: env.look is {train_env.look!r}; the randomized "
                         "classifier trains on the randomization presets only, never on a held-out look")
    eval_env = env_section(args.eval_config)
    plans = {
        "train_nominal": (None, args.seed, args.num_positive, args.num_negative),
        "train_randomized": (train_env, args.seed + 1, args.train_positive, args.train_negative),  # frame_keep below
        "eval_nominal": (None, 1000 + args.seed, args.eval_positive, args.eval_negative),
        "eval_camera_pose": (GraspCubeConfig(randomization=dataclasses.replace(
            GraspCubeConfig().randomization, camera_pose=True)), 1001 + args.seed, args.eval_positive,
            args.eval_negative),
    }
    for i, look in enumerate(("heldout_a", "heldout_b", "heldout_c")):
        plans[f"eval_{look}"] = (dataclasses.replace(eval_env, look=look), 1002 + i + args.seed, args.eval_positive,
                                 args.eval_negative)
    dirs = {}
    for name, (env_cfg, seed, npos, nneg) in plans.items():
        t = time.perf_counter()
        d = out / name
        keep = args.train_frame_keep if name == "train_randomized" else 0.4  # 0.4: collect_sim_dataset's default
        collect_sim_dataset(d, npos, nneg, seed=seed, cameras=tuple(args.cameras.split(",")), overwrite=True,
                            env_config=env_cfg, frame_keep=keep)
        ds = load_dataset(d)
        print(f"{name}: {ds.num_positive} positive, {ds.num_negative} negative, {len(ds.episodes)} episodes, "
              f"look {ds.manifest['info']['look']}, {time.perf_counter() - t:.0f} s", flush=True)
        dirs[name] = d
    return dirs


def error_grid(path: Path, ds, idx, probs, title: str, max_frames: int = 48) -> None:
    """A PNG of the frames at `idx` (every camera side by side), each with its probability and episode kind."""
    import cv2
    import numpy as np

    kinds = {e["id"]: e.get("kind", "") for e in ds.episodes}
    idx = list(idx)[:max_frames]
    tiles = []
    for i in idx:
        tile = np.concatenate([ds.images[c][i] for c in ds.cameras], axis=1)[:, :, ::-1].copy()
        text = f"{probs[i]:.2f} {kinds[int(ds.episode_ids[i])]} s{int(ds.steps[i])}"
        cv2.putText(tile, text, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        return
    h, w = tiles[0].shape[:2]
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    grid = np.full((rows * h + 20, cols * w, 3), 40, np.uint8)
    cv2.putText(grid, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[20 + r * h:20 + (r + 1) * h, c * w:(c + 1) * w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid)


def robust(args, out: Path) -> dict:
    import numpy as np

    from hilserl.reward.train import cache_features, classification_metrics, predict_from_features

    t0 = time.perf_counter()
    dirs = robust_datasets(args, out)
    collect_s = time.perf_counter() - t0
    classifiers, summary, features = {}, {}, {}  # the randomized frames' maps are computed once for both heads
    for name, data, steps, shifts, arm in (
            ("nominal", "nominal", args.head_steps, 4, False),
            ("randomized", "randomized", args.train_head_steps, args.train_num_shifts, False),
            ("randomized_arm", "randomized", args.train_head_steps, args.train_num_shifts, True)):
        ds = load_dataset(dirs[f"train_{data}"])
        res = train_classifier(ds, out / f"classifier_{name}",
                               ClassifierTrainConfig(steps=steps, seed=args.seed, torch_threads=args.torch_threads,
                                                     num_shifts=shifts, arm_state=arm),
                               log=lambda s: print(s, flush=True), feature_cache=features)
        print(f"[{name}]\n{format_report(res)}", flush=True)
        classifiers[name] = res.classifier
        summary[name] = {"threshold": round(res.threshold, 4), "target_reached": res.target_reached,
                         "train_frames": {"positive": ds.num_positive, "negative": ds.num_negative,
                                          "episodes": len(ds.episodes)},
                         "arm_state": arm, "head_steps": steps, "num_shifts": shifts,
                         "train_s": round(res.seconds, 1),
                         "frame_keep": ds.manifest["info"]["frame_keep"],
                         "own_split": {k: res.metrics[k] for k in ("precision", "recall", "accuracy", "n")},
                         "hooks": ds.manifest["info"]["randomization"]}
    backbone = classifiers["nominal"].backbone  # the same frozen backbone serves both heads
    evals = {}
    for name in EVAL_SETS:
        ds = load_dataset(dirs[f"eval_{name}"])
        feats = {cam: cache_features(backbone, ds.images[cam], 1, 0) for cam in ds.cameras}
        near = near_the_bar(ds)  # held in both jaws 1-2 cm up: not successes only by millimetres
        row = {"frames": {"positive": ds.num_positive, "negative": ds.num_negative, "episodes": len(ds.episodes)},
               "look": ds.manifest["info"]["look"], "hooks": ds.manifest["info"]["randomization"],
               "near_the_bar": int(near.sum())}
        for cname, clf in classifiers.items():
            probs = predict_from_features(clf, feats, arm=ds.arm if clf.needs_state else None)
            m = classification_metrics(probs, ds.labels, clf.threshold)
            row[cname] = {k: m[k] for k in ("precision", "recall", "accuracy", "tp", "fp", "fn", "tn")}
            away = classification_metrics(probs[~near], ds.labels[~near], clf.threshold)
            row[cname]["fp_near_the_bar"] = m["fp"] - away["fp"]
            row[cname]["precision_away_from_the_bar"] = away["precision"]
            if args.errors:
                pred = probs > clf.threshold
                for what, idx in (("false_positives", np.flatnonzero(pred & ~ds.labels)),
                                  ("false_negatives", np.flatnonzero(~pred & ds.labels))):
                    error_grid(Path(args.errors) / f"{cname}_{name}_{what}.png", ds, idx, probs,
                               f"{cname} classifier, {name}: {len(idx)} {what.replace('_', ' ')} "
                               f"(threshold {clf.threshold:.3f})")
        evals[name] = row
        print(f"{name:<12} " + "  ".join(
            f"{c}: precision {row[c]['precision']:.4f} recall {row[c]['recall']:.4f} (fp {row[c]['fp']}, "
            f"{row[c]['fp_near_the_bar']} near the bar, fn {row[c]['fn']})" for c in classifiers), flush=True)
    looks = [n for n in EVAL_SETS if n.startswith("heldout")]
    met = {c: all(evals[n][c]["precision"] >= TARGET["precision"] and evals[n][c]["recall"] >= TARGET["recall"]
                  for n in looks) for c in classifiers}
    away = {c: all(evals[n][c]["precision_away_from_the_bar"] >= TARGET["precision"]
                   and evals[n][c]["recall"] >= TARGET["recall"] for n in looks) for c in classifiers}
    return {"mode": "robust", "target": TARGET, "target_met_on_heldout_looks": met,
            "target_met_away_from_the_bar": away,
            "classifiers": summary, "eval": evals,
            "train_config": str(Path(args.train_config)), "eval_config": str(Path(args.eval_config)),
            "cameras": args.cameras.split(","), "collect_s": round(collect_s, 1), **cpu_info(),
            "torch_threads": args.torch_threads, "smoke": bool(args.smoke)}


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
    ap.add_argument("--robust", action="store_true",
                    help="no RL: the nominal-trained and the randomized-trained classifier on held-out looks and "
                         "under the camera_pose jitter (see above)")
    ap.add_argument("--train_config", default=str(PRESET_CONFIG),
                    help="--robust: the config whose env section the randomized classifier trains in")
    ap.add_argument("--eval_config", default=str(PRESET_CONFIG),
                    help="--robust: the config whose env section the held-out looks are drawn in")
    ap.add_argument("--train_positive", type=int, default=800, help="--robust: the randomized dataset's positives")
    ap.add_argument("--train_negative", type=int, default=3000, help="--robust: the randomized dataset's negatives")
    ap.add_argument("--train_frame_keep", type=float, default=0.15,
                    help="--robust: share of the randomized episodes' frames stored (fewer per episode: more looks)")
    ap.add_argument("--train_num_shifts", type=int, default=2, help="--robust: cached shifts per randomized frame")
    ap.add_argument("--train_head_steps", type=int, default=1000, help="--robust: the randomized head's steps")
    ap.add_argument("--eval_positive", type=int, default=200, help="--robust: success frames per evaluation set")
    ap.add_argument("--eval_negative", type=int, default=400, help="--robust: other frames per evaluation set")
    ap.add_argument("--errors", default=None, help="--robust: save grids of the misclassified frames here")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny budget for every stage (checks that it runs; the figures mean nothing): "
                         + ", ".join(f"--{k} {v}" for k, v in SMOKE.items())
                         + "; with --robust: " + ", ".join(f"--{k} {v}" for k, v in ROBUST_SMOKE.items()))
    args = ap.parse_args()
    if args.smoke:
        for k, v in (ROBUST_SMOKE if args.robust else SMOKE).items():
            setattr(args, k, v)
    torch.set_num_threads(args.torch_threads)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_reward_"))
    t0 = time.perf_counter()
    try:
        if args.robust:
            result = robust(args, out)
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(result))
            return
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
