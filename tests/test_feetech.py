"""The Feetech protocol (pure functions, parser), the serial bus against the emulated servos, and the emulator."""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hilserl.robot import feetech
from hilserl.robot.bus import BusError, FeetechBus, PortLostError
from hilserl.robot.emulator import EmulatedBus
from hilserl.robot.feetech import ChecksumError, Packet, PacketParser, ProtocolError
from robot_fakes import wait_until

IDS = [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------------------------------------------------ packets


def test_ping_and_read_packets_match_hand_computed_bytes():
    # ping id 1: checksum = ~(1 + 2 + 1) & 0xFF = 0xFB
    assert feetech.ping_packet(1) == bytes([0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB])
    # read 2 bytes at 56 (Present_Position) of id 1: ~(1 + 4 + 2 + 56 + 2) = ~65 = 0xBE
    assert feetech.read_packet(1, 56, 2) == bytes([0xFF, 0xFF, 0x01, 0x04, 0x02, 0x38, 0x02, 0xBE])


def test_write_packet_is_little_endian():
    packet = feetech.write_packet(3, 42, feetech.encode_value(0x0123, 2))
    assert packet[:7] == bytes([0xFF, 0xFF, 3, 5, 0x03, 42, 0x23]) and packet[7] == 0x01
    assert packet[-1] == feetech.checksum(packet[2:-1])


def test_sync_packets_layout():
    read = feetech.sync_read_packet(56, 2, [1, 2, 3])
    assert read == feetech.encode_packet(0xFE, 0x82, bytes([56, 2, 1, 2, 3]))
    assert read[3] == 3 + 4  # length = ids + instruction, address, data length, checksum
    write = feetech.sync_write_packet(42, 2, {1: b"\x00\x08", 2: b"\xff\x0f"})
    assert write[2] == 0xFE and write[4] == 0x83
    assert write[5:-1] == bytes([42, 2, 1, 0x00, 0x08, 2, 0xFF, 0x0F])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: feetech.read_packet(300, 56, 2), "servo id"),
        (lambda: feetech.read_packet(1, 56, 0), "read length"),
        (lambda: feetech.sync_read_packet(56, 2, [1, 1]), "unique"),
        (lambda: feetech.sync_write_packet(42, 2, {1: b"\x00"}), "servo 1 has 1 data bytes"),
        (lambda: feetech.encode_packet(1, 3, bytes(254)), "do not fit"),
    ],
)
def test_bad_packet_arguments_are_refused_clearly(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@settings(max_examples=60, deadline=None)
@given(
    servo_id=st.integers(0, 0xFE),
    code=st.integers(0, 0xFF),
    params=st.binary(max_size=40),
    garbage=st.binary(max_size=8).filter(lambda b: b"\xff" not in b),
    split=st.integers(0, 60),
)
def test_packet_round_trip_through_parser_with_garbage_and_partial_reads(servo_id, code, params, garbage, split):
    packet = feetech.encode_packet(servo_id, code, params)
    stream = garbage + packet + garbage + packet
    parser = PacketParser()
    parsed = []
    for chunk in (stream[:split], stream[split:]):  # two reads that may cut a packet anywhere
        parser.feed(chunk)
        while (p := parser.next_packet()) is not None:
            parsed.append(p)
    assert parsed == [Packet(servo_id, code, params)] * 2
    assert parser.pending == 0


def test_parser_waits_for_the_rest_of_a_packet_fed_byte_by_byte():
    packet = feetech.status_packet(4, 0, b"\x10\x08")
    parser = PacketParser()
    for byte in packet[:-1]:
        parser.feed(bytes([byte]))
        assert parser.next_packet() is None
    parser.feed(packet[-1:])
    assert parser.next_packet() == Packet(4, 0, b"\x10\x08")


def test_bad_checksum_raises_and_the_parser_resyncs_on_the_next_packet():
    good = feetech.status_packet(2, 0, b"\x01\x02")
    bad = bytearray(feetech.status_packet(1, 0, b"\x05\x06"))
    bad[5] ^= 0x01  # flip one data bit on the wire
    parser = PacketParser()
    parser.feed(bytes(bad) + good)
    with pytest.raises(ChecksumError, match="servo 1: checksum"):
        parser.next_packet()
    assert parser.next_packet() == Packet(2, 0, b"\x01\x02")


def test_noise_ff_before_header_and_impossible_length():
    parser = PacketParser()
    parser.feed(b"\xff" + feetech.ping_packet(7))  # FF FF FF 07 ...: the first FF is noise
    assert parser.next_packet() == Packet(7, feetech.Instruction.PING, b"")
    parser.feed(bytes([0xFF, 0xFF, 0x03, 0x01, 0x00]) + feetech.ping_packet(3))
    with pytest.raises(ProtocolError, match="declares length 1"):
        parser.next_packet()
    assert parser.next_packet() == Packet(3, feetech.Instruction.PING, b"")


def test_parser_drops_garbage_but_keeps_a_trailing_half_header():
    parser = PacketParser()
    parser.feed(b"\x01\x02\x03\xff")
    assert parser.next_packet() is None
    assert parser.pending == 1 and parser.discarded == 3
    parser.feed(feetech.ping_packet(5)[1:])  # the rest of a packet whose first byte came earlier
    assert parser.next_packet() == Packet(5, feetech.Instruction.PING, b"")


# ------------------------------------------------------------------------------------------------- values


@pytest.mark.parametrize("value, raw", [(0, 0), (1365, 1365), (-1365, 2048 + 1365), (2047, 2047), (-2047, 4095)])
def test_homing_offset_sign_magnitude_examples(value, raw):
    assert feetech.encode_sign_magnitude(value, 11) == raw
    assert feetech.decode_sign_magnitude(raw, 11) == value
    reg = feetech.register("Homing_Offset")
    assert feetech.register_value(reg, feetech.register_bytes(reg, value)) == value


@given(st.integers(-2047, 2047))
def test_sign_magnitude_round_trip(value):
    assert feetech.decode_sign_magnitude(feetech.encode_sign_magnitude(value, 11), 11) == value


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="bit 11"):
        feetech.encode_sign_magnitude(2048, 11)
    with pytest.raises(ValueError, match="Homing_Offset"):
        feetech.register_bytes(feetech.register("Homing_Offset"), -3000)
    with pytest.raises(ValueError, match="unsigned 2-byte"):
        feetech.encode_value(70000, 2)
    with pytest.raises(ValueError, match="unsigned 1-byte"):
        feetech.encode_value(-1, 1)
    with pytest.raises(TypeError, match="must be an int"):
        feetech.encode_value(True, 1)
    with pytest.raises(KeyError, match="unknown STS3215 register 'Goal_Positon'"):
        feetech.register("Goal_Positon")


def test_status_error_bits_in_words():
    assert feetech.describe_status_error(0) == "no error"
    assert feetech.describe_status_error(0x20 | 0x04) == "overheat, overload"
    assert "unknown error bits 0x40" in feetech.describe_status_error(0x40)


def test_control_table_addresses_of_the_sts3215():
    table = {name: (r.address, r.size) for name, r in feetech.CONTROL_TABLE.items()}
    assert table["ID"] == (5, 1) and table["Homing_Offset"] == (31, 2) and table["Torque_Enable"] == (40, 1)
    assert table["Goal_Position"] == (42, 2) and table["Lock"] == (55, 1) and table["Present_Position"] == (56, 2)
    assert table["Min_Position_Limit"] == (9, 2) and table["Max_Position_Limit"] == (11, 2)


# ----------------------------------------------------------------------------------- bus against emulator


@pytest.fixture
def emulator():
    with EmulatedBus(IDS, positions={i: 1000 + 100 * i for i in IDS}) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    with FeetechBus(emulator.port, timeout_s=0.1) as bus:
        yield bus


def test_ping_finds_exactly_the_servos_that_exist(emulator):
    with FeetechBus(emulator.port, timeout_s=0.03, retries=1) as bus:
        assert [i for i in range(1, 9) if bus.ping(i)] == IDS


def test_read_and_write_registers(bus, emulator):
    assert bus.read_register("Model_Number", 3) == feetech.STS3215_MODEL_NUMBER
    assert bus.read_register("Present_Position", 3) == 1300
    assert bus.read(3, 56, 2) == 1300
    bus.write_register("P_Coefficient", 2, 16)
    assert emulator.register_value(2, "P_Coefficient") == 16
    bus.write_register("Homing_Offset", 4, -400)  # sign-magnitude on the wire
    assert emulator.register_value(4, "Homing_Offset") == -400
    assert bus.read_register("Homing_Offset", 4) == -400
    assert bus.read_register("Present_Position", 4) == 1400 + 400  # present = actual - offset


def test_sync_read_and_sync_write_all_six(bus, emulator):
    assert bus.sync_read(56, 2, IDS) == {i: 1000 + 100 * i for i in IDS}
    bus.sync_write_register("Goal_Position", {i: 2000 + i for i in IDS})
    assert wait_until(lambda: all(emulator.goal(i) == 2000 + i for i in IDS))
    assert [w.goal for w in emulator.goal_writes] == [2000 + i for i in IDS]
    assert bus.sync_read_register("Goal_Position", IDS) == {i: 2000 + i for i in IDS}
    bus.sync_write_register("Torque_Enable", {i: 1 for i in IDS})
    assert wait_until(lambda: all(emulator.present(i) == 2000 + i for i in IDS))
    assert bus.sync_read_register("Present_Position", IDS) == {i: 2000 + i for i in IDS}


def test_bus_retries_over_corrupt_and_lost_replies(bus, emulator):
    emulator.corrupt_next_replies(1)
    assert bus.read_register("Present_Position", 1) == 1100
    emulator.drop_next_replies(2)
    assert bus.sync_read(56, 2, IDS)[6] == 1600


def test_silent_servo_raises_bus_error_naming_servo_and_register(emulator):
    emulator.mute(5)
    with FeetechBus(emulator.port, timeout_s=0.03, retries=2) as bus:
        with pytest.raises(BusError, match=r"servo 5 .*Present_Position \(address 56\) after 3 tries"):
            bus.sync_read(56, 2, IDS)
        with pytest.raises(BusError, match=r"servo 5 .*writing 1 to Torque_Enable"):
            bus.write_register("Torque_Enable", 5, 1)
        assert bus.read_register("Present_Position", 4) == 1400  # the others still answer


def test_corrupt_replies_beyond_the_retries_name_the_checksum(emulator):
    emulator.corrupt_next_replies(10)
    with FeetechBus(emulator.port, timeout_s=0.05, retries=1) as bus:
        with pytest.raises(BusError, match="checksum"):
            bus.read_register("Present_Position", 2)


def test_servo_error_bits_are_recorded_and_logged_not_raised(bus, emulator, caplog):
    emulator.set_status_error(6, 0x20)
    with caplog.at_level(logging.WARNING, logger="hilserl.robot.bus"):
        assert bus.read_register("Present_Position", 6) == 1600
    assert bus.servo_errors == {6: 0x20}
    assert "servo 6 reports: overload" in caplog.text
    emulator.set_status_error(6, 0)
    bus.read_register("Present_Position", 6)
    assert bus.servo_errors == {}


def test_unplugged_port_raises_port_lost_and_replug_reopens_the_same_path(bus, emulator):
    emulator.unplug()
    with pytest.raises(PortLostError, match="vanished"):
        bus.sync_read(56, 2, IDS)
    assert not bus.is_open
    with pytest.raises(PortLostError, match="cannot open serial port"):
        bus.open()
    emulator.replug()
    bus.open()
    assert bus.sync_read(56, 2, IDS) == {i: 1000 + 100 * i for i in IDS}


def test_opening_a_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(PortLostError, match="ttyACM9.*plugged in"):
        FeetechBus(str(tmp_path / "ttyACM9")).open()


# ------------------------------------------------------------------------------------------------ emulator


def test_emulated_servo_moves_toward_goal_at_bounded_speed_only_with_torque(bus, emulator):
    bus.sync_write_register("Goal_Position", {1: 3000})
    time.sleep(0.05)
    assert emulator.present(1) == 1100  # torque off: the goal does nothing
    bus.write_register("Torque_Enable", 1, 1)
    samples = []
    deadline = time.monotonic() + 3
    while emulator.present(1) != 3000 and time.monotonic() < deadline:
        samples.append(emulator.present(1))
    assert emulator.present(1) == 3000
    assert len(samples) > 3  # it took several ticks, not one jump
    assert wait_until(lambda: bus.read_register("Present_Velocity", 1) == 0)  # arrived and stopped


def test_emulated_servo_respects_its_angle_limits_and_hand_moves(bus, emulator):
    bus.write_register("Max_Position_Limit", 2, 1500)
    assert bus.read_register("Present_Position", 2) == 1200
    bus.write_register("Goal_Position", 2, 4000)
    assert emulator.goal_writes[-1].reported_present == 1200  # what the host saw when it chose the goal
    bus.write_register("Torque_Enable", 2, 1)
    assert wait_until(lambda: emulator.present(2) == 1500)
    assert emulator.goal_writes[-1].goal == 4000  # recorded as written, clamped by the servo
    bus.write_register("Torque_Enable", 2, 0)
    emulator.set_present(2, 900)  # a person moves the limp joint
    assert bus.read_register("Present_Position", 2) == 900


def test_emulator_stop_removes_the_port(tmp_path):
    emu = EmulatedBus([1], link_dir=tmp_path, link_name="ttyACM3").start()
    assert (tmp_path / "ttyACM3").is_symlink()
    emu.stop()
    assert not (tmp_path / "ttyACM3").exists() and not (tmp_path / "ttyACM3").is_symlink()
