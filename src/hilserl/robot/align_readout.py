"""How well the simulation's gripper camera matches the real one: the readout and the view of `hilserl robot
align-camera`.

A real frame and a simulated one differ in nearly everything but geometry: colours, light, the desk's texture, noise,
blur, compression. So the readout compares *edges*, not pixels. Each image becomes a soft edge map: a Gaussian blur
(σ 1 px, against noise and fine texture); the Sobel gradient magnitude of the colour channel that changes most (a
red cube on a beige desk differs more in colour than in brightness); divided by its 99th percentile and clipped to
1, so the images' overall contrast and exposure do not matter while faint texture stays faint beside the outlines
of the jaws, the cube and the table; blurred again (σ 2 px), so the match falls off gradually with a small
misalignment instead of all at once. Two numbers come out:

- **shift**: where phase correlation of the two edge maps (with a Hann window) finds the camera's edges relative to
  the simulation's, in pixels of the policy image (x right, y down), and the strength of its peak (0-1; under
  `WEAK_PEAK` there is no clear match, e.g. a blank frame). A pure shift means a yaw/pitch (or sideways/vertical
  offset) mismatch;
- **edge error**: 1 − the normalized cross-correlation of the two edge maps: 0 when the edges coincide, near 1 when
  they are unrelated. It also sees what a shift cannot: roll, field of view, distance.

Both are 0 for identical geometry whatever the colours; how far from 0 a good real alignment gets depends on how
much the real scene has that the simulation lacks (cables, the desk's pattern): compare numbers between nudges,
not with a fixed bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

WEAK_PEAK = 0.05  # phase-correlation peak below which the shift means nothing


@dataclass(frozen=True)
class Readout:
    shift_px: tuple[float, float]  # camera edges relative to the simulation's (x right, y down), pixels
    peak: float  # phase-correlation peak strength, 0-1
    edge_error: float  # 1 - normalized cross-correlation of the edge maps; 0 = the edges coincide

    @property
    def shift_norm(self) -> float:
        return float(np.hypot(*self.shift_px))

    def format(self) -> str:
        dx, dy = self.shift_px
        clear = "" if self.peak >= WEAK_PEAK else " (no clear match)"
        return (f"shift x {dx:+.1f} y {dy:+.1f} px (|{self.shift_norm:.1f}| px, peak {self.peak:.2f}{clear}); "
                f"edge error {self.edge_error:.3f}")


def edge_map(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The soft edge map of an RGB (or grey) uint8 image: float32 in [0, 1], same height and width."""
    img = cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), sigma)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    if mag.ndim == 3:  # the strongest channel: a red cube on a beige desk differs more in colour than in brightness
        mag = mag.max(axis=2)
    top = float(np.percentile(mag, 99))
    if top <= 1e-6:  # a flat image has no edges
        return np.zeros_like(mag)
    return np.minimum(mag / top, 1.0).astype(np.float32)


def _spread(edges: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return cv2.GaussianBlur(edges, (0, 0), sigma)


def measure(real: np.ndarray, sim: np.ndarray) -> Readout:
    """The readout for a camera frame and a simulated one of the same size (see the module's docstring)."""
    real, sim = np.asarray(real), np.asarray(sim)
    if real.shape[:2] != sim.shape[:2]:
        raise ValueError(f"camera frame {real.shape[:2]} and simulated frame {sim.shape[:2]}: expected the same "
                         "height and width (the policy's image size)")
    a, b = _spread(edge_map(sim)), _spread(edge_map(real))
    h, w = a.shape
    (dx, dy), peak = cv2.phaseCorrelate(a - a.mean(), b - b.mean(), cv2.createHanningWindow((w, h), cv2.CV_32F))
    za, zb = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((za * za).sum() * (zb * zb).sum()))
    ncc = float((za * zb).sum() / denom) if denom > 1e-9 else 0.0
    return Readout((float(dx), float(dy)), min(float(peak), 1.0), float(1.0 - ncc))


def blend(real: np.ndarray, sim: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`alpha` of the camera frame over the simulated one."""
    out = alpha * np.asarray(real, np.float32) + (1 - alpha) * np.asarray(sim, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def edge_overlay(real: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """Camera edges green, simulated edges magenta: where they coincide the picture is white."""
    r, s = edge_map(real), edge_map(sim)
    return (np.stack([s, r, s], axis=2) * 255 + 0.5).astype(np.uint8)


def compose_view(real: np.ndarray, sim: np.ndarray, lines: Sequence[str], scale: int = 3) -> np.ndarray:
    """The alignment view, RGB uint8: camera | simulation over blend | edges, each enlarged `scale` times (nearest
    pixel: what the policy sees, no smoothing), with `lines` of text under them."""
    panels = [(real, "camera"), (sim, "simulation"), (blend(real, sim), "blend"),
              (edge_overlay(real, sim), "edges: camera green, sim magenta")]
    tiles = []
    for img, label in panels:
        tile = cv2.resize(np.ascontiguousarray(img), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    band = np.full((22 * len(lines) + 10, grid.shape[1], 3), 32, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (8, 22 * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([grid, band])


__all__ = ["Readout", "WEAK_PEAK", "blend", "compose_view", "edge_map", "edge_overlay", "measure"]
