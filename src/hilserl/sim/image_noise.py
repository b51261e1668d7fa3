"""What a cheap camera does to a rendered frame: optical blur, sensor noise, colour processing, JPEG compression.

`ImageCorruption` holds one episode's draw (drawn by `hilserl.sim.randomization.Randomizer`) and applies it to every
uint8 H×W×3 camera frame, in the order light meets them: blur (a Gaussian of `blur_sigma` pixels), then additive
Gaussian noise (`noise_std` grey levels, rounded to whole levels, a different draw every frame), then the camera's
colour processing (`saturation` times the distance of each pixel's colour from its grey, then `contrast` times the
distance of each pixel from the frame's mean grey level: webcams differ in both, and a table in a saturated colour
looks like a muted one with the saturation turned up), then a real JPEG round trip at `jpeg_quality` (OpenCV's
codec, with 4:2:0 chroma subsampling like a webcam's MJPEG stream). A zero field (1 for the two colour factors)
leaves that stage out.

Drawing 49,152 normals per 128×128 frame costs about a fifth of the frame's render, so the noise is drawn once per
episode into a bank twice the frame's size each way, and every frame adds a crop of it at a random offset: 16,384
different fields per episode, each exactly Gaussian per pixel (rounded to whole grey levels). The bank is kept as
its positive and negative parts, so adding it is two saturating uint8 operations (OpenCV), exactly clip(frame +
noise, 0, 255).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


@dataclass
class ImageCorruption:
    blur_sigma: float = 0.0  # px; 0: no blur
    noise_std: float = 0.0  # grey levels (0–255 scale); 0: no noise
    jpeg_quality: int = 0  # 1–100; 0: no compression
    saturation: float = 1.0  # times each pixel's colour away from its grey; 1: unchanged
    contrast: float = 1.0  # times each pixel's distance from the frame's mean grey; 1: unchanged
    rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _colour_key: tuple[float, float, np.ndarray] | None = field(default=None, repr=False)  # (s, c, c * saturation)
    _bank: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # (positive, negative) parts

    @property
    def active(self) -> bool:
        return (self.blur_sigma > 0 or self.noise_std > 0 or self.jpeg_quality > 0 or self.saturation != 1.0
                or self.contrast != 1.0)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        out = img
        if self.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(self.blur_sigma), borderType=cv2.BORDER_REFLECT)
        if self.noise_std > 0:
            pos, neg = self._noise(out.shape)
            out = cv2.subtract(cv2.add(out, pos), neg)  # saturating: clip(frame + noise, 0, 255)
        if self.saturation != 1.0 or self.contrast != 1.0:
            out = self._colour(out)
        if self.jpeg_quality > 0:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            if not ok:
                raise RuntimeError("image_jpeg: OpenCV could not encode the frame")
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out

    def _colour(self, img: np.ndarray) -> np.ndarray:
        """Both factors are linear in the pixel, so one 3x4 colour matrix applies them in a single pass: saturation
        x -> g + s (x - g) with g the pixel's luma (ITU-R BT.601; it keeps g), then contrast x -> m + c (x - m) with m
        the frame's mean luma."""
        s, c = float(self.saturation), float(self.contrast)
        if self._colour_key is None or self._colour_key[:2] != (s, c):  # once per episode's draw, not per frame
            sat = s * np.eye(3) + (1.0 - s) * np.outer(np.ones(3), _LUMA)
            self._colour_key = (s, c, c * sat)
        mean = float(_LUMA @ np.asarray(cv2.mean(img)[:3]))
        matrix = np.hstack([self._colour_key[2], np.full((3, 1), (1.0 - c) * mean)])
        return cv2.transform(img, matrix)  # rounded and clipped to 0..255

    def _noise(self, shape) -> tuple[np.ndarray, np.ndarray]:
        h, w = shape[:2]
        if self._bank is None or self._bank[0].shape != (2 * h, 2 * w, *shape[2:]):
            normal = self.rng.standard_normal((2 * h, 2 * w, *shape[2:]), dtype=np.float32)
            levels = np.clip(np.rint(normal * np.float32(self.noise_std)), -255, 255).astype(np.int16)
            self._bank = (np.maximum(levels, 0).astype(np.uint8), np.maximum(-levels, 0).astype(np.uint8))
        y, x = self.rng.integers(0, h), self.rng.integers(0, w)
        pos, neg = self._bank
        return pos[y:y + h, x:x + w], neg[y:y + h, x:x + w]
