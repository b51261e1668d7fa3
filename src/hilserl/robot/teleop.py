"""The person in the loop: events (success, failure, re-record, quit, take over) and intervention actions.

Three sources, one vocabulary:

* `KeyboardEvents` reads keys from the terminal (stdin in cbreak mode: each key arrives at once, without Enter),
  non-blocking through `select`. It restores the terminal on `close()` and at exit. Key map:

  | key | event / action |
  |---|---|
  | space | take over / give back control (toggle) |
  | s / f | episode success / failure |
  | r | re-record the episode |
  | q | quit |
  | i / k (or ↑ / ↓) | move the gripper forward / back (+x / −x) |
  | j / l (or ← / →) | move left / right (+y / −y) |
  | u / m | move up / down (+z / −z) |
  | c / o | close / open the gripper |

* `GamepadEvents` reads a Linux joystick device (``/dev/input/jsN``): each read gives 8-byte ``js_event`` records
  (u32 time in ms, s16 value, u8 type, u8 number; type 0x01 button, 0x02 axis, or-ed with 0x80 for the initial
  state sent on open). Default map (`GamepadMap`, Linux xpad numbering of an Xbox-style pad): A success, B failure,
  X re-record, Y take over / give back, Start quit, LB close, RB open; left stick forward/back and left/right move
  the gripper in x and y, right stick up/down moves it in z.

* `LeaderArmIntervention`: the SO-101 leader arm. While the policy acts the leader follows the follower (torque
  on); a `TrackingErrorDetector` watches the leader's tracking error and decides when a person has grabbed it
  (torque off, the person drives) and when they let go (torque on, the leader follows again).

Every intervention source returns a `HumanInput` whose action lives in the POLICY'S action space — an
end-effector delta in [-1, 1]³ (metres / `action_scale`) plus the gripper command (discrete: 0 close, 1 stay,
2 open; continuous: −1 closed … +1 open) — so the environment executes it exactly as it would execute the
policy's action, and the stored transition says what really moved the arm.
"""

from __future__ import annotations

import atexit
import enum
import os
import select
import struct
import sys
import termios
import tty
from dataclasses import dataclass, field
from typing import IO, Protocol

import numpy as np

from hilserl.robot.intervention import TrackingErrorDetector
from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl.sim.scene import JAW_OPEN_ANGLE


class Event(str, enum.Enum):
    INTERVENE_ON = "intervene_on"
    INTERVENE_OFF = "intervene_off"
    INTERVENE_TOGGLE = "intervene_toggle"
    SUCCESS = "success"
    FAILURE = "failure"
    RERECORD = "rerecord"
    QUIT = "quit"


@dataclass
class HumanInput:
    """What the person did during one control step."""

    is_intervention: bool
    action: np.ndarray | None = None  # policy action space; set while intervening
    events: list[Event] = field(default_factory=list)
    tracking_error: float | None = None  # leader arm only (radians)


class EventSource(Protocol):
    def poll(self) -> list[Event]: ...

    def close(self) -> None: ...


class HumanSource(Protocol):
    """An intervention source as the real env uses it."""

    def reset(self) -> None: ...

    def track(self, follower_q: np.ndarray) -> None: ...

    def step(self, follower_q: np.ndarray, ee_reference: np.ndarray | None = None,
             gripper_closed: bool | None = None) -> HumanInput: ...

    def close(self) -> None: ...


def _motion_action(direction: np.ndarray, gripper: int) -> np.ndarray:
    return np.array([*np.clip(direction, -1.0, 1.0), gripper], dtype=np.float32)


# ============================================================================================== keyboard
KEY_EVENTS = {" ": Event.INTERVENE_TOGGLE, "s": Event.SUCCESS, "f": Event.FAILURE, "r": Event.RERECORD,
              "q": Event.QUIT}
MOVE_KEYS = {"i": (0, 1.0), "k": (0, -1.0), "j": (1, 1.0), "l": (1, -1.0), "u": (2, 1.0), "m": (2, -1.0)}
ARROW_KEYS = {"A": (0, 1.0), "B": (0, -1.0), "D": (1, 1.0), "C": (1, -1.0)}  # final byte of ESC [ A..D
GRIPPER_KEYS = {"c": GRIPPER_CLOSE, "o": GRIPPER_OPEN}


class KeyboardEvents:
    """Keys from a terminal (default stdin). `poll()` returns the events typed since the last poll and
    remembers the motion keys for `action()`; holding a key moves the arm through the terminal's key repeat."""

    def __init__(self, stream: int | IO | None = None, speed: float = 0.5, cbreak: bool = True):
        if stream is None:
            stream = sys.stdin
        try:
            self.fd = stream if isinstance(stream, int) else stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both OSError and ValueError
            raise ValueError("keyboard: the input stream has no file descriptor (stdin is not a terminal or a "
                             "pipe); run from a terminal, or set env.keyboard_events=false") from None
        self.speed = float(speed)
        self._saved_mode = None
        self._pending = ""  # an escape sequence split across two reads
        self._direction = np.zeros(3)
        self._gripper = GRIPPER_STAY
        self.eof = False
        if cbreak and os.isatty(self.fd):
            self._saved_mode = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
            atexit.register(self.close)

    def _read_available(self) -> bytes:
        chunks = []
        while not self.eof and select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 1024)
            if not data:
                self.eof = True  # stdin closed (piped input ended): stop polling it
                break
            chunks.append(data)
        return b"".join(chunks)

    def poll(self) -> list[Event]:
        text = self._pending + self._read_available().decode("latin-1")
        self._pending = ""
        events: list[Event] = []
        direction = np.zeros(3)
        gripper = GRIPPER_STAY
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                if i + 1 >= len(text) or (text[i + 1] == "[" and i + 2 >= len(text)):
                    self._pending = text[i:]
                    break
                if text[i + 1] == "[":  # CSI sequence: parameters, then one final byte in @..~
                    j = i + 2
                    while j < len(text) and not "@" <= text[j] <= "~":
                        j += 1
                    if j >= len(text):
                        self._pending = text[i:]
                        break
                    if text[j] in ARROW_KEYS:
                        axis, sign = ARROW_KEYS[text[j]]
                        direction[axis] = sign
                    i = j + 1
                    continue
                i += 1  # a lone ESC: ignored
                continue
            key = ch.lower()
            if key in KEY_EVENTS:
                events.append(KEY_EVENTS[key])
            elif key in MOVE_KEYS:
                axis, sign = MOVE_KEYS[key]
                direction[axis] = sign
            elif key in GRIPPER_KEYS:
                gripper = GRIPPER_KEYS[key]
            i += 1
        self._direction = direction
        self._gripper = gripper
        return events

    def action(self) -> np.ndarray:
        """EE-delta action from the motion keys of the last poll: [dx, dy, dz, gripper command 0/1/2]."""
        return _motion_action(self._direction * self.speed, self._gripper)

    def close(self) -> None:
        """Give the terminal back its original mode (echo, line editing)."""
        if self._saved_mode is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_mode)
            except termios.error:
                pass  # the terminal is already gone
            self._saved_mode = None
            atexit.unregister(self.close)


# ============================================================================================== gamepad
JS_EVENT = struct.Struct("=IhBB")  # struct js_event from <linux/joystick.h>: time, value, type, number
JS_EVENT_BUTTON, JS_EVENT_AXIS, JS_EVENT_INIT = 0x01, 0x02, 0x80
JS_AXIS_MAX = 32767


class GamepadNotFoundError(RuntimeError):
    pass


@dataclass
class GamepadMap:
    """Which button does what and which stick moves which way. Defaults: the Linux xpad numbering."""

    buttons: dict[int, Event] = field(default_factory=lambda: {
        0: Event.SUCCESS, 1: Event.FAILURE, 2: Event.RERECORD, 3: Event.INTERVENE_TOGGLE, 7: Event.QUIT})
    close_button: int = 4  # LB
    open_button: int = 5  # RB
    axes: tuple[int, int, int] = (1, 0, 4)  # axis numbers moving x (forward), y (left), z (up)
    invert: tuple[bool, bool, bool] = (True, True, True)  # stick up / left read negative on Linux
    deadzone: float = 0.15
    speed: float = 1.0


class GamepadEvents:
    """A Linux joystick device read without blocking; buttons become events, sticks an EE-delta action."""

    def __init__(self, path: str = "/dev/input/js0", mapping: GamepadMap | None = None):
        self.path = path
        self.mapping = mapping or GamepadMap()
        if not 0.0 <= self.mapping.deadzone < 1.0:
            raise ValueError(f"gamepad deadzone: expected a value in [0, 1), got {self.mapping.deadzone}")
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise GamepadNotFoundError(f"gamepad {path}: no such device; is the gamepad plugged in? "
                                       "`ls /dev/input/js*` lists joysticks") from None
        except PermissionError:
            raise GamepadNotFoundError(f"gamepad {path}: permission denied; add yourself to the 'input' group "
                                       "(`sudo usermod -aG input $USER`, then log in again)") from None
        self._buffer = b""
        self.axes: dict[int, float] = {}
        self.buttons: dict[int, bool] = {}
        self._pressed: set[int] = set()

    def _read_available(self) -> bytes:
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 64 * JS_EVENT.size)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def poll(self) -> list[Event]:
        """Events of the buttons pressed since the last poll (initial-state records are not presses)."""
        self._buffer += self._read_available()
        n = len(self._buffer) // JS_EVENT.size
        events: list[Event] = []
        self._pressed = set()
        for k in range(n):
            _time, value, kind, number = JS_EVENT.unpack_from(self._buffer, k * JS_EVENT.size)
            initial = bool(kind & JS_EVENT_INIT)
            kind &= ~JS_EVENT_INIT
            if kind == JS_EVENT_AXIS:
                self.axes[number] = max(-1.0, min(1.0, value / JS_AXIS_MAX))
            elif kind == JS_EVENT_BUTTON:
                self.buttons[number] = value != 0
                if value and not initial:
                    self._pressed.add(number)
                    if number in self.mapping.buttons:
                        events.append(self.mapping.buttons[number])
        self._buffer = self._buffer[n * JS_EVENT.size:]
        return events

    def _stick(self, axis: int, invert: bool) -> float:
        v = self.axes.get(axis, 0.0)
        dz = self.mapping.deadzone
        if abs(v) <= dz:
            return 0.0
        v = np.sign(v) * (abs(v) - dz) / (1.0 - dz)
        return float(-v if invert else v)

    def action(self) -> np.ndarray:
        """[dx, dy, dz, gripper command 0/1/2] from the sticks now and the gripper buttons held or pressed."""
        m = self.mapping
        direction = np.array([self._stick(a, inv) for a, inv in zip(m.axes, m.invert)]) * m.speed
        def down(button: int) -> bool:  # held now, or tapped since the previous poll
            return self.buttons.get(button, False) or button in self._pressed

        gripper = GRIPPER_CLOSE if down(m.close_button) else GRIPPER_OPEN if down(m.open_button) else GRIPPER_STAY
        return _motion_action(direction, gripper)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ============================================================================================== interventions
def _gripper_value(command: int, gripper_mode: str, closed: bool) -> float:
    """A discrete command (0/1/2) in the env's gripper convention; continuous: −1 closed … +1 open, and "stay"
    keeps the current state."""
    if gripper_mode == "discrete":
        return float(command)
    if command == GRIPPER_CLOSE:
        return -1.0
    if command == GRIPPER_OPEN:
        return 1.0
    return -1.0 if closed else 1.0


class TeleopIntervention:
    """Keyboard or gamepad as the intervention source: a take-over event (toggle, on, off) hands control to the
    person, whose device then gives the action."""

    def __init__(self, device, gripper_mode: str = "discrete"):
        self.device = device
        self.gripper_mode = gripper_mode
        self.intervening = False

    def reset(self) -> None:
        self.intervening = False

    def track(self, follower_q: np.ndarray) -> None:
        pass

    def step(self, follower_q: np.ndarray | None = None, ee_reference: np.ndarray | None = None,
             gripper_closed: bool | None = None) -> HumanInput:
        events = self.device.poll()
        for e in events:
            if e is Event.INTERVENE_TOGGLE:
                self.intervening = not self.intervening
            elif e is Event.INTERVENE_ON:
                self.intervening = True
            elif e is Event.INTERVENE_OFF:
                self.intervening = False
        if not self.intervening:
            return HumanInput(False, None, events)
        action = self.device.action().astype(np.float32)
        action[3] = _gripper_value(int(action[3]), self.gripper_mode, bool(gripper_closed))
        return HumanInput(True, action, events)

    def close(self) -> None:
        self.device.close()


class LeaderArmIntervention:
    """The leader arm: follows the follower until a person grabs it, then drives the follower.

    Tracking error: while following, the distance (norm over the six joints) between the leader's reading and the
    target it was last sent, which is where the follower was one tick ago. Comparing with the target rather than
    with the follower's newest reading removes the one-tick lag that a moving policy would otherwise add to the
    error. While a person drives (torque off), the distance between the leader and the follower.

    The intervention action is the end-effector delta from the follower (or `ee_reference`, the env's current
    target) to the leader's tool point (clamped to the workspace), divided by `action_scale` and clipped to
    [-1, 1] — what the policy would have had to output — plus the gripper: with the follower's jaws open, the
    leader's jaws closed below `gripper_close_below` of the open angle mean "close"; with them closed, the
    leader's opened above `gripper_open_above` mean "open"; anything else "stay" (hysteresis, so a half-squeezed
    handle does not chatter). It never commands the follower itself: the env executes the returned action through
    the same action → workspace clamp → IK → joint targets path as the policy's, so the stored action is exactly
    what moved the arm (and the follower moves at most `action_scale` per tick behind a fast hand).
    """

    def __init__(self, follower, leader, kinematics, detector: TrackingErrorDetector, action_scale: float,
                 workspace_low, workspace_high, gripper_mode: str = "discrete", gripper_close_below: float = 0.35,
                 gripper_open_above: float = 0.65):
        if action_scale <= 0:
            raise ValueError(f"action_scale: expected > 0 metres, got {action_scale}")
        if not 0.0 < gripper_close_below < gripper_open_above < 1.0:
            raise ValueError("gripper_close_below, gripper_open_above: expected 0 < close_below < open_above < 1, "
                             f"got {gripper_close_below}, {gripper_open_above}")
        self.follower = follower
        self.leader = leader
        self.kinematics = kinematics
        self.detector = detector
        self.action_scale = float(action_scale)
        self.low = np.asarray(workspace_low, dtype=float)
        self.high = np.asarray(workspace_high, dtype=float)
        self.gripper_mode = gripper_mode
        self.close_below = gripper_close_below
        self.open_above = gripper_open_above
        self._leader_target: np.ndarray | None = None

    @property
    def intervening(self) -> bool:
        return self.detector.intervening

    def reset(self) -> None:
        """A new episode: nobody intervenes, the leader is stiff and follows."""
        self.detector.reset()
        self.leader.torque(True)
        self._leader_target = None

    def track(self, follower_q: np.ndarray) -> None:
        """Let the leader follow without asking the detector (during the reset motion)."""
        self._leader_target = np.asarray(self.leader.send_joint_targets(np.asarray(follower_q, dtype=float)))

    def step(self, follower_q: np.ndarray | None = None, ee_reference: np.ndarray | None = None,
             gripper_closed: bool | None = None) -> HumanInput:
        q_f = np.asarray(self.follower.read_joint_positions() if follower_q is None else follower_q, dtype=float)
        q_l = np.asarray(self.leader.read_joint_positions(), dtype=float)
        was = self.detector.intervening
        reference = self._leader_target if not was and self._leader_target is not None else q_f
        error = float(np.linalg.norm(q_l - reference))
        now = self.detector.update(error)
        events = []
        if now and not was:
            self.leader.torque(False)  # the person moves it freely
            events.append(Event.INTERVENE_ON)
        elif was and not now:
            self.leader.torque(True)
            events.append(Event.INTERVENE_OFF)
        if not now:
            self.track(q_f)
            return HumanInput(False, None, events, error)
        self._leader_target = None
        if gripper_closed is None:
            gripper_closed = q_f[5] < 0.5 * JAW_OPEN_ANGLE
        return HumanInput(True, self.action(q_l, q_f, ee_reference, gripper_closed), events, error)

    def action(self, leader_q: np.ndarray, follower_q: np.ndarray, ee_reference: np.ndarray | None = None,
               gripper_closed: bool = False) -> np.ndarray:
        """The policy-space action that moves the follower's tool point toward the leader's."""
        return leader_action(self.kinematics, leader_q, follower_q, self.action_scale, self.low, self.high,
                             gripper_closed, self.gripper_mode, self.close_below, self.open_above, ee_reference)

    def close(self) -> None:
        pass  # the env owns the arms and closes them


def leader_action(kinematics, leader_q, follower_q, action_scale: float, workspace_low, workspace_high,
                  gripper_closed: bool, gripper_mode: str = "discrete", close_below: float = 0.35,
                  open_above: float = 0.65, ee_reference=None) -> np.ndarray:
    """The policy-space action [dx, dy, dz, gripper] that a leader pose asks of the follower: the tool-point delta
    from the follower (or `ee_reference`) to the leader's tool point clamped to the workspace, divided by
    `action_scale` and clipped to [-1, 1]; the gripper as in `LeaderArmIntervention` (hysteresis between
    `close_below` and `open_above` of the open angle, or the opening itself in continuous mode). Joint values in
    the simulation's radians. Also how joint-space recordings become actions (`hilserl.data.lerobot_joints`)."""
    leader_q = np.asarray(leader_q, dtype=float)
    leader_ee = np.clip(kinematics.ee_position(leader_q), workspace_low, workspace_high)
    ref = kinematics.ee_position(follower_q) if ee_reference is None else np.asarray(ee_reference, float)
    delta = np.clip((leader_ee - ref) / action_scale, -1.0, 1.0)
    opening = float(np.clip(leader_q[5] / JAW_OPEN_ANGLE, 0.0, 1.0))
    if gripper_mode == "continuous":
        gripper = 2.0 * opening - 1.0
    elif not gripper_closed and opening < close_below:
        gripper = GRIPPER_CLOSE
    elif gripper_closed and opening > open_above:
        gripper = GRIPPER_OPEN
    else:
        gripper = GRIPPER_STAY
    return np.array([*delta, gripper], dtype=np.float32)


__all__ = ["Event", "EventSource", "GamepadEvents", "GamepadMap", "GamepadNotFoundError", "HumanInput",
           "HumanSource", "KeyboardEvents", "LeaderArmIntervention", "TeleopIntervention", "JS_EVENT",
           "JS_EVENT_AXIS", "JS_EVENT_BUTTON", "JS_EVENT_INIT", "leader_action"]
