"""Replay buffer: transitions stored as a ring of frames, with uniform sampling into torch batches.

Layout (why it is memory-efficient): the buffer is ONE ring of ``capacity`` slots. Each slot holds
one observation frame (every key, images as uint8) plus the fields of the transition that starts
at that frame (action, reward, flags, info). The next observation of the transition in slot ``i``
is always the frame in slot ``i + 1``, so no frame is stored twice. When an episode ends (or is
broken off, e.g. a demo-buffer segment ending because the human released the arm), its final
next-observation stays in the slot after its last transition and the next episode starts one
slot later; that final slot holds a frame but no transition. So a truncated transition keeps its
true final observation to bootstrap from, and each episode costs exactly one extra slot.

Per slot the buffer keeps ``ep_pos`` (position of the frame within its episode) for frame
stacking, a ``valid`` flag (slot starts a sampleable transition), and a ``stamp`` (global frame
write counter) used to detect frames overwritten after the last flush when reopening.

Ring wrap-around: writing a slot invalidates the old transition in it and every old transition
whose frame stack reached back into it, so a transition whose frames were overwritten is never
sampled.

Persistence: with ``storage_dir`` all arrays are ``.npy`` memmaps in that folder and the
bookkeeping (write cursor, counters, spec, RNG state) is JSON written atomically by ``flush()``
(the files are described in `replay_storage`). Reopening the folder restores the buffer as of the
last flush; frames written after that flush (a process crash between flushes) are detected by
their stamp and the transitions that used them are dropped. Nothing is pickled.

Tags and extra state (what makes exact crash accounting possible): ``tag_keys`` names int64
values stored per transition (e.g. the actor and its sequence number) that travel in the
transition's ``info`` but never enter sampled batches; ``flush(extra_state=...)`` stores a small
JSON object in the same atomic metadata write as the buffer's own counters, so after a crash the
caller's bookkeeping (e.g. which sequence numbers are stored) and the buffer contents agree.

Sampled batches (frame stacks, n-step returns, views, the batch layout) are assembled by
`replay_sampling`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from hilserl.obs_format import channels_first

from .replay_checks import (
    check_action,
    check_info,
    check_key_names,
    check_stack_keys,
    check_view_keys,
    resolve_image_keys,
)
from .replay_sampling import batch_to_device, batch_views, empty_batch, gather
from .replay_storage import (
    FORMAT,
    META_FILE,
    buffer_config,
    config_diffs,
    create_arrays,
    open_arrays,
    read_meta,
    rng_state,
    storage_layout,
    stored_arguments,
    write_meta,
)
from .spec import KeySpec, Transition, normalize_spec, validate_observation

__all__ = ["ReplayBuffer"]

def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class ReplayBuffer:
    """Uniform replay over transitions stored as a ring of frames (see module docstring).

    Args:
        capacity: number of slots (frames). Each episode in the buffer uses one slot for its final
            next-observation, so it holds ``capacity - episodes`` transitions (about 1% less for
            100-step episodes).
        observation_spec: ``{name: (shape, dtype)}`` of one observation, images as uint8 HWC.
        action_dim: length of the float32 action vector (for the discrete-gripper agent the last
            entry holds the gripper index 0/1/2 as a float).
        info_keys: names of small per-transition float scalars to store (e.g. ``grasp_penalty``).
        tag_keys: names of per-transition int64 tags (e.g. ``actor``, ``seq``), given in the
            transition's ``info`` like info keys; stored exactly, never sampled (see ``tags``).
        frame_stack: ``k`` most recent frames of the same episode per sample; at an episode start
            the first frame is repeated. Frames come oldest first along the channel axis.
        stack_keys: keys that are stacked (default: the image keys). A stacked key of shape
            ``[C, ...]`` (images: stored ``[C, H, W]``) comes out as ``[B, k*C, ...]``.
        image_keys: keys treated as HWC uint8 camera frames (default: every 3-D uint8 key).
        view_keys: keys stored with a leading axis of ``K`` alternative views of the same frame (the
            frozen backbone's maps of ``K`` shifted copies, ``features.<camera>`` [K, C, h, w]). A
            sampled row gets one view, drawn uniformly and independently for the observation and the
            next observation, so batches carry ``[B, C, h, w]``: ``K`` times less to gather. A view key
            that is also a stack key comes out ``[B, k*C, h, w]``: the row's view index for each of its
            ``k`` frames.
        n_step, discount: sample ``n_step``-step returns discounted by ``discount`` (see
            `replay_sampling`); batches then carry ``discounts`` [B]. A sampling choice, not stored.
        storage_dir: if given, arrays live as memmaps in this folder; an existing buffer there is
            reopened (its configuration must match, else ValueError).
        rng: numpy Generator or seed for sampling.

    Not thread-safe: one process/thread adds and samples (the learner), or guard it with a lock.
    """

    def __init__(
        self,
        capacity: int,
        observation_spec: Mapping[str, Any],
        action_dim: int,
        *,
        info_keys: Iterable[str] = (),
        tag_keys: Iterable[str] = (),
        frame_stack: int = 1,
        stack_keys: Iterable[str] | None = None,
        image_keys: Iterable[str] | None = None,
        view_keys: Iterable[str] = (),
        n_step: int = 1,
        discount: float = 1.0,
        storage_dir: str | os.PathLike | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.spec: dict[str, KeySpec] = normalize_spec(observation_spec)
        self.action_dim = int(action_dim)
        self.info_keys: tuple[str, ...] = tuple(info_keys)
        self.frame_stack = int(frame_stack)
        self.capacity = int(capacity)
        if self.action_dim <= 0:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        if self.capacity < self.frame_stack + 2:
            raise ValueError(f"capacity must be at least frame_stack + 2, got {capacity}")
        self.tag_keys: tuple[str, ...] = tuple(tag_keys)
        check_key_names(self.info_keys, self.tag_keys)
        self._extra_state: dict[str, Any] = {}
        self.image_keys = resolve_image_keys(self.spec, image_keys)
        if stack_keys is None:
            stack_keys = self.image_keys if self.frame_stack > 1 else ()
        self.stack_keys = tuple(stack_keys)
        check_stack_keys(self.spec, self.stack_keys)
        self.n_step = int(n_step)
        self.discount = float(discount)
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        self.view_keys = tuple(view_keys)
        check_view_keys(self.spec, self.view_keys, self.image_keys)

        # how many frames back a transition's stack reaches (what an overwrite can invalidate)
        self._reach = self.frame_stack - 1 if self.stack_keys else 0
        self.rng = _as_rng(rng)
        self.storage_dir = Path(storage_dir) if storage_dir is not None else None
        self._warned_break = False
        if self.storage_dir is not None and (self.storage_dir / META_FILE).exists():
            self._reopen(explicit_rng=rng is not None)
        else:
            self._create()

    # ------------------------------------------------------------------ storage
    def _bind(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = arrays
        self._frames = {key: arrays[f"frame_{i:03d}"] for i, key in enumerate(self.spec)}
        self._ep_pos = arrays["ep_pos"]
        self._stamp = arrays["stamp"]
        self._valid = arrays["valid"]
        self._action = arrays["action"]
        self._reward = arrays["reward"]
        self._terminated = arrays["terminated"]
        self._truncated = arrays["truncated"]
        self._intervention = arrays["intervention"]
        self._info = {k: arrays[f"info_{i:03d}"] for i, k in enumerate(self.info_keys)}
        self._tags = {k: arrays[f"tag_{i:03d}"] for i, k in enumerate(self.tag_keys)}

    def _create(self) -> None:
        self._head = self.capacity - 1  # slot of the newest frame; first episode starts at slot 0
        self._episode_open = False
        self._frames_written = 0
        self._num_added = 0
        self._num_episodes = 0
        self._n_valid = 0
        self._bind(create_arrays(storage_layout(self), self.storage_dir))
        if self.storage_dir is not None:
            self.flush()

    def _reopen(self, explicit_rng: bool) -> None:
        d = self.storage_dir
        assert d is not None
        meta = read_meta(d)
        stored = meta["config"]
        diffs = config_diffs(stored, buffer_config(self))
        if diffs:
            raise ValueError(
                f"storage_dir {str(d)!r} holds a buffer with a different configuration: "
                + "; ".join(diffs)
            )
        # same configuration, maybe listed in another order: use the stored order
        self.spec = {e["name"]: self.spec[e["name"]] for e in stored["observation_spec"]}
        self.info_keys = tuple(stored["info_keys"])
        self.tag_keys = tuple(stored.get("tag_keys", []))
        self.image_keys = tuple(stored["image_keys"])
        self.stack_keys = tuple(stored["stack_keys"])
        self._bind(open_arrays(storage_layout(self), d))
        st = meta["state"]
        self._head = int(st["head"])
        self._episode_open = bool(st["episode_open"])
        self._frames_written = int(st["frames_written"])
        self._num_added = int(st["num_added"])
        self._num_episodes = int(st["num_episodes"])
        self._extra_state = dict(meta.get("extra_state") or {})
        if not explicit_rng and meta.get("rng_state") is not None:
            try:
                self.rng.bit_generator.state = meta["rng_state"]
            except (TypeError, ValueError, KeyError):
                pass  # a different bit generator; keep the fresh one
        self._drop_unflushed()

    def _drop_unflushed(self) -> None:
        """Invalidate transitions that use frames written after the last flush (a crash)."""
        lost = self._stamp > self._frames_written
        if lost.any():
            bad = lost | np.roll(lost, -1)  # the frame itself or its next frame was rewritten
            ep_pos = np.asarray(self._ep_pos)
            for j in range(1, self._reach + 1):  # a stacked frame j steps back was rewritten
                bad |= np.roll(lost, j) & (ep_pos >= j)
            self._valid[bad] = False
            if lost[self._head]:
                self._episode_open = False
        self._n_valid = int(np.count_nonzero(self._valid))

    # ------------------------------------------------------------------ persistence
    @property
    def extra_state(self) -> dict[str, Any]:
        """The caller's JSON object stored with the last ``flush(extra_state=...)`` (a copy)."""
        return json.loads(json.dumps(self._extra_state))

    def flush(self, extra_state: Mapping[str, Any] | None = None, sync: bool = True) -> None:
        """Write memmapped arrays to disk, then the metadata JSON atomically (no-op in RAM).

        ``extra_state`` (JSON-serialisable) replaces the stored caller state in the same atomic
        write; None keeps the previous one. ``sync=False`` skips the msync/fsync calls: the result
        still survives a crash of this process (the kernel keeps the written pages and the rename
        is atomic) but not a power cut or a kernel crash."""
        if extra_state is not None:
            self._extra_state = json.loads(json.dumps(dict(extra_state)))
        if self.storage_dir is None:
            return
        if sync:
            for arr in self._arrays.values():
                arr.flush()
        meta = {
            "format": FORMAT,
            "config": buffer_config(self),
            "state": {
                "head": self._head,
                "episode_open": self._episode_open,
                "frames_written": self._frames_written,
                "num_added": self._num_added,
                "num_episodes": self._num_episodes,
                "num_transitions": self._n_valid,
            },
            "rng_state": rng_state(self.rng),
            "extra_state": self._extra_state,
        }
        write_meta(self.storage_dir, meta, sync)

    def close(self) -> None:
        """Flush and release the memmaps; the buffer must not be used afterwards."""
        if getattr(self, "_arrays", None) is None:
            return
        self.flush()
        self._arrays = None  # type: ignore[assignment]
        self._frames, self._info, self._tags = {}, {}, {}
        for name in ("_ep_pos", "_stamp", "_valid", "_action", "_reward", "_terminated",
                     "_truncated", "_intervention"):
            setattr(self, name, None)  # drop every memmap reference so the files are released

    def __enter__(self) -> "ReplayBuffer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @classmethod
    def open(
        cls, storage_dir: str | os.PathLike, rng: np.random.Generator | int | None = None
    ) -> "ReplayBuffer":
        """Reopen a buffer folder using the configuration stored in it."""
        args, kwargs = stored_arguments(storage_dir)
        return cls(*args, **kwargs, storage_dir=storage_dir, rng=rng)

    # ------------------------------------------------------------------ adding
    def __len__(self) -> int:
        """Number of sampleable transitions."""
        return self._n_valid

    @property
    def num_added(self) -> int:
        """Transitions added since creation (including ones since overwritten)."""
        return self._num_added

    @property
    def num_episodes(self) -> int:
        """Episodes (or demo segments) started since creation."""
        return self._num_episodes

    @property
    def episode_open(self) -> bool:
        """True if the next added transition continues the current episode."""
        return self._episode_open

    @property
    def bytes_per_transition(self) -> float:
        """Allocated bytes of all storage arrays divided by capacity."""
        return sum(a.nbytes for a in self._arrays.values()) / self.capacity

    def tags(self) -> dict[str, np.ndarray]:
        """``{tag key: int64 array}`` of the sampleable transitions, in slot order (copies)."""
        slots = np.flatnonzero(self._valid)
        return {k: np.asarray(arr[slots]).copy() for k, arr in self._tags.items()}

    def end_episode(self) -> None:
        """Close the current episode without a terminal flag (e.g. a demo segment ends because
        the human released the arm): its last transition keeps bootstrapping from its stored
        next observation, and the next transition starts a new episode (frame stacks restart)."""
        self._episode_open = False

    def _invalidate(self, slot: int) -> None:
        if self._valid[slot]:
            self._valid[slot] = False
            self._n_valid -= 1

    def _write_frame(self, slot: int, obs: Mapping[str, np.ndarray], ep_pos: int) -> None:
        n = self.capacity
        # Old transitions that used this slot's frame become invalid BEFORE it is overwritten.
        self._invalidate(slot)
        self._invalidate((slot - 1) % n)
        for j in range(1, self._reach + 1):
            s = (slot + j) % n
            if self._valid[s] and self._ep_pos[s] >= j:
                self._invalidate(s)
        self._frames_written += 1
        self._stamp[slot] = self._frames_written
        for key, arr in obs.items():
            if key in self.image_keys:
                self._frames[key][slot] = channels_first(arr)
            else:
                self._frames[key][slot] = arr
        self._ep_pos[slot] = ep_pos

    def _continues(self, obs: Mapping[str, np.ndarray]) -> bool:
        """Does ``obs`` equal the open episode's last next-observation (stored at head)?"""
        h = self._head
        for key, arr in obs.items():
            stored = self._frames[key][h]
            if key in self.image_keys:
                arr = channels_first(arr)
            if not np.array_equal(stored, arr, equal_nan=arr.dtype.kind in "fc"):
                return False
        return True

    def add(self, transition: Transition | Mapping[str, Any]) -> int:
        """Validate and store one transition; returns its slot.

        If an episode is open and ``observation`` equals its last next-observation, the
        transition continues that episode and only ``next_observation`` is written. Otherwise a
        new episode starts (if an open episode is broken off this way a warning is given once; call
        ``end_episode()`` to do it explicitly). ``terminated`` or ``truncated`` close the episode.
        """
        t = Transition.from_any(transition)
        obs = validate_observation(t.observation, self.spec, "observation")
        nobs = validate_observation(t.next_observation, self.spec, "next_observation")
        action = check_action(t.action, self.action_dim)
        info_vals, tag_vals = check_info(t.info, self.info_keys, self.tag_keys)
        reward = float(t.reward)
        terminated, truncated = bool(t.terminated), bool(t.truncated)

        n = self.capacity
        if self._episode_open and self._continues(obs):
            slot = self._head
            pos = int(self._ep_pos[slot])
        else:
            if self._episode_open and not self._warned_break:
                warnings.warn(
                    "observation does not continue the open episode; starting a new episode "
                    "(call end_episode() when an episode is abandoned without terminated/truncated)",
                    stacklevel=2,
                )
                self._warned_break = True
            slot = (self._head + 1) % n
            self._write_frame(slot, obs, 0)
            pos = 0
            self._num_episodes += 1
        nxt = (slot + 1) % n
        self._write_frame(nxt, nobs, pos + 1)
        self._action[slot] = action
        self._reward[slot] = reward
        self._terminated[slot] = terminated
        self._truncated[slot] = truncated
        self._intervention[slot] = bool(t.is_intervention)
        for k, v in info_vals.items():
            self._info[k][slot] = v
        for k, v in tag_vals.items():
            self._tags[k][slot] = v
        self._valid[slot] = True
        self._n_valid += 1
        self._head = nxt
        self._episode_open = not (terminated or truncated)
        self._num_added += 1
        return slot

    # ------------------------------------------------------------------ sampling
    def sample_slots(self, n: int) -> np.ndarray:
        """Uniformly draw ``n`` slots of valid transitions (with replacement)."""
        if self._n_valid == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        filled = min(self._frames_written, self.capacity)
        valid = self._valid
        if self._n_valid * 2 < filled:  # sparse (tiny buffer): pick from the list of valid slots
            return self.rng.choice(np.flatnonzero(valid[:filled]), size=n)
        out = np.empty(n, np.int64)
        got = 0
        while got < n:  # rejection sampling: >= half the slots are valid, usually ~99%
            need = n - got
            cand = self.rng.integers(0, filled, size=need + need // 8 + 8)
            cand = cand[valid[cand]][:need]
            out[got : got + len(cand)] = cand
            got += len(cand)
        return out

    def sample(
        self,
        batch_size: int,
        device: str | torch.device | None = None,
        out: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Sample a batch of transitions uniformly (with replacement).

        Returns ``observations`` / ``next_observations`` ({key: tensor}; images uint8
        ``[B, C, H, W]`` or ``[B, k*C, H, W]`` with frame stacking, float keys float32),
        ``actions`` [B, A], ``rewards`` [B], ``terminals`` [B] (1 = terminated; truncation is
        not terminal), ``is_intervention`` [B] and one [B] float32 tensor per info key.

        Each call returns new tensors (safe to keep) unless ``out`` is given: a CPU batch returned
        by an earlier call, refilled in place (about twice as fast: no fresh pages to fault in).
        """
        batch_size = int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if out is None:
            tensors, views = empty_batch(self, batch_size)
        else:
            tensors, views = out, batch_views(self, out, batch_size)
        gather(self, self.sample_slots(batch_size), views, 0)
        return batch_to_device(tensors, device)

    def compatible_with(self, other: "ReplayBuffer") -> str | None:
        """None if batches of both buffers have the same layout, else what differs."""
        for attr in ("action_dim", "frame_stack", "spec", "n_step", "discount"):
            if getattr(self, attr) != getattr(other, attr):
                return f"{attr}: {getattr(self, attr)!r} vs {getattr(other, attr)!r}"
        for attr in ("info_keys", "stack_keys", "image_keys", "view_keys"):
            if set(getattr(self, attr)) != set(getattr(other, attr)):
                return f"{attr}: {getattr(self, attr)!r} vs {getattr(other, attr)!r}"
        return None
