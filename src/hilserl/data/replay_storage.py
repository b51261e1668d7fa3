"""Where a `ReplayBuffer` keeps its ring: the per-slot arrays, in RAM or as ``.npy`` memmaps, and the metadata.

Arrays (one row per slot, ``capacity`` rows; file ``<name>.npy`` in ``storage_dir``)::

    frame_000 ...   one array per observation key, in spec order (images stored channels-first, uint8)
    ep_pos          int32  position of the frame within its episode (frame stacking)
    stamp           int64  global frame write counter (detects frames written after the last flush)
    valid           bool   the slot starts a sampleable transition
    action          float32 [action_dim], reward float32, terminated / truncated / intervention bool
    info_000 ...    float32, one per info key
    tag_000 ...     int64, one per tag key

``meta.json`` (written atomically by ``ReplayBuffer.flush``) holds the format name, the configuration the
arrays were laid out with (``config``), the buffer's counters (``state``), the RNG state and the caller's
``extra_state``. Reopening compares the stored configuration with the one given and refuses a mismatch.
Nothing is pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hilserl.fileio import atomic_write_json
from hilserl.obs_format import channels_first_shape

if TYPE_CHECKING:
    from .replay_buffer import ReplayBuffer

__all__ = [
    "FORMAT",
    "META_FILE",
    "buffer_config",
    "config_diffs",
    "create_arrays",
    "open_arrays",
    "read_meta",
    "rng_state",
    "storage_layout",
    "stored_arguments",
    "stored_shape",
    "write_meta",
]

META_FILE = "meta.json"
FORMAT = "hilserl.replay_buffer/1"

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]


def stored_shape(buf: "ReplayBuffer", key: str) -> tuple[int, ...]:
    """Shape of one stored frame of ``key``: images HWC -> CHW, so batches gather channels-first without a copy."""
    shape = buf.spec[key].shape
    if key in buf.image_keys:
        return channels_first_shape(shape)
    return shape


def storage_layout(buf: "ReplayBuffer") -> Layout:
    """File name -> (shape, dtype) of every storage array."""
    n = buf.capacity
    lay: Layout = {}
    for i, key in enumerate(buf.spec):
        lay[f"frame_{i:03d}"] = ((n, *stored_shape(buf, key)), buf.spec[key].dtype)
    lay["ep_pos"] = ((n,), np.dtype(np.int32))
    lay["stamp"] = ((n,), np.dtype(np.int64))
    lay["valid"] = ((n,), np.dtype(np.bool_))
    lay["action"] = ((n, buf.action_dim), np.dtype(np.float32))
    lay["reward"] = ((n,), np.dtype(np.float32))
    lay["terminated"] = ((n,), np.dtype(np.bool_))
    lay["truncated"] = ((n,), np.dtype(np.bool_))
    lay["intervention"] = ((n,), np.dtype(np.bool_))
    for i, _ in enumerate(buf.info_keys):
        lay[f"info_{i:03d}"] = ((n,), np.dtype(np.float32))
    for i, _ in enumerate(buf.tag_keys):
        lay[f"tag_{i:03d}"] = ((n,), np.dtype(np.int64))
    return lay


def create_arrays(layout: Layout, storage_dir: Path | None) -> dict[str, np.ndarray]:
    """Zeroed arrays for a new buffer: in RAM, or new memmaps in ``storage_dir`` (which must be empty)."""
    arrays: dict[str, np.ndarray] = {}
    if storage_dir is None:
        for name, (shape, dtype) in layout.items():
            arrays[name] = np.zeros(shape, dtype)  # calloc: pages are committed on first write
        return arrays
    storage_dir.mkdir(parents=True, exist_ok=True)
    if any(storage_dir.iterdir()):
        raise ValueError(
            f"storage_dir {str(storage_dir)!r} is not empty and holds no {META_FILE}; "
            "refusing to overwrite it"
        )
    for name, (shape, dtype) in layout.items():
        arrays[name] = np.lib.format.open_memmap(
            storage_dir / f"{name}.npy", mode="w+", dtype=dtype, shape=shape
        )
    return arrays


def open_arrays(layout: Layout, storage_dir: Path) -> dict[str, np.ndarray]:
    """The existing memmaps of a buffer folder, checked against ``layout``."""
    arrays = {}
    for name, (shape, dtype) in layout.items():
        path = storage_dir / f"{name}.npy"
        if not path.exists():
            raise ValueError(f"{str(storage_dir)!r}: storage file {path.name} is missing")
        arr = np.lib.format.open_memmap(path, mode="r+")
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(
                f"{str(storage_dir)!r}: {path.name} has shape {arr.shape} dtype {arr.dtype}, "
                f"expected {shape} {dtype}"
            )
        arrays[name] = arr
    return arrays


def buffer_config(buf: "ReplayBuffer") -> dict[str, Any]:
    """The configuration the storage arrays are laid out with (stored in the metadata)."""
    return {
        "capacity": buf.capacity,
        "action_dim": buf.action_dim,
        "frame_stack": buf.frame_stack,
        "info_keys": list(buf.info_keys),
        "tag_keys": list(buf.tag_keys),
        "image_keys": list(buf.image_keys),
        "stack_keys": list(buf.stack_keys),
        "observation_spec": [  # a list: the order names the storage files frame_000, ...
            {"name": k, "shape": list(ks.shape), "dtype": ks.dtype.str}
            for k, ks in buf.spec.items()
        ],
    }


def config_diffs(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between a stored and a wanted `buffer_config` (empty: the same, maybe in another order)."""
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
    return diffs


def stored_arguments(storage_dir: str | os.PathLike) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``ReplayBuffer`` constructor arguments (positional, keyword) of the configuration stored in a folder."""
    path = Path(storage_dir) / META_FILE
    if not path.exists():
        raise ValueError(f"{str(storage_dir)!r} holds no replay buffer ({META_FILE} missing)")
    with open(path) as f:
        cfg = json.load(f)["config"]
    spec = {e["name"]: (tuple(e["shape"]), np.dtype(e["dtype"])) for e in cfg["observation_spec"]}
    kwargs = {
        "info_keys": cfg["info_keys"],
        "tag_keys": cfg.get("tag_keys", ()),
        "frame_stack": cfg["frame_stack"],
        "stack_keys": cfg["stack_keys"],
        "image_keys": cfg["image_keys"],
    }
    return (cfg["capacity"], spec, cfg["action_dim"]), kwargs


def read_meta(storage_dir: Path) -> dict[str, Any]:
    """The metadata of a buffer folder, format checked."""
    with open(storage_dir / META_FILE) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{str(storage_dir)!r}: unknown buffer format {meta.get('format')!r}")
    return meta


def write_meta(storage_dir: Path, meta: dict[str, Any], sync: bool) -> None:
    """Replace the metadata atomically; ``sync=False`` skips fsync (survives a process crash, not a power cut)."""
    if sync:
        atomic_write_json(storage_dir / META_FILE, meta)
    else:
        tmp = storage_dir / f".{META_FILE}.nosync.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, storage_dir / META_FILE)


def rng_state(rng: np.random.Generator) -> dict[str, Any] | None:
    """The generator's state if it is JSON-serialisable, else None (not stored)."""
    try:
        state = rng.bit_generator.state
        json.dumps(state)
    except (TypeError, ValueError):
        return None
    return state

