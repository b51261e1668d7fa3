"""What the actor computes per frame in cached mode: K shifted copies' maps when the frame is stored (training),
the unshifted frame's maps only when it is not (evaluation), and the policy acts on the same unshifted maps in both."""

import numpy as np
import torch

import hilserl  # noqa: F401  (before mujoco)
from hilserl.agents.sac import SACAgent, SACConfig
from hilserl.sim.env import SO101GraspCubeEnv
from hilserl.train.actor import Actor


def test_evaluation_runs_the_backbone_on_the_unshifted_frame_only():
    torch.manual_seed(0)  # the policy's weights (an episode of a random policy can end early: 4 steps with these)
    env = SO101GraspCubeEnv(control_time_s=0.4)  # 4 steps
    agent = SACAgent(SACConfig(state_dim=env.state_dim, action_dim=3, discrete_gripper=True, cameras=("gripper",),
                               encoder="efficientnet_lite0", backbone_trim_head=True, cached_features=True,
                               num_cached_shifts=4, backbone_dtype="float32"))
    batch_sizes = []
    agent.encoder.backbone.register_forward_hook(lambda m, inp, out: batch_sizes.append(inp[0].shape[0]))
    actor = Actor(env, agent, None, seed=3)

    stored = []
    actor.run_episode(1, 0, stored.append, explore=False)
    assert len(stored) == 4 and set(batch_sizes) == {4}  # K maps per stored frame, one backbone call each
    assert stored[0].observation["features.gripper"].shape == (4, 320, 4, 4)

    batch_sizes.clear()
    seen = []
    actor.run_episode(1, 0, None, explore=False, on_step=lambda obs, info: seen.append(obs))
    assert len(seen) == 5 and set(batch_sizes) == {1}  # evaluation: the unshifted frame alone
    # the same episode (same seed), so the same first frame: the acting maps equal view 0 of the stored ones
    single = actor.processor.to_stored(seen[0], shifts=False)["features.gripper"]
    assert single.shape == (1, 320, 4, 4)
    np.testing.assert_array_equal(single[0], stored[0].observation["features.gripper"][0])
    env.close()
