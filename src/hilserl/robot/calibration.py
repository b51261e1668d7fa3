"""SO-101 calibration: LeRobot's JSON files, raw servo steps <-> the simulation's joint radians, and the
procedure that calibrates a new arm.

The file is LeRobot's, so users keep the files they already made::

    {"shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1365, "range_min": 746, "range_max": 3477}, ...}

`homing_offset` goes into the servo's Homing_Offset register (Present_Position = actual - offset, chosen so the
middle pose reads 2047); `range_min`/`range_max` are the extremes of Present_Position seen while a person moved
each joint through its range, also written to the servo's angle limits.

Radians follow this project's MuJoCo model (the "new calib" SO-101 URDF): an arm joint is 0 in the middle of its
calibrated range and turns 2π per 4096 steps, negated when `drive_mode` is 1; the gripper's range_min..range_max
maps linearly onto the simulated jaw's -10°..100° (LeRobot shows the gripper as 0..100 % of the same range).
"""

from __future__ import annotations

import json
import math
import select
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from hilserl.fileio import atomic_write_text
from hilserl.robot import feetech
from hilserl.sim.scene import CHAIN

if TYPE_CHECKING:
    from hilserl.robot.bus import FeetechBus

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")
RAD_PER_STEP = 2 * math.pi / feetech.RESOLUTION
MIDDLE = feetech.MAX_RAW // 2  # 2047: what the middle pose reads after homing, as in LeRobot
SIM_JOINT_RANGES = {joint: (low, high) for *_, (joint, low, high) in CHAIN}
assert tuple(SIM_JOINT_RANGES) == JOINT_NAMES, "the sim's joint order must match the servo order"
GRIPPER_RANGE_RAD = SIM_JOINT_RANGES["gripper"]


class CalibrationError(ValueError):
    """A calibration file or procedure that cannot be used; the message names the motor and the field."""


@dataclass(frozen=True)
class MotorCalibration:
    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


def _check_motor(source: str, name: str, motor: MotorCalibration) -> None:
    def fail(field_name: str, expected: str) -> None:
        value = getattr(motor, field_name)
        raise CalibrationError(
            f"{source}: motor {name!r}: field {field_name!r} must be {expected}, got {value!r}"
            + ("" if isinstance(value, int) and not isinstance(value, bool) else f" ({type(value).__name__})")
        )

    for field_name in FIELDS:
        value = getattr(motor, field_name)
        if isinstance(value, bool) or not isinstance(value, int):
            fail(field_name, "an integer")
    if not 0 <= motor.id <= feetech.MAX_ID:
        fail("id", f"a servo id in 0..{feetech.MAX_ID}")
    if motor.drive_mode not in (0, 1):
        fail("drive_mode", "0 (normal) or 1 (inverted)")
    if abs(motor.homing_offset) > feetech.HOMING_OFFSET_LIMIT:
        fail("homing_offset", f"in -{feetech.HOMING_OFFSET_LIMIT}..{feetech.HOMING_OFFSET_LIMIT}")
    for field_name in ("range_min", "range_max"):
        if not 0 <= getattr(motor, field_name) <= feetech.MAX_RAW:
            fail(field_name, f"a raw position in 0..{feetech.MAX_RAW}")
    if motor.range_min >= motor.range_max:
        raise CalibrationError(
            f"{source}: motor {name!r}: field 'range_min' ({motor.range_min}) must be below field 'range_max' "
            f"({motor.range_max}); recalibrate this joint and move it through its whole range"
        )


@dataclass(frozen=True, eq=True)
class Calibration:
    """One arm's calibration: a `MotorCalibration` for each of the six SO-101 motors."""

    motors: Mapping[str, MotorCalibration]
    source: str = field(default="calibration", compare=False)

    def __post_init__(self) -> None:
        missing = [n for n in JOINT_NAMES if n not in self.motors]
        if missing:
            raise CalibrationError(
                f"{self.source}: motor {missing[0]!r} missing (expected motors: {', '.join(JOINT_NAMES)})")
        unknown = [n for n in self.motors if n not in JOINT_NAMES]
        if unknown:
            raise CalibrationError(
                f"{self.source}: unknown motor {unknown[0]!r} (expected motors: {', '.join(JOINT_NAMES)})")
        seen: dict[int, str] = {}
        for name in JOINT_NAMES:
            motor = self.motors[name]
            if not isinstance(motor, MotorCalibration):
                raise CalibrationError(
                    f"{self.source}: motor {name!r}: expected a MotorCalibration, got {type(motor).__name__}")
            _check_motor(self.source, name, motor)
            if motor.id in seen:
                raise CalibrationError(
                    f"{self.source}: motor {name!r}: field 'id' {motor.id} is also the id of {seen[motor.id]!r}")
            seen[motor.id] = name
        # ordered copy; conversion constants per joint: q = q0 + scale * (raw - raw0)
        object.__setattr__(self, "motors", {n: self.motors[n] for n in JOINT_NAMES})
        raw0, q0, scale = [], [], []
        for name in JOINT_NAMES:
            m = self.motors[name]
            sign = -1.0 if m.drive_mode == 1 else 1.0
            if name == "gripper":
                low, high = GRIPPER_RANGE_RAD
                raw0.append(m.range_min if sign > 0 else m.range_max)
                q0.append(low)
                scale.append(sign * (high - low) / (m.range_max - m.range_min))
            else:
                raw0.append((m.range_min + m.range_max) / 2)
                q0.append(0.0)
                scale.append(sign * RAD_PER_STEP)
        object.__setattr__(self, "_raw0", np.array(raw0))
        object.__setattr__(self, "_q0", np.array(q0))
        object.__setattr__(self, "_scale", np.array(scale))

    # ---------------------------------------------------------------------------------------- files

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> Calibration:
        if not isinstance(data, dict):
            raise CalibrationError(f"{source}: expected a JSON object keyed by motor name, got {type(data).__name__}")
        motors = {}
        for name in JOINT_NAMES:
            if name not in data:
                raise CalibrationError(f"{source}: motor {name!r} missing (expected motors: {', '.join(JOINT_NAMES)})")
            entry = data[name]
            if not isinstance(entry, dict):
                raise CalibrationError(f"{source}: motor {name!r}: expected an object with fields {', '.join(FIELDS)}, "
                                       f"got {type(entry).__name__}")
            for field_name in FIELDS:
                if field_name not in entry:
                    raise CalibrationError(f"{source}: motor {name!r}: field {field_name!r} missing")
            extra = [k for k in entry if k not in FIELDS]
            if extra:
                raise CalibrationError(
                    f"{source}: motor {name!r}: unknown field {extra[0]!r} (fields: {', '.join(FIELDS)})")
            motors[name] = MotorCalibration(**{f: entry[f] for f in FIELDS})
        for name in data:
            if name not in JOINT_NAMES:
                raise CalibrationError(f"{source}: unknown motor {name!r} (expected motors: {', '.join(JOINT_NAMES)})")
        return cls(motors, source=source)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {name: {f: getattr(m, f) for f in FIELDS} for name, m in self.motors.items()}

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        source = f"calibration file {path}"
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{source} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | Path) -> Path:
        """Write the file in LeRobot's layout (4-space indent), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=4) + "\n")

    # ---------------------------------------------------------------------------------- conversions

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.motors.values())

    def raw_to_rad(self, raw: Any) -> np.ndarray:
        """Six raw positions (order JOINT_NAMES) -> joint angles in the simulation's radians."""
        raw = np.asarray(raw, dtype=float)
        if raw.shape != (len(JOINT_NAMES),):
            raise ValueError(f"expected {len(JOINT_NAMES)} raw positions ordered {JOINT_NAMES}, got shape {raw.shape}")
        return self._q0 + self._scale * (raw - self._raw0)

    def rad_to_raw_float(self, q: Any) -> np.ndarray:
        """Joint radians -> raw positions before rounding (the arm rounds toward where the servo is)."""
        q = np.asarray(q, dtype=float)
        if q.shape != (len(JOINT_NAMES),):
            raise ValueError(f"expected {len(JOINT_NAMES)} joint angles ordered {JOINT_NAMES}, got shape {q.shape}")
        return self._raw0 + (q - self._q0) / self._scale

    def rad_to_raw(self, q: Any) -> np.ndarray:
        """Joint radians -> the nearest raw positions, kept inside each motor's calibrated range."""
        raw = np.rint(self.rad_to_raw_float(q))
        low = np.array([m.range_min for m in self.motors.values()])
        high = np.array([m.range_max for m in self.motors.values()])
        return np.clip(raw, low, high).astype(np.int64)

    def range_rad(self) -> np.ndarray:
        """(6, 2) joint limits in radians implied by the calibrated ranges."""
        ends = np.stack([self.raw_to_rad([m.range_min for m in self.motors.values()]),
                         self.raw_to_rad([m.range_max for m in self.motors.values()])], axis=1)
        return np.sort(ends, axis=1)

    # --------------------------------------------------------------------------------------- servos

    def mismatched_motors(self, bus: FeetechBus) -> list[str]:
        """Motors whose servo registers (homing offset, angle limits) differ from this calibration."""
        ids = list(self.ids)
        offsets = bus.sync_read_register("Homing_Offset", ids)
        mins = bus.sync_read_register("Min_Position_Limit", ids)
        maxes = bus.sync_read_register("Max_Position_Limit", ids)
        return [
            name for name, m in self.motors.items()
            if (offsets[m.id], mins[m.id], maxes[m.id]) != (m.homing_offset, m.range_min, m.range_max)
        ]

    def write_to_servos(self, bus: FeetechBus, motors: list[str] | None = None) -> None:
        """Store homing offsets and angle limits in the servos (EEPROM: torque off and Lock 0 first)."""
        for name in motors if motors is not None else JOINT_NAMES:
            m = self.motors[name]
            bus.write_register("Homing_Offset", m.id, m.homing_offset)
            bus.write_register("Min_Position_Limit", m.id, m.range_min)
            bus.write_register("Max_Position_Limit", m.id, m.range_max)


def default_ids() -> dict[str, int]:
    """The SO-101's servo ids: 1 (shoulder_pan) to 6 (gripper)."""
    return {name: i + 1 for i, name in enumerate(JOINT_NAMES)}


class _StopOnEnter:
    """Default end of range recording: shows the live ranges and stops when ENTER is pressed (POSIX terminals)."""

    def __init__(self, show: Callable[[str], None]) -> None:
        self.show = show
        self._last = 0.0

    def __call__(self, positions: Mapping[str, int], mins: Mapping[str, int], maxes: Mapping[str, int]) -> bool:
        now = time.monotonic()
        if now - self._last > 0.5:
            self._last = now
            self.show("  ".join(f"{n}: {mins[n]}..{positions[n]}..{maxes[n]}" for n in positions))
        if select.select([sys.stdin], [], [], 0)[0]:
            sys.stdin.readline()
            return True
        return False


def calibrate(
    bus: FeetechBus,
    *,
    ids: Mapping[str, int] | None = None,
    path: str | Path | None = None,
    wait_for_user: Callable[[str], object] = input,
    recording_done: Callable[[Mapping[str, int], Mapping[str, int], Mapping[str, int]], bool] | None = None,
    show: Callable[[str], None] = print,
    poll_s: float = 0.02,
) -> Calibration:
    """Calibrate a new arm the way LeRobot does, and return (and optionally save) its calibration.

    1. torque off, position mode; 2. the person puts the arm in the middle of its range and confirms
    (`wait_for_user(prompt)`): each servo's homing offset is set so that pose reads 2047; 3. the person moves
    every joint through its whole range while positions are recorded, until
    `recording_done(positions, mins, maxes)` says stop (default: ENTER); 4. the ranges become the servos' angle
    limits and the file. The callables are the person: tests drive them against the emulator.
    """
    ids = dict(ids) if ids is not None else default_ids()
    if sorted(ids) != sorted(JOINT_NAMES):
        raise CalibrationError(
            f"calibrate: ids must name exactly the motors {', '.join(JOINT_NAMES)}, got {sorted(ids)}")
    done = recording_done if recording_done is not None else _StopOnEnter(show)
    for servo_id in ids.values():
        bus.write_register("Torque_Enable", servo_id, 0)
        bus.write_register("Lock", servo_id, 0)
        bus.write_register("Operating_Mode", servo_id, feetech.OPERATING_MODE_POSITION)

    wait_for_user("Move the arm to the middle of its range of motion (every joint halfway), then press ENTER...")
    for servo_id in ids.values():  # forget the old calibration so positions are the shaft's own
        bus.write_register("Homing_Offset", servo_id, 0)
        bus.write_register("Min_Position_Limit", servo_id, 0)
        bus.write_register("Max_Position_Limit", servo_id, feetech.MAX_RAW)
    middle = bus.sync_read_register("Present_Position", list(ids.values()))
    limit = feetech.HOMING_OFFSET_LIMIT
    offsets = {name: max(-limit, min(limit, middle[i] - MIDDLE)) for name, i in ids.items()}
    for name, servo_id in ids.items():
        bus.write_register("Homing_Offset", servo_id, offsets[name])

    show("Move every joint, one after the other, through its entire range of motion. Recording; press ENTER to stop.")
    positions = _read_named(bus, ids)
    mins, maxes = dict(positions), dict(positions)
    while not done(positions, mins, maxes):
        time.sleep(poll_s)
        positions = _read_named(bus, ids)
        mins = {n: min(mins[n], positions[n]) for n in ids}
        maxes = {n: max(maxes[n], positions[n]) for n in ids}
    still = [n for n in JOINT_NAMES if mins[n] >= maxes[n]]
    if still:
        raise CalibrationError(
            f"calibrate: {', '.join(still)} did not move while recording (stayed at "
            f"{', '.join(str(mins[n]) for n in still)}); run the calibration again and move every joint end to end"
        )
    calibration = Calibration(
        {n: MotorCalibration(ids[n], 0, offsets[n], mins[n], maxes[n]) for n in JOINT_NAMES},
        source="calibrate()" if path is None else f"calibration file {path}",
    )
    calibration.write_to_servos(bus)
    if path is not None:
        calibration.save(path)
        show(f"Calibration saved to {path}")
    return calibration


def _read_named(bus: FeetechBus, ids: Mapping[str, int]) -> dict[str, int]:
    raw = bus.sync_read_register("Present_Position", list(ids.values()))
    return {name: raw[i] for name, i in ids.items()}
