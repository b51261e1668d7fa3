"""``DrQV2Config``: the ``policy`` section with ``type: "drqv2"`` (`hilserl.agents.drqv2.DrQV2Agent`).

Everything the two agents share — shapes, encoder, cached features, augmentation, networks, critic ensemble and
trunk, the discrete gripper critic, discount, n-step returns, learning rates, UTD, the smoothness term, precision —
is ``SACConfig``'s field with the same meaning; this class only adds the exploration noise and sets DrQ-v2's own
defaults where the algorithm differs. Sources: Yarats, Fergus, Lazaric and Pinto, 2021, "Mastering Visual
Continuous Control: Improved Data-Augmented Reinforcement Learning" (arXiv:2107.09645), and its public code
(github.com/facebookresearch/drqv2: ``cfgs/config.yaml``, ``cfgs/task/*.yaml``, ``drqv2.py``).

SAC's own settings (``temperature_*``, ``target_entropy``, ``backup_entropy``, ``std_min``, ``std_max``) are kept so
that a config switches agent with one key, and are not used by DrQ-v2.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sac_config import SACConfig


@dataclass
class DrQV2Config(SACConfig):
    type: str = "drqv2"
    # ---- DrQ-v2's values where the algorithm differs from SAC's defaults
    tau: float = 0.01  # DrQ-v2 critic_target_tau
    n_step: int = 3  # DrQ-v2 nstep
    actor_q: str = "min"  # DrQ-v2's actor loss: -min(Q1, Q2)
    utd_ratio: int = 1  # DrQ-v2: one critic step and one actor step per update
    # ---- exploration noise: std linear from start to end over steps learner updates (DrQ-v2 stddev_schedule
    # 'linear(1.0,0.1,N)'), clipped to +-noise_clip in the critic's target and the actor's loss (stddev_clip)
    noise_std_start: float = 1.0
    noise_std_end: float = 0.1
    noise_std_steps: int = 2000  # chosen here: ~20% of the pixel config's 10,000 steps (DrQ-v2: 13-33% of a run)
    noise_clip: float = 0.3

    def __post_init__(self):
        super().__post_init__()
        errors = []
        if not self.noise_std_start >= 0 or not self.noise_std_end >= 0:
            errors.append(f"noise_std_start, noise_std_end: must be >= 0 (got {self.noise_std_start!r}, "
                          f"{self.noise_std_end!r})")
        if self.noise_std_steps < 0:
            errors.append(f"noise_std_steps: must be >= 0 (0: noise_std_end from the start) "
                          f"(got {self.noise_std_steps!r})")
        if not self.noise_clip > 0:
            errors.append(f"noise_clip: must be > 0 (got {self.noise_clip!r})")
        if errors:
            raise ValueError("invalid DrQV2Config:\n  " + "\n  ".join(errors))
