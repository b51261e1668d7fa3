"""The SO-101 grasp-cube simulation: API, determinism, bounds, success semantics, camera."""

import numpy as np
import pytest

import hilserl  # noqa: F401
import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from hilserl.sim import ENV_ID
from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.expert import ScriptedExpert
from hilserl.sim.randomization import DomainRandomization


@pytest.fixture(scope="module")
def env():
    e = SO101GraspCubeEnv()
    yield e
    e.close()


def red_pixels(img: np.ndarray) -> int:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return int(((r > 120) & (r > 2 * g) & (r > 2 * b)).sum())


def test_gymnasium_env_checker():
    env = gym.make(ENV_ID)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_registered_spaces_and_layout(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["pixels"]["gripper"].shape == (128, 128, 3) and obs["pixels"]["gripper"].dtype == np.uint8
    assert obs["state"].shape == (SO101GraspCubeEnv.state_dim,)
    np.testing.assert_allclose(obs["state"][-3:], info["ee_pos"], atol=1e-6)
    assert env.n_substeps * env.model.opt.timestep == pytest.approx(0.1)
    assert env.max_episode_steps == 100


def test_same_seed_same_episode():
    rollouts = []
    for _ in range(2):
        e = SO101GraspCubeEnv()
        obs, _ = e.reset(seed=123)
        rng = np.random.default_rng(7)
        frames, states = [obs["pixels"]["gripper"]], [obs["state"]]
        for _ in range(15):
            obs, r, term, trunc, info = e.step(rng.uniform([-1, -1, -1, 0], [1, 1, 1, 2]).astype(np.float32))
            frames.append(obs["pixels"]["gripper"])
            states.append(obs["state"])
        rollouts.append((np.stack(frames), np.stack(states), info["cube_pos"]))
        e.close()
    np.testing.assert_array_equal(rollouts[0][0], rollouts[1][0])
    np.testing.assert_array_equal(rollouts[0][1], rollouts[1][1])
    np.testing.assert_array_equal(rollouts[0][2], rollouts[1][2])


def test_different_seeds_differ(env):
    _, a = env.reset(seed=1)
    _, b = env.reset(seed=2)
    assert not np.allclose(a["cube_pos"], b["cube_pos"])
    assert not np.allclose(a["ee_pos"], b["ee_pos"])


def test_reset_ranges(env):
    c = env.cfg
    for seed in range(20):
        _, info = env.reset(seed=seed)
        off = info["ee_pos"] - np.array(c.ee_reset_pos)
        assert np.all(np.abs(off[:2]) <= c.ee_reset_noise_xy + 2e-3)
        assert abs(off[2]) <= c.ee_reset_noise_z + 2e-3
        assert info["cube_pos"][2] == pytest.approx(0.0125, abs=1e-3)  # resting on the table
        assert not info["is_success"]


def test_every_commanded_target_stays_inside_bounds(env):
    _, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    low, high = np.array(env.cfg.workspace_low), np.array(env.cfg.workspace_high)
    for t in range(150):
        # include actions far outside [-1, 1]: they must be clipped, not trusted
        a = rng.uniform(-5, 5, size=4).astype(np.float32)
        a[3] = rng.integers(0, 3)
        if t % 50 < 25:
            a[:3] = np.sign(a[:3]) * 5  # push hard into the corners
        prev_target, prev_measured = info["ee_target"], info["ee_pos"]
        _, _, term, trunc, info = env.step(a)
        assert np.all(info["ee_target"] >= low - 1e-12) and np.all(info["ee_target"] <= high + 1e-12), info["ee_target"]
        # one tick moves the target at most action_scale per axis, from the last target or (when the arm was
        # blocked) from where the arm actually is
        moved = min(np.max(np.abs(info["ee_target"] - np.clip(anchor, low, high))) for anchor in (prev_target, prev_measured))
        assert moved <= env.cfg.action_scale + 1e-9
        if term or trunc:
            _, info = env.reset(seed=t)


def test_action_validation(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 1], np.float32))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="gripper_mode"):
        SO101GraspCubeEnv(gripper_mode="banana")
    with pytest.raises(ValueError, match="cameras"):
        SO101GraspCubeEnv(cameras=("wrist2",))
    with pytest.raises(ValueError, match="action_scale"):
        SO101GraspCubeEnv(action_scale=0)


def test_cube_visible_in_gripper_camera_at_reset(env):
    for seed in range(25):
        obs, _ = env.reset(seed=seed)
        assert red_pixels(obs["pixels"]["gripper"]) > 60, f"cube not visible at reset, seed {seed}"
    # the check can fail: with the cube moved far away it sees no red
    obs, _ = env.reset(seed=0, options={"cube_pos": (0.25, 0.6, 0.0)})
    assert red_pixels(obs["pixels"]["gripper"]) < 5


def test_gripper_camera_sees_the_held_cube(env):
    env.reset(seed=4)
    expert = ScriptedExpert(env)
    for _ in range(60):
        obs, _, term, _, info = env.step(expert.act())
        if term:
            break
    assert info["is_success"]
    assert red_pixels(obs["pixels"]["gripper"]) > 300


def _drive_to(env, target, gripper, steps=30):
    info = None
    for _ in range(steps):
        ee = env.data.site_xpos[env.tcp]
        a = np.append(np.clip((np.asarray(target) - ee) / env.cfg.action_scale, -1, 1), gripper).astype(np.float32)
        _, _, term, _, info = env.step(a)
        assert not info["is_success"]
    return info


def test_pushing_the_cube_is_not_success(env):
    _, info = env.reset(seed=0, options={"ee_pos": (0.20, 0.0, 0.05), "cube_pos": (0.25, 0.0), "cube_yaw": 0.0})
    start = info["cube_pos"].copy()
    _drive_to(env, (0.20, 0.0, 0.012), GRIPPER_CLOSE, 10)  # closed jaws, down beside the cube
    info = _drive_to(env, (0.30, 0.0, 0.012), GRIPPER_CLOSE, 25)  # sweep through it
    assert np.linalg.norm(info["cube_pos"][:2] - start[:2]) > 0.01, "the cube was not pushed: test proves nothing"


def test_squeezing_without_lifting_and_closing_on_nothing_are_not_success(env):
    _, info = env.reset(seed=0, options={"ee_pos": (0.25, 0.0, 0.05), "cube_pos": (0.25, 0.0), "cube_yaw": 0.0})
    _drive_to(env, (0.25, 0.0, 0.025), GRIPPER_OPEN, 8)
    info = _drive_to(env, (0.25, 0.0, 0.025), GRIPPER_CLOSE, 8)  # grasped but still on the table
    assert all(info["jaw_contacts"]), "cube should be between the jaws here"
    assert info["cube_bottom_height"] < env.cfg.success_lift
    # jaws closed on nothing, lifted high
    _, info = env.reset(seed=1, options={"ee_pos": (0.22, 0.05, 0.03), "cube_pos": (0.28, -0.05)})
    _drive_to(env, (0.22, 0.05, 0.03), GRIPPER_CLOSE, 5)
    info = _drive_to(env, (0.22, 0.05, 0.08), GRIPPER_CLOSE, 8)
    assert info["jaw_contacts"] == (False, False)


def test_grasp_and_lift_is_success_and_ends_episode(env):
    env.reset(seed=5)
    expert = ScriptedExpert(env)
    total = 0.0
    for t in range(100):
        _, r, term, trunc, info = env.step(expert.act())
        total += r
        if term or trunc:
            break
    assert term and not trunc and info["is_success"]
    assert all(info["jaw_contacts"]) and info["cube_bottom_height"] >= env.cfg.success_lift
    assert r == 1.0 and total == 1.0  # the env's own reward is the ground truth; the reward section shapes it


def test_ground_truth_reward_and_truncation():
    e = SO101GraspCubeEnv(control_time_s=1.0, obs_type="state")
    e.reset(seed=0)
    rewards = []
    for t in range(20):
        _, r, term, trunc, _ = e.step(np.array([0, 0, 0, GRIPPER_STAY], np.float32))
        rewards.append(r)
        if term or trunc:
            break
    assert trunc and not term and t + 1 == 10
    assert set(rewards) == {0.0}


def test_state_only_observation_has_cube_pose():
    e = SO101GraspCubeEnv(obs_type="state")
    obs, info = e.reset(seed=0)
    assert "pixels" not in obs
    np.testing.assert_allclose(obs["environment_state"][:3], info["cube_pos"], atol=1e-6)


def test_continuous_gripper_mode():
    e = SO101GraspCubeEnv(gripper_mode="continuous", obs_type="state")
    e.reset(seed=0)
    assert e.action_space.shape == (4,) and e.action_space.low[3] == -1
    for _ in range(5):
        e.step(np.array([0, 0, 0, -1.0], np.float32))
    closed = e.gripper_opening()
    for _ in range(5):
        e.step(np.array([0, 0, 0, 1.0], np.float32))
    assert closed < 0.1 and e.gripper_opening() > 0.9


def test_front_camera_optional():
    e = SO101GraspCubeEnv(cameras=("gripper", "front"))
    obs, _ = e.reset(seed=0)
    assert set(obs["pixels"]) == {"gripper", "front"}
    assert not np.array_equal(obs["pixels"]["gripper"], obs["pixels"]["front"])


def test_domain_randomization_off_by_default_and_changes_scene_when_on():
    base = SO101GraspCubeEnv()
    a0, _ = base.reset(seed=0)
    a1, _ = base.reset(seed=0)
    np.testing.assert_array_equal(a0["pixels"]["gripper"], a1["pixels"]["gripper"])
    dr = DomainRandomization(light=True, colors=True, camera_pose=True, cube_size=True, cube_friction=True,
                             cube_mass=True)
    e = SO101GraspCubeEnv(GraspCubeConfig(randomization=dr))
    b0, _ = e.reset(seed=0)
    size0 = e.model.geom_size[e.cube_geom][0]
    b1, _ = e.reset(seed=1)
    assert e.model.geom_size[e.cube_geom][0] != size0
    assert 0.011 <= size0 <= 0.014
    assert not np.array_equal(b0["pixels"]["gripper"], a0["pixels"]["gripper"])
    # the randomized cube still rests on the table and can be grasped, and the physics stays stable
    import mujoco

    unstable = (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQPOS)
    expert = ScriptedExpert(e)
    wins = 0
    for seed in range(6):
        e.reset(seed=seed)
        for _ in range(100):
            _, _, term, trunc, info = e.step(expert.act())
            assert all(e.data.warning[w].number == 0 for w in unstable), f"unstable physics, seed {seed}"
            if term or trunc:
                break
        wins += info["is_success"]
    assert wins >= 5


def test_pinned_cube_inside_the_jaws_is_refused(env):
    with pytest.raises(ValueError, match="cube_pos"):
        env.reset(seed=0, options={"ee_pos": (0.25, 0.0, 0.03), "cube_pos": (0.25, 0.0), "cube_yaw": 0.0})
    _, info = env.reset(seed=0, options={"ee_pos": (0.25, 0.0, 0.03), "cube_pos": (0.27, 0.0), "cube_yaw": 0.0})
    assert info["cube_pos"][0] == pytest.approx(0.27, abs=2e-3)
