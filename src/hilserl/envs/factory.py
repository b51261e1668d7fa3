"""One place that turns an ``env`` config into an environment: the simulation, the real SO-101, or any gymnasium env.

``env.type`` picks: "sim" (`GraspCubeConfig`, the MuJoCo simulation; also any config without a type), "so101"
(`SO101EnvConfig`, the real arm) or "gym" (`GymEnvConfig`, a registered gymnasium env behind an adapter).
Everything above this call — wrappers, actor, reward classifier — is the same for all.
"""

from __future__ import annotations

from collections.abc import Mapping

from hilserl.config import ConfigError, from_dict

ENV_TYPES = ("sim", "so101", "gym")


def env_type(env_cfg) -> str:
    """"sim" or "so101" for a config object or a plain dict (its "type" key; none means the simulation)."""
    kind = env_cfg.get("type", "sim") if isinstance(env_cfg, Mapping) else getattr(env_cfg, "type", "sim")
    if kind not in ENV_TYPES:
        raise ConfigError(f"env.type: expected one of {list(ENV_TYPES)}, got {kind!r}")
    return kind


def env_config(env_cfg):
    """A dict (from JSON) becomes the config dataclass its type names; a dataclass is returned as it is."""
    if not isinstance(env_cfg, Mapping):
        return env_cfg
    kind = env_type(env_cfg)
    if kind == "so101":
        from hilserl.envs.so101 import SO101EnvConfig

        return from_dict(SO101EnvConfig, dict(env_cfg), prefix="env")
    if kind == "gym":
        from hilserl.envs.gym_env import GymEnvConfig

        return from_dict(GymEnvConfig, dict(env_cfg), prefix="env")
    from hilserl.sim.env import GraspCubeConfig

    return from_dict(GraspCubeConfig, {k: v for k, v in env_cfg.items() if k != "type"}, prefix="env")


def make_env(env_cfg, render_mode: str | None = None):
    """The environment for `env_cfg` (a `GraspCubeConfig`, an `SO101EnvConfig` or a dict with "type")."""
    cfg = env_config(env_cfg)
    if env_type(cfg) == "so101":
        from hilserl.envs.so101 import make_so101_env

        return make_so101_env(cfg, render_mode=render_mode)
    if env_type(cfg) == "gym":
        from hilserl.envs.gym_env import GymEnvAdapter

        return GymEnvAdapter(cfg, render_mode=render_mode)
    from hilserl.sim.env import SO101GraspCubeEnv

    return SO101GraspCubeEnv(cfg, render_mode=render_mode)


def env_spaces(env_cfg):
    """(observation_space, action_space) of the env `env_cfg` describes, without building it: the learner needs
    the shapes, and must not open the robot's serial port or cameras to learn them."""
    cfg = env_config(env_cfg)
    if env_type(cfg) == "so101":
        from hilserl.envs.so101 import so101_spaces

        return so101_spaces(cfg)
    env = make_env(cfg)  # the simulation, or a gymnasium env: cheap to build, no hardware behind it
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


__all__ = ["ENV_TYPES", "env_config", "env_spaces", "env_type", "make_env"]
