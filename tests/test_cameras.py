"""Cameras: crop/resize geometry, BGR→RGB, errors, the grab thread (through a video file that OpenCV opens like a
camera), the fake camera and the setup check."""

import time

import cv2
import numpy as np
import pytest

from hilserl.config import ConfigError, from_dict
from hilserl.envs.so101 import SO101EnvConfig
from hilserl.robot.cameras import (CameraConfig, CameraError, CameraNotFoundError, FakeCamera, OpenCVCamera,
                                   check_cameras, crop_and_resize, format_camera_checks)

USER_CROP = (0, 80, 480, 480)  # the user's gripper camera: centred square of a 640x480 frame
RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)


def pattern_rgb() -> np.ndarray:
    """640x480 RGB: red outside the user's crop; inside it four coloured quadrants and a white marker."""
    f = np.zeros((480, 640, 3), np.uint8)
    f[:] = RED
    f[:240, 80:320] = GREEN
    f[:240, 320:560] = BLUE
    f[240:, 80:320] = YELLOW
    f[240:, 320:560] = (40, 40, 40)
    f[300:360, 380:440] = WHITE  # rows 300-360, cols 380-440 -> (rows 80-96, cols 80-96) after /3.75
    return f


def test_crop_then_resize_puts_the_pattern_where_expected():
    img = crop_and_resize(pattern_rgb(), USER_CROP, (128, 128))
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert not (img == np.array(RED, np.uint8)).all(axis=-1).any()  # nothing from outside the crop
    np.testing.assert_array_equal(img[10, 10], GREEN)
    np.testing.assert_array_equal(img[10, 117], BLUE)
    np.testing.assert_array_equal(img[117, 10], YELLOW)
    np.testing.assert_array_equal(img[88, 88], WHITE)  # the marker moved with the crop and scaled by 1/3.75
    white = (img == np.array(WHITE, np.uint8)).all(axis=-1)
    rows, cols = np.flatnonzero(white.any(axis=1)), np.flatnonzero(white.any(axis=0))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (80, 95, 80, 95)  # 300/3.75 .. 360/3.75


def test_no_crop_resizes_the_whole_frame_and_keeps_aspect_of_size():
    img = crop_and_resize(pattern_rgb(), None, (60, 80))
    assert img.shape == (60, 80, 3)
    np.testing.assert_array_equal(img[30, 2], RED)  # the left margin is still there


@pytest.mark.parametrize("crop, what", [
    ((0, 200, 480, 480), "reaches outside the 640x480 frame"),
    ((-1, 80, 480, 480), "reaches outside"),
    ((0, 80, 481, 480), "reaches outside"),
    ((0, 80, 0, 480), "positive height and width"),
    ((0, 80, 480), "four integers"),
])
def test_bad_crop_is_refused_with_a_clear_message(crop, what):
    with pytest.raises(ValueError, match=what):
        OpenCVCamera(0, 640, 480, crop=crop)
    with pytest.raises(ValueError, match="crop"):
        CameraConfig(crop=crop)


def test_bad_crop_in_the_env_config_names_the_key():
    with pytest.raises(ConfigError, match=r"env\.cameras\.gripper\.crop.*reaches outside"):
        from_dict(SO101EnvConfig, {"cameras": {"gripper": {"index": 0, "crop": [0, 200, 480, 480]}}}, prefix="env")
    with pytest.raises(ConfigError, match=r"env\.cameras\.gripper\.idx: unknown key"):
        from_dict(SO101EnvConfig, {"cameras": {"gripper": {"idx": 0}}}, prefix="env")


def test_camera_not_found_names_the_device():
    cam = OpenCVCamera(97, crop=USER_CROP)
    with pytest.raises(CameraNotFoundError, match="/dev/video97"):
        cam.connect()
    with pytest.raises(CameraNotFoundError, match="no_such_camera"):
        OpenCVCamera("/tmp/no_such_camera").connect()


def test_read_before_connect_is_an_error():
    with pytest.raises(CameraError, match="connect"):
        OpenCVCamera(0).read()


# ---------------------------------------------------------------------------------------------- via a video file
def write_video(path, frames_rgb, fps=30):
    h, w = frames_rgb[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for f in frames_rgb:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    return path


@pytest.fixture(scope="module")
def pattern_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("cam") / "pattern.avi", [pattern_rgb()] * 5)


def test_opencv_camera_gives_rgb_cropped_resized_frames(pattern_video):
    with OpenCVCamera(str(pattern_video), 640, 480, fps=30, crop=USER_CROP, size=(128, 128)) as cam:
        img = cam.read()
        raw = cam.read_raw()
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert raw.shape == (480, 640, 3)
    # colour order: the file holds BGR, the camera gives RGB (MJPG is lossy: compare flat areas loosely)
    for (r, c), colour in {(10, 10): GREEN, (10, 117): BLUE, (117, 10): YELLOW, (88, 88): WHITE}.items():
        np.testing.assert_allclose(img[r, c].astype(int), colour, atol=12)
    np.testing.assert_allclose(raw[240, 20].astype(int), RED, atol=12)


def test_frame_size_mismatch_is_reported(pattern_video):
    cam = OpenCVCamera(str(pattern_video), 320, 240, crop=None)
    with pytest.raises(CameraError, match=r"delivers 640x480 frames, configured width x height = 320x240"):
        cam.connect()


def wait_for_new_frames(cam, n, timeout=3.0):
    """Bounded wait until the grab thread has taken `n` more frames."""
    start, deadline = cam._frames, time.monotonic() + timeout
    while cam._frames < start + n and time.monotonic() < deadline:
        time.sleep(0.005)
    return cam._frames >= start + n


def test_reads_return_the_newest_frame_and_a_video_loops(tmp_path):
    frames = []
    for i in range(8):  # frame i is a flat grey of level 20 + 25 i
        f = np.full((48, 64, 3), 20 + 25 * i, np.uint8)
        frames.append(f)
    video = write_video(tmp_path / "count.avi", frames, fps=60)
    with OpenCVCamera(str(video), 64, 48, fps=60, size=(16, 16)) as cam:
        levels = []
        for _ in range(12):  # 12 frames at 60 fps: runs past the end of the 8-frame video
            assert wait_for_new_frames(cam, 1)
            levels.append(int(cam.read()[8, 8, 0]))
        seen = {round((lv - 20) / 25) for lv in levels}
        assert len(seen) >= 4  # reads follow the stream instead of repeating a buffered frame
        assert any(b < a for a, b in zip(levels, levels[1:]))  # wrapped around to the start
    with pytest.raises(CameraError):
        cam.read()  # closed


def test_stale_frames_are_refused(pattern_video):
    cam = OpenCVCamera(str(pattern_video), 640, 480, crop=USER_CROP, max_frame_age_s=0.0)
    cam.connect()
    try:
        with pytest.raises(CameraError, match="no new frame"):
            cam.read()
    finally:
        cam.close()


# ---------------------------------------------------------------------------------------------- fake and check
def test_fake_camera_from_list_and_callable():
    a, b = np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 200, np.uint8)
    cam = FakeCamera([a, b], crop=USER_CROP, size=(64, 64))
    cam.connect()
    assert [int(cam.read()[0, 0, 0]) for _ in range(3)] == [0, 200, 0]
    cam2 = FakeCamera(lambda i: np.full((10, 10, 3), i, np.uint8), size=(10, 10))
    assert [int(cam2.read()[5, 5, 1]) for _ in range(3)] == [0, 1, 2]
    first = cam2.read()
    assert cam2.read() is not first  # fresh arrays every time
    with pytest.raises(CameraError, match="uint8"):
        FakeCamera([np.zeros((10, 10, 3), np.float32)]).read()
    with pytest.raises(ValueError, match="reaches outside"):
        FakeCamera([np.zeros((10, 10, 3), np.uint8)], crop=USER_CROP).read()


def test_check_cameras_saves_the_views_and_reports(tmp_path):
    cam = FakeCamera([pattern_rgb()], crop=USER_CROP, size=(128, 128), name="gripper")
    checks = check_cameras({"gripper": cam}, tmp_path, frames=3, wait=lambda s: None)
    (c,) = checks
    assert c.resolution == (640, 480) and c.size == (128, 128) and c.crop == USER_CROP
    assert cam.closed
    view = cv2.cvtColor(cv2.imread(str(c.image_path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(view, crop_and_resize(pattern_rgb(), USER_CROP, (128, 128)))
    raw = cv2.cvtColor(cv2.imread(str(c.raw_path)), cv2.COLOR_BGR2RGB)
    assert raw.shape == (480, 640, 3)
    np.testing.assert_array_equal(raw[100, 80], (255, 0, 0))  # the crop's left edge is drawn
    np.testing.assert_array_equal(raw[100, 200], GREEN)  # inside untouched
    table = format_camera_checks(checks)
    assert "gripper" in table and "640x480" in table and "0,80,480,480" in table


def test_check_cameras_measures_the_frame_rate(pattern_video, tmp_path):
    cam = OpenCVCamera(str(pattern_video), 640, 480, fps=30, crop=USER_CROP)
    (c,) = check_cameras({"wrist": cam}, tmp_path, frames=6)
    assert c.measured_fps is not None and 10 < c.measured_fps < 60
    assert c.image_path.exists() and c.raw_path.exists()
