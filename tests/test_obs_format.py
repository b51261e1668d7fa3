"""The observation-format helpers: camera keys built and parsed back, image layouts converted and back."""

import numpy as np
import pytest
import torch

from hilserl.data.lerobot_v3 import camera_of_image_key, image_key
from hilserl.obs_format import (
    camera_of,
    channels_first,
    channels_first_shape,
    channels_last,
    feature_key,
    is_camera_key,
    is_feature_key,
    is_pixel_key,
    pixel_key,
)


@pytest.mark.parametrize("camera", ["gripper", "front", "wrist.left", "cam_0"])
def test_camera_keys_round_trip(camera):
    assert pixel_key(camera) == f"pixels.{camera}"
    assert feature_key(camera) == f"features.{camera}"
    assert camera_of(pixel_key(camera)) == camera
    assert camera_of(feature_key(camera)) == camera
    assert is_pixel_key(pixel_key(camera)) and not is_feature_key(pixel_key(camera))
    assert is_feature_key(feature_key(camera)) and not is_pixel_key(feature_key(camera))
    assert is_camera_key(pixel_key(camera)) and is_camera_key(feature_key(camera))
    assert camera_of_image_key(image_key(camera)) == camera
    assert image_key(camera) == f"observation.images.{camera}"


@pytest.mark.parametrize("key", ["state", "environment_state", "pixels", "pixels.", "features.", "pixel.front",
                                 "observation.images.front", 3])
def test_non_camera_keys(key):
    assert not is_camera_key(key)
    with pytest.raises(ValueError, match=r"expected 'pixels\.<camera>' or 'features\.<camera>'") as info:
        camera_of(key)
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("camera", ["", None, 7])
def test_bad_camera_name(camera):
    for build in (pixel_key, feature_key, image_key):
        with pytest.raises(ValueError, match="camera name: expected a non-empty string, got"):
            build(camera)


def test_lerobot_key_without_images_prefix_is_the_camera_name():
    assert camera_of_image_key("observation.image") == "observation.image"


def test_numpy_layout_round_trip():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    chw = channels_first(hwc)
    assert chw.shape == (3, 5, 7)
    assert np.shares_memory(chw, hwc)  # a view by default
    np.testing.assert_array_equal(chw, hwc.transpose(2, 0, 1))
    np.testing.assert_array_equal(chw[1], hwc[:, :, 1])
    np.testing.assert_array_equal(channels_last(chw), hwc)
    packed = channels_first(hwc, contiguous=True)  # a contiguous copy, as the policy and the buffer want it
    assert packed.flags.c_contiguous and not np.shares_memory(packed, hwc)
    np.testing.assert_array_equal(packed, chw)
    back = channels_last(packed, contiguous=True)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, hwc)


def test_batched_layouts():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (2, 4, 5, 6, 3), dtype=np.uint8)  # [N, T, H, W, C]
    chw = channels_first(batch)
    assert chw.shape == (2, 4, 3, 5, 6)
    np.testing.assert_array_equal(chw[1, 2], batch[1, 2].transpose(2, 0, 1))
    np.testing.assert_array_equal(channels_last(chw), batch)
    assert channels_first_shape((128, 96, 3)) == (3, 128, 96)
    assert channels_first_shape((8, 128, 96, 3)) == (8, 3, 128, 96)


def test_torch_layout_round_trip():
    hwc = torch.arange(2 * 4 * 5 * 3, dtype=torch.uint8).reshape(2, 4, 5, 3)
    chw = channels_first(hwc)
    assert isinstance(chw, torch.Tensor) and chw.shape == (2, 3, 4, 5)
    assert torch.equal(chw, hwc.permute(0, 3, 1, 2))
    assert not chw.is_contiguous()
    assert channels_first(hwc, contiguous=True).is_contiguous()
    assert torch.equal(channels_last(chw), hwc)
    assert torch.equal(channels_first(hwc[0]), hwc[0].permute(2, 0, 1))


def test_bad_images():
    with pytest.raises(ValueError, match=r"expected at least 3 axes .* got 2"):
        channels_first(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"expected at least 3 axes"):
        channels_last(torch.zeros(4))
    with pytest.raises(TypeError, match="expected a numpy array or a torch tensor, got list"):
        channels_first([[[0, 0, 0]]])
