"""The simulation's reward dataset under a randomization preset and under a held-out look: the preset reaches the
recorded frames and never draws a held-out look, a look is what the frames show, the defaults are unchanged, and
bad inputs fail naming the field (API and `hilserl reward record --sim`)."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from hilserl.cli import main as hilserl_main
from hilserl.cli_robot import load_env_config
from hilserl.reward.dataset import load_dataset
from hilserl.reward.sim_dataset import collect_sim_dataset
from hilserl.sim.env import GraspCubeConfig
from hilserl.sim.looks import LOOK_NAMES
from hilserl.sim.textures import TRAIN_FAMILIES

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "sim_pretrain.json"
SMALL = dict(num_positive=0, num_negative=16, seed=3, image_size=32, frame_keep=1.0)  # negatives only: no grasps


def _collect(path, env_config=None, **kw):
    collect_sim_dataset(path, **{**SMALL, **kw}, env_config=env_config)
    return load_dataset(path)


def _first_frames(ds, cam):
    """Each episode's reset frame (frame_keep 1: every step is stored)."""
    firsts = [np.flatnonzero(ds.episode_ids == e)[0] for e in np.unique(ds.episode_ids)]
    assert (ds.steps[firsts] == 0).all()
    return ds.images[cam][firsts].astype(np.float32)


@pytest.fixture(scope="module")
def nominal(tmp_path_factory):
    return _collect(tmp_path_factory.mktemp("nominal") / "ds")


def test_the_default_is_the_nominal_simulation_and_the_callers_config_is_not_changed(nominal, tmp_path):
    cfg = GraspCubeConfig(cameras=("gripper",))
    before = copy.deepcopy(cfg)
    again = _collect(tmp_path / "explicit", cfg)
    for cam in nominal.cameras:
        np.testing.assert_array_equal(again.images[cam], nominal.images[cam])
    np.testing.assert_array_equal(again.labels, nominal.labels)
    assert cfg == before  # the dataset works on a copy (it sets obs_type, cameras and image_size)
    info = nominal.manifest["info"]
    assert info["look"] == "nominal" and info["randomization"] == []
    assert all(e["look"] == "nominal" and e["drawn"] == {} for e in nominal.episodes)


def test_the_preset_reaches_the_frames_and_never_draws_a_heldout_look(nominal, tmp_path):
    preset = load_env_config(str(PRESET), [])
    ds = _collect(tmp_path / "preset", preset, num_negative=40)
    info = ds.manifest["info"]
    assert info["look"] == "nominal" and info["action_scale"] == preset.action_scale
    assert {"light", "colors", "camera_pose", "table_texture", "background", "distractors", "image_jpeg"} <= set(
        info["randomization"])
    for e in ds.episodes:
        assert e["look"] == "nominal" and "look" not in e["drawn"]
        assert e["drawn"]["table_texture"] in TRAIN_FAMILIES and e["drawn"]["background"] in TRAIN_FAMILIES
        assert 4500 <= e["drawn"]["color_temperature"] <= 8500
    # every episode draws a new scene: reset frames differ from the nominal ones and from each other
    n = min(len(ds.episodes), len(nominal.episodes))
    for cam in ("gripper", "front"):
        pre, nom = _first_frames(ds, cam), _first_frames(nominal, cam)
        assert np.abs(pre[:n] - nom[:n]).mean() > 8.0, cam
    if len(ds.episodes) >= 2:
        tables = {e["drawn"]["table_texture"] for e in ds.episodes} | {
            round(e["drawn"]["light_scale"], 2) for e in ds.episodes}
        assert len(tables) >= 3


@pytest.mark.parametrize("look", ["heldout_a", "heldout_b"])
def test_a_heldout_look_is_what_the_frames_show(nominal, tmp_path, look):
    ds = _collect(tmp_path / look, GraspCubeConfig(look=look))
    assert ds.manifest["info"]["look"] == look
    assert all(e["look"] == look and e["drawn"] == {"look": look} for e in ds.episodes)
    g = _first_frames(ds, "gripper")
    assert np.abs(g - _first_frames(nominal, "gripper")[:len(g)]).mean() > 8.0
    mean = g.reshape(len(g), -1, 3).mean(axis=(0, 1))
    if look == "heldout_a":  # a green cutting mat fills the gripper camera's view
        assert mean[1] > mean[0] + 10 and mean[1] > mean[2] + 10
    else:  # white marble under cool light
        assert mean.min() > 130
    # on top of the preset the look still rules the table: the hooks' own table draws are not reported
    pre = _collect(tmp_path / f"preset_{look}", load_env_config(str(PRESET), [f"--env.look={look}"]))
    for e in pre.episodes:
        assert e["drawn"]["look"] == look and "table_texture" not in e["drawn"] and "distractors" in e["drawn"]


def test_bad_inputs_name_the_field_and_write_nothing(tmp_path):
    from hilserl.envs.so101 import SO101EnvConfig

    cases = [
        (dict(env_config=GraspCubeConfig(look="heldout_z")), "env.look"),
        (dict(env_overrides={"lok": "heldout_a"}), "env.lok"),
        (dict(env_overrides={"look": "kitchen"}), "env.look"),
        (dict(env_config=SO101EnvConfig()), "env.type"),
        (dict(cameras=("gripper", "side")), "env.cameras"),
        (dict(num_positive=-1), "num_positive"),
        (dict(num_negative=2.5), "num_negative"),
        (dict(num_positive=0, num_negative=0), "num_positive, num_negative"),
        (dict(frame_keep=0.0), "frame_keep"),
        (dict(image_size=8), "env.image_size"),
    ]
    for i, (kw, field) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            collect_sim_dataset(out, **{**SMALL, **kw})
        assert not out.exists(), kw


def test_cli_records_under_a_config_and_a_look(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = hilserl_main(["reward", "record", "--sim", "--config_path", str(PRESET), "--env.look=heldout_b",
                       "--num_positive", "0", "--num_negative", "6", "--image_size", "32", "--cameras", "gripper",
                       "--out", str(out)])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["info"]["look"] == "heldout_b" and "distractors" in man["info"]["randomization"]
    assert man["cameras"] == ["gripper"] and man["image_shape"] == [32, 32, 3]  # the dataset's own, not the config's
    assert man["label_counts"] == {"positive": 0, "negative": 6}


@pytest.mark.parametrize("argv, field", [
    (["--env.look=heldout_z"], "env.look"),
    (["--env.randomization.light_scale=[1.3, 0.5]"], "env.randomization.light_scale"),
    (["--policy.lr=1"], "--policy.lr=1"),
    (["--config_path", str(ROOT / "configs" / "so101_grasp.json")], "env.type"),
    (["--config_path", "no_such.json"], "config_path"),
])
def test_cli_bad_inputs_name_the_field(tmp_path, capsys, argv, field):
    out = tmp_path / "bad"
    rc = hilserl_main(["reward", "record", "--sim", *argv, "--num_positive", "0", "--num_negative", "2",
                       "--image_size", "32", "--out", str(out)])
    assert rc == 2
    assert field in capsys.readouterr().err
    assert not (out / "manifest.json").exists()


def test_every_look_name_is_accepted():
    assert set(LOOK_NAMES) == {"nominal", "heldout_a", "heldout_b", "heldout_c"}
    for look in LOOK_NAMES:
        from hilserl.reward.sim_dataset import sim_dataset_env_config

        assert sim_dataset_env_config(GraspCubeConfig(look=look), 32, ("gripper",)).look == look
