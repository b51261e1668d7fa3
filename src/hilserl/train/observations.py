"""From what the environment returns to what the replay buffer stores and the policy reads.

The three layouts are defined in `hilserl.obs_format`. Per camera the stored observation holds either
``pixels.<camera>`` (faithful mode: the learner augments and runs the backbone every batch) or
``features.<camera>`` (cached mode: the frozen backbone's maps for K shifts of the frame, computed once here,
float16 [K, C, h, w]; shift 0 is always the unshifted frame, which is also what the policy acts on).
"""

from __future__ import annotations

import numpy as np
import torch

from hilserl.agents.augment import sample_shifts, shift_images
from hilserl.agents.sac import SACAgent
from hilserl.obs_format import (ENV_STATE, PIXELS, STATE, canonical_camera, channels_first, feature_key,
                                is_camera_key, is_pixel_key, pixel_key)


class ObservationProcessor:
    def __init__(self, agent: SACAgent, observation_space, generator: torch.Generator | None = None):
        self.agent = agent
        self.cfg = agent.config
        self.cameras = tuple(self.cfg.cameras)
        self.generator = generator
        # frame stacking, acting only: per camera key the episode's last k policy frames (None until an actor
        # calls `start_episode`: a learner converting demonstrations keeps none)
        self._history: dict[str, list[np.ndarray]] | None = None
        spaces = observation_space.spaces
        self.spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {STATE: (spaces[STATE].shape, np.float32)}
        if ENV_STATE in spaces:
            self.spec[ENV_STATE] = (spaces[ENV_STATE].shape, np.float32)
        self.feature_shape = None
        # what is stored per frame: the policy's cameras, then (canonical view) their canonical twins
        self.stored_cameras = self.cameras + (tuple(canonical_camera(c) for c in self.cameras)
                                              if self.cfg.canonical_view else ())
        if self.cameras:
            if self.cfg.cached_features:
                c, h, w = agent.encoder.feature_map_shape
                self.feature_shape = (self.cfg.num_cached_shifts, c, h, w)
                for cam in self.stored_cameras:
                    self.spec[feature_key(cam)] = (self.feature_shape, np.float16)
            else:
                for cam in self.stored_cameras:
                    self.spec[pixel_key(cam)] = (spaces[PIXELS][cam].shape, np.uint8)

    @torch.no_grad()
    def _cached_features(self, image_hwc: np.ndarray, shifts: bool = True) -> np.ndarray:
        """float16 [K, C, h, w]: the unshifted frame first, then K-1 random shifts ([1, C, h, w] without shifts)."""
        k, pad = (self.cfg.num_cached_shifts if shifts else 1), self.cfg.augmentation_pad
        img = channels_first(torch.from_numpy(np.ascontiguousarray(image_hwc))).unsqueeze(0)
        batch = img.expand(k, *img.shape[1:])
        if k > 1 and pad > 0:
            shifts = sample_shifts(k, pad, generator=self.generator)
            shifts[0] = 0
            batch = shift_images(batch.contiguous(), shifts)
        maps = self.agent.encoder.backbone(batch.to(self.agent.device))
        return maps.to(torch.float16).cpu().numpy()

    def to_stored(self, obs: dict, shifts: bool = True) -> dict[str, np.ndarray]:
        """``shifts=False``: for acting only, never stored (evaluation): cached mode computes the unshifted
        frame's maps alone, a K-th of the backbone work, and leaves out the canonical views (never acted on)."""
        out = {STATE: np.asarray(obs[STATE], dtype=np.float32)}
        if ENV_STATE in self.spec:
            out[ENV_STATE] = np.asarray(obs[ENV_STATE], dtype=np.float32)
        for cam in (self.stored_cameras if shifts else self.cameras):
            image = obs[PIXELS][cam]
            if self.cfg.cached_features:
                out[feature_key(cam)] = self._cached_features(image, shifts)
            else:
                out[pixel_key(cam)] = image
        if self._history is not None and self.cfg.frame_stack > 1:
            self._remember(out)
        return out

    def to_policy(self, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What `SACAgent.select_action` takes: images channels-first, cached maps of the unshifted frame; with
        ``policy.frame_stack`` k > 1 each camera's last k frames of the episode side by side, oldest first, as the
        replay buffer stacks them (the episode's first frame repeated until there are k: call `start_episode` at
        every reset)."""
        history = self._history or {}
        out = {}
        for key, value in stored.items():
            if key in history:  # frame stacking: the frames `to_stored` saw, ``stored`` the latest
                out[key] = np.concatenate(history[key], axis=0)
            elif is_camera_key(key):
                out[key] = _policy_frame(key, value)
            else:
                out[key] = value
        return out

    def start_episode(self) -> None:
        """Forget the frames of the previous episode (``policy.frame_stack``); from now on `to_stored` keeps them."""
        self._history = {}

    def _remember(self, stored: dict[str, np.ndarray]) -> None:
        """Frame stacking: keep each policy camera's last k frames (whoever acts, so that the policy's stack after
        an intervention holds what the camera saw, as the buffer's does)."""
        k = self.cfg.frame_stack
        for cam in self.cameras:
            for key in (pixel_key(cam), feature_key(cam)):
                if key not in stored:
                    continue
                frame = _policy_frame(key, stored[key])
                past = self._history.get(key)
                self._history[key] = [frame] * k if past is None else [*past[1:], frame]


def _policy_frame(key: str, value: np.ndarray) -> np.ndarray:
    """One stored camera entry as the policy reads it: an image channels-first, or the unshifted frame's maps."""
    return channels_first(value, contiguous=True) if is_pixel_key(key) else value[0].astype(np.float32)
