"""The one entry point: `hilserl <command>`. Settings come from a JSON config plus `--section.key=value` overrides.

Training, eval, doctor/plot/health, the demo and the sim tools live here; the reward-classifier commands in
`hilserl.cli_reward`, the real-arm and dataset commands in `hilserl.cli_robot`, the encoder probe in
`hilserl.cli_probe`."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import hilserl  # noqa: F401  (chooses the GL backend before MuJoCo loads)

DEFAULT_CONFIG = "configs/sim_grasp.json"


def rich_console():
    """The console every command prints to (rich markup, no highlighting, long lines kept whole)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _train_with_progress(train, cfg, console, resume=False, log=None):
    """Run `train` under a rich progress bar over environment steps; log lines print above the bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} env steps"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("train", total=cfg.train.total_env_steps)
        return train(cfg, resume=resume, log=log or console.print,
                     progress=lambda done, total: bar.update(task, completed=min(done, total)))


def _load_train_config(path, overrides):
    from hilserl.config import load_config
    from hilserl.train.config import TrainConfig

    return load_config(TrainConfig, path, overrides)


# ------------------------------------------------------------------------------------------------ train
def _cmd_train(args, overrides) -> int:
    from hilserl.monitor.doctor import diagnose
    from hilserl.monitor.doctor_report import render_table
    from hilserl.monitor.health import TrainingHealthError
    from hilserl.monitor.plots import plot_training
    from hilserl.train.loop import train

    console = rich_console()
    cfg = _load_train_config(args.config_path, overrides)
    findings = diagnose(cfg)
    render_table(findings, console)
    if any(f.severity == "error" for f in findings) and not args.ignore_doctor:
        console.print("[red]The config doctor found errors; fix them or pass --ignore_doctor.[/red]")
        return 1
    page = _start_console(args, console) if args.console else None
    try:
        res = _train_with_progress(functools.partial(train, console=page), cfg, console, resume=args.resume)
    except TrainingHealthError as e:
        console.print(f"[red]training stopped[/red]: {e}")
        return 4
    finally:
        if page is not None:
            page.close()
    plots = plot_training(res.run_dir)
    console.print(f"\n[bold]done[/bold]: {res.env_steps} env steps, {res.episodes} episodes, "
                  f"{res.learner_updates} learner updates in {res.wall_s / 60:.1f} min")
    console.print(f"run folder:  {res.run_dir}")
    console.print(f"checkpoint:  {res.last_checkpoint}")
    console.print(f"plots:       {res.run_dir / 'plots'} ({len(plots)} PNG)")
    console.print(f"metrics:     {res.run_dir / 'metrics'} (CSV), {res.run_dir / 'tensorboard'} (tensorboard --logdir)")
    return 0


def _start_console(args, console):
    """The browser console for `--console`: refused (ConsoleError) before anything starts when it would
    listen beyond loopback without a token."""
    from hilserl.console import ConsoleError
    from hilserl.console.server import ConsoleServer
    from hilserl.console.session import Console
    from hilserl.distributed.auth import AuthError, load_token

    try:
        token = load_token(args.console_token_file)
    except AuthError as e:
        raise ConsoleError(str(e).replace("transport.token_file", "--console_token_file")) from None
    page = Console(log=console.print)
    page.server = ConsoleServer(page.hub, args.console_host, args.console_port, token).start()
    console.print(f"console: {page.server.url} (keys and panels: docs/console.md)")
    return page


# ------------------------------------------------------------------------------------------------ learner / actor
def _log_line(line: str) -> None:
    print(line, flush=True)


def _transport_logging() -> None:
    """Transport events to stderr with timestamps; `kill -USR1 <pid>` prints every thread's stack (a stuck link)."""
    import faulthandler
    import logging
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _cmd_learner(args, overrides) -> int:
    from hilserl.distributed.auth import AuthError
    from hilserl.monitor.doctor import diagnose
    from hilserl.monitor.doctor_report import render_table
    from hilserl.monitor.health import TrainingHealthError
    from hilserl.train.learner_process import run_learner

    cfg = _load_train_config(args.config_path, overrides)
    findings = diagnose(cfg)
    render_table(findings, rich_console())
    if any(f.severity == "error" for f in findings) and not args.ignore_doctor:
        print("The config doctor found errors; fix them or pass --ignore_doctor.", file=sys.stderr)
        return 1
    _transport_logging()
    try:
        res = run_learner(cfg, resume=args.resume, log=_log_line)
    except AuthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingHealthError as e:
        print(f"training stopped: {e}", file=sys.stderr)
        return 4
    _log_line(f"done: {res.env_steps} env steps, {res.learner_updates} learner updates in {res.wall_s / 60:.1f} min; "
              f"run folder {res.run_dir}")
    return 0


def _cmd_actor(args, overrides) -> int:
    import re
    import socket

    from hilserl.distributed.auth import AuthError
    from hilserl.distributed.client import TransportError
    from hilserl.train.actor_process import run_actor

    cfg = _load_train_config(args.config_path, overrides)
    actor_id = args.actor_id or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", actor_id):
        print(f"error: --actor_id {actor_id!r}: expected 1-64 characters from A-Z a-z 0-9 _ . -", file=sys.stderr)
        return 2
    _transport_logging()
    page = _start_console(args, rich_console()) if args.console else None
    try:
        run_actor(cfg, args.learner, actor_id, log=_log_line, console=page)
    except (TransportError, AuthError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    finally:
        if page is not None:
            page.close()
    return 0


# ------------------------------------------------------------------------------------------------ eval
def run_eval(checkpoint: str, num_episodes: int, out_dir: Path | None, fixed_reset: bool, video_episodes: int,
             seed: int, console, config_path: str | None = None, overrides: list[str] | None = None,
             page=None) -> dict:
    """Evaluate a policy in the env of its training config, or in the env (and reward) of `config_path`: the
    real arm for a policy trained there or pretrained in the simulation. `page`: the browser console, or None
    (Stop ends the evaluation early: the episodes run so far are its result)."""
    from hilserl.agents.registry import load_policy
    from hilserl.config import ConfigError, from_dict
    from hilserl.train.actor import Actor
    from hilserl.train.build import make_env
    from hilserl.train.checkpoint import resolve_model_dir
    from hilserl.train.config import TrainConfig, upgrade_saved_config
    from hilserl.train.evaluate import evaluate, plot_success_map, print_table

    model_dir = resolve_model_dir(checkpoint)
    cfg_file = model_dir / "train_config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{model_dir}: no train_config.json next to the model (not a hilserl checkpoint?)")
    cfg = from_dict(TrainConfig, upgrade_saved_config(json.loads(cfg_file.read_text())))
    if config_path is not None:
        from hilserl.config import load_config

        cfg = load_config(TrainConfig, config_path, overrides or [])
    elif overrides:
        raise ConfigError(f"{overrides[0]}: overrides need --config_path (the checkpoint's own config is used as is)")
    agent = load_policy(model_dir)  # as the run evaluated it: the averaged weights where it kept an average
    env = make_env(cfg)
    actor = Actor(env, agent, None, seed=seed)
    out_dir = Path(out_dir) if out_dir else model_dir.parent / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "eval_episodes.mp4" if video_episodes > 0 else None
    console.print(f"evaluating {model_dir} on {num_episodes} episodes "
                  f"({'fixed' if fixed_reset else 'random'} reset, deterministic policy)")
    hooks = {}
    if page is not None:
        page.attach_eval(cfg, actor, num_episodes, out_dir)
        hooks = {"before_episode": page.before_episode, "on_episode": lambda row: page.episode_done(
            {"episode": row["episode"], "reward": row["reward"], "length": row["steps"], "intervention_rate": 0.0,
             "success": row["success"]})}
    res = evaluate(actor, num_episodes, fixed_reset=fixed_reset, video_path=video, video_episodes=video_episodes,
                   **hooks)
    env.close()
    if not res.rows:
        raise RuntimeError("the evaluation was stopped before its first episode ended: nothing to report")
    print_table(res, console, getattr(cfg.env, "action_scale", None))
    summary = {"checkpoint": str(model_dir), "fixed_reset": fixed_reset, **res.summary()}
    (out_dir / "eval.json").write_text(json.dumps({"summary": summary, "episodes": res.rows}, indent=2))
    success_map = plot_success_map(res, out_dir / "success_map.png")
    console.print(f"results:     {out_dir / 'eval.json'}")
    console.print(f"success map: {success_map}")
    if video:
        console.print(f"video:       {video}")
    return summary


def _cmd_eval(args, overrides) -> int:
    console = rich_console()
    page = _start_console(args, console) if args.console else None
    try:
        run_eval(args.checkpoint, args.num_episodes, args.out, args.fixed_reset, args.video_episodes, args.seed,
                 console, args.config_path, overrides, page=page)
    finally:
        if page is not None:
            page.close()
    return 0


# ------------------------------------------------------------------------------------------------ doctor / plot
def _cmd_doctor(args, overrides) -> int:
    from hilserl.monitor.doctor_report import run_doctor

    return run_doctor(args.config_path, overrides, rich_console())


def _cmd_plot(args, overrides) -> int:
    from hilserl.monitor.plots import plot_training

    paths = plot_training(args.run_dir)
    for p in paths:
        print(p)
    if not paths:
        print(f"no metrics to plot in {args.run_dir}")
    return 0


def _cmd_health(args, overrides) -> int:
    from hilserl.monitor.health import check_run

    try:
        monitor, counts = check_run(args.run_dir, args.window)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.run_dir}: {counts['episodes']} episodes, {counts['learner']} learner records checked "
          f"(windows of {monitor.limits.window} episodes; Q must stay within {monitor.limits.min_q:.2f}.."
          f"{monitor.limits.max_q:.2f})")
    for finding in monitor.findings:
        print(finding.line())
    if not monitor.findings:
        print("no problems found")
    return 1 if any(f.severity == "error" for f in monitor.findings) else 0


# ------------------------------------------------------------------------------------------------ demo
def _cmd_demo(args, overrides) -> int:
    console = rich_console()
    if args.expert_only:
        from hilserl.sim.demo import run_expert_demo

        res = run_expert_demo(Path(args.out) / "expert", episodes=6)
        console.print(f"expert success {res.successes}/{res.episodes}\nvideo: {res.video}\n"
                      f"contact sheet: {res.contact_sheet}")
        return 0
    from hilserl.monitor.plots import plot_training
    from hilserl.sim.demo import run_expert_demo
    from hilserl.train.loop import train

    t_start = time.perf_counter()
    steps = args.env_steps
    cfg = _load_train_config(args.config_path, [f"--train.total_env_steps={steps}",
                                                 f"--output_dir={args.out}", "--run_name=train",
                                                 "--train.eval_every=0",  # one evaluation, of the final policy
                                                 f"--train.checkpoint_every={steps}", *overrides])
    run_dir = Path(args.out) / "train"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # the demo always starts from scratch
    expert = run_expert_demo(Path(args.out) / "expert", episodes=6)
    source = "the gripper camera" if cfg.env.obs_type == "pixels_state" else "proprioception and the cube position"
    console.print(f"[bold]hilserl demo[/bold]: HIL-SERL from {source} in the SO-101 simulation, "
                  f"{steps} env steps (expert demo video: {expert.video})")

    def log(line: str) -> None:
        if not line.startswith("Episode") or line.split("|")[0].strip().endswith("0"):
            console.print(line)

    page = _start_console(args, console) if args.console else None
    try:
        res = _train_with_progress(functools.partial(train, console=page), cfg, console, log=log)
        plot_training(res.run_dir)
        console.print(f"trained {res.env_steps} env steps in {res.wall_s / 60:.1f} min; evaluating the final policy")
        if page is not None:
            page.stop_requested = page.paused = False  # a Stop during training ends training, not the evaluation
        summary = run_eval(str(res.last_checkpoint), args.eval_episodes, Path(args.out) / "eval", False, 5, 0,
                           console, page=page)
    finally:
        if page is not None:
            page.close()
    wall = time.perf_counter() - t_start
    jitter = summary.get("action_jitter")
    console.print(f"\n[bold]hilserl demo: {wall / 60:.1f} min in all; success {summary['success_rate']:.0%} "
                  f"({round(summary['success_rate'] * summary['episodes'])}/{summary['episodes']} new episodes, 95% "
                  f"interval {summary['success_ci_low']:.0%}-{summary['success_ci_high']:.0%}); action jitter "
                  f"{'n/a' if jitter is None else f'{jitter:.2f}'} per tick[/bold]")
    console.print(f"policy:     {res.last_checkpoint}\nplots:      {res.run_dir / 'plots'}")
    from hilserl.monitor.health import SHAKING_M

    if jitter is not None and jitter * cfg.env.action_scale > SHAKING_M:
        console.print(f"its moves are jerky: {jitter * cfg.env.action_scale * 1000:.1f} mm of commanded swing per "
                      f"tick (the shaking health check fires above {SHAKING_M * 1000:.0f} mm)")
    return 0


# ------------------------------------------------------------------------------------------------ sim tools
def _cmd_sim_export(args, overrides) -> int:
    from hilserl.sim.scene import build_mjcf

    Path(args.path).write_text(build_mjcf())
    print(f"wrote {args.path}")
    return 0


def _cmd_sim_expert(args, overrides) -> int:
    import numpy as np

    from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
    from hilserl.sim.expert import expert_success_rate

    wins, lengths = expert_success_rate(SO101GraspCubeEnv(GraspCubeConfig(obs_type="state")), args.episodes,
                                        args.seed)
    print(f"expert success {wins}/{args.episodes} ({wins / args.episodes:.1%}), mean steps {np.mean(lengths):.1f}")
    return 0


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hilserl", description="HIL-SERL for the SO-101 arm. Settings: a JSON config "
                                "plus --section.key=value overrides, e.g. --policy.utd_ratio=20")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_train_parser, _add_learner_parser, _add_actor_parser, _add_eval_parser, _add_doctor_parser,
                _add_plot_parser, _add_health_parser, _add_demo_parser, _add_sim_parsers):
        add(sub)
    from hilserl import cli_probe, cli_reward, cli_robot

    cli_probe.add_parsers(sub)  # probe
    cli_reward.add_parsers(sub)  # reward record | reward train
    cli_robot.add_parsers(sub)  # robot calibrate | robot cameras | record | dataset import-lerobot/export-lerobot
    from hilserl import report

    report.add_parser(sub)  # report RUN_DIR [--out FILE]
    return p


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train in the simulation (demos, simulated human, SAC), with checkpoints")
    t.add_argument("--config_path", default=DEFAULT_CONFIG)
    t.add_argument("--resume", action="store_true", help="continue the run in output_dir/run_name")
    t.add_argument("--ignore_doctor", action="store_true", help="train even if the config doctor finds errors")
    _add_console_arguments(t)
    t.set_defaults(func=_cmd_train)


def _add_console_arguments(parser) -> None:
    from hilserl.console import DEFAULT_HOST, DEFAULT_PORT

    parser.add_argument("--console", action="store_true", help="serve the browser console (docs/console.md)")
    parser.add_argument("--console_host", default=DEFAULT_HOST, help="address the console listens on (anything but "
                        "loopback needs a token)")
    parser.add_argument("--console_port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--console_token_file", default=None, help="file holding the console's token (or set "
                        "HILSERL_TOKEN); required beyond loopback, and then asked of every page and control")


def _add_learner_parser(sub) -> None:
    ln = sub.add_parser("learner", help="the learner process: buffers, SAC updates, checkpoints; actors connect over "
                        "gRPC (token: HILSERL_TOKEN or transport.token_file)")
    ln.add_argument("--config_path", default=DEFAULT_CONFIG)
    ln.add_argument("--resume", action="store_true", help="continue the run in output_dir/run_name (after a crash too)")
    ln.add_argument("--ignore_doctor", action="store_true", help="start even if the config doctor finds errors")
    ln.set_defaults(func=_cmd_learner)


def _add_actor_parser(sub) -> None:
    ac = sub.add_parser("actor", help="an actor process: environment, policy and human, feeding a learner")
    ac.add_argument("--config_path", default=DEFAULT_CONFIG)
    ac.add_argument("--learner", required=True, metavar="HOST:PORT", help="address of `hilserl learner`")
    ac.add_argument("--actor_id", default=None, help="stable name of this actor (default: the host name); a "
                    "restarted actor with the same id continues its sequence")
    _add_console_arguments(ac)
    ac.set_defaults(func=_cmd_actor)


def _add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint: table, success rate with 95%% interval, video, map")
    e.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or pretrained_model folder")
    e.add_argument("--num_episodes", type=int, default=20)
    e.add_argument("--fixed_reset", action="store_true", help="nominal gripper and cube positions every episode")
    e.add_argument("--video_episodes", type=int, default=5, help="episodes recorded to mp4 (0: none)")
    e.add_argument("--out", default=None, help="output folder (default: <checkpoint>/eval)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--config_path", default=None, help="evaluate in this config's env and reward (e.g. the real arm: "
                   "configs/so101_grasp.json) instead of the checkpoint's own; takes --env.key=value overrides")
    _add_console_arguments(e)
    e.set_defaults(func=_cmd_eval)


def _add_doctor_parser(sub) -> None:
    d = sub.add_parser("doctor", help="check a training config against HIL-SERL recommendations")
    d.add_argument("--config_path", default=DEFAULT_CONFIG)
    d.set_defaults(func=_cmd_doctor)


def _add_plot_parser(sub) -> None:
    pl = sub.add_parser("plot", help="(re)draw the training plots of a run folder")
    pl.add_argument("run_dir")
    pl.set_defaults(func=_cmd_plot)


def _add_health_parser(sub) -> None:
    hp = sub.add_parser("health", help="run the training health checks over a run folder's metrics")
    hp.add_argument("run_dir")
    hp.add_argument("--window", type=int, default=None, help="episodes per window (default: the run's health.window)")
    hp.set_defaults(func=_cmd_health)


def _add_demo_parser(sub) -> None:
    m = sub.add_parser("demo", help="the simulation demo: train from the gripper camera, evaluate, video")
    m.add_argument("--config_path", default=DEFAULT_CONFIG)
    m.add_argument("--env_steps", type=int, default=3000)
    m.add_argument("--eval_episodes", type=int, default=50)
    m.add_argument("--out", default="outputs/demo")
    m.add_argument("--expert_only", action="store_true", help="only the scripted expert video (seconds)")
    _add_console_arguments(m)
    m.set_defaults(func=_cmd_demo)


def _add_sim_parsers(sub) -> None:
    s = sub.add_parser("sim", help="simulation tools")
    ssub = s.add_subparsers(dest="sim_command", required=True)
    x = ssub.add_parser("export-mjcf", help="write the scene's MJCF to a file (open it in MuJoCo's viewer)")
    x.add_argument("path")
    x.set_defaults(func=_cmd_sim_export)
    x = ssub.add_parser("expert", help="measure the scripted expert's success rate")
    x.add_argument("--episodes", type=int, default=100)
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=_cmd_sim_expert)


def main(argv: list[str] | None = None) -> int:
    from hilserl.config import ConfigError
    from hilserl.console import ConsoleError

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like --section.key=value)")
    try:
        return int(args.func(args, rest) or 0)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ConsoleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        from hilserl.reward.model import ClassifierFileError

        if not isinstance(e, ClassifierFileError):
            raise
        print(f"error: {e}", file=sys.stderr)  # a corrupt or mismatched classifier file; the message names it
        return 2


if __name__ == "__main__":
    sys.exit(main())
