"""An emulated SO-101 servo bus: a pseudo-terminal that speaks the Feetech protocol, with STS3215s behind it.

Tests (and anyone without an arm) open `EmulatedBus.port` exactly like a real `/dev/ttyACM0`: the path is a
stable symlink to the current pseudo-terminal, so `unplug()` (the port vanishes, the host gets I/O errors) and
`replug()` (a new pseudo-terminal appears at the same path) play out like a USB cable pulled and put back. The
servos keep their state across an unplug, torque included, as real ones do while they keep their power.

Each servo has a control table; a background thread answers requests at once and, every tick, moves each servo
with torque on toward its goal by at most `max_step_per_tick` raw steps. With torque off a servo stays where it
is unless moved "by hand" with `set_present`. Every goal position written is recorded (`goal_writes`) with the
present position the host last read from that servo, so tests can check what the host asked for.
"""

from __future__ import annotations

import os
import select
import shutil
import tempfile
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from hilserl.robot import feetech
from hilserl.robot.feetech import BROADCAST_ID, RESOLUTION, Instruction, Packet, PacketParser

_REG = feetech.CONTROL_TABLE
_READ_ONLY = frozenset(
    addr for r in _REG.values() if r.read_only for addr in range(r.address, r.address + r.size)
)
_GOAL = _REG["Goal_Position"]
_PRESENT = _REG["Present_Position"]


@dataclass(frozen=True)
class GoalWrite:
    """One goal position a servo received."""

    servo_id: int
    goal: int  # raw value as written, before the servo's own angle-limit clamp
    reported_present: int | None  # the Present_Position this servo last sent to the host (None: never read)
    present: int  # where the servo was when the write arrived


class _Servo:
    """One STS3215: a 256-byte control table plus the shaft's physical position."""

    def __init__(self, servo_id: int, present: int) -> None:
        self.table = bytearray(256)
        for name, value in (
            ("Firmware_Major_Version", 3), ("Firmware_Minor_Version", 10),
            ("Model_Number", feetech.STS3215_MODEL_NUMBER), ("ID", servo_id), ("Return_Delay_Time", 250),
            ("Response_Status_Level", 1), ("Min_Position_Limit", 0), ("Max_Position_Limit", feetech.MAX_RAW),
            ("Max_Torque_Limit", 1000), ("P_Coefficient", 32), ("D_Coefficient", 32), ("Torque_Limit", 1000),
            ("Present_Voltage", 120), ("Present_Temperature", 30), ("Maximum_Acceleration", 254),
        ):
            self.set(name, value)
        self.shaft = present % RESOLUTION  # physical encoder reading, before the homing offset
        self.set("Goal_Position", present % RESOLUTION)
        self.muted = False
        self.status_error = 0
        self.last_reported: int | None = None
        self.velocity = 0  # raw steps per second, for Present_Velocity
        self.refresh()

    def get(self, name: str) -> int:
        reg = _REG[name]
        return feetech.register_value(reg, bytes(self.table[reg.address : reg.address + reg.size]))

    def set(self, name: str, value: int) -> None:
        reg = _REG[name]
        self.table[reg.address : reg.address + reg.size] = feetech.register_bytes(reg, value)

    @property
    def present(self) -> int:
        # On Feetech servos Present_Position = actual position - Homing_Offset (modulo one turn).
        return (self.shaft - self.get("Homing_Offset")) % RESOLUTION

    def set_present(self, raw: int) -> None:
        self.shaft = (raw + self.get("Homing_Offset")) % RESOLUTION
        self.refresh()

    @property
    def torque(self) -> bool:
        return self.get("Torque_Enable") == 1

    def refresh(self) -> None:
        """Write the measured values into the read-only part of the table."""
        self.set("Present_Position", self.present)
        self.set("Present_Velocity", max(-32767, min(32767, self.velocity)))
        self.set("Moving", int(self.velocity != 0))

    def step(self, max_step: int, dt: float) -> None:
        if not self.torque:
            self.velocity = 0
            self.refresh()
            return
        goal = self.get("Goal_Position")
        low, high = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
        if low < high:  # the servo never drives past its own angle limits
            goal = min(max(goal, low), high)
        present = self.present
        move = max(-max_step, min(max_step, goal - present))
        self.velocity = round(move / dt) if dt > 0 else 0
        self.set_present(present + move)

    def read(self, address: int, length: int) -> bytes:
        self.refresh()
        if address <= _PRESENT.address and address + length >= _PRESENT.address + _PRESENT.size:
            self.last_reported = self.present
        return bytes(self.table[address : address + length])

    def write(self, address: int, data: bytes) -> None:
        for offset, byte in enumerate(data):
            if address + offset < len(self.table) and address + offset not in _READ_ONLY:
                self.table[address + offset] = byte
        self.refresh()

    def wrote_goal(self, address: int, length: int) -> bool:
        return address <= _GOAL.address and address + length >= _GOAL.address + _GOAL.size


class EmulatedBus:
    """N emulated STS3215 servos behind a pseudo-terminal at a stable path (`port`). Use as a context manager."""

    def __init__(
        self,
        ids: Iterable[int] = (1, 2, 3, 4, 5, 6),
        *,
        positions: Mapping[int, int] | int = 2048,
        tick_s: float = 0.002,
        max_step_per_tick: int = 10,
        link_dir: str | os.PathLike | None = None,
        link_name: str = "ttyACM0",
    ) -> None:
        ids = list(ids)
        if len(set(ids)) != len(ids):
            raise ValueError(f"servo ids must be unique, got {ids}")
        start = positions if isinstance(positions, Mapping) else {i: positions for i in ids}
        self._servos = {i: _Servo(i, int(start.get(i, 2048))) for i in ids}
        self.tick_s = tick_s
        self.max_step_per_tick = max_step_per_tick
        self._own_dir = link_dir is None
        self._dir = Path(tempfile.mkdtemp(prefix="hilserl-emu-")) if link_dir is None else Path(link_dir)
        self.port = str(self._dir / link_name)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None  # held open so the master never sees a hang-up between host sessions
        self._parser = PacketParser()
        self._goal_writes: list[GoalWrite] = []
        self._drop_replies = 0
        self._corrupt_replies = 0
        self.requests = 0  # packets received, for tests

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> EmulatedBus:
        if self._thread is not None:
            return self
        self._plug()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="emulated-feetech-bus", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        with self._lock:
            self._close_pty()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmulatedBus:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        """The port vanishes: the path disappears and the host's open handle fails. Servos keep their state."""
        with self._lock:
            self._close_pty()

    def replug(self) -> None:
        """A new pseudo-terminal appears at the same path (like udev recreating /dev/ttyACM0)."""
        with self._lock:
            if self._master is None:
                self._plug()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)  # a host that stops reading must never block the emulator
        link = Path(self.port)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.ttyname(slave))
        with self._lock:
            self._master, self._slave = master, slave
            self._parser.clear()

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        link = Path(self.port)
        if link.is_symlink():
            link.unlink()

    # ------------------------------------------------------------------------------- test handles

    def _servo(self, servo_id: int) -> _Servo:
        try:
            return self._servos[servo_id]
        except KeyError:
            raise KeyError(f"no emulated servo with id {servo_id}; ids: {sorted(self._servos)}") from None

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._servos)

    def set_present(self, servo_id: int, raw: int) -> None:
        """Move a servo's shaft (a person moving the arm by hand); with torque on the servo pulls back."""
        with self._lock:
            self._servo(servo_id).set_present(raw)

    def present(self, servo_id: int) -> int:
        with self._lock:
            return self._servo(servo_id).present

    def goal(self, servo_id: int) -> int:
        with self._lock:
            return self._servo(servo_id).get("Goal_Position")

    def torque_enabled(self, servo_id: int) -> bool:
        with self._lock:
            return self._servo(servo_id).torque

    def register_value(self, servo_id: int, name: str) -> int:
        with self._lock:
            servo = self._servo(servo_id)
            servo.refresh()
            return servo.get(name)

    def set_register(self, servo_id: int, name: str, value: int) -> None:
        with self._lock:
            self._servo(servo_id).set(name, value)

    @property
    def goal_writes(self) -> list[GoalWrite]:
        with self._lock:
            return list(self._goal_writes)

    def clear_goal_writes(self) -> None:
        with self._lock:
            self._goal_writes.clear()

    def mute(self, servo_id: int, muted: bool = True) -> None:
        """A servo that stops answering (loose cable in the daisy chain)."""
        with self._lock:
            self._servo(servo_id).muted = muted

    def set_status_error(self, servo_id: int, error: int) -> None:
        with self._lock:
            self._servo(servo_id).status_error = error

    def drop_next_replies(self, count: int) -> None:
        with self._lock:
            self._drop_replies = count

    def corrupt_next_replies(self, count: int) -> None:
        with self._lock:
            self._corrupt_replies = count

    # ------------------------------------------------------------------------------------- serving

    def _serve(self) -> None:
        next_tick = time.monotonic() + self.tick_s
        while not self._stop.is_set():
            fd = self._master
            wait = max(0.0, next_tick - time.monotonic())
            if fd is None:
                self._stop.wait(wait)
            else:
                try:
                    readable = select.select([fd], [], [], wait)[0]
                except (OSError, ValueError):  # closed under us by unplug()
                    readable = []
                if readable:
                    self._receive(fd)
            now = time.monotonic()
            if now >= next_tick:
                ticks = min(int((now - next_tick) / self.tick_s) + 1, 50)
                with self._lock:
                    for servo in self._servos.values():
                        servo.step(self.max_step_per_tick * ticks, ticks * self.tick_s)
                next_tick = max(next_tick + ticks * self.tick_s, now)

    def _receive(self, fd: int) -> None:
        with self._lock:
            if fd != self._master:
                return
            try:
                data = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._parser.feed(data)
            for packet in self._parser.packets():  # servos ignore corrupt requests
                self.requests += 1
                for reply in self._handle(packet):
                    self._reply(fd, reply)

    def _reply(self, fd: int, reply: bytes) -> None:
        if self._drop_replies > 0:
            self._drop_replies -= 1
            return
        if self._corrupt_replies > 0:
            self._corrupt_replies -= 1
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        try:
            os.write(fd, reply)
        except OSError:
            pass  # host not reading or gone: the bytes are lost, as on a real wire

    def _handle(self, packet: Packet) -> list[bytes]:
        code, params = packet.code, packet.params
        if packet.servo_id == BROADCAST_ID:
            if code == Instruction.SYNC_WRITE and len(params) >= 2:
                address, length = params[0], params[1]
                for i in range(2, len(params) - length, length + 1):
                    servo_id, data = params[i], params[i + 1 : i + 1 + length]
                    if servo_id in self._servos and len(data) == length:
                        self._write(servo_id, address, data)
                return []
            if code == Instruction.SYNC_READ and len(params) >= 3:
                address, length = params[0], params[1]
                return [r for i in params[2:] if (r := self._status(i, self._read(i, address, length))) is not None]
            if code == Instruction.WRITE and len(params) >= 2:
                for servo_id in list(self._servos):
                    self._write(servo_id, params[0], params[1:])
                return []
            if code == Instruction.PING:
                return [r for i in sorted(self._servos) if (r := self._status(i, b"")) is not None]
            return []
        if packet.servo_id not in self._servos:
            return []
        if code == Instruction.PING:
            reply = self._status(packet.servo_id, b"")
        elif code == Instruction.READ and len(params) == 2:
            reply = self._status(packet.servo_id, self._read(packet.servo_id, params[0], params[1]))
        elif code == Instruction.WRITE and len(params) >= 2:
            servo_id = packet.servo_id
            reply = self._status(servo_id, b"")  # answered with the id the request addressed
            self._write(servo_id, params[0], params[1:])
        else:
            reply = None
        return [reply] if reply is not None else []

    def _status(self, servo_id: int, data: bytes | None) -> bytes | None:
        servo = self._servos.get(servo_id)
        if servo is None or servo.muted or data is None:
            return None
        return feetech.status_packet(servo_id, servo.status_error, data)

    def _read(self, servo_id: int, address: int, length: int) -> bytes | None:
        servo = self._servos.get(servo_id)
        return None if servo is None else servo.read(address, length)

    def _write(self, servo_id: int, address: int, data: bytes) -> None:
        servo = self._servos[servo_id]
        if servo.muted:
            return
        present = servo.present
        servo.write(address, data)
        if servo.wrote_goal(address, len(data)):
            self._goal_writes.append(GoalWrite(servo_id, servo.get("Goal_Position"), servo.last_reported, present))
        new_id = servo.get("ID")
        if new_id != servo_id:
            if new_id in self._servos or new_id > feetech.MAX_ID:
                servo.set("ID", servo_id)  # two servos with one id cannot be emulated; keep the old one
            else:
                self._servos[new_id] = self._servos.pop(servo_id)
