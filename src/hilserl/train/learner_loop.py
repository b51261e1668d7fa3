"""The learner's side of training, shared by `hilserl train` (one process) and `hilserl learner` (actors over gRPC):
opening the learner (shapes, agent, buffers, resume), the update schedule, health checks, weight publishing,
logging and checkpoints. The two drivers differ only in where transitions come from and where weights go.

Update schedule: ``train.updates_per_env_step`` updates per stored environment step, counted from the step that
brought the online buffer to ``train.training_starts`` transitions. Each update is ``policy.utd_ratio`` critic
steps on mixed batches and one actor and temperature step (`Learner.update`). After every update the health checks
see its metrics (NaN weights stop the run before they reach an actor or a checkpoint); every
``train.push_weights_every`` updates the policy weights are published, every ``train.log_every`` a learner line
is logged.

Checkpoint state (JSON beside the weights): ``env_step``, ``learner_updates``, ``online_size``, ``demo_size``,
``actors`` (stored sequence number per actor) and whatever the driver adds (episodes, evaluations, ...).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hilserl.agents.registry import make_agent
from hilserl.config import to_dict
from hilserl.envs import env_spaces
from hilserl.monitor.health import HealthReporter
from hilserl.train.build import policy_config
from hilserl.train.checkpoint import load_checkpoint, load_initial_policy, save_checkpoint
from hilserl.train.config import TrainConfig
from hilserl.train.learner import Learner
from hilserl.train.observations import ObservationProcessor
from hilserl.train.run_folder import RunFolder


@dataclass
class Opened:
    """What `open_learner` hands the driver."""

    cfg: TrainConfig  # with the policy's shapes filled in
    learner: Learner
    checkpoint: Path | None  # the checkpoint the agent came from (resume), else None
    state: dict  # that checkpoint's loop state ({} for a new run)
    rng: dict[str, np.ndarray]  # that checkpoint's saved random states


FRESH_CRITIC_NOTE = " (continuous critic fresh)"  # ends the "policy initialised from" line with init_critic false


def open_learner(cfg: TrainConfig, run: RunFolder, resume: bool, log, *, before_new_agent=None) -> Opened:
    """The learner of a new or resumed run: the policy's shapes from the env's spaces (never opening the robot's
    port or cameras), the agent from the last checkpoint (resume), from ``train.init_policy`` or new, and the
    buffers in the run folder (``buffers.on_disk``) with the recorded demonstrations of ``train.demo_dataset``.
    `before_new_agent(policy_cfg)` is called once the shapes are known: after a loaded agent, before a new one
    (the one-process driver builds its actor's agent there, so a seed draws the initial weights it always drew)."""
    loop = cfg.train
    observation_space, action_space = env_spaces(cfg.env)
    cfg = dataclasses.replace(cfg, policy=policy_config(cfg, observation_space, action_space))
    run.write_config(cfg)
    agent, state, rng, ckpt = None, {}, {}, run.last_checkpoint() if resume else None
    if ckpt is not None:
        agent, state, rng = load_checkpoint(ckpt, loop.device)
        if "torch_rng" in rng:
            torch.set_rng_state(torch.from_numpy(rng["torch_rng"].astype(np.uint8)))
    elif loop.init_policy:
        agent = make_agent(cfg.policy).to(loop.device)
        log(f"policy initialised from {load_initial_policy(agent, loop.init_policy, loop.init_critic)}"
            + ("" if loop.init_critic else FRESH_CRITIC_NOTE))
    if before_new_agent is not None:
        before_new_agent(cfg.policy)
    if agent is None:
        agent = make_agent(cfg.policy).to(loop.device)
    processor = ObservationProcessor(agent, observation_space)
    learner = Learner(cfg.policy, cfg.buffers, processor.spec, loop.batch_size,
                      run.buffers if cfg.buffers.on_disk else None, loop.seed, loop.device, agent=agent)
    if loop.demo_dataset:  # recorded demonstrations (the real arm, or a LeRobot import) instead of the expert
        added = learner.load_demo_dataset(loop.demo_dataset, processor, cfg.policy.grasp_penalty)
        if added:
            log(f"demo buffer: {added} transitions from {loop.demo_dataset}")
    learner.updates = int(state.get("learner_updates", 0))
    log(f"learner: {agent.precision_summary()}")
    return Opened(cfg, learner, ckpt, state, rng)


def updates_due(learner: Learner, loop) -> int:
    """Updates owed to the stored data so far (``loop`` is the ``train`` config section)."""
    if not learner.ready(loop.training_starts):
        return 0
    return math.floor(loop.updates_per_env_step * (learner.env_steps - max(0, loop.training_starts - 1)))


class LearnerLoop:
    """Updates owed to the stored data, with health checks, weight publishing and logging; checkpoints.

    `publish(weights, version)` hands new policy weights on (to the local actor, or to the transport's board);
    `extra_metrics()` adds the driver's figures to each learner log line (the transport's counters)."""

    def __init__(self, cfg: TrainConfig, run: RunFolder, learner: Learner, publish: Callable, logger,
                 health: HealthReporter, log, extra_metrics: Callable[[], dict] | None = None):
        self.cfg, self.run, self.learner = cfg, run, learner
        self.publish, self.logger, self.health, self.log = publish, logger, health, log
        self.extra_metrics = extra_metrics or dict
        self.last_metrics: dict = {}

    def updates_behind(self) -> int:
        return updates_due(self.learner, self.cfg.train) - self.learner.updates

    def update(self) -> dict:
        """One update, then its health check, and the weights and the log line when they are due."""
        loop, learner = self.cfg.train, self.learner
        # train.critic_warmup (a run from train.init_policy): the critics first, the loaded actor unchanged
        metrics = self.last_metrics = learner.update(actor=learner.updates >= loop.critic_warmup)
        self.health.update(metrics, learner.updates)  # before the weights reach an actor or a checkpoint
        if learner.updates % loop.push_weights_every == 0:
            self.publish_weights()
        if learner.updates % loop.log_every == 0:
            from hilserl.monitor.metrics import format_learner_line

            rec = {"learner_step": learner.updates, "env_step": learner.env_steps, **metrics,
                   "online_size": len(learner.online), "demo_size": len(learner.demo),
                   "updates_per_s": round(learner.updates_per_second(), 2), **self.extra_metrics()}
            self.logger.log_learner(rec)
            self.log(format_learner_line(rec))
            self.health.learner(rec)
        return metrics

    def catch_up(self) -> None:
        """Run every update owed so far."""
        while self.updates_behind() > 0:
            self.update()

    def publish_weights(self) -> None:
        self.publish(self.learner.policy_weights(), self.learner.updates)

    def checkpoint(self, extra_state: dict | None = None, rng: dict[str, np.ndarray] | None = None) -> Path:
        """Commit the buffers, then save the agent with the loop state (atomically: a crash keeps the last one)."""
        learner = self.learner
        with learner.lock:
            learner.commit()  # fsynced: checkpoints are rare
            state = {**(extra_state or {}), "env_step": learner.env_steps, "learner_updates": learner.updates,
                     "online_size": len(learner.online), "demo_size": len(learner.demo),
                     "actors": {a: r.seq for a, r in learner.actors.items()}}
        rng = {**(rng or {}), "torch_rng": torch.get_rng_state().numpy()}
        return save_checkpoint(self.run.path, state["env_step"], learner.agent, to_dict(self.cfg), state, rng)
