"""The curricula: the start region (the simulation's region_scale reset option) and the randomized view (its
view_share reset option), the schedule that grows them, and the training loop that applies them to training
episodes only."""

import csv

import numpy as np
import pytest

from hilserl.config import ConfigError, load_config
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.train.config import TrainConfig
from hilserl.sim.randomization import VIEW_HOOKS, DomainRandomization
from hilserl.agents.registry import make_agent
from hilserl.train.build import collect_demos, make_env, policy_config
from hilserl.train.curriculum import Curriculum, CurriculumConfig, TrainingCurricula
from hilserl.train.loop import train


def test_region_scale_shrinks_the_cube_and_gripper_start_region():
    cfg = GraspCubeConfig(obs_type="state")
    env = SO101GraspCubeEnv(cfg)
    nominal = np.array(cfg.ee_reset_pos)

    def starts(scale):
        out = []
        for seed in range(25):
            _, info = env.reset(seed=seed, options={"region_scale": scale})
            out.append((info["ee_pos"] - nominal, info["cube_pos"][:2] - info["ee_pos"][:2]))
        return out

    small, full = starts(0.2), starts(1.0)
    for ee, cube in small:  # reset noise and cube offset both at a fifth (the tool point settles ~1 mm)
        assert np.all(np.abs(ee[:2]) <= 0.2 * cfg.ee_reset_noise_xy + 2e-3)
        assert np.all(np.abs(cube) <= 0.2 * cfg.cube_offset_xy + 2e-3)
    assert max(np.abs(c).max() for _, c in full) > 2 * 0.2 * cfg.cube_offset_xy  # the full region is wider
    with pytest.raises(ValueError, match="region_scale: expected a fraction in \\[0, 1\\], got 1.5"):
        env.reset(seed=0, options={"region_scale": 1.5})
    env.close()


def test_the_region_widens_after_enough_successes_at_its_size():
    cur = Curriculum(CurriculumConfig(enabled=True, start=0.3, step=0.25, widen_at=0.75, window=4))
    assert cur.reset_options() == {"region_scale": 0.3}
    assert [cur.update(s) for s in (True, True, False)] == [False, False, False]  # the window is not full yet
    assert not cur.update(False) and cur.scale == 0.3  # 2 of 4: not enough, the window slides on
    assert not cur.update(True)  # T F F T
    assert cur.update(True) is False and cur.update(True) and cur.scale == 0.55  # F T T T, then T T T T
    assert cur.state() == {"scale": 0.55, "recent": []}  # a new size starts a new window
    for _ in range(8):
        cur.update(True)
    assert cur.scale == 1.0 and not cur.active and not cur.update(True)  # capped at the full region
    resumed = Curriculum(cur.cfg, {"scale": 0.55, "recent": [1, 0, 1]})
    assert resumed.scale == 0.55 and list(resumed.recent) == [True, False, True]
    off = Curriculum(CurriculumConfig())
    assert off.reset_options() is None and off.scale == 1.0 and not off.update(True)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="train.curriculum.start"):
        load_config(TrainConfig, None, ["--train.curriculum.start=1.5"])
    with pytest.raises(ConfigError, match="train.curriculum.window"):
        load_config(TrainConfig, None, ["--train.curriculum.window=0"])
    with pytest.raises(ConfigError, match="train.curriculum: the start-region curriculum is the simulation's"):
        load_config(TrainConfig, "configs/so101_grasp.json", ["--train.curriculum.enabled=true",
                                                               "--train.demo_dataset=x", "--reward.classifier_path=x"])
    with pytest.raises(ConfigError, match="train.view_curriculum: there is no view to randomize"):
        load_config(TrainConfig, "configs/sim_grasp.json", ["--train.view_curriculum.enabled=true"])
    with pytest.raises(ConfigError, match="train.view_curriculum: the randomized-view curriculum is the simulation's"):
        load_config(TrainConfig, "configs/so101_grasp.json", ["--train.view_curriculum.enabled=true",
                                                               "--train.demo_dataset=x", "--reward.classifier_path=x"])
    cfg = load_config(TrainConfig, "configs/sim_pretrain.json", ["--train.view_curriculum.enabled=true"])
    assert cfg.train.view_curriculum.start == 0.0  # every episode nominal at first


def _train_episode_rows(tmp_path, steps: int, takeover_after: int, overrides: list[str], log) -> list[dict]:
    """A tiny state run in which the simulated person watches every episode and takes over from tick
    `takeover_after` to the end; its episodes.csv rows."""
    cfg = load_config(TrainConfig, None, [
        "--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=0",
        "--train.checkpoint_every=0", "--train.torch_threads=1", f"--train.total_env_steps={steps}",
        "--buffers.online_capacity=2000", "--buffers.demo_capacity=500", "--run_name=cur", f"--output_dir={tmp_path}",
        f"--human.first_takeover_after=[{takeover_after}, {takeover_after}]", "--human.takeover_steps=[100, 100]",
        "--human.watch_probability_start=1", "--human.watch_probability_end=1", *overrides])
    res = train(cfg, log=log)
    with open(res.run_dir / "metrics" / "episodes.csv") as f:
        return list(csv.DictReader(f))


def test_training_episodes_follow_both_curricula_and_they_grow(tmp_path):
    # the simulated human drives every episode from the first step, so every episode succeeds and widens it
    lines = []
    rows = _train_episode_rows(tmp_path, 70, 0, [
        "--train.curriculum.enabled=true", "--train.curriculum.start=0.1", "--train.curriculum.step=0.4",
        "--train.curriculum.widen_at=1", "--train.curriculum.window=1", "--env.randomization.light=true",
        "--train.view_curriculum.enabled=true", "--train.view_curriculum.step=0.5",
        "--train.view_curriculum.widen_at=1", "--train.view_curriculum.window=1"], lines.append)
    assert len(rows) >= 3 and all(r["success"] == "1" for r in rows)
    assert [float(r["start_region"]) for r in rows[:3]] == [0.1, 0.5, 0.9]
    assert [float(r["view_share"]) for r in rows[:3]] == [0.0, 0.5, 1.0]
    first = rows[0]  # a tenth of the region: the cube within ~6 mm of the nominal start
    nominal = GraspCubeConfig().ee_reset_pos
    assert abs(float(first["cube_x"]) - nominal[0]) < 0.1 * 0.06 + 2e-3
    assert abs(float(first["cube_y"]) - nominal[1]) < 0.1 * 0.06 + 2e-3
    assert any("start region widens to 50%" in line for line in lines)
    assert any("50% of the training episodes now get a randomized view" in line for line in lines)


def test_view_share_draws_the_view_hooks_in_that_share_of_episodes_and_the_physics_in_every_one():
    hooks = {h: True for h in (*VIEW_HOOKS, "cube_friction", "gripper_backlash")}
    cfg = GraspCubeConfig(obs_type="state", randomization=DomainRandomization(**hooks))
    cfg.scene.randomization_assets = True
    env = SO101GraspCubeEnv(cfg)
    r = env.randomizer
    nominal_fovy, nominal_light = r.nominal["cam_fovy"], r.nominal["light_diffuse"].copy()

    def view_is_nominal() -> bool:
        m = env.model
        return (m.cam_fovy[r.cam] == nominal_fovy and np.array_equal(m.light_diffuse, nominal_light)
                and np.array_equal(m.cam_pos[r.cam], r.nominal["cam_pos"])
                and m.geom_matid[r.table_geom] == r.nominal["table_matid"]
                and np.all(m.geom_group[r.distractor_geoms] != 1) and r.effects.image is None)

    seen = {}
    for share in (0.0, 0.5, 1.0):
        views = []
        for seed in range(40):
            env.reset(seed=seed, options={"view_share": share})
            drawn = env._randomization
            assert drawn["view_randomized"] is r.view and "cube_friction" in drawn and "gripper_backlash" in drawn
            assert view_is_nominal() is not r.view  # nominal exactly when the episode's view is not randomized
            views.append(r.view)
        seen[share] = sum(views)
    assert seen[0.0] == 0 and seen[1.0] == 40 and 10 <= seen[0.5] <= 30
    env.reset(seed=0)  # no option: the view hooks as configured, every episode
    assert r.view and not view_is_nominal()
    with pytest.raises(ValueError, match="view_share: expected a probability in \\[0, 1\\], got 2"):
        env.reset(seed=0, options={"view_share": 2})
    env.close()


def test_demos_are_recorded_in_the_view_curriculums_first_lesson():
    # randomized-view demos beside nominal-view training episodes would let the critic read success off the look
    def demo_views(overrides: list[str]) -> list[bool]:
        cfg = load_config(TrainConfig, None, ["--env.obs_type=state", "--env.randomization.light=true",
                                              "--policy.hidden_dims=[32, 32]", *overrides])
        env = make_env(cfg)
        agent = make_agent(policy_config(cfg, env.observation_space, env.action_space))
        views = []
        collect_demos(cfg, env, agent, 3, 0, lambda transitions, stats: views.append(env.unwrapped.randomizer.view))
        env.close()
        return views

    assert demo_views([]) == [True, True, True]  # no curriculum: the view hooks as configured
    assert demo_views(["--train.view_curriculum.enabled=true"]) == [False, False, False]  # first lesson: nominal
    assert demo_views(["--train.view_curriculum.enabled=true", "--train.view_curriculum.start=1"]) == [True] * 3


def test_both_curricula_set_their_reset_options_and_keep_their_state():
    loop = TrainConfig().train
    loop.curriculum = CurriculumConfig(enabled=True, start=0.5, step=0.5, window=1, widen_at=1.0)
    loop.view_curriculum = CurriculumConfig(enabled=True, start=0.0, step=0.25, window=2, widen_at=1.0)
    both = TrainingCurricula(loop)
    assert both.reset_options() == {"region_scale": 0.5, "view_share": 0.0}
    lines = []
    won = _stats(True, False, None)
    assert both.after_episode(won, lines.append) == {"start_region": 0.5, "view_share": 0.0}
    assert both.after_episode(won, lines.append) == {"start_region": 1.0, "view_share": 0.0}
    assert both.reset_options() == {"region_scale": 1.0, "view_share": 0.25}
    assert lines == ["curriculum: the start region widens to 100% of its full size",
                     "curriculum: 25% of the training episodes now get a randomized view"]
    resumed = TrainingCurricula(loop, both.state())
    assert resumed.reset_options() == both.reset_options() and resumed.state() == both.state()
    assert TrainingCurricula(TrainConfig().train).reset_options() is None  # both off: the env's own resets


def test_a_start_given_back_as_reset_options_is_the_same_start():
    env = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state"))
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        again_obs, again = env.reset(seed=seed + 100, options=info["start"])
        np.testing.assert_allclose(again["ee_pos"], info["ee_pos"], atol=1e-6)
        np.testing.assert_allclose(again["cube_pos"], info["cube_pos"], atol=1e-6)
        np.testing.assert_allclose(again["cube_quat"], info["cube_quat"], atol=1e-6)
        np.testing.assert_allclose(again_obs["state"], obs["state"], atol=1e-5)
    env.close()


def _stats(success: bool, helped: bool, start: dict | None):
    from hilserl.train.actor import EpisodeStats

    return EpisodeStats(1, 10, 0.0, 10, success, int(helped), (0.0, 0.0), (0.0, 0.0, 0.0), {}, start)


def test_hard_starts_keep_what_the_policy_did_not_manage_alone_and_replay_it_until_it_does():
    from hilserl.train.curriculum import HardStarts, HardStartsConfig

    hard = HardStarts(HardStartsConfig(share=1.0, keep=2, tries=2), seed=0)
    start = {"ee_pos": [0.25, 0.0, 0.03], "cube_pos": [0.26, 0.01], "cube_yaw": 0.1}
    assert hard.reset_options(1) is None  # nothing kept yet: a fresh start
    assert hard.after_episode(True, False, dict(start, cube_yaw=0.0)) == {"hard_start": 0}  # managed alone
    assert hard.kept == []
    hard.after_episode(True, True, start)  # the person had to step in: kept
    assert hard.reset_options(2) == start
    assert hard.after_episode(False, False, {"cube_yaw": 9}) == {"hard_start": 1}  # a replay is not kept again
    assert hard.kept == [{"start": start, "tries": 1}]
    assert hard.reset_options(3) == start
    hard.after_episode(False, False, start)
    assert hard.kept == []  # dropped after `tries` replays
    for i in range(3):  # only the most recent `keep`
        hard.after_episode(False, False, {"i": i})
    assert [k["start"] for k in hard.kept] == [{"i": 1}, {"i": 2}]
    resumed = HardStarts(hard.cfg, 0, hard.state())
    assert resumed.kept == hard.kept
    assert resumed.reset_options(7) == hard.reset_options(7)  # the draw is (seed, episode)'s
    hard.reset_options(8)
    hard.after_episode(True, False, None)  # managed alone: dropped at once
    assert len(hard.kept) == 1
    some = HardStarts(HardStartsConfig(share=0.3), seed=1, state={"kept": [{"start": start, "tries": 0}]})
    replays = sum(some.reset_options(e) is not None for e in range(1000))
    assert 240 <= replays <= 360
    off = HardStarts(HardStartsConfig(), seed=0)
    assert off.after_episode(False, False, start) == {} and off.reset_options(1) is None


def test_training_replays_hard_starts(tmp_path):
    # the person steps in on every episode (from the 5th tick): every start is kept, and replayed half the time
    rows = _train_episode_rows(tmp_path, 300, 5, ["--train.hard_starts.share=0.5", "--train.hard_starts.tries=100"],
                               lambda line: None)
    replayed = [r for r in rows if r["hard_start"] == "1"]
    fresh = [(r["cube_x"], r["cube_y"]) for r in rows if r["hard_start"] == "0"]
    assert rows[0]["hard_start"] == "0" and len(replayed) >= 2 and len(rows) >= 6
    for r in replayed:  # a replay starts the cube where an earlier fresh episode had it
        assert (r["cube_x"], r["cube_y"]) in fresh
