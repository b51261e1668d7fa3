"""Any gymnasium environment as a hilserl environment (``env.type: gym``).

The env must have a Dict observation space holding camera images (uint8 H×W×3) and/or a 1-D state vector, and a
Box action space with finite bounds. `GymEnvConfig.key_map` says which observation key is what:

    {"type": "gym", "id": "my_pkg.envs:Reach-v0", "kwargs": {"size": 2},
     "key_map": {"image": "pixels.front", "agent_pos": "state"}, "gripper_mode": "none"}

``"pixels.<camera>"`` names a camera (the policy sees it under that name), ``"state"`` the proprioception (several
keys mapped to "state" are concatenated in the order given). A key left out of the map is dropped. Without a
map, an observation that already has hilserl's layout (``pixels``: a Dict of cameras, ``state``) is used as is.
An id of the form ``"module:EnvId"`` imports the module first (gymnasium's convention), which is how an env from
your own package gets registered.

Actions: the policy acts on [-1, 1] per dimension; the adapter scales each dimension to the env's bounds.
``gripper_mode``: "none" (every dimension continuous), "continuous" (the last dimension is a gripper, continuous
like the others) or "discrete" (the last dimension is a gripper command chosen by the agent's discrete critic:
0 close → the env's lower bound, 2 open → the upper bound, 1 stay → the last command; an episode starts open).

Rewards, termination and truncation are the env's own. ``info["is_success"]`` (the gymnasium-robotics convention)
is what evaluations count as a success. There is no simulated human or scripted expert for a foreign env: train
with ``human.enabled=false`` and ``train.num_demos=0``, or give recorded demonstrations (``train.demo_dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hilserl.config import ConfigError
from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN
from hilserl.obs_format import PIXELS, STATE, camera_of, is_pixel_key

GRIPPER_MODES = ("none", "continuous", "discrete")


@dataclass
class GymEnvConfig:
    type: str = "gym"
    id: str = ""  # a registered gymnasium id, or "module:EnvId" to import the module that registers it first
    kwargs: dict = field(default_factory=dict)  # passed to gymnasium.make
    key_map: dict = field(default_factory=dict)  # env observation key -> "pixels.<camera>" or "state"
    gripper_mode: str = "none"  # "none", "continuous" or "discrete" (the last action dimension is the gripper)
    fps: int = 10  # control rate of the env, for videos

    def validate(self) -> None:
        if not self.id:
            raise ValueError("id: expected a registered gymnasium env id (or 'module:EnvId'), got ''")
        if self.gripper_mode not in GRIPPER_MODES:
            raise ValueError(f"gripper_mode: expected one of {list(GRIPPER_MODES)}, got {self.gripper_mode!r}")
        for key, target in self.key_map.items():
            if target != STATE and not is_pixel_key(target):
                raise ValueError(f"key_map.{key}: expected 'state' or 'pixels.<camera>', got {target!r}")
        if self.fps < 1:
            raise ValueError(f"fps: expected >= 1, got {self.fps}")


def _layout(inner: spaces.Dict, key_map: dict) -> tuple[dict[str, tuple], list[tuple]]:
    """(camera name -> path of its key, state key paths in order) from the key map, or from hilserl's own layout
    (``pixels``: a Dict of cameras, ``state``) when there is no map."""
    if not key_map:
        pixels = inner.spaces.get(PIXELS)
        cameras = {cam: (PIXELS, cam) for cam in pixels.spaces} if isinstance(pixels, spaces.Dict) else {}
        return cameras, [(STATE,)] if STATE in inner.spaces else []
    missing = [k for k in key_map if k not in inner.spaces]
    if missing:
        raise ConfigError(f"env.key_map: the env's observation has no key {missing[0]!r} (it has "
                          f"{sorted(inner.spaces)})")
    cameras = {camera_of(t): (k,) for k, t in key_map.items() if is_pixel_key(t)}
    return cameras, [(k,) for k, t in key_map.items() if t == STATE]


def _get(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


class GymEnvAdapter(gym.Env):
    """hilserl's view of a gymnasium env: observations as {"pixels": {camera: HxWx3}, "state": vector}, actions on
    [-1, 1] (plus a close/stay/open command in discrete gripper mode)."""

    metadata = {"render_modes": []}

    def __init__(self, cfg: GymEnvConfig, render_mode: str | None = None):
        cfg.validate()
        self.cfg = cfg
        self.inner = gym.make(cfg.id, **cfg.kwargs)
        inner_obs, inner_act = self.inner.observation_space, self.inner.action_space
        if not isinstance(inner_obs, spaces.Dict):
            raise ConfigError(f"env.id: {cfg.id} has a {type(inner_obs).__name__} observation space; hilserl needs a "
                              "Dict of camera images and/or a state vector")
        if not isinstance(inner_act, spaces.Box) or inner_act.shape is None or len(inner_act.shape) != 1:
            raise ConfigError(f"env.id: {cfg.id} needs a 1-D Box action space, it has {inner_act}")
        if not (np.all(np.isfinite(inner_act.low)) and np.all(np.isfinite(inner_act.high))):
            raise ConfigError(f"env.id: {cfg.id}'s action bounds must be finite to scale [-1, 1] to them")
        self._low, self._high = inner_act.low.astype(np.float64), inner_act.high.astype(np.float64)
        self._cameras, self._state_keys = _layout(inner_obs, cfg.key_map)
        self.observation_space = self._observation_space(inner_obs)
        n = inner_act.shape[0]
        if cfg.gripper_mode == "discrete":
            low, high = -np.ones(n, np.float32), np.ones(n, np.float32)
            low[-1], high[-1] = 0.0, 2.0
            self.action_space = spaces.Box(low, high, dtype=np.float32)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        self._gripper = self._high[-1]

    def _observation_space(self, inner: spaces.Dict) -> spaces.Dict:
        out = {}
        if self._cameras:
            cams = {}
            for cam, key in self._cameras.items():
                sp = _get(inner, key)
                if not (isinstance(sp, spaces.Box) and sp.dtype == np.uint8 and len(sp.shape) == 3
                        and sp.shape[2] == 3):
                    raise ConfigError(f"env.key_map.{'.'.join(key)}: a camera must be a uint8 H×W×3 Box, got {sp}")
                cams[cam] = sp
            out[PIXELS] = spaces.Dict(cams)
        if self._state_keys:
            sizes = []
            for key in self._state_keys:
                sp = _get(inner, key)
                if not isinstance(sp, spaces.Box) or len(sp.shape) != 1:
                    raise ConfigError(f"env.key_map.{'.'.join(key)}: the state must be 1-D Boxes, got {sp}")
                sizes.append(sp.shape[0])
            out[STATE] = spaces.Box(-np.inf, np.inf, shape=(sum(sizes),), dtype=np.float32)
        if STATE not in out:
            raise ConfigError("env.key_map: map at least one observation key to 'state' (the policy's proprioception)")
        return spaces.Dict(out)

    def _obs(self, obs: dict) -> dict:
        out = {STATE: np.concatenate([np.asarray(_get(obs, k), np.float32).ravel() for k in self._state_keys])}
        if self._cameras:
            out[PIXELS] = {cam: np.asarray(_get(obs, path), np.uint8) for cam, path in self._cameras.items()}
        return out

    def _scaled(self, action) -> np.ndarray:
        a = np.asarray(action, np.float64).copy()
        if self.cfg.gripper_mode == "discrete":
            cmd = int(round(float(a[-1])))
            if cmd == GRIPPER_CLOSE:
                self._gripper = self._low[-1]
            elif cmd == GRIPPER_OPEN:
                self._gripper = self._high[-1]
            arm = np.clip(a[:-1], -1.0, 1.0)
            scaled = self._low[:-1] + (arm + 1.0) / 2.0 * (self._high[:-1] - self._low[:-1])
            return np.append(scaled, self._gripper).astype(np.float32)
        a = np.clip(a, -1.0, 1.0)
        return (self._low + (a + 1.0) / 2.0 * (self._high - self._low)).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._gripper = self._high[-1]
        obs, info = self.inner.reset(seed=seed, options=options)
        return self._obs(obs), dict(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.inner.step(self._scaled(action))
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), dict(info)

    def close(self) -> None:
        self.inner.close()
