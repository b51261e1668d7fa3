"""SO-101 calibration and the follower/leader arms against the emulated servo bus: conversions, the calibration
procedure, target clamping, and torque off on every way out (close, exceptions, Ctrl+C, SIGTERM, interpreter
exit, a vanished serial port)."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hilserl.robot import (
    DEFAULT_JOINT_LIMITS,
    JOINT_NAMES,
    ArmConnectionError,
    ArmDisconnectedError,
    ArmError,
    Calibration,
    CalibrationError,
    EmulatedBus,
    FeetechBus,
    MotorCalibration,
    SO101Follower,
    SO101Leader,
    calibrate,
)
from hilserl.sim.scene import CHAIN
from robot_fakes import CAL_JSON, IDS, calibrated_emulator, wait_until

@pytest.fixture
def cal() -> Calibration:
    return Calibration.from_dict(CAL_JSON)


@pytest.fixture
def emulator(cal):
    emu = calibrated_emulator(cal, q=[0.2, -0.3, 0.4, -0.1, 0.5, 0.3])
    yield emu
    emu.stop()


def follower(emu: EmulatedBus, cal: Calibration, **kwargs) -> SO101Follower:
    return SO101Follower(emu.port, cal, bus=FeetechBus(emu.port, timeout_s=0.1), **kwargs)


def torques(emu: EmulatedBus) -> list[bool]:
    return [emu.torque_enabled(i) for i in IDS]


def joint_rad(cal: Calibration, joint: int, raw: int) -> float:
    vector = np.array([m.range_min for m in cal.motors.values()], dtype=float)
    vector[joint] = raw
    return float(cal.raw_to_rad(vector)[joint])


# -------------------------------------------------------------------------------------------- calibration


def test_lerobot_calibration_json_round_trip_is_identical(tmp_path):
    original = tmp_path / "follower.json"
    original.write_text(json.dumps(CAL_JSON, indent=4))
    loaded = Calibration.load(original)
    copy = loaded.save(tmp_path / "copy.json")
    assert json.loads(copy.read_text()) == CAL_JSON
    assert copy.read_text().rstrip("\n") == original.read_text()
    assert Calibration.load(copy) == loaded
    assert loaded.motors["wrist_flex"] == MotorCalibration(4, 0, 1650, 870, 3240)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_raw_to_rad_to_raw_round_trip(data):
    drive_modes = data.draw(st.lists(st.integers(0, 1), min_size=6, max_size=6))
    cal_dict = {n: dict(CAL_JSON[n], drive_mode=d) for n, d in zip(JOINT_NAMES, drive_modes)}
    cal = Calibration.from_dict(cal_dict)
    raw = [data.draw(st.integers(m["range_min"], m["range_max"])) for m in cal_dict.values()]
    q = cal.raw_to_rad(raw)
    assert np.array_equal(cal.rad_to_raw(q), raw)


def test_arm_joints_are_zero_mid_range_and_turn_2pi_per_4096_steps():
    cal = Calibration.from_dict(CAL_JSON)
    mid = np.array([(m["range_min"] + m["range_max"]) / 2 for m in CAL_JSON.values()])
    q = cal.raw_to_rad(mid + 1024)
    assert np.allclose(q[:5], math.pi / 2)
    inverted = Calibration.from_dict({**CAL_JSON, "elbow_flex": dict(CAL_JSON["elbow_flex"], drive_mode=1)})
    assert inverted.raw_to_rad(mid + 1024)[2] == pytest.approx(-math.pi / 2)
    assert np.allclose(cal.raw_to_rad(mid)[:5], 0.0)


def test_gripper_range_maps_onto_the_simulated_jaw_range():
    sim_low, sim_high = CHAIN[-1][4][1:]
    cal = Calibration.from_dict(CAL_JSON)
    g = CAL_JSON["gripper"]
    raw = [2000, 2000, 2000, 2000, 2000, g["range_min"]]
    assert cal.raw_to_rad(raw)[5] == pytest.approx(sim_low)
    raw[5] = g["range_max"]
    assert cal.raw_to_rad(raw)[5] == pytest.approx(sim_high)
    inverted = Calibration.from_dict({**CAL_JSON, "gripper": dict(g, drive_mode=1)})
    assert inverted.raw_to_rad(raw)[5] == pytest.approx(sim_low)
    assert np.allclose(cal.range_rad()[5], [sim_low, sim_high])


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: _without(d, "elbow_flex"), "motor 'elbow_flex' missing"),
        (lambda d: {**d, "elbow": d["elbow_flex"]}, "unknown motor 'elbow'"),
        (lambda d: {**d, "wrist_roll": _without(d["wrist_roll"], "range_max")}, "motor 'wrist_roll': field 'range_max' missing"),
        (lambda d: {**d, "gripper": dict(d["gripper"], range_min=3600)}, "motor 'gripper': field 'range_min' .* must be below"),
        (lambda d: {**d, "shoulder_pan": dict(d["shoulder_pan"], range_max=5000)}, "motor 'shoulder_pan': field 'range_max' must be a raw position in 0..4095, got 5000"),
        (lambda d: {**d, "shoulder_lift": dict(d["shoulder_lift"], homing_offset=12.5)}, "motor 'shoulder_lift': field 'homing_offset' must be an integer, got 12.5 \\(float\\)"),
        (lambda d: {**d, "shoulder_lift": dict(d["shoulder_lift"], id="2")}, "motor 'shoulder_lift': field 'id' must be an integer, got '2' \\(str\\)"),
        (lambda d: {**d, "wrist_flex": dict(d["wrist_flex"], drive_mode=True)}, "motor 'wrist_flex': field 'drive_mode' must be an integer"),
        (lambda d: {**d, "wrist_flex": dict(d["wrist_flex"], drive_mode=2)}, "motor 'wrist_flex': field 'drive_mode' must be 0 .* or 1"),
        (lambda d: {**d, "wrist_flex": dict(d["wrist_flex"], homing_offset=-2500)}, "motor 'wrist_flex': field 'homing_offset' must be in -2047..2047"),
        (lambda d: {**d, "gripper": dict(d["gripper"], id=1)}, "motor 'gripper': field 'id' 1 is also the id of 'shoulder_pan'"),
        (lambda d: {**d, "gripper": dict(d["gripper"], calibrated=True)}, "motor 'gripper': unknown field 'calibrated'"),
        (lambda d: {**d, "gripper": [6, 0, 0, 1, 2]}, "motor 'gripper': expected an object"),
        (lambda d: [d], "expected a JSON object keyed by motor name"),
    ],
)
def test_bad_calibration_files_name_the_motor_and_field(tmp_path, mutate, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(mutate(json.loads(json.dumps(CAL_JSON)))))
    with pytest.raises(CalibrationError, match=f"calibration file {path}: {message}"):
        Calibration.load(path)


def test_calibration_file_that_is_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"shoulder_pan": {"id": 1,')
    with pytest.raises(CalibrationError, match="broken.json is not valid JSON"):
        Calibration.load(path)


class ScriptedPerson:
    """Plays the person during calibrate(): poses the limp arm, then sweeps every joint through a range."""

    def __init__(self, emu: EmulatedBus, middle: dict[int, int], sweep: dict[int, tuple[int, int]]):
        self.emu, self.middle, self.sweep = emu, middle, sweep
        self.prompts: list[str] = []
        self.poses = [{i: lo for i, (lo, _) in sweep.items()}, {i: hi for i, (_, hi) in sweep.items()},
                      {i: (lo + hi) // 2 for i, (lo, hi) in sweep.items()}]

    def wait_for_user(self, prompt: str) -> None:
        self.prompts.append(prompt)
        assert not any(torques(self.emu)), "the arm must be limp before a person moves it"
        for servo_id, shaft in self.middle.items():  # the old homing offsets are still in the servos here
            self.emu.set_present(servo_id, shaft - self.emu.register_value(servo_id, "Homing_Offset"))

    def recording_done(self, positions, mins, maxes) -> bool:
        if not self.poses:
            return True
        for servo_id, raw in self.poses.pop(0).items():
            self.emu.set_present(servo_id, raw)
        return False


def test_calibrate_procedure_against_the_emulator_writes_a_file_that_reads_back(tmp_path):
    with EmulatedBus(IDS) as emu:
        for i in IDS:  # an old calibration and torque on: calibrate must clear both
            emu.set_register(i, "Homing_Offset", 300)
            emu.set_register(i, "Torque_Enable", 1)
        middle = {1: 2600, 2: 1500, 3: 2047, 4: 3000, 5: 1000, 6: 2900}
        sweep = {1: (700, 3400), 2: (900, 3200), 3: (850, 3100), 4: (800, 3300), 5: (100, 4000), 6: (1950, 3450)}
        person = ScriptedPerson(emu, middle, sweep)
        shown = []
        path = tmp_path / "calibration" / "follower.json"
        with FeetechBus(emu.port, timeout_s=0.1) as bus:
            result = calibrate(bus, path=path, wait_for_user=person.wait_for_user,
                               recording_done=person.recording_done, show=shown.append, poll_s=0.001)
        assert "middle of its range" in person.prompts[0] and not person.poses
        loaded = Calibration.load(path)
        assert loaded == result
        for name, servo_id in zip(JOINT_NAMES, IDS):
            m = loaded.motors[name]
            assert m.homing_offset == middle[servo_id] - 2047
            assert (m.range_min, m.range_max) == sweep[servo_id]
            assert emu.register_value(servo_id, "Homing_Offset") == m.homing_offset
            assert emu.register_value(servo_id, "Min_Position_Limit") == m.range_min
            assert emu.register_value(servo_id, "Max_Position_Limit") == m.range_max
        assert not any(torques(emu))
        assert any(str(path) in line for line in shown)


def test_calibrate_refuses_a_joint_that_never_moved(tmp_path):
    with EmulatedBus(IDS) as emu, FeetechBus(emu.port, timeout_s=0.1) as bus:
        sweep = {i: (1000, 3000) for i in IDS if i != 5}
        person = ScriptedPerson(emu, {i: 2047 for i in IDS}, sweep)
        with pytest.raises(CalibrationError, match="wrist_roll did not move"):
            calibrate(bus, path=tmp_path / "x.json", wait_for_user=person.wait_for_user,
                      recording_done=person.recording_done, show=lambda _: None, poll_s=0.001)
        assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------------------------------- arms


def test_default_joint_limits_are_the_sim_limits_minus_a_margin():
    sim = np.array([[low, high] for *_, (_, low, high) in CHAIN])
    assert tuple(link[4][0] for link in CHAIN) == JOINT_NAMES
    assert np.all(DEFAULT_JOINT_LIMITS[:, 0] > sim[:, 0]) and np.all(DEFAULT_JOINT_LIMITS[:, 1] < sim[:, 1])
    assert np.all(sim[:, 1] - DEFAULT_JOINT_LIMITS[:, 1] < 0.1)


def test_follower_connect_holds_the_pose_with_torque_on_and_reads_radians(emulator, cal):
    with follower(emulator, cal) as arm:
        assert all(torques(emulator)) and arm.torque_is_on
        # the goal was set where each joint was before torque on: nothing jumped
        assert emulator.goal_writes and all(w.goal == w.reported_present for w in emulator.goal_writes)
        q = arm.read_joint_positions()
        assert q.shape == (6,) and q.dtype == np.float64
        assert np.allclose(q, [0.2, -0.3, 0.4, -0.1, 0.5, 0.3], atol=2 * 2 * math.pi / 4096)
        assert emulator.register_value(1, "P_Coefficient") == 16
    assert not any(torques(emulator))


def test_connect_writes_the_calibration_into_fresh_servos(cal):
    with EmulatedBus(IDS) as emu, follower(emu, cal):
        for m in cal.motors.values():
            assert emu.register_value(m.id, "Homing_Offset") == m.homing_offset
            assert emu.register_value(m.id, "Max_Position_Limit") == m.range_max
            assert emu.register_value(m.id, "Return_Delay_Time") == 0


def test_connect_names_the_servos_that_do_not_answer(emulator, cal):
    emulator.mute(3)
    emulator.mute(5)
    arm = SO101Follower(emulator.port, cal, bus=FeetechBus(emulator.port, timeout_s=0.03, retries=1))
    with pytest.raises(ArmConnectionError, match=r"no answer from servo id 3 \(elbow_flex\), id 5 \(wrist_roll\)"):
        arm.connect()
    assert not arm.is_connected and not arm.bus.is_open
    assert not any(torques(emulator))


def test_connect_to_a_missing_port_is_a_clear_error(cal, tmp_path):
    with pytest.raises(ArmConnectionError, match="cannot open serial port .*ttyACM7"):
        SO101Follower(str(tmp_path / "ttyACM7"), cal).connect()


def test_using_an_arm_that_is_not_connected_is_an_error(cal, tmp_path):
    arm = SO101Follower(str(tmp_path / "ttyACM0"), cal)
    with pytest.raises(ArmError, match="not connected"):
        arm.read_joint_positions()
    arm.close()  # harmless


def test_targets_are_clamped_to_the_step_and_to_the_limits(emulator, cal):
    with follower(emulator, cal, max_step_rad=0.05) as arm:
        start = arm.read_joint_positions()
        emulator.clear_goal_writes()
        sent = arm.send_joint_targets(start + 1.0)
        assert np.all(sent - start <= 0.05 + 1e-9) and np.all(sent - start > 0.05 - 2 * 2 * math.pi / 4096)
        assert wait_until(lambda: len(emulator.goal_writes) == 6)  # a sync write is not acknowledged
        goals = {w.servo_id: w.goal for w in emulator.goal_writes}
        assert np.allclose(sent, cal.raw_to_rad([goals[i] for i in IDS]))  # returns what the servos got
        high = arm.joint_limits[:, 1]
        one_step = 2 * math.pi / 4096  # goals are whole servo steps, rounded toward where the joint is
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not np.allclose(sent, high, atol=one_step):
            sent = arm.send_joint_targets(np.full(6, 6.0))  # far beyond every limit
        assert np.all(sent <= high + 1e-9) and np.allclose(sent, high, atol=one_step)


@pytest.mark.parametrize(
    "target, message",
    [
        ([0, 0, float("nan"), 0, 0, 0], "finite, got elbow_flex=nan"),
        ([0, 0, 0, 0, float("inf"), 0], "finite, got wrist_roll=inf"),
        ([0, 90.0, 0, 0, 0, 0], r"beyond ±2π rad \(shoulder_lift=90\).*degrees"),
        ([0, 0, 0, 0, 0, -1e30], "gripper=-1e\\+30"),
        ([0, 0, 0], r"expected 6 joint targets .*shape \(3,\)"),
        ("home", "6 numbers"),
    ],
)
def test_absurd_targets_are_refused_and_nothing_is_sent(emulator, cal, target, message):
    with follower(emulator, cal) as arm:
        emulator.clear_goal_writes()
        with pytest.raises(ValueError, match=message):
            arm.send_joint_targets(target)
        assert emulator.goal_writes == []
        assert all(torques(emulator))  # a refused target does not stop the arm


angle = st.floats(-2 * math.pi, 2 * math.pi, allow_nan=False)
absurd = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e6, -1e300, 7.0])
target_vectors = st.lists(st.one_of(angle, angle, angle, absurd), min_size=6, max_size=6)


def test_every_goal_received_is_within_limits_and_one_step_of_the_reported_position():
    cal = Calibration.from_dict(CAL_JSON)
    emu = calibrated_emulator(cal, max_step_per_tick=40)
    # 0.25 rad is 162.97 steps: plain rounding would overshoot the step; the narrow limits are reached often
    arm = SO101Follower(emu.port, cal, bus=FeetechBus(emu.port, timeout_s=0.2), max_step_rad=0.25,
                        joint_limits=DEFAULT_JOINT_LIMITS * 0.3)

    @settings(max_examples=40, deadline=None)
    @given(sequence=st.lists(target_vectors, min_size=1, max_size=6))
    def check(sequence):
        for target in sequence:
            emu.clear_goal_writes()
            if any(not math.isfinite(v) or abs(v) > 2 * math.pi for v in target):
                with pytest.raises(ValueError):
                    arm.send_joint_targets(target)
                assert emu.goal_writes == []
                continue
            sent = arm.send_joint_targets(target)
            assert wait_until(lambda: len(emu.goal_writes) >= 6)  # a sync write is not acknowledged
            writes = emu.goal_writes
            assert sorted(w.servo_id for w in writes) == IDS
            for w in writes:
                j = IDS.index(w.servo_id)
                goal, seen = joint_rad(cal, j, w.goal), joint_rad(cal, j, w.reported_present)
                low, high = arm.joint_limits[j]
                assert low - 1e-6 <= goal <= high + 1e-6, (JOINT_NAMES[j], goal, low, high)
                assert abs(goal - seen) <= arm.max_step_rad + 1e-6, (JOINT_NAMES[j], goal, seen)
                assert goal == pytest.approx(sent[j])

    try:
        with arm:
            check()
            assert np.all(arm.joint_limits[:, 1] <= 0.3 * DEFAULT_JOINT_LIMITS[:, 1] + 1e-12)
    finally:
        emu.stop()


# ------------------------------------------------------------------------------------------ exit paths


def test_torque_off_after_close_and_close_is_idempotent(emulator, cal):
    arm = follower(emulator, cal)
    arm.connect()
    assert all(torques(emulator))
    arm.close()
    assert not any(torques(emulator)) and not arm.bus.is_open
    arm.close()
    assert not arm.is_connected


def test_torque_off_after_an_exception_inside_with(emulator, cal):
    with pytest.raises(ZeroDivisionError):
        with follower(emulator, cal) as arm:
            arm.send_joint_targets(np.zeros(6))
            1 / 0
    assert not any(torques(emulator))


def test_torque_off_after_keyboard_interrupt_inside_with(emulator, cal):
    with pytest.raises(KeyboardInterrupt):
        with follower(emulator, cal):
            raise KeyboardInterrupt
    assert not any(torques(emulator))


def test_sigterm_handler_is_installed_while_connected_and_then_restored(emulator, cal):
    before = signal.getsignal(signal.SIGTERM)
    with follower(emulator, cal):
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before


_CHILD = """
import sys, time
import numpy as np
from hilserl.robot import Calibration, FeetechBus, SO101Follower
port, cal_path, mode = sys.argv[1:4]
arm = SO101Follower(port, Calibration.load(cal_path), bus=FeetechBus(port, timeout_s=0.2))
if mode == "with":
    with arm:
        print("READY", flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            arm.send_joint_targets(np.zeros(6))
            time.sleep(0.01)
else:  # connect and leave without close(): only the atexit hook can switch torque off
    arm.connect()
    print("READY", flush=True)
    sys.stdin.readline()
"""


def _start_child(emu: EmulatedBus, tmp_path: Path, mode: str) -> subprocess.Popen:
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(json.dumps(CAL_JSON))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, emu.port, str(cal_path), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    ready = select.select([child.stdout], [], [], 20)[0]
    if not ready or child.stdout.readline().strip() != "READY":
        child.kill()
        pytest.fail(f"child did not start: {child.communicate(timeout=5)[1]}")
    return child


def test_torque_off_after_sigterm_in_another_process(emulator, tmp_path):
    child = _start_child(emulator, tmp_path, "with")
    try:
        assert wait_until(lambda: all(torques(emulator)))
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=15)
    finally:
        child.kill()
    assert not any(torques(emulator))
    assert "SIGTERM" in err and child.returncode != 0


def test_torque_off_at_interpreter_exit_without_close(emulator, tmp_path):
    child = _start_child(emulator, tmp_path, "atexit")
    try:
        assert wait_until(lambda: all(torques(emulator)))
        child.communicate(input="\n", timeout=15)  # the child returns from main without closing the arm
    finally:
        child.kill()
    assert child.returncode == 0
    assert not any(torques(emulator))


def test_port_vanishes_mid_run_and_comes_back_torque_goes_off(emulator, cal):
    with pytest.raises(ArmDisconnectedError, match="vanished mid-run.*came back.*torque off"):
        with follower(emulator, cal, reconnect_timeout_s=5.0) as arm:
            arm.send_joint_targets(np.zeros(6))
            emulator.unplug()
            assert all(torques(emulator))  # unplugged servos keep holding
            replug = threading.Timer(0.2, emulator.replug)
            replug.start()
            try:
                while True:  # the control loop carries on until the lost port is noticed
                    arm.send_joint_targets(np.zeros(6))
            finally:
                replug.join()
    assert not any(torques(emulator))
    assert not arm.is_connected


def test_port_that_never_comes_back_gives_a_bounded_clear_warning(emulator, cal):
    handler_before = signal.getsignal(signal.SIGTERM)
    arm = follower(emulator, cal, reconnect_timeout_s=0.3)
    arm.connect()
    emulator.unplug()
    started = time.monotonic()
    with pytest.raises(ArmDisconnectedError, match="did not come back within 0.3 s.*STILL HOLD TORQUE"):
        arm.read_joint_positions()
    assert time.monotonic() - started < 3
    assert not arm.is_connected and not arm.bus.is_open
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the lost arm left the safety net
    with pytest.raises(ArmError, match="not connected"):
        arm.send_joint_targets(np.zeros(6))
    arm.close()  # idempotent after the loss
    emulator.replug()
    assert all(torques(emulator))  # honest: nothing could reach them


def test_leader_is_limp_follows_only_with_torque_and_is_compliant(cal):
    emu = calibrated_emulator(cal)
    try:
        leader = SO101Leader(emu.port, cal, bus=FeetechBus(emu.port, timeout_s=0.1))
        with leader:
            assert not any(torques(emu))
            assert emu.register_value(2, "P_Coefficient") < 16  # softer than the follower
            moved = cal.rad_to_raw([0.3, 0.0, 0.0, 0.0, 0.0, 0.0])[0]
            emu.set_present(1, int(moved))  # the person moves the shoulder by hand
            assert leader.read_joint_positions()[0] == pytest.approx(0.3, abs=2 * math.pi / 4096)
            with pytest.raises(ArmError, match="torque is off"):
                leader.send_joint_targets(np.zeros(6))
            leader.torque(True)
            assert all(torques(emu))
            target = np.array([0.0, 0.1, 0.0, 0.0, 0.0, 0.0])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not np.allclose(leader.read_joint_positions(), target, atol=0.01):
                leader.send_joint_targets(target)
            assert np.allclose(leader.read_joint_positions(), target, atol=0.01)
        assert not any(torques(emu))
    finally:
        emu.stop()
