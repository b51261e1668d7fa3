"""The start-region curriculum: the simulation's region_scale reset option, the schedule that widens it, and the
training loop that applies it to training episodes only."""

import csv

import numpy as np
import pytest

from hilserl.config import ConfigError, load_config
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.train.config import TrainConfig
from hilserl.train.curriculum import CurriculumConfig, StartRegionCurriculum
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
    cur = StartRegionCurriculum(CurriculumConfig(enabled=True, start=0.3, step=0.25, widen_at=0.75, window=4))
    assert cur.reset_options() == {"region_scale": 0.3}
    assert [cur.update(s) for s in (True, True, False)] == [False, False, False]  # the window is not full yet
    assert not cur.update(False) and cur.scale == 0.3  # 2 of 4: not enough, the window slides on
    assert not cur.update(True)  # T F F T
    assert cur.update(True) is False and cur.update(True) and cur.scale == 0.55  # F T T T, then T T T T
    assert cur.state() == {"scale": 0.55, "recent": []}  # a new size starts a new window
    for _ in range(8):
        cur.update(True)
    assert cur.scale == 1.0 and not cur.active and not cur.update(True)  # capped at the full region
    resumed = StartRegionCurriculum(cur.cfg, {"scale": 0.55, "recent": [1, 0, 1]})
    assert resumed.scale == 0.55 and list(resumed.recent) == [True, False, True]
    off = StartRegionCurriculum(CurriculumConfig())
    assert off.reset_options() is None and off.scale == 1.0 and not off.update(True)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="train.curriculum.start"):
        load_config(TrainConfig, None, ["--train.curriculum.start=0"])
    with pytest.raises(ConfigError, match="train.curriculum.window"):
        load_config(TrainConfig, None, ["--train.curriculum.window=0"])
    with pytest.raises(ConfigError, match="train.curriculum: the start-region curriculum is the simulation's"):
        load_config(TrainConfig, "configs/so101_grasp.json", ["--train.curriculum.enabled=true",
                                                               "--train.demo_dataset=x", "--reward.classifier_path=x"])


def test_training_episodes_start_in_the_curriculum_region_and_it_widens(tmp_path):
    # the simulated human drives every episode from the first step, so every episode succeeds and widens it
    cfg = load_config(TrainConfig, None, [
        "--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=0",
        "--train.checkpoint_every=0", "--train.torch_threads=1", "--train.total_env_steps=70",
        "--buffers.online_capacity=2000", "--buffers.demo_capacity=500", "--run_name=cur", f"--output_dir={tmp_path}",
        "--human.first_takeover_after=[0, 0]", "--human.takeover_steps=[100, 100]",
        "--human.watch_probability_start=1", "--human.watch_probability_end=1",
        "--train.curriculum.enabled=true", "--train.curriculum.start=0.1", "--train.curriculum.step=0.4",
        "--train.curriculum.widen_at=1", "--train.curriculum.window=1"])
    lines = []
    res = train(cfg, log=lines.append)
    with open(res.run_dir / "metrics" / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 3 and all(r["success"] == "1" for r in rows)
    assert [float(r["start_region"]) for r in rows[:3]] == [0.1, 0.5, 0.9]
    first = rows[0]  # a tenth of the region: the cube within ~6 mm of the nominal start
    assert abs(float(first["cube_x"]) - cfg.env.ee_reset_pos[0]) < 0.1 * 0.06 + 2e-3
    assert abs(float(first["cube_y"]) - cfg.env.ee_reset_pos[1]) < 0.1 * 0.06 + 2e-3
    assert any("start region widens to 50%" in line for line in lines)
