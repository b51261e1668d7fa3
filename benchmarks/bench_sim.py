"""Simulation speed and scripted-expert reliability.

pixel_steps_per_s: control steps per second (10 Hz control, physics substeps, IK, one 128x128 gripper camera
rendered headless) on one thread; state_steps_per_s: the same without rendering. expert_success_rate: the scripted
expert over `episodes` seeded episodes with the default randomization (end-effector and cube reset noise).

`--config PATH` measures that config's `env` section instead (e.g. configs/sim_pretrain.json, domain randomization
on; the expert then runs under its physics and latency hooks too) and, in the same process, the same env with
randomization off and the nominal look, alternating `--rounds` times: `nominal_pixel_steps_per_s` and
`pixel_rate_vs_nominal` (the config's pixel rate over the nominal one, 1.0 = as fast). The randomization is
measured without the config's canonical view (`env.canonical_view`, a second render for the learner, not part of
what the camera sees); when the config has one, `canonical_rate_vs_nominal` is the rate with it, in the same rounds.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

os.environ.setdefault("LP_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import hilserl  # noqa: E402,F401
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv  # noqa: E402
from hilserl.sim.randomization import DomainRandomization  # noqa: E402
from hilserl.sim.expert import expert_success_rate  # noqa: E402


def steps_per_second(env: SO101GraspCubeEnv, seconds: float) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a = rng.uniform([-1, -1, -1, 0], [1, 1, 1, 2]).astype(np.float32)
        _, _, term, trunc, _ = env.step(a)
        n += 1
        if term or trunc:
            env.reset(seed=n)
    return n / (time.perf_counter() - start)


def load_env(path: str) -> GraspCubeConfig:
    """The `env` section of the training config at `path` (a simulation one, else SystemExit)."""
    from hilserl.config import load_config
    from hilserl.train.config import TrainConfig

    env = load_config(TrainConfig, path, []).env
    if not isinstance(env, GraspCubeConfig):
        raise SystemExit(f"--config {path}: env.type must be 'sim' to benchmark the simulation")
    return env


def env_config(env: GraspCubeConfig | None) -> GraspCubeConfig:
    """What is measured: the nominal camera setup, or `env` (a config's section) without its canonical view."""
    if env is None:
        return GraspCubeConfig(cameras=("gripper",), image_size=128)
    return dataclasses.replace(env, obs_type="pixels_state", cameras=("gripper",), canonical_view=False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--config", default=None, help="a training config whose env section to measure")
    p.add_argument("--rounds", type=int, default=2, help="with --config: alternations of nominal and config")
    args = p.parse_args()

    source = load_env(args.config) if args.config else None
    cfg = env_config(source)
    result: dict = {}
    pixel_env = SO101GraspCubeEnv(cfg)
    if args.config is None:
        pixel_sps = steps_per_second(pixel_env, args.seconds)
    else:
        envs = {"nominal": SO101GraspCubeEnv(dataclasses.replace(cfg, randomization=DomainRandomization(),
                                                                 look="nominal")), "config": pixel_env}
        if source.canonical_view:
            envs["canonical"] = SO101GraspCubeEnv(dataclasses.replace(cfg, canonical_view=True))
        rates: dict[str, list[float]] = {k: [] for k in envs}
        for _ in range(args.rounds):
            for name, env in envs.items():
                rates[name].append(steps_per_second(env, args.seconds))
        pixel_sps, nominal_sps = float(np.mean(rates["config"])), float(np.mean(rates["nominal"]))
        result.update(config=args.config, nominal_pixel_steps_per_s=round(nominal_sps, 1),
                      pixel_rate_vs_nominal=round(pixel_sps / nominal_sps, 3))
        if "canonical" in rates:
            result["canonical_rate_vs_nominal"] = round(float(np.mean(rates["canonical"])) / nominal_sps, 3)
        result["rounds"] = {k: [round(r, 1) for r in v] for k, v in rates.items()}
        for name, env in envs.items():
            if name != "config":
                env.close()
    pixel_env.close()
    state_env = SO101GraspCubeEnv(dataclasses.replace(cfg, obs_type="state"))
    state_sps = steps_per_second(state_env, args.seconds)

    wins, lengths = expert_success_rate(state_env, args.episodes, seed=10_000)
    result = {
        "pixel_steps_per_s": round(pixel_sps, 1),
        **result,
        "state_steps_per_s": round(state_sps, 1),
        "expert_success_rate": wins / args.episodes,
        "expert_mean_steps": round(float(np.mean(lengths)), 2),
        "episodes": args.episodes,
        "gl_backend": os.environ.get("MUJOCO_GL"),
        "control_hz": state_env.cfg.fps,
        "physics_substeps": state_env.n_substeps,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
