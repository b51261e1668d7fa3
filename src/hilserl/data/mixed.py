"""RLPD-style mixing of the demo and online buffers, and routing of transitions between them.

HIL-SERL trains on batches drawn half from the demo buffer (demonstrations plus every human
intervention) and half from the online buffer (everything the robot did). ``route_transition`` is
the single place that decides where a transition goes; ``MixedSampler`` draws the batch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .replay_buffer import ReplayBuffer
from .replay_sampling import batch_to_device, batch_views, empty_batch, gather
from .spec import Transition

__all__ = ["MixedSampler", "route_transition"]


def route_transition(
    transition: Transition | Mapping[str, Any], online: ReplayBuffer, demo: ReplayBuffer
) -> bool:
    """Store one actor transition; returns True if it also went to the demo buffer.

    Intervention transitions (``is_intervention``, the human's action) go to both buffers; the
    policy's own transitions, including those just before and after an intervention, go to the
    online buffer only. The demo buffer only sees the intervention segments, so when a policy
    transition arrives after a segment, the segment is closed there with ``end_episode()``: it is
    an episode break for frame stacking and next observations, but its last transition is not
    terminal (it still bootstraps from its stored next observation).
    """
    t = Transition.from_any(transition)
    online.add(t)
    if t.is_intervention:
        demo.add(t)
        return True
    if demo.episode_open:
        demo.end_episode()
    return False


class MixedSampler:
    """Draw each batch partly from the demo buffer and partly from the online buffer.

    Exactly ``round(demo_fraction * batch_size)`` rows (Python ``round``, so ties go to even)
    come from the demo buffer and the rest from the online buffer, demo rows first. If the demo
    buffer is empty the whole batch comes from the online buffer, and vice versa; if both are
    empty, ValueError. Both buffers must produce the same batch layout (checked here).
    """

    def __init__(self, online: ReplayBuffer, demo: ReplayBuffer, demo_fraction: float = 0.5):
        if not 0.0 <= demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction must be in [0, 1], got {demo_fraction}")
        diff = online.compatible_with(demo)
        if diff is not None:
            raise ValueError(f"online and demo buffers have different layouts: {diff}")
        self.online = online
        self.demo = demo
        self.demo_fraction = float(demo_fraction)

    def split(self, batch_size: int) -> tuple[int, int]:
        """(demo rows, online rows) for a batch of ``batch_size`` given the buffers' fill."""
        n_demo = round(self.demo_fraction * batch_size)
        if len(self.demo) == 0:
            n_demo = 0
        elif len(self.online) == 0:
            n_demo = batch_size
        return n_demo, batch_size - n_demo

    def sample(
        self,
        batch_size: int,
        device: str | torch.device | None = None,
        out: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One batch with the layout of ``ReplayBuffer.sample``; rows ``[:n_demo]`` are demo.
        ``out``: an earlier CPU batch to refill in place (see ``ReplayBuffer.sample``)."""
        batch_size = int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(self.demo) == 0 and len(self.online) == 0:
            raise ValueError("cannot sample: both the online and the demo buffer are empty")
        n_demo, n_online = self.split(batch_size)
        if out is None:
            tensors, views = empty_batch(self.online, batch_size)
        else:
            tensors, views = out, batch_views(self.online, out, batch_size)
        if n_demo:
            gather(self.demo, self.demo.sample_slots(n_demo), views, 0)
        if n_online:
            gather(self.online, self.online.sample_slots(n_online), views, n_demo)
        return batch_to_device(tensors, device)
