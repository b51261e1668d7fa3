"""The thread-safe hub between the control loop and the console's web server.

The loop side (`update`, `put_frames`, `publish`, `pop_commands`, `motion`) only takes a lock for a few
assignments: it never waits on a browser, never encodes an image, never blocks on a full queue. Everything kept is
bounded: the latest state and the latest frame per camera (older frames are dropped), the last `max_events` events,
a history of the last `history` records per kind (episodes, learner points, findings) for a page that opens late,
and at most `max_commands` pending commands (a full queue refuses new ones; each command is delivered once).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

HISTORY_KINDS = ("episode", "learner", "finding", "eval", "command")
MOTION_MAX_AGE_S = 0.6  # held keys count only this long without a refresh (a closed tab stops the arm)


class ConsoleHub:
    def __init__(self, max_events: int = 500, max_commands: int = 64, history: int = 2000):
        if max_events < 1 or max_commands < 1 or history < 1:
            raise ValueError("ConsoleHub: max_events, max_commands and history must be >= 1")
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._frames: dict[str, np.ndarray] = {}
        self._frame_version = 0
        self._events: deque[tuple[int, str, dict]] = deque(maxlen=max_events)
        self._history = {k: deque(maxlen=history) for k in HISTORY_KINDS}
        self._seq = 0
        self._commands: deque[dict] = deque()
        self.max_commands = int(max_commands)
        self._motion = np.zeros(3)
        self._motion_fast = False
        self._motion_at = -1e9
        self._raw: dict[str, tuple] = {}
        self.closed = False

    # ------------------------------------------------------------------ the control loop's side
    def update(self, **values: Any) -> None:
        """Merge the latest numbers into the state (a plain dict the server turns into JSON)."""
        with self._lock:
            self._state.update(values)

    def put_frames(self, frames: dict[str, np.ndarray]) -> None:
        """The latest image per camera (the caller hands over arrays it will not change); older ones are dropped."""
        with self._lock:
            self._frames.update(frames)
            self._frame_version += 1

    def publish(self, kind: str, data: dict) -> int:
        """Append an event (and keep it in the history of its kind); returns its sequence number."""
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, kind, data))
            if kind in self._history:
                self._history[kind].append(data)
            return self._seq

    def pop_commands(self) -> list[dict]:
        """Every pending command, oldest first; each is handed out exactly once."""
        with self._lock:
            out = list(self._commands)
            self._commands.clear()
            return out

    def motion(self, now: float | None = None) -> tuple[np.ndarray, bool]:
        """The held motion keys as a direction in {-1, 0, 1}³ and the "fast" modifier; zero when stale."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._motion_at > MOTION_MAX_AGE_S:
                return np.zeros(3), False
            return self._motion.copy(), self._motion_fast

    def set_raw_sources(self, sources: dict) -> None:
        """The real cameras' full frames: camera -> (read_raw() -> RGB frame, crop or None). The server calls them
        from its own thread when a page asks (the control loop never waits on them)."""
        with self._lock:
            self._raw = dict(sources)

    # ------------------------------------------------------------------ the server's side
    def raw_source(self, camera: str):
        with self._lock:
            return self._raw.get(camera)

    def raw_cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._raw)

    def push_command(self, command: dict) -> bool:
        """Queue a command from the page; False (refused) when `max_commands` are already pending."""
        with self._lock:
            if len(self._commands) >= self.max_commands:
                return False
            self._commands.append(dict(command))
            return True

    def set_motion(self, direction, fast: bool = False, now: float | None = None) -> None:
        d = np.clip(np.nan_to_num(np.asarray(direction, dtype=float).reshape(3)), -1.0, 1.0)
        with self._lock:
            self._motion = np.sign(d)
            self._motion_fast = bool(fast)
            self._motion_at = time.monotonic() if now is None else now

    def state(self) -> tuple[dict, int, list[str]]:
        """(a copy of the state, the frame version, the cameras with a frame)."""
        with self._lock:
            return {**self._state, "raw_cameras": sorted(self._raw)}, self._frame_version, sorted(self._frames)

    def frame(self, camera: str) -> tuple[int, np.ndarray | None]:
        with self._lock:
            return self._frame_version, self._frames.get(camera)

    def events_since(self, seq: int) -> tuple[list[tuple[int, str, dict]], int]:
        """Events after `seq` still kept (older ones were dropped), and the newest sequence number."""
        with self._lock:
            return [e for e in self._events if e[0] > seq], self._seq

    def history(self) -> dict[str, list[dict]]:
        with self._lock:
            return {k: list(v) for k, v in self._history.items()}

    def close(self) -> None:
        self.closed = True
