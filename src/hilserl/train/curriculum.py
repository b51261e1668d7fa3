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
variety from the first step slows learning the grasp itself several times over (docs/benchmarks.md). The scripted
demonstrations are recorded in the first lesson's view: demonstrations that all succeed in randomized scenes beside
training episodes that fail in the nominal one would let the critic read success off the look of the scene.

``train.hard_starts``, the starts the policy could not manage: a training episode that failed, or that the
(simulated) person had to step into, leaves its start (the gripper's reset position, the cube's position and yaw);
with chance ``share`` a later training episode starts there again instead of at a fresh random start, until the
policy manages it alone or has had ``tries`` replays. The last few percent of a grasp policy's failures come from a
few rare starts (a low gripper that shoves the cube on its way, docs/learning.md); replaying them gives the policy
and the person more practice where it fails, the way prioritized level replay (Jiang, Grefenstette and
Rocktäschel, 2021) revisits the levels with the most to learn.

On the real arm the person places the cube and the camera sees what it sees, so the config refuses all three there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


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


@dataclass
class HardStartsConfig:
    """``train.hard_starts``: replay the starts the policy did not manage alone (simulation; 0 = off)."""

    share: float = 0.0  # chance that a training episode replays a kept start (when one is kept)
    keep: int = 32  # the most recent starts kept
    tries: int = 3  # replays of one start before it is dropped (sooner, once the policy manages it alone)

    def validate(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share: expected a probability in [0, 1], got {self.share}")
        if self.keep < 1:
            raise ValueError(f"keep: expected >= 1 starts, got {self.keep}")
        if self.tries < 1:
            raise ValueError(f"tries: expected >= 1 replays, got {self.tries}")


class HardStarts:
    """The kept starts (reset options: ``ee_pos``, ``cube_pos``, ``cube_yaw``) and their replays so far. Which
    episode replays is drawn from (seed, episode), so a resumed run replays the same way."""

    def __init__(self, cfg: HardStartsConfig, seed: int, state: dict | None = None):
        self.cfg = cfg
        self.seed = seed
        self.kept: list[dict] = []  # {"start": options, "tries": replays so far}, oldest first
        self.replaying: dict | None = None  # the kept start the current episode replays
        if state:
            self.kept = [{"start": dict(k["start"]), "tries": int(k["tries"])} for k in state["kept"]]

    def reset_options(self, episode: int) -> dict | None:
        """A kept start for this episode, or None for a fresh random one."""
        self.replaying = None
        if not self.kept or self.cfg.share <= 0.0:
            return None
        rng = np.random.default_rng([self.seed, episode, 7])
        if rng.random() >= self.cfg.share:
            return None
        self.replaying = self.kept[int(rng.integers(len(self.kept)))]
        return dict(self.replaying["start"])

    def after_episode(self, success: bool, helped: bool, start: dict | None) -> dict:
        """Count a finished training episode (`helped`: the person stepped in); its ``hard_start`` column."""
        if self.cfg.share <= 0.0:
            return {}
        managed = success and not helped
        if self.replaying is not None:
            self.replaying["tries"] += 1
            if managed or self.replaying["tries"] >= self.cfg.tries:
                self.kept.remove(self.replaying)
        elif not managed and start is not None:
            self.kept.append({"start": dict(start), "tries": 0})
            del self.kept[:-self.cfg.keep]
        row = {"hard_start": int(self.replaying is not None)}
        self.replaying = None
        return row

    def state(self) -> dict:
        return {"kept": [dict(k) for k in self.kept]}


def demo_reset_options(train_cfg) -> dict | None:
    """The env's reset options for the scripted demonstrations: the view curriculum's first lesson (the same in a
    resumed run, wherever the curriculum has got to); None when it is off."""
    view = train_cfg.view_curriculum
    return {"view_share": view.start} if view.enabled else None


class TrainingCurricula:
    """The lessons of a training loop (`train.curriculum`, `train.view_curriculum`, `train.hard_starts`): the reset
    options of the next training episode, the count after it, and their state for a checkpoint."""

    def __init__(self, train_cfg, state: dict | None = None, seed: int = 0):
        state = state or {}
        self.region = Curriculum(train_cfg.curriculum, state.get("curriculum"))
        self.view = Curriculum(train_cfg.view_curriculum, state.get("view_curriculum"), option="view_share",
                               column="view_share", what="{:.0%} of the training episodes now get a randomized view")
        self.hard = HardStarts(train_cfg.hard_starts, seed, state.get("hard_starts"))

    def reset_options(self, episode: int = 0) -> dict | None:
        options = {**(self.region.reset_options() or {}), **(self.view.reset_options() or {}),
                   **(self.hard.reset_options(episode) or {})}  # a replayed start overrides the region's draw
        return options or None

    def after_episode(self, stats, log, who: str = "") -> dict:
        """Count a finished training episode (`hilserl.train.actor.EpisodeStats`); its columns in episodes.csv."""
        return {**self.region.after_episode(stats.success, log, who),
                **self.view.after_episode(stats.success, log, who),
                **self.hard.after_episode(stats.success, stats.intervention_steps > 0, stats.start)}

    def state(self) -> dict:
        """What a checkpoint keeps (the lessons that are on)."""
        out = {name: c.state() for name, c in (("curriculum", self.region), ("view_curriculum", self.view))
               if c.cfg.enabled}
        return {**out, "hard_starts": self.hard.state()} if self.hard.cfg.share > 0 else out
