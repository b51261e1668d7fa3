"""The actor: runs the policy in the environment, lets the human intervene, and emits transitions.

It holds its own copy of the policy and only ever receives weights (`load_policy_weights`), and it only ever
hands out transitions and episode statistics. That seam is what puts the actor beside the robot and the learner on
another machine (`hilserl.train.actor_process`); `hilserl train` uses the same class in one process.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hilserl.agents.averaging import ACTING_PREFIXES, FROZEN_PREFIXES
from hilserl.agents.sac import SACAgent
from hilserl.data import Transition
from hilserl.gripper import step_grasp_penalty
from hilserl.train.observations import ObservationProcessor

POLICY_PREFIXES = (*ACTING_PREFIXES, "exploration.")  # exploration: DrQ-v2's noise step
EE_POS = slice(14, 17)  # the end-effector position in the state (SO101GraspCubeEnv.STATE_LAYOUT)


def policy_weights(agent: SACAgent) -> dict[str, torch.Tensor]:
    """The weights an actor needs: trainable encoder parts, the actor, the gripper critic (and DrQ-v2's exploration
    schedule step, so an actor explores with the learner's current noise). Not the frozen backbone
    (the actor has its own copy) and not the continuous critics."""
    return {k: v.detach().clone() for k, v in agent.state_dict().items()
            if k.startswith(POLICY_PREFIXES) and not k.startswith(FROZEN_PREFIXES)}


def policy_fingerprint(policy) -> str:
    """The policy settings an actor and its learner must share beyond the weights' names and shapes (checked
    when an actor connects): what the frozen backbone is and how the actor turns frames into stored features."""
    keys = ("type", "encoder", "backbone_trim_head", "backbone_dtype", "cached_features", "num_cached_shifts",
            "augmentation_pad", "cameras", "image_size", "discrete_gripper", "action_dim", "state_dim",
            "environment_state_dim")
    d = {k: getattr(policy, k) for k in keys}
    d["backbone_weights"] = Path(policy.backbone_weights).name if policy.backbone_weights else None
    return json.dumps(d, sort_keys=True, default=list)


def demo_human_config(human):
    """The simulated human as a demonstrator: watches every episode and takes over from the first step to the end."""
    return dataclasses.replace(human, enabled=True, watch_probability_start=1.0, watch_probability_end=1.0,
                               first_takeover_after=(0, 0), takeover_steps=(10_000, 10_000))


@dataclass
class EpisodeStats:
    episode: int
    env_step: int  # total env steps after this episode
    reward: float
    length: int
    success: bool
    intervention_steps: int
    cube_start: tuple[float, float]
    ee_start: tuple[float, float, float]
    extra: dict = field(default_factory=dict)
    start: dict | None = None  # the reset options that give this start again (the simulation's; None elsewhere)

    @property
    def intervention_rate(self) -> float:
        return self.intervention_steps / max(1, self.length)

    def record(self) -> dict:
        return {"episode": self.episode, "env_step": self.env_step, "reward": round(self.reward, 4),
                "length": self.length, "success": int(self.success),
                "intervention_rate": round(self.intervention_rate, 4),
                "cube_x": round(self.cube_start[0], 4), "cube_y": round(self.cube_start[1], 4), **self.extra}


class _PolicyMotion:
    """How the policy's own continuous actions move within an episode (the health checks read these):
    ``action_jitter`` = mean |a_t - a_t-1| over consecutive policy steps (a shaking arm: near 1 on the [-1, 1]
    scale; a smooth one: well under 0.3), ``action_saturation`` = share of action values at the bounds (|a| > 0.99),
    ``action_reversals`` = share of consecutive changes, per dimension, that reverse the previous change, both by
    more than REVERSAL_STEP (back and forth: 1 for a bang-bang policy; 0 for one that turns once, like a grasp's
    descend-then-lift, however fast; jitter alone cannot tell the two apart in short episodes). Left out when the
    policy made fewer than two consecutive steps (a demonstration, a fully corrected episode)."""

    REVERSAL_STEP = 0.25  # a quarter of a full command

    def __init__(self, dims: int):
        self.dims = dims
        self.previous: np.ndarray | None = None
        self.change: np.ndarray | None = None
        self.jumps: list[float] = []
        self.saturated = self.values = self.reversals = self.pairs = 0

    def add(self, action: np.ndarray, is_intervention: bool) -> None:
        if is_intervention:
            self.previous = self.change = None
            return
        a = np.asarray(action, dtype=np.float64)[: self.dims]
        if self.previous is not None:
            change = a - self.previous
            self.jumps.append(float(np.abs(change).mean()))
            if self.change is not None:
                big = (np.abs(change) > self.REVERSAL_STEP) & (np.abs(self.change) > self.REVERSAL_STEP)
                self.reversals += int((big & (np.sign(change) != np.sign(self.change))).sum())
                self.pairs += change.size
            self.change = change
        self.previous = a
        self.saturated += int((np.abs(a) > 0.99).sum())
        self.values += a.size

    def summary(self) -> dict:
        if not self.jumps:
            return {}
        out = {"action_jitter": round(float(np.mean(self.jumps)), 4),
               "action_saturation": round(self.saturated / self.values, 4)}
        if self.pairs:
            out["action_reversals"] = round(self.reversals / self.pairs, 4)
        return out


class Actor:
    def __init__(self, env, agent: SACAgent, human=None, seed: int = 0, grasp_penalty: float = -0.02,
                 action_rate_penalty: float = 0.0, action_penalty: float = 0.0):
        self.env = env
        self.agent = agent
        self.human = human
        self.seed = seed
        self.grasp_penalty = grasp_penalty
        self.action_rate_penalty = action_rate_penalty  # reward -= it * mean((a_t - a_t-1)^2), continuous dims
        self.action_penalty = action_penalty  # reward -= it * mean(a_t^2), continuous dims
        self.processor = ObservationProcessor(agent, env.observation_space,
                                              torch.Generator().manual_seed(seed + 17))
        self.weights_version = 0

    def load_policy_weights(self, weights: dict[str, torch.Tensor], version: int) -> None:
        missing, unexpected = self.agent.load_state_dict(weights, strict=False)
        if unexpected:
            raise ValueError(f"policy weights: unexpected keys {unexpected[:3]}")
        self.weights_version = version

    def run_episode(self, episode: int, env_step: int, on_transition, explore: bool = True,
                    reset_options: dict | None = None, random_actions: bool = False, on_step=None,
                    before_step=None) -> EpisodeStats:
        """One episode. `on_transition(transition)` is called after every step (the learner's inbox), `on_step(obs,
        info)` after the reset and every step (videos), `before_step()` before every step (new weights take effect
        there; a disconnected actor may hold still there). Episode seeds come from (seed, episode), so a resumed
        run sees the same sequence of episodes."""
        env = self.env
        obs, info = env.reset(seed=self.seed * 1_000_003 + episode, options=reset_options)
        if self.human is not None:
            self.human.start_episode(episode)
        storing = on_transition is not None  # else only acting (evaluation): no augmented copies needed
        self.processor.start_episode()
        stored = self.processor.to_stored(obs, storing)
        if on_step is not None:
            on_step(obs, info)
        total, steps, interventions, success = 0.0, 0, 0, False
        motion = _PolicyMotion(self.agent.config.action_dim)
        previous = None  # the last executed continuous action (action_rate_penalty)
        # the real arm knows no cube position (nan), and its end-effector position is in the state
        cube0 = np.asarray(info.get("cube_pos", (np.nan, np.nan)), dtype=float)[:2].copy()
        ee0 = np.asarray(info.get("ee_pos", obs["state"][EE_POS]), dtype=float).copy()
        if ee0.shape != (3,):  # an env without an end-effector position in its state (env.type gym)
            ee0 = np.full(3, np.nan)
        start = info.get("start")
        rng = np.random.default_rng(self.seed * 7919 + episode)
        while True:
            if before_step is not None:
                before_step()
            human_action = self.human.act(steps) if self.human is not None else None
            if human_action is not None:
                action, is_intervention = np.asarray(human_action, dtype=np.float32), True
            elif random_actions:
                action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
                is_intervention = False
                if self.agent.config.discrete_gripper:
                    action[-1] = float(rng.integers(0, 3))
            else:
                action = self.agent.select_action(self.processor.to_policy(stored), deterministic=not explore)
                is_intervention = False
            next_obs, reward, terminated, truncated, info = env.step(action)
            if info.get("is_intervention") and "intervention_action" in info:
                # the real arm: the person took over inside the env (leader arm, keys, gamepad); store what ran
                action, is_intervention = np.asarray(info["intervention_action"], dtype=np.float32), True
            next_stored = self.processor.to_stored(next_obs, storing)
            if on_step is not None:
                on_step(next_obs, info)
            if self.action_penalty or self.action_rate_penalty:  # costs on what ran, the person's moves included
                moved = np.asarray(action, dtype=np.float64)[: self.agent.config.action_dim]
                reward = float(reward) - self.action_penalty * float(np.mean(np.clip(moved, -1.0, 1.0) ** 2))
                if previous is not None:  # the arm's motion from one tick to the next
                    reward -= self.action_rate_penalty * float(np.mean((moved - previous) ** 2))
                previous = moved
            extra = {}
            if self.agent.config.discrete_gripper:
                extra["grasp_penalty"] = step_grasp_penalty(stored["state"], action, self.grasp_penalty)
            if on_transition is not None:
                on_transition(Transition(stored, action, float(reward), bool(terminated), bool(truncated),
                                         next_stored, is_intervention, extra))
            motion.add(action, is_intervention)
            total += float(reward)
            steps += 1
            interventions += int(is_intervention)
            success = success or bool(info.get("is_success", info.get("classifier_success", False)))
            stored = next_stored
            if terminated or truncated:
                break
        extra = motion.summary()
        if "classifier_disagreements" in info:  # learned reward in the simulation: how often it disagreed
            extra["classifier_disagreements"] = int(info["classifier_disagreements"])
        return EpisodeStats(episode, env_step + steps, total, steps, success, interventions,
                            (float(cube0[0]), float(cube0[1])), tuple(float(v) for v in ee0), extra, start)


def record_demo(demo_actor: Actor, episode: int,
                reset_options: dict | None = None) -> tuple[list[Transition], EpisodeStats]:
    """One demonstration episode by `demo_actor` (its human takes over throughout): its transitions and stats.
    Callers keep successful ones only."""
    pending: list[Transition] = []
    stats = demo_actor.run_episode(episode, 0, pending.append, reset_options=reset_options)
    return pending, stats
