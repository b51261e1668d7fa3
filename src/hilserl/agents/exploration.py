"""Exploration noise for a deterministic actor (DrQ-v2, `hilserl.agents.drqv2`): Gaussian noise on the action
whose standard deviation follows a linear schedule, clipped where DrQ-v2 clips it.

DrQ-v2 (Yarats et al. 2021, arXiv:2107.09645; public code github.com/facebookresearch/drqv2, ``utils.schedule``
and ``utils.TruncatedNormal``): std(step) = linear from ``start`` to ``end`` over ``steps`` steps, then ``end``
(their ``linear(1.0,0.1,500000)``); acting adds unclipped noise; the critic's target and the actor's loss add noise
clipped to +-``clip`` (their ``stddev_clip`` 0.3); the noisy action is clamped to [-1, 1] with a straight-through
gradient (the clamp passes the gradient on unchanged).

The schedule's step lives in the weights (``ExplorationSchedule.step``, a buffer): it is saved with the model,
restored on resume, copied by ``train.init_policy`` (like SAC's learned temperature: a pretrained policy explores
as little as it had come to) and sent to actors with the policy weights, so an actor in another process acts
with the learner's current noise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def linear_schedule(start: float, end: float, steps: int, step: int) -> float:
    """``start`` at step 0, linear to ``end`` at ``steps``, ``end`` after (DrQ-v2's ``linear(start,end,steps)``)."""
    mix = min(max(step / steps, 0.0), 1.0) if steps > 0 else 1.0
    return (1.0 - mix) * start + mix * end


class ExplorationSchedule(nn.Module):
    """The noise std's schedule and where it stands: ``step`` counts actor updates (one per learner update)."""

    def __init__(self, start: float, end: float, steps: int):
        super().__init__()
        self.start, self.end, self.steps = float(start), float(end), int(steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def std(self) -> float:
        return linear_schedule(self.start, self.end, self.steps, int(self.step))

    def advance(self) -> None:
        self.step += 1


def noisy_action(mean: Tensor, std: float, clip: float | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """mean + eps, eps ~ N(0, std^2) per dimension (clipped to +-``clip`` when given), clamped to [-1, 1]; the
    gradient flows to ``mean`` as if nothing were clamped (straight-through, as DrQ-v2's ``TruncatedNormal``)."""
    eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator) * std
    if clip is not None:
        eps = eps.clamp(-clip, clip)
    x = mean + eps
    return x + (x.clamp(-1.0, 1.0) - x).detach()
