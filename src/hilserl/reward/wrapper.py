"""The `reward` section of a training config applied to an env: ``wrap_reward(env, reward_cfg)``.

Both reward types pay ``success_reward`` on the step that succeeds and ``step_penalty`` on every other step; they
differ in who says "success":

* ``SuccessRewardWrapper`` (reward.type "ground_truth", simulation only): the simulation's own ground truth
  (``info["is_success"]``); the simulation's termination and truncation pass through unchanged.
* ``RewardClassifierWrapper`` (reward.type "classifier"): a trained classifier, as below.

The classifier as the reward: ``RewardClassifierWrapper``.

Every step the classifier sees the frame(s) of its cameras (from ``obs["pixels"]`` when the observation has them,
otherwise rendered with ``env.unwrapped.render_camera`` — a state-only simulation still gives the classifier its
images), and the observation's ``state`` when it also reads the arm (``needs_state``), and returns p = P(success).
Then

* success  = p > threshold on ``consecutive_frames`` (K, default 10) consecutive steps AND at least ``min_steps``
  (M, default 30) steps into the episode;
* reward   = ``success_reward`` (+10) on success, ``step_penalty`` (-0.05) on every other step;
* terminated = success. The wrapped env's own ``terminated`` is IGNORED: the simulation terminates on its ground
  truth success, which a real arm does not have, so with the classifier the episode goes on until the classifier
  says success or time runs out (the env's ``truncated`` is passed through, and the wrapper also truncates at the
  env's ``max_episode_steps`` itself, since the simulation reports no truncation on a step it calls a success).
  With K = 10 and M = 30 an expert that grasps in ~13 steps therefore has to keep holding the cube until step 30+.

``info`` gains, every step: ``reward_classifier_prob`` (p), ``classifier_success`` (the K/M rule fired) and
``classifier_consecutive`` (current run of frames above threshold). When the env reports ground truth
(``info["is_success"]``, the simulation): ``classifier_disagrees`` = (p > threshold) != ground truth for this
frame, and ``classifier_disagreements`` = how many frames of this episode so far disagreed (the training logs
can report the last value per episode), plus ``classifier_false_success`` on the step the rule fires while the
ground truth says no success.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class RewardClassifierWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, classifier, threshold: float | None = None, consecutive_frames: int = 10,
                 min_steps: int = 30, success_reward: float = 10.0, step_penalty: float = -0.05,
                 max_episode_steps: int | None = None):
        """classifier: anything with ``image_keys``, ``image_size`` (H, W), ``threshold`` and
        ``predict_proba({camera: uint8 [H, W, 3]}) -> float`` (a ``RewardClassifier``, or a fake in tests).
        threshold None: the classifier's own (from its file)."""
        super().__init__(env)
        if consecutive_frames < 1:
            raise ValueError(f"consecutive_frames: expected >= 1, got {consecutive_frames}")
        if min_steps < 0:
            raise ValueError(f"min_steps: expected >= 0, got {min_steps}")
        self.classifier = classifier
        self.threshold = float(classifier.threshold if threshold is None else threshold)
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold: expected a probability in [0, 1), got {self.threshold}")
        self.consecutive_frames = int(consecutive_frames)
        self.min_steps = int(min_steps)
        self.success_reward = float(success_reward)
        self.step_penalty = float(step_penalty)
        self.max_episode_steps = max_episode_steps or getattr(env.unwrapped, "max_episode_steps", None)
        self._check_cameras()
        self._steps = 0
        self._run = 0
        self._disagreements = 0

    def _check_cameras(self) -> None:
        """Each classifier camera must come from the observation (with the right size) or be renderable."""
        spaces = getattr(self.env.observation_space, "spaces", {})
        pix = spaces.get("pixels") if isinstance(spaces, dict) else None
        pix_spaces = getattr(pix, "spaces", {}) if pix is not None else {}
        size = tuple(self.classifier.image_size)
        can_render = hasattr(self.env.unwrapped, "render_camera")
        for cam in self.classifier.image_keys:
            if cam in pix_spaces:
                shape = tuple(pix_spaces[cam].shape[:2])
                if shape != size and not can_render:
                    raise ValueError(f"reward classifier: camera {cam!r} gives {shape[0]}x{shape[1]} images, the "
                                     f"classifier was trained on {size[0]}x{size[1]}")
            elif not can_render:
                raise ValueError(f"reward classifier: needs camera {cam!r}, the env's observation has "
                                 f"{sorted(pix_spaces)} and the env cannot render other cameras")

    def _images(self, obs) -> dict[str, np.ndarray]:
        pixels = obs.get("pixels", {}) if isinstance(obs, dict) else {}
        size = tuple(self.classifier.image_size)
        out = {}
        for cam in self.classifier.image_keys:
            img = pixels.get(cam)
            if img is None or tuple(img.shape[:2]) != size:
                img = self.env.unwrapped.render_camera(cam, size[0])
            out[cam] = img
        return out

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._steps = 0
        self._run = 0
        self._disagreements = 0
        return obs, info

    def step(self, action):
        obs, _env_reward, _env_terminated, env_truncated, info = self.env.step(action)
        self._steps += 1
        arm = {"state": obs["state"]} if getattr(self.classifier, "needs_state", False) else {}  # the arm's values
        prob = float(self.classifier.predict_proba(self._images(obs), **arm))
        above = prob > self.threshold
        self._run = self._run + 1 if above else 0
        success = self._run >= self.consecutive_frames and self._steps >= self.min_steps
        reward = self.success_reward if success else self.step_penalty
        timed_out = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        truncated = bool((env_truncated or timed_out) and not success)
        info = dict(info)
        info["reward_classifier_prob"] = prob
        info["classifier_success"] = bool(success)
        info["classifier_consecutive"] = self._run
        if "is_success" in info:
            truth = bool(info["is_success"])
            disagrees = bool(above != truth)
            self._disagreements += int(disagrees)
            info["classifier_disagrees"] = disagrees
            info["classifier_disagreements"] = self._disagreements
            if success:
                info["classifier_false_success"] = not truth
        return obs, reward, bool(success), truncated, info


class SuccessRewardWrapper(gym.Wrapper):
    """The ground-truth reward: ``success_reward`` on a step whose ``info["is_success"]`` is true, ``step_penalty``
    on every other step. The values come from the reward section (no defaults here: it is their only home)."""

    def __init__(self, env: gym.Env, *, success_reward: float, step_penalty: float):
        super().__init__(env)
        self.success_reward = float(success_reward)
        self.step_penalty = float(step_penalty)

    def step(self, action):
        obs, _env_reward, terminated, truncated, info = self.env.step(action)
        reward = self.success_reward if info.get("is_success", False) else self.step_penalty
        return obs, reward, terminated, truncated, info


def wrap_reward(env: gym.Env, reward_cfg, classifier=None) -> gym.Env:
    """``env`` with the reward ``reward_cfg`` (a ``RewardConfig``) describes: the classifier's for type
    "classifier" (loaded from ``reward_cfg.classifier_path`` unless one is given), the env's own for "env", else
    the ground truth's."""
    if reward_cfg.type == "classifier":
        return wrap_with_classifier(env, reward_cfg, classifier)
    if reward_cfg.type == "env":
        return env
    return SuccessRewardWrapper(env, success_reward=reward_cfg.success_reward, step_penalty=reward_cfg.step_penalty)


def wrap_with_classifier(env: gym.Env, reward_cfg, classifier=None) -> RewardClassifierWrapper:
    """Wrap ``env`` as ``reward_cfg`` (a ``RewardConfig`` with type "classifier") says; loads the classifier
    from ``reward_cfg.classifier_path`` unless one is given."""
    if classifier is None:
        from hilserl.reward.model import load_classifier

        if not reward_cfg.classifier_path:
            raise ValueError("reward.classifier_path: required when reward.type is 'classifier'")
        classifier = load_classifier(reward_cfg.classifier_path)
    return RewardClassifierWrapper(env, classifier, threshold=reward_cfg.threshold,
                                   consecutive_frames=reward_cfg.consecutive_frames, min_steps=reward_cfg.min_steps,
                                   success_reward=reward_cfg.success_reward, step_penalty=reward_cfg.step_penalty)


__all__ = ["RewardClassifierWrapper", "SuccessRewardWrapper", "wrap_reward", "wrap_with_classifier"]
