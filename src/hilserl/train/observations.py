"""From what the environment returns to what the replay buffer stores and the policy reads.

Environment observation: ``{"state": float32[S], "pixels": {camera: uint8 H×W×3}}`` (or ``environment_state``
instead of pixels in state-only runs). Stored observation: a flat dict — ``state``, ``environment_state``, and per
camera either ``pixels.<camera>`` (faithful mode: the learner augments and runs the backbone every batch) or
``features.<camera>`` (cached mode: the frozen backbone's maps for K shifts of the frame, computed once here,
float16 [K, C, h, w]; shift 0 is always the unshifted frame, which is also what the policy acts on).
"""

from __future__ import annotations

import numpy as np
import torch

from hilserl.agents.augment import sample_shifts, shift_images
from hilserl.agents.sac import SACAgent


class ObservationProcessor:
    def __init__(self, agent: SACAgent, observation_space, generator: torch.Generator | None = None):
        self.agent = agent
        self.cfg = agent.config
        self.cameras = tuple(self.cfg.cameras)
        self.generator = generator
        spaces = observation_space.spaces
        self.spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {"state": (spaces["state"].shape, np.float32)}
        if "environment_state" in spaces:
            self.spec["environment_state"] = (spaces["environment_state"].shape, np.float32)
        self.feature_shape = None
        if self.cameras:
            if self.cfg.cached_features:
                c, h, w = agent.encoder.feature_map_shape
                self.feature_shape = (self.cfg.num_cached_shifts, c, h, w)
                for cam in self.cameras:
                    self.spec[f"features.{cam}"] = (self.feature_shape, np.float16)
            else:
                for cam in self.cameras:
                    self.spec[f"pixels.{cam}"] = (spaces["pixels"][cam].shape, np.uint8)

    @torch.no_grad()
    def _cached_features(self, image_hwc: np.ndarray, shifts: bool = True) -> np.ndarray:
        """float16 [K, C, h, w]: the unshifted frame first, then K-1 random shifts ([1, C, h, w] without shifts)."""
        k, pad = (self.cfg.num_cached_shifts if shifts else 1), self.cfg.augmentation_pad
        img = torch.from_numpy(np.ascontiguousarray(image_hwc)).permute(2, 0, 1).unsqueeze(0)
        batch = img.expand(k, *img.shape[1:])
        if k > 1 and pad > 0:
            shifts = sample_shifts(k, pad, generator=self.generator)
            shifts[0] = 0
            batch = shift_images(batch.contiguous(), shifts)
        maps = self.agent.encoder.backbone(batch.to(self.agent.device))
        return maps.to(torch.float16).cpu().numpy()

    def to_stored(self, obs: dict, shifts: bool = True) -> dict[str, np.ndarray]:
        """``shifts=False``: for acting only, never stored (evaluation): cached mode computes the unshifted
        frame's maps alone, a K-th of the backbone work."""
        out = {"state": np.asarray(obs["state"], dtype=np.float32)}
        if "environment_state" in self.spec:
            out["environment_state"] = np.asarray(obs["environment_state"], dtype=np.float32)
        for cam in self.cameras:
            image = obs["pixels"][cam]
            if self.cfg.cached_features:
                out[f"features.{cam}"] = self._cached_features(image, shifts)
            else:
                out[f"pixels.{cam}"] = image
        return out

    def to_policy(self, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What `SACAgent.select_action` takes: images channels-first, cached maps of the unshifted frame."""
        out = {}
        for key, value in stored.items():
            if key.startswith("pixels."):
                out[key] = np.ascontiguousarray(value.transpose(2, 0, 1))
            elif key.startswith("features."):
                out[key] = value[0].astype(np.float32)
            else:
                out[key] = value
        return out
