"""MuJoCo simulation of the SO-101 grasping a cube: scene, gymnasium env, scripted expert.

Importing this package registers ``hilserl/SO101GraspCube-v0`` with gymnasium. MuJoCo itself is imported lazily
(by the env module) so that the GL backend can be chosen first.
"""

import gymnasium as gym

ENV_ID = "hilserl/SO101GraspCube-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="hilserl.sim.env:SO101GraspCubeEnv", max_episode_steps=None)
