"""The one entry point: `hilserl <command>`."""

from __future__ import annotations

import argparse
import sys

import hilserl  # noqa: F401  (chooses the GL backend before MuJoCo loads)


def _cmd_demo(args) -> int:
    from rich.console import Console

    from hilserl.sim.demo import run_expert_demo

    console = Console()
    console.print("[bold]hilserl demo[/bold]: scripted expert grasping the cube in the SO-101 simulation")

    def progress(i, n, ok, steps):
        console.print(f"  episode {i}/{n}: {'SUCCESS' if ok else 'FAIL'} after {steps} steps")

    res = run_expert_demo(args.out, episodes=args.episodes, seed=args.seed, progress=progress)
    console.print(f"success {res.successes}/{res.episodes}")
    console.print(f"video:         {res.video}")
    console.print(f"contact sheet: {res.contact_sheet}")
    return 0


def _cmd_sim_export(args) -> int:
    from hilserl.sim.scene import build_mjcf

    with open(args.path, "w") as f:
        f.write(build_mjcf())
    print(f"wrote {args.path}")
    return 0


def _cmd_sim_expert(args) -> int:
    import numpy as np

    from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
    from hilserl.sim.expert import ScriptedExpert

    env = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state"))
    expert = ScriptedExpert(env)
    wins, lengths = 0, []
    for ep in range(args.episodes):
        env.reset(seed=args.seed + ep)
        expert.reset()
        for t in range(env.max_episode_steps):
            _, _, term, trunc, info = env.step(expert.act())
            if term or trunc:
                break
        wins += int(info["is_success"])
        lengths.append(t + 1)
    print(f"expert success {wins}/{args.episodes} ({wins / args.episodes:.1%}), mean steps {np.mean(lengths):.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hilserl", description="HIL-SERL for the SO-101 arm")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the simulation demo (expert episodes → video + contact sheet)")
    d.add_argument("--out", default="outputs/demo")
    d.add_argument("--episodes", type=int, default=6)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)
    s = sub.add_parser("sim", help="simulation tools")
    ssub = s.add_subparsers(dest="sim_command", required=True)
    e = ssub.add_parser("export-mjcf", help="write the scene's MJCF to a file (open it in MuJoCo's viewer)")
    e.add_argument("path")
    e.set_defaults(func=_cmd_sim_export)
    x = ssub.add_parser("expert", help="measure the scripted expert's success rate")
    x.add_argument("--episodes", type=int, default=100)
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=_cmd_sim_expert)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
