"""Where the camera alignment's correction lives: the `env.scene` section of the simulation config the person will
pretrain with (`configs/sim_pretrain.json` by default), as

    "scene": {"gripper_camera_offset_mm": [right, up, forward], "gripper_camera_rotation_deg": [roll, pitch, yaw],
              "gripper_camera_fovy": degrees}

which `hilserl.sim.scene` builds the gripper camera from, so every env made from that config (training, evaluation,
the scripted expert's demos) sees through the corrected camera; domain randomization's camera jitter and the
held-out looks' mounting offsets then vary around it.

`write_correction` changes only those three values in the file's text: every other byte (other sections, key order,
formatting, a list kept on one line) stays as it was, and the result is checked to parse to exactly the old settings
plus the new three before it replaces the file (atomically: a crash leaves the old file or the new one).
"""

from __future__ import annotations

import json
from pathlib import Path

from hilserl.config import ConfigError
from hilserl.fileio import atomic_write_text
from hilserl.robot.align import CameraCorrection
from hilserl.sim.env import GraspCubeConfig

FIELDS = ("gripper_camera_offset_mm", "gripper_camera_rotation_deg", "gripper_camera_fovy")


def load_sim_env(path: str | Path, what: str = "--out") -> GraspCubeConfig:
    """The simulation env section of the config at `path`, validated; errors name `what` and the field."""
    from hilserl.cli_robot import load_env_config

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: no such file {str(p)!r}; the correction is saved into the simulation config you "
                          "will pretrain with, e.g. configs/sim_pretrain.json")
    env = load_env_config(str(p), [])
    if not isinstance(env, GraspCubeConfig):
        raise ConfigError(f"{what}: {p} is a real-arm config (env.type {env.type!r}); the correction belongs in the "
                          "simulation config you will pretrain with (env.type \"sim\"), e.g. configs/sim_pretrain.json")
    return env


def correction_values(c: CameraCorrection) -> dict:
    def num(v: float) -> float:
        return round(float(v), 4) + 0.0

    return {FIELDS[0]: [num(v) for v in c.offset_mm], FIELDS[1]: [num(v) for v in c.rotation_deg],
            FIELDS[2]: num(c.fovy_deg)}


def write_correction(path: str | Path, correction: CameraCorrection, what: str = "--out") -> dict:
    """Write `correction` into the `env.scene` section of the simulation config at `path` (which must load as one:
    errors name `what`); returns the values written."""
    correction.validate()
    load_sim_env(path, what)
    p = Path(path)
    text = p.read_text()
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("env", {}), dict) \
            or not isinstance(data.get("env", {}).get("scene", {}), dict):
        raise ConfigError(f"{path}: expected env and env.scene to be objects")
    values = correction_values(correction)
    want = json.loads(text)
    want.setdefault("env", {}).setdefault("scene", {}).update(values)
    new = _edit(text, values)
    if json.loads(new) != want:  # never expected; then the plain rewrite, which is right by construction
        new = json.dumps(want, indent=2) + "\n"
    atomic_write_text(p, new)
    load_sim_env(p, str(p))  # the saved file loads and validates as a simulation config
    return values


# ---------------------------------------------------------------------------------------------- text surgery
_DECODER = json.JSONDecoder()


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _members(text: str, start: int) -> tuple[dict[str, tuple[int, int, int]], int]:
    """The object whose `{` is at `start`: {key: (key start, value start, value end)} and the index of its `}`."""
    members, i = {}, _skip(text, start + 1)
    while text[i] != "}":
        key, after = _DECODER.raw_decode(text, i)
        value = _skip(text, _skip(text, after) + 1)  # past the colon
        _, end = _DECODER.raw_decode(text, value)
        members[key] = (i, value, end)
        i = _skip(text, end)
        if text[i] == ",":
            i = _skip(text, i + 1)
    return members, i


def _indent_of(text: str, pos: int) -> str:
    """The whitespace at the start of the line holding `pos`."""
    line = text[text.rfind("\n", 0, pos) + 1:pos]
    return line[:len(line) - len(line.lstrip())]


def _layout(text: str, start: int, members: dict) -> tuple[str, str]:
    """(indent of the members, one level of indent) of the object at `start`; ("", "") when it is on one line."""
    if not members or "\n" not in text[start:min(k for k, _, _ in members.values())]:
        return "", ""
    inner = _indent_of(text, min(k for k, _, _ in members.values()))
    return inner, inner[len(_indent_of(text, start)):] or "  "


def _append(text: str, start: int, close: int, members: dict, entries: list[str]) -> tuple[int, str]:
    """(where, what) to insert so that `entries` ('"key": value') become the last members of the object at `start`
    (its `}` at `close`), laid out like the members it has."""
    inner, _ = _layout(text, start, members)
    if not members:
        return start + 1, ", ".join(entries)
    last_end = max(end for _, _, end in members.values())
    sep = "\n" + inner if inner else " "
    return last_end, "".join("," + sep + e for e in entries)


def _edit(text: str, values: dict) -> str:
    """`text` with env.scene's camera fields set to `values`, everything else untouched."""
    root = _skip(text, 0)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
    top, top_close = _members(text, root)
    if "env" not in top:
        at, ins = _append(text, root, top_close, top, ['"env": {"scene": ' + json.dumps(values) + "}"])
        edits.append((at, at, ins))
    else:
        env_start = top["env"][1]
        env, env_close = _members(text, env_start)
        if "scene" not in env:
            inner, unit = _layout(text, env_start, env)
            rows = [f'"{k}": {json.dumps(v)}' for k, v in values.items()]
            body = ("{\n" + ",\n".join(inner + unit + r for r in rows) + "\n" + inner + "}") if inner \
                else "{" + ", ".join(rows) + "}"
            at, ins = _append(text, env_start, env_close, env, ['"scene": ' + body])
            edits.append((at, at, ins))
        else:
            scene_start = env["scene"][1]
            scene, scene_close = _members(text, scene_start)
            missing = []
            for k, v in values.items():
                if k in scene:
                    edits.append((scene[k][1], scene[k][2], json.dumps(v)))
                else:
                    missing.append(f'"{k}": {json.dumps(v)}')
            if missing:
                at, ins = _append(text, scene_start, scene_close, scene, missing)
                edits.append((at, at, ins))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


__all__ = ["FIELDS", "correction_values", "load_sim_env", "write_correction"]
