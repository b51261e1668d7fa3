"""Mixed demo/online sampling (exact split, empty-buffer fallbacks) and routing of intervention
vs policy transitions, including demo-buffer segment boundaries."""

import numpy as np
import pytest
import torch

from hilserl.data import MixedSampler, ReplayBuffer, Transition, route_transition

SPEC = {"state": ((2,), np.float32), "pixels.gripper": ((3, 3, 3), np.uint8)}


def obs(t):
    return {"state": np.array([0, t], np.float32), "pixels.gripper": np.full((3, 3, 3), t, np.uint8)}


def tr(t, reward=0.0, intervention=False, terminated=False, truncated=False):
    return Transition(obs(t), np.array([t, 1.0], np.float32), reward, terminated, truncated, obs(t + 1), intervention)


def buffers(k=1, cap=200):
    return (ReplayBuffer(cap, SPEC, 2, frame_stack=k, rng=0), ReplayBuffer(cap, SPEC, 2, frame_stack=k, rng=1))


def test_mix_is_exact():
    online, demo = buffers()
    for t in range(20):
        online.add(tr(t, reward=0.0))
        demo.add(tr(100 + t, reward=1.0))
    for frac, bsz in [(0.5, 256), (0.25, 10), (0.5, 7), (0.0, 16), (1.0, 16), (0.3, 33)]:
        b = MixedSampler(online, demo, frac).sample(bsz)
        n_demo = round(frac * bsz)
        assert int(b["rewards"].sum()) == n_demo, (frac, bsz)
        assert torch.all(b["rewards"][:n_demo] == 1) and torch.all(b["rewards"][n_demo:] == 0)
        assert b["observations"]["pixels.gripper"].shape == (bsz, 3, 3, 3)
        # each row is a coherent transition from its own buffer
        st, nst = b["observations"]["state"], b["next_observations"]["state"]
        assert torch.equal(nst[:, 1], st[:, 1] + 1)
        assert torch.equal((st[:, 1] >= 100).float(), b["rewards"])
    # refilling an earlier batch in place gives the same layout
    s = MixedSampler(online, demo)
    out = s.sample(64)
    assert int(s.sample(64, out=out)["rewards"].sum()) == 32


def test_empty_buffer_fallbacks():
    online, demo = buffers()
    s = MixedSampler(online, demo, 0.5)
    with pytest.raises(ValueError, match="both"):
        s.sample(8)
    online.add(tr(0, reward=0.0))
    assert s.split(8) == (0, 8)
    assert float(s.sample(8)["rewards"].sum()) == 0.0  # demo empty: all online
    online2, demo2 = buffers()
    demo2.add(tr(0, reward=1.0))
    assert float(MixedSampler(online2, demo2, 0.5).sample(8)["rewards"].sum()) == 8.0  # online empty: all demo


def test_incompatible_buffers_are_refused():
    online = ReplayBuffer(20, SPEC, 2)
    with pytest.raises(ValueError, match="frame_stack"):
        MixedSampler(online, ReplayBuffer(20, SPEC, 2, frame_stack=2))
    with pytest.raises(ValueError, match="action_dim"):
        MixedSampler(online, ReplayBuffer(20, SPEC, 3))
    with pytest.raises(ValueError, match="demo_fraction"):
        MixedSampler(online, ReplayBuffer(20, SPEC, 2), 1.5)


@pytest.mark.filterwarnings("error")
def test_routing_and_demo_segment_boundaries():
    k = 2
    online, demo = buffers(k)
    # policy 0-2, human 3-5, policy 6-7, human 8-9 (episode terminates during the intervention)
    plan = [False] * 3 + [True] * 3 + [False] * 2 + [True] * 2
    went = [route_transition(tr(t, intervention=h, terminated=(t == 9)), online, demo) for t, h in enumerate(plan)]
    assert went == plan
    assert online.num_added == 10 and online.num_episodes == 1
    assert demo.num_added == 5 and demo.num_episodes == 2  # two intervention segments
    b = demo.sample(2000)
    st = b["observations"]["state"].numpy().astype(int)
    assert set(st[:, 1]) == {3, 4, 5, 8, 9}  # only intervention transitions
    assert torch.all(b["is_intervention"] == 1)
    px = b["observations"]["pixels.gripper"][:, :, 0, 0].numpy()  # [B, k*3] frame ids
    npx = b["next_observations"]["pixels.gripper"][:, :, 0, 0].numpy()
    term = b["terminals"].numpy()
    for i, t in enumerate(st[:, 1]):
        start = 3 if t < 8 else 8  # frame stacks restart at each segment start
        assert px[i].tolist() == [max(t - 1, start)] * 3 + [t] * 3
        assert npx[i].tolist() == [t] * 3 + [t + 1] * 3  # true next obs, also at segment end
        # the segment that ended because the human released (t=5) still bootstraps
        assert term[i] == (1.0 if t == 9 else 0.0)
    # the online buffer sees one continuous episode with policy and human actions
    ob = online.sample(2000)
    assert set(ob["observations"]["state"][:, 1].int().tolist()) == set(range(10))
    opx = ob["observations"]["pixels.gripper"][:, :, 0, 0].numpy()
    ot = ob["observations"]["state"][:, 1].int().numpy()
    assert all(opx[i].tolist() == [max(t - 1, 0)] * 3 + [t] * 3 for i, t in enumerate(ot))
    assert np.array_equal(ob["is_intervention"].numpy(), np.isin(ot, [3, 4, 5, 8, 9]).astype(np.float32))


@pytest.mark.filterwarnings("error")
def test_back_to_back_segments_after_one_policy_step():
    online, demo = buffers(2)
    for t, h in enumerate([True, True, False, True]):
        route_transition(tr(t, intervention=h), online, demo)
    assert demo.num_episodes == 2 and len(demo) == 3
    b = demo.sample(500)
    t = b["observations"]["state"][:, 1].int().numpy()
    first = b["observations"]["pixels.gripper"][:, 0, 0, 0].numpy()
    assert np.array_equal(first, np.where(t == 3, 3, np.maximum(t - 1, 0)))


@pytest.mark.filterwarnings("error")  # routing closes segments explicitly; no implicit breaks
def test_segment_break_even_when_the_policy_step_did_not_move():
    online, demo = buffers(2)
    still = Transition(obs(2), np.zeros(2, np.float32), 0.0, False, False, obs(2), False)
    route_transition(tr(0, intervention=True), online, demo)
    route_transition(tr(1, intervention=True), online, demo)
    route_transition(still, online, demo)  # human released, arm did not move: obs 2 -> obs 2
    route_transition(tr(2, intervention=True), online, demo)  # human grabs again at obs 2
    assert demo.num_episodes == 2 and online.num_episodes == 1
    b = demo.sample(500)
    t = b["observations"]["state"][:, 1].int().numpy()
    first = b["observations"]["pixels.gripper"][:, 0, 0, 0].numpy()
    # the new segment's stack starts at its own first frame, not at the previous segment's
    assert np.array_equal(first, np.where(t == 2, 2, np.maximum(t - 1, 0)))
