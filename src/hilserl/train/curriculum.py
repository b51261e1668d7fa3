"""A start-region curriculum for the simulation (``train.curriculum``): training episodes begin with the cube and
the gripper's reset close to the nominal start, and the region widens as the policy succeeds there.

Against the "easy positions only" optimum (a policy that learns the positions near the centre and never the rest):
the region starts at ``start`` of its full size (the cube's offset range ``env.cube_offset_xy`` and the gripper's
reset noise ``env.ee_reset_noise_xy`` / ``_z``; the cube's yaw keeps its full range) and grows by ``step`` each time
the last ``window`` training episodes at the current size succeeded at least ``widen_at`` of the time, up to the
full region. Evaluations always use the full region: the exam does not change, only the order of the lessons.

The simulation applies it through its ``region_scale`` reset option. On the real arm the person places the cube,
so there the curriculum is theirs to follow (near the gripper first); the config refuses it there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class CurriculumConfig:
    """``train.curriculum``: off by default (measured against no curriculum in docs/learning.md)."""

    enabled: bool = False
    start: float = 0.3  # the first region, as a fraction of the full one
    step: float = 0.1  # how much it widens at a time (fraction of the full region)
    widen_at: float = 0.8  # success over the last `window` episodes at the current size that widens it
    window: int = 10

    def validate(self) -> None:
        if not 0.0 < self.start <= 1.0:
            raise ValueError(f"start: expected a fraction of the start region in (0, 1], got {self.start}")
        if not 0.0 < self.step <= 1.0:
            raise ValueError(f"step: expected a fraction in (0, 1], got {self.step}")
        if not 0.0 < self.widen_at <= 1.0:
            raise ValueError(f"widen_at: expected a success rate in (0, 1], got {self.widen_at}")
        if self.window < 1:
            raise ValueError(f"window: expected >= 1 episodes, got {self.window}")


class StartRegionCurriculum:
    """The current region size and the episodes that decide when it grows. `state()` / a `state` argument carry it
    across a resume."""

    def __init__(self, cfg: CurriculumConfig, state: dict | None = None):
        self.cfg = cfg
        self.scale = cfg.start if cfg.enabled else 1.0
        self.recent: deque[bool] = deque(maxlen=cfg.window)
        if state:
            self.scale = float(state["scale"])
            self.recent.extend(bool(s) for s in state["recent"])

    @property
    def active(self) -> bool:
        return self.cfg.enabled and self.scale < 1.0

    def reset_options(self) -> dict | None:
        """The env's reset options for the next training episode (None: the full region)."""
        return {"region_scale": self.scale} if self.cfg.enabled else None

    def update(self, success: bool) -> bool:
        """Count a finished training episode; True when this widened the region."""
        if not self.active:
            return False
        self.recent.append(bool(success))
        if len(self.recent) == self.cfg.window and sum(self.recent) >= self.cfg.widen_at * self.cfg.window:
            self.scale = min(1.0, round(self.scale + self.cfg.step, 6))
            self.recent.clear()
            return True
        return False

    def after_episode(self, success: bool, log, who: str = "") -> dict:
        """Count a finished training episode, say when the region widens; the episode row's ``start_region``
        column (nothing when the curriculum is off)."""
        if not self.cfg.enabled:
            return {}
        row = {"start_region": self.scale}
        if self.update(success):
            log(f"{who}curriculum: the start region widens to {self.scale:.0%} of its full size")
        return row

    def state(self) -> dict:
        return {"scale": self.scale, "recent": [int(s) for s in self.recent]}
