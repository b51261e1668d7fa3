"""The encoder probe: the measures can succeed and fail, the frames show the cube where they say, real-image
folders are read or refused by field, the layers are the policy's maps, and `hilserl probe` runs end to end."""

import json

import cv2
import numpy as np
import pytest
import torch

from hilserl.cli import main
from hilserl.probe.features import layer_maps, load_backbone
from hilserl.probe.frames import ProbeInputError, read_image_folder, render_sim_frames
from hilserl.probe.measures import cosine_summary, ridge_probe_r2


def _positions(n, seed=0):
    return np.random.default_rng(seed).uniform(-0.03, 0.03, (n, 2))


def test_probe_r2_is_high_on_features_that_encode_the_position_and_near_zero_on_noise():
    rng = np.random.default_rng(1)
    pos = _positions(200)
    encoded = pos @ rng.normal(size=(2, 300)) * 30 + 0.05 * rng.normal(size=(200, 300))
    squashed = np.tanh(pos @ rng.normal(size=(2, 64)) * 20) + 0.05 * rng.normal(size=(200, 64))
    noise = rng.normal(size=(200, 300))
    assert (ridge_probe_r2(encoded, pos) > 0.95).all()
    assert (ridge_probe_r2(squashed, pos) > 0.9).all()  # a monotone code of the position, read linearly
    r2_noise = ridge_probe_r2(noise, pos)
    assert (r2_noise < 0.1).all() and (r2_noise > -0.2).all()
    only_x = np.c_[pos[:, :1] * 50, rng.normal(size=(200, 20))]  # encodes x, not y: the probe says so
    r2 = ridge_probe_r2(only_x, pos)
    assert r2[0] > 0.95 and r2[1] < 0.1


def test_probe_is_not_fooled_by_nearly_dead_features():
    rng = np.random.default_rng(0)
    pos = _positions(200)
    features = pos @ rng.normal(size=(2, 100)) * 30 + 0.5 * rng.normal(size=(200, 100))
    proj = pos @ rng.normal(size=(2, 2000)) * 30 + 0.3 * rng.normal(size=(200, 2000))
    dead = np.maximum(proj - np.quantile(proj, 0.98, axis=0), 0) * 0.01  # ReLUs that fire in 2% of frames, weakly
    clean = ridge_probe_r2(features, pos)
    assert (ridge_probe_r2(np.c_[features, dead], pos) > clean - 0.05).all()  # plain z-scoring: R² of -5 and -112


def test_cosine_similarity_is_higher_for_near_pairs_only_when_the_features_encode_the_position():
    rng = np.random.default_rng(3)
    pos = _positions(300)
    encoded = np.tanh(pos @ rng.normal(size=(2, 64)) * 30)
    cos = cosine_summary(encoded, pos)
    assert cos["near"] > 0.5 > cos["same_side"] > cos["front_back"] and cos["far"] < 0
    noise = cosine_summary(rng.normal(size=(300, 64)), pos)
    assert all(abs(v) < 0.05 for v in noise.values())


def test_sim_frames_show_the_cube_where_they_say():
    frames = render_sim_frames(12, image_size=64, seed=3)
    assert frames.images.shape == (12, 64, 64, 3) and frames.images.dtype == np.uint8
    assert (np.abs(frames.positions) <= 0.031).all() and frames.yaw.shape == (12,)
    seen = 0
    for image, mark in zip(frames.images, frames.marks):
        r, g, b = (image[..., k].astype(int) for k in range(3))
        rows, cols = np.nonzero((r > 120) & (g < 90) & (b < 90))  # the red cube
        if len(rows) >= 30:
            seen += 1
            assert np.hypot(cols.mean() - mark[0], rows.mean() - mark[1]) < 6.0
    assert seen >= 10
    # forward (x+) is up in the image, the robot's left (y+) is image left
    assert np.corrcoef(frames.positions[:, 0], frames.marks[:, 1])[0, 1] < -0.8
    assert np.corrcoef(frames.positions[:, 1], frames.marks[:, 0])[0, 1] < -0.8
    assert len({img.tobytes() for img in frames.images}) == 12


def _write_folder(folder, n=12, rows=None):
    folder.mkdir(exist_ok=True)
    lines = ["image,x,y,yaw"]
    for i in range(n):
        img = np.full((48, 64, 3), 120, np.uint8)
        c = 20 + 2 * i
        img[18:26, c:c + 8] = (20, 20, 220)  # BGR red square moving right
        cv2.imwrite(str(folder / f"f{i}.png"), img)
        lines.append(f"f{i}.png,{0.01 * i:.3f},{-0.002 * i:.4f},0.1")
    (folder / "positions.csv").write_text("\n".join(rows or lines) + "\n")
    return lines


def test_image_folder_is_read_and_a_bad_one_is_refused_naming_the_field(tmp_path):
    lines = _write_folder(tmp_path / "ok")
    frames = read_image_folder(tmp_path / "ok", image_size=32)
    assert frames.images.shape == (12, 32, 32, 3)  # centre-cropped 48x48, resized
    square = frames.images[0, 13:16, 9:12]  # the square of image 0 after the crop (cols 12-20 of 48) and resize
    assert (square[..., 0] > 150).all() and (square[..., 2] < 60).all()  # RGB order: the square is red
    assert np.allclose(frames.positions[3], [0.03, -0.006]) and np.allclose(frames.yaw, 0.1)
    cases = {
        "no_y": (["image,x,yaw"] + [",".join(ln.split(",")[i] for i in (0, 1, 3)) for ln in lines[1:]], "'y'"),
        "bad_x": (lines[:4] + ["f3.png,abc,0.0,0"] + lines[5:], "line 5, field 'x'"),
        "no_file": (lines[:2] + ["missing.png,0.01,0.0,0"] + lines[3:], "field 'image': file not found"),
        "too_few": (lines[:5], "at least 10"),
        "same_x": (["image,x,y"] + [f"f{i}.png,0.1,{i}" for i in range(12)], "field 'x' is the same"),
    }
    for name, (rows, expected) in cases.items():
        folder = tmp_path / name
        _write_folder(folder, rows=rows)
        with pytest.raises(ProbeInputError, match="positions.csv") as err:
            read_image_folder(folder)
        assert expected in str(err.value), (name, str(err.value))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProbeInputError, match="positions.csv: missing"):
        read_image_folder(tmp_path / "empty")


def test_probed_layers_are_the_maps_the_policy_reads():
    from hilserl.agents.encoders import build_backbone

    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    full = load_backbone("efficientnet_lite0", dtype="float32")
    maps = layer_maps(full, "efficientnet_lite0", images)
    assert maps["block10"].shape == (2, 112, 4, 4)
    assert torch.allclose(maps["head"], full(images), atol=1e-5)
    trimmed = build_backbone("efficientnet_lite0", dtype="float32", trim_head=True)
    assert torch.allclose(maps["block15"], trimmed(images), atol=1e-5)
    resnet = load_backbone("resnet10", dtype="float32")
    rmaps = layer_maps(resnet, "resnet10", images)
    assert set(rmaps) == {"stage3", "stage4"} and torch.allclose(rmaps["stage4"], resnet(images), atol=1e-5)


def test_cli_probe_runs_end_to_end_and_refuses_a_bad_folder(tmp_path, capsys):
    out = tmp_path / "probe.json"
    code = main(["probe", "--backbones", "resnet10", "--frames", "16", "--image_size", "64", "--folds", "4",
                 "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 16 and set(result["timing"]) == {"resnet10"}
    assert {(r["layer"], r["view"]) for r in result["rows"]} == {(s, v) for s in ("stage3", "stage4")
                                                                 for v in ("gap", "flat")}
    assert all(np.isfinite(r["r2"]["mean"]) and r["cosine"]["front_back"] is not None for r in result["rows"])
    assert (tmp_path / "probe_frames.png").is_file()
    printed = capsys.readouterr().out
    assert "R² mean" in printed and "resnet10: " in printed and "ms per 64px frame" in printed
    _write_folder(tmp_path / "bad", rows=["image,x"] + [f"f{i}.png,{i}" for i in range(12)])
    assert main(["probe", "--images", str(tmp_path / "bad"), "--out", str(tmp_path / "b.json")]) == 2
    assert "no field 'y'" in capsys.readouterr().err
