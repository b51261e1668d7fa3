"""`hilserl train`: HIL-SERL in one process — demos, then actor and learner taking turns.

Order of work: fill the demo buffer with scripted-expert episodes; then run episodes with the actor (policy +
simulated human). Every environment step hands its transition to the learner, which performs
`updates_per_env_step` updates (each: `utd_ratio` critic steps on mixed 50/50 batches, then one actor and
temperature step) once `training_starts` online transitions exist, and sends the actor fresh policy weights every
`push_weights_every` updates. Evaluations and checkpoints happen at episode boundaries.

This is the one-process mode of `hilserl learner` + `hilserl actor`: the same `Actor`, the same `Learner` (its
ledger numbers this process's transitions as actor "local"), the same environment factory and demonstrations,
without the network in between (fastest on a small machine).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from hilserl.agents.sac import SACAgent
from hilserl.config import to_dict
from hilserl.monitor.health import HealthReporter, TrainingHealthError
from hilserl.sim.human import SimulatedHuman
from hilserl.train.actor import Actor, demo_human_config, record_demo
from hilserl.train.actor_process import make_env, make_human, resolve_policy_config
from hilserl.train.checkpoint import (last_checkpoint, load_checkpoint, load_initial_policy, save_best_model,
                                      save_checkpoint)
from hilserl.train.config import TrainConfig
from hilserl.train.evaluate import evaluate
from hilserl.train.learner import Learner


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


def run_dir_for(cfg: TrainConfig) -> Path:
    name = cfg.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(cfg.output_dir) / name


def _rng_state(rng: np.random.Generator) -> np.ndarray:
    """A numpy Generator's state as an array (for safetensors)."""
    return np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8).copy()


def _set_rng_state(rng: np.random.Generator, arr: np.ndarray) -> None:
    rng.bit_generator.state = json.loads(bytes(arr.astype(np.uint8)).decode())


def train(cfg: TrainConfig, resume: bool = False, log=print, logger=None, progress=None) -> TrainResult:
    """Run (or with `resume`, continue) a training run. `log(line)` receives the console lines, `progress(env_step,
    total)` is called after every episode."""
    from hilserl.monitor.metrics import MetricsLogger, format_episode_line, format_learner_line

    t_start = time.perf_counter()
    loop = cfg.train
    if loop.torch_threads:
        torch.set_num_threads(loop.torch_threads)
    torch.manual_seed(loop.seed)
    run_dir = run_dir_for(cfg)
    if resume and not (run_dir / "checkpoints").exists():
        raise FileNotFoundError(f"--resume: no checkpoints in {run_dir} (set output_dir/run_name to the run to resume)")
    if not resume and (run_dir / "checkpoints").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another run_name")
    run_dir.mkdir(parents=True, exist_ok=True)

    env = make_env(cfg)
    policy_cfg = resolve_policy_config(cfg, env)
    cfg = dataclasses.replace(cfg, policy=policy_cfg)
    (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    state = {"env_step": 0, "episode": 0, "learner_updates": 0, "demo_episodes": 0, "evals": []}
    human_rng = np.random.default_rng(loop.seed + 101)
    agent = None
    ckpt = last_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        raise FileNotFoundError(f"--resume: no complete checkpoint in {run_dir / 'checkpoints'}")
    if ckpt is not None:
        agent, state, rng = load_checkpoint(ckpt, loop.device)
        if "human_rng" in rng:
            _set_rng_state(human_rng, rng["human_rng"])
        if "torch_rng" in rng:
            torch.set_rng_state(torch.from_numpy(rng["torch_rng"].astype(np.uint8)))
        log(f"resumed from {ckpt} at env step {state['env_step']}, episode {state['episode']}")
    elif loop.init_policy:
        agent = SACAgent(policy_cfg).to(loop.device)
        log(f"policy initialised from {load_initial_policy(agent, loop.init_policy)}")

    actor_agent = SACAgent(policy_cfg).to(loop.device)
    human = make_human(cfg, env, human_rng)
    actor = Actor(env, actor_agent, human, seed=loop.seed, grasp_penalty=policy_cfg.grasp_penalty,
                  action_rate_penalty=cfg.reward.action_rate_penalty,
                  action_penalty=cfg.reward.action_penalty)
    buffer_dir = run_dir / "buffers" if cfg.buffers.on_disk else None
    learner = Learner(policy_cfg, cfg.buffers, actor.processor.spec, loop.batch_size, buffer_dir, loop.seed,
                      loop.device, agent=agent)
    if ckpt is not None:
        for name, buf in (("online", learner.online), ("demo", learner.demo)):
            if len(buf) != state.get(f"{name}_size", len(buf)):
                raise RuntimeError(f"buffers/{name} holds {len(buf)} transitions but the checkpoint expects "
                                   f"{state[f'{name}_size']}: the buffer files do not belong to this checkpoint")
    learner.updates = state["learner_updates"]
    log(f"learner: {learner.agent.precision_summary()}")
    actor.load_policy_weights(learner.policy_weights(), learner.updates)
    logger = logger or MetricsLogger(run_dir)
    eval_env = make_env(cfg)
    eval_actor = Actor(eval_env, actor_agent, None, seed=loop.seed + 1)

    # ---- demonstrations
    expert_rng = np.random.default_rng(loop.seed + 202)
    if loop.demo_dataset:  # recorded demonstrations (the real arm, or a LeRobot import) instead of the expert
        added = learner.load_demo_dataset(loop.demo_dataset, actor.processor, policy_cfg.grasp_penalty)
        if added:
            log(f"demo buffer: {added} transitions from {loop.demo_dataset}")
    while not loop.demo_dataset and state["demo_episodes"] < loop.num_demos:
        demo_actor = Actor(env, actor_agent, SimulatedHuman(env, demo_human_config(cfg.human), expert_rng),
                           seed=loop.seed + 3, grasp_penalty=policy_cfg.grasp_penalty,
                           action_rate_penalty=cfg.reward.action_rate_penalty,
                  action_penalty=cfg.reward.action_penalty)
        demo_episode = state["demo_episodes"] + 1000 * state.get("demo_attempts", 0)
        pending, stats = record_demo(demo_actor, demo_episode)
        state["demo_attempts"] = state.get("demo_attempts", 0) + (0 if stats.success else 1)
        if stats.success:  # keep successful demonstrations only
            for t in pending:
                learner.add_demo(t)
            state["demo_episodes"] += 1
        if state.get("demo_attempts", 0) > 5 * max(1, loop.num_demos):
            raise RuntimeError("the scripted expert keeps failing; check env settings (workspace, cube offsets)")
    if loop.num_demos and not loop.demo_dataset:
        log(f"demo buffer: {len(learner.demo)} transitions from {state['demo_episodes']} expert episodes")

    # ---- online training
    pending_updates = 0.0
    last_metrics: dict = {}
    result = TrainResult(run_dir, state["env_step"], state["episode"], learner.updates, list(state["evals"]))
    next_eval = (state["env_step"] // loop.eval_every + 1) * loop.eval_every if loop.eval_every else None
    next_ckpt = (state["env_step"] // loop.checkpoint_every + 1) * loop.checkpoint_every if loop.checkpoint_every else None

    health = HealthReporter(cfg, run_dir, log)

    def on_transition(t):
        nonlocal pending_updates, last_metrics
        learner.add(t, episode=state["episode"])
        state["env_step"] += 1
        if not learner.ready(loop.training_starts):
            return
        pending_updates += loop.updates_per_env_step
        while pending_updates >= 1.0:
            pending_updates -= 1.0
            last_metrics = learner.update()
            health.update(last_metrics, learner.updates)  # before the weights reach the actor or a checkpoint
            if learner.updates % loop.push_weights_every == 0:
                actor.load_policy_weights(learner.policy_weights(), learner.updates)
            if learner.updates % loop.log_every == 0:
                rec = {"learner_step": learner.updates, "env_step": state["env_step"], **last_metrics,
                       "online_size": len(learner.online), "demo_size": len(learner.demo),
                       "updates_per_s": round(learner.updates_per_second(), 2)}
                logger.log_learner(rec)
                log(format_learner_line(rec))
                health.learner(rec)

    def release() -> None:
        logger.close()
        learner.close()  # commits and flushes the buffers
        env.close()
        eval_env.close()

    def checkpoint() -> Path:
        learner.flush()
        state.update(learner_updates=learner.updates, online_size=len(learner.online), demo_size=len(learner.demo))
        rng = {"human_rng": _rng_state(human_rng), "torch_rng": torch.get_rng_state().numpy()}
        return save_checkpoint(run_dir, state["env_step"], learner.agent, to_dict(cfg), dict(state), rng)

    while state["env_step"] < loop.total_env_steps:
        state["episode"] += 1
        try:
            stats = actor.run_episode(state["episode"], state["env_step"], on_transition)
        except TrainingHealthError:
            release()  # no checkpoint of the broken weights; the buffers are committed for a resume
            raise
        rec = {**stats.record(), "learner_updates": learner.updates, "weights_version": actor.weights_version}
        logger.log_episode(rec)
        log(format_episode_line(rec))
        health.episode(rec)
        if progress is not None:
            progress(state["env_step"], loop.total_env_steps)
        if next_eval is not None and state["env_step"] >= next_eval:
            next_eval += loop.eval_every
            actor.load_policy_weights(learner.policy_weights(), learner.updates)  # evaluate what best_model saves
            res = evaluate(eval_actor, loop.eval_episodes)
            ev = {"env_step": state["env_step"], "episode": state["episode"], **res.summary()}
            state["evals"].append(ev)
            logger.log_eval(ev)
            if res.success_rate > state.get("best_success", -1.0):
                state["best_success"], state["best_env_step"] = res.success_rate, state["env_step"]
                save_best_model(run_dir, learner.agent, to_dict(cfg), ev)
            log(f"Eval at step {state['env_step']}: success {res.success_rate:.0%} "
                f"({res.successes}/{res.episodes}), mean reward {ev['mean_reward']:.2f}")
        if next_ckpt is not None and state["env_step"] >= next_ckpt:
            next_ckpt += loop.checkpoint_every
            result.last_checkpoint = checkpoint()
            log(f"checkpoint: {result.last_checkpoint}")

    if result.last_checkpoint is None or not result.last_checkpoint.name.endswith(f"{state['env_step']:07d}"):
        result.last_checkpoint = checkpoint()
    release()
    result.env_steps, result.episodes, result.learner_updates = state["env_step"], state["episode"], learner.updates
    result.evals = list(state["evals"])
    if (run_dir / "best_model" / "agent.json").exists():
        result.best_model = run_dir / "best_model"
    result.wall_s = time.perf_counter() - t_start
    return result
