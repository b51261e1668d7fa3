"""Batch assembly for `ReplayBuffer`: sampled slots gathered into torch batches (frame stacks, views, n-step returns).

A batch is ``observations`` / ``next_observations`` ({key: tensor}; images uint8 ``[B, C, H, W]`` or
``[B, k*C, H, W]`` with frame stacking, float keys float32), ``actions`` [B, A], ``rewards`` [B], ``terminals``
[B], ``is_intervention`` [B], one [B] float32 tensor per info key and, with ``n_step > 1``, ``discounts`` [B].
Tensors are allocated once per batch and filled through numpy views of the same memory, so a batch can be
filled in parts (`MixedSampler`: demo rows, then online rows) or refilled in place.

Frame stacking: the stack of the transition in slot ``i`` holds the frames ``i - k + 1 ... i``, clipped at its
episode start (the first frame repeats), so it never reaches into another episode.

n-step returns (``n_step > 1``): a sampled row is the transition at slot ``i`` followed by up to ``n - 1`` more
of the same episode (slots ``i + 1 ...``, each still valid: nothing overwritten, no episode boundary, not past
the newest transition); its reward is their discounted sum ``r_i + g r_(i+1) + ... + g^(k-1) r_(i+k-1)``, its
next observation the frame in slot ``i + k``, its ``terminals`` the terminated flag of transition ``i + k - 1``
and ``discounts`` = ``g^k``. Info keys are per-step reward terms (e.g. the grasp penalty) and are summed the
same way. Actions stay the first transition's.

View keys: a key stored with a leading axis of ``K`` views gives each row one view, drawn uniformly and
independently for the observation and the next observation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .replay_storage import stored_shape

if TYPE_CHECKING:
    from .replay_buffer import ReplayBuffer

__all__ = ["batch_to_device", "batch_views", "empty_batch", "gather"]

_SIDES = ("observations", "next_observations")


def _out_dtype(dtype: np.dtype, image: bool) -> np.dtype:
    """Images stay uint8 (the agent normalises them); other floats come out float32."""
    if image:
        return np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    return dtype


def _observation_shapes(buf: "ReplayBuffer") -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-row shape and dtype of every observation key in a batch."""
    shapes = {}
    for key, ks in buf.spec.items():
        stored = stored_shape(buf, key)
        if key in buf.view_keys:  # one view per row (then stacked: [k*C, ...])
            stored = stored[1:]
        if key in buf.stack_keys and buf.frame_stack > 1:
            stored = (buf.frame_stack * stored[0], *stored[1:])
        shapes[key] = (stored, _out_dtype(ks.dtype, key in buf.image_keys))
    return shapes


def empty_batch(buf: "ReplayBuffer", batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Allocate a fresh batch with ``buf``'s layout: torch tensors and numpy views of the same memory."""
    tensors: dict[str, Any] = {"observations": {}, "next_observations": {}}
    views: dict[str, Any] = {"observations": {}, "next_observations": {}}
    for key, (shape, dtype) in _observation_shapes(buf).items():
        for side in _SIDES:
            t = torch.from_numpy(np.empty((batch_size, *shape), dtype))
            tensors[side][key] = t
            views[side][key] = t.numpy()
    fields = {"actions": (batch_size, buf.action_dim)}
    for name in ("rewards", "terminals", "is_intervention", *buf.info_keys,
                 *(("discounts",) if buf.n_step > 1 else ())):
        fields[name] = (batch_size,)
    for name, shape in fields.items():
        t = torch.from_numpy(np.empty(shape, np.float32))
        tensors[name] = t
        views[name] = t.numpy()
    return tensors, views


def batch_views(buf: "ReplayBuffer", out: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Numpy views of a batch from an earlier ``sample`` call, checked against ``buf``'s layout."""
    ref, _ = empty_batch(buf, 0)

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


def gather(buf: "ReplayBuffer", slots: np.ndarray, views: dict[str, Any], lo: int) -> None:
    """Fill batch rows ``lo : lo + len(slots)`` with the transitions of ``buf`` in ``slots``."""
    n_rows = len(slots)
    hi = lo + n_rows
    steps = np.ones(n_rows, np.int64)  # transitions in each row's return (n-step)
    if buf.n_step > 1:
        rewards, info, last = _n_step_returns(buf, slots, steps)
    _gather_frames(buf, slots, (slots + steps) % buf.capacity, steps, views, lo)
    np.take(buf._action, slots, axis=0, out=views["actions"][lo:hi], mode="clip")
    views["is_intervention"][lo:hi] = buf._intervention[slots]
    if buf.n_step > 1:
        views["rewards"][lo:hi] = rewards
        views["terminals"][lo:hi] = buf._terminated[last]
        views["discounts"][lo:hi] = buf.discount ** steps
        for name, arr in info.items():
            views[name][lo:hi] = arr
    else:
        views["rewards"][lo:hi] = buf._reward[slots]
        views["terminals"][lo:hi] = buf._terminated[slots]
        for name, arr in buf._info.items():
            views[name][lo:hi] = arr[slots]


def _gather_frames(buf: "ReplayBuffer", slots: np.ndarray, nxt: np.ndarray, steps: np.ndarray,
                   views: dict[str, Any], lo: int) -> None:
    """Observation and next-observation rows: the frames at ``slots`` and ``nxt`` (stacked, or one view)."""
    n_rows = len(slots)
    hi = lo + n_rows
    n = buf.capacity
    k = buf.frame_stack
    if k > 1 and buf.stack_keys:
        # Stack slot for frame j (oldest first) is i - min(k-1-j, ep_pos): clipped at the
        # episode start, which repeats the first frame and never reaches into another episode.
        back = np.arange(k - 1, -1, -1)
        pos = buf._ep_pos[slots].astype(np.int64)
        obs_stack = (slots[:, None] - np.minimum(back[None, :], pos[:, None])) % n
        nxt_stack = (nxt[:, None] - np.minimum(back[None, :], pos[:, None] + steps[:, None])) % n
        obs_stack, nxt_stack = obs_stack.ravel(), nxt_stack.ravel()
    for key, frames in buf._frames.items():
        o = views["observations"][key][lo:hi]
        x = views["next_observations"][key][lo:hi]
        if k > 1 and key in buf.stack_keys and key in buf.view_keys:
            # one of the K views per row, the same view index for the row's k frames (each frame's K views are
            # its own shifts, so this is not one shift of the stack); [n_rows, k*C, ...], oldest frame first
            sub = frames.shape[2:]
            k_views = frames.shape[1]
            o.reshape(n_rows * k, *sub)[...] = frames[obs_stack, np.repeat(buf.rng.integers(0, k_views, n_rows), k)]
            x.reshape(n_rows * k, *sub)[...] = frames[nxt_stack, np.repeat(buf.rng.integers(0, k_views, n_rows), k)]
        elif k > 1 and key in buf.stack_keys:
            sub = frames.shape[1:]
            np.take(frames, obs_stack, axis=0, out=o.reshape(n_rows * k, *sub), mode="clip")
            np.take(frames, nxt_stack, axis=0, out=x.reshape(n_rows * k, *sub), mode="clip")
        elif key in buf.view_keys:  # one of the K views per row, e.g. float16 maps -> float32
            k_views = frames.shape[1]
            o[...] = frames[slots, buf.rng.integers(0, k_views, n_rows)]
            x[...] = frames[nxt, buf.rng.integers(0, k_views, n_rows)]
        elif o.dtype == frames.dtype:
            np.take(frames, slots, axis=0, out=o, mode="clip")
            np.take(frames, nxt, axis=0, out=x, mode="clip")
        else:  # e.g. float16 features -> float32
            o[...] = frames[slots]
            x[...] = frames[nxt]


def _n_step_returns(buf: "ReplayBuffer", slots: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
    """Discounted sums of reward and info over up to ``n_step`` consecutive transitions of each row's
    episode. Fills ``steps`` (transitions taken) in place; returns (rewards, info sums, slot of the last
    transition taken)."""
    n = buf.capacity
    rewards = buf._reward[slots].astype(np.float64)
    info = {k: arr[slots].astype(np.float64) for k, arr in buf._info.items()}
    last = slots.copy()
    going = ~buf._terminated[slots]
    for j in range(1, buf.n_step):
        cand = (slots + j) % n
        # the next transition of the same episode, written right after (stamp), still sampleable
        going &= (buf._valid[cand] & (buf._ep_pos[cand] == buf._ep_pos[slots] + j)
                  & (buf._stamp[cand] == buf._stamp[slots] + j))
        if not going.any():
            break
        weight = np.where(going, buf.discount ** j, 0.0)
        rewards += weight * buf._reward[cand]
        for k, arr in buf._info.items():
            info[k] += weight * arr[cand]
        steps += going
        last = np.where(going, cand, last)
        going &= ~buf._terminated[cand]
    return rewards, info, last


def batch_to_device(batch: dict[str, Any], device: str | torch.device | None) -> dict[str, Any]:
    """Move a (nested) batch dict of tensors to ``device`` (no-op for None / cpu)."""
    if device is None or torch.device(device).type == "cpu":
        return batch
    return {
        k: (batch_to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True))
        for k, v in batch.items()
    }
