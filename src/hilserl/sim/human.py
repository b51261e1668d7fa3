"""The simulated person at the leader arm: intervenes the way HIL-SERL asks a human to.

Protocol (HIL-SERL paper and docs, and SO-101 users' reports): let the policy act first (20-30 steps), then take over
*briefly* when it is off track, and give control back; do this in most episodes early in training and in fewer
and fewer later. Long takeovers that finish the task every time make the critic overestimate, so takeovers are
short and the policy has to do the rest. The takeover itself is the scripted expert with a little noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hilserl.sim.expert import ScriptedExpert


@dataclass
class SimHumanConfig:
    """The simulated person at the leader arm (simulation only), following the HIL-SERL protocol: let the policy
    act first, then take over briefly when it is off track; often early in training, rarely later."""

    enabled: bool = True
    first_takeover_after: tuple[int, int] = (20, 30)  # policy steps before the first takeover of an episode
    takeover_steps: tuple[int, int] = (5, 15)  # how long one takeover lasts (brief, not to the end)
    gap_steps: tuple[int, int] = (10, 20)  # policy steps between two takeovers
    watch_probability_start: float = 0.8  # chance that an episode is supervised at all, first episode
    watch_probability_end: float = 0.1  # ... after `decay_episodes`
    decay_episodes: int = 200
    expert_noise: float = 0.1  # std of the noise on the human's motion commands (people are not scripts)

    def validate(self) -> None:
        for name in ("first_takeover_after", "takeover_steps", "gap_steps"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name}: expected [low, high] with 0 <= low <= high, got {[lo, hi]}")
        for name in ("watch_probability_start", "watch_probability_end"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {v}")
        if self.decay_episodes < 1:
            raise ValueError(f"decay_episodes: expected >= 1, got {self.decay_episodes}")


class SimulatedHuman:
    def __init__(self, env, cfg: SimHumanConfig, rng: np.random.Generator):
        self.env = env.unwrapped
        self.cfg = cfg
        self.rng = rng
        self.expert = ScriptedExpert(env, noise=cfg.expert_noise, rng=rng)
        self.watching = False
        self._next_takeover = 0
        self._takeover_left = 0

    def watch_probability(self, episode: int) -> float:
        c = self.cfg
        frac = min(1.0, episode / max(1, c.decay_episodes))
        return c.watch_probability_start + frac * (c.watch_probability_end - c.watch_probability_start)

    def start_episode(self, episode: int) -> None:
        c = self.cfg
        self.watching = c.enabled and self.rng.random() < self.watch_probability(episode)
        self._next_takeover = int(self.rng.integers(c.first_takeover_after[0], c.first_takeover_after[1] + 1))
        self._takeover_left = 0

    def off_track(self) -> bool:
        """Anything short of holding the cube counts: by the time the human looks (20-30 steps in) a policy that
        is on track has already grasped it."""
        return not self.env.is_grasped()

    @property
    def intervening(self) -> bool:
        return self._takeover_left > 0

    def act(self, step: int) -> np.ndarray | None:
        """The human's action for this step, or None when the policy keeps control."""
        if not self.watching:
            return None
        c = self.cfg
        if self._takeover_left == 0 and step >= self._next_takeover and self.off_track():
            self._takeover_left = int(self.rng.integers(c.takeover_steps[0], c.takeover_steps[1] + 1))
            self._next_takeover = step + self._takeover_left + int(self.rng.integers(c.gap_steps[0],
                                                                                        c.gap_steps[1] + 1))
            self.expert.reset()
        if self._takeover_left > 0:
            self._takeover_left -= 1
            return self.expert.act()
        return None
