"""Cameras for the real arm: frames in, policy-sized RGB images out.

The policy sees what the simulation renders: a square uint8 RGB image (128×128 by default). A USB camera gives a
640×480 BGR frame, so every read does BGR→RGB, the configured crop (a typical SO-101 gripper camera: `[0, 80, 480, 480]`
as top, left, height, width — the centred 480×480 square) and a resize. Frames are grabbed by a background thread,
so `read()` returns the newest frame at once instead of waiting up to a frame period inside the 10 Hz loop, and
the camera's own buffer never serves a stale frame.

`FakeCamera` has the same interface and serves frames from a list or a function (tests, dry runs).
`check_cameras` is the "check cameras" step of the setup: open each camera, grab frames, report the resolution and
the measured frame rate, save the raw frame with the crop drawn on it and the view the policy will get.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import cv2
import numpy as np

Crop = tuple[int, int, int, int]  # top, left, height, width in the raw frame
Size = tuple[int, int]  # height, width of the image the policy gets


class CameraError(RuntimeError):
    """A camera that cannot deliver the configured images."""


class CameraNotFoundError(CameraError):
    pass


class Camera(Protocol):
    name: str
    size: Size

    def connect(self) -> None: ...

    def read(self) -> np.ndarray: ...

    def read_raw(self) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass
class CameraConfig:
    """One camera of the real setup (``env.cameras.<name>``)."""

    index: int | str = 0  # /dev/videoN number, or a device path or video file
    width: int = 640
    height: int = 480
    fps: int = 30
    crop: tuple[int, int, int, int] | None = None  # top, left, height, width; None: the whole frame
    size: tuple[int, int] | None = None  # (height, width) after the resize; None: env.image_size square

    def __post_init__(self) -> None:
        for name in ("width", "height", "fps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.crop is not None:
            self.crop = tuple(self.crop)
            check_crop(self.crop, self.width, self.height, "crop")
        if self.size is not None:
            self.size = tuple(self.size)
            check_size(self.size, "size")

    def build(self, name: str, default_size: Size) -> "OpenCVCamera":
        return OpenCVCamera(self.index, self.width, self.height, self.fps, self.crop, self.size or default_size,
                            name=name)


def check_crop(crop: Crop, width: int, height: int, what: str = "crop") -> None:
    if len(crop) != 4 or not all(isinstance(v, (int, np.integer)) for v in crop):
        raise ValueError(f"{what}: expected four integers [top, left, height, width], got {list(crop)}")
    top, left, h, w = (int(v) for v in crop)
    if h <= 0 or w <= 0:
        raise ValueError(f"{what}: expected a positive height and width, got {list(crop)} (top, left, height, width)")
    if top < 0 or left < 0 or top + h > height or left + w > width:
        raise ValueError(f"{what}: {list(crop)} (top, left, height, width) reaches outside the {width}x{height} "
                         f"frame (rows {top}..{top + h}, columns {left}..{left + w})")


def check_size(size: Size, what: str = "size") -> None:
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise ValueError(f"{what}: expected [height, width] as two positive integers, got {list(size)}")


def crop_and_resize(frame: np.ndarray, crop: Crop | None, size: Size) -> np.ndarray:
    """Crop (top, left, height, width), then resize to `size` (height, width) with area averaging."""
    if crop is not None:
        top, left, h, w = crop
        frame = frame[top:top + h, left:left + w]
    if frame.shape[:2] != tuple(size):
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _source_name(index_or_path: int | str) -> str:
    return f"/dev/video{index_or_path}" if isinstance(index_or_path, int) else str(index_or_path)


class OpenCVCamera:
    """A V4L2 camera (or a video file, for dry runs) read by a background thread.

    `read()` returns the newest frame, processed (RGB, cropped, resized); it raises if the grab thread failed or
    no new frame arrived for `max_frame_age_s`, so a camera unplugged mid-episode stops the loop instead of
    feeding the policy a frozen image.
    """

    def __init__(self, index_or_path: int | str, width: int = 640, height: int = 480, fps: int = 30,
                 crop: Crop | None = None, size: Size = (128, 128), name: str | None = None,
                 open_timeout_s: float = 5.0, max_frame_age_s: float = 1.0):
        self.source = index_or_path
        self.name = name or _source_name(index_or_path)
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.crop = None if crop is None else tuple(int(v) for v in crop)
        if self.crop is not None:
            check_crop(self.crop, self.width, self.height, f"camera {self.name!r}: crop")
        check_size(tuple(size), f"camera {self.name!r}: size")
        self.size = (int(size[0]), int(size[1]))
        self.open_timeout_s = open_timeout_s
        self.max_frame_age_s = max_frame_age_s
        self._cap: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._stop = threading.Event()
        self._frame: np.ndarray | None = None
        self._frame_time = 0.0
        self._frames = 0
        self._first_time = 0.0
        self._error: CameraError | None = None

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        if self._thread is not None:
            return
        src = self.source
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            cap.release()
            raise CameraNotFoundError(
                f"camera {self.name!r}: cannot open {_source_name(src)} (index_or_path={src!r}); is it plugged in "
                "and not used by another program? `ls /dev/video*` lists the cameras")
        self._is_file = isinstance(src, str) and os.path.isfile(src)
        if not self._is_file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        self._stop.clear()
        self._first.clear()
        self._thread = threading.Thread(target=self._grab_loop, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        if not self._first.wait(self.open_timeout_s):
            self.close()
            raise CameraError(f"camera {self.name!r}: no frame within {self.open_timeout_s:g} s of opening")
        if self._error is not None:
            error = self._error
            self.close()
            raise error

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "OpenCVCamera":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ grabbing
    def _grab_loop(self) -> None:
        cap = self._cap
        failures = 0
        period = 1.0 / self.fps
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok:
                failures += 1
                if self._is_file and failures == 1:  # a recorded video loops, for dry runs
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                if failures >= (2 if self._is_file else 10):
                    self._fail(CameraError(f"camera {self.name!r}: stopped delivering frames"))
                    return
                continue
            failures = 0
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[:2] != (self.height, self.width):
                got = f"{frame.shape[1]}x{frame.shape[0]}" if frame.ndim >= 2 else str(frame.shape)
                self._fail(CameraError(
                    f"camera {self.name!r}: delivers {got} frames{'' if frame.ndim == 3 else ' (not colour)'}, "
                    f"configured width x height = {self.width}x{self.height}; set the camera's width/height to a "
                    "mode it supports (`v4l2-ctl --list-formats-ext`)"))
                return
            now = time.monotonic()
            with self._lock:
                self._frame = frame
                self._frame_time = now
                if self._frames == 0:
                    self._first_time = now
                self._frames += 1
            self._first.set()
            if self._is_file:  # a file decodes as fast as the CPU allows; play it at its frame rate instead
                self._stop.wait(period)

    def _fail(self, error: CameraError) -> None:
        self._error = error
        self._first.set()

    # ------------------------------------------------------------------ reading
    def _latest(self) -> np.ndarray:
        if self._thread is None:
            raise CameraError(f"camera {self.name!r}: not connected; call connect() first")
        if self._error is not None:
            raise self._error
        with self._lock:
            frame, t = self._frame, self._frame_time
        age = time.monotonic() - t
        if age > self.max_frame_age_s:
            raise CameraError(f"camera {self.name!r}: no new frame for {age:.1f} s")
        return frame

    def read_raw(self) -> np.ndarray:
        """The newest full frame, RGB, uncropped."""
        return cv2.cvtColor(self._latest(), cv2.COLOR_BGR2RGB)

    def read(self) -> np.ndarray:
        """The newest frame as the policy sees it: RGB, cropped, resized, uint8 H×W×3."""
        img = crop_and_resize(self._latest(), self.crop, self.size)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    @property
    def measured_fps(self) -> float | None:
        with self._lock:
            n, t0, t1 = self._frames, self._first_time, self._frame_time
        return (n - 1) / (t1 - t0) if n > 1 and t1 > t0 else None

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the raw frames."""
        return self.height, self.width


class FakeCamera:
    """Serves RGB frames from a list (cycled) or from `frames(i)`; crops and resizes like the real camera."""

    def __init__(self, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], crop: Crop | None = None,
                 size: Size = (128, 128), name: str = "fake"):
        if not callable(frames) and len(frames) == 0:
            raise ValueError(f"camera {name!r}: frames: expected at least one frame")
        self.frames = frames
        self.name = name
        self.crop = None if crop is None else tuple(int(v) for v in crop)
        check_size(tuple(size), f"camera {name!r}: size")
        self.size = (int(size[0]), int(size[1]))
        self.count = 0
        self.connected = False
        self.closed = False
        self.measured_fps = None

    def connect(self) -> None:
        self.connected = True

    def read_raw(self) -> np.ndarray:
        i = self.count
        self.count += 1
        frame = self.frames(i) if callable(self.frames) else self.frames[i % len(self.frames)]
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise CameraError(f"camera {self.name!r}: frame {i} is {frame.dtype} {frame.shape}, expected uint8 H×W×3")
        if self.crop is not None:
            check_crop(self.crop, frame.shape[1], frame.shape[0], f"camera {self.name!r}: crop")
        return frame.copy()

    def read(self) -> np.ndarray:
        return crop_and_resize(self.read_raw(), self.crop, self.size)

    def close(self) -> None:
        self.connected = False
        self.closed = True


# ---------------------------------------------------------------------------------------------- the setup check
@dataclass
class CameraCheck:
    name: str
    resolution: tuple[int, int]  # width, height of the raw frames
    measured_fps: float | None
    crop: Crop | None
    size: Size
    image_path: Path  # the policy's view
    raw_path: Path  # the full frame with the crop drawn on it


def check_cameras(cameras: Mapping[str, Camera], out_dir: str | Path, frames: int = 10,
                  wait: Callable[[float], None] = time.sleep) -> list[CameraCheck]:
    """Open each camera, grab `frames` frames, save `<name>.png` (what the policy sees) and `<name>_raw.png` (the
    frame with the crop rectangle), and report resolution and measured frame rate. Cameras are closed again."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checks = []
    for name, cam in cameras.items():
        cam.connect()
        try:
            for _ in range(max(1, frames)):
                image = cam.read()
                wait(1.0 / 30)
            raw = cam.read_raw()
            fps = getattr(cam, "measured_fps", None)
        finally:
            cam.close()
        crop = getattr(cam, "crop", None)
        framed = raw.copy()
        if crop is not None:
            top, left, h, w = crop
            cv2.rectangle(framed, (left, top), (left + w - 1, top + h - 1), (255, 0, 0), 2)
        image_path, raw_path = out / f"{name}.png", out / f"{name}_raw.png"
        for path, img in ((image_path, image), (raw_path, framed)):
            if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise CameraError(f"camera {name!r}: could not write {path}")
        checks.append(CameraCheck(name, (raw.shape[1], raw.shape[0]), fps, crop, tuple(image.shape[:2]),
                                  image_path, raw_path))
    return checks


def format_camera_checks(checks: Sequence[CameraCheck]) -> str:
    lines = [f"{'camera':<10} {'resolution':>10} {'fps':>6} {'crop (t,l,h,w)':>20} {'policy image':>12}  saved"]
    for c in checks:
        fps = f"{c.measured_fps:.1f}" if c.measured_fps else "-"
        crop = ",".join(str(v) for v in c.crop) if c.crop else "none"
        lines.append(f"{c.name:<10} {c.resolution[0]:>4}x{c.resolution[1]:<5} {fps:>6} {crop:>20} "
                     f"{c.size[1]:>5}x{c.size[0]:<6}  {c.image_path}")
    return "\n".join(lines)


__all__ = ["Camera", "CameraCheck", "CameraConfig", "CameraError", "CameraNotFoundError", "FakeCamera",
           "OpenCVCamera", "check_cameras", "check_crop", "crop_and_resize", "format_camera_checks"]
