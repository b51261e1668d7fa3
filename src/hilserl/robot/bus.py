"""A Feetech servo bus on a serial port: ping, read, write, sync read and sync write, with bounded retries.

Failures are split in two because the caller must react differently: `BusError` when a servo does not answer
(loose cable, wrong id, noise: retrying or naming the servo helps) and `PortLostError` when the port itself is
gone (USB unplugged, adapter reset: every servo keeps whatever torque it had, and the caller has to reopen the
port to switch torque off).
"""

from __future__ import annotations

import logging
import time
from typing import Mapping, Sequence

import serial

from hilserl.robot import feetech
from hilserl.robot.feetech import Packet, PacketParser, ProtocolError

try:  # termios raises its own error type (not an OSError) when the device vanished under an open port
    from termios import error as _TermiosError
except ImportError:  # pragma: no cover - Windows
    class _TermiosError(Exception):  # type: ignore[no-redef]
        pass

log = logging.getLogger(__name__)
_PORT_ERRORS = (serial.SerialException, OSError, _TermiosError)


class BusError(RuntimeError):
    """A servo did not answer properly (after the retries); the message names the servo and the register."""


class PortLostError(BusError):
    """The serial port cannot be used: it vanished (unplugged) or could not be opened."""


class FeetechBus:
    """The host side of one servo bus (one USB serial adapter with its daisy chain of servos).

    `timeout_s` bounds the wait for one reply; each request is tried `1 + retries` times. The object is not
    thread-safe: one owner talks on a bus at a time, as on the wire.
    """

    def __init__(self, port: str, baudrate: int = 1_000_000, timeout_s: float = 0.05, retries: int = 2) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.port = str(port)
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self.servo_errors: dict[int, int] = {}  # last non-zero error byte each servo reported
        self._serial: serial.Serial | None = None
        self._parser = PacketParser()

    # ------------------------------------------------------------------------------------------ port

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        if self._serial is not None:
            return
        try:
            # a short read timeout: reads poll, and our own deadline bounds the wait for a reply
            self._serial = serial.Serial(self.port, self.baudrate, timeout=min(self.timeout_s, 0.01))
        except _PORT_ERRORS as exc:
            raise PortLostError(
                f"cannot open serial port {self.port}: {exc}. Is the arm's USB cable plugged in and its power on? "
                "(Prefer a stable path such as /dev/serial/by-id/... over /dev/ttyACM0.)"
            ) from exc
        self._parser.clear()

    def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except _PORT_ERRORS:
                pass  # a vanished port cannot be closed more than this

    def reopen(self) -> None:
        self.close()
        self.open()

    def __enter__(self) -> FeetechBus:
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeetechBus({self.port!r}, baudrate={self.baudrate}, {'open' if self.is_open else 'closed'})"

    # ------------------------------------------------------------------------------------ operations

    def ping(self, servo_id: int) -> bool:
        """True when the servo answers a PING."""
        try:
            self._request(feetech.ping_packet(servo_id), [servo_id], "PING")
        except PortLostError:
            raise
        except BusError:
            return False
        return True

    def read(self, servo_id: int, address: int, length: int) -> int:
        """Unsigned little-endian value of `length` bytes at `address`."""
        what = f"reading {feetech.describe_address(address)}"
        reply = self._request(feetech.read_packet(servo_id, address, length), [servo_id], what, length)
        return feetech.decode_value(reply[servo_id].params)

    def write(self, servo_id: int, address: int, length: int, value: int) -> None:
        """Write and wait for the servo's acknowledgement (use for configuration, where a lost write matters)."""
        what = f"writing {value} to {feetech.describe_address(address)}"
        packet = feetech.write_packet(servo_id, address, feetech.encode_value(value, length))
        self._request(packet, [servo_id], what)

    def sync_read(self, address: int, length: int, ids: Sequence[int]) -> dict[int, int]:
        """The same register from several servos with one request; {id: unsigned value}."""
        what = f"sync-reading {feetech.describe_address(address)}"
        values: dict[int, int] = {}
        missing = list(ids)
        problems: list[str] = []
        for _attempt in range(1 + self.retries):
            packet = feetech.sync_read_packet(address, length, missing)
            replies, problem = self._exchange(packet, missing, length)
            values.update({i: feetech.decode_value(p.params) for i, p in replies.items()})
            missing = [i for i in missing if i not in replies]
            if not missing:
                return {i: values[i] for i in ids}
            problems.append(problem)
        raise self._no_answer(missing, what, problems[-1])

    def sync_write(self, address: int, length: int, values: Mapping[int, int]) -> None:
        """Write several servos with one request. Servos do not acknowledge a sync write (fast, for goals)."""
        data = {servo_id: feetech.encode_value(int(v), length) for servo_id, v in values.items()}
        self._send(feetech.sync_write_packet(address, length, data))

    # Register-name conveniences: sizes and sign-magnitude come from the STS3215 control table.

    def read_register(self, name: str, servo_id: int) -> int:
        reg = feetech.register(name)
        raw = self.read(servo_id, reg.address, reg.size)
        return feetech.register_value(reg, raw.to_bytes(reg.size, "little"))

    def write_register(self, name: str, servo_id: int, value: int) -> None:
        reg = feetech.register(name)
        raw = feetech.decode_value(feetech.register_bytes(reg, value))
        self.write(servo_id, reg.address, reg.size, raw)

    def sync_read_register(self, name: str, ids: Sequence[int]) -> dict[int, int]:
        reg = feetech.register(name)
        raw = self.sync_read(reg.address, reg.size, ids)
        return {i: feetech.register_value(reg, v.to_bytes(reg.size, "little")) for i, v in raw.items()}

    def sync_write_register(self, name: str, values: Mapping[int, int]) -> None:
        reg = feetech.register(name)
        raw = {i: feetech.decode_value(feetech.register_bytes(reg, v)) for i, v in values.items()}
        self.sync_write(reg.address, reg.size, raw)

    # ------------------------------------------------------------------------------------- internals

    def _request(self, packet: bytes, ids: list[int], what: str, length: int = 0) -> dict[int, Packet]:
        replies: dict[int, Packet] = {}
        problem = ""
        for _attempt in range(1 + self.retries):
            replies, problem = self._exchange(packet, ids, length)
            if len(replies) == len(ids):
                return replies
        raise self._no_answer([i for i in ids if i not in replies], what, problem)

    def _no_answer(self, ids: list[int], what: str, problem: str) -> BusError:
        servos = ", ".join(str(i) for i in ids)
        noun = "servo" if len(ids) == 1 else "servos"
        return BusError(
            f"{noun} {servos} on {self.port}: no valid answer {what} after {1 + self.retries} tries ({problem}). "
            "Check the servo cable, the arm's power supply and the servo id."
        )

    def _exchange(self, packet: bytes, ids: list[int], length: int) -> tuple[dict[int, Packet], str]:
        """Send one request and collect the status replies of `ids` until all came or the timeout passed."""
        ser = self._port()
        wanted = set(ids)
        replies: dict[int, Packet] = {}
        problem = f"no reply within {self.timeout_s * 1000:.0f} ms"
        try:
            ser.reset_input_buffer()  # stale bytes from an earlier timed-out request
            self._parser.clear()
            ser.write(packet)
            deadline = time.monotonic() + self.timeout_s
            while len(replies) < len(wanted) and time.monotonic() < deadline:
                chunk = ser.read(max(1, ser.in_waiting))
                if not chunk:
                    continue
                self._parser.feed(chunk)
                while True:
                    try:
                        reply = self._parser.next_packet()
                    except ProtocolError as exc:
                        problem = str(exc)
                        continue
                    if reply is None:
                        break
                    if reply.servo_id not in wanted:
                        continue  # a late answer to an earlier request
                    if len(reply.params) != length:
                        problem = f"servo {reply.servo_id} sent {len(reply.params)} data bytes, expected {length}"
                        continue
                    self._note_status(reply)
                    replies[reply.servo_id] = reply
        except _PORT_ERRORS as exc:
            raise self._lost(exc) from exc
        return replies, problem

    def _send(self, packet: bytes) -> None:
        ser = self._port()
        try:
            ser.write(packet)
        except _PORT_ERRORS as exc:
            raise self._lost(exc) from exc

    def _port(self) -> serial.Serial:
        if self._serial is None:
            raise PortLostError(f"serial port {self.port} is not open (call open() first)")
        return self._serial

    def _lost(self, exc: BaseException) -> PortLostError:
        self.close()
        return PortLostError(f"serial port {self.port} vanished ({exc}); was the USB cable unplugged?")

    def _note_status(self, reply: Packet) -> None:
        # The error bits (overload when the gripper squeezes, low voltage...) do not invalidate the data, and
        # raising on them would stop a grasp; they are kept and logged when they change.
        previous = self.servo_errors.get(reply.servo_id, 0)
        if reply.error != previous:
            if reply.error:
                log.warning("servo %d reports: %s", reply.servo_id, feetech.describe_status_error(reply.error))
                self.servo_errors[reply.servo_id] = reply.error
            else:
                self.servo_errors.pop(reply.servo_id, None)
