"""numpy arrays and torch weights <-> protobuf messages, as raw bytes with a dtype name and a shape.

Nothing received is trusted: a tensor is accepted only with a dtype from `DTYPES`, at most `MAX_DIMS` dimensions,
exactly prod(shape) * itemsize bytes, no more than the caller's byte limit, finite floats, and (when the caller
knows what to expect) exactly the expected keys, shapes and dtypes. Anything else raises `CodecError` naming the
field (``transition seq 12: next_observation['state']: expected shape (17,), got (16,)``), so the server can refuse
one message and keep serving. Decoding never un-pickles and never evaluates anything; arrays are plain numpy views
of the received bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from hilserl.data import Transition
from hilserl.distributed import hilserl_pb2 as pb

# dtype names on the wire -> little-endian numpy dtypes
DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype("?"),
    "uint8": np.dtype("u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
_NAMES = {np.dtype(v).newbyteorder("=") if v.byteorder != "|" else v: k for k, v in DTYPES.items()}
MAX_DIMS = 8
MAX_KEY_LEN = 128

# torch dtypes the weights codec carries; bfloat16 goes as its 16-bit pattern (numpy has no bfloat16)
_TORCH = {torch.float32: "float32", torch.float16: "float16", torch.float64: "float64", torch.int64: "int64",
          torch.int32: "int32", torch.uint8: "uint8", torch.bool: "bool", torch.bfloat16: "bfloat16"}
_FROM_TORCH_NAME = {v: k for k, v in _TORCH.items()}


class CodecError(ValueError):
    """A message that does not match the schema or the expected shapes; the text names the field."""


ArraySpec = Mapping[str, tuple[tuple[int, ...], Any]]  # name -> (shape, dtype)


def dtype_name(dtype: Any) -> str:
    dt = np.dtype(dtype)
    name = _NAMES.get(dt.newbyteorder("=") if dt.byteorder not in "|=" else dt)
    if name is None:
        raise CodecError(f"dtype {dt} cannot travel (allowed: {', '.join(DTYPES)})")
    return name


# ------------------------------------------------------------------------------------------------ tensors
def encode_tensor(arr: np.ndarray, out: pb.Tensor | None = None) -> pb.Tensor:
    arr = np.asarray(arr)
    out = pb.Tensor() if out is None else out
    out.dtype = dtype_name(arr.dtype)
    out.shape[:] = arr.shape
    out.data = np.ascontiguousarray(arr, dtype=DTYPES[out.dtype]).tobytes()
    return out


def decode_tensor(t: pb.Tensor, where: str, max_bytes: int, expected: tuple[tuple[int, ...], Any] | None = None,
                  finite: bool = True) -> np.ndarray:
    """A read-only numpy array over the message's bytes, after every check in the module docstring."""
    dt = DTYPES.get(t.dtype)
    if dt is None:
        raise CodecError(f"{where}: dtype {t.dtype[:32]!r} is not allowed (allowed: {', '.join(DTYPES)})")
    shape = tuple(int(d) for d in t.shape)
    if len(shape) > MAX_DIMS:
        raise CodecError(f"{where}: {len(shape)} dimensions, at most {MAX_DIMS} allowed")
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes > max_bytes:
        raise CodecError(f"{where}: shape {shape} of {t.dtype} is {nbytes} bytes, more than the limit {max_bytes}")
    if len(t.data) != nbytes:
        raise CodecError(f"{where}: shape {shape} of {t.dtype} needs {nbytes} bytes, got {len(t.data)}")
    if expected is not None:
        want_shape, want_dtype = tuple(expected[0]), np.dtype(expected[1])
        if shape != want_shape:
            raise CodecError(f"{where}: expected shape {want_shape}, got {shape}")
        if dt.newbyteorder("=") != want_dtype.newbyteorder("="):
            raise CodecError(f"{where}: expected dtype {dtype_name(want_dtype)}, got {t.dtype}")
    arr = np.frombuffer(t.data, dtype=dt).reshape(shape)
    if dt.kind == "b" and arr.size and np.frombuffer(t.data, np.uint8).max() > 1:
        raise CodecError(f"{where}: bool tensor holds bytes other than 0 and 1")
    if finite and dt.kind == "f" and not np.isfinite(arr).all():
        raise CodecError(f"{where}: holds NaN or infinite values")
    if expected is not None and arr.dtype != np.dtype(expected[1]):
        arr = arr.astype(np.dtype(expected[1]))  # big-endian host: to native order
    return arr


def encode_arrays(arrays: Mapping[str, np.ndarray], out) -> None:
    """Fill a proto map<string, Tensor> field."""
    for key, arr in arrays.items():
        encode_tensor(arr, out[key])


def decode_arrays(m, where: str, expected: ArraySpec | None, max_bytes: int) -> dict[str, np.ndarray]:
    if expected is not None:
        missing = sorted(set(expected) - set(m))
        if missing:
            raise CodecError(f"{where}: missing key {missing[0]!r} (expected keys {sorted(expected)})")
        extra = sorted(set(m) - set(expected))
        if extra:
            raise CodecError(f"{where}: unexpected key {extra[0][:MAX_KEY_LEN]!r} (expected keys {sorted(expected)})")
    out = {}
    for key in m:
        if len(key) > MAX_KEY_LEN:
            raise CodecError(f"{where}: key longer than {MAX_KEY_LEN} characters")
        out[key] = decode_tensor(m[key], f"{where}[{key!r}]", max_bytes, None if expected is None else expected[key])
    return out


def spec_to_proto(spec: ArraySpec, out) -> None:
    for key, (shape, dtype) in spec.items():
        out[key].dtype = dtype_name(dtype)
        out[key].shape[:] = tuple(shape)


def spec_from_proto(m, where: str) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for key in m:
        if len(key) > MAX_KEY_LEN:
            raise CodecError(f"{where}: key longer than {MAX_KEY_LEN} characters")
        if m[key].dtype not in DTYPES and m[key].dtype != "bfloat16":
            raise CodecError(f"{where}[{key!r}]: dtype {m[key].dtype[:32]!r} is not allowed")
        if len(m[key].shape) > MAX_DIMS:
            raise CodecError(f"{where}[{key!r}]: more than {MAX_DIMS} dimensions")
        out[key] = (tuple(int(d) for d in m[key].shape), m[key].dtype)
    return out


def normalize_spec(spec: ArraySpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """A spec with dtype names, comparable with `spec_from_proto`'s result."""
    return {k: (tuple(int(d) for d in shape), dtype_name(dtype)) for k, (shape, dtype) in spec.items()}


def spec_differences(mine: Mapping, theirs: Mapping, what: str) -> list[str]:
    """Human-readable differences between two normalised specs ("" entries mean none)."""
    diffs = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in theirs:
            diffs.append(f"{what} {key!r} is missing on the actor")
        elif key not in mine:
            diffs.append(f"{what} {key!r} is unknown to the learner")
        elif tuple(mine[key]) != tuple(theirs[key]):
            diffs.append(f"{what} {key!r}: learner has {mine[key]}, actor has {theirs[key]}")
    return diffs


# ------------------------------------------------------------------------------------------------ transitions
@dataclass
class WireTransition:
    """A decoded transition with its place in the actor's stream."""

    seq: int
    episode: int
    demo: bool
    weights_version: int
    transition: Transition


def encode_transition(t: Transition, seq: int, episode: int, demo: bool = False, weights_version: int = 0,
                      observation_is_previous_next: bool = False) -> pb.Transition:
    msg = pb.Transition(seq=seq, episode=episode, demo=demo, reward=float(t.reward), terminated=bool(t.terminated),
                        truncated=bool(t.truncated), is_intervention=bool(t.is_intervention),
                        weights_version=weights_version, observation_is_previous_next=observation_is_previous_next)
    if not observation_is_previous_next:
        encode_arrays(t.observation, msg.observation)
    encode_arrays(t.next_observation, msg.next_observation)
    encode_tensor(np.asarray(t.action, dtype=np.float32), msg.action)
    for k, v in (t.info or {}).items():
        msg.info[k] = float(v)
    return msg


@dataclass
class TransitionSchema:
    """What the learner's buffers take: stored observation keys, the action length, the info keys."""

    observation: dict[str, tuple[tuple[int, ...], Any]]
    action_dim: int
    info_keys: tuple[str, ...]


def decode_transition(msg: pb.Transition, schema: TransitionSchema, previous: tuple[int, dict] | None,
                      max_bytes: int) -> WireTransition:
    """`previous` = (seq, next_observation) of the transition before it on the same stream, if any."""
    where = f"transition seq {msg.seq}"
    if msg.seq < 1:
        raise CodecError(f"{where}: seq must start at 1")
    if msg.observation_is_previous_next:
        if msg.observation:
            raise CodecError(f"{where}: observation_is_previous_next is set but an observation was sent too")
        if previous is None or previous[0] != msg.seq - 1:
            raise CodecError(f"{where}: observation_is_previous_next, but transition {msg.seq - 1} was not the "
                             "previous one on this stream")
        observation = previous[1]
    else:
        observation = decode_arrays(msg.observation, f"{where}: observation", schema.observation, max_bytes)
    next_observation = decode_arrays(msg.next_observation, f"{where}: next_observation", schema.observation,
                                     max_bytes)
    if not msg.HasField("action"):
        raise CodecError(f"{where}: action is missing")
    action = decode_tensor(msg.action, f"{where}: action", max_bytes, ((schema.action_dim,), np.float32))
    if not math.isfinite(msg.reward):
        raise CodecError(f"{where}: reward is {msg.reward}, expected a finite number")
    if set(msg.info) != set(schema.info_keys):
        raise CodecError(f"{where}: info keys {sorted(msg.info)[:8]}, expected {sorted(schema.info_keys)}")
    info = {}
    for k in schema.info_keys:
        if not math.isfinite(msg.info[k]):
            raise CodecError(f"{where}: info[{k!r}] is {msg.info[k]}, expected a finite number")
        info[k] = float(msg.info[k])
    t = Transition(observation, action, float(msg.reward), msg.terminated, msg.truncated, next_observation,
                   msg.is_intervention, info)
    return WireTransition(int(msg.seq), int(msg.episode), bool(msg.demo), int(msg.weights_version), t)


def decode_batch(msg: pb.ActorMessage, schema: TransitionSchema, previous: tuple[int, dict] | None,
                 max_bytes: int) -> tuple[list[WireTransition], tuple[int, dict] | None]:
    """Every transition of one message (consecutive seqs), and the new `previous` for the stream."""
    out = []
    for i, m in enumerate(msg.transitions):
        if i and m.seq != out[-1].seq + 1:
            raise CodecError(f"transition seq {m.seq}: follows seq {out[-1].seq} in the same message; seqs in a "
                             "message must be consecutive")
        wt = decode_transition(m, schema, previous, max_bytes)
        out.append(wt)
        previous = (wt.seq, wt.transition.next_observation)
    return out, previous


def decode_episode(msg: pb.EpisodeStats) -> dict[str, float]:
    where = f"episode {msg.episode}"
    values = {}
    for k, v in msg.values.items():
        if len(k) > MAX_KEY_LEN or not k.replace("_", "").isalnum():
            raise CodecError(f"{where}: statistic name {k[:MAX_KEY_LEN]!r} is not a plain identifier")
        if not math.isfinite(v):
            raise CodecError(f"{where}: {k} is {v}, expected a finite number")
        values[k] = v
    return values


# ------------------------------------------------------------------------------------------------ weights
def weights_spec(weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), _TORCH.get(v.dtype, str(v.dtype))) for k, v in weights.items()}


def encode_weights(weights: Mapping[str, torch.Tensor], version: int, published_unix_time: float) -> pb.Weights:
    msg = pb.Weights(version=version, published_unix_time=published_unix_time)
    for key, value in weights.items():
        v = value.detach().to("cpu").contiguous()
        name = _TORCH.get(v.dtype)
        if name is None:
            raise CodecError(f"weights[{key!r}]: torch dtype {v.dtype} cannot travel")
        t = msg.tensors[key]
        t.dtype = name
        t.shape[:] = tuple(v.shape)
        raw = v.view(torch.int16) if name == "bfloat16" else v
        t.data = raw.numpy().astype(raw.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
    return msg


def decode_weights(msg: pb.Weights, expected: Mapping[str, tuple[tuple[int, ...], str]],
                   max_bytes: int) -> dict[str, torch.Tensor]:
    """Torch tensors (fresh memory) for exactly the expected names, shapes and dtypes."""
    where = f"weights version {msg.version}"
    missing = sorted(set(expected) - set(msg.tensors))
    if missing:
        raise CodecError(f"{where}: missing tensor {missing[0]!r}")
    extra = sorted(set(msg.tensors) - set(expected))
    if extra:
        raise CodecError(f"{where}: unexpected tensor {extra[0][:MAX_KEY_LEN]!r}")
    out = {}
    for key, (shape, dtype) in expected.items():
        t = msg.tensors[key]
        if t.dtype != dtype:
            raise CodecError(f"{where}[{key!r}]: expected dtype {dtype}, got {t.dtype[:32]}")
        if dtype == "bfloat16":
            # same item size as float16; the bits are reinterpreted, never computed with
            wire = pb.Tensor(dtype="float16", shape=t.shape, data=t.data)
            arr = decode_tensor(wire, f"{where}[{key!r}]", max_bytes, (shape, np.float16), finite=False)
            out[key] = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        else:
            arr = decode_tensor(t, f"{where}[{key!r}]", max_bytes, (shape, DTYPES[dtype]))
            out[key] = torch.from_numpy(arr.copy())
    return out


# ------------------------------------------------------------------------------------------------ pre-serialised
# The actor serialises each transition once, when it is queued, and builds every ActorMessage by concatenation
# (protobuf's wire format: a repeated message field is a run of length-delimited records, and two serialised
# messages concatenated parse as their merge). A resend after a reconnect costs no re-encoding.
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


OBSERVATION_IS_PREVIOUS_NEXT = pb.Transition(observation_is_previous_next=True).SerializeToString()


def transition_parts(t: Transition, seq: int, episode: int, demo: bool = False,
                     weights_version: int = 0) -> tuple[bytes, bytes]:
    """(everything but the observation, the observation) of a serialised `pb.Transition`: ``core + observation``
    is the full transition, ``core + OBSERVATION_IS_PREVIOUS_NEXT`` the one that reuses the previous next obs."""
    core = encode_transition(t, seq, episode, demo, weights_version, observation_is_previous_next=True)
    core.observation_is_previous_next = False
    obs = pb.Transition()
    encode_arrays(t.observation, obs.observation)
    return core.SerializeToString(), obs.SerializeToString()


def actor_message(transitions: list[bytes], episodes: list[bytes], weights_version_in_use: int = 0) -> bytes:
    """A serialised `pb.ActorMessage` from serialised transitions and episode statistics."""
    parts = [length_delimited(1, t) for t in transitions]
    parts += [length_delimited(2, e) for e in episodes]
    tail = pb.ActorMessage(weights_version_in_use=weights_version_in_use).SerializeToString()
    return b"".join(parts) + tail
