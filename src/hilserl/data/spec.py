"""Key specs and the transition record shared by the replay buffers.

A buffer is told up front which per-frame arrays an observation holds (name -> shape, dtype), so
every transition can be checked on the way in. A wrong key, shape or dtype is a bug in the caller
(an env wrapper, the actor link) and is reported at once, naming the key, instead of surfacing
later as a shape error deep inside a learner update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

__all__ = ["KeySpec", "Transition", "normalize_spec", "is_image_spec", "validate_observation"]


class KeySpec(NamedTuple):
    """Shape and dtype of one per-frame array, as the environment produces it (images HWC)."""

    shape: tuple[int, ...]
    dtype: np.dtype


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, KeySpec]:
    """Turn ``{name: (shape, dtype)}`` (or KeySpec values) into ``{name: KeySpec}``."""
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError("observation spec must be a non-empty mapping name -> (shape, dtype)")
    out: dict[str, KeySpec] = {}
    for name, value in spec.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"observation key {name!r} must be a non-empty string")
        try:
            shape, dtype = value
            shape = tuple(int(d) for d in shape)
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"observation key {name!r}: spec must be (shape, dtype), got {value!r}"
            ) from exc
        if any(d <= 0 for d in shape):
            raise ValueError(f"observation key {name!r}: shape {shape} must be positive")
        if dtype.hasobject or dtype.fields is not None:
            raise ValueError(f"observation key {name!r}: dtype {dtype} is not a plain numeric dtype")
        out[name] = KeySpec(shape, dtype)
    return out


def is_image_spec(ks: KeySpec) -> bool:
    """Camera frames are uint8 HWC; they are stored and returned channels-first."""
    return ks.dtype == np.uint8 and len(ks.shape) == 3


def validate_observation(
    obs: Mapping[str, Any], spec: Mapping[str, KeySpec], what: str = "observation"
) -> dict[str, np.ndarray]:
    """Check keys, shapes and dtypes exactly (no silent casts); return numpy arrays."""
    if not isinstance(obs, Mapping):
        raise ValueError(f"{what} must be a dict of arrays, got {type(obs).__name__}")
    missing = [k for k in spec if k not in obs]
    if missing:
        raise ValueError(f"{what} is missing key {missing[0]!r} (expected keys {sorted(spec)})")
    extra = [k for k in obs if k not in spec]
    if extra:
        raise ValueError(f"{what} has unexpected key {extra[0]!r} (expected keys {sorted(spec)})")
    out: dict[str, np.ndarray] = {}
    for name, ks in spec.items():
        arr = np.asarray(obs[name])
        if arr.shape != ks.shape:
            raise ValueError(
                f"{what} key {name!r}: expected shape {ks.shape}, got {arr.shape}"
            )
        if arr.dtype != ks.dtype:
            raise ValueError(
                f"{what} key {name!r}: expected dtype {ks.dtype}, got {arr.dtype}"
            )
        out[name] = arr
    return out


@dataclass
class Transition:
    """One environment step as stored in a replay buffer.

    ``action`` is the action actually executed: during an intervention that is the human's action.
    ``terminated`` means the task ended (no bootstrap); ``truncated`` means the episode was cut
    (time limit) and the learner still bootstraps from ``next_observation``.
    ``info`` holds small per-transition scalars the buffer was configured with (``info_keys``).
    """

    observation: Mapping[str, Any]
    action: Any
    reward: float
    terminated: bool
    truncated: bool
    next_observation: Mapping[str, Any]
    is_intervention: bool = False
    info: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_any(cls, t: "Transition | Mapping[str, Any]") -> "Transition":
        """Accept a Transition or a plain dict with the same field names."""
        if isinstance(t, Transition):
            return t
        if isinstance(t, Mapping):
            names = set(cls.__dataclass_fields__)
            unknown = set(t) - names
            if unknown:
                raise ValueError(f"transition has unknown field {sorted(unknown)[0]!r}")
            try:
                return cls(**t)
            except TypeError as exc:
                raise ValueError(f"transition dict is incomplete: {exc}") from exc
        raise ValueError(f"expected a Transition or a dict, got {type(t).__name__}")
