"""Random-shift augmentation: bounded integer shifts, replicate edges, independent obs/next_obs, vectorised."""

import torch

from hilserl.agents.augment import augment_batch, random_shift, shift_images


def _coordinate_images(b, h=16, w=16):
    """Each pixel holds a unique value encoding (row, col): value = row * 100 + col."""
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    return (rows * 100 + cols).expand(b, 3, h, w).float().contiguous()


def test_shift_is_bounded_and_matches_replicate_pad_then_crop():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 20, 24), dtype=torch.uint8)
    out, shifts = random_shift(images, pad=4, return_shifts=True)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert shifts.abs().max() <= 4
    assert shifts.min() == -4 and shifts.max() == 4  # the full range is used
    # reference: pad with replicate, crop at offset (pad + dy, pad + dx)
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4), mode="replicate")
    for i in range(images.shape[0]):
        dy, dx = shifts[i].tolist()
        ref = padded[i, :, 4 + dy: 4 + dy + 20, 4 + dx: 4 + dx + 24]
        assert torch.equal(out[i].float(), ref)


def test_replicate_edges():
    img = _coordinate_images(1)
    out = shift_images(img, torch.tensor([[4, -4]]))  # look 4 rows down, 4 cols left
    # bottom 4 rows all repeat the last source row; left 4 cols repeat the first source col
    assert torch.equal(out[0, 0, -5:, 8], torch.full((5,), 15 * 100 + 4.0))
    assert torch.equal(out[0, 0, 3, :5], torch.full((5,), 7 * 100 + 0.0))
    # interior moved by exactly (4, -4)
    assert out[0, 0, 2, 10] == (2 + 4) * 100 + (10 - 4)


def test_obs_and_next_obs_shift_independently_every_image_key():
    torch.manual_seed(1)
    img = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    batch = {
        "observations": {"state": torch.zeros(32, 2), "pixels.a": img.clone(), "pixels.b": img.clone()},
        "next_observations": {"state": torch.zeros(32, 2), "pixels.a": img.clone(), "pixels.b": img.clone()},
    }
    out = augment_batch(batch, pad=4)
    o, n = out["observations"], out["next_observations"]
    assert not torch.equal(o["pixels.a"], n["pixels.a"])
    assert not torch.equal(o["pixels.a"], o["pixels.b"])
    assert not torch.equal(o["pixels.a"], img)
    assert torch.equal(o["state"], batch["observations"]["state"])


def test_is_vectorised_not_a_python_loop_over_samples():
    """The number of torch ops must not grow with the batch size."""

    def count_ops(b):
        images = torch.randint(0, 256, (b, 3, 16, 16), dtype=torch.uint8)
        with torch.profiler.profile() as prof:
            random_shift(images, pad=4)
        return sum(e.count for e in prof.key_averages())

    assert count_ops(4) == count_ops(256)


def test_out_and_scratch_reuse_memory_and_match_the_reference():
    torch.manual_seed(2)
    images = torch.randint(0, 256, (40, 3, 12, 14), dtype=torch.uint8)
    shifts = torch.randint(-4, 5, (40, 2))
    ref = shift_images(images.float(), shifts)  # the float path, same semantics
    out = torch.empty_like(images)
    res = shift_images(images, shifts, out=out)
    assert res.data_ptr() == out.data_ptr() and torch.equal(res.float(), ref)
    # the general (gather) path agrees with the CPU window path
    assert torch.equal(shift_images(images.to(torch.bfloat16), shifts).float(), ref)
    scratch = {}
    batch = {"observations": {"pixels.a": images}, "next_observations": {"pixels.a": images}}
    first = augment_batch(batch, pad=4, scratch=scratch)
    second = augment_batch(batch, pad=4, scratch=scratch)
    assert first["observations"]["pixels.a"].data_ptr() == second["observations"]["pixels.a"].data_ptr()
    assert first["observations"]["pixels.a"].data_ptr() != second["next_observations"]["pixels.a"].data_ptr()
    assert torch.equal(images, batch["observations"]["pixels.a"])  # the input is never written


def test_out_of_the_wrong_shape_is_refused():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    try:
        shift_images(images, torch.zeros(4, 2, dtype=torch.long), out=torch.zeros(4, 3, 8, 9, dtype=torch.uint8))
    except ValueError as exc:
        assert "out" in str(exc) and "(4, 3, 8, 8)" in str(exc)
    else:
        raise AssertionError("expected a ValueError")


def test_extreme_shifts_at_the_ends_of_the_batch_match_the_reference():
    """The largest shift on the last sample reaches the very end of the padded scratch."""
    torch.manual_seed(3)
    images = torch.randint(0, 256, (5, 3, 9, 11), dtype=torch.uint8)
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4), mode="replicate")
    for dy, dx in ((4, 4), (-4, -4), (4, -4), (-4, 4)):
        shifts = torch.tensor([[dy, dx]] * 5)
        out = shift_images(images, shifts)
        ref = padded[:, :, 4 + dy: 4 + dy + 9, 4 + dx: 4 + dx + 11]
        assert torch.equal(out.float(), ref)
