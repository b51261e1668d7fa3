"""Domain randomization and held-out looks: each hook changes what it says and only that, all hooks off is the
nominal scene, the held-out looks are never drawn in training, configs/sim_pretrain.json loads and steps."""

import colorsys
import json
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

import hilserl  # noqa: F401  (chooses the GL backend before MuJoCo loads)
import mujoco

from hilserl.config import ConfigError, load_config
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.expert import ScriptedExpert, expert_success_rate
from hilserl.sim.looks import LOOK_NAMES, LOOKS, look_texture
from hilserl.sim.randomization import _AFTER, _BEFORE, DomainRandomization
from hilserl.sim.scene import DR_HIDDEN_GROUP, JAW_CLOSED_ANGLE, JAW_OPEN_ANGLE, SceneConfig
from hilserl.sim.textures import HELDOUT_FAMILIES, TRAIN_FAMILIES, TRAIN_VALUE, draw_training_texture, pattern
from hilserl.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "configs" / "sim_pretrain.json"
SIZE = 64


def make(look="nominal", scene=None, obs_type="pixels_state", **hooks) -> SO101GraspCubeEnv:
    return SO101GraspCubeEnv(GraspCubeConfig(image_size=SIZE, cameras=("gripper", "front"), obs_type=obs_type,
                                             look=look, scene=scene or SceneConfig(),
                                             randomization=DomainRandomization(**hooks)))


def rollout(env, seed=0, steps=6, options=None):
    """Reset and step a fixed random action sequence; returns per-tick (state, cube pos, gripper img, front img)."""
    obs, info = env.reset(seed=seed, options=options)
    rng = np.random.default_rng(1)
    out = [(obs["state"], info["cube_pos"], obs["pixels"]["gripper"], obs["pixels"]["front"])]
    for _ in range(steps):
        obs, _, _, _, info = env.step(rng.uniform([-1, -1, -1, 0], [1, 1, 1, 2]).astype(np.float32))
        out.append((obs["state"], info["cube_pos"], obs["pixels"]["gripper"], obs["pixels"]["front"]))
    return out


def segment(env, camera: str) -> np.ndarray:
    """Geom id under every pixel (-1: none), seen with the camera renderer's geom groups."""
    r = mujoco.Renderer(env.model, SIZE, SIZE)
    r.enable_segmentation_rendering()
    opt = mujoco.MjvOption()
    opt.geomgroup[:] = 0
    opt.geomgroup[:3] = 1
    r.update_scene(env.data, camera, opt)
    seg = r.render()
    r.close()
    return np.where(seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, seg[..., 0], -1)


def same_physics(a, b) -> None:
    for (sa, ca, *_), (sb, cb, *_) in zip(a, b):
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(ca, cb)


@pytest.fixture(scope="module")
def nominal():
    e = make()
    yield e
    e.close()


# ---------------------------------------------------------------- all hooks off


def test_all_hooks_off_is_the_nominal_scene():
    dr = DomainRandomization()
    assert not dr.any and not dr.before_placement and not dr.after_placement
    plain = make(scene=SceneConfig(randomization_assets=False))  # the scene as it was before the hooks' assets
    full = make()
    assert full.model.stat.extent == plain.model.stat.extent  # the hidden walls leave the near plane alone
    np.testing.assert_array_equal(full.model.stat.center, plain.model.stat.center)
    for env in (plain, full):
        env.reset(seed=3)
    expert_a, expert_b = ScriptedExpert(plain), ScriptedExpert(full)
    for _ in range(25):
        oa, *_ = plain.step(expert_a.act())
        ob, *_ = full.step(expert_b.act())
        np.testing.assert_array_equal(oa["state"], ob["state"])
        for cam in ("gripper", "front"):
            np.testing.assert_array_equal(oa["pixels"][cam], ob["pixels"][cam])
    with pytest.raises(ValueError, match="env.scene.randomization_assets"):
        make(scene=SceneConfig(randomization_assets=False), table_texture=True)


# ---------------------------------------------------------------- each hook changes what it says, only that

# model fields each hook may change at reset (by row name where the field has named rows)
MODEL_FIELDS = ("light_diffuse", "light_dir", "mat_rgba", "cam_pos", "cam_quat", "cam_fovy", "geom_size",
                "geom_friction", "geom_matid", "geom_group", "geom_pos", "geom_quat", "body_mass", "body_inertia",
                "tex_data")
DISTRACTORS = {f"distractor{i}" for i in range(4)}
CHANGES = {
    "light": {"light_diffuse": {"top"}, "light_dir": {"top"}},
    "colors": {"mat_rgba": {"cube", "table"}},
    "camera_pose": {"cam_pos": {"gripper"}, "cam_quat": {"gripper"}},
    "cube_size": {"geom_size": {"cube"}, "body_inertia": {"cube"}},
    "cube_friction": {"geom_friction": {"cube"}},
    "cube_mass": {"body_mass": {"cube"}, "body_inertia": {"cube"}},
    "table_texture": {"geom_matid": {"table"}, "tex_data": {"table_dr"}},
    "background": {"geom_group": {"backdrop_back", "backdrop_side"}, "tex_data": {"backdrop_dr"}},
    "distractors": {"geom_group": DISTRACTORS, "geom_pos": DISTRACTORS, "geom_quat": DISTRACTORS,
                    "mat_rgba": DISTRACTORS},
    "camera_fov": {"cam_fovy": {"gripper"}},
    "color_temperature": {"light_diffuse": {"top"}, "headlight": {"ambient", "diffuse"}},
    "image_noise": {}, "image_blur": {}, "image_color": {}, "image_jpeg": {}, "action_latency": {}, "gripper_backlash": {},
}
ROWS = {"light": mujoco.mjtObj.mjOBJ_LIGHT, "mat": mujoco.mjtObj.mjOBJ_MATERIAL, "cam": mujoco.mjtObj.mjOBJ_CAMERA,
        "geom": mujoco.mjtObj.mjOBJ_GEOM, "body": mujoco.mjtObj.mjOBJ_BODY}


def changed_rows(m0, m1) -> dict[str, set[str]]:
    out = {}
    for f in MODEL_FIELDS:
        a, b = getattr(m0, f), getattr(m1, f)
        if f == "tex_data":
            rows = {m0.texture(t).name for t in range(m0.ntex) if not np.array_equal(
                a[m0.tex_adr[t]:m0.tex_adr[t] + m0.tex_width[t] * m0.tex_height[t] * 3],
                b[m0.tex_adr[t]:m0.tex_adr[t] + m0.tex_width[t] * m0.tex_height[t] * 3])}
        else:
            kind = ROWS[f.split("_")[0]]
            rows = {mujoco.mj_id2name(m0, kind, i) for i in range(len(a)) if not np.array_equal(a[i], b[i])}
        if rows:
            out[f] = rows
    head = {k for k in ("ambient", "diffuse") if not np.array_equal(getattr(m0.vis.headlight, k),
                                                                     getattr(m1.vis.headlight, k))}
    if head:
        out["headlight"] = head
    return out


def test_every_hook_is_listed():
    flags = [f.name for f in fields(DomainRandomization) if f.type in (bool, "bool")]
    assert sorted(flags) == sorted(_BEFORE + _AFTER) == sorted(CHANGES)


@pytest.mark.parametrize("hook", sorted(CHANGES))
def test_each_hook_changes_only_its_model_fields(nominal, hook):
    env = make(obs_type="state", **{hook: True})
    nominal.reset(seed=5)
    changed: dict[str, set[str]] = {}
    for seed in range(5, 8):  # a few draws: whatever a hook touches it may touch in any of them
        env.reset(seed=seed)
        for f, rows in changed_rows(nominal.model, env.model).items():
            changed.setdefault(f, set()).update(rows)
    assert changed == CHANGES[hook], changed
    env.close()


@pytest.mark.parametrize("hook", sorted(set(_AFTER) - {"action_latency", "gripper_backlash"}))
def test_appearance_and_image_hooks_never_change_the_physics(nominal, hook):
    """Drawn after placement: the same seed gives the same start state and the same motion; pixels change."""
    env = make(**{hook: True})
    a, b = rollout(nominal, seed=2), rollout(env, seed=2)
    same_physics(a, b)
    cams = (3,) if hook == "background" else (2,)  # the backdrop stands beyond what the gripper camera sees
    assert any(not np.array_equal(x[c], y[c]) for x, y in zip(a, b) for c in cams), hook
    env.close()


def _diff_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=-1)


def test_table_texture_changes_table_pixels_only_and_is_uploaded(nominal):
    env = make(table_texture=True)
    pin = {"ee_pos": (0.25, 0.0, 0.06), "cube_pos": (0.26, 0.01), "cube_yaw": 0.3}
    img0 = env.reset(seed=0, options=pin)[0]["pixels"]["gripper"]
    ref = nominal.reset(seed=0, options=pin)[0]["pixels"]["gripper"]
    seg = segment(env, "gripper")
    np.testing.assert_array_equal(seg, segment(nominal, "gripper"))
    diff = _diff_pixels(img0, ref)
    table = env.model.geom("table").id
    assert diff.sum() > 100 and np.all(seg[diff] == table)  # every changed pixel is the table's
    img1 = env.reset(seed=1, options=pin)[0]["pixels"]["gripper"]  # a new texture, uploaded to the renderer
    assert _diff_pixels(img0, img1)[seg == table].mean() > 0.3
    np.testing.assert_array_equal(img0[seg == env.cube_geom], img1[seg == env.cube_geom])
    env.close()


def test_distractors_are_visual_only_and_placed_away_from_the_cube(nominal):
    env = make(distractors=True, distractor_count=(4, 4))
    ids = [env.model.geom(n).id for n in sorted(DISTRACTORS)]
    assert all(env.model.geom_contype[g] == 0 and env.model.geom_conaffinity[g] == 0 for g in ids)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        shown = [g for g in ids if env.model.geom_group[g] != DR_HIDDEN_GROUP]
        assert len(shown) >= 3
        for g in shown:
            d = np.linalg.norm(env.data.geom_xpos[g][:2] - info["cube_pos"][:2])
            assert 0.045 - 1e-9 <= d <= 0.10 + 1e-9
            assert env.data.geom_xpos[g][2] < 0.03  # resting on the table
    img = env.reset(seed=0)[0]["pixels"]["front"]
    ref = nominal.reset(seed=0)[0]["pixels"]["front"]
    seg = segment(env, "front")
    diff = _diff_pixels(img, ref)
    assert diff.sum() > 20 and np.all(np.isin(seg[diff], ids))  # changed pixels are the distractors'
    env.close()


def test_background_changes_backdrop_pixels_only(nominal):
    env = make(background=True)
    img, ref = env.reset(seed=0)[0]["pixels"]["front"], nominal.reset(seed=0)[0]["pixels"]["front"]
    seg = segment(env, "front")
    walls = [env.model.geom(n).id for n in ("backdrop_back", "backdrop_side")]
    diff = _diff_pixels(img, ref)
    assert diff.sum() > 100 and np.all(np.isin(seg[diff], walls))
    env.close()


def test_camera_fov_and_colour_temperature(nominal):
    env = make(camera_fov=True, camera_fovy_jitter_deg=6.0)
    fovys = {round(float(env.model.cam_fovy[env.model.camera("gripper").id]), 6)
             for _ in range(6) if env.reset(seed=_)}
    nominal_fovy = float(nominal.model.cam_fovy[nominal.model.camera("gripper").id])
    assert len(fovys) == 6 and all(abs(f - nominal_fovy) <= 6.0 for f in fovys)
    front = env.reset(seed=0)[0]["pixels"]["front"]
    np.testing.assert_array_equal(front, nominal.reset(seed=0)[0]["pixels"]["front"])  # other cameras as they were
    env.close()

    def red_over_blue(img):
        return float(img[..., 0].astype(float).mean() / max(img[..., 2].astype(float).mean(), 1.0))

    ref = nominal.reset(seed=0)[0]["pixels"]["gripper"]
    warm = make(color_temperature=True, color_temperature_range=(3500.0, 3500.0))
    cool = make(color_temperature=True, color_temperature_range=(9500.0, 9500.0))
    w, c = warm.reset(seed=0)[0]["pixels"]["gripper"], cool.reset(seed=0)[0]["pixels"]["gripper"]
    assert red_over_blue(w) > red_over_blue(ref) * 1.1 > red_over_blue(c) * 1.1
    np.testing.assert_array_equal(segment(warm, "gripper"), segment(nominal, "gripper"))
    warm.close(), cool.close()


@pytest.mark.parametrize("hook, check", [
    ("image_noise", "noise"), ("image_blur", "blur"), ("image_color", "color"), ("image_jpeg", "jpeg")])
def test_image_corruption_changes_frames_not_the_render(nominal, hook, check):
    env = make(**{hook: True})
    img = env.reset(seed=0)[0]["pixels"]["gripper"]
    ref = nominal.reset(seed=0)[0]["pixels"]["gripper"]
    raw = env._renderers[SIZE].render(env.data, "gripper")  # the rendered frame itself is the nominal one
    np.testing.assert_array_equal(raw, ref)
    diff = img.astype(int) - ref.astype(int)
    assert 0.2 < np.abs(diff).mean() < (40.0 if check == "color" else 8.0), np.abs(diff).mean()
    if check == "noise":
        assert abs(diff.mean()) < 0.5 and 0.5 < diff.std() < 7  # zero-mean, a few grey levels
        again = env.render_camera("gripper")
        assert not np.array_equal(again, img)  # fresh noise every frame
    if check == "blur":  # less detail: smaller differences between neighbouring pixels
        assert np.abs(np.diff(img.astype(int), axis=1)).mean() < np.abs(np.diff(ref.astype(int), axis=1)).mean()
    if check == "color":  # the same picture, its colours further from (or nearer to) grey
        drawn = env.randomizer.effects.image
        assert (drawn.saturation, drawn.contrast) != (1.0, 1.0)
        chroma = lambda x: np.abs(x.astype(float) - x.astype(float).mean(-1, keepdims=True)).mean()  # noqa: E731
        assert (chroma(img) > chroma(ref)) == (drawn.saturation * drawn.contrast > 1.0)
        assert np.array_equal(env.render_camera("gripper"), img)  # one draw per episode, no noise per frame
    # the same seed gives the same frames
    np.testing.assert_array_equal(make(**{hook: True}).reset(seed=0)[0]["pixels"]["gripper"], img)
    env.close()


def test_action_latency_delays_every_command_by_one_tick():
    lag = make(obs_type="state", action_latency=True)
    now = make(obs_type="state")
    # small moves, which the arm follows within a centimetre (farther, the env re-anchors on the measured position)
    acts = [np.array([0.3, 0, 0, 0], np.float32), np.array([0, 0.3, 0, 1], np.float32),
            np.array([0, 0, 0.3, 2], np.float32), np.array([-0.3, 0, 0, 1], np.float32)]
    pin = {"ee_pos": (0.22, 0.0, 0.045), "cube_pos": (0.28, 0.07)}  # in free space: nothing in the way
    _, i_lag = lag.reset(seed=0, options=pin)
    _, i_now = now.reset(seed=0, options=pin)
    np.testing.assert_array_equal(i_lag["ee_target"], i_now["ee_target"])
    t_lag, t_now, j_lag, j_now = [i_lag["ee_target"]], [i_now["ee_target"]], [lag.jaw_target], [now.jaw_target]
    for a in acts:
        t_lag.append(lag.step(a)[4]["ee_target"])
        t_now.append(now.step(a)[4]["ee_target"])
        j_lag.append(lag.jaw_target)
        j_now.append(now.jaw_target)
        np.testing.assert_array_equal(lag.pending_action, a)
    scale = lag.cfg.action_scale
    np.testing.assert_allclose(t_lag[1], t_lag[0])  # the first tick stands still
    for k in range(len(acts) - 1):  # then every move comes one tick late
        np.testing.assert_allclose(t_lag[k + 2] - t_lag[k + 1], acts[k][:3] * scale, atol=1e-12)
        np.testing.assert_allclose(t_now[k + 1] - t_now[k], acts[k][:3] * scale, atol=1e-12)
    assert j_now[1] == JAW_CLOSED_ANGLE and j_lag[1] == JAW_OPEN_ANGLE and j_lag[2] == JAW_CLOSED_ANGLE
    assert now.pending_action is None
    never = make(obs_type="state", action_latency=True, action_latency_prob=0.0)
    never.reset(seed=0, options=pin)
    np.testing.assert_array_equal(never.step(acts[0])[4]["ee_target"], t_now[1])


def test_gripper_backlash_is_play_on_the_jaw_only():
    env = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state", gripper_mode="continuous",
                                            randomization=DomainRandomization(gripper_backlash=True,
                                                                              gripper_backlash_range=(0.1, 0.1))))
    ref = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state", gripper_mode="continuous"))
    env.reset(seed=0), ref.reset(seed=0)
    servo = []
    for g in (-1.0, -1.0, 1.0, 0.98, 0.8, 1.0):  # close, open, a reversal inside the play, one past it, open
        env.step(np.array([0, 0, 0, g], np.float32))
        ref.step(np.array([0, 0, 0, g], np.float32))
        np.testing.assert_array_equal(env.data.ctrl[:5], ref.data.ctrl[:5])  # the arm is untouched
        assert env.jaw_target == ref.jaw_target == ref.data.ctrl[5]  # the command is as sent
        servo.append(float(env.data.ctrl[5]))
    assert servo[0] == pytest.approx(JAW_CLOSED_ANGLE + 0.05)  # stops b/2 short of closed
    assert servo[2] == pytest.approx(JAW_OPEN_ANGLE - 0.05)  # and of open
    span = JAW_OPEN_ANGLE - JAW_CLOSED_ANGLE
    assert servo[3] == servo[2]  # a 0.011 rad reversal is taken up by the play
    assert servo[4] == pytest.approx(JAW_CLOSED_ANGLE + 0.9 * span + 0.05)  # past it, the jaw follows b/2 behind
    assert servo[5] == pytest.approx(JAW_OPEN_ANGLE - 0.05)


# ---------------------------------------------------------------- held-out looks


def test_heldout_looks_are_never_drawn_in_training():
    rng = np.random.default_rng(0)
    families = set()
    for _ in range(2000):  # the training texture draw: training families only
        _, info = draw_training_texture(rng, 8)
        assert info["family"] in TRAIN_FAMILIES
        families.add(info["family"])
    assert families == set(TRAIN_FAMILIES) and not set(TRAIN_FAMILIES) & set(HELDOUT_FAMILIES)
    dr = load_config(TrainConfig, PRETRAIN, []).env.randomization
    for name in LOOK_NAMES[1:]:
        look = LOOKS[name]
        assert look.table[0] in HELDOUT_FAMILIES and look.backdrop[0] in HELDOUT_FAMILIES
        lo, hi = dr.color_temperature_range
        assert not lo <= look.color_temperature_k <= hi, name
        assert abs(look.camera_rot_deg) > dr.camera_rot_jitter_deg, name
    # and what the preset's env really draws, over many resets
    env = SO101GraspCubeEnv(replace(load_config(TrainConfig, PRETRAIN, []).env, obs_type="state", canonical_view=False))
    for seed in range(60):
        env.reset(seed=seed)
        drawn = env._randomization
        assert drawn["table_texture"]["family"] in TRAIN_FAMILIES
        assert drawn["background"]["family"] in TRAIN_FAMILIES
        assert lo <= drawn["color_temperature"] <= hi and "look" not in drawn


def test_training_textures_span_the_colours_and_their_patterns_are_what_they_say():
    rng = np.random.default_rng(1)
    hsv = np.array([colorsys.rgb_to_hsv(*c) for _ in range(2000) for c in draw_training_texture(rng, 8)[1]["colours"]])
    hue, sat, val = hsv.T
    assert TRAIN_VALUE[0] - 1e-9 <= val.min() and val.max() <= TRAIN_VALUE[1] + 1e-9
    # any colour, not a muted palette: saturated, near-white and near-black tables all occur, and every hue
    assert (sat > 0.9).mean() > 0.05 and ((sat < 0.1) & (val > 0.9)).mean() > 0.003 and (val < 0.15).mean() > 0.03
    assert np.histogram(hue, bins=12, range=(0, 1))[0].min() > 0.05 * len(hue) / 12
    # pattern weights: plain is one colour, checker / stripes / blobs two, the smooth ones in between
    for family in TRAIN_FAMILIES:
        w = pattern(family, 64, np.random.default_rng(2))
        assert w.shape == (64, 64) and 0.0 <= w.min() and w.max() <= 1.0, family
        if family == "plain":
            assert np.ptp(w) == 0.0
        elif family in ("checker", "stripes", "blobs"):
            assert set(np.unique(w)) == {0.0, 1.0} and 0.1 < w.mean() < 0.9, family
        else:
            assert len(np.unique(w)) > 100, family


def test_look_is_selectable_fixed_and_validated(nominal):
    cfg = load_config(TrainConfig, ROOT / "configs" / "sim_grasp.json", ["--env.look=heldout_b"])
    assert cfg.env.look == "heldout_b"
    env = make(look="heldout_b")
    pin = {"ee_pos": (0.25, 0.0, 0.05), "cube_pos": (0.27, 0.0), "cube_yaw": 0.0}
    a = env.reset(seed=0, options=pin)[0]["pixels"]["gripper"]
    b = env.reset(seed=7, options=pin)[0]["pixels"]["gripper"]
    np.testing.assert_array_equal(a, b)  # the same look at every reset
    assert not np.array_equal(a, nominal.reset(seed=0, options=pin)[0]["pixels"]["gripper"])
    m = env.model
    tex = m.texture("table_dr").id
    adr, n = m.tex_adr[tex], m.tex_width[tex]
    np.testing.assert_array_equal(m.tex_data[adr:adr + n * n * 3], look_texture("heldout_b", "table", n).reshape(-1))
    # a look overrides the hooks that draw the same things; the others still draw
    both = make(look="heldout_b", table_texture=True, distractors=True, distractor_count=(2, 2))
    both.reset(seed=3)
    np.testing.assert_array_equal(both.model.tex_data[adr:adr + n * n * 3], m.tex_data[adr:adr + n * n * 3])
    assert sum(both.model.geom_group[both.model.geom(d).id] == 1 for d in DISTRACTORS) == 2
    with pytest.raises(ConfigError, match=r"^env.look: expected one of \['nominal', 'heldout_a'"):
        load_config(TrainConfig, PRETRAIN, ["--env.look=real_camera"])
    with pytest.raises(ValueError, match="env.look"):
        SO101GraspCubeEnv(look="heldout_z")
    env.close(), both.close()


def test_each_look_renders_the_cube_clearly():
    for name in LOOK_NAMES[1:]:
        env = make(look=name)
        obs, _ = env.reset(seed=0, options={"ee_pos": (0.25, 0.0, 0.05), "cube_pos": (0.27, 0.0)})
        img = obs["pixels"]["gripper"].astype(int)
        red = (img[..., 0] > 140) & (img[..., 0] > 2 * img[..., 1]) & (img[..., 0] > 2 * img[..., 2])
        assert red.sum() > 30, name
        env.close()


# ---------------------------------------------------------------- the preset and its validation


def test_bad_randomization_values_name_the_field():
    with pytest.raises(ConfigError, match=r"^env.randomization.image_jpeg_quality: "):
        load_config(TrainConfig, PRETRAIN, ["--env.randomization.image_jpeg_quality=[0,50]"])
    with pytest.raises(ConfigError, match=r"^env.randomization.distractor_count: "):
        load_config(TrainConfig, PRETRAIN, ["--env.randomization.distractor_count=[1,9]"])
    with pytest.raises(ValueError, match=r"^env.randomization.gripper_backlash_range: "):
        SO101GraspCubeEnv(randomization=DomainRandomization(gripper_backlash_range=(0.1, 0.0)))


def test_sim_pretrain_config_loads_and_its_env_steps():
    cfg = load_config(TrainConfig, PRETRAIN, [])
    base = load_config(TrainConfig, ROOT / "configs" / "sim_grasp.json", [])
    # every hook on but the camera's colour processing, which made the pretraining worse (docs/benchmarks.md)
    assert cfg.env.randomization.any and not cfg.env.randomization.image_color
    assert all(getattr(cfg.env.randomization, h) for h in _BEFORE + _AFTER if h != "image_color")
    # only the randomization differs, and the cube's pose rides along for the privileged auxiliary loss, and the
    # canonical view for the learner
    assert cfg.env.privileged_state and not base.env.privileged_state
    assert cfg.env.canonical_view and not base.env.canonical_view
    assert replace(cfg.env, randomization=DomainRandomization(), privileged_state=False,
                   canonical_view=False) == base.env
    # the same agent (plus that loss), reward and training loop, except hard starts: a replayed start keeps the cube
    # where it was, which a randomized cube size refuses (so the pretraining has them off)
    assert cfg.policy.privileged_aux_weight > 0 == base.policy.privileged_aux_weight
    assert cfg.train.hard_starts.share == 0 < base.train.hard_starts.share
    assert (replace(cfg.policy, privileged_aux_weight=0.0), cfg.reward,
            replace(cfg.train, hard_starts=base.train.hard_starts)) == (base.policy, base.reward, base.train)
    env = SO101GraspCubeEnv(replace(cfg.env, image_size=SIZE))
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and set(obs["pixels"]) == {"gripper", "gripper_canonical"}
    env.close()
    state = SO101GraspCubeEnv(replace(cfg.env, obs_type="state", canonical_view=False))
    wins, _ = expert_success_rate(state, 6, seed=100)  # the expert (and the simulated human) copes with it
    assert wins >= 5


def test_bench_sim_compares_a_config_with_the_nominal_scene():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sim.py"), "--config", str(PRETRAIN),
                          "--seconds", "0.2", "--episodes", "1", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["pixel_steps_per_s"] > 0 and res["nominal_pixel_steps_per_s"] > 0
    assert res["pixel_rate_vs_nominal"] == pytest.approx(res["pixel_steps_per_s"] / res["nominal_pixel_steps_per_s"],
                                                         rel=0.01)


def test_the_cameras_colour_processing_scales_saturation_and_contrast():
    from hilserl.sim.image_noise import ImageCorruption

    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = (150, 100, 50)  # a brown, luma 109.6
    img[2:] = (110, 110, 110)  # a grey
    sat = ImageCorruption(saturation=1.5)(img).astype(float)
    np.testing.assert_allclose(sat[3, 0], (110, 110, 110))  # grey stays grey
    luma = 0.299 * 150 + 0.587 * 100 + 0.114 * 50
    np.testing.assert_allclose(sat[0, 0], luma + 1.5 * (np.array([150, 100, 50]) - luma), atol=0.6)
    flat = ImageCorruption(saturation=0.0)(img)
    assert np.ptp(flat[0, 0].astype(int)) <= 1  # no colour left
    con = ImageCorruption(contrast=2.0)(img).astype(float)
    mean = (luma + 110) / 2
    np.testing.assert_allclose(con[3, 0], mean + 2 * (110 - mean), atol=0.6)  # away from the frame's mean grey
    np.testing.assert_allclose(con[0, 0], np.clip(mean + 2 * (np.array([150, 100, 50]) - mean), 0, 255), atol=0.6)
    assert not ImageCorruption().active and ImageCorruption(contrast=0.9).active
    np.testing.assert_array_equal(ImageCorruption(saturation=1.0, contrast=1.0, jpeg_quality=0)(img), img)
