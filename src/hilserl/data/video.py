"""Video files through the FFmpeg that ships with imageio-ffmpeg: encode an episode's frames (H.264, lossy or
bit-exact), join episode videos without re-encoding, and decode a file frame by frame with each frame's exact
presentation time (AV1 files written by LeRobot decode too). Used by the LeRobot dataset format."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_video(path: Path, frames: np.ndarray, fps: int, lossless: bool, crf: int, gop: int) -> None:
    """One episode's frames (T, H, W, 3) uint8 -> an .mp4 (H.264)."""
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    if lossless:
        codec, pix_fmt, params = "libx264rgb", "rgb24", ["-qp", "0", "-preset", "veryfast"]
    else:
        if h % 2 or w % 2:
            raise ValueError(f"H.264 yuv420p needs even image sizes, got {w}×{h}; export with lossless=True")
        codec, pix_fmt, params = "libx264", "yuv420p", ["-crf", str(int(crf)), "-preset", "medium"]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec=codec, pix_fmt_in="rgb24",
                                         pix_fmt_out=pix_fmt, quality=None, macro_block_size=1,
                                         ffmpeg_log_level="error", output_params=[*params, "-g", str(int(gop))])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def concat_videos(parts: list[Path], out: Path) -> None:
    """Join episode videos without re-encoding (FFmpeg's concat demuxer, stream copy)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        os.replace(parts[0], out)
        return
    listing = out.parent / f".{out.name}.concat.txt"
    listing.write_text("".join("file '" + str(p.resolve()).replace("'", "'\\''") + "'\n" for p in parts))
    try:
        res = subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-f", "concat", "-safe", "0",
                              "-i", str(listing), "-map", "0:v:0", "-c", "copy", str(out)],
                             capture_output=True, text=True)
    finally:
        listing.unlink(missing_ok=True)
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg could not join {len(parts)} episode videos into {out}: {res.stderr.strip()}")
    for p in parts:
        p.unlink()


_TIME_BASE = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")
_SHOWINFO = re.compile(rb"\]\s+n:\s*\d+\s+pts:\s*(-?\d+)\s+pts_time:(\S+).*?\bs:(\d+)x(\d+)")


class VideoReader:
    """Decodes one video file sequentially with FFmpeg, yielding (presentation time in s, RGB frame).

    Presentation times come from FFmpeg's showinfo filter (pts × time base, exact), so frames are matched by
    time as LeRobot does, not by counting."""

    def __init__(self, path: Path, start_s: float = 0.0) -> None:
        self.path = path
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-copyts"]
        if start_s > 0:
            cmd += ["-ss", f"{start_s:.6f}"]
        cmd += ["-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.meta: queue.Queue = queue.Queue()
        self.log: deque[str] = deque(maxlen=20)
        self.thread = threading.Thread(target=self._read_log, daemon=True)
        self.thread.start()

    def _read_log(self) -> None:
        time_base: Fraction | None = None
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = _SHOWINFO.search(line)
            if m:
                pts, pts_time, w, h = m.groups()
                t = float(int(pts) * time_base) if time_base is not None else float(pts_time)
                self.meta.put((t, int(w), int(h)))
                continue
            m = _TIME_BASE.search(line)
            if m and time_base is None:
                time_base = Fraction(int(m.group(1)), int(m.group(2)))
            elif not m:
                self.log.append(line.decode(errors="replace").rstrip())
        self.meta.put(None)

    def next_frame(self, timeout: float = 120.0) -> tuple[float, np.ndarray] | None:
        try:
            item = self.meta.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.path}: ffmpeg produced no frame for {timeout:.0f} s") from None
        if item is None:
            code = self.proc.wait()
            if code != 0:
                raise ValueError(f"{self.path}: ffmpeg could not decode the video: " + " | ".join(self.log))
            return None
        t, w, h = item
        assert self.proc.stdout is not None
        data = self.proc.stdout.read(w * h * 3)
        if len(data) != w * h * 3:
            raise ValueError(f"{self.path}: video data ends inside a frame: " + " | ".join(self.log))
        return t, np.frombuffer(data, np.uint8).reshape(h, w, 3)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.thread.join(timeout=5)
