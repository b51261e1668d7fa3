"""Camera alignment (`hilserl robot align-camera`): a fake camera plays simulation frames rendered through a camera
with a known offset (4 mm right, 3° pitch up, 5° wider field of view); the readout shows the mismatch, the keys a
person would press remove it, the saved correction builds a simulation whose renders match the camera's frames,
the nominal scene is unchanged, bad values are refused naming the field, and the command runs end to end against
an emulated servo bus and a video file."""

import difflib
import json
import os
import sys

import cv2
import mujoco
import numpy as np
import pytest

import hilserl  # noqa: F401  (chooses the GL backend before MuJoCo renders)
from hilserl.config import ConfigError, from_dict, validate_tree
from hilserl.robot.align import CameraAligner, CameraCorrection, SimGripperCamera, STEPS
from hilserl.robot.align_config import load_sim_env, write_correction
from hilserl.robot.align_readout import measure
from hilserl.robot.align_session import FileDisplay, TerminalKeys, choose_display, run_alignment
from hilserl.robot.cameras import FakeCamera, crop_and_resize
from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.scene import JOINT_NAMES, SceneConfig, build_mjcf
from robot_fakes import CAL_JSON, IdealFollower

CROP = (0, 80, 480, 480)  # the real config's centred square of a 640x480 frame
SIZE = (128, 128)
POSE = np.array([0.0, -0.0387, 0.0849, 1.5246, 0.0, 1.0])  # tool point about (0.22, 0, 0.07) m, gripper down, open
CUBE_XY = (0.25, 0.0)
TRUTH = CameraCorrection(offset_mm=(4.0, 0.0, 0.0), rotation_deg=(0.0, 3.0, 0.0), fovy_deg=75.0)
KEYS_FOR_TRUTH = "llll" + "ttt" + "+++++"  # 4 × 1 mm right, 3 × 1° pitch up, 5 × 1° wider, at the default step


def sim_env_frame(scene: SceneConfig, q=POSE, size: int = 480) -> np.ndarray:
    """What an env built from a config with `scene` renders through its gripper camera at joints `q`."""
    env = SO101GraspCubeEnv(GraspCubeConfig(scene=scene, obs_type="state"))
    try:
        env.reset(seed=0)
        m, d = env.model, env.data
        d.qpos[[m.jnt_qposadr[m.joint(j).id] for j in JOINT_NAMES]] = q
        cube = m.jnt_qposadr[m.joint("cube").id]
        d.qpos[cube:cube + 7] = [*CUBE_XY, m.geom_size[m.geom("cube").id][0], 1, 0, 0, 0]
        mujoco.mj_forward(m, d)
        return env.render_camera("gripper", size)
    finally:
        env.close()


def as_raw_frame(square: np.ndarray) -> np.ndarray:
    """A 640x480 camera frame whose centred square is `square` (480x480)."""
    raw = np.full((480, 640, 3), 70, np.uint8)
    raw[:, 80:560] = square
    return raw


@pytest.fixture(scope="module")
def world():
    """The 'real' camera: 640x480 frames of the simulation seen through the camera mounted with TRUTH's error."""
    return as_raw_frame(sim_env_frame(TRUTH.apply(SceneConfig())))


@pytest.fixture(scope="module")
def sim_camera():
    cam = SimGripperCamera(SceneConfig(), SIZE, CUBE_XY)
    yield cam
    cam.close()


def fake_camera(raw):
    cam = FakeCamera(lambda i: raw, crop=CROP, size=SIZE, name="gripper")
    cam.connect()
    return cam


# ---------------------------------------------------------------------------------------------- the nominal scene
NOMINAL_CAMERA = '<camera name="gripper" pos="0.3335 0 0.22247" xyaxes="0 -1 0 0.0697565 0 0.997564" fovy="70.0"/>'


def test_defaults_leave_the_nominal_scene_exactly_unchanged():
    xml = build_mjcf(SceneConfig())
    assert NOMINAL_CAMERA in xml  # the gripper camera as the scene wrote it before the correction existed
    zero = SceneConfig(gripper_camera_offset_mm=(0.0, 0.0, 0.0), gripper_camera_rotation_deg=(0.0, 0.0, 0.0))
    assert build_mjcf(zero) == xml
    np.testing.assert_array_equal(sim_env_frame(zero, size=128), sim_env_frame(SceneConfig(), size=128))
    cfg = from_dict(GraspCubeConfig, {"scene": {"cube_size": 0.025}}, prefix="env")  # a config without the fields
    assert CameraCorrection.from_scene(cfg.scene) == CameraCorrection()


def test_the_correction_moves_the_camera_in_its_own_frame(sim_camera):
    """Offsets and rotations go the way the docs say: the picture moves opposite to the camera."""
    nominal = sim_camera.render(POSE, CameraCorrection())

    def shift(c):
        return measure(sim_camera.render(POSE, c), nominal).shift_px

    assert shift(CameraCorrection(offset_mm=(3.0, 0, 0)))[0] < -1.0  # camera right: the picture moves left
    assert shift(CameraCorrection(offset_mm=(0, 3.0, 0)))[1] > 1.0  # camera up: the picture moves down
    assert shift(CameraCorrection(rotation_deg=(0, 2.0, 0)))[1] > 1.0  # pitch up: the picture moves down
    assert shift(CameraCorrection(rotation_deg=(0, 0, 2.0)))[0] > 1.0  # yaw left: the picture moves right
    wide = measure(sim_camera.render(POSE, CameraCorrection(fovy_deg=80.0)), nominal)
    assert wide.shift_norm < 1.0 and wide.edge_error > 0.1  # a zoom is no shift, but the edges differ


# ---------------------------------------------------------------------------------------------- readout and keys
def test_the_readout_shows_the_mismatch_and_the_keys_remove_it(world, sim_camera):
    camera = fake_camera(world)
    aligner = CameraAligner(sim_camera, CameraCorrection())
    before = aligner.view(POSE, camera.read())
    assert before.readout.shift_norm > 3.0 and before.readout.edge_error > 0.5  # 6-7 px and 0.7 here
    assert before.image.shape[1] == 2 * 3 * SIZE[1] and before.image.dtype == np.uint8
    for key in KEYS_FOR_TRUTH:
        assert aligner.press(key) == "nudge"
    assert aligner.correction == TRUTH  # exactly: steps of 1 land on the numbers
    after = aligner.view(POSE, camera.read())
    # what is left is the camera's resize (480 -> 128) and the table's checker, which the alignment draws plain
    assert after.readout.shift_norm < 1.0 and after.readout.edge_error < 0.1
    assert after.readout.edge_error < before.readout.edge_error / 5
    assert "fov 75.00" in aligner.correction.format()


def test_the_readout_ignores_how_the_camera_renders_colour(world, sim_camera):
    """Another exposure, colour cast, noise and JPEG: the correct correction still reads as a match."""
    img = crop_and_resize(world, CROP, SIZE).astype(np.float32)
    img = 255 * (img / 255) ** 0.6 * np.array([0.8, 1.0, 1.2])  # gamma and white balance
    img = img + np.random.default_rng(0).normal(0, 4, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_UNCHANGED)
    right = measure(img, sim_camera.render(POSE, TRUTH))
    wrong = measure(img, sim_camera.render(POSE, CameraCorrection()))
    assert right.shift_norm < 1.0 and right.edge_error < 0.2 and wrong.edge_error > 3 * right.edge_error


def test_step_size_undo_start_limits_and_other_keys(sim_camera):
    aligner = CameraAligner(sim_camera, CameraCorrection(offset_mm=(1.0, 0.0, 0.0)))
    assert aligner.step == 1.0
    assert aligner.press("]") == "step" and aligner.step == 2.0
    aligner.press("j")
    assert aligner.correction.offset_mm == (-1.0, 0.0, 0.0)
    for _ in range(10):
        aligner.press("[")
    assert aligner.step == STEPS[0]
    aligner.press("i")
    assert aligner.correction.offset_mm == (-1.0, 0.1, 0.0)
    assert aligner.press("z") == "undo" and aligner.correction.offset_mm == (-1.0, 0.0, 0.0)
    assert aligner.press("0") == "reset" and aligner.correction == CameraCorrection(offset_mm=(1.0, 0.0, 0.0))
    for _ in range(12):
        aligner.press("]")
    for _ in range(10):
        aligner.press("r")
    assert aligner.correction.rotation_deg == (30.0, 0.0, 0.0) and "limit" in aligner.message  # clamped
    assert aligner.press("s") == "save" and aligner.press("q") == "quit" and aligner.press("x") == ""


# ---------------------------------------------------------------------------------------------- config
def test_a_saved_correction_builds_a_simulation_that_matches_the_camera(tmp_path, world):
    path = tmp_path / "sim.json"
    original = open("configs/sim_grasp.json").read()
    path.write_text(original)
    values = write_correction(path, TRUTH)
    assert values == {"gripper_camera_offset_mm": [4.0, 0.0, 0.0], "gripper_camera_rotation_deg": [0.0, 3.0, 0.0],
                      "gripper_camera_fovy": 75.0}
    text = path.read_text()
    data, before = json.loads(text), json.loads(original)
    assert data["env"].pop("scene") == values and data == before  # nothing else changed ...
    diff = [d for d in difflib.ndiff(original.splitlines(), text.splitlines()) if d[:2] in ("- ", "+ ")]
    assert diff == ['-     "ee_reset_noise_z": 0.02', '+     "ee_reset_noise_z": 0.02,', '+     "scene": {',
                    '+       "gripper_camera_offset_mm": [4.0, 0.0, 0.0],',
                    '+       "gripper_camera_rotation_deg": [0.0, 3.0, 0.0],', '+       "gripper_camera_fovy": 75.0',
                    '+     }']  # ... nor its layout: one comma and the new section
    env = load_sim_env(path)
    assert CameraCorrection.from_scene(env.scene) == TRUTH
    # the simulation built from the saved config sees what the camera sees
    np.testing.assert_array_equal(as_raw_frame(sim_env_frame(env.scene)), world)
    # saving again replaces the values in place
    write_correction(path, CameraCorrection(fovy_deg=71.5))
    assert json.loads(path.read_text())["env"]["scene"]["gripper_camera_fovy"] == 71.5
    assert path.read_text().count("gripper_camera_fovy") == 1


@pytest.mark.parametrize("scene, message", [
    ({"gripper_camera_fovy": 400}, r"env\.scene\.gripper_camera_fovy: expected 10-150 degrees"),
    ({"gripper_camera_offset_mm": [0, 0]}, r"env\.scene\.gripper_camera_offset_mm: expected 3 values"),
    ({"gripper_camera_offset_mm": [40, 0, 0]}, r"env\.scene\.gripper_camera_offset_mm: expected three numbers "
                                               r"within ±30 mm"),
    ({"gripper_camera_rotation_deg": [0, "up", 0]}, r"env\.scene\.gripper_camera_rotation_deg\[1\]: expected a "
                                                    r"number"),
    ({"gripper_camera_rotation_deg": [0, 0, -31]}, r"env\.scene\.gripper_camera_rotation_deg: expected three "
                                                   r"numbers within ±30 degrees"),
])
def test_bad_values_are_refused_naming_the_field(scene, message):
    with pytest.raises(ConfigError, match=message):
        cfg = from_dict(GraspCubeConfig, {"scene": scene}, prefix="env")
        validate_tree(cfg, "env.")


def test_bad_corrections_and_targets_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"env\.scene\.gripper_camera_rotation_deg"):
        CameraCorrection(rotation_deg=(0.0, 0.0, 45.0)).validate()
    real = tmp_path / "real.json"
    real.write_text(open("configs/so101_grasp.json").read())
    with pytest.raises(ConfigError, match=r"--out: .* real-arm config"):
        write_correction(real, TRUTH)
    assert real.read_text() == open("configs/so101_grasp.json").read()
    with pytest.raises(ConfigError, match=r"--out: no such file"):
        load_sim_env(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="joints: expected 6 finite radians"):
        SimGripperCamera(SceneConfig(), (32, 32)).render([0.0] * 5, CameraCorrection())


# ---------------------------------------------------------------------------------------------- front end
class ScriptedDisplay:
    def __init__(self, keys):
        self.batches, self.images = list(keys), []
        self.closed = False

    def show(self, image, changed):
        self.images.append(image)

    def keys(self):
        if not self.batches:
            self.closed = True
            return []
        return list(self.batches.pop(0))

    def close(self):
        pass


def test_the_session_loop_saves_after_showing_the_corrected_view(world, sim_camera, tmp_path):
    path = tmp_path / "sim.json"
    path.write_text('{"env": {"fps": 10}}\n')
    lines = []
    display = ScriptedDisplay([KEYS_FOR_TRUTH + "sq"])  # typed all at once
    aligner = CameraAligner(sim_camera, CameraCorrection())
    end = run_alignment(aligner, IdealFollower(POSE), fake_camera(world), display,
                        save=lambda c: f"saved {write_correction(path, c)}", log=lines.append)
    assert end == TRUTH and len(display.images) == 2  # the mismatched view, then the corrected one, then save
    first, second = float(lines[0].split("edge error ")[1][:5]), float(lines[1].split("edge error ")[1][:5])
    assert first > 0.5 and second < 0.1 and lines[2].startswith("saved")
    assert json.loads(path.read_text()) == {"env": {"fps": 10, "scene": {
        "gripper_camera_offset_mm": [4.0, 0.0, 0.0], "gripper_camera_rotation_deg": [0.0, 3.0, 0.0],
        "gripper_camera_fovy": 75.0}}}
    # quitting with unsaved changes asks twice; the end of the keys stops too
    lines.clear()
    run_alignment(CameraAligner(sim_camera, CameraCorrection()), IdealFollower(POSE), fake_camera(world),
                  ScriptedDisplay(["l", "q", "q"]), save=lambda c: "no", log=lines.append)
    assert any("q again quits" in line for line in lines) and "not saved" in lines[-1]
    lines.clear()
    run_alignment(CameraAligner(sim_camera, CameraCorrection()), IdealFollower(POSE), fake_camera(world),
                  ScriptedDisplay([]), save=lambda c: "no", log=lines.append)
    assert "keys ended" in lines[-1]


def test_displays_file_without_a_gui_and_window_with_one(tmp_path, monkeypatch):
    r, w = os.pipe()
    os.write(w, b"ls")
    os.close(w)
    keys = TerminalKeys(r)
    assert keys.poll() == ["l", "s"] and keys.poll() == [] and keys.closed
    os.close(r)
    clock = [0.0]
    display = FileDisplay(tmp_path / "v" / "view.png", keys, clock=lambda: clock[0])
    image = np.zeros((20, 30, 3), np.uint8)
    display.show(image, changed=False)
    display.show(image, changed=True)  # changed, but only 0 s after the last write
    clock[0] = 0.3
    display.show(image, changed=False)  # the pending change is written now
    assert display.writes == 2 and cv2.imread(str(tmp_path / "v" / "view.png")).shape == (20, 30, 3)
    monkeypatch.setattr("hilserl.robot.align_session.cv2_has_gui", lambda: False)
    with pytest.raises(ValueError, match="--display window: this OpenCV has no GUI"):
        choose_display("window", tmp_path / "x.png")
    # an OpenCV with a GUI: the window path (highgui faked)
    shown, codes = [], [ord("l"), -1]
    monkeypatch.setattr("hilserl.robot.align_session.cv2_has_gui", lambda: True)
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None, raising=False)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.shape), raising=False)
    monkeypatch.setattr(cv2, "waitKey", lambda ms: codes.pop(0) if codes else -1, raising=False)
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None, raising=False)
    window = choose_display("window", tmp_path / "x.png", log=lambda s: None)
    window.show(image, True)
    assert shown == [(20, 30, 3)] and window.keys() == ["l"] and window.keys() == []
    window.close()


def test_the_command_end_to_end_on_an_emulated_arm(tmp_path, world, monkeypatch, capsys):
    """`hilserl robot align-camera`: SO101Follower on the emulated bus (torque off while the person aligns), the
    camera a video file of the 'real' frames, keys from stdin; the correction lands in --out."""
    from hilserl.cli import main
    from hilserl.robot import Calibration
    from robot_fakes import calibrated_emulator

    cal = Calibration.from_dict(CAL_JSON)
    cal.save(tmp_path / "follower.json")
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for _ in range(3):
        writer.write(cv2.cvtColor(world, cv2.COLOR_RGB2BGR))
    writer.release()
    sim = tmp_path / "sim_pretrain.json"
    sim.write_text(open("configs/sim_pretrain.json").read())
    r, w = os.pipe()
    os.write(w, (KEYS_FOR_TRUTH + "sq").encode())
    os.close(w)
    monkeypatch.setattr(sys, "stdin", os.fdopen(r, "r"))
    emu = calibrated_emulator(cal, q=POSE)
    try:
        real = {"env": {"type": "so101", "follower_port": str(emu.port),
                        "follower_calibration": str(tmp_path / "follower.json"), "intervention": "none",
                        "cameras": {"gripper": {"index": str(video), "crop": list(CROP)}}}}
        (tmp_path / "so101.json").write_text(json.dumps(real))
        view = tmp_path / "view.png"
        code = main(["robot", "align-camera", "--config_path", str(tmp_path / "so101.json"), "--out", str(sim),
                     "--display", "file", "--view", str(view)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert not any(emu.torque_enabled(i) for i in range(1, 7))  # torque off, during and after
        assert view.is_file() and cv2.imread(str(view)).shape[0] > 2 * 3 * SIZE[0]
        readouts = [float(line.split("edge error ")[1][:5]) for line in out.splitlines() if "edge error" in line]
        assert readouts[0] > 0.5 and readouts[-1] < 0.15  # MJPG frames: a little more left than in the fakes
        assert f"saved into {sim}" in out
        assert CameraCorrection.from_scene(load_sim_env(sim).scene) == TRUTH
        assert load_sim_env(sim).randomization.camera_pose  # the rest of the config as it was
    finally:
        emu.stop()


def test_the_command_refuses_wrong_inputs_naming_them(tmp_path, capsys):
    from hilserl.cli import main

    assert main(["robot", "align-camera", "--config_path", "configs/sim_grasp.json"]) == 2
    assert "env.type" in capsys.readouterr().err
    assert main(["robot", "align-camera", "--config_path", "configs/so101_grasp.json",
                 "--out", "configs/so101_grasp.json"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["robot", "align-camera", "--config_path", "configs/so101_grasp.json", "--cube_xy", "25,0"]) == 2
    assert "--cube_xy" in capsys.readouterr().err
    assert main(["robot", "align-camera", "--config_path", "configs/so101_grasp.json", "--camera", "wrist"]) == 2
    assert "--camera" in capsys.readouterr().err
    assert main(["robot", "align-camera", "--config_path", "configs/so101_grasp.json",
                 f"--env.follower_calibration={tmp_path / 'none.json'}"]) == 2
    assert "env.follower_calibration" in capsys.readouterr().err
