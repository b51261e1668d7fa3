"""The reward wrappers: the classifier as the reward (K consecutive frames, M minimum steps, the env's own
(ground-truth) termination ignored, truncation passed through, info keys), the ground truth shaped by the reward
section, and the config / training-loop wiring."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from hilserl.config import ConfigError, load_config
from hilserl.reward.wrapper import RewardClassifierWrapper, SuccessRewardWrapper, wrap_reward, wrap_with_classifier
from hilserl.train.config import RewardConfig, TrainConfig


class FakeClassifier:
    """Scripted probabilities, one per call; records the images it was given."""

    image_keys = ("gripper",)
    image_size = (8, 8)
    threshold = 0.5

    def __init__(self, probs):
        self.probs = list(probs)
        self.calls = 0
        self.seen = []

    def predict_proba(self, images):
        self.seen.append(images)
        p = self.probs[min(self.calls, len(self.probs) - 1)]
        self.calls += 1
        return p


class FakeEnv(gym.Env):
    """Ground truth says success from `gt_from` on and terminates there (as the simulation does); time limit
    `max_episode_steps`. With pixels=False it has no images and must render them."""

    def __init__(self, gt_from=5, max_episode_steps=100, pixels=True):
        self.max_episode_steps = max_episode_steps
        self.gt_from = gt_from
        self.pixels = pixels
        obs = {"state": spaces.Box(-1, 1, (2,), np.float32)}
        if pixels:
            obs["pixels"] = spaces.Dict({"gripper": spaces.Box(0, 255, (8, 8, 3), np.uint8)})
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1, 1, (4,), np.float32)
        self.t = 0
        self.rendered = 0

    def render_camera(self, camera, size=None):
        self.rendered += 1
        return np.full((size, size, 3), 7, np.uint8)

    def _obs(self):
        obs = {"state": np.zeros(2, np.float32)}
        if self.pixels:
            obs["pixels"] = {"gripper": np.full((8, 8, 3), self.t, np.uint8)}
        return obs

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.t += 1
        success = self.t >= self.gt_from
        truncated = self.t >= self.max_episode_steps and not success  # like the sim: no truncation on success
        return self._obs(), 10.0 if success else -0.05, success, truncated, {"is_success": success}


def _run(env, max_steps=200):
    env.reset()
    rows = []
    for _ in range(max_steps):
        _, r, term, trunc, info = env.step(np.zeros(4, np.float32))
        rows.append((r, term, trunc, info))
        if term or trunc:
            break
    return rows


def test_success_needs_min_steps_even_when_confident_from_the_start():
    env = RewardClassifierWrapper(FakeEnv(gt_from=5), FakeClassifier([0.9]), consecutive_frames=10, min_steps=30)
    rows = _run(env)
    assert len(rows) == 30  # confident from step 1, but success only at step M = 30
    assert [r for r, *_ in rows[:-1]] == [-0.05] * 29 and rows[-1][0] == 10.0
    assert rows[-1][1] is True and rows[-1][2] is False and not any(t for _, t, _, _ in rows[:-1])
    assert all("reward_classifier_prob" in info for *_, info in rows)
    assert rows[-1][3]["classifier_success"] and not rows[-1][3]["classifier_false_success"]


def test_success_needs_k_consecutive_frames_above_threshold():
    # above threshold on every step except a dip at step 25: at step 30 (= M) the run is only 5 frames long, so
    # success comes at the 10th frame of the run that starts at step 26: step 35
    probs = [0.9] * 24 + [0.4] + [0.9] * 40
    env = RewardClassifierWrapper(FakeEnv(gt_from=5), FakeClassifier(probs), consecutive_frames=10, min_steps=30)
    rows = _run(env)
    assert len(rows) == 35 and rows[-1][1] and rows[-1][0] == 10.0
    assert rows[24][3]["classifier_consecutive"] == 0 and rows[23][3]["classifier_consecutive"] == 24
    assert rows[29][3]["classifier_consecutive"] == 5 and not rows[29][1]
    # exactly at the threshold is not above it
    env = RewardClassifierWrapper(FakeEnv(), FakeClassifier([0.5]), consecutive_frames=1, min_steps=0)
    rows = _run(env, 20)
    assert len(rows) == 20 and not any(t for _, t, _, _ in rows)


def test_env_termination_on_ground_truth_is_ignored_and_truncation_passes_through():
    # the env "terminates" at step 5 (ground truth) every step after; the classifier never fires
    env = RewardClassifierWrapper(FakeEnv(gt_from=5, max_episode_steps=40), FakeClassifier([0.1]))
    rows = _run(env)
    assert len(rows) == 40  # not 5: the episode runs until time is up
    assert not any(t for _, t, _, _ in rows) and rows[-1][2] is True
    assert all(r == -0.05 for r, *_ in rows)
    # the classifier disagrees with ground truth from step 5 on; the count accumulates per episode
    assert [info["classifier_disagrees"] for *_, info in rows[:6]] == [False] * 4 + [True] * 2
    assert rows[-1][3]["classifier_disagreements"] == 36
    _run(env, 1)
    assert env._disagreements == 0  # reset clears the count


def test_false_success_is_flagged_and_reward_values_are_configurable():
    env = RewardClassifierWrapper(FakeEnv(gt_from=1000), FakeClassifier([0.95]), consecutive_frames=3,
                                  min_steps=4, success_reward=5.0, step_penalty=-0.1)
    rows = _run(env)
    assert len(rows) == 4 and [r for r, *_ in rows] == [-0.1, -0.1, -0.1, 5.0]
    assert rows[-1][3]["classifier_false_success"] is True


def test_threshold_override_and_rendering_when_the_observation_has_no_pixels():
    fake = FakeClassifier([0.6])
    env = RewardClassifierWrapper(FakeEnv(pixels=False), fake, threshold=0.7, consecutive_frames=1, min_steps=0)
    rows = _run(env, 5)
    assert len(rows) == 5 and not any(t for _, t, _, _ in rows)  # 0.6 < 0.7
    assert env.env.rendered == 5 and fake.seen[0]["gripper"].shape == (8, 8, 3)
    fake = FakeClassifier([0.6])
    env = RewardClassifierWrapper(FakeEnv(pixels=True), fake, consecutive_frames=1, min_steps=0)
    _run(env, 1)
    assert env.env.rendered == 0 and fake.seen[0]["gripper"][0, 0, 0] == 1  # the observation's own frame


def test_a_classifier_that_reads_the_arm_gets_the_observations_state():
    class ArmFake(FakeClassifier):
        needs_state = True

        def predict_proba(self, images, state=None):
            self.seen.append(state)
            return 0.9 if state[16] >= 3 else 0.1  # "lifted" from the 3rd step on

    class ArmEnv(FakeEnv):
        def _obs(self):
            return {**super()._obs(), "state": np.full(17, self.t, np.float32)}

    fake = ArmFake([0.0])
    rows = _run(RewardClassifierWrapper(ArmEnv(gt_from=1000), fake, consecutive_frames=2, min_steps=0))
    assert len(rows) == 4 and rows[-1][1] and [s[16] for s in fake.seen] == [1, 2, 3, 4]


def test_reward_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="reward.classifier_path"):
        load_config(TrainConfig, None, ["--reward.type=classifier"])
    with pytest.raises(ConfigError, match="reward.type"):
        load_config(TrainConfig, None, ["--reward.type=learned"])
    with pytest.raises(ConfigError, match="reward.threshold"):
        load_config(TrainConfig, None, ["--reward.type=classifier", "--reward.classifier_path=x",
                                        "--reward.threshold=1.2"])
    with pytest.raises(ConfigError, match="reward.consecutive_frames"):
        load_config(TrainConfig, None, ["--reward.consecutive_frames=0"])
    cfg = load_config(TrainConfig, None, ["--reward.type=classifier", "--reward.classifier_path=x"])
    assert (cfg.reward.consecutive_frames, cfg.reward.min_steps, cfg.reward.success_reward,
            cfg.reward.step_penalty, cfg.reward.threshold) == (10, 30, 10.0, -0.05, None)


def test_expert_in_the_simulation_keeps_holding_until_the_classifier_rule_fires():
    """A classifier that copies the ground truth: the expert's episode does not end at its ground-truth success
    (~13 steps) but once the cube has been held 10 frames and 30 steps have passed."""
    from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
    from hilserl.sim.expert import ScriptedExpert

    sim = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state", image_size=16))

    class GroundTruthClassifier(FakeClassifier):
        image_size = (16, 16)

        def predict_proba(self, images):
            return 0.99 if sim.is_success() else 0.01

    env = wrap_with_classifier(sim, RewardConfig(type="classifier", classifier_path="unused"),
                               GroundTruthClassifier([0]))
    expert = ScriptedExpert(sim)
    env.reset(seed=3)
    first_gt, t = None, 0
    while True:
        _, r, term, trunc, info = env.step(expert.act())
        t += 1
        if info["is_success"] and first_gt is None:
            first_gt = t
        if term or trunc:
            break
    sim.close()
    assert first_gt is not None and first_gt < 30
    assert term and not trunc and r == 10.0 and t >= 30 and info["is_success"]


def test_ground_truth_reward_is_shaped_by_the_reward_section_only():
    env = wrap_reward(FakeEnv(gt_from=3, max_episode_steps=10), RewardConfig(success_reward=4.0, step_penalty=-0.5))
    assert isinstance(env, SuccessRewardWrapper)
    rows = _run(env)
    assert [r for r, *_ in rows] == [-0.5, -0.5, 4.0]  # the env's own 10 / -0.05 are replaced
    assert rows[-1][1] and not rows[-1][2]  # the env's termination passes through
    with pytest.raises(TypeError):
        SuccessRewardWrapper(FakeEnv())  # no defaults: the values come from the reward section


def test_make_env_gives_the_simulation_the_reward_sections_values():
    from hilserl.sim.expert import ScriptedExpert
    from hilserl.train.build import make_env

    cfg = load_config(TrainConfig, None, ["--env.obs_type=state", "--reward.success_reward=5",
                                          "--reward.step_penalty=-0.2"])
    env = make_env(cfg)
    expert = ScriptedExpert(env)
    env.reset(seed=3)
    rewards = []
    while True:
        _, r, term, trunc, info = env.step(expert.act())
        rewards.append(r)
        if term or trunc:
            break
    env.close()
    assert term and info["is_success"] and rewards[-1] == 5.0 and set(rewards[:-1]) == {-0.2}
