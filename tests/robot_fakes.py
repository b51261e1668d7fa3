"""Shared test doubles for the real-arm tests: a LeRobot-style calibration, an emulated bus that already holds it,
an ideal in-memory follower, a fake clock, and a bounded wait."""

import time

import numpy as np

from hilserl.robot import Calibration, EmulatedBus

IDS = [1, 2, 3, 4, 5, 6]
# A plausible LeRobot SO-101 calibration file (numbers made up for these tests).
CAL_JSON = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1210, "range_min": 760, "range_max": 3390},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 1905, "range_min": 850, "range_max": 3270},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": -1002, "range_min": 880, "range_max": 3090},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 1650, "range_min": 870, "range_max": 3240},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -402, "range_min": 140, "range_max": 3960},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1402, "range_min": 2010, "range_max": 3500},
}


def wait_until(condition, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def calibrated_emulator(cal: Calibration, q=None, **kwargs) -> EmulatedBus:
    """Servos that already hold `cal` (as after a past calibration), resting at joint angles `q`."""
    emu = EmulatedBus(IDS, **kwargs).start()
    for m in cal.motors.values():
        emu.set_register(m.id, "Homing_Offset", m.homing_offset)
        emu.set_register(m.id, "Min_Position_Limit", m.range_min)
        emu.set_register(m.id, "Max_Position_Limit", m.range_max)
    raw = cal.rad_to_raw(np.zeros(6) if q is None else np.asarray(q, dtype=float))
    for servo_id, r in zip(cal.ids, raw):
        emu.set_present(servo_id, int(r))
        emu.set_register(servo_id, "Goal_Position", int(r))
    return emu


class FakeClock:
    """time.monotonic and time.sleep for the real env's 10 Hz pacing, without waiting."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        assert s >= 0
        self.sleeps.append(s)
        self.now += s


class IdealFollower:
    """SO101Follower's API in memory: at the sent joint targets by the next read."""

    def __init__(self, q0=(0.0, -0.5, 0.6, 0.9, 0.0, 1.0)):
        self.q = np.array(q0, dtype=float)

    def connect(self):
        pass

    def read_joint_positions(self):
        return self.q.copy()

    def send_joint_targets(self, q):
        self.q = np.asarray(q, float).copy()
        return self.q

    def torque(self, on):
        pass

    def close(self):
        pass
