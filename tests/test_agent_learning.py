"""One learning test: SAC (state-only, reference hyper-parameters, small MLPs) learns a 2-D point-reaching task.

The task: a point in the plane must reach a random goal. Observation = (position, goal - position), action = a
velocity in [-1, 1]^2 (step 0.15), reward = -distance to the goal, 20 steps per episode, no terminal state.
A random policy scores about -20; moving straight to the goal scores about -3.
"""

import numpy as np
import pytest
import torch

from hilserl.agents import SACAgent, SACConfig

HORIZON = 20


class PointReach:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def reset(self):
        self.pos = self.rng.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.rng.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self._obs()

    def _obs(self):
        return np.concatenate([self.pos, self.goal - self.pos]).astype(np.float32)

    def step(self, action):
        self.pos = np.clip(self.pos + 0.15 * np.clip(action, -1, 1), -1.5, 1.5).astype(np.float32)
        self.t += 1
        reward = -float(np.linalg.norm(self.goal - self.pos))
        return self._obs(), reward, self.t >= HORIZON


def evaluate(policy, episodes=30, seed=123):
    env = PointReach(seed)
    returns = []
    for _ in range(episodes):
        obs, total, done = env.reset(), 0.0, False
        while not done:
            obs, r, done = env.step(policy(obs))
            total += r
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.parametrize("mixed_precision", [False, True], ids=["float32", "bf16-mixed"])
def test_sac_learns_point_reaching(mixed_precision):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = SACConfig(state_dim=4, action_dim=2, hidden_dims=(64, 64), state_feature_dim=32, utd_ratio=1,
                    mixed_precision=mixed_precision)
    agent = SACAgent(cfg)
    env = PointReach(0)
    n = 3000
    buf = {k: np.zeros((n, d), np.float32) for k, d in [("obs", 4), ("next_obs", 4), ("actions", 2)]}
    rewards = np.zeros(n, np.float32)
    obs = env.reset()
    for step in range(n):
        action = rng.uniform(-1, 1, 2).astype(np.float32) if step < 300 else agent.select_action({"state": obs})
        next_obs, reward, done = env.step(action)
        buf["obs"][step], buf["next_obs"][step], buf["actions"][step], rewards[step] = obs, next_obs, action, reward
        obs = env.reset() if done else next_obs
        if step >= 300:
            idx = rng.integers(0, step + 1, 128)
            agent.update({
                "observations": {"state": torch.from_numpy(buf["obs"][idx])},
                "next_observations": {"state": torch.from_numpy(buf["next_obs"][idx])},
                "actions": torch.from_numpy(buf["actions"][idx]),
                "rewards": torch.from_numpy(rewards[idx]),
                "terminals": torch.zeros(128),  # time limits are not terminals
            })
    random_return = evaluate(lambda o: rng.uniform(-1, 1, 2))
    oracle_return = evaluate(lambda o: np.clip(o[2:] / 0.15, -1, 1))
    learned_return = evaluate(lambda o: agent.select_action({"state": o}, deterministic=True))
    print(f"random {random_return:.2f}  learned {learned_return:.2f}  oracle {oracle_return:.2f}")
    # must close at least 80% of the gap between a random policy and the straight-line oracle
    assert learned_return > random_return + 0.8 * (oracle_return - random_return)
