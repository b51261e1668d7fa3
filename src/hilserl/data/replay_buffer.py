"""Replay buffer: frame ring storage, uniform sampling into torch batches, memmap persistence.

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

n-step returns (``n_step > 1``): a sampled row is the transition at slot ``i`` followed by up to
``n - 1`` more of the same episode (slots ``i + 1 ...``, each still valid: nothing overwritten, no
episode boundary, not past the newest transition); its reward is their discounted sum
``r_i + g r_(i+1) + ... + g^(k-1) r_(i+k-1)``, its next observation the frame in slot ``i + k``, its
``terminals`` the terminated flag of transition ``i + k - 1`` and ``discounts`` = ``g^k``. Info keys
are per-step reward terms (e.g. the grasp penalty) and are summed the same way. Actions stay the
first transition's.

Ring wrap-around: writing a slot invalidates the old transition in it and every old transition
whose frame stack reached back into it, so a transition whose frames were overwritten is never
sampled.

Persistence: with ``storage_dir`` all arrays are ``.npy`` memmaps in that folder and the
bookkeeping (write cursor, counters, spec, RNG state) is JSON written atomically by ``flush()``.
Reopening the folder restores the buffer as of the last flush; frames written after that flush
(a process crash between flushes) are detected by their stamp and the transitions that used them
are dropped. Nothing is pickled.

Tags and extra state (what makes exact crash accounting possible): ``tag_keys`` names int64
values stored per transition (e.g. the actor and its sequence number) that travel in the
transition's ``info`` but never enter sampled batches; ``flush(extra_state=...)`` stores a small
JSON object in the same atomic metadata write as the buffer's own counters, so after a crash the
caller's bookkeeping (e.g. which sequence numbers are stored) and the buffer contents agree.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from hilserl.fileio import atomic_write_json as _atomic_write_json

from .spec import KeySpec, Transition, is_image_spec, normalize_spec, validate_observation

__all__ = ["ReplayBuffer"]

_META_FILE = "meta.json"
_FORMAT = "hilserl.replay_buffer/1"
_RESERVED = {"observations", "next_observations", "actions", "rewards", "terminals", "is_intervention"}


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _out_dtype(dtype: np.dtype, image: bool) -> np.dtype:
    """Images stay uint8 (the agent normalises them); other floats come out float32."""
    if image:
        return np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    return dtype


class ReplayBuffer:
    """Uniform replay over transitions stored as a ring of frames (see module docstring).

    Args:
        capacity: number of slots (frames). Each episode in the buffer uses one slot for its final
            next-observation, so it holds ``capacity - episodes`` transitions (about 1% less for
            100-step episodes).
        observation_spec: ``{name: (shape, dtype)}`` of one observation, images as uint8 HWC.
        action_dim: length of the float32 action vector (for the discrete-gripper agent the last
            entry holds the gripper index 0/1/2 as a float).
        info_keys: names of small per-transition float scalars to store (e.g. ``gripper_penalty``).
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
            next observation, so batches carry ``[B, C, h, w]``: ``K`` times less to gather.
        n_step, discount: sample ``n_step``-step returns discounted by ``discount`` (see the module
            docstring); batches then carry ``discounts`` [B]. A sampling choice, not stored.
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
        for k in self.info_keys:
            if k in _RESERVED:
                raise ValueError(f"info key {k!r} collides with a batch field name")
        if len(set(self.info_keys)) != len(self.info_keys):
            raise ValueError(f"info_keys has duplicates: {self.info_keys}")
        self.tag_keys: tuple[str, ...] = tuple(tag_keys)
        if len(set(self.tag_keys)) != len(self.tag_keys):
            raise ValueError(f"tag_keys has duplicates: {self.tag_keys}")
        for k in self.tag_keys:
            if k in _RESERVED or k in self.info_keys:
                raise ValueError(f"tag key {k!r} collides with a batch field name or an info key")
        self._extra_state: dict[str, Any] = {}

        if image_keys is None:
            self.image_keys = tuple(k for k, ks in self.spec.items() if is_image_spec(ks))
        else:
            self.image_keys = tuple(image_keys)
            for k in self.image_keys:
                if k not in self.spec:
                    raise ValueError(f"image key {k!r} is not in the observation spec")
                if not is_image_spec(self.spec[k]):
                    raise ValueError(
                        f"image key {k!r}: expected uint8 [H, W, C], spec is {self.spec[k]}"
                    )
        if stack_keys is None:
            stack_keys = self.image_keys if self.frame_stack > 1 else ()
        self.stack_keys = tuple(stack_keys)
        for k in self.stack_keys:
            if k not in self.spec:
                raise ValueError(f"stack key {k!r} is not in the observation spec")
            if len(self.spec[k].shape) == 0:
                raise ValueError(f"stack key {k!r} is a scalar; stacking needs a leading axis")

        self.n_step = int(n_step)
        self.discount = float(discount)
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        self.view_keys = tuple(view_keys)
        for k in self.view_keys:
            if k not in self.spec or k in self.image_keys or k in self.stack_keys or len(self.spec[k].shape) < 2:
                raise ValueError(f"view key {k!r}: expected a non-image, unstacked key of the observation spec "
                                 "with a leading axis of views")

        # how many frames back a transition's stack reaches (what an overwrite can invalidate)
        self._reach = self.frame_stack - 1 if self.stack_keys else 0
        self.rng = _as_rng(rng)
        self.storage_dir = Path(storage_dir) if storage_dir is not None else None
        self._warned_break = False
        if self.storage_dir is not None and (self.storage_dir / _META_FILE).exists():
            self._reopen(explicit_rng=rng is not None)
        else:
            self._create()

    # ------------------------------------------------------------------ storage layout
    def _stored_shape(self, key: str) -> tuple[int, ...]:
        shape = self.spec[key].shape
        if key in self.image_keys:  # HWC -> CHW so batches gather channels-first without a copy
            return (shape[2], shape[0], shape[1])
        return shape

    def _layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """File name -> (shape, dtype) of every storage array."""
        n = self.capacity
        lay: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for i, key in enumerate(self.spec):
            lay[f"frame_{i:03d}"] = ((n, *self._stored_shape(key)), self.spec[key].dtype)
        lay["ep_pos"] = ((n,), np.dtype(np.int32))
        lay["stamp"] = ((n,), np.dtype(np.int64))
        lay["valid"] = ((n,), np.dtype(np.bool_))
        lay["action"] = ((n, self.action_dim), np.dtype(np.float32))
        lay["reward"] = ((n,), np.dtype(np.float32))
        lay["terminated"] = ((n,), np.dtype(np.bool_))
        lay["truncated"] = ((n,), np.dtype(np.bool_))
        lay["intervention"] = ((n,), np.dtype(np.bool_))
        for i, _ in enumerate(self.info_keys):
            lay[f"info_{i:03d}"] = ((n,), np.dtype(np.float32))
        for i, _ in enumerate(self.tag_keys):
            lay[f"tag_{i:03d}"] = ((n,), np.dtype(np.int64))
        return lay

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
        arrays: dict[str, np.ndarray] = {}
        if self.storage_dir is None:
            for name, (shape, dtype) in self._layout().items():
                arrays[name] = np.zeros(shape, dtype)  # calloc: pages are committed on first write
        else:
            d = self.storage_dir
            d.mkdir(parents=True, exist_ok=True)
            if any(d.iterdir()):
                raise ValueError(
                    f"storage_dir {str(d)!r} is not empty and holds no {_META_FILE}; "
                    "refusing to overwrite it"
                )
            for name, (shape, dtype) in self._layout().items():
                arrays[name] = np.lib.format.open_memmap(
                    d / f"{name}.npy", mode="w+", dtype=dtype, shape=shape
                )
        self._bind(arrays)
        if self.storage_dir is not None:
            self.flush()

    def _config(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "action_dim": self.action_dim,
            "frame_stack": self.frame_stack,
            "info_keys": list(self.info_keys),
            "tag_keys": list(self.tag_keys),
            "image_keys": list(self.image_keys),
            "stack_keys": list(self.stack_keys),
            "observation_spec": [  # a list: the order names the storage files frame_000, ...
                {"name": k, "shape": list(ks.shape), "dtype": ks.dtype.str}
                for k, ks in self.spec.items()
            ],
        }

    def _reopen(self, explicit_rng: bool) -> None:
        d = self.storage_dir
        assert d is not None
        with open(d / _META_FILE) as f:
            meta = json.load(f)
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{str(d)!r}: unknown buffer format {meta.get('format')!r}")
        stored, wanted = meta["config"], self._config()
        diffs = []
        s_spec = {e["name"]: e for e in stored.get("observation_spec", [])}
        w_spec = {e["name"]: e for e in wanted["observation_spec"]}
        for k in sorted(set(s_spec) | set(w_spec)):
            if k not in s_spec:
                diffs.append(f"key {k!r} is not in the stored buffer")
            elif k not in w_spec:
                diffs.append(f"stored key {k!r} is missing from the given spec")
            elif s_spec[k] != w_spec[k]:
                diffs.append(
                    f"key {k!r}: stored shape {tuple(s_spec[k]['shape'])} dtype "
                    f"{np.dtype(s_spec[k]['dtype'])}, given shape "
                    f"{tuple(w_spec[k]['shape'])} dtype {np.dtype(w_spec[k]['dtype'])}"
                )
        for field in ("capacity", "action_dim", "frame_stack"):
            if stored.get(field) != wanted[field]:
                diffs.append(f"{field}: stored {stored.get(field)!r}, given {wanted[field]!r}")
        for field in ("info_keys", "tag_keys", "image_keys", "stack_keys"):  # order does not matter
            if sorted(stored.get(field, [])) != sorted(wanted[field]):
                diffs.append(f"{field}: stored {stored.get(field)!r}, given {wanted[field]!r}")
        if not diffs:  # same configuration, maybe listed in another order: use the stored order
            self.spec = {k: self.spec[k] for k in s_spec}
            self.info_keys = tuple(stored["info_keys"])
            self.tag_keys = tuple(stored.get("tag_keys", []))
            self.image_keys = tuple(stored["image_keys"])
            self.stack_keys = tuple(stored["stack_keys"])
        if diffs:
            raise ValueError(
                f"storage_dir {str(d)!r} holds a buffer with a different configuration: "
                + "; ".join(diffs)
            )
        arrays = {}
        for name, (shape, dtype) in self._layout().items():
            path = d / f"{name}.npy"
            if not path.exists():
                raise ValueError(f"{str(d)!r}: storage file {path.name} is missing")
            arr = np.lib.format.open_memmap(path, mode="r+")
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(
                    f"{str(d)!r}: {path.name} has shape {arr.shape} dtype {arr.dtype}, "
                    f"expected {shape} {dtype}"
                )
            arrays[name] = arr
        self._bind(arrays)
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
        try:
            rng_state = self.rng.bit_generator.state
            json.dumps(rng_state)
        except (TypeError, ValueError):
            rng_state = None
        meta = {
            "format": _FORMAT,
            "config": self._config(),
            "state": {
                "head": self._head,
                "episode_open": self._episode_open,
                "frames_written": self._frames_written,
                "num_added": self._num_added,
                "num_episodes": self._num_episodes,
                "num_transitions": self._n_valid,
            },
            "rng_state": rng_state,
            "extra_state": self._extra_state,
        }
        if sync:
            _atomic_write_json(self.storage_dir / _META_FILE, meta)
        else:
            tmp = self.storage_dir / f".{_META_FILE}.nosync.tmp"
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, self.storage_dir / _META_FILE)

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
        path = Path(storage_dir) / _META_FILE
        if not path.exists():
            raise ValueError(f"{str(storage_dir)!r} holds no replay buffer ({_META_FILE} missing)")
        with open(path) as f:
            cfg = json.load(f)["config"]
        spec = {e["name"]: (tuple(e["shape"]), np.dtype(e["dtype"])) for e in cfg["observation_spec"]}
        return cls(
            cfg["capacity"],
            spec,
            cfg["action_dim"],
            info_keys=cfg["info_keys"],
            tag_keys=cfg.get("tag_keys", ()),
            frame_stack=cfg["frame_stack"],
            stack_keys=cfg["stack_keys"],
            image_keys=cfg["image_keys"],
            storage_dir=storage_dir,
            rng=rng,
        )

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
                self._frames[key][slot] = arr.transpose(2, 0, 1)
            else:
                self._frames[key][slot] = arr
        self._ep_pos[slot] = ep_pos

    def _continues(self, obs: Mapping[str, np.ndarray]) -> bool:
        """Does ``obs`` equal the open episode's last next-observation (stored at head)?"""
        h = self._head
        for key, arr in obs.items():
            stored = self._frames[key][h]
            if key in self.image_keys:
                arr = arr.transpose(2, 0, 1)
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
        action = np.asarray(t.action)
        if action.dtype.kind not in "fiub":
            raise ValueError(f"action: expected a numeric array, got dtype {action.dtype}")
        if action.shape != (self.action_dim,):
            raise ValueError(f"action: expected shape ({self.action_dim},), got {action.shape}")
        info = dict(t.info or {})
        expected = [*self.info_keys, *self.tag_keys]
        unknown = [k for k in info if k not in expected]
        if unknown:
            raise ValueError(f"info has unexpected key {unknown[0]!r} (expected {expected})")
        missing = [k for k in expected if k not in info]
        if missing:
            raise ValueError(f"info is missing key {missing[0]!r} (expected {expected})")
        tag_vals = {}
        for k in self.tag_keys:
            v = np.asarray(info[k])
            if v.shape != () or v.dtype.kind not in "iu" or not -(2**63) <= int(v) < 2**63:
                raise ValueError(f"tag {k!r}: expected an int64 integer, got {info[k]!r}")
            tag_vals[k] = int(v)
        info_vals = {}
        for k in self.info_keys:
            v = np.asarray(info[k])
            if v.shape != () or v.dtype.kind not in "fiub":
                raise ValueError(f"info key {k!r}: expected a float scalar, got {info[k]!r}")
            info_vals[k] = float(v)
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

    def _batch_shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        shapes = {}
        for key, ks in self.spec.items():
            stored = self._stored_shape(key)
            if key in self.stack_keys and self.frame_stack > 1:
                stored = (self.frame_stack * stored[0], *stored[1:])
            if key in self.view_keys:
                stored = stored[1:]
            shapes[key] = (stored, _out_dtype(ks.dtype, key in self.image_keys))
        return shapes

    def _empty_batch(self, batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Allocate a fresh batch: torch tensors and numpy views of the same memory."""
        tensors: dict[str, Any] = {"observations": {}, "next_observations": {}}
        views: dict[str, Any] = {"observations": {}, "next_observations": {}}
        for key, (shape, dtype) in self._batch_shapes().items():
            for side in ("observations", "next_observations"):
                t = torch.from_numpy(np.empty((batch_size, *shape), dtype))
                tensors[side][key] = t
                views[side][key] = t.numpy()
        fields = {"actions": (batch_size, self.action_dim)}
        for name in ("rewards", "terminals", "is_intervention", *self.info_keys,
                     *(("discounts",) if self.n_step > 1 else ())):
            fields[name] = (batch_size,)
        for name, shape in fields.items():
            t = torch.from_numpy(np.empty(shape, np.float32))
            tensors[name] = t
            views[name] = t.numpy()
        return tensors, views

    def _gather(self, slots: np.ndarray, views: dict[str, Any], lo: int) -> None:
        """Fill batch rows ``lo : lo + len(slots)`` with the transitions in ``slots``."""
        n_rows = len(slots)
        hi = lo + n_rows
        n = self.capacity
        steps = np.ones(n_rows, np.int64)  # transitions in each row's return (n-step)
        if self.n_step > 1:
            rewards, info, last = self._n_step_returns(slots, steps)
        nxt = (slots + steps) % n
        k = self.frame_stack
        if k > 1 and self.stack_keys:
            # Stack slot for frame j (oldest first) is i - min(k-1-j, ep_pos): clipped at the
            # episode start, which repeats the first frame and never reaches into another episode.
            back = np.arange(k - 1, -1, -1)
            pos = self._ep_pos[slots].astype(np.int64)
            obs_stack = (slots[:, None] - np.minimum(back[None, :], pos[:, None])) % n
            nxt_stack = (nxt[:, None] - np.minimum(back[None, :], pos[:, None] + steps[:, None])) % n
            obs_stack, nxt_stack = obs_stack.ravel(), nxt_stack.ravel()
        for key, frames in self._frames.items():
            o = views["observations"][key][lo:hi]
            x = views["next_observations"][key][lo:hi]
            if k > 1 and key in self.stack_keys:
                sub = frames.shape[1:]
                np.take(frames, obs_stack, axis=0, out=o.reshape(n_rows * k, *sub), mode="clip")
                np.take(frames, nxt_stack, axis=0, out=x.reshape(n_rows * k, *sub), mode="clip")
            elif key in self.view_keys:  # one of the K views per row, e.g. float16 maps -> float32
                k_views = frames.shape[1]
                o[...] = frames[slots, self.rng.integers(0, k_views, n_rows)]
                x[...] = frames[nxt, self.rng.integers(0, k_views, n_rows)]
            elif o.dtype == frames.dtype:
                np.take(frames, slots, axis=0, out=o, mode="clip")
                np.take(frames, nxt, axis=0, out=x, mode="clip")
            else:  # e.g. float16 features -> float32
                o[...] = frames[slots]
                x[...] = frames[nxt]
        np.take(self._action, slots, axis=0, out=views["actions"][lo:hi], mode="clip")
        views["is_intervention"][lo:hi] = self._intervention[slots]
        if self.n_step > 1:
            views["rewards"][lo:hi] = rewards
            views["terminals"][lo:hi] = self._terminated[last]
            views["discounts"][lo:hi] = self.discount ** steps
            for name, arr in info.items():
                views[name][lo:hi] = arr
        else:
            views["rewards"][lo:hi] = self._reward[slots]
            views["terminals"][lo:hi] = self._terminated[slots]
            for name, arr in self._info.items():
                views[name][lo:hi] = arr[slots]

    def _n_step_returns(self, slots: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
        """Discounted sums of reward and info over up to ``n_step`` consecutive transitions of each row's
        episode. Fills ``steps`` (transitions taken) in place; returns (rewards, info sums, slot of the last
        transition taken)."""
        n = self.capacity
        rewards = self._reward[slots].astype(np.float64)
        info = {k: arr[slots].astype(np.float64) for k, arr in self._info.items()}
        last = slots.copy()
        going = ~self._terminated[slots]
        for j in range(1, self.n_step):
            cand = (slots + j) % n
            # the next transition of the same episode, written right after (stamp), still sampleable
            going &= (self._valid[cand] & (self._ep_pos[cand] == self._ep_pos[slots] + j)
                      & (self._stamp[cand] == self._stamp[slots] + j))
            if not going.any():
                break
            weight = np.where(going, self.discount ** j, 0.0)
            rewards += weight * self._reward[cand]
            for k, arr in self._info.items():
                info[k] += weight * arr[cand]
            steps += going
            last = np.where(going, cand, last)
            going &= ~self._terminated[cand]
        return rewards, info, last

    def _views_of(self, out: dict[str, Any], batch_size: int) -> dict[str, Any]:
        """Numpy views of a batch from an earlier ``sample`` call, checked against the layout."""
        ref, _ = self._empty_batch(0)

        def walk(o: Any, r: Any, name: str) -> Any:
            if isinstance(r, dict):
                if not isinstance(o, dict) or set(o) != set(r):
                    raise ValueError(f"out[{name!r}] does not have the batch layout of this buffer")
                return {k: walk(o[k], r[k], k) for k in r}
            if (
                not isinstance(o, torch.Tensor)
                or o.device.type != "cpu"
                or o.dtype != r.dtype
                or tuple(o.shape) != (batch_size, *r.shape[1:])
                or not o.is_contiguous()
            ):
                raise ValueError(
                    f"out[{name!r}] must be a contiguous CPU tensor of shape "
                    f"{(batch_size, *r.shape[1:])} and dtype {r.dtype}"
                )
            return o.numpy()

        return walk(out, ref, "batch")

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
            tensors, views = self._empty_batch(batch_size)
        else:
            tensors, views = out, self._views_of(out, batch_size)
        self._gather(self.sample_slots(batch_size), views, 0)
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


def batch_to_device(batch: dict[str, Any], device: str | torch.device | None) -> dict[str, Any]:
    """Move a (nested) batch dict of tensors to ``device`` (no-op for None / cpu)."""
    if device is None or torch.device(device).type == "cpu":
        return batch
    return {
        k: (batch_to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True))
        for k, v in batch.items()
    }
