"""Configs: JSON + dotted overrides into dataclasses, with errors that name the key."""

import json
from dataclasses import dataclass, field

import pytest

from hilserl.config import ConfigError, load_config, to_dict
from hilserl.sim.env import GraspCubeConfig


@dataclass
class Inner:
    lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    mode: str = "a"

    def validate(self):
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")


@dataclass
class Outer:
    seed: int = 0
    name: str | None = None
    inner: Inner = field(default_factory=Inner)
    env: GraspCubeConfig = field(default_factory=GraspCubeConfig)


def test_defaults_file_and_overrides(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"seed": 3, "inner": {"hidden": [64, 64]}, "env": {"action_scale": 0.03}}))
    cfg = load_config(Outer, p, ["--inner.lr=0.001", "--env.gripper_mode=continuous", "--name=run1"])
    assert cfg.seed == 3 and cfg.inner.hidden == (64, 64) and cfg.inner.lr == 0.001
    assert cfg.env.action_scale == 0.03 and cfg.env.gripper_mode == "continuous" and cfg.name == "run1"
    assert cfg.env.workspace_low == (0.16, -0.10, 0.01)  # untouched defaults survive
    again = load_config(Outer, None, [f"--inner.lr={cfg.inner.lr}"])
    assert to_dict(again)["inner"]["lr"] == 0.001


@pytest.mark.parametrize("overrides, key", [
    (["--inner.lrr=0.1"], "inner.lrr"),
    (["--seed=1.5"], "seed"),
    (["--inner.hidden=[64, \"x\"]"], "inner.hidden[1]"),
    (["--inner.lr=-1"], "inner.lr"),
    (["--env.gripper_mode=banana"], "env.gripper_mode"),
    (["--env.workspace_low=[0.1, 0.2]"], "env.workspace_low"),
    (["--env.scene.cube_size=\"big\""], "env.scene.cube_size"),
    (["--temperature_init=0.01"], "temperature_init"),
])
def test_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_config(Outer, None, overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean inner.lr"):
        load_config(Outer, None, ["--inner.lr_=0.1"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config_path"):
        load_config(Outer, tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"seed\": 1,,}")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(Outer, bad)


def test_train_config_sections_keep_their_parent_defaults_and_name_errors():
    from hilserl.train.config import TrainConfig

    cfg = load_config(TrainConfig, None, ["--policy.utd_ratio=20"])
    assert cfg.policy.utd_ratio == 20
    assert cfg.policy.cached_features and cfg.policy.critic_trunk_dim == 50  # TrainConfig's defaults, not SACConfig's
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, None, ["--policy.temperature_init=-1"])
    assert str(e.value).startswith("policy.temperature_init"), str(e.value)
    with pytest.raises(ConfigError, match="^human.takeover_steps"):
        load_config(TrainConfig, None, ["--human.takeover_steps=[5, 1]"])


def test_env_section_is_a_tagged_union_chosen_by_type():
    from dataclasses import dataclass, field

    from hilserl.config import ConfigError, from_dict
    from hilserl.envs.so101 import SO101EnvConfig
    from hilserl.sim.env import GraspCubeConfig

    @dataclass
    class Holder:
        env: GraspCubeConfig | SO101EnvConfig = field(default_factory=GraspCubeConfig)

    assert isinstance(from_dict(Holder, {"env": {"action_scale": 0.03}}).env, GraspCubeConfig)
    real = from_dict(Holder, {"env": {"type": "so101", "follower_port": "/dev/ttyUSB0"}}).env
    assert isinstance(real, SO101EnvConfig) and real.follower_port == "/dev/ttyUSB0"
    with pytest.raises(ConfigError, match=r"env.type: expected one of \['sim', 'so101'\]"):
        from_dict(Holder, {"env": {"type": "mujoco"}})
    with pytest.raises(ConfigError, match="env.obs_type: unknown key"):  # the real arm has no obs_type
        from_dict(Holder, {"env": {"type": "so101", "obs_type": "state"}})


@pytest.mark.parametrize("key, where", [("success_reward", "reward.success_reward"),
                                        ("step_penalty", "reward.step_penalty"),
                                        ("reward_type", "reward.success_reward")])
def test_reward_shaping_in_the_env_section_names_the_field_and_where_it_moved(tmp_path, key, where):
    from hilserl.train.config import TrainConfig

    data = json.loads(open("configs/sim_grasp.json").read())
    data["env"][key] = "sparse" if key == "reward_type" else 10.0
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, path, [])
    msg = str(e.value)
    assert msg.startswith(f"env.{key}: ") and where in msg, msg
    with pytest.raises(ConfigError, match=f"^env.{key}: "):
        load_config(TrainConfig, None, [f"--env.{key}=1"])


def test_every_shipped_config_keeps_reward_shaping_in_the_reward_section():
    from pathlib import Path

    from hilserl.train.config import TrainConfig

    for path in sorted(Path("configs").glob("*.json")):
        data = json.loads(path.read_text())
        assert not {"success_reward", "step_penalty", "reward_type"} & set(data["env"]), path
        cfg = load_config(TrainConfig, path, [])
        assert (cfg.reward.success_reward, cfg.reward.step_penalty) == (data["reward"]["success_reward"],
                                                                       data["reward"]["step_penalty"])


def test_configs_saved_by_earlier_versions_still_load():
    """Run folders and checkpoints written before the reward section became the only home of reward shaping keep
    working for evaluation and health checks: the env's old values move to the reward section."""
    from hilserl.config import from_dict, to_dict
    from hilserl.train.config import TrainConfig, upgrade_saved_config

    old = to_dict(TrainConfig())
    old["env"].update(success_reward=5.0, step_penalty=-0.1, reward_type="shaped")
    with pytest.raises(ConfigError, match="env.(success_reward|reward_type): (moved to reward|removed)"):
        from_dict(TrainConfig, old)
    cfg = from_dict(TrainConfig, upgrade_saved_config(old))
    assert (cfg.reward.success_reward, cfg.reward.step_penalty) == (5.0, -0.1)
    old["env"]["reward_type"] = "sparse"
    cfg = from_dict(TrainConfig, upgrade_saved_config(old))
    assert (cfg.reward.success_reward, cfg.reward.step_penalty) == (1.0, 0.0)
    old["reward"].update(type="classifier", classifier_path="clf", success_reward=10.0, step_penalty=-0.05)
    cfg = from_dict(TrainConfig, upgrade_saved_config(old))  # a classifier run used the reward section's values
    assert (cfg.reward.success_reward, cfg.reward.step_penalty) == (10.0, -0.05)
    assert to_dict(from_dict(TrainConfig, upgrade_saved_config(to_dict(TrainConfig())))) == to_dict(TrainConfig())
