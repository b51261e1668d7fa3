"""Human input: keyboard through a pseudo-terminal, gamepad through a fake joystick device file, and the leader
arm (in-memory fakes of the SO-101 arm API) producing actions in the policy's action space."""

import os
import pty
import select
import struct
import termios

import numpy as np
import pytest

from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl.envs.so101 import SO101Kinematics
from hilserl.robot.intervention import TrackingErrorDetector
from hilserl.robot.teleop import (JS_EVENT_AXIS, JS_EVENT_BUTTON, JS_EVENT_INIT, Event, GamepadEvents,
                                  GamepadNotFoundError, KeyboardEvents, LeaderArmIntervention, TeleopIntervention)
from hilserl.sim.scene import JAW_OPEN_ANGLE

WORKSPACE = ((0.16, -0.10, 0.01), (0.30, 0.10, 0.08))


# ============================================================================================== keyboard
@pytest.fixture
def terminal():
    master, slave = pty.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def poll_until(source, n_events=0, timeout=2.0):
    """Poll until `n_events` events arrived; waits only in select (bounded), never sleeps."""
    select.select([source.fd], [], [], timeout)  # the bytes written to the pty arrive asynchronously
    events = source.poll()
    for _ in range(50):
        if len(events) >= n_events:
            break
        select.select([source.fd], [], [], timeout / 50)
        events += source.poll()
    return events


def test_keyboard_events_arrive_without_enter_and_terminal_is_restored(terminal):
    master, slave = terminal
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON  # a fresh pty is in line mode: keys would wait for Enter
    kb = KeyboardEvents(slave)
    assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: every key arrives at once
    os.write(master, b" sfrq")  # no newline
    events = poll_until(kb, 5)
    assert events == [Event.INTERVENE_TOGGLE, Event.SUCCESS, Event.FAILURE, Event.RERECORD, Event.QUIT]
    kb.close()
    assert termios.tcgetattr(slave) == before
    kb.close()  # twice is fine


def test_keyboard_motion_keys_give_an_ee_delta(terminal):
    master, slave = terminal
    kb = KeyboardEvents(slave, speed=0.5)
    try:
        os.write(master, b"iuc")
        assert poll_until(kb, 0) == []
        np.testing.assert_allclose(kb.action(), [0.5, 0.0, 0.5, GRIPPER_CLOSE])
        os.write(master, b"\x1b[D")  # left arrow: +y
        poll_until(kb, 0)
        np.testing.assert_allclose(kb.action(), [0.0, 0.5, 0.0, GRIPPER_STAY])
        assert kb.poll() == []  # nothing typed: the arm stands still
        np.testing.assert_allclose(kb.action(), [0.0, 0.0, 0.0, GRIPPER_STAY])
    finally:
        kb.close()


def test_escape_sequence_split_across_reads(terminal):
    master, slave = terminal
    kb = KeyboardEvents(slave, speed=1.0)
    try:
        os.write(master, b"\x1b[")
        poll_until(kb, 0)
        np.testing.assert_allclose(kb.action()[:3], 0.0)
        os.write(master, b"Bo")  # completes "down arrow" (-x); o opens
        poll_until(kb, 0)
        np.testing.assert_allclose(kb.action(), [-1.0, 0.0, 0.0, GRIPPER_OPEN])
    finally:
        kb.close()


def test_keyboard_from_a_pipe_and_end_of_input():
    r, w = os.pipe()
    try:
        kb = KeyboardEvents(r)  # not a terminal: no mode change
        os.write(w, b"s")
        assert poll_until(kb, 1) == [Event.SUCCESS]
        os.close(w)
        assert kb.poll() == [] and kb.eof
        assert kb.poll() == []
    finally:
        os.close(r)


# ============================================================================================== gamepad
def js(value, kind, number, time_ms=0):
    return struct.pack("<IhBB", time_ms, value, kind, number)


@pytest.fixture
def js_file(tmp_path):
    path = tmp_path / "js0"
    path.write_bytes(b"")
    return path


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def test_gamepad_buttons_become_events_but_initial_state_does_not(js_file):
    # on open the driver reports every button's state with JS_EVENT_INIT; those are not presses
    append(js_file, js(1, JS_EVENT_BUTTON | JS_EVENT_INIT, 0) + js(0, JS_EVENT_AXIS | JS_EVENT_INIT, 1))
    pad = GamepadEvents(str(js_file))
    try:
        assert pad.poll() == []
        append(js_file, js(1, JS_EVENT_BUTTON, 3) + js(0, JS_EVENT_BUTTON, 3) + js(1, JS_EVENT_BUTTON, 0)
               + js(1, JS_EVENT_BUTTON, 1) + js(1, JS_EVENT_BUTTON, 2) + js(1, JS_EVENT_BUTTON, 7)
               + js(1, JS_EVENT_BUTTON, 9))  # 9: not mapped
        assert pad.poll() == [Event.INTERVENE_TOGGLE, Event.SUCCESS, Event.FAILURE, Event.RERECORD, Event.QUIT]
        assert pad.poll() == []
    finally:
        pad.close()


def test_gamepad_sticks_give_an_ee_delta_with_deadzone(js_file):
    pad = GamepadEvents(str(js_file))
    try:
        # left stick fully forward (negative on Linux), half right; right stick a little up (inside the deadzone)
        append(js_file, js(-32767, JS_EVENT_AXIS, 1) + js(16384, JS_EVENT_AXIS, 0) + js(-3000, JS_EVENT_AXIS, 4))
        pad.poll()
        a = pad.action()
        dz = pad.mapping.deadzone
        np.testing.assert_allclose(a, [1.0, -(16384 / 32767 - dz) / (1 - dz), 0.0, GRIPPER_STAY], atol=1e-6)
        append(js_file, js(-32767, JS_EVENT_AXIS, 4) + js(0, JS_EVENT_AXIS, 1) + js(0, JS_EVENT_AXIS, 0))
        pad.poll()
        np.testing.assert_allclose(pad.action(), [0.0, 0.0, 1.0, GRIPPER_STAY], atol=1e-6)
    finally:
        pad.close()


def test_gamepad_gripper_buttons_and_a_quick_tap(js_file):
    pad = GamepadEvents(str(js_file))
    try:
        append(js_file, js(1, JS_EVENT_BUTTON, 4))  # LB held: close
        pad.poll()
        assert pad.action()[3] == GRIPPER_CLOSE
        append(js_file, js(0, JS_EVENT_BUTTON, 4) + js(1, JS_EVENT_BUTTON, 5) + js(0, JS_EVENT_BUTTON, 5))
        pad.poll()  # RB pressed and released between two polls still counts for this step
        assert pad.action()[3] == GRIPPER_OPEN
        pad.poll()
        assert pad.action()[3] == GRIPPER_STAY
    finally:
        pad.close()


def test_gamepad_event_split_across_reads(js_file):
    pad = GamepadEvents(str(js_file))
    try:
        record = js(1, JS_EVENT_BUTTON, 0)
        append(js_file, record[:5])
        assert pad.poll() == []
        append(js_file, record[5:])
        assert pad.poll() == [Event.SUCCESS]
    finally:
        pad.close()


def test_missing_gamepad_names_the_device(tmp_path):
    with pytest.raises(GamepadNotFoundError, match="js7"):
        GamepadEvents(str(tmp_path / "js7"))


# ============================================================================================== teleop source
def test_keyboard_intervention_toggles_and_drives(terminal):
    master, slave = terminal
    kb = KeyboardEvents(slave, speed=1.0)
    source = TeleopIntervention(kb, gripper_mode="discrete")
    try:
        os.write(master, b"i")
        poll_until(kb, 0)
        assert not source.step().is_intervention  # motion keys alone do not take over
        os.write(master, b" j")
        select.select([slave], [], [], 1.0)
        out = source.step()
        assert out.is_intervention and out.events == [Event.INTERVENE_TOGGLE]
        np.testing.assert_allclose(out.action, [0.0, 1.0, 0.0, GRIPPER_STAY])
        os.write(master, b" ")
        select.select([slave], [], [], 1.0)
        assert not source.step().is_intervention
    finally:
        source.close()
    assert termios.tcgetattr(slave)[3] & termios.ICANON


def test_continuous_gripper_from_discrete_keys():
    class Device:
        def __init__(self):
            self.cmd, self.events = GRIPPER_STAY, [Event.INTERVENE_ON]

        def poll(self):
            events, self.events = self.events, []
            return events

        def action(self):
            return np.array([0, 0, 0, self.cmd], np.float32)

        def close(self):
            pass

    dev = Device()
    source = TeleopIntervention(dev, gripper_mode="continuous")
    assert source.step(gripper_closed=True).action[3] == -1.0  # stay keeps the current state
    assert source.step(gripper_closed=False).action[3] == 1.0
    dev.cmd = GRIPPER_CLOSE
    assert source.step(gripper_closed=False).action[3] == -1.0


# ============================================================================================== leader arm
class FakeArm:
    """The SO-101 arm API in memory: an ideal position servo (reaches the sent target by the next read) while
    torque is on; a person can move it to a pose and hold it there (`hold`), which overrides the servo."""

    def __init__(self, q, max_step=0.2):
        self.q = np.array(q, dtype=float)
        self.max_step = max_step
        self.torque_on = True
        self.torque_calls = []
        self.sent = []
        self.held = False

    def hold(self, q):
        self.q = np.array(q, dtype=float)
        self.held = True

    def let_go(self):
        self.held = False

    def connect(self):
        pass

    def read_joint_positions(self):
        return self.q.copy()

    def send_joint_targets(self, q):
        sent = self.q + np.clip(np.asarray(q, float) - self.q, -self.max_step, self.max_step)
        self.sent.append(sent.copy())
        if self.torque_on and not self.held:
            self.q = sent.copy()
        return sent

    def torque(self, on):
        self.torque_on = bool(on)
        self.torque_calls.append(bool(on))

    def close(self):
        pass


@pytest.fixture(scope="module")
def kin():
    return SO101Kinematics()


def home(kin, ee=(0.24, 0.0, 0.05)):
    q = kin.solve(np.array(ee), np.zeros(6))
    q[5] = JAW_OPEN_ANGLE
    return q


def make_leader_setup(kin, detector=None, gripper_mode="discrete"):
    q0 = home(kin)
    follower, leader = FakeArm(q0), FakeArm(q0)
    human = LeaderArmIntervention(follower, leader, kin, detector or TrackingErrorDetector(), 0.02, *WORKSPACE,
                                  gripper_mode=gripper_mode)
    human.reset()
    return follower, leader, human


def grab_to(kin, follower, leader, offset):
    """The person holds the leader where the tool point is `offset` metres from the follower's."""
    ee = kin.ee_position(follower.q) + np.asarray(offset)
    q = kin.solve(ee, follower.q)
    q[5] = leader.read_joint_positions()[5]
    leader.hold(q)
    return q


def test_leader_follows_a_moving_follower_without_intervening(kin):
    follower, leader, human = make_leader_setup(kin)
    for k in range(40):  # the follower sweeps the workspace at 0.1 rad/tick on the pan joint
        follower.q[0] = 0.4 * np.sin(k / 4)
        out = human.step(follower.q)
        assert not out.is_intervention and out.action is None
        np.testing.assert_allclose(leader.sent[-1], follower.q)
    assert leader.torque_calls == [True]
    np.testing.assert_allclose(leader.q, follower.q)


def test_grab_turns_leader_torque_off_and_gives_ee_delta_action(kin):
    follower, leader, human = make_leader_setup(kin)
    for _ in range(5):
        human.step(follower.q)
    grab_to(kin, follower, leader, (0.05, 0.0, 0.0))  # a real grab: 5 cm within one tick
    out = human.step(follower.q)
    assert out.is_intervention and out.events == [Event.INTERVENE_ON]
    assert leader.torque_calls == [True, False]
    np.testing.assert_allclose(out.action, [1.0, 0.0, 0.0, GRIPPER_STAY], atol=0.02)  # clipped to [-1, 1]
    n_sent = len(leader.sent)
    grab_to(kin, follower, leader, (0.01, -0.005, 0.004))  # then a small known displacement
    out = human.step(follower.q)
    assert out.is_intervention
    np.testing.assert_allclose(out.action[:3], [0.5, -0.25, 0.2], atol=0.02)  # metres / action_scale
    assert len(leader.sent) == n_sent  # nothing is sent to a leader the person is holding


def test_action_is_relative_to_the_env_reference_and_clamped_to_the_workspace(kin):
    follower, leader, human = make_leader_setup(kin)
    q_l = kin.solve(np.array([0.25, 0.0, -0.02]), follower.q)  # below the table: outside the workspace
    ref = np.array([0.25, 0.0, 0.02])
    a = human.action(q_l, follower.q, ee_reference=ref)
    # the leader's tool point is clamped to z = 0.01 before the delta: (0.01 - 0.02) / 0.02 = -0.5
    np.testing.assert_allclose(a[:3], [0.0, 0.0, -0.5], atol=0.02)


@pytest.mark.parametrize("leader_opening, follower_closed, expected", [
    (0.1, False, GRIPPER_CLOSE), (0.5, False, GRIPPER_STAY), (0.9, False, GRIPPER_STAY),
    (0.9, True, GRIPPER_OPEN), (0.5, True, GRIPPER_STAY), (0.1, True, GRIPPER_STAY),
])
def test_leader_gripper_maps_to_close_stay_open(kin, leader_opening, follower_closed, expected):
    follower, leader, human = make_leader_setup(kin)
    q_l = follower.q.copy()
    q_l[5] = leader_opening * JAW_OPEN_ANGLE
    assert human.action(q_l, follower.q, gripper_closed=follower_closed)[3] == expected


def test_leader_gripper_continuous(kin):
    follower, leader, human = make_leader_setup(kin, gripper_mode="continuous")
    q_l = follower.q.copy()
    q_l[5] = 0.25 * JAW_OPEN_ANGLE
    assert human.action(q_l, follower.q)[3] == pytest.approx(-0.5)


def test_release_gives_control_back_and_leader_follows_again(kin):
    follower, leader, human = make_leader_setup(kin)
    human.step(follower.q)
    grab_to(kin, follower, leader, (0.0, 0.05, 0.0))
    assert human.step(follower.q).is_intervention
    # the follower catches up with the still leader (the env executes the action); the person then lets go
    follower.q = leader.q.copy()
    steps = 0
    while human.step(follower.q).is_intervention:
        steps += 1
        assert steps <= human.detector.window + 1
    assert leader.torque_calls == [True, False, True]
    leader.let_go()
    np.testing.assert_allclose(leader.sent[-1], follower.q)  # following again
    for _ in range(20):
        assert not human.step(follower.q).is_intervention


def test_episode_reset_makes_leader_stiff_and_clears_the_detector(kin):
    follower, leader, human = make_leader_setup(kin)
    human.step(follower.q)
    grab_to(kin, follower, leader, (0.05, 0.0, 0.0))
    assert human.step(follower.q).is_intervention
    human.reset()
    assert not human.intervening and leader.torque_calls[-1] is True


def test_keyboard_without_a_file_descriptor_is_a_clear_error():
    import io

    with pytest.raises(ValueError, match="no file descriptor.*keyboard_events=false"):
        KeyboardEvents(io.StringIO())
