"""The Feetech serial-servo protocol (STS/SMS series, "protocol 0") as pure functions, and a packet parser.

Every packet on the wire, host to servo and servo to host, has the same frame::

    0xFF 0xFF  id  length  code  params...  checksum

``length`` counts ``code``, the params and the checksum (so it is ``len(params) + 2``); ``code`` is the
instruction in a request and the servo's error bits in a status reply; ``checksum`` is the low byte of the
bitwise NOT of the sum of ``id``, ``length``, ``code`` and the params. Multi-byte register values are little
endian. A few signed registers (homing offset, velocities) use sign-magnitude with the sign in a fixed bit.

Nothing here touches a port: the bus (``bus.py``) and the emulator (``emulator.py``) both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, Mapping

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC  # the highest id a single servo can have
RESOLUTION = 4096  # 12-bit magnetic encoder: 4096 steps per turn, raw 0..4095
MAX_RAW = RESOLUTION - 1
STS3215_MODEL_NUMBER = 777
STATUS_FRAME_BYTES = 6  # header (2) + id + length + error + checksum, without params


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


# Bits of the error byte in a status packet.
STATUS_ERROR_BITS = {
    0x01: "input voltage out of range",
    0x02: "angle sensor error",
    0x04: "overheat",
    0x08: "overcurrent",
    0x20: "overload",
}


class ProtocolError(ValueError):
    """Bytes that are not a valid Feetech packet."""


class ChecksumError(ProtocolError):
    """A complete packet whose checksum does not match (a corrupted byte on the wire)."""


@dataclass(frozen=True)
class Register:
    """One entry of the servo's control table."""

    name: str
    address: int
    size: int  # bytes
    sign_bit: int | None = None  # sign-magnitude encoding with the sign in this bit
    read_only: bool = False


def _table(*registers: Register) -> dict[str, Register]:
    return {r.name: r for r in registers}


# The STS3215 control table entries this project uses (names as in LeRobot's Feetech tables, so users can
# compare). Addresses up to 39 live in EEPROM (kept across power cycles, writable while Lock is 0), from 40 on RAM.
CONTROL_TABLE: dict[str, Register] = _table(
    Register("Firmware_Major_Version", 0, 1, read_only=True),
    Register("Firmware_Minor_Version", 1, 1, read_only=True),
    Register("Model_Number", 3, 2, read_only=True),
    Register("ID", 5, 1),
    Register("Baud_Rate", 6, 1),
    Register("Return_Delay_Time", 7, 1),
    Register("Response_Status_Level", 8, 1),
    Register("Min_Position_Limit", 9, 2),
    Register("Max_Position_Limit", 11, 2),
    Register("Max_Torque_Limit", 16, 2),
    Register("P_Coefficient", 21, 1),
    Register("D_Coefficient", 22, 1),
    Register("I_Coefficient", 23, 1),
    Register("Protection_Current", 28, 2),
    Register("Homing_Offset", 31, 2, sign_bit=11),
    Register("Operating_Mode", 33, 1),
    Register("Overload_Torque", 36, 1),
    Register("Torque_Enable", 40, 1),
    Register("Acceleration", 41, 1),
    Register("Goal_Position", 42, 2),
    Register("Goal_Time", 44, 2),
    Register("Goal_Velocity", 46, 2, sign_bit=15),
    Register("Torque_Limit", 48, 2),
    Register("Lock", 55, 1),
    Register("Present_Position", 56, 2, read_only=True),
    Register("Present_Velocity", 58, 2, sign_bit=15, read_only=True),
    Register("Present_Load", 60, 2, read_only=True),
    Register("Present_Voltage", 62, 1, read_only=True),
    Register("Present_Temperature", 63, 1, read_only=True),
    Register("Moving", 66, 1, read_only=True),
    Register("Present_Current", 69, 2, read_only=True),
    Register("Maximum_Acceleration", 85, 1),
)
_BY_ADDRESS = {r.address: r for r in CONTROL_TABLE.values()}

OPERATING_MODE_POSITION = 0
HOMING_OFFSET_LIMIT = (1 << 11) - 1  # 2047: the largest magnitude the 11-bit homing offset holds


def register(name: str) -> Register:
    try:
        return CONTROL_TABLE[name]
    except KeyError:
        raise KeyError(f"unknown STS3215 register {name!r}; known: {', '.join(CONTROL_TABLE)}") from None


def describe_address(address: int) -> str:
    """'Goal_Position (address 42)' for messages; the bare address when it is not in the table."""
    reg = _BY_ADDRESS.get(address)
    return f"{reg.name} (address {address})" if reg else f"address {address}"


def describe_status_error(error: int) -> str:
    """The servo's error byte in words, e.g. 'overload, overheat'."""
    if error == 0:
        return "no error"
    parts = [text for bit, text in STATUS_ERROR_BITS.items() if error & bit]
    unknown = error & ~sum(STATUS_ERROR_BITS)
    if unknown:
        parts.append(f"unknown error bits 0x{unknown:02X}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------- values


def encode_value(value: int, size: int) -> bytes:
    """Unsigned little-endian bytes of a register value."""
    if size not in (1, 2, 4):
        raise ValueError(f"register size must be 1, 2 or 4 bytes, got {size}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"register value must be an int, got {value!r} ({type(value).__name__})")
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"value {value} does not fit an unsigned {size}-byte register (0..{(1 << 8 * size) - 1})")
    return value.to_bytes(size, "little")


def decode_value(data: bytes) -> int:
    return int.from_bytes(data, "little")


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Signed integer -> sign-magnitude bits (sign in `sign_bit`, magnitude below it)."""
    limit = (1 << sign_bit) - 1
    if abs(value) > limit:
        raise ValueError(f"{value} does not fit sign-magnitude with the sign in bit {sign_bit} (|value| <= {limit})")
    return (1 << sign_bit) | -value if value < 0 else value


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


def register_bytes(reg: Register, value: int) -> bytes:
    """A signed or unsigned value as the bytes to write into `reg`."""
    try:
        raw = encode_sign_magnitude(value, reg.sign_bit) if reg.sign_bit is not None else value
        return encode_value(raw, reg.size)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{reg.name}: {exc}") from None


def register_value(reg: Register, data: bytes) -> int:
    raw = decode_value(data)
    return decode_sign_magnitude(raw, reg.sign_bit) if reg.sign_bit is not None else raw


# -------------------------------------------------------------------------------------------- packets


def checksum(body: bytes | bytearray) -> int:
    """Checksum over id, length, code and params (everything between header and checksum)."""
    return ~sum(body) & 0xFF


def _check_byte(name: str, value: int, low: int = 0, high: int = 0xFF) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def encode_packet(servo_id: int, code: int, params: bytes = b"") -> bytes:
    """Frame one packet; `code` is the instruction (requests) or the error byte (status replies)."""
    _check_byte("servo id", servo_id, 0, BROADCAST_ID)
    _check_byte("instruction/error code", code)
    if len(params) > 0xFF - 2:
        raise ValueError(f"{len(params)} parameter bytes do not fit one packet (at most 253)")
    body = bytes([servo_id, len(params) + 2, code]) + bytes(params)
    return HEADER + body + bytes([checksum(body)])


def ping_packet(servo_id: int) -> bytes:
    return encode_packet(servo_id, Instruction.PING)


def read_packet(servo_id: int, address: int, length: int) -> bytes:
    _check_byte("servo id", servo_id, 0, MAX_ID)
    _check_byte("address", address)
    _check_byte("read length", length, 1, 0xFF)
    return encode_packet(servo_id, Instruction.READ, bytes([address, length]))


def write_packet(servo_id: int, address: int, data: bytes) -> bytes:
    _check_byte("address", address)
    if not data:
        raise ValueError("a write needs at least one data byte")
    return encode_packet(servo_id, Instruction.WRITE, bytes([address]) + bytes(data))


def sync_read_packet(address: int, length: int, ids: Iterable[int]) -> bytes:
    """One request that makes every listed servo answer with its own status packet, in the listed order."""
    ids = list(ids)
    _check_byte("address", address)
    _check_byte("read length", length, 1, 0xFF)
    _check_ids(ids)
    return encode_packet(BROADCAST_ID, Instruction.SYNC_READ, bytes([address, length, *ids]))


def sync_write_packet(address: int, length: int, data_by_id: Mapping[int, bytes]) -> bytes:
    """One request that writes `length` bytes at `address` into each listed servo; nobody answers."""
    _check_byte("address", address)
    _check_byte("write length", length, 1, 0xFF)
    _check_ids(list(data_by_id))
    params = bytearray([address, length])
    for servo_id, data in data_by_id.items():
        if len(data) != length:
            raise ValueError(f"sync write: servo {servo_id} has {len(data)} data bytes, expected {length}")
        params += bytes([servo_id]) + bytes(data)
    return encode_packet(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


def status_packet(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    """A servo's reply (the emulator sends these)."""
    _check_byte("servo id", servo_id, 0, MAX_ID)
    return encode_packet(servo_id, error, params)


def _check_ids(ids: list[int]) -> None:
    if not ids:
        raise ValueError("at least one servo id is needed")
    for servo_id in ids:
        _check_byte("servo id", servo_id, 0, MAX_ID)
    if len(set(ids)) != len(ids):
        raise ValueError(f"servo ids must be unique, got {ids}")


@dataclass(frozen=True)
class Packet:
    """A decoded packet. `code` is the instruction of a request or the error byte of a status reply."""

    servo_id: int
    code: int
    params: bytes = b""

    @property
    def error(self) -> int:
        return self.code


class PacketParser:
    """Cuts a byte stream into packets: partial packets wait for more bytes, garbage before a header is skipped.

    `next_packet()` returns the next complete packet or None when more bytes are needed. A corrupt packet
    (bad checksum, impossible length) raises `ChecksumError`/`ProtocolError` after its header has been dropped,
    so the next call resynchronises on the following header.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0  # bytes skipped as garbage so far

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        self.discarded += len(self._buffer)
        self._buffer.clear()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _drop(self, count: int) -> None:
        del self._buffer[:count]
        self.discarded += count

    def next_packet(self) -> Packet | None:
        buf = self._buffer
        while True:
            start = buf.find(HEADER)
            if start < 0:
                # keep a trailing 0xFF: it may be the first half of a header still on its way
                self._drop(len(buf) - 1 if buf.endswith(b"\xff") else len(buf))
                return None
            if start:
                self._drop(start)
            if len(buf) < 4:
                return None
            if buf[2] == 0xFF:  # 0xFF 0xFF 0xFF: no id is 0xFF, so the first 0xFF was noise
                self._drop(1)
                continue
            servo_id, length = buf[2], buf[3]
            if length < 2:
                self._drop(2)
                raise ProtocolError(f"packet for servo {servo_id} declares length {length}; the minimum is 2")
            total = 4 + length
            if len(buf) < total:
                return None
            body = bytes(buf[2 : total - 1])
            expected, got = checksum(body), buf[total - 1]
            if expected != got:
                self._drop(2)
                raise ChecksumError(
                    f"packet from servo {servo_id}: checksum 0x{got:02X}, expected 0x{expected:02X} "
                    f"(bytes {bytes(buf[:total]).hex(' ')})"
                )
            packet = Packet(servo_id, buf[4], bytes(buf[5 : total - 1]))
            del buf[:total]
            return packet

    def packets(self) -> list[Packet]:
        """All complete packets now in the buffer; corrupt ones are skipped (use next_packet to see errors)."""
        out = []
        while True:
            try:
                packet = self.next_packet()
            except ProtocolError:
                continue
            if packet is None:
                return out
            out.append(packet)
