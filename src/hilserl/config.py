"""Dataclass configs from JSON files plus dotted command-line overrides, with errors that name the key.

    cfg = load_config(TrainConfig, "configs/sim_grasp.json", ["--policy.utd_ratio=20", "--env.fps=10"])

Unknown keys, wrong types and impossible values fail with the dotted key, the expected type and what was given,
so a typo such as ``temprature_init`` is an error instead of a silently ignored setting. A dataclass may list the
keys it no longer has in a ``MOVED_KEYS`` class variable ({old key: where it went}); the error then says where.
A config's own ``validate()`` method, when it has one, runs after loading (nested configs first).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot be used; the message starts with the dotted key."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a JSON value (or an override string already parsed as JSON) to the annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = _tagged_dataclasses(args)
        if kinds and isinstance(value, dict):  # a tagged union of sections: the "type" key picks the dataclass
            kind = value.get("type", next(iter(kinds)))
            if kind not in kinds:
                raise ConfigError(f"{key}.type: expected one of {list(kinds)}, got {kind!r}")
            return from_dict(kinds[kind], value, prefix=key)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected an object with the fields of {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}: {value!r}")
            items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected an object, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _tagged_dataclasses(args) -> dict[str, type]:
    """{type default: dataclass} when every member of a union is a dataclass with a `type` field, else {}."""
    kinds = {}
    for arg in args:
        if arg is type(None):
            continue
        if not dataclasses.is_dataclass(arg):
            return {}
        tag = {f.name: f for f in dataclasses.fields(arg)}.get("type")
        if tag is None or not isinstance(tag.default, str):
            return {}
        kinds[tag.default] = arg
    return kinds


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass `cls` from a dict, recursively; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        moved = getattr(cls, "MOVED_KEYS", {})  # {old key: where it went}, for keys a section no longer has
        for u in unknown:
            if u in moved:
                raise ConfigError(f"{where}{u}: {moved[u]}")
        close = {u: _closest(u, fields) for u in unknown}
        hint = "; ".join(f"did you mean {where}{c}?" for u, c in close.items() if c)
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
                          + (f"; {hint}" if hint else ""))
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            # a partial section updates the parent's default for it (which may differ from the section's own)
            value = _merge(_default_as_dict(fields[name]), value)
        elif isinstance(value, dict) and (kinds := _tagged_dataclasses(typing.get_args(tp))):
            value = _merge(_chosen_defaults(fields[name], value, kinds), value)  # a section of a tagged union
        kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # a config that validates itself on construction
        raise ConfigError(_prefix_lines(str(e), prefix)) from None


def _default_as_dict(f: dataclasses.Field) -> dict:
    if f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    elif f.default is not dataclasses.MISSING:
        default = f.default
    else:
        return {}
    return dataclasses.asdict(default) if dataclasses.is_dataclass(default) else {}


def _chosen_defaults(f: dataclasses.Field, value: dict, kinds: dict[str, type]) -> dict:
    """A tagged union section's share of the parent's default for it: the settings where that default differs
    from its own class's defaults (what the parent chose), for the fields the section's chosen class has (the
    chosen class keeps its own defaults elsewhere). E.g. the pixel defaults of ``policy`` apply to a DrQ-v2
    section too, while DrQ-v2 keeps its own tau and n-step."""
    if f.default_factory is dataclasses.MISSING:
        return {}
    default = f.default_factory()
    if not dataclasses.is_dataclass(default):
        return {}
    chosen = kinds.get(value.get("type", getattr(default, "type", None)))
    if chosen is None:
        return {}
    own, plain = dataclasses.asdict(default), dataclasses.asdict(type(default)())
    names = {g.name for g in dataclasses.fields(chosen) if g.init and g.name != "type"}
    return {k: v for k, v in own.items() if k in names and v != plain[k]}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _prefix_lines(msg: str, prefix: str) -> str:
    """Name the section in a nested config's own error lines ("field: why" -> "section.field: why")."""
    if not prefix:
        return msg
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    named = [f"{prefix}.{ln}" for ln in lines if ":" in ln and " " not in ln.split(":", 1)[0]]
    return "\n".join(named) if named else f"{prefix}: {msg}"


def _closest(name: str, choices) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return match[0] if match else None


def to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _parse_override(text: str) -> tuple[list[str], Any]:
    if not text.startswith("--") or "=" not in text:
        raise ConfigError(f"override {text!r}: expected --dotted.key=value")
    key, raw = text[2:].split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as --env.gripper_mode=discrete
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a nested dict (copy-on-write)."""
    out = json.loads(json.dumps(data))
    for text in overrides:
        path, value = _parse_override(text)
        node = out
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is a value, not a group of settings")
            node = nxt
        node[path[-1]] = value
    return out


def validate_tree(cfg: Any, prefix: str = "") -> None:
    """Run `validate()` on every nested dataclass config, children first; prefix errors with the key path."""
    for f in dataclasses.fields(cfg):
        child = getattr(cfg, f.name)
        if dataclasses.is_dataclass(child):
            validate_tree(child, f"{prefix}{f.name}.")
    check = getattr(cfg, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError:
            raise
        except ValueError as e:
            msg = str(e)
            raise ConfigError(msg if not prefix or msg.startswith(prefix) else f"{prefix}{msg}") from None


def read_config_file(path: str | Path) -> dict:
    """The JSON object in a config file, with errors that say what is wrong with the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config_path: no such file {str(p)!r}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config_path: {p} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config_path: {p} must hold a JSON object at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of `cls`, updated by the JSON file at `path`, updated by `--a.b=c` overrides; then validated."""
    data = read_config_file(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(cls, data)
    validate_tree(cfg)
    return cfg
