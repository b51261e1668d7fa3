"""Episodes and the demo-dataset format: a dataset written and reopened gives every episode back exactly (pixels,
final observation, flags, interventions, info, tasks); filling a buffer adds the right transitions with the right
terminal flags and converts observations with the caller's function; bad input is refused with a clear error and
without touching what was already stored."""

import json

import numpy as np
import pytest

from hilserl.data import ReplayBuffer
from hilserl.data.demo_dataset import DemoDataset
from hilserl.data.episodes import (
    Episode,
    episodes_from_buffer,
    fill_buffer,
    observation_spec_from_space,
    raw_to_stored,
    stored_to_raw,
)

STATE = 6
SPEC = {"state": ((STATE,), np.float32), "pixels.gripper": ((16, 16, 3), np.uint8)}


def observation(ep: int, t: int) -> dict:
    """State and image both say which episode and step they belong to."""
    image = np.zeros((16, 16, 3), np.uint8)
    image[:8] = 10 * ep + 5
    image[8:] = (7 * t) % 256
    return {"state": np.array([ep, t, 0, 0, 0, 0], np.float32), "pixels": {"gripper": image}}


def episode(ep: int, length: int, end: str = "terminated", task: str = "grasp") -> Episode:
    rng = np.random.default_rng(ep)
    actions = rng.uniform(-1, 1, (length, 4)).astype(np.float32)
    actions[:, -1] = rng.integers(0, 3, length)
    return Episode(
        observations=[observation(ep, t) for t in range(length + 1)],
        actions=actions,
        rewards=np.arange(length, dtype=np.float32) + 100 * ep,
        terminated=end == "terminated",
        truncated=end == "truncated",
        is_intervention=np.arange(length) % 3 == 0,
        task=task,
        info={"grasp_penalty": -0.02 * (np.arange(length) % 2)},
    )


def assert_same_episode(a: Episode, b: Episode) -> None:
    assert a.length == b.length
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.is_intervention, b.is_intervention)
    assert (a.terminated, a.truncated, a.task) == (b.terminated, b.truncated, b.task)
    assert a.info.keys() == b.info.keys()
    for k in a.info:
        np.testing.assert_array_equal(a.info[k], b.info[k])
    np.testing.assert_array_equal(a.stacked("state"), b.stacked("state"))
    assert a.cameras == b.cameras
    for cam in a.cameras:
        np.testing.assert_array_equal(a.stacked("pixels." + cam), b.stacked("pixels." + cam))


# ---------------------------------------------------------------------------------------------------- Episode
def test_episode_checks_its_parts():
    good = episode(0, 4)
    with pytest.raises(ValueError, match="expected 5"):
        Episode(good.observations[:-1], good.actions, good.rewards)
    with pytest.raises(ValueError, match="rewards"):
        Episode(good.observations, good.actions, good.rewards[:3])
    bad_state = [dict(o) for o in good.observations]
    bad_state[2] = {**bad_state[2], "state": bad_state[2]["state"].astype(np.float64)}
    with pytest.raises(ValueError, match="observation 2.*float32"):
        Episode(bad_state, good.actions, good.rewards)
    other_camera = [dict(o) for o in good.observations]
    other_camera[3] = {**other_camera[3], "pixels": {"front": other_camera[3]["pixels"]["gripper"]}}
    with pytest.raises(ValueError, match="observation 3: cameras"):
        Episode(other_camera, good.actions, good.rewards)
    with pytest.raises(ValueError, match=r"info\['x'\]"):
        Episode(good.observations, good.actions, good.rewards, info={"x": np.zeros(2)})


def test_raw_and_stored_layouts_convert_both_ways():
    obs = observation(2, 3)
    stored = raw_to_stored(obs)
    assert set(stored) == {"state", "pixels.gripper"}
    back = stored_to_raw(stored)
    np.testing.assert_array_equal(back["pixels"]["gripper"], obs["pixels"]["gripper"])
    with pytest.raises(ValueError, match="cached backbone features"):
        stored_to_raw({"state": obs["state"], "features.gripper": np.zeros((4, 2, 2, 2), np.float16)})


def test_observation_spec_from_the_simulation_space():
    from hilserl.sim.env import SO101GraspCubeEnv

    env = SO101GraspCubeEnv(cameras=("gripper", "front"), image_size=32)
    spec = observation_spec_from_space(env.observation_space)
    assert spec == {"state": ((17,), np.float32), "pixels.gripper": ((32, 32, 3), np.uint8),
                    "pixels.front": ((32, 32, 3), np.uint8)}
    env.close()


# ---------------------------------------------------------------------------------------------------- DemoDataset
def test_demo_dataset_round_trip(tmp_path):
    root = tmp_path / "demos"
    eps = [episode(0, 5, "terminated"), episode(1, 7, "truncated", task="push"), episode(2, 3, "open")]
    with DemoDataset.create(root, SPEC, capacity=64, fps=10, robot_type="so101", task="grasp",
                            created_by="test", info_keys=("grasp_penalty",)) as ds:
        for ep in eps:
            ds.add_episode(ep)
        assert ds.free_slots == 64 - (6 + 8 + 4)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "hilserl.demo_dataset/1"
    assert (manifest["episodes"], manifest["transitions"], manifest["cameras"]) == (3, 15, ["gripper"])
    assert (manifest["fps"], manifest["robot_type"], manifest["created_by"]) == (10, "so101", "test")

    with DemoDataset.open(root) as ds:
        back = list(ds.episodes())
        assert len(ds) == 3 and ds.cameras == ("gripper",)
    assert len(back) == 3
    for a, b in zip(eps, back):
        assert_same_episode(a, b)


def test_demo_dataset_refuses_an_episode_that_does_not_fit_and_keeps_the_others(tmp_path):
    root = tmp_path / "demos"
    with DemoDataset.create(root, SPEC, capacity=12, info_keys=(k for k in ["grasp_penalty"])) as ds:  # any iterable
        ds.add_episode(episode(0, 5))
        with pytest.raises(ValueError, match="is full: episode 1 needs 8 frame slots, 6 of 12"):
            ds.add_episode(episode(1, 7))
        ds.add_episode(episode(2, 4))  # still fits after the refusal
    with DemoDataset.open(root) as ds:
        back = list(ds.episodes())
    assert [e.length for e in back] == [5, 4]
    assert_same_episode(back[1], episode(2, 4))
    assert json.loads((root / "manifest.json").read_text())["info_keys"] == ["grasp_penalty"]


def test_demo_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="manifest.json is missing"):
        DemoDataset.open(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text(json.dumps({"format": "something/2"}))
    with pytest.raises(ValueError, match="'format' is 'something/2'"):
        DemoDataset.open(tmp_path / "x")
    with pytest.raises(ValueError, match="not an empty folder"):
        DemoDataset.create(tmp_path / "x", SPEC)
    with pytest.raises(ValueError, match="raw pixels"):
        DemoDataset.create(tmp_path / "y", {"state": ((6,), np.float32),
                                            "features.gripper": ((4, 8, 2, 2), np.float16)})
    with DemoDataset.create(tmp_path / "z", SPEC) as ds:  # no info keys: episodes' info is not stored
        with pytest.raises(ValueError, match="camera 'gripper' is missing"):
            ep = episode(0, 3)
            ds.add_episode(Episode([{"state": o["state"]} for o in ep.observations], ep.actions, ep.rewards))
        assert len(ds) == 0


def test_manifest_behind_the_buffer_is_repaired_from_the_buffer(tmp_path):
    """A crash after the buffer flush but before the manifest write: the buffer is the record."""
    root = tmp_path / "demos"
    with DemoDataset.create(root, SPEC, capacity=64, info_keys=("grasp_penalty",)) as ds:
        ds.add_episode(episode(0, 5))
        before = (root / "manifest.json").read_text()
        ds.add_episode(episode(1, 4))
    (root / "manifest.json").write_text(before)
    with pytest.warns(UserWarning, match="manifest lists 1 episodes, the buffer holds 2"):
        ds = DemoDataset.open(root)
    assert len(ds) == 2 and [e.length for e in ds.episodes()] == [5, 4]
    ds.close()


# ---------------------------------------------------------------------------------------------------- buffers
def test_fill_buffer_adds_every_transition_with_its_terminal_flag():
    buf = ReplayBuffer(100, SPEC, 4, info_keys=("grasp_penalty",), rng=0)
    eps = [episode(0, 5, "terminated"), episode(1, 6, "truncated"), episode(3, 3), episode(2, 4, "open")]
    counts = fill_buffer(buf, eps)
    assert (counts.episodes, counts.transitions, counts.terminated, counts.truncated) == (4, 18, 2, 1)
    assert counts.interventions == sum(int(e.is_intervention.sum()) for e in eps)
    assert len(buf) == 18 and buf.num_episodes == 4 and not buf.episode_open

    batch = buf.sample(2000)
    ep_id = batch["observations"]["state"][:, 0].numpy().astype(int)
    step = batch["observations"]["state"][:, 1].numpy().astype(int)
    lengths = np.array([5, 6, 4, 3])
    is_last = step == lengths[ep_id] - 1
    expect_terminal = is_last & np.isin(ep_id, [0, 3])  # episode 1 was cut by a time limit, 2 left open
    np.testing.assert_array_equal(batch["terminals"].numpy() == 1, expect_terminal)
    np.testing.assert_array_equal(batch["next_observations"]["state"][:, 1].numpy().astype(int), step + 1)
    np.testing.assert_array_equal(batch["is_intervention"].numpy() == 1, step % 3 == 0)
    for a, b in zip(eps, episodes_from_buffer(buf, "grasp")):
        assert_same_episode(a, b)


def test_fill_buffer_keeps_only_the_info_the_buffer_stores():
    buf = ReplayBuffer(40, SPEC, 4, rng=0)  # e.g. a continuous-gripper policy: no grasp_penalty
    counts = fill_buffer(buf, [episode(0, 5)])
    assert counts.transitions == 5 and len(buf) == 5 and "grasp_penalty" not in buf.sample(4)


def test_fill_buffer_converts_observations_and_computes_info():
    spec = {"state": ((STATE,), np.float32), "features.gripper": ((2,), np.float16)}
    buf = ReplayBuffer(40, spec, 4, info_keys=("grasp_penalty",), rng=0)

    def to_features(obs):  # stands in for ObservationProcessor.to_stored with cached features
        img = obs["pixels"]["gripper"]
        return {"state": obs["state"], "features.gripper": np.array([img[0, 0, 0], img[-1, 0, 0]], np.float16)}

    def penalty(stored, action):
        return {"grasp_penalty": -1.0 if action[-1] == 0 else 0.0}

    eps = [episode(1, 5), episode(2, 4)]
    fill_buffer(buf, eps, to_stored=to_features, info=penalty)
    batch = buf.sample(500)
    st, feat = batch["observations"]["state"].numpy(), batch["observations"]["features.gripper"].numpy()
    np.testing.assert_array_equal(feat[:, 0], 10 * st[:, 0] + 5)
    np.testing.assert_array_equal(feat[:, 1], (7 * st[:, 1]) % 256)
    gripper = batch["actions"][:, -1].numpy()
    np.testing.assert_array_equal(batch["grasp_penalty"].numpy(), np.where(gripper == 0, -1.0, 0.0))


def test_fill_buffer_refuses_mismatches_before_writing():
    buf = ReplayBuffer(40, SPEC, 4, info_keys=("grasp_penalty",), rng=0)
    ep = episode(0, 4)
    with pytest.raises(ValueError, match="episode 0: actions have 3 values, the buffer expects 4"):
        fill_buffer(buf, [Episode(ep.observations, ep.actions[:, :3], ep.rewards)])
    with pytest.raises(ValueError, match="no such values; pass info="):
        fill_buffer(buf, [Episode(ep.observations, ep.actions, ep.rewards)])
    small = [{"state": o["state"], "pixels": {"gripper": o["pixels"]["gripper"][:8]}} for o in ep.observations]
    with pytest.raises(ValueError, match=r"images 'pixels.gripper' have shape \(8, 16, 3\)"):
        fill_buffer(buf, [Episode(small, ep.actions, ep.rewards, info=ep.info)])
    long_state = [{**o, "state": np.zeros(9, np.float32)} for o in ep.observations]
    with pytest.raises(ValueError, match=r"'state' has shape \(9,\)"):
        fill_buffer(buf, [Episode(long_state, ep.actions, ep.rewards, info=ep.info)])
    tagged = ReplayBuffer(40, SPEC, 4, info_keys=("grasp_penalty",), tag_keys=("actor", "seq"))
    with pytest.raises(ValueError, match=r"tags every transition with \['actor', 'seq'\].*Learner.ingest"):
        fill_buffer(tagged, [ep])
    tiny = ReplayBuffer(4, SPEC, 4, info_keys=("grasp_penalty",))
    with pytest.raises(ValueError, match="episode 0: 4 steps need 5 slots, the buffer has 4"):
        fill_buffer(tiny, [ep])
    assert len(buf) == 0 and buf.num_added == 0 and tiny.num_added == 0 and tagged.num_added == 0


def test_episodes_from_a_wrapped_buffer_keep_what_survives():
    buf = ReplayBuffer(16, SPEC, 4, info_keys=("grasp_penalty",), rng=0)
    eps = [episode(0, 5), episode(1, 6, "truncated"), episode(2, 5)]  # 6 + 7 + 6 = 19 frames in 16 slots
    fill_buffer(buf, eps)
    back = list(episodes_from_buffer(buf, "grasp"))
    # episode 0 lost its first three frames (two transitions survive), episodes 1 and 2 are whole
    assert [e.length for e in back] == [2, 6, 5]
    np.testing.assert_array_equal(back[0].stacked("state")[:, 1], [3, 4, 5])
    assert back[0].terminated and back[1].truncated
    np.testing.assert_array_equal(back[0].actions, eps[0].actions[3:])
    assert_same_episode(back[1], eps[1])
    assert_same_episode(back[2], eps[2])
