"""Random-shift image augmentation (DrQ / HIL-SERL "random crop with 4-pixel replicate padding").

Replicate-padding an image by ``pad`` pixels and cropping it back at a random offset is the same as shifting it by
an integer (dy, dx) in [-pad, pad] and clamping the source indices to the image: a pixel outside the image takes
the value of the nearest edge pixel. Both paths below are vectorised over the batch (no Python loop over samples)
and work on uint8 directly:

* CPU: the batch is replicate-padded into a reused scratch array, every (H, W) window of it is a strided view
  (``sliding_window_view``, no copy), and one fancy index picks each sample's window: about one padded copy plus
  one batch copy (~3.5 ms for 256 x 3 x 128 x 128 on one core, against ~20 ms for the gather path on CPU).
* Other devices: two ``torch.gather`` calls on per-sample clamped index tables.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor

_scratch = threading.local()  # per-thread padded buffers, keyed by shape and dtype

IMAGE_PREFIX = "pixels."


def sample_shifts(batch_size: int, pad: int, device=None, generator: torch.Generator | None = None) -> Tensor:
    """Integer shifts [B, 2] (dy, dx), each uniform in [-pad, pad]."""
    return torch.randint(-pad, pad + 1, (batch_size, 2), device=device, generator=generator)


def shift_images(images: Tensor, shifts: Tensor) -> Tensor:
    """Shift each image of a batch [B, C, H, W] by its own (dy, dx) with replicate edges.

    ``out[b, :, i, j] = images[b, :, clamp(i + dy_b), clamp(j + dx_b)]`` — identical to replicate-pad then crop.
    Works on any dtype; the output has the input's dtype and memory format is contiguous.
    """
    if images.device.type == "cpu" and images.dim() == 4 and shifts.numel() and images.dtype != torch.bfloat16:
        return _shift_images_cpu(images, shifts)
    b, c, h, w = images.shape
    device = images.device
    rows = (torch.arange(h, device=device).unsqueeze(0) + shifts[:, :1]).clamp_(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=device).unsqueeze(0) + shifts[:, 1:]).clamp_(0, w - 1)  # [B, W]
    out = torch.gather(images, 2, rows.view(b, 1, h, 1).expand(b, c, h, w))
    return torch.gather(out, 3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def _shift_images_cpu(images: Tensor, shifts: Tensor) -> Tensor:
    x = images.detach().contiguous().numpy()
    b, c, h, w = x.shape
    sh = shifts.detach().cpu().numpy().astype(np.int64)
    pad = int(np.abs(sh).max())
    if pad == 0:
        return images.clone()
    key = (b, c, h + 2 * pad, w + 2 * pad, x.dtype.str)
    cache = getattr(_scratch, "buffers", None)
    if cache is None:
        cache = _scratch.buffers = {}
    xp = cache.get(key)
    if xp is None:
        cache.clear()  # one shape at a time is the normal case; do not hoard memory
        xp = cache[key] = np.empty(key[:4], dtype=x.dtype)
    xp[:, :, pad:-pad, pad:-pad] = x
    xp[:, :, :pad, pad:-pad] = x[:, :, :1]
    xp[:, :, -pad:, pad:-pad] = x[:, :, -1:]
    xp[:, :, :, :pad] = xp[:, :, :, pad:pad + 1]
    xp[:, :, :, -pad:] = xp[:, :, :, -pad - 1:-pad]
    windows = sliding_window_view(xp, (h, w), axis=(2, 3))  # [B, C, 2p+1, 2p+1, H, W], a view
    out = windows[np.arange(b), :, sh[:, 0] + pad, sh[:, 1] + pad]  # one vectorised copy
    return torch.from_numpy(out)


def random_shift(images: Tensor, pad: int = 4, generator: torch.Generator | None = None,
                 return_shifts: bool = False):
    """Random shift by up to ``pad`` pixels per sample, replicate edges. images [B, C, H, W] (uint8 or float)."""
    shifts = sample_shifts(images.shape[0], pad, images.device, generator)
    out = shift_images(images, shifts)
    return (out, shifts) if return_shifts else out


def augment_observations(observations: dict[str, Tensor], pad: int = 4,
                         generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Independent random shift of every ``pixels.*`` key; other keys are passed through untouched."""
    return {
        key: random_shift(value, pad, generator) if key.startswith(IMAGE_PREFIX) else value
        for key, value in observations.items()
    }


def augment_batch(batch: dict, pad: int = 4, generator: torch.Generator | None = None) -> dict:
    """Shift the images of ``observations`` and ``next_observations`` independently (different draws)."""
    out = dict(batch)
    out["observations"] = augment_observations(batch["observations"], pad, generator)
    out["next_observations"] = augment_observations(batch["next_observations"], pad, generator)
    return out
