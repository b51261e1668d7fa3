"""Disk-backed replay buffer: reopening restores contents and counters exactly, a process crash
after a flush loses nothing flushed and never yields transitions with overwritten frames, and a
mismatched configuration is refused with a clear error. Nothing is pickled."""

import gc
import json

import numpy as np
import pytest
import torch

from hilserl.data import ReplayBuffer, Transition

SPEC = {"state": ((2,), np.float32), "pixels.gripper": ((4, 4, 3), np.uint8),
        "features.gripper": ((2, 2, 2), np.float16)}


def obs(ep, t):
    return {"state": np.array([ep, t], np.float32),
            "pixels.gripper": np.full((4, 4, 3), (ep * 32 + t) % 256, np.uint8),
            "features.gripper": np.full((2, 2, 2), t, np.float16)}


def episode(ep, length, end="terminated"):
    return [Transition(obs(ep, t), np.array([ep, t], np.float32), float(t), end == "terminated" and t == length - 1,
                       end == "truncated" and t == length - 1, obs(ep, t + 1), t % 3 == 0, {"seq": ep * 100 + t})
            for t in range(length)]


def make(path, cap=24, rng=0, **kw):
    return ReplayBuffer(cap, SPEC, 2, info_keys=("seq",), frame_stack=2, storage_dir=path, rng=rng, **kw)


def rows(buf, n=3000):
    b = buf.sample(n)
    st = b["observations"]["state"].numpy()
    nst = b["next_observations"]["state"].numpy()
    assert np.array_equal(nst[:, 0], st[:, 0]) and np.array_equal(nst[:, 1], st[:, 1] + 1)
    assert np.array_equal(b["seq"].numpy(), st[:, 0] * 100 + st[:, 1])
    return {(int(e), int(t)) for e, t in st}


def assert_same_batches(a, b):
    for k, v in a.items():
        if isinstance(v, dict):
            assert_same_batches(v, b[k])
        else:
            assert torch.equal(v, b[k]), k


def test_close_and_reopen_restores_exactly(tmp_path):
    d = tmp_path / "buf"
    buf = make(d, rng=5)
    for ep, n in enumerate([5, 7, 6, 4]):  # 26 frames in 24 slots: wrapped
        for tr in episode(ep, n, "truncated" if ep % 2 else "terminated"):
            buf.add(tr)
    buf.add(episode(4, 3, "open")[0])  # leave an episode open across the reopen
    state = (len(buf), buf.num_added, buf.num_episodes, buf.episode_open)
    contents = rows(buf)
    ref = ReplayBuffer(24, SPEC, 2, info_keys=("seq",), frame_stack=2, rng=99)
    buf.rng = np.random.default_rng(99)
    expected_batch = buf.sample(64)
    buf.rng = np.random.default_rng(5)
    buf.close()
    del ref
    # nothing pickled: every file is a plain .npy readable without allow_pickle, plus JSON
    names = sorted(p.name for p in d.iterdir())
    assert "meta.json" in names and all(n.endswith(".npy") or n == "meta.json" for n in names)
    for p in d.glob("*.npy"):
        np.load(p, allow_pickle=False, mmap_mode="r")
    json.loads((d / "meta.json").read_text())

    for reopened in (ReplayBuffer.open(d, rng=99), make(d, rng=99)):
        assert (len(reopened), reopened.num_added, reopened.num_episodes, reopened.episode_open) == state
        assert_same_batches(expected_batch, reopened.sample(64))
        assert rows(reopened) == contents
        reopened.close()
    # the open episode continues after reopening, with its frame stack intact
    again = ReplayBuffer.open(d)
    again.add(episode(4, 3, "open")[1])
    b = again.sample(2000)
    st = b["observations"]["state"].numpy()
    i = int(np.flatnonzero((st[:, 0] == 4) & (st[:, 1] == 1))[0])
    assert b["observations"]["pixels.gripper"][i, :, 0, 0].tolist() == [128, 128, 128, 129, 129, 129]
    assert again.num_episodes == state[2]
    again.close()


def test_crash_after_flush_keeps_flushed_state(tmp_path):
    d = tmp_path / "buf"
    buf = make(d)
    for ep in range(3):
        for tr in episode(ep, 5, "terminated"):
            buf.add(tr)
    buf.flush()
    state = (len(buf), buf.num_added, buf.num_episodes)
    next_batch = buf.sample(32, device="cpu")  # the sampling stream continues from the flush
    flushed = rows(buf)
    del buf  # crash: no close()
    gc.collect()
    crashed = ReplayBuffer.open(d)  # no rng given: the flushed RNG state is restored
    assert (len(crashed), crashed.num_added, crashed.num_episodes) == state
    assert_same_batches(next_batch, crashed.sample(32))
    assert rows(crashed) == flushed
    del crashed
    gc.collect()


def test_crash_after_unflushed_overwrites_drops_stale_transitions(tmp_path):
    d = tmp_path / "buf"
    buf = make(d, cap=20)
    for ep in range(3):
        for tr in episode(ep, 5, "terminated"):  # 18 frames: slots 0..17
            buf.add(tr)
    buf.flush()
    flushed = rows(buf)
    for tr in episode(3, 3, "open"):  # 4 more frames wrap over slots 18, 19, 0, 1 (episode 0)
        buf.add(tr)
    del buf  # crash before the next flush; the memmaps hold the newer frames
    gc.collect()
    crashed = make(d, cap=20)
    assert crashed.num_added == 15 and crashed.num_episodes == 3
    got = rows(crashed)
    # (0, 0) and (0, 1) lost frames to the unflushed writes and (0, 2) its stacked frame (k=2);
    # nothing of the unflushed episode 3 appears; the rest is as flushed.
    assert got == flushed - {(0, 0), (0, 1), (0, 2)}
    assert len(crashed) == len(got)
    for tr in episode(5, 4, "terminated"):  # and the buffer keeps working
        crashed.add(tr)
    assert {(5, t) for t in range(4)} <= rows(crashed)
    crashed.close()


def test_reopen_with_mismatched_config_is_refused(tmp_path):
    d = tmp_path / "buf"
    make(d).close()
    bad_spec = dict(SPEC, state=((3,), np.float32))
    with pytest.raises(ValueError, match=r"different configuration.*'state'.*\(2,\).*\(3,\)"):
        ReplayBuffer(24, bad_spec, 2, info_keys=("seq",), frame_stack=2, storage_dir=d)
    with pytest.raises(ValueError, match=r"capacity: stored 24, given 30"):
        make(d, cap=30)
    with pytest.raises(ValueError, match=r"'pixels.wrist' is not in the stored buffer"):
        ReplayBuffer(24, dict(SPEC, **{"pixels.wrist": ((4, 4, 3), np.uint8)}), 2, info_keys=("seq",),
                     frame_stack=2, storage_dir=d)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        make(other)
    with pytest.raises(ValueError, match="no replay buffer"):
        ReplayBuffer.open(tmp_path / "missing")


def test_crash_after_unflushed_writes_lap_the_write_cursor(tmp_path):
    d = tmp_path / "buf"
    buf = make(d, cap=10)
    for tr in episode(0, 3, "open"):  # frames (0, 0..3) in slots 0..3
        buf.add(tr)
    buf.flush()  # the episode is open at the flush
    for tr in episode(0, 15, "open")[3:]:  # 12 more frames lap the whole ring
        buf.add(tr)
    del buf
    gc.collect()
    crashed = make(d, cap=10)
    assert len(crashed) == 0  # every flushed frame was overwritten
    # the slot holding the flushed episode's last frame now has (0, 13): even an observation equal
    # to it must start a new episode, else its stack would reach into unflushed frames.
    crashed.add(episode(0, 15, "open")[13])
    assert crashed.num_episodes == 2
    b = crashed.sample(8)
    assert b["observations"]["pixels.gripper"][:, ::3, 0, 0].tolist() == [[13, 13]] * 8
    crashed.close()
