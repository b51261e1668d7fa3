"""Replay storage for HIL-SERL: memory-efficient replay buffers, the demo/online mixed sampler and
transition routing. Images are stored once as uint8; see ``replay_buffer`` for the layout,
``replay_storage`` for the files and ``replay_sampling`` for the batches."""

from .mixed import MixedSampler, route_transition
from .replay_buffer import ReplayBuffer
from .replay_sampling import batch_to_device
from .spec import KeySpec, Transition

__all__ = [
    "KeySpec",
    "MixedSampler",
    "ReplayBuffer",
    "Transition",
    "batch_to_device",
    "route_transition",
]
