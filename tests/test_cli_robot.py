"""The real-arm and dataset commands, end to end through `hilserl.cli.main` (in the simulation; the hardware paths
are covered against the emulated bus in test_record.py and test_so101_arm.py)."""

import json

import numpy as np

from hilserl.cli import main
from hilserl.data.demo_dataset import DemoDataset


def test_record_then_export_then_import_round_trip(tmp_path, capsys):
    demos, lerobot, back = tmp_path / "demos", tmp_path / "lerobot", tmp_path / "back"
    args = ["--config_path", "configs/sim_grasp.json", "--env.image_size=64"]
    assert main(["record", *args, "--num_episodes", "2", "--out", str(demos)]) == 0
    assert "2 episodes saved" in capsys.readouterr().out
    assert main(["dataset", "export-lerobot", str(demos), "--out", str(lerobot), "--lossless"]) == 0
    info = json.loads((lerobot / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2
    assert main(["dataset", "import-lerobot", str(lerobot), "--out", str(back), *args]) == 0
    original, imported = list(DemoDataset.open(demos).episodes()), list(DemoDataset.open(back).episodes())
    assert [e.length for e in imported] == [e.length for e in original]
    for a, b in zip(original, imported):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert a.terminated == b.terminated
        for oa, ob in zip(a.observations, b.observations):
            np.testing.assert_array_equal(oa["state"], ob["state"])
            np.testing.assert_array_equal(oa["pixels"]["gripper"], ob["pixels"]["gripper"])  # lossless video


def test_import_refuses_a_dataset_that_does_not_fit_the_policy(tmp_path, capsys):
    demos, lerobot = tmp_path / "demos", tmp_path / "lerobot"
    assert main(["record", "--config_path", "configs/sim_grasp.json", "--env.image_size=64", "--num_episodes", "1",
                 "--out", str(demos)]) == 0
    assert main(["dataset", "export-lerobot", str(demos), "--out", str(lerobot)]) == 0
    code = main(["dataset", "import-lerobot", str(lerobot), "--out", str(tmp_path / "x"),
                 "--config_path", "configs/sim_grasp.json"])  # the policy wants 128x128 images
    assert code == 2
    err = capsys.readouterr().err
    assert "observation.images.gripper" in err and "64" in err and "128" in err


def test_camera_check_refuses_the_simulation(capsys):
    assert main(["robot", "cameras", "--config_path", "configs/sim_grasp.json"]) == 2
    assert "env.type" in capsys.readouterr().err


def test_reward_record_without_sim_needs_a_real_arm_config(tmp_path, capsys):
    assert main(["reward", "record", "--out", str(tmp_path / "r")]) == 2
    assert "--config_path" in capsys.readouterr().err
    assert main(["reward", "record", "--out", str(tmp_path / "r"), "--config_path", "configs/sim_grasp.json"]) == 2
    assert "--sim" in capsys.readouterr().err


def test_the_real_arm_config_loads_and_names_missing_calibration(tmp_path, capsys):
    from hilserl.cli_robot import load_env_config
    from hilserl.envs.so101 import SO101EnvConfig

    cfg = load_env_config("configs/so101_grasp.json", ["--env.follower_port=/dev/ttyUSB0"])
    assert isinstance(cfg, SO101EnvConfig) and cfg.follower_port == "/dev/ttyUSB0"
    assert cfg.cameras["gripper"].crop == (0, 80, 480, 480)
    # no calibration file on this machine: the command stops with the key to fix, before touching any port
    code = main(["record", "--config_path", "configs/so101_grasp.json", "--out", str(tmp_path / "d"),
                 f"--env.follower_calibration={tmp_path / 'missing.json'}"])
    assert code == 2
    assert "env.follower_calibration" in capsys.readouterr().err


def test_record_stores_the_reward_sections_values(tmp_path, capsys):
    """`hilserl record` reads the success reward and step penalty from the config's reward section (their only
    home) and takes --reward.key=value overrides; other sections' overrides still do not apply here."""
    demos = tmp_path / "demos"
    assert main(["record", "--config_path", "configs/sim_grasp_state.json", "--num_episodes", "1", "--out",
                 str(demos), "--reward.success_reward=3", "--reward.step_penalty=-0.25"]) == 0
    (episode,) = list(DemoDataset.open(demos).episodes())
    assert episode.terminated and episode.rewards[-1] == 3.0 and np.all(episode.rewards[:-1] == -0.25)
    assert main(["record", "--config_path", "configs/sim_grasp_state.json", "--out", str(tmp_path / "x"),
                 "--policy.utd_ratio=3"]) == 2
    assert "only --env.key=value or --reward.key=value" in capsys.readouterr().err
