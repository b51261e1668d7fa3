"""Whole episodes, and their conversion to and from replay-buffer transitions.

An `Episode` is what a recording produces and what dataset formats exchange: every raw environment observation
(``{"state": float32[S], "pixels": {camera: uint8 H×W×3}}``, optionally ``"environment_state"``; the layouts are
defined in `hilserl.obs_format`) including the final next observation, the executed actions, rewards, intervention
flags and how the episode ended. Raw, because what a replay buffer stores depends on the policy config (pixels, or
cached backbone features); `fill_buffer` converts with the caller's ``to_stored`` (e.g.
`ObservationProcessor.to_stored`) on the way into a buffer, and `episodes_from_buffer` rebuilds the episodes of a
raw-observation buffer exactly (the buffer keeps every episode's final observation). The project's own on-disk demo
format is `demo_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from hilserl.obs_format import (ENV_STATE, PIXELS, STATE, VECTOR_KEYS, camera_of, channels_last, is_camera_key,
                                is_feature_key, is_pixel_key, pixel_key)

from .replay_buffer import ReplayBuffer
from .spec import Transition

__all__ = [
    "Episode",
    "FillCounts",
    "episodes_from_buffer",
    "fill_buffer",
    "observation_spec_from_space",
    "raw_to_stored",
    "stored_to_raw",
]

_RAW_KEYS = (STATE, ENV_STATE, PIXELS)

ToStored = Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]]
InfoFn = Callable[[Mapping[str, np.ndarray], np.ndarray], Mapping[str, float]]


# ---------------------------------------------------------------------------------------------------- observations
def raw_to_stored(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Raw env observation -> the flat layout a pixel buffer stores (``state``, ``pixels.<camera>``, ...)."""
    out = {STATE: np.asarray(obs[STATE])}
    if ENV_STATE in obs:
        out[ENV_STATE] = np.asarray(obs[ENV_STATE])
    for cam, image in (obs.get(PIXELS) or {}).items():
        out[pixel_key(cam)] = np.asarray(image)
    return out


def stored_to_raw(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `raw_to_stored`. Cached backbone features cannot be turned back into pixels."""
    out: dict[str, Any] = {}
    pixels: dict[str, np.ndarray] = {}
    for key, value in stored.items():
        if key in VECTOR_KEYS:
            out[key] = np.asarray(value)
        elif is_pixel_key(key):
            pixels[camera_of(key)] = np.asarray(value)
        elif is_feature_key(key):
            raise ValueError(
                f"stored observation key {key!r} holds cached backbone features, not camera pixels; "
                "raw observations cannot be rebuilt from it"
            )
        else:
            raise ValueError(f"stored observation key {key!r} is not 'state', 'environment_state' or 'pixels.<camera>'")
    if STATE not in out:
        raise ValueError("stored observation has no 'state' key")
    if pixels:
        out[PIXELS] = pixels
    return out


def observation_spec_from_space(observation_space) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Raw stored-layout spec (``state``, ``environment_state``, ``pixels.<camera>``) of a gymnasium Dict space
    shaped like `SO101GraspCubeEnv.observation_space`."""
    spaces = observation_space.spaces
    spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {STATE: (tuple(spaces[STATE].shape), np.dtype(np.float32))}
    if ENV_STATE in spaces:
        spec[ENV_STATE] = (tuple(spaces[ENV_STATE].shape), np.dtype(np.float32))
    if PIXELS in spaces:
        for cam, box in spaces[PIXELS].spaces.items():
            spec[pixel_key(cam)] = (tuple(box.shape), np.dtype(np.uint8))
    return spec


def _check_raw_observation(obs: Any, where: str, reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalize one raw observation (numpy arrays, exact dtypes) and check it against the first of its episode."""
    if not isinstance(obs, Mapping):
        raise ValueError(f"{where}: expected a dict observation, got {type(obs).__name__}")
    unknown = [k for k in obs if k not in _RAW_KEYS]
    if unknown:
        raise ValueError(f"{where}: unexpected key {unknown[0]!r} (a raw observation holds {list(_RAW_KEYS)})")
    if STATE not in obs:
        raise ValueError(f"{where}: missing key 'state'")
    out: dict[str, Any] = {}
    for key in VECTOR_KEYS:
        if key in obs:
            arr = np.asarray(obs[key])
            if arr.dtype != np.float32 or arr.ndim != 1:
                raise ValueError(f"{where}: {key!r} must be a 1-D float32 array, got {arr.dtype} shape {arr.shape}")
            out[key] = arr
    if PIXELS in obs:
        if not isinstance(obs[PIXELS], Mapping):
            raise ValueError(f"{where}: 'pixels' must be a dict camera -> image")
        pixels = {}
        for cam, image in obs[PIXELS].items():
            img = np.asarray(image)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(
                    f"{where}: pixels[{cam!r}] must be uint8 H×W×3, got {img.dtype} shape {img.shape}"
                )
            pixels[cam] = img
        out[PIXELS] = pixels
    if reference is not None:
        if set(out) != set(reference):
            raise ValueError(f"{where}: keys {sorted(out)} differ from the first observation's {sorted(reference)}")
        for key in VECTOR_KEYS:
            if key in out and out[key].shape != reference[key].shape:
                raise ValueError(f"{where}: {key!r} has shape {out[key].shape}, the episode's first observation "
                                 f"{reference[key].shape}")
        if PIXELS in out:
            cams, ref_cams = out[PIXELS], reference[PIXELS]
            if set(cams) != set(ref_cams):
                raise ValueError(f"{where}: cameras {sorted(cams)} differ from the first observation's "
                                 f"{sorted(ref_cams)}")
            for cam, img in cams.items():
                if img.shape != ref_cams[cam].shape:
                    raise ValueError(f"{where}: pixels[{cam!r}] has shape {img.shape}, the episode's first "
                                     f"observation {ref_cams[cam].shape}")
    return out


# ---------------------------------------------------------------------------------------------------- episode
@dataclass
class Episode:
    """One episode of T steps.

    ``observations`` holds T + 1 raw observations: the one each action was taken in, plus the final next
    observation (a time-out bootstraps from it). ``actions`` is (T, A) float32, the executed action (the human's
    during an intervention; for the discrete-gripper agent the last entry is the gripper command 0 close, 1 stay,
    2 open). ``terminated`` / ``truncated`` describe the last step. ``info`` holds per-step float scalars such as
    ``grasp_penalty`` (each (T,)).
    """

    observations: list[dict[str, Any]]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool = False
    truncated: bool = False
    is_intervention: np.ndarray | None = None
    task: str = ""
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions)
        if actions.ndim != 2 or actions.shape[0] == 0 or actions.dtype.kind not in "fiub":
            raise ValueError(f"episode actions: expected a numeric (T, A) array with T >= 1, got shape "
                             f"{actions.shape} dtype {actions.dtype}")
        self.actions = actions.astype(np.float32, copy=False)
        t = self.actions.shape[0]
        rewards = np.asarray(self.rewards)
        if rewards.shape != (t,) or rewards.dtype.kind not in "fiub":
            raise ValueError(f"episode rewards: expected shape ({t},) to match {t} actions, got {rewards.shape}")
        self.rewards = rewards.astype(np.float32, copy=False)
        if self.is_intervention is None:
            self.is_intervention = np.zeros(t, dtype=bool)
        flags = np.asarray(self.is_intervention)
        if flags.shape != (t,):
            raise ValueError(f"episode is_intervention: expected shape ({t},), got {flags.shape}")
        self.is_intervention = flags.astype(bool, copy=False)
        self.terminated, self.truncated = bool(self.terminated), bool(self.truncated)
        if not isinstance(self.task, str):
            raise ValueError(f"episode task: expected a string, got {type(self.task).__name__}")
        info = {}
        for key, values in dict(self.info).items():
            arr = np.asarray(values)
            if arr.shape != (t,) or arr.dtype.kind not in "fiub":
                raise ValueError(f"episode info[{key!r}]: expected {t} numbers, got shape {arr.shape}")
            info[str(key)] = arr.astype(np.float32, copy=False)
        self.info = info
        obs = list(self.observations)
        if len(obs) != t + 1:
            raise ValueError(f"episode observations: expected {t + 1} (one per action plus the final next "
                             f"observation), got {len(obs)}")
        first = _check_raw_observation(obs[0], "episode observation 0", None)
        self.observations = [first] + [_check_raw_observation(o, f"episode observation {i}", first)
                                       for i, o in enumerate(obs[1:], start=1)]

    @property
    def length(self) -> int:
        """Number of steps (transitions)."""
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.observations[0].get(PIXELS, {}))

    def stacked(self, key: str) -> np.ndarray:
        """All T + 1 values of ``state`` / ``environment_state`` / ``pixels.<camera>`` as one array."""
        if is_pixel_key(key):
            cam = camera_of(key)
            return np.stack([o[PIXELS][cam] for o in self.observations])
        return np.stack([o[key] for o in self.observations])

    def transitions(self, to_stored: ToStored | None = None, info: InfoFn | None = None,
                    info_keys: Iterable[str] | None = None) -> Iterator[Transition]:
        """The episode as replay transitions; each observation is converted once (``to_stored``, default
        `raw_to_stored`). ``info(stored_obs, action)`` computes per-step info scalars; without it the episode's
        own ``info`` arrays are used (only ``info_keys`` of them, if given)."""
        convert = to_stored or raw_to_stored
        stored = [dict(convert(o)) for o in self.observations]
        own = self.info if info_keys is None else {k: self.info[k] for k in info_keys}
        last = self.length - 1
        for i in range(self.length):
            action = self.actions[i]
            step_info = dict(info(stored[i], action)) if info is not None else {k: float(v[i]) for k, v in
                                                                                  own.items()}
            yield Transition(stored[i], action, float(self.rewards[i]), self.terminated and i == last,
                             self.truncated and i == last, stored[i + 1], bool(self.is_intervention[i]), step_info)


# ---------------------------------------------------------------------------------------------------- buffers
@dataclass
class FillCounts:
    """What `fill_buffer` added."""

    episodes: int = 0
    transitions: int = 0
    interventions: int = 0
    terminated: int = 0
    truncated: int = 0


def _buffer_cameras(buffer: ReplayBuffer) -> set[str]:
    return {camera_of(k) for k in buffer.spec if is_camera_key(k)}


def _check_fits(buffer: ReplayBuffer, ep: Episode, index: int) -> None:
    """Catch the usual mismatches (action size, state size, cameras) before anything is converted."""
    if ep.action_dim != buffer.action_dim:
        raise ValueError(f"episode {index}: actions have {ep.action_dim} values, the buffer expects "
                         f"{buffer.action_dim}")
    first = ep.observations[0]
    if STATE in buffer.spec and first[STATE].shape != buffer.spec[STATE].shape:
        raise ValueError(f"episode {index}: 'state' has shape {first[STATE].shape}, the buffer expects "
                         f"{buffer.spec[STATE].shape}")
    missing = sorted(_buffer_cameras(buffer) - set(ep.cameras))
    if missing:
        raise ValueError(f"episode {index}: camera {missing[0]!r} is missing (episode cameras: "
                         f"{list(ep.cameras)}); map the dataset's camera names to the policy's")
    for key, ks in buffer.spec.items():
        if is_pixel_key(key):
            got = first[PIXELS][camera_of(key)].shape
            if got != ks.shape:
                raise ValueError(f"episode {index}: camera images {key!r} have shape {got}, the buffer expects "
                                 f"{ks.shape}")


def fill_buffer(
    buffer: ReplayBuffer,
    episodes: Iterable[Episode],
    to_stored: ToStored | None = None,
    info: InfoFn | None = None,
) -> FillCounts:
    """Add whole episodes to a (demo) buffer, converting each raw observation with ``to_stored`` (e.g.
    `ObservationProcessor.to_stored`, which computes cached backbone features; default `raw_to_stored`).

    Per-step info the buffer stores (``buffer.info_keys``, e.g. ``grasp_penalty``) comes from ``info(stored_obs,
    action)`` when given, else from each episode's ``info`` arrays (info the buffer does not store is left out). An
    episode that ends with neither flag is closed with ``end_episode()`` (it bootstraps from its final
    observation)."""
    counts = FillCounts()
    for index, ep in enumerate(episodes):
        if not isinstance(ep, Episode):
            raise ValueError(f"episode {index}: expected an Episode, got {type(ep).__name__}")
        _check_fits(buffer, ep, index)
        if ep.length + 1 > buffer.capacity:
            raise ValueError(f"episode {index}: {ep.length} steps need {ep.length + 1} slots, the buffer has "
                             f"{buffer.capacity}")
        if info is None:
            tags = buffer.tag_keys
            if tags:
                raise ValueError(f"the buffer tags every transition with {list(tags)}: feed the episodes' "
                                 "transitions (Episode.transitions) through the owner of the buffer, e.g. "
                                 "Learner.ingest, or pass info=callable(stored_obs, action) returning the tags")
            missing = [k for k in buffer.info_keys if k not in ep.info]
            if missing:
                raise ValueError(f"episode {index}: the buffer stores info key {missing[0]!r} but the episode has "
                                 f"no such values; pass info=callable(stored_obs, action) to compute it")
        if buffer.episode_open:
            buffer.end_episode()
        try:
            transitions = list(ep.transitions(to_stored, info, buffer.info_keys))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"episode {index}: converting its observations failed: {exc!r}") from exc
        for step, t in enumerate(transitions):
            try:
                buffer.add(t)
            except ValueError as exc:
                raise ValueError(f"episode {index}, step {step}: {exc}") from exc
        if buffer.episode_open:
            buffer.end_episode()
        counts.episodes += 1
        counts.transitions += ep.length
        counts.interventions += int(ep.is_intervention.sum())
        counts.terminated += int(ep.terminated)
        counts.truncated += int(ep.truncated)
    return counts


def episodes_from_buffer(buffer: ReplayBuffer, tasks: Sequence[str] | str = "") -> Iterator[Episode]:
    """Rebuild episodes from a raw-observation buffer, oldest first.

    Walks the ring in write order. An episode is a run of consecutive valid transitions; it ends at a terminal or
    truncated transition or where the next slot holds no continuing transition (its final observation). After the
    ring wrapped, the oldest episode may have lost its beginning: it comes out starting where the data does.
    ``tasks``: one task for all episodes, or one per episode.
    """
    # The walk reads the buffer's storage arrays directly: ReplayBuffer offers sampling, not ordered reads.
    frames_written = buffer._frames_written
    cap = buffer.capacity
    filled = min(frames_written, cap)
    start = (buffer._head + 1) % cap if frames_written > cap else 0
    order = (start + np.arange(filled)) % cap
    valid, ep_pos = buffer._valid, buffer._ep_pos
    term, trunc = buffer._terminated, buffer._truncated
    image_keys = set(buffer.image_keys)

    def frame(slot: int) -> dict[str, Any]:
        stored = {}
        for key, arr in buffer._frames.items():
            value = np.array(arr[slot])
            stored[key] = channels_last(value, contiguous=True) if key in image_keys else value
        return stored_to_raw(stored)

    i, count = 0, 0
    while i < filled:
        if not valid[order[i]]:
            i += 1
            continue
        j = i
        while not (term[order[j]] or trunc[order[j]]) and j + 1 < filled and valid[order[j + 1]] \
                and ep_pos[order[j + 1]] == ep_pos[order[j]] + 1:
            j += 1
        slots = order[i:j + 1]
        if j + 1 >= filled:  # cannot happen for a consistent buffer: a transition always writes its next frame
            raise ValueError(f"replay buffer: transition in slot {int(order[j])} has no next frame")
        task = tasks if isinstance(tasks, str) else tasks[count]
        yield Episode(
            observations=[frame(int(s)) for s in order[i:j + 2]],
            actions=np.array(buffer._action[slots]),
            rewards=np.array(buffer._reward[slots]),
            terminated=bool(term[order[j]]),
            truncated=bool(trunc[order[j]]),
            is_intervention=np.array(buffer._intervention[slots]),
            task=task,
            info={k: np.array(arr[slots]) for k, arr in buffer._info.items()},
        )
        count += 1
        i = j + 1
