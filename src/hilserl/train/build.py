"""The one place a run's pieces are built from its config: the environment, the simulated human, the policy's
shapes, the actor, and the demonstrations. `hilserl train`, `hilserl learner` and `hilserl actor` all build them
here, so the three cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from hilserl.agents.sac import SACAgent, SACConfig
from hilserl.config import ConfigError
from hilserl.data import Transition
from hilserl.obs_format import is_canonical_camera
from hilserl.sim.human import SimulatedHuman
from hilserl.train.actor import Actor, EpisodeStats, demo_human_config, record_demo
from hilserl.train.config import TrainConfig
from hilserl.train.curriculum import demo_reset_options


def make_env(cfg: TrainConfig):
    """The environment the actor acts in (the simulation or the real SO-101, by ``env.type``), with the reward the
    ``reward`` section describes: its success reward and step penalty, on the simulation's ground-truth success or
    on the classifier's (which then ignores the simulation's own termination)."""
    from hilserl.envs import make_env as build_env
    from hilserl.reward.wrapper import wrap_reward

    return wrap_reward(build_env(cfg.env), cfg.reward)


def make_human(cfg: TrainConfig, env, rng: np.random.Generator):
    """The simulated person (simulation only; on the real arm the person is in the env: leader arm, keys)."""
    from hilserl.envs import env_type

    return SimulatedHuman(env, cfg.human, rng) if env_type(cfg.env) == "sim" else None


def policy_config(cfg: TrainConfig, observation_space, action_space) -> SACConfig:
    """The policy config with its shape fields taken from the environment's spaces (the user never sets them):
    cameras and image size from ``pixels``, state sizes, the action size, and whether the cameras come with their
    canonical views (the simulation's ``env.canonical_view``). In discrete-gripper mode the last
    action dimension is the gripper command (close / stay / open), chosen by the discrete critic; every other
    dimension is a continuous output of the actor."""
    obs = observation_space.spaces
    all_cameras = tuple(obs["pixels"].spaces) if "pixels" in obs else ()
    # the simulation's canonical views ride along as cameras but are never a policy input (env.canonical_view)
    cameras = tuple(c for c in all_cameras if not is_canonical_camera(c))
    canonical = len(cameras) < len(all_cameras)
    image = obs["pixels"][cameras[0]].shape[:2] if cameras else cfg.policy.image_size
    env_state = obs["environment_state"].shape[0] if "environment_state" in obs else 0
    # beside cameras the environment state is privileged (the simulation's cube pose): a target, never an input
    privileged = env_state if cameras else 0
    if cfg.policy.privileged_aux_weight > 0 and not privileged:
        raise ConfigError(f"policy.privileged_aux_weight: {cfg.policy.privileged_aux_weight} needs the cube's pose "
                          "beside the camera images (the simulation's env.privileged_state=true); this environment "
                          "gives none (the real arm never does): set it to 0")
    if cfg.policy.asymmetric_critic and not privileged:
        raise ConfigError("policy.asymmetric_critic: true needs the cube's pose beside the camera images (the "
                          "simulation's env.privileged_state=true); this environment gives none (the real arm never "
                          "does): set it to false")
    if privileged and cfg.policy.privileged_aux_weight <= 0 and not cfg.policy.asymmetric_critic:
        raise ConfigError("env.privileged_state: the cube's pose is only for the privileged auxiliary loss and the "
                          "asymmetric critic; set policy.privileged_aux_weight > 0 (e.g. 1.0) or "
                          "policy.asymmetric_critic=true, or turn env.privileged_state off")
    discrete = cfg.env.gripper_mode == "discrete"
    action_dim = int(action_space.shape[0]) - (1 if discrete else 0)
    if action_dim < 1:
        raise ConfigError(f"env: the action space {action_space.shape} leaves no continuous dimension for the actor")
    return dataclasses.replace(cfg.policy, state_dim=obs["state"].shape[0], action_dim=action_dim,
                               discrete_gripper=discrete, cameras=cameras, image_size=tuple(image),
                               environment_state_dim=env_state - privileged, privileged_dim=privileged,
                               canonical_view=canonical)


def make_actor(cfg: TrainConfig, env, agent: SACAgent, human, seed: int) -> Actor:
    """An actor with the run's reward shaping (grasp penalty, action cost, action-rate cost)."""
    return Actor(env, agent, human, seed=seed, grasp_penalty=agent.config.grasp_penalty,
                 action_rate_penalty=cfg.reward.action_rate_penalty, action_penalty=cfg.reward.action_penalty)


def collect_demos(cfg: TrainConfig, env, agent: SACAgent, wanted: int, seed: int,
                  keep: Callable[[list[Transition], EpisodeStats], None], kept: int = 0, failures: int = 0,
                  first_seed_index: int = 0) -> int:
    """Record scripted-expert demonstrations (simulation: the simulated human drives every step) until `wanted`
    succeeded; each success goes to `keep(transitions, stats)`, failures are dropped. `kept` and `failures` are the
    counts from before (a resumed run): an attempt's episode is seeded by (first_seed_index + kept, failures), so a
    resumed run records the demonstrations a fresh one would. With the view curriculum on they are recorded in its
    first lesson's view (`demo_reset_options`). Returns the number of failures."""
    rng = np.random.default_rng(seed + 202)
    options = demo_reset_options(cfg.train)
    while kept < wanted:
        human = SimulatedHuman(env, demo_human_config(cfg.human), rng)
        transitions, stats = record_demo(make_actor(cfg, env, agent, human, seed + 3),
                                          first_seed_index + kept + 1000 * failures, options)
        if stats.success:
            keep(transitions, stats)
            kept += 1
            continue
        failures += 1
        if failures > 5 * max(1, wanted):
            raise RuntimeError("the scripted expert keeps failing; check env settings (workspace, cube offsets)")
    return failures
