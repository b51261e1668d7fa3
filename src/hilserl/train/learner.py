"""The learner: replay buffers in, SAC updates, policy weights out.

Transitions arrive one at a time (`add`) and are routed by `hilserl.data.route_transition`: interventions to both
buffers, the policy's own steps to the online buffer. Demonstrations go to the demo buffer only (`add_demo`).
Each `update()` draws `utd_ratio` mixed batches (half demo, half online) and runs `utd_ratio` critic steps and one
actor + temperature step on them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hilserl.agents.sac import SACAgent, SACConfig
from hilserl.data import MixedSampler, ReplayBuffer, Transition, route_transition
from hilserl.train.actor import policy_weights
from hilserl.train.config import BufferConfig


class Learner:
    def __init__(self, policy: SACConfig, buffers: BufferConfig, observation_spec: dict, batch_size: int,
                 buffer_dir: Path | None, seed: int = 0, device: str = "cpu", agent: SACAgent | None = None):
        self.agent = agent if agent is not None else SACAgent(policy).to(device)
        self.batch_size = batch_size
        info_keys = ("gripper_penalty",) if policy.discrete_gripper else ()
        action_dim = policy.full_action_dim

        def make(name: str, capacity: int, rng_seed: int) -> ReplayBuffer:
            where = None if buffer_dir is None else Path(buffer_dir) / name
            return ReplayBuffer(capacity, observation_spec, action_dim, info_keys=info_keys, storage_dir=where,
                                rng=np.random.default_rng(rng_seed))

        self.online = make("online", buffers.online_capacity, seed + 1)
        self.demo = make("demo", buffers.demo_capacity, seed + 2)
        self.sampler = MixedSampler(self.online, self.demo, buffers.demo_fraction)
        self.updates = 0
        self._batches: list[dict | None] = [None] * policy.utd_ratio  # reused batch memory, one per UTD slot
        self._rate_t0, self._rate_n = time.perf_counter(), 0

    def add(self, transition: Transition) -> None:
        route_transition(transition, self.online, self.demo)

    def add_demo(self, transition: Transition) -> None:
        self.demo.add(transition)

    def ready(self, training_starts: int) -> bool:
        return len(self.online) >= max(1, training_starts) and len(self.online) + len(self.demo) > 0

    def update(self) -> dict[str, float]:
        for i in range(len(self._batches)):
            self._batches[i] = self.sampler.sample(self.batch_size, out=self._batches[i])
        metrics = self.agent.update(list(self._batches))
        self.updates += 1
        self._rate_n += 1
        return metrics

    def updates_per_second(self) -> float:
        """Since the last call."""
        now = time.perf_counter()
        rate = self._rate_n / max(1e-9, now - self._rate_t0)
        self._rate_t0, self._rate_n = now, 0
        return rate

    def policy_weights(self):
        return policy_weights(self.agent)

    def flush(self) -> None:
        self.online.flush()
        self.demo.flush()

    def close(self) -> None:
        for b in (self.online, self.demo):
            b.close()
