"""The canonical view (env.canonical_view): the simulation renders each camera a second time in the nominal look, at
the same state, and the learner trains on both frames and pulls the randomized frame's embedding onto its canonical
twin's. The canonical frame is never a policy input."""

import mujoco
import numpy as np
import pytest
import torch

from hilserl.agents import SACAgent, SACConfig
from hilserl.config import load_config
from hilserl.envs import env_spaces
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.randomization import DomainRandomization
from hilserl.train.build import policy_config
from hilserl.train.config import TrainConfig
from hilserl.train.observations import ObservationProcessor

# every hook that changes what the camera sees, and the cube's size (physical: the canonical view follows it)
VIEW = dict(light=True, colors=True, camera_pose=True, table_texture=True, background=True, distractors=True,
            distractor_count=(2, 4), camera_fov=True, color_temperature=True, image_noise=True, image_blur=True,
            image_color=True, image_jpeg=True)


def _env(**overrides) -> SO101GraspCubeEnv:
    return SO101GraspCubeEnv(GraspCubeConfig(**{"image_size": 48, **overrides}))


def test_the_canonical_frame_is_the_nominal_scene_at_the_live_state():
    live = _env(canonical_view=True, randomization=DomainRandomization(**VIEW))
    nominal = _env()
    try:
        assert set(live.observation_space["pixels"].spaces) == {"gripper", "gripper_canonical"}
        assert set(nominal.observation_space["pixels"].spaces) == {"gripper"}  # off by default
        nominal.reset(seed=0)
        for seed in range(3):
            obs, _ = live.reset(seed=seed)
            for _ in range(3):
                obs, *_ = live.step(np.array([0.5, -0.3, -0.4, 1.0], np.float32))
            # the nominal scene posed like the live one renders exactly the canonical frame
            nominal.data.qpos[:] = live.data.qpos
            mujoco.mj_forward(nominal.model, nominal.data)
            expected = nominal.render_camera("gripper")
            np.testing.assert_array_equal(obs["pixels"]["gripper_canonical"], expected)
            # ... and the randomized frame does not look like it
            gap = np.abs(obs["pixels"]["gripper"].astype(int) - expected.astype(int)).mean()
            assert gap > 10, gap
    finally:
        live.close()
        nominal.close()


def test_the_canonical_view_follows_the_cube_size_and_needs_images():
    env = _env(canonical_view=True, randomization=DomainRandomization(cube_size=True, cube_size_range=(0.02, 0.03)))
    try:
        sizes = set()
        for seed in range(4):
            env.reset(seed=seed)
            live = env.model.geom_size[env.cube_geom]
            np.testing.assert_array_equal(env.canonical.model.geom_size[env.cube_geom], live)
            sizes.add(round(float(live[0]), 5))
        assert len(sizes) == 4  # it was randomized, and followed each time
    finally:
        env.close()
    with pytest.raises(ValueError, match="canonical_view"):
        _env(canonical_view=True, obs_type="state")


def test_the_policy_never_reads_the_canonical_view_but_the_buffer_stores_it():
    cfg = load_config(TrainConfig, "configs/sim_pretrain.json",
                      ["--env.image_size=64", "--policy.encoder=conv",
                       "--policy.cached_features=false", "--policy.backbone_trim_head=false"])
    obs_space, act_space = env_spaces(cfg.env)
    policy = policy_config(cfg, obs_space, act_space)
    assert policy.cameras == ("gripper",) and policy.canonical_view
    agent = SACAgent(policy)
    processor = ObservationProcessor(agent, obs_space)
    assert set(processor.spec) >= {"pixels.gripper", "pixels.gripper_canonical"}
    env = _env(canonical_view=True, privileged_state=True, image_size=64)
    try:
        obs, _ = env.reset(seed=1)
    finally:
        env.close()
    stored = processor.to_stored(obs)
    np.testing.assert_array_equal(stored["pixels.gripper_canonical"], obs["pixels"]["gripper_canonical"])
    acting = processor.to_stored(obs, shifts=False)  # acting only: the canonical frame is left out
    assert "pixels.gripper_canonical" not in acting and "pixels.gripper" in acting
    # an extra camera key is ignored, not an input
    action = agent.select_action(processor.to_policy(stored), deterministic=True)
    np.testing.assert_array_equal(action, agent.select_action(processor.to_policy(acting), deterministic=True))
    off = load_config(TrainConfig, "configs/sim_grasp.json", ["--env.image_size=64"])
    assert not policy_config(off, *env_spaces(off.env)).canonical_view


CFG = dict(state_dim=3, action_dim=2, discrete_gripper=True, cameras=("gripper",), image_size=(32, 32),
           encoder="conv", conv_channels=(8, 8), conv_strides=(2, 2), hidden_dims=(32, 32),
           discrete_critic_hidden_dims=(16, 16), image_feature_dim=16, state_feature_dim=8, head_dropout=0.0,
           augmentation_pad=0, mixed_precision=False, canonical_view=True)


def _batch(b: int, g: torch.Generator, same: bool = False) -> dict:
    """Canonical frames: a bright square on black. Randomized twins: the same square on a random coloured noise
    table (what changes is only the look)."""
    def obs():
        pos = torch.randint(2, 26, (b, 2), generator=g)
        canon = torch.zeros(b, 3, 32, 32, dtype=torch.uint8)
        for i, (r, c) in enumerate(pos.tolist()):
            canon[i, :, r:r + 4, c:c + 4] = 255
        table = torch.randint(0, 160, (b, 3, 1, 1), generator=g) + torch.randint(0, 60, (b, 3, 32, 32), generator=g)
        rand = torch.where(canon > 0, canon, table.to(torch.uint8))
        return {"state": torch.randn(b, 3, generator=g), "pixels.gripper": canon if same else rand,
                "pixels.gripper_canonical": canon}
    return {"observations": obs(), "next_observations": obs(), "actions": torch.cat(
                [torch.rand(b, 2, generator=g) * 2 - 1, torch.randint(0, 3, (b, 1), generator=g).float()], 1),
            "rewards": torch.randn(b, generator=g), "terminals": torch.zeros(b)}


def test_the_learner_trains_on_both_views_and_pulls_the_randomized_embedding_onto_the_canonical():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = SACAgent(SACConfig(**CFG))
    prep = agent.prepare_batch(_batch(16, g))
    assert prep["canonical_split"] == 16 and prep["obs"]["gripper"].shape[0] == 32 and prep["actions"].shape[0] == 32
    # the rows' second half is the canonical view of the same transitions; both halves bootstrap from the canonical
    torch.testing.assert_close(prep["obs"]["state"][:16], prep["obs"]["state"][16:])
    torch.testing.assert_close(prep["next_obs"]["gripper"][:16], prep["next_obs"]["gripper"][16:])
    # identical views: nothing to pull
    assert agent.update(_batch(16, g, same=True))["canonical_consistency"] == pytest.approx(0.0, abs=1e-9)
    first = [agent.update(_batch(64, g))["canonical_consistency"] for _ in range(5)]
    for _ in range(100):
        agent.update(_batch(64, g))
    last = [agent.update(_batch(64, g))["canonical_consistency"] for _ in range(5)]
    assert np.mean(last) < 0.3 * np.mean(first), (first, last)
    # without the weight the embeddings stay apart (the critic alone does not align them as fast)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    plain = SACAgent(SACConfig(**{**CFG, "canonical_consistency": 0.0}))
    for _ in range(105):
        plain.update(_batch(64, g))
    with torch.no_grad():
        b = plain.prepare_batch(_batch(64, g))
        emb = plain.encoder(b["obs"], dropout=False)
        gap = (emb[:64] - emb[64:]).pow(2).sum(-1).mean().item()
    assert gap > 2 * np.mean(last), (gap, last)


def test_a_batch_without_the_canonical_view_is_refused_by_name():
    g = torch.Generator().manual_seed(0)
    agent = SACAgent(SACConfig(**CFG))
    batch = _batch(4, g)
    del batch["observations"]["pixels.gripper_canonical"]
    with pytest.raises(KeyError, match="pixels.gripper_canonical"):
        agent.update(batch)
    with pytest.raises(ValueError, match="canonical_view"):
        SACConfig(**{**CFG, "cameras": (), "state_dim": 3})
