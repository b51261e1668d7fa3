"""What a `ReplayBuffer` accepts: its key configuration checked against the observation spec, and each added
transition's action, info scalars and tags checked against that configuration (observations themselves are
checked by `spec.validate_observation`). A mistake is reported at once, naming the key."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from .spec import KeySpec, is_image_spec

__all__ = ["check_action", "check_info", "check_key_names", "check_stack_keys", "check_view_keys",
           "resolve_image_keys"]

_RESERVED = {"observations", "next_observations", "actions", "rewards", "terminals", "is_intervention"}


def check_key_names(info_keys: tuple[str, ...], tag_keys: tuple[str, ...]) -> None:
    """Info and tag keys: no duplicates, no clash with batch field names or with each other."""
    for k in info_keys:
        if k in _RESERVED:
            raise ValueError(f"info key {k!r} collides with a batch field name")
    if len(set(info_keys)) != len(info_keys):
        raise ValueError(f"info_keys has duplicates: {info_keys}")
    if len(set(tag_keys)) != len(tag_keys):
        raise ValueError(f"tag_keys has duplicates: {tag_keys}")
    for k in tag_keys:
        if k in _RESERVED or k in info_keys:
            raise ValueError(f"tag key {k!r} collides with a batch field name or an info key")


def resolve_image_keys(spec: Mapping[str, KeySpec], image_keys: Iterable[str] | None) -> tuple[str, ...]:
    """The given image keys, checked (uint8 HWC keys of the spec), or by default every such key."""
    if image_keys is None:
        return tuple(k for k, ks in spec.items() if is_image_spec(ks))
    image_keys = tuple(image_keys)
    for k in image_keys:
        if k not in spec:
            raise ValueError(f"image key {k!r} is not in the observation spec")
        if not is_image_spec(spec[k]):
            raise ValueError(f"image key {k!r}: expected uint8 [H, W, C], spec is {spec[k]}")
    return image_keys


def check_stack_keys(spec: Mapping[str, KeySpec], stack_keys: tuple[str, ...]) -> None:
    for k in stack_keys:
        if k not in spec:
            raise ValueError(f"stack key {k!r} is not in the observation spec")
        if len(spec[k].shape) == 0:
            raise ValueError(f"stack key {k!r} is a scalar; stacking needs a leading axis")


def check_view_keys(spec: Mapping[str, KeySpec], view_keys: tuple[str, ...], image_keys: tuple[str, ...]) -> None:
    for k in view_keys:
        if k not in spec or k in image_keys or len(spec[k].shape) < 2:
            raise ValueError(f"view key {k!r}: expected a non-image key of the observation spec with a leading axis "
                             "of views")


def check_action(action: Any, action_dim: int) -> np.ndarray:
    action = np.asarray(action)
    if action.dtype.kind not in "fiub":
        raise ValueError(f"action: expected a numeric array, got dtype {action.dtype}")
    if action.shape != (action_dim,):
        raise ValueError(f"action: expected shape ({action_dim},), got {action.shape}")
    return action


def check_info(info: Mapping[str, Any] | None, info_keys: tuple[str, ...],
               tag_keys: tuple[str, ...]) -> tuple[dict[str, float], dict[str, int]]:
    """A transition's ``info``: exactly the info keys (float scalars) and tag keys (int64 integers).
    Returns (info values, tag values)."""
    info = dict(info or {})
    expected = [*info_keys, *tag_keys]
    unknown = [k for k in info if k not in expected]
    if unknown:
        raise ValueError(f"info has unexpected key {unknown[0]!r} (expected {expected})")
    missing = [k for k in expected if k not in info]
    if missing:
        raise ValueError(f"info is missing key {missing[0]!r} (expected {expected})")
    tag_vals = {}
    for k in tag_keys:
        v = np.asarray(info[k])
        if v.shape != () or v.dtype.kind not in "iu" or not -(2**63) <= int(v) < 2**63:
            raise ValueError(f"tag {k!r}: expected an int64 integer, got {info[k]!r}")
        tag_vals[k] = int(v)
    info_vals = {}
    for k in info_keys:
        v = np.asarray(info[k])
        if v.shape != () or v.dtype.kind not in "fiub":
            raise ValueError(f"info key {k!r}: expected a float scalar, got {info[k]!r}")
        info_vals[k] = float(v)
    return info_vals, tag_vals
