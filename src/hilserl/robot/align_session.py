"""The front end of `hilserl robot align-camera`: a loop that reads the follower's joints and the camera, shows the
alignment view, prints the readout and turns keys into `CameraAligner.press`.

Two ways to show the view, picked by `choose_display`:

- `WindowDisplay`: an OpenCV window (needs an OpenCV built with a GUI, `cv2.getBuildInformation()` says
  "GUI: GTK…/QT…/COCOA/WIN32UI", and a desktop); keys are typed into the window;
- `FileDisplay`: OpenCV without a GUI (`opencv-python-headless`, this project's default) or no desktop: the view
  is written to a PNG about once a second (open it in an image viewer that reloads, e.g. `eog`, `feh -R 1`) and
  keys are read from the terminal (`TerminalKeys`: each key at once, no Enter).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from hilserl.fileio import atomic_write
from hilserl.robot.align import CameraAligner, CameraCorrection

WINDOW = "hilserl align-camera"


def cv2_has_gui() -> bool:
    """Whether this OpenCV can open windows: its build information's "GUI:" line names a toolkit, not NONE."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == "GUI":
            return value.strip().upper() not in ("", "NONE")
    return False


class Display(Protocol):
    def show(self, image_rgb: np.ndarray, changed: bool) -> None: ...

    def keys(self) -> list[str]: ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


class TerminalKeys:
    """Keys typed in the terminal (stdin in cbreak mode when it is a terminal), read without blocking. A pipe or
    file works too (tests); its end reads as `closed`."""

    def __init__(self, stream=None):
        stream = sys.stdin if stream is None else stream
        try:
            self.fd = stream if isinstance(stream, int) else stream.fileno()
        except (AttributeError, OSError, ValueError):
            raise ValueError("keys: stdin has no file descriptor; run from a terminal") from None
        self.closed = False
        self._saved = None
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)

    def poll(self, timeout_s: float = 0.0) -> list[str]:
        chunks = []
        while not self.closed and select.select([self.fd], [], [], timeout_s)[0]:
            data = os.read(self.fd, 1024)
            if not data:
                self.closed = True
                break
            chunks.append(data.decode("latin-1"))
            timeout_s = 0.0
        return list("".join(chunks))

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


class FileDisplay:
    """Writes the view to `path` (PNG) when it changed, at most every `min_interval_s`, and at least every
    `every_s` seconds; keys from the terminal."""

    def __init__(self, path: str | Path, keys: TerminalKeys, every_s: float = 1.0, min_interval_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.terminal = keys
        self.every_s, self.min_interval_s, self.clock = every_s, min_interval_s, clock
        self._written = -np.inf
        self._pending = False
        self.writes = 0

    def show(self, image_rgb: np.ndarray, changed: bool) -> None:
        self._pending = self._pending or changed
        age = self.clock() - self._written
        if age >= self.every_s or (self._pending and age >= self.min_interval_s):
            ok, png = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError(f"{self.path}: could not encode the view as PNG")
            atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(png.tobytes()))
            self._written, self._pending = self.clock(), False
            self.writes += 1

    def keys(self) -> list[str]:
        return self.terminal.poll(0.05)

    @property
    def closed(self) -> bool:
        return self.terminal.closed

    def close(self) -> None:
        self.terminal.close()


class WindowDisplay:
    """An OpenCV window; keys typed into it (`cv2.waitKey`)."""

    def __init__(self, name: str = WINDOW):
        self.name = name
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)
        self.closed = False

    def show(self, image_rgb: np.ndarray, changed: bool) -> None:
        cv2.imshow(self.name, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))

    def keys(self) -> list[str]:
        code = cv2.waitKey(30)
        if code < 0:
            return []
        return [chr(code & 0xFF)]

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.name)
        except cv2.error:
            pass


def choose_display(mode: str, path: str | Path, log: Callable[[str], None] = print) -> Display:
    """mode "window", "file" or "auto" (a window when OpenCV has a GUI and there is a desktop, else the file)."""
    if mode not in ("auto", "window", "file"):
        raise ValueError(f"--display: expected auto, window or file, got {mode!r}")
    desktop = sys.platform != "linux" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if mode == "window" or (mode == "auto" and cv2_has_gui() and desktop):
        if not cv2_has_gui():
            raise ValueError("--display window: this OpenCV has no GUI (cv2.getBuildInformation() says GUI: NONE, "
                             "as opencv-python-headless); use --display file")
        try:
            return WindowDisplay()
        except cv2.error as e:
            if mode == "window":
                raise ValueError(f"--display window: OpenCV could not open a window ({e}); use --display file") \
                    from None
            log(f"no window ({e}); writing the view to a file instead")
    log(f"the view is written to {path} about once a second: open it in an image viewer that reloads "
        "(eog, feh -R 1); type the keys here in the terminal")
    return FileDisplay(path, TerminalKeys())


def run_alignment(aligner: CameraAligner, follower, camera, display: Display,
                  save: Callable[[CameraCorrection], str], log: Callable[[str], None] = print,
                  clock: Callable[[], float] = time.monotonic, print_every_s: float = 1.0,
                  max_frames: int | None = None) -> CameraCorrection:
    """Show, measure and nudge until quit (or the keys' end); `save(correction)` writes it and says where.

    Keys typed between two frames all apply, except that save and quit wait until the view and the readout of
    the latest correction have been shown once. Quitting with unsaved changes asks for a second q. Returns the
    correction as it stands at the end (saved or not)."""
    printed, saved, frames, changed, quitting = -np.inf, aligner.correction, 0, True, False
    queue: list[str] = []
    while max_frames is None or frames < max_frames:
        joints = np.asarray(follower.read_joint_positions(), dtype=float)
        view = aligner.view(joints, camera.read())
        frames += 1
        display.show(view.image, changed)
        if changed or clock() - printed >= print_every_s:
            note = f"  [{aligner.message}]" if changed and aligner.message else ""
            log(f"{aligner.correction.format()} || {view.readout.format()}{note}")
            printed = clock()
        changed = False
        queue.extend(display.keys())
        while queue and not (changed and queue[0] in SHOW_FIRST):
            action = aligner.press(queue.pop(0))
            if action == "save":
                log(save(aligner.correction))
                saved, aligner.message = aligner.correction, "saved"
            elif action == "quit":
                if aligner.correction == saved or quitting:
                    _say_unsaved(aligner.correction, saved, log)
                    return aligner.correction
                log("the correction has changed since it was last saved: s saves it, q again quits without saving")
                quitting = True
                continue
            changed = changed or action not in ("", "save")
            quitting = False
        if display.closed and not queue:
            log("the keys ended (stdin closed): stopping")
            _say_unsaved(aligner.correction, saved, log)
            return aligner.correction
    return aligner.correction


SHOW_FIRST = ("s", "q", "\x1b")  # keys that wait for the view of the latest correction


def _say_unsaved(now: CameraCorrection, saved: CameraCorrection, log: Callable[[str], None]) -> None:
    if now != saved:
        log(f"not saved: {now.format()}")


__all__ = ["FileDisplay", "TerminalKeys", "WindowDisplay", "choose_display", "cv2_has_gui", "run_alignment"]
