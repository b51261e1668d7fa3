"""The SO-101 follower and leader arms: joint radians in the simulation's convention, with the safety rules.

Safety rules of a position-controlled arm, enforced here and nowhere else:

- every target is clamped to the joint limits (the simulation's, minus a margin, within the calibrated range)
  and to `max_step_rad` from where the joint is now, so no bug upstream can make the arm jump;
- targets that are not finite, or beyond a full turn (degrees passed as radians, garbage), are refused;
- torque goes off on every way out: `close()`, leaving a `with` block (also by an exception or Ctrl+C), SIGTERM,
  interpreter exit, and a serial port that vanishes mid-run (the arm reopens the same path for a bounded time
  to send torque off, then raises `ArmDisconnectedError` saying what happened).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from hilserl.robot import feetech
from hilserl.robot.bus import BusError, FeetechBus, PortLostError
from hilserl.robot.calibration import JOINT_NAMES, SIM_JOINT_RANGES, Calibration

log = logging.getLogger(__name__)
T = TypeVar("T")

JOINT_LIMIT_MARGIN_RAD = 0.05
DEFAULT_JOINT_LIMITS = np.array(
    [[low + JOINT_LIMIT_MARGIN_RAD, high - JOINT_LIMIT_MARGIN_RAD] for low, high in SIM_JOINT_RANGES.values()]
)
ABSURD_TARGET_RAD = 2 * math.pi  # no SO-101 joint turns this far: such a target is a unit mix-up or garbage
_GOAL = feetech.register("Goal_Position")
_PRESENT = feetech.register("Present_Position")


class ArmError(RuntimeError):
    """The arm cannot do what was asked (not connected, torque off on the leader...)."""


class ArmConnectionError(ArmError):
    """connect() failed: port missing, servos not answering, wrong servo model."""


class ArmDisconnectedError(ArmError):
    """The serial port vanished while the arm was in use; the message says whether torque was switched off."""


# ---------------------------------------------------------------------------------------------- safety net


class _SafetyNet:
    """Torque off at interpreter exit and on SIGTERM for every connected arm.

    One SIGTERM handler for all arms (installed while any arm is connected, the previous one restored after the
    last closes) that raises KeyboardInterrupt in the main thread, so `with` blocks and `finally` clauses run;
    one atexit hook that closes whatever is still connected.
    """

    def __init__(self) -> None:
        self.arms: list[_SO101Arm] = []
        self._previous: Any = None
        self._installed = False
        self._atexit = False

    def add(self, arm: _SO101Arm) -> None:
        if arm in self.arms:
            return
        self.arms.append(arm)
        if not self._atexit:
            atexit.register(self.close_all)
            self._atexit = True
        if not self._installed and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True

    def remove(self, arm: _SO101Arm) -> None:
        if arm in self.arms:
            self.arms.remove(arm)
        if not self.arms and self._installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:  # leave a handler installed after ours alone
                signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if callable(self._previous):
            self._previous(signum, frame)
        raise KeyboardInterrupt("SIGTERM received: stopping the SO-101 (torque off)")

    def close_all(self) -> None:
        for arm in list(reversed(self.arms)):
            try:
                arm.close()
            except Exception as exc:  # noqa: BLE001 - at exit, report and carry on with the other arms
                print(f"hilserl: could not switch off {arm}: {exc}", file=sys.stderr)


_SAFETY_NET = _SafetyNet()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while torque is being switched off, then deliver them; an interrupted torque-off
    would leave the arm powered."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])


# ------------------------------------------------------------------------------------------------- arms


class _SO101Arm:
    """What the follower and the leader share: connection, reading, clamped targets, torque, exits."""

    role = "SO-101 arm"
    p_coefficient = 16  # LeRobot's follower value (servo default 32 shakes)

    def __init__(
        self,
        port: str,
        calibration: Calibration,
        *,
        joint_limits: np.ndarray | None = None,
        max_step_rad: float = 0.1,
        bus: FeetechBus | None = None,
        reconnect_timeout_s: float = 2.0,
    ) -> None:
        if not isinstance(calibration, Calibration):
            raise TypeError(f"{self.role}: calibration must be a Calibration (Calibration.load(path)), "
                            f"got {type(calibration).__name__}")
        if not (isinstance(max_step_rad, (int, float)) and math.isfinite(max_step_rad) and max_step_rad > 0):
            raise ValueError(f"{self.role}: max_step_rad must be a positive number of radians, got {max_step_rad!r}")
        self.calibration = calibration
        self.max_step_rad = float(max_step_rad)
        self.reconnect_timeout_s = reconnect_timeout_s
        self.bus = bus if bus is not None else FeetechBus(port)
        self.port = self.bus.port
        self.joint_limits = self._effective_limits(joint_limits)
        self._ids = list(calibration.ids)
        self._connected = False
        self._torque_on = False

    def _effective_limits(self, joint_limits: np.ndarray | None) -> np.ndarray:
        limits = DEFAULT_JOINT_LIMITS if joint_limits is None else np.asarray(joint_limits, dtype=float)
        if limits.shape != (len(JOINT_NAMES), 2):
            raise ValueError(f"{self.role}: joint_limits must have shape (6, 2) (low, high radians per joint "
                             f"{JOINT_NAMES}), got {limits.shape}")
        calibrated = self.calibration.range_rad()
        out = np.stack([np.maximum(limits[:, 0], calibrated[:, 0]), np.minimum(limits[:, 1], calibrated[:, 1])], 1)
        for j, name in enumerate(JOINT_NAMES):
            if not np.all(np.isfinite(limits[j])) or limits[j, 0] >= limits[j, 1]:
                raise ValueError(
                    f"{self.role}: joint_limits for {name} must be finite with low < high, got {limits[j]}")
            if out[j, 0] >= out[j, 1]:
                raise ValueError(f"{self.role}: joint_limits for {name} {limits[j]} do not overlap the calibrated "
                                 f"range {calibrated[j]} rad")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.port!r})"

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def torque_is_on(self) -> bool:
        return self._torque_on

    # ----------------------------------------------------------------------------------- lifecycle

    def connect(self) -> None:
        """Open the port, check the six servos, write the calibration and settings; see subclasses for torque."""
        if self._connected:
            return
        try:
            self.bus.open()
        except PortLostError as exc:
            raise ArmConnectionError(f"{self.role} on {self.port}: {exc}") from exc
        try:
            self._check_servos()
            self._set_torque(False)
            mismatched = self.calibration.mismatched_motors(self.bus)
            if mismatched:
                log.info("%s: writing the calibration of %s to the servos", self, ", ".join(mismatched))
                self.calibration.write_to_servos(self.bus, mismatched)
            self._configure()
            _SAFETY_NET.add(self)
            self._connected = True
            self._on_connected()
        except BaseException as exc:
            self._torque_off_best_effort()
            self._abandon()
            if isinstance(exc, BusError) and not isinstance(exc, ArmError):
                raise ArmConnectionError(f"{self.role} on {self.port}: {exc}") from exc
            raise

    def _check_servos(self) -> None:
        missing = [i for i in self._ids if not self.bus.ping(i)]
        if missing:
            names = {m.id: n for n, m in self.calibration.motors.items()}
            listed = ", ".join(f"id {i} ({names[i]})" for i in missing)
            raise ArmConnectionError(
                f"{self.role} on {self.port}: no answer from servo {listed}. Check the daisy-chain cables and the "
                "arm's power supply; if a servo was replaced, give it its id first."
            )
        models = self.bus.sync_read_register("Model_Number", self._ids)
        wrong = {i: v for i, v in models.items() if v != feetech.STS3215_MODEL_NUMBER}
        if wrong:
            raise ArmConnectionError(
                f"{self.role} on {self.port}: servo(s) {wrong} report a model number other than "
                f"{feetech.STS3215_MODEL_NUMBER} (STS3215)"
            )

    def _configure(self) -> None:
        """Position mode and gains (as LeRobot's SO-101). EEPROM values are written only when they differ."""
        wanted = {"Return_Delay_Time": 0, "Maximum_Acceleration": 254, "Acceleration": 254,
                  "Operating_Mode": feetech.OPERATING_MODE_POSITION, "P_Coefficient": self.p_coefficient,
                  "I_Coefficient": 0, "D_Coefficient": 32}
        for name, value in wanted.items():
            current = self.bus.sync_read_register(name, self._ids)
            for servo_id in self._ids:
                if current[servo_id] != value:
                    self.bus.write_register(name, servo_id, value)

    def _on_connected(self) -> None:
        pass

    def close(self) -> None:
        """Torque off and close the port. Idempotent. Raises ArmDisconnectedError only when torque off could not
        be confirmed (the arm may still be powered)."""
        if not self._connected:
            self._abandon()
            return
        try:
            with _signals_deferred():
                self._connected = False
                try:
                    self._set_torque(False)
                except PortLostError as exc:
                    took = self._reopen_and_torque_off()
                    if took is None:
                        raise self._lost_error(exc, None) from exc
                    log.warning("%s: the port vanished while closing; it came back and torque is off", self)
                except BusError as exc:
                    raise ArmDisconnectedError(
                        f"{self.role} on {self.port}: could not confirm torque off ({exc}). The servos may still "
                        "hold torque: switch the arm's power supply off before touching it."
                    ) from exc
                finally:
                    self.bus.close()
        finally:
            self._abandon()  # outside the deferral, which swaps the SIGTERM handler while it runs

    def _abandon(self) -> None:
        self._connected = False
        self.bus.close()
        _SAFETY_NET.remove(self)

    def _torque_off_best_effort(self) -> None:
        if self.bus.is_open:
            with contextlib.suppress(Exception), _signals_deferred():
                self._set_torque(False)

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # runs for normal exits, exceptions and KeyboardInterrupt alike

    # ------------------------------------------------------------------------------------ motion

    def read_joint_positions(self) -> np.ndarray:
        """(6,) joint angles in radians, simulation convention, order JOINT_NAMES."""
        return self._guarded(lambda: self.calibration.raw_to_rad(self._read_raw()))

    def send_joint_targets(self, q: Any) -> np.ndarray:
        """Clamp `q` to the joint limits and to max_step_rad from the present position, send it; returns the
        targets actually sent (radians, after rounding to servo steps)."""
        target = self._validated(q)
        return self._guarded(lambda: self._send(target))

    def torque(self, on: bool) -> None:
        """Torque on holds the present position (the goal is set there first, so nothing jumps)."""
        self._guarded(lambda: self._set_torque(bool(on)))

    def _validated(self, q: Any) -> np.ndarray:
        try:
            target = np.asarray(q, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{self.role}: joint targets must be 6 numbers (radians, order {JOINT_NAMES}), "
                             f"got {q!r}") from None
        if target.shape != (len(JOINT_NAMES),):
            raise ValueError(f"{self.role}: expected 6 joint targets (radians, order {JOINT_NAMES}), "
                             f"got shape {target.shape}")
        bad = [f"{n}={v}" for n, v in zip(JOINT_NAMES, target) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{self.role}: joint targets must be finite, got {', '.join(bad)}; nothing was sent")
        absurd = [f"{n}={v:g}" for n, v in zip(JOINT_NAMES, target) if abs(v) > ABSURD_TARGET_RAD]
        if absurd:
            raise ValueError(f"{self.role}: joint targets beyond ±2π rad ({', '.join(absurd)}) are not angles of "
                             "this arm (degrees passed as radians?); nothing was sent")
        return target

    def _send(self, target: np.ndarray) -> np.ndarray:
        raw_now = self._read_raw()
        q_now = self.calibration.raw_to_rad(raw_now)
        clamped = np.clip(target, self.joint_limits[:, 0], self.joint_limits[:, 1])
        clamped = np.clip(clamped, q_now - self.max_step_rad, q_now + self.max_step_rad)
        raw = _round_toward(self.calibration.rad_to_raw_float(clamped), raw_now)
        raw = np.clip(raw, 0, feetech.MAX_RAW).astype(np.int64)
        self.bus.sync_write(_GOAL.address, _GOAL.size, dict(zip(self._ids, raw.tolist())))
        return self.calibration.raw_to_rad(raw)

    def _read_raw(self) -> np.ndarray:
        values = self.bus.sync_read(_PRESENT.address, _PRESENT.size, self._ids)
        return np.array([values[i] for i in self._ids], dtype=np.int64)

    def _set_torque(self, on: bool, attempts: int = 3) -> None:
        """Switch torque and confirm it by reading it back (a sync write is not acknowledged)."""
        if on:  # hold where the arm is: a stale goal would make it jump
            raw = self._read_raw()
            self.bus.sync_write(_GOAL.address, _GOAL.size, dict(zip(self._ids, raw.tolist())))
        wanted = int(on)
        state: dict[int, int] = {}
        for _ in range(attempts):
            self.bus.sync_write_register("Torque_Enable", {i: wanted for i in self._ids})
            try:
                state = self.bus.sync_read_register("Torque_Enable", self._ids)
            except PortLostError:
                raise
            except BusError:
                continue
            if all(v == wanted for v in state.values()):
                break
        else:
            unconfirmed = [i for i in self._ids if state.get(i) != wanted]
            raise BusError(f"servo(s) {unconfirmed} on {self.port}: torque {'on' if on else 'off'} not confirmed "
                           f"after {attempts} tries")
        # like LeRobot: lock the EEPROM while torque is on, unlock it with torque off
        self.bus.sync_write_register("Lock", {i: wanted for i in self._ids})
        self._torque_on = on

    # ---------------------------------------------------------------------------- port lost

    def _guarded(self, action: Callable[[], T]) -> T:
        if not self._connected:
            raise ArmError(f"{self} is not connected; call connect() first")
        try:
            return action()
        except PortLostError as exc:
            try:
                with _signals_deferred():
                    self._connected = False
                    took = self._reopen_and_torque_off()
                    self.bus.close()
            finally:
                self._abandon()
            raise self._lost_error(exc, took) from exc

    def _reopen_and_torque_off(self) -> float | None:
        """Reopen the same path for up to reconnect_timeout_s and switch torque off; the seconds it took, or None."""
        self._torque_on = False
        started = time.monotonic()
        while True:
            try:
                self.bus.reopen()
                self._set_torque(False)
                return time.monotonic() - started
            except BusError:
                if time.monotonic() - started >= self.reconnect_timeout_s:
                    return None
                time.sleep(0.05)

    def _lost_error(self, exc: PortLostError, took: float | None) -> ArmDisconnectedError:
        if took is not None:
            return ArmDisconnectedError(
                f"{self.role}: the serial port {self.port} vanished mid-run ({exc}). It came back after {took:.1f} s "
                "and every servo was switched to torque off, so the arm is limp. Check the USB cable, then "
                "connect() again."
            )
        return ArmDisconnectedError(
            f"{self.role}: the serial port {self.port} vanished mid-run ({exc}) and did not come back within "
            f"{self.reconnect_timeout_s:.1f} s. The servos may STILL HOLD TORQUE at their last goal: switch the "
            "arm's power supply off before touching it, then check the USB cable."
        )


def _round_toward(raw_float: np.ndarray, raw_now: np.ndarray) -> np.ndarray:
    """Round to whole servo steps toward the present position, so rounding never lengthens a step or crosses a
    limit that the present position is inside of; values within 1e-6 of a step snap to it."""
    nearest = np.rint(raw_float)
    toward = np.where(raw_float >= raw_now, np.floor(raw_float), np.ceil(raw_float))
    return np.where(np.abs(raw_float - nearest) < 1e-6, nearest, toward)


class SO101Follower(_SO101Arm):
    """The arm the policy drives. connect() switches torque on (holding the present pose)."""

    role = "SO-101 follower"

    def _on_connected(self) -> None:
        self._set_torque(True)


class SO101Leader(_SO101Arm):
    """The arm a person moves by hand. Torque stays off after connect(); for "leader follows follower", switch
    torque on (a low P gain lets the person still push it) and send targets."""

    role = "SO-101 leader"
    p_coefficient = 8  # half the follower's: compliant enough to grab

    def send_joint_targets(self, q: Any) -> np.ndarray:
        """As the follower's, but only with torque on: a limp leader cannot follow, and silently not moving would
        hide that."""
        target = self._validated(q)

        def send() -> np.ndarray:
            if not self._torque_on:
                raise ArmError(f"{self}: torque is off, so the leader cannot follow targets; call torque(True) first")
            return self._send(target)

        return self._guarded(send)
