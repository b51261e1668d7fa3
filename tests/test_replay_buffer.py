"""Replay buffer storage and sampling: next observations at episode ends, ring wrap-around,
frame stacking, validation, layout and memory use.

Every frame is tagged: state = [episode, step] and the image encodes the same code, so each
sampled row can be checked against what was added."""

import numpy as np
import pytest
import torch

from hilserl.data import ReplayBuffer, Transition

H, W = 4, 5
SPEC = {"state": ((2,), np.float32), "pixels.gripper": ((H, W, 3), np.uint8)}


def code(ep, t):
    return ep * 32 + t


def image(ep, t):
    """Distinct per (ep, t) and asymmetric in h, w, c so a wrong transpose is caught."""
    h, w, c = np.meshgrid(np.arange(H), np.arange(W), np.arange(3), indexing="ij")
    return ((code(ep, t) + 7 * c + 3 * h + w) % 256).astype(np.uint8)


def obs(ep, t):
    return {"state": np.array([ep, t], np.float32), "pixels.gripper": image(ep, t)}


def episode(ep, length, end="terminated", intervention=False):
    """Transitions of one episode; ``end`` in {'terminated', 'truncated', 'open'}."""
    out = []
    for t in range(length):
        last = t == length - 1
        out.append(
            Transition(
                observation=obs(ep, t),
                action=np.array([ep, t, 0.5], np.float32),
                reward=float(code(ep, t)),
                terminated=last and end == "terminated",
                truncated=last and end == "truncated",
                next_observation=obs(ep, t + 1),
                is_intervention=intervention,
            )
        )
    return out


def add_all(buf, transitions):
    for tr in transitions:
        buf.add(tr)


def all_rows(buf, n=4000):
    """Sample enough rows to see every stored transition (tests keep buffers tiny)."""
    b = buf.sample(n)
    return b, [tuple(int(v) for v in s) for s in b["observations"]["state"].numpy()]


def check_rows_consistent(b, k=1):
    """Each row's obs, next obs, action and reward belong to the same (episode, step)."""
    st = b["observations"]["state"].numpy()
    nst = b["next_observations"]["state"].numpy()
    assert np.array_equal(nst[:, 0], st[:, 0]), "next_obs from another episode"
    assert np.array_equal(nst[:, 1], st[:, 1] + 1), "next_obs is not the following frame"
    assert np.array_equal(b["actions"].numpy()[:, :2], st)
    assert np.array_equal(b["rewards"].numpy(), st[:, 0] * 32 + st[:, 1])
    px, npx = b["observations"]["pixels.gripper"].numpy(), b["next_observations"]["pixels.gripper"].numpy()
    for i in range(0, len(st), max(1, len(st) // 50)):
        ep, t = int(st[i, 0]), int(st[i, 1])
        want = np.concatenate([image(ep, max(t - j, 0)).transpose(2, 0, 1) for j in range(k - 1, -1, -1)])
        nwant = np.concatenate([image(ep, max(t + 1 - j, 0)).transpose(2, 0, 1) for j in range(k - 1, -1, -1)])
        assert np.array_equal(px[i], want)
        assert np.array_equal(npx[i], nwant)


@pytest.mark.filterwarnings("error")
def test_next_obs_at_terminated_and_truncated_episode_ends():
    buf = ReplayBuffer(64, SPEC, 3, rng=0)
    add_all(buf, episode(0, 3, "terminated"))
    add_all(buf, episode(1, 4, "truncated"))
    assert len(buf) == 7 and buf.num_added == 7 and buf.num_episodes == 2
    b, rows = all_rows(buf)
    assert set(rows) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)}
    check_rows_consistent(b)
    st = b["observations"]["state"].numpy()
    term = b["terminals"].numpy()
    # terminated: only the last step of episode 0 is terminal; truncated is NOT terminal.
    assert np.array_equal(term, ((st[:, 0] == 0) & (st[:, 1] == 2)).astype(np.float32))
    last_trunc = (st[:, 0] == 1) & (st[:, 1] == 3)
    assert last_trunc.any()
    i = int(np.flatnonzero(last_trunc)[0])
    # the true final observation of the truncated episode is kept to bootstrap from
    assert b["next_observations"]["state"][i].tolist() == [1.0, 4.0]
    assert np.array_equal(b["next_observations"]["pixels.gripper"][i].numpy(), image(1, 4).transpose(2, 0, 1))


def test_batch_layout_and_dtypes():
    spec = dict(SPEC, **{"features.gripper": ((2, 3, 2, 2), np.float16), "environment_state": ((5,), np.float64)})
    buf = ReplayBuffer(32, spec, 3, info_keys=("grasp_penalty", "actor_id"), rng=0)
    for t in range(5):
        o = dict(obs(0, t), **{"features.gripper": np.full((2, 3, 2, 2), t, np.float16), "environment_state": np.full(5, t, np.float64)})
        n = dict(obs(0, t + 1), **{"features.gripper": np.full((2, 3, 2, 2), t + 1, np.float16), "environment_state": np.full(5, t + 1, np.float64)})
        buf.add(Transition(o, np.zeros(3, np.float32), 0.0, False, False, n, True, {"grasp_penalty": -0.02 * t, "actor_id": 7}))
    b = buf.sample(16)
    assert b["observations"]["pixels.gripper"].shape == (16, 3, H, W)
    assert b["observations"]["pixels.gripper"].dtype == torch.uint8
    assert b["observations"]["features.gripper"].shape == (16, 2, 3, 2, 2)
    assert b["observations"]["features.gripper"].dtype == torch.float32
    assert b["observations"]["environment_state"].dtype == torch.float32
    for name in ("rewards", "terminals", "is_intervention", "grasp_penalty", "actor_id"):
        assert b[name].shape == (16,) and b[name].dtype == torch.float32
    assert b["actions"].shape == (16, 3) and b["actions"].dtype == torch.float32
    t = b["observations"]["state"][:, 1].numpy()
    assert np.allclose(b["grasp_penalty"].numpy(), -0.02 * t)
    assert np.all(b["actor_id"].numpy() == 7) and np.all(b["is_intervention"].numpy() == 1)
    assert np.array_equal(b["next_observations"]["features.gripper"][:, 0, 0, 0, 0].numpy(), t + 1)
    # every call returns fresh tensors; ``out=`` refills an earlier batch in place
    b2 = buf.sample(16)
    assert b2["observations"]["state"].data_ptr() != b["observations"]["state"].data_ptr()
    ptr = b["observations"]["pixels.gripper"].data_ptr()
    b3 = buf.sample(16, out=b)
    assert b3["observations"]["pixels.gripper"].data_ptr() == ptr
    with pytest.raises(ValueError, match="shape"):
        buf.sample(8, out=b)


def test_ring_wraparound_never_samples_overwritten_frames():
    cap = 11
    buf = ReplayBuffer(cap, SPEC, 3, rng=1)
    written = []  # reference model: the frames in write order
    lengths = [3, 5, 2, 4, 6, 1, 3]
    for ep, n in enumerate(lengths):
        add_all(buf, episode(ep, n, "truncated" if ep % 2 else "terminated"))
        written += [(ep, t) for t in range(n + 1)]  # n observations + the final next_obs
        alive = set(written[-cap:])
        expected = {(e, t) for (e, t) in alive if (e, t + 1) in alive}
        b, rows = all_rows(buf)
        assert set(rows) == expected, f"after episode {ep}"
        assert len(buf) == len(expected)
        check_rows_consistent(b)


def test_episode_longer_than_ring_with_frame_stack():
    cap, k = 9, 3
    buf = ReplayBuffer(cap, SPEC, 3, frame_stack=k, rng=2)
    add_all(buf, episode(0, 4, "terminated"))
    add_all(buf, episode(1, 25, "open"))  # wraps over itself several times
    b, rows = all_rows(buf)
    # last 9 frames are (1, 17..25); a transition needs its k-frame stack and its next frame.
    assert set(rows) == {(1, t) for t in range(17 + k - 1, 25)}
    check_rows_consistent(b, k)
    # the episode then continues normally after the wrap
    buf.add(episode(1, 27, "truncated")[25])
    b, rows = all_rows(buf)
    assert (1, 25) in rows and (1, 18) not in rows
    check_rows_consistent(b, k)


def test_frame_stack_repeats_first_frame_and_never_mixes_episodes():
    k = 3
    cap = 14
    buf = ReplayBuffer(cap, SPEC, 3, frame_stack=k, stack_keys=("pixels.gripper", "state"), rng=3)
    add_all(buf, episode(0, 4, "terminated"))
    add_all(buf, episode(1, 3, "truncated"))
    add_all(buf, episode(2, 6, "terminated"))  # 16 frames in 14 slots: (0, 0), (0, 1) overwritten
    alive = set(([(0, t) for t in range(5)] + [(1, t) for t in range(4)] + [(2, t) for t in range(7)])[-cap:])
    expected = {(e, t) for (e, t) in alive if (e, t + 1) in alive
                and all((e, max(t - j, 0)) in alive for j in range(k))}
    assert expected == {(1, 0), (1, 1), (1, 2)} | {(2, t) for t in range(6)}
    b, rows = all_rows(buf)
    assert {(r[-2], r[-1]) for r in rows} == expected  # (0, 2), (0, 3) lost their stacked frames
    assert b["observations"]["pixels.gripper"].shape[1:] == (3 * k, H, W)
    assert b["observations"]["state"].shape[1:] == (2 * k,)
    st = b["observations"]["state"].numpy().reshape(-1, k, 2)
    nst = b["next_observations"]["state"].numpy().reshape(-1, k, 2)
    for i in range(len(st)):
        ep, t = int(st[i, -1, 0]), int(st[i, -1, 1])
        assert np.all(st[i, :, 0] == ep) and np.all(nst[i, :, 0] == ep), "stack mixes episodes"
        assert st[i, :, 1].tolist() == [max(t - 2, 0), max(t - 1, 0), t]
        assert nst[i, :, 1].tolist() == [max(t - 1, 0), t, t + 1]
    starts = [i for i in range(len(st)) if st[i, -1, 1] == 0]
    assert starts, "episode starts were sampled"
    # image stacks: oldest frame first along the channel axis
    check_rows_consistent(
        {**b, "observations": {**b["observations"], "state": torch.from_numpy(st[:, -1])},
         "next_observations": {**b["next_observations"], "state": torch.from_numpy(nst[:, -1])}},
        k,
    )


def test_observation_that_does_not_continue_starts_new_episode():
    buf = ReplayBuffer(30, SPEC, 3, frame_stack=2, rng=4)
    tr = episode(0, 5, "open")
    add_all(buf, tr[:3])
    with pytest.warns(UserWarning, match="new episode"):
        add_all(buf, episode(1, 3, "terminated"))  # env reset without a done flag
    assert buf.num_episodes == 2
    b, rows = all_rows(buf)
    assert set(rows) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}
    check_rows_consistent(b, 2)
    # explicit end_episode: same result, no warning
    buf.end_episode()
    add_all(buf, episode(2, 2, "terminated"))
    assert buf.num_episodes == 3


def test_validation_errors_name_the_key():
    buf = ReplayBuffer(16, SPEC, 3, info_keys=("grasp_penalty",))
    good = dict(observation=obs(0, 0), action=np.zeros(3, np.float32), reward=0.0, terminated=False,
                truncated=False, next_observation=obs(0, 1), info={"grasp_penalty": 0.0})

    def bad(match, **change):
        with pytest.raises(ValueError, match=match):
            buf.add(Transition(**{**good, **change}))

    bad(r"'state'.*dtype float32.*float64",
        observation={**obs(0, 0), "state": np.zeros(2, np.float64)})
    bad(r"'pixels.gripper'.*shape \(4, 5, 3\)", next_observation={**obs(0, 1), "pixels.gripper": np.zeros((5, 4, 3), np.uint8)})
    bad(r"missing key 'state'", observation={"pixels.gripper": image(0, 0)})
    bad(r"unexpected key 'pixels.wrist'", observation={**obs(0, 0), "pixels.wrist": image(0, 0)})
    bad(r"action.*shape \(3,\)", action=np.zeros(4, np.float32))
    bad(r"info.*'grasp_penalty'", info={})
    bad(r"info.*'seq'", info={"grasp_penalty": 0.0, "seq": 1.0})
    assert len(buf) == 0 and buf.num_added == 0  # nothing half-written
    buf.add(Transition(**good))
    assert len(buf) == 1
    with pytest.raises(ValueError, match="'pixels.gripper'"):
        ReplayBuffer(16, {"pixels.gripper": ((4, 4), "nonsense-dtype")}, 3)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(16, SPEC, 3).sample(4)


def test_seeded_sampling_is_reproducible():
    bufs = [ReplayBuffer(40, SPEC, 3, rng=np.random.default_rng(123)) for _ in range(2)]
    for buf in bufs:
        add_all(buf, episode(0, 10, "terminated") + episode(1, 10, "truncated"))
    a, b = (buf.sample(32) for buf in bufs)
    assert torch.equal(a["observations"]["state"], b["observations"]["state"])
    c = ReplayBuffer(40, SPEC, 3, rng=7)
    add_all(c, episode(0, 10, "terminated") + episode(1, 10, "truncated"))
    assert not torch.equal(a["observations"]["state"], c.sample(32)["observations"]["state"])


def test_bytes_per_transition_one_camera_128_plus_state():
    spec = {"state": ((18,), np.float32), "pixels.gripper": ((128, 128, 3), np.uint8)}
    buf = ReplayBuffer(2000, spec, 4, info_keys=("grasp_penalty",))
    assert 128 * 128 * 3 + 18 * 4 < buf.bytes_per_transition <= 50_000
    stacked = ReplayBuffer(2000, spec, 4, frame_stack=3)  # stacking costs no extra storage
    assert stacked.bytes_per_transition <= 50_000


@pytest.mark.filterwarnings("error")
def test_episode_after_truncation_starts_fresh_even_from_the_same_observation():
    buf = ReplayBuffer(30, SPEC, 3, frame_stack=2, rng=5)
    add_all(buf, episode(0, 3, "truncated"))  # final obs (0, 3)
    # the next episode starts where the last one stopped (reset did not move anything)
    buf.add(Transition(obs(0, 3), np.zeros(3, np.float32), 0.0, False, False, obs(0, 4)))
    assert buf.num_episodes == 2
    b = buf.sample(500)
    t = b["observations"]["state"][:, 1].int().numpy()
    ids = b["observations"]["pixels.gripper"][:, ::3, 0, 0].numpy().astype(int)  # frame ids, oldest first
    rows = t == 3
    assert rows.any() and np.all(ids[rows] == [3, 3])  # stack restarts: no frame from the old episode
    trunc = (t == 2)
    assert np.all(b["terminals"].numpy()[trunc] == 0)


def _add_feature_episodes(buf, episodes: int, length: int, maps) -> None:
    """Episodes of ``length`` steps whose state is (episode, step) and whose ``features.gripper`` is ``maps(ep, t)``."""
    for ep in range(episodes):
        for t in range(length):
            buf.add(Transition({"state": np.array([ep, t], np.float32), "features.gripper": maps(ep, t)},
                               np.zeros(3, np.float32), 0.0, t == length - 1, False,
                               {"state": np.array([ep, t + 1], np.float32), "features.gripper": maps(ep, t + 1)},
                               False))


def test_view_keys_give_each_row_one_view_of_its_own_frame():
    """A view key stores K alternative views per frame ([K, ...], e.g. the backbone maps of K shifted copies);
    each sampled row gets one of them, drawn independently for obs and next obs, and all K get drawn."""
    k = 4
    spec = {"state": ((2,), np.float32), "features.gripper": ((k, 3), np.float16)}

    def views(ep, t):  # view j of frame (ep, t) encodes all three
        return np.array([[ep, t, j] for j in range(k)], np.float16)

    buf = ReplayBuffer(200, spec, 3, view_keys=("features.gripper",), rng=0)
    _add_feature_episodes(buf, 3, 10, views)
    b = buf.sample(2000)
    st, f = b["observations"]["state"].numpy(), b["observations"]["features.gripper"].numpy()
    nst, nf = b["next_observations"]["state"].numpy(), b["next_observations"]["features.gripper"].numpy()
    assert f.shape == (2000, 3) and f.dtype == np.float32
    assert np.array_equal(f[:, :2], st) and np.array_equal(nf[:, :2], nst)
    assert set(f[:, 2].astype(int)) == set(range(k)) and set(nf[:, 2].astype(int)) == set(range(k))
    assert (f[:, 2] != nf[:, 2]).mean() > 0.5  # independent draws for obs and next obs
    with pytest.raises(ValueError, match="view key 'state'"):
        ReplayBuffer(20, {"state": ((2,), np.float32)}, 3, view_keys=("state",))


def test_a_stacked_view_key_gives_each_row_its_last_frames_in_one_view():
    """Cached backbone maps with frame stacking: a key that is both a view key ([K, C, ...] per frame) and a stack
    key comes out [k*C, ...]: the row's k most recent frames of its own episode (the first repeated at an episode
    start, oldest first), all in the row's one drawn view; the next observation's stack ends one frame later."""
    views, k = 3, 3
    spec = {"state": ((2,), np.float32), "features.gripper": ((views, 2, 1), np.float16)}

    def maps(ep, t):  # view j of frame (ep, t): channels (ep * 100 + t, j)
        return np.array([[[ep * 100 + t], [j]] for j in range(views)], np.float16)

    buf = ReplayBuffer(40, spec, 3, frame_stack=k, stack_keys=("features.gripper",),
                       view_keys=("features.gripper",), rng=0)
    _add_feature_episodes(buf, 4, 12, maps)  # 4 x 12 frames in a ring of 40: the oldest episode is overwritten
    b = buf.sample(3000)
    st, f = b["observations"]["state"].numpy(), b["observations"]["features.gripper"].numpy()
    nf = b["next_observations"]["features.gripper"].numpy()
    assert f.shape == (3000, 2 * k, 1) and f.dtype == np.float32
    ep, t = st[:, 0].astype(int), st[:, 1].astype(int)
    want = np.stack([ep * 100 + np.maximum(t - back, 0) for back in (2, 1, 0)], 1)  # oldest first, clipped at 0
    assert np.array_equal(f[:, 0::2, 0], want)
    assert np.array_equal(nf[:, 0::2, 0], np.stack([ep * 100 + np.maximum(t + 1 - back, 0) for back in (2, 1, 0)], 1))
    view = f[:, 1::2, 0]
    assert (view == view[:, :1]).all() and set(view[:, 0].astype(int)) == set(range(views))  # one view per row
    assert set(ep) == {1, 2, 3}


def test_n_step_returns_sum_within_the_episode_and_bootstrap_from_the_right_frame():
    """n = 3, discount 0.5: each row sums up to 3 rewards of its own episode, bootstraps from the frame after the
    last one, is terminal only when that last transition terminated, and says how far it looked (discounts)."""
    g = 0.5
    buf = ReplayBuffer(200, SPEC, 3, n_step=3, discount=g, info_keys=("grasp_penalty",), rng=0)
    lengths = {0: 5, 1: 2, 2: 4}
    for ep, length in lengths.items():
        for t, tr in enumerate(episode(ep, length, end="terminated" if ep != 2 else "truncated")):
            tr.info = {"grasp_penalty": -float(t)}
            buf.add(tr)
    open_ep = episode(3, 3, end="open")  # still running: its newest transition has no successor yet
    for t, tr in enumerate(open_ep):
        tr.info = {"grasp_penalty": -float(t)}
        buf.add(tr)
    lengths[3] = 3
    b = buf.sample(3000)
    st = b["observations"]["state"].numpy().astype(int)
    nst = b["next_observations"]["state"].numpy().astype(int)
    seen = set()
    for row in range(len(st)):
        ep, t = st[row]
        k = min(3, lengths[ep] - t)  # transitions left in the episode (or written so far)
        want = sum(g ** j * code(ep, t + j) for j in range(k))
        assert b["rewards"][row].item() == pytest.approx(want)
        assert b["grasp_penalty"][row].item() == pytest.approx(sum(g ** j * -(t + j) for j in range(k)))
        assert tuple(nst[row]) == (ep, t + k)
        assert b["discounts"][row].item() == pytest.approx(g ** k)
        assert b["terminals"][row].item() == float(ep in (0, 1) and t + k == lengths[ep])
        assert b["actions"][row, 1].item() == t  # the first transition's action
        seen.add((ep, t))
    assert seen == {(ep, t) for ep, n in lengths.items() for t in range(n)}
    # one step: the plain transition, and no discounts field
    one = ReplayBuffer(200, SPEC, 3, rng=0)
    add_all(one, episode(0, 4))
    assert "discounts" not in one.sample(8)
