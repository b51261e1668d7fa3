"""Environments behind one factory: the MuJoCo simulation (``env.type = "sim"``) and the real SO-101
(``"so101"``, `SO101RealEnv`). The real env's modules load on first use, so the simulation never imports the
camera and teleoperation code."""

from hilserl.envs.factory import ENV_TYPES, env_config, env_spaces, env_type, make_env

__all__ = ["ENV_TYPES", "env_config", "env_spaces", "env_type", "make_env"]
