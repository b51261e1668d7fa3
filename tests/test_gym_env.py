"""Any gymnasium env plugs in by config (``env.type: gym``): a small point-reaching env written here, not the SO-101
simulation, trains end to end through the same loop, in both its state-only and its camera form."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from hilserl.config import ConfigError, load_config
from hilserl.envs import env_spaces, make_env
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train

ENV_ID = "hilserl-test/PointReach-v0"


class PointReach(gym.Env):
    """A point on a plane moved by velocity commands in [-0.05, 0.05] toward a target; success within 0.05."""

    def __init__(self, image: bool = False, steps: int = 25):
        obs = {"agent_pos": spaces.Box(-1, 1, (2,), np.float32), "target": spaces.Box(-1, 1, (2,), np.float32)}
        if image:
            obs["camera"] = spaces.Box(0, 255, (16, 16, 3), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-0.05, 0.05, (2,), np.float32)
        self.image, self.steps = image, steps
        self.last_action = None

    def _obs(self):
        obs = {"agent_pos": self.pos.astype(np.float32), "target": self.target.astype(np.float32)}
        if self.image:
            img = np.zeros((16, 16, 3), np.uint8)
            for p, channel in ((self.pos, 0), (self.target, 1)):
                i, j = np.clip(((p + 1) / 2 * 15).round().astype(int), 0, 15)
                img[i, j, channel] = 255
            obs["camera"] = img
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, 2)
        self.target = self.np_random.uniform(-0.5, 0.5, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.last_action = np.asarray(action, np.float64)
        self.pos = np.clip(self.pos + self.last_action, -1, 1)
        self.t += 1
        dist = float(np.linalg.norm(self.pos - self.target))
        success = dist < 0.05
        return self._obs(), -dist, success, self.t >= self.steps and not success, {"is_success": success}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=PointReach)

STATE_MAP = {"agent_pos": "state", "target": "state"}
TINY = ["--policy.hidden_dims=[32, 32]", "--train.batch_size=16", "--train.num_demos=0", "--human.enabled=false",
        "--train.training_starts=20", "--train.eval_every=50", "--train.eval_episodes=2", "--train.checkpoint_every=0",
        "--train.log_every=20", "--train.torch_threads=1", "--buffers.online_capacity=1000",
        "--buffers.demo_capacity=100", "--buffers.on_disk=false", "--train.total_env_steps=80"]


def _cfg(tmp_path, env: dict, *extra):
    path = tmp_path / "gym.json"
    path.write_text(json.dumps({"env": {"type": "gym", "id": ENV_ID, **env}}))
    return load_config(TrainConfig, path, [*TINY, f"--output_dir={tmp_path}", "--run_name=gym", *extra])


def test_the_adapter_maps_keys_and_scales_actions_to_the_env_bounds(tmp_path):
    cfg = _cfg(tmp_path, {"key_map": {"agent_pos": "state", "camera": "pixels.top"}, "kwargs": {"image": True}})
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=3)
    assert set(obs) == {"state", "pixels"} and obs["pixels"]["top"].shape == (16, 16, 3)
    assert np.allclose(obs["state"], env.inner.unwrapped.pos)
    assert env.action_space.shape == (2,) and env.action_space.low.min() == -1.0
    env.step(np.array([1.0, -1.0], np.float32))  # the ends of [-1, 1] are the ends of the env's bounds
    assert np.allclose(env.inner.unwrapped.last_action, [0.05, -0.05])
    env.step(np.array([0.0, 0.5], np.float32))
    assert np.allclose(env.inner.unwrapped.last_action, [0.0, 0.025])
    assert env_spaces(cfg.env)[0] == env.observation_space
    env.close()


def test_a_discrete_gripper_dimension_becomes_close_stay_open(tmp_path):
    env = make_env(_cfg(tmp_path, {"key_map": STATE_MAP, "gripper_mode": "discrete"}).env)
    env.reset(seed=0)
    assert env.action_space.high[-1] == 2.0
    sent = []
    for command in (1, 0, 1, 2):  # stay (starts open), close, stay (closed), open
        env.step(np.array([0.0, command], np.float32))
        sent.append(env.inner.unwrapped.last_action[-1])
    assert np.allclose(sent, [0.05, -0.05, -0.05, 0.05])


@pytest.mark.parametrize("kind", ["state", "pixels"])
def test_a_gymnasium_env_trains_end_to_end(tmp_path, kind):
    if kind == "state":
        cfg = _cfg(tmp_path, {"key_map": STATE_MAP})
    else:
        cfg = _cfg(tmp_path, {"key_map": {**STATE_MAP, "camera": "pixels.top"}, "kwargs": {"image": True}},
                   "--policy.encoder=conv", "--policy.conv_channels=[8, 8]", "--policy.conv_strides=[2, 2]",
                   "--policy.backbone_trim_head=false", "--policy.cached_features=false")
    res = train(cfg, log=lambda line: None)
    assert res.env_steps >= 80 and res.learner_updates > 0 and len(res.evals) >= 1
    saved = json.loads((res.run_dir / "config.json").read_text())
    assert saved["env"]["type"] == "gym" and saved["policy"]["action_dim"] == 2
    assert saved["policy"]["state_dim"] == 4
    assert saved["policy"]["cameras"] == ([] if kind == "state" else ["top"])


def test_misconfigured_gym_envs_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="env.key_map: the env.s observation has no key .nope."):
        make_env(_cfg(tmp_path, {"key_map": {"nope": "state"}}).env)
    with pytest.raises(ConfigError, match=r"key_map\.agent_pos: expected 'state' or 'pixels.<camera>'"):
        _cfg(tmp_path, {"key_map": {"agent_pos": "joints"}})
    with pytest.raises(ConfigError, match="train.num_demos"):
        _cfg(tmp_path, {"key_map": STATE_MAP}, "--train.num_demos=5")


def test_the_reward_section_chooses_the_env_reward_or_the_success_reward(tmp_path):
    from hilserl.train.build import make_env as make_run_env

    for kind, expected in (("env", lambda dist: -dist), ("ground_truth", lambda dist: -0.05)):
        env = make_run_env(_cfg(tmp_path, {"key_map": STATE_MAP}, f"--reward.type={kind}"))
        env.reset(seed=1)
        _, reward, *_ = env.step(np.zeros(2, np.float32))
        inner = env.unwrapped.inner.unwrapped
        assert reward == pytest.approx(expected(float(np.linalg.norm(inner.pos - inner.target))))
        env.close()


def test_the_doctor_checks_a_gym_config_from_its_spaces(tmp_path):
    from hilserl.monitor.doctor import diagnose

    cfg = _cfg(tmp_path, {"key_map": {**STATE_MAP, "camera": "pixels.top"}, "kwargs": {"image": True}},
               "--reward.type=env", "--policy.target_entropy=-2.0")
    findings = diagnose(cfg)
    keys = {f.setting for f in findings}
    assert "policy.target_entropy" in keys  # -action_dim for the env's 2 continuous dims: named
    assert not keys & {"env.action_scale", "reward.success_reward", "reward.step_penalty", "human.takeover_steps"}
