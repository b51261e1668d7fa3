"""Curricula for the simulation's training episodes: lessons that start easy and get harder as the policy
succeeds. Evaluations never follow them: the exam does not change, only the order of the lessons.

``train.curriculum``, the start region: training episodes begin with the cube and the gripper's reset close to the
nominal start, and the region widens as the policy succeeds there. Against the "easy positions only" optimum (a
policy that learns the positions near the centre and never the rest): the region starts at ``start`` of its full
size (the cube's offset range ``env.cube_offset_xy`` and the gripper's reset noise ``env.ee_reset_noise_xy`` /
``_z``; the cube's yaw keeps its full range) and grows by ``step`` each time the last ``window`` training episodes at
the current size succeeded at least ``widen_at`` of the time, up to the full region. The simulation applies it
through its ``region_scale`` reset option.

``train.view_curriculum``, the randomized view: with the view hooks of ``env.randomization`` on (light, colours,
camera pose and field of view, textures, backdrop, distractors, image noise, blur and compression), a training
episode draws them with a chance that starts at ``start`` (0: every episode looks nominal) and rises by ``step``
under the same rule; the other episodes keep the nominal view. The physics and timing hooks are drawn in every
episode. The simulation applies it through its ``view_share`` reset option. Why: from pixels, the full visual
variety from the first step slows learning the grasp itself several times over (docs/benchmarks.md).

On the real arm the person places the cube and the camera sees what it sees, so the config refuses both there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class CurriculumConfig:
    """``train.curriculum`` and ``train.view_curriculum``: off by default (measured in docs/learning.md and
    docs/benchmarks.md)."""

    enabled: bool = False
    start: float = 0.3  # the first lesson: the fraction of the full region (of episodes with a randomized view)
    step: float = 0.1  # how much it grows at a time (the same unit)
    widen_at: float = 0.8  # success over the last `window` episodes at the current size that widens it
    window: int = 10

    def validate(self) -> None:
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start: expected a fraction in [0, 1], got {self.start}")
        if not 0.0 < self.step <= 1.0:
            raise ValueError(f"step: expected a fraction in (0, 1], got {self.step}")
        if not 0.0 < self.widen_at <= 1.0:
            raise ValueError(f"widen_at: expected a success rate in (0, 1], got {self.widen_at}")
        if self.window < 1:
            raise ValueError(f"window: expected >= 1 episodes, got {self.window}")


class Curriculum:
    """One lesson's current size (`scale`) and the episodes that decide when it grows; the env's reset `option` it
    sets, its `column` in episodes.csv, and how the log names it. `state()` / a `state` argument carry it across a
    resume."""

    def __init__(self, cfg: CurriculumConfig, state: dict | None = None, option: str = "region_scale",
                 column: str = "start_region", what: str = "the start region widens to {:.0%} of its full size"):
        self.cfg = cfg
        self.option = option
        self.column = column
        self.what = what
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
        return {self.option: self.scale} if self.cfg.enabled else None

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
        """Count a finished training episode, say when the lesson grows; the episode row's column (nothing when
        the curriculum is off)."""
        if not self.cfg.enabled:
            return {}
        row = {self.column: self.scale}
        if self.update(success):
            log(f"{who}curriculum: " + self.what.format(self.scale))
        return row

    def state(self) -> dict:
        return {"scale": self.scale, "recent": [int(s) for s in self.recent]}


class TrainingCurricula:
    """Both curricula of a training loop (`train.curriculum`, `train.view_curriculum`): the reset options of the next
    training episode, the count after it, and their state for a checkpoint."""

    def __init__(self, train_cfg, state: dict | None = None):
        state = state or {}
        self.region = Curriculum(train_cfg.curriculum, state.get("curriculum"))
        self.view = Curriculum(train_cfg.view_curriculum, state.get("view_curriculum"), option="view_share",
                               column="view_share", what="{:.0%} of the training episodes now get a randomized view")

    def reset_options(self) -> dict | None:
        options = {**(self.region.reset_options() or {}), **(self.view.reset_options() or {})}
        return options or None

    def after_episode(self, success: bool, log, who: str = "") -> dict:
        return {**self.region.after_episode(success, log, who), **self.view.after_episode(success, log, who)}

    def state(self) -> dict:
        """What a checkpoint keeps (the curricula that are on)."""
        return {name: c.state() for name, c in (("curriculum", self.region), ("view_curriculum", self.view))
                if c.cfg.enabled}
