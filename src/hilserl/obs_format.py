"""The observation format, defined once: key names, layouts and the conversions between them.

Environment observation (what ``env.reset`` / ``env.step`` return, what an `Episode` and a demo dataset hold)::

    {"state":             float32 [S]                      proprioception (always present)
     "environment_state": float32 [E]                      optional (state-only simulation runs: the cube)
     "pixels":            {camera: uint8 [H, W, 3]}}       optional, channels-last RGB, one entry per camera

Stored observation (the flat dict a replay buffer is given and its observation spec names)::

    "state"               float32 [S]
    "environment_state"   float32 [E]                      optional
    "pixels.<camera>"     uint8 [H, W, 3]                  faithful mode: raw frames; the buffer keeps them
                                                           channels-first, [3, H, W], and samples them so
    "features.<camera>"   float16 [K, C, h, w]             cached mode: the frozen backbone's maps of K shifts
                                                           of the frame (shift 0 = the unshifted frame)

What the policy reads (``SACAgent.update`` batches; ``select_action`` takes the same keys without the batch axis)::

    "state"               float32 [B, S]
    "environment_state"   float32 [B, E]                   optional
    "pixels.<camera>"     uint8 [B, 3, H, W]               channels-first; augmented and run through the backbone
    "features.<camera>"   float32 [B, C, h, w]             one of the K maps (the unshifted one when acting);
                                                           float16 [B, K, C, h, w] is also accepted (one picked)

The simulation's canonical view (``env.canonical_view``) adds, per camera, ``<camera>_canonical``: the same state
rendered in the nominal look (no randomized appearance, camera pose or image corruption). It travels and is stored
like any camera, but is never a policy input: the learner pulls the randomized camera's embedding onto it
(`canonical_camera`, `is_canonical_camera`).

A camera's name is the same everywhere: the env's ``pixels`` entry, ``pixels.<camera>`` / ``features.<camera>``,
the policy's ``cameras``. LeRobot's names (``observation.state``, ``observation.images.<camera>``) belong to the
LeRobot format and live in `hilserl.data.lerobot_v3`.

The helpers here build and parse the camera keys (`pixel_key`, `feature_key`, `camera_of`, `is_pixel_key`,
`is_feature_key`, `is_camera_key`) and convert image layouts (`channels_first`, `channels_last`: numpy arrays or
torch tensors, with any leading batch axes, as views unless ``contiguous=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "ENV_STATE",
    "FEATURES_PREFIX",
    "PIXELS",
    "PIXELS_PREFIX",
    "STATE",
    "VECTOR_KEYS",
    "CANONICAL_SUFFIX",
    "camera_of",
    "canonical_camera",
    "channels_first",
    "channels_first_shape",
    "channels_last",
    "check_camera",
    "feature_key",
    "is_camera_key",
    "is_canonical_camera",
    "is_feature_key",
    "is_pixel_key",
    "pixel_key",
]

STATE = "state"
ENV_STATE = "environment_state"
PIXELS = "pixels"  # the env observation's dict of camera images
VECTOR_KEYS = (STATE, ENV_STATE)  # the float32 vectors, named alike in env, stored and policy observations
PIXELS_PREFIX = "pixels."
FEATURES_PREFIX = "features."
CANONICAL_SUFFIX = "_canonical"  # the canonical view of a camera (simulation, env.canonical_view)


# ---------------------------------------------------------------------------------------------------- keys
def check_camera(camera: Any) -> str:
    """``camera`` if it is a usable camera name (a non-empty string), else ValueError."""
    if not isinstance(camera, str) or not camera:
        raise ValueError(f"camera name: expected a non-empty string, got {camera!r}")
    return camera


def pixel_key(camera: str) -> str:
    """``"pixels.<camera>"``: the stored / policy key of a camera's raw frames."""
    return PIXELS_PREFIX + check_camera(camera)


def feature_key(camera: str) -> str:
    """``"features.<camera>"``: the stored / policy key of a camera's cached backbone maps."""
    return FEATURES_PREFIX + check_camera(camera)


def canonical_camera(camera: str) -> str:
    """``"<camera>_canonical"``: the name of a camera's canonical view (the same state in the nominal look)."""
    return check_camera(camera) + CANONICAL_SUFFIX


def is_canonical_camera(camera: Any) -> bool:
    """Is ``camera`` the canonical view of another camera (``"<camera>_canonical"``)?"""
    return isinstance(camera, str) and camera.endswith(CANONICAL_SUFFIX) and len(camera) > len(CANONICAL_SUFFIX)


def is_pixel_key(key: Any) -> bool:
    """Is ``key`` of the form ``"pixels.<camera>"`` (camera non-empty)?"""
    return isinstance(key, str) and key.startswith(PIXELS_PREFIX) and len(key) > len(PIXELS_PREFIX)


def is_feature_key(key: Any) -> bool:
    """Is ``key`` of the form ``"features.<camera>"`` (camera non-empty)?"""
    return isinstance(key, str) and key.startswith(FEATURES_PREFIX) and len(key) > len(FEATURES_PREFIX)


def is_camera_key(key: Any) -> bool:
    """A pixel or a feature key."""
    return is_pixel_key(key) or is_feature_key(key)


def camera_of(key: str) -> str:
    """The camera of ``"pixels.<camera>"`` or ``"features.<camera>"`` (everything after the first dot); ValueError
    for any other key."""
    if is_pixel_key(key):
        return key[len(PIXELS_PREFIX):]
    if is_feature_key(key):
        return key[len(FEATURES_PREFIX):]
    raise ValueError(f"observation key {key!r}: expected '{PIXELS_PREFIX}<camera>' or '{FEATURES_PREFIX}<camera>'")


# ---------------------------------------------------------------------------------------------------- layouts
def _axes(ndim: int, to_first: bool) -> tuple[int, ...]:
    if ndim < 3:
        raise ValueError(f"images: expected at least 3 axes ([..., H, W, C] or [..., C, H, W]), got {ndim}")
    lead, a, b, c = tuple(range(ndim - 3)), ndim - 3, ndim - 2, ndim - 1
    # channels-first: [..., H, W, C] -> [..., C, H, W]; channels-last: [..., C, H, W] -> [..., H, W, C]
    return lead + ((c, a, b) if to_first else (b, c, a))


def _permute(images, to_first: bool, contiguous: bool):
    if isinstance(images, np.ndarray):
        out = images.transpose(_axes(images.ndim, to_first))
        return np.ascontiguousarray(out) if contiguous else out
    if hasattr(images, "permute"):  # a torch tensor (torch is not imported here)
        out = images.permute(*_axes(images.dim(), to_first))
        return out.contiguous() if contiguous else out
    raise TypeError(f"images: expected a numpy array or a torch tensor, got {type(images).__name__}")


def channels_first(images, contiguous: bool = False):
    """[..., H, W, C] -> [..., C, H, W] (numpy array or torch tensor). A view unless ``contiguous``."""
    return _permute(images, True, contiguous)


def channels_last(images, contiguous: bool = False):
    """[..., C, H, W] -> [..., H, W, C] (numpy array or torch tensor). A view unless ``contiguous``."""
    return _permute(images, False, contiguous)


def channels_first_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape `channels_first` gives an image of ``shape`` ([..., H, W, C] -> [..., C, H, W])."""
    shape = tuple(shape)
    return tuple(shape[i] for i in _axes(len(shape), True))
