"""`hilserl train`: HIL-SERL in one process — demos, then the actor and the learner taking turns.

Order of work: fill the demo buffer with scripted-expert episodes (or a recorded dataset); then run episodes with
the actor (policy + simulated human). Every environment step hands its transition to the learner, which runs the
updates owed to the data (`hilserl.train.learner_loop`: the same schedule, checks, weights and logging as
`hilserl learner`) and hands the actor fresh policy weights. Evaluations and checkpoints happen at episode
boundaries.

This is `hilserl learner` + `hilserl actor` without the network in between (fastest on a small machine): the same
`Actor`, the same `Learner` (its ledger numbers this process's transitions as actor "local"), the same builders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hilserl.agents.registry import make_agent
from hilserl.config import to_dict
from hilserl.monitor.health import HealthReporter, TrainingHealthError
from hilserl.train.actor import Actor
from hilserl.train.build import collect_demos, make_actor, make_env, make_human
from hilserl.train.checkpoint import save_best_model
from hilserl.train.config import TrainConfig
from hilserl.train.curriculum import TrainingCurricula
from hilserl.train.evaluate import evaluate
from hilserl.train.learner_loop import LearnerLoop, open_learner
from hilserl.train.run_folder import RunFolder, rng_state, run_dir_for, set_rng_state

__all__ = ["TrainResult", "run_dir_for", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    env_steps: int
    episodes: int
    learner_updates: int
    evals: list[dict] = field(default_factory=list)
    last_checkpoint: Path | None = None
    best_model: Path | None = None  # the policy of the best evaluation so far (RL policies can get worse again)
    wall_s: float = 0.0


def _check_buffers(learner, state: dict) -> None:
    """A resumed one-process run continues from its checkpoint: the buffers must be as they were then."""
    for name, buf in (("online", learner.online), ("demo", learner.demo)):
        if f"{name}_size" in state and len(buf) != state[f"{name}_size"]:
            raise RuntimeError(f"buffers/{name} holds {len(buf)} transitions but the checkpoint expects "
                               f"{state[f'{name}_size']}: the buffer files do not belong to this checkpoint")


def _collect_demos(cfg: TrainConfig, env, actor_agent, learner, state: dict, log) -> None:
    loop = cfg.train
    if loop.demo_dataset or state["demo_episodes"] >= loop.num_demos:
        return

    def keep(transitions, stats):
        for t in transitions:
            learner.add_demo(t)
        state["demo_episodes"] += 1

    state["demo_attempts"] = collect_demos(cfg, env, actor_agent, loop.num_demos, loop.seed, keep,
                                           state["demo_episodes"], state.get("demo_attempts", 0))
    log(f"demo buffer: {len(learner.demo)} transitions from {state['demo_episodes']} expert episodes")


def _evaluate(cfg: TrainConfig, run: RunFolder, learner, eval_actor, trainer, state: dict, logger, log) -> None:
    """Score the policy the run would deploy (`hilserl.agents.registry.load_policy`): the running average of the
    acting weights where ``policy.average_rate`` keeps one, else the live weights; best_model saves the agent with
    both. The training actor shares the agent: it gets the live weights back afterwards."""
    average = learner.agent.policy_average
    if average is None:
        trainer.publish_weights()  # the newest live weights: what best_model saves
    else:
        eval_actor.load_policy_weights(average.weights(), learner.updates)
    try:
        res = evaluate(eval_actor, cfg.train.eval_episodes)
    finally:
        if average is not None:
            trainer.publish_weights()
    ev = {"env_step": state["env_step"], "episode": state["episode"], **res.summary()}
    state["evals"].append(ev)
    logger.log_eval(ev)
    if res.success_rate > state.get("best_success", -1.0):
        state["best_success"], state["best_env_step"] = res.success_rate, state["env_step"]
        save_best_model(run.path, learner.agent, to_dict(cfg), ev)
    log(f"Eval at step {state['env_step']}: success {res.success_rate:.0%} ({res.successes}/{res.episodes}), "
        f"mean reward {ev['mean_reward']:.2f}")


def _seed_torch(loop):
    """Torch's threads and seed for the ``train`` section `loop`; returns it."""
    if loop.torch_threads:
        torch.set_num_threads(loop.torch_threads)
    torch.manual_seed(loop.seed)
    return loop


def _human_rng(seed: int, saved: dict) -> np.random.Generator:
    """The simulated human's random draws: new from the seed, or where a resumed checkpoint left them."""
    rng = np.random.default_rng(seed + 101)
    if "human_rng" in saved:
        set_rng_state(rng, saved["human_rng"])
    return rng


def _next(step: int, every: int) -> int | None:
    return (step // every + 1) * every if every else None


def train(cfg: TrainConfig, resume: bool = False, log=print, logger=None, progress=None, console=None) -> TrainResult:
    """Run (or with `resume`, continue) a training run. `log(line)` receives the console lines, `progress(env_step,
    total)` is called after every episode; `console` (`hilserl.console.session.Console`, or None) watches and acts."""
    from hilserl.monitor.metrics import MetricsLogger, format_episode_line, require_wandb

    require_wandb(cfg.log)  # log.wandb without the wandb package: fail before the run folder is touched
    t_start = time.perf_counter()
    loop = _seed_torch(cfg.train)
    run = RunFolder.open(cfg, resume)
    env = make_env(cfg)
    agents = []
    opened = open_learner(cfg, run, resume, log,
                          before_new_agent=lambda policy: agents.append(make_agent(policy).to(loop.device)))
    cfg, learner = opened.cfg, opened.learner
    state = {"env_step": 0, "episode": 0, "demo_episodes": 0, "evals": [], **opened.state}
    human_rng = _human_rng(loop.seed, opened.rng)
    if opened.checkpoint is not None:
        _check_buffers(learner, state)
        log(f"resumed from {opened.checkpoint} at env step {state['env_step']}, episode {state['episode']}")
    actor_agent = agents[0]
    actor = make_actor(cfg, env, actor_agent, make_human(cfg, env, human_rng), loop.seed)
    logger = logger or MetricsLogger(run.path, log_cfg=cfg.log, config=cfg, note=log)
    health = HealthReporter(cfg, run.path, log)
    if console is not None:
        logger, health = console.attach(cfg, actor, logger, health, run.path, state["env_step"])
    trainer = LearnerLoop(cfg, run, learner, actor.load_policy_weights, logger, health, log)
    trainer.publish_weights()
    eval_env = make_env(cfg)
    eval_actor = Actor(eval_env, actor_agent, None, seed=loop.seed + 1)  # scored on the task's own reward
    _collect_demos(cfg, env, actor_agent, learner, state, log)
    curriculum = TrainingCurricula(loop, state, loop.seed)

    def on_transition(t):
        learner.add(t, episode=state["episode"])
        state["env_step"] += 1
        if console is not None:
            console.transition(t)
        trainer.catch_up()

    def release() -> None:
        logger.close()
        learner.close()  # commits and flushes the buffers
        env.close()
        eval_env.close()
        run.close()

    def checkpoint() -> Path:
        return trainer.checkpoint(state, {"human_rng": rng_state(human_rng)})

    result = TrainResult(run.path, state["env_step"], state["episode"], learner.updates, list(state["evals"]))
    next_eval, next_ckpt = _next(state["env_step"], loop.eval_every), _next(state["env_step"], loop.checkpoint_every)
    while state["env_step"] < loop.total_env_steps and (console is None or console.before_episode()):
        state["episode"] += 1
        try:
            stats = actor.run_episode(state["episode"], state["env_step"], on_transition,
                                      reset_options=curriculum.reset_options(state["episode"]))
        except TrainingHealthError:
            release()  # no checkpoint of the broken weights; the buffers are committed for a resume
            raise
        rec = {**stats.record(), "learner_updates": learner.updates, "weights_version": actor.weights_version,
               **curriculum.after_episode(stats, log)}
        state.update(curriculum.state())
        logger.log_episode(rec)
        log(format_episode_line(rec))
        health.episode(rec)
        if progress is not None:
            progress(state["env_step"], loop.total_env_steps)
        if next_eval is not None and state["env_step"] >= next_eval:
            next_eval += loop.eval_every
            _evaluate(cfg, run, learner, eval_actor, trainer, state, logger, log)
        if next_ckpt is not None and state["env_step"] >= next_ckpt:
            next_ckpt += loop.checkpoint_every
            result.last_checkpoint = checkpoint()
            log(f"checkpoint: {result.last_checkpoint}")

    if result.last_checkpoint is None or not result.last_checkpoint.name.endswith(f"{state['env_step']:07d}"):
        result.last_checkpoint = checkpoint()
    release()
    return _finished(result, state, learner.updates, time.perf_counter() - t_start)


def _finished(result: TrainResult, state: dict, updates: int, wall_s: float) -> TrainResult:
    result.env_steps, result.episodes, result.learner_updates = state["env_step"], state["episode"], updates
    result.evals = list(state["evals"])
    if (result.run_dir / "best_model" / "agent.json").exists():
        result.best_model = result.run_dir / "best_model"
    result.wall_s = wall_s
    return result
