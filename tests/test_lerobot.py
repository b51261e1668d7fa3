"""LeRobot v3.0 datasets both ways: what the exporter writes follows the v3.0 layout, reads back identically
(every parquet value exact, frame counts and timestamps exact, pixels within the documented tolerance, exactly with
lossless video), splits several episodes per mp4 by timestamp, starts new files at the size setting, fills a demo
buffer through the policy's observation processor, and a corrupt or old dataset is refused naming the file and field.
Test data is synthetic: 32×32 frames whose blocks encode episode, step and camera."""

import json
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hilserl.data import ReplayBuffer
from hilserl.data.demo_dataset import DemoDataset
from hilserl.data.episodes import Episode, episodes_from_buffer, fill_buffer
from hilserl.data.lerobot_export import export_lerobot, export_replay_buffer
from hilserl.data.lerobot_import import import_lerobot
from hilserl.data.lerobot_v3 import VIDEO_TOLERANCE, gripper_to_continuous, gripper_to_discrete
from hilserl.data.video import VideoReader, ffmpeg_exe

FPS = 10
STATE = 17
LENGTHS = (6, 9, 4)
ENDS = ("terminated", "truncated", "open")


def frame(ep: int, t: int, cam: str) -> np.ndarray:
    """8×8 blocks (H.264 keeps flat blocks well): top-left says the episode, bottom-right the step."""
    img = np.full((32, 32, 3), 30, np.uint8)
    img[:16, :16] = 40 * ep + 20
    img[16:, 16:] = 12 * t + 10
    img[:16, 16:] = (200, 60, 60) if cam == "gripper" else (60, 60, 200)
    return img


def episode(ep: int, length: int, end: str, cameras=("gripper", "front")) -> Episode:
    rng = np.random.default_rng(ep)
    states = rng.normal(size=(length + 1, STATE)).astype(np.float32)
    states[:, 0] = ep
    states[:, 1] = np.arange(length + 1)
    actions = rng.uniform(-1, 1, (length, 4)).astype(np.float32)
    actions[:, -1] = rng.integers(0, 3, length)
    obs = [{"state": states[t], "pixels": {c: frame(ep, t, c) for c in cameras}} for t in range(length + 1)]
    return Episode(obs, actions, rng.normal(size=length).astype(np.float32), end == "terminated",
                   end == "truncated", rng.random(length) < 0.4, task=("grasp the cube", "lift")[ep % 2],
                   info={"grasp_penalty": np.where(actions[:, -1] == 0, -0.02, 0.0)})


EPISODES = [episode(e, n, end) for e, (n, end) in enumerate(zip(LENGTHS, ENDS))]


@pytest.fixture(scope="module")
def lossy(tmp_path_factory):
    root = tmp_path_factory.mktemp("lossy") / "ds"
    export_lerobot(EPISODES, root, fps=FPS, robot_type="so101_follower")
    return root


@pytest.fixture(scope="module")
def lossless(tmp_path_factory):
    root = tmp_path_factory.mktemp("lossless") / "ds"
    export_lerobot(EPISODES, root, fps=FPS, robot_type="so101_follower", lossless=True)
    return root


def corrupt_copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def assert_exact_except_pixels(a: Episode, b: Episode) -> None:
    assert a.length == b.length
    for name in ("actions", "rewards", "is_intervention"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.terminated, a.truncated, a.task) == (b.terminated, b.truncated, b.task)
    assert a.info.keys() == b.info.keys()
    for k in a.info:
        np.testing.assert_array_equal(a.info[k], b.info[k])
    np.testing.assert_array_equal(a.stacked("state"), b.stacked("state"))  # incl. the final observation
    assert a.cameras == b.cameras
    for cam in a.cameras:  # the final observation is stored losslessly (PNG)
        np.testing.assert_array_equal(a.observations[-1]["pixels"][cam], b.observations[-1]["pixels"][cam])


def pixel_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float((diff**2).mean())
    return float(np.abs(diff).mean()), (10 * np.log10(255**2 / mse) if mse else float("inf"))


# ---------------------------------------------------------------------------------------------------- round trips
def test_lossy_round_trip_exact_columns_and_pixels_within_tolerance(lossy):
    back = list(import_lerobot(lossy))
    assert [e.length for e in back] == list(LENGTHS)
    for a, b in zip(EPISODES, back):
        assert_exact_except_pixels(a, b)
        for cam in a.cameras:
            mean_abs, psnr = pixel_error(a.stacked("pixels." + cam), b.stacked("pixels." + cam))
            assert mean_abs <= VIDEO_TOLERANCE["mean_abs"] and psnr >= VIDEO_TOLERANCE["psnr_db"], (cam, mean_abs,
                                                                                                      psnr)
    # the error is small but real: lossy video is not bit-exact on these frames
    assert not all(np.array_equal(a.stacked("pixels.front"), b.stacked("pixels.front"))
                   for a, b in zip(EPISODES, back))


def test_lossless_round_trip_is_exact_and_splits_one_mp4_by_timestamps(lossless):
    for cam in ("gripper", "front"):  # every episode of a camera went into one file
        files = sorted((lossless / "videos" / f"observation.images.{cam}").rglob("*.mp4"))
        assert [f.relative_to(lossless).as_posix() for f in files] == [
            f"videos/observation.images.{cam}/chunk-000/file-000.mp4"]
    meta = pq.read_table(lossless / "meta/episodes/chunk-000/file-000.parquet")
    starts = meta.column("videos/observation.images.front/from_timestamp").to_pylist()
    ends = meta.column("videos/observation.images.front/to_timestamp").to_pylist()
    bounds = np.cumsum((0,) + LENGTHS) / FPS
    np.testing.assert_allclose(starts, bounds[:-1], atol=1e-12)
    np.testing.assert_allclose(ends, bounds[1:], atol=1e-12)
    # the file holds exactly the episodes' frames, back to back, at k / fps
    reader = VideoReader(lossless / "videos/observation.images.front/chunk-000/file-000.mp4")
    times = []
    while (got := reader.next_frame()) is not None:
        times.append(got[0])
    reader.close()
    np.testing.assert_allclose(times, np.arange(sum(LENGTHS)) / FPS, atol=1e-9)

    back = list(import_lerobot(lossless))
    for a, b in zip(EPISODES, back):
        assert_exact_except_pixels(a, b)
        for cam in a.cameras:
            np.testing.assert_array_equal(a.stacked("pixels." + cam), b.stacked("pixels." + cam))


def test_import_a_subset_of_episodes_and_rename_cameras(lossless):
    (ep,) = import_lerobot(lossless, episodes=[2], image_keys=["observation.images.front"],
                           camera_names={"observation.images.front": "wrist"})
    assert ep.cameras == ("wrist",)
    np.testing.assert_array_equal(ep.stacked("pixels.wrist"), EPISODES[2].stacked("pixels.front"))
    back = list(import_lerobot(lossless, episodes=[1, 0]))  # out of file order: the decoder seeks back
    np.testing.assert_array_equal(back[1].stacked("pixels.gripper"), EPISODES[0].stacked("pixels.gripper"))


# ---------------------------------------------------------------------------------------------------- the layout
def test_files_follow_the_lerobot_v3_layout(lossy):
    info = json.loads((lossy / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"], info["fps"]) == (3, 19, 2, FPS)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert {"chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "splits"} <= set(info)
    assert info["robot_type"] == "so101_follower"
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [STATE] and feats["action"]["shape"] == [4]
    assert feats["observation.images.gripper"]["dtype"] == "video"
    assert feats["observation.images.gripper"]["info"]["video.codec"] == "h264"
    assert feats["next.done"]["dtype"] == "bool"

    data = pq.read_table(lossy / "data/chunk-000/file-000.parquet")
    cols = set(data.column_names)
    assert {"observation.state", "action", "next.reward", "next.done", "complementary_info.is_intervention",
            "complementary_info.discrete_penalty", "timestamp", "frame_index", "episode_index", "index",
            "task_index"} <= cols
    assert not any(c.startswith("observation.images") for c in cols)  # images live in the videos
    np.testing.assert_array_equal(data.column("index").to_numpy(), np.arange(19))
    ep_index = data.column("episode_index").to_numpy()
    np.testing.assert_array_equal(ep_index, np.repeat([0, 1, 2], LENGTHS))
    frame_index = data.column("frame_index").to_numpy()
    np.testing.assert_array_equal(data.column("timestamp").to_numpy(), (frame_index / FPS).astype(np.float32))
    done = data.column("next.done").to_numpy(zero_copy_only=False)
    assert list(np.flatnonzero(done)) == [5, 14]  # last rows of the terminated and the truncated episode
    np.testing.assert_array_equal(data.column("complementary_info.is_intervention").to_numpy(),
                                  np.concatenate([e.is_intervention for e in EPISODES]).astype(np.float32))

    meta = pq.read_table(lossy / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(m["dataset_from_index"], m["dataset_to_index"]) for m in meta] == [(0, 6), (6, 15), (15, 19)]
    assert [m["length"] for m in meta] == list(LENGTHS)
    assert [m["tasks"] for m in meta] == [["grasp the cube"], ["lift"], ["grasp the cube"]]
    assert meta[1]["stats/action/count"] == [9]

    tasks = pq.read_table(lossy / "meta/tasks.parquet")
    pandas_index = json.loads(tasks.schema.metadata[b"pandas"])["index_columns"][0]
    assert tasks.column(pandas_index).to_pylist() == ["grasp the cube", "lift"]
    assert tasks.column("task_index").to_pylist() == [0, 1]

    stats = json.loads((lossy / "meta/stats.json").read_text())
    actions = np.concatenate([e.actions for e in EPISODES])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(axis=0), rtol=1e-5)
    assert stats["action"]["count"] == [19]
    front = np.concatenate([e.stacked("pixels.front")[:-1] for e in EPISODES]) / 255.0
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(np.ravel(stats["observation.images.front"]["mean"]), front.mean(axis=(0, 1, 2)))


def test_new_files_and_chunks_start_at_the_size_settings(tmp_path):
    root = tmp_path / "ds"
    summary = export_lerobot(EPISODES, root, fps=FPS, robot_type="so101_follower", chunks_size=2,
                             data_files_size_in_mb=0.001, video_files_size_in_mb=0.001)
    data_files = sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*.parquet"))
    assert data_files == ["data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
                          "data/chunk-001/file-000.parquet"]
    videos = sorted(p.relative_to(root).as_posix() for p in (root / "videos/observation.images.front").rglob("*"))
    assert [v for v in videos if v.endswith(".mp4")] == [
        "videos/observation.images.front/chunk-000/file-000.mp4",
        "videos/observation.images.front/chunk-000/file-001.mp4",
        "videos/observation.images.front/chunk-001/file-000.mp4"]
    assert summary.data_files == 3 and summary.video_files["observation.images.front"] == 3
    meta = [row for p in sorted((root / "meta/episodes").rglob("*.parquet")) for row in pq.read_table(p).to_pylist()]
    for row in meta:  # each episode points at the file holding its rows, starting at time 0 there
        path = root / f"data/chunk-{row['data/chunk_index']:03d}/file-{row['data/file_index']:03d}.parquet"
        assert set(pq.read_table(path).column("episode_index").to_pylist()) == {row["episode_index"]}
        assert row["videos/observation.images.front/from_timestamp"] == 0.0
    back = list(import_lerobot(root))
    for a, b in zip(EPISODES, back):
        assert_exact_except_pixels(a, b)


# ---------------------------------------------------------------------------------------------------- buffers
def test_import_fills_a_demo_buffer_through_the_observation_processor(lossless):
    import torch
    from gymnasium import spaces

    from hilserl.agents.sac import SACAgent, SACConfig
    from hilserl.gripper import step_grasp_penalty as grasp_penalty
    from hilserl.train.observations import ObservationProcessor

    cfg = SACConfig(state_dim=STATE, action_dim=3, discrete_gripper=True, cameras=("gripper",), image_size=(32, 32),
                    encoder="resnet10", cached_features=True, num_cached_shifts=2)
    agent = SACAgent(cfg)
    space = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (STATE,), np.float32),
                         "pixels": spaces.Dict({"gripper": spaces.Box(0, 255, (32, 32, 3), np.uint8)})})
    processor = ObservationProcessor(agent, space, torch.Generator().manual_seed(0))
    demo = ReplayBuffer(100, processor.spec, cfg.full_action_dim, info_keys=("grasp_penalty",), rng=0)
    episodes = import_lerobot(lossless, image_keys=["observation.images.gripper"], expect_state_dim=STATE,
                              expect_action_dim=cfg.full_action_dim, expect_image_shape=(32, 32, 3),
                              expect_discrete_gripper=True)
    counts = fill_buffer(demo, episodes, to_stored=processor.to_stored,
                         info=lambda stored, action: {"grasp_penalty": grasp_penalty(stored["state"], action,
                                                                                         -0.02)})
    assert (counts.episodes, counts.transitions, counts.terminated, counts.truncated) == (3, 19, 1, 1)
    assert len(demo) == 19

    batch = demo.sample(400)
    ep_id = batch["observations"]["state"][:, 0].numpy().astype(int)
    step = batch["observations"]["state"][:, 1].numpy().astype(int)
    is_last = step == np.array(LENGTHS)[ep_id] - 1
    np.testing.assert_array_equal(batch["terminals"].numpy() == 1, is_last & (ep_id == 0))
    np.testing.assert_array_equal(batch["next_observations"]["state"][:, 1].numpy().astype(int), step + 1)
    for i in range(0, 400, 40):  # stored features are the backbone's maps of the original (unshifted) frame
        expect = processor._cached_features(frame(ep_id[i], step[i], "gripper"))[0]
        np.testing.assert_array_equal(batch["observations"]["features.gripper"][i, 0].numpy(),
                                      expect.astype(np.float32))


def test_export_recorded_demos_from_a_demo_dataset(tmp_path):
    spec = {"state": ((STATE,), np.float32), "pixels.gripper": ((32, 32, 3), np.uint8),
            "pixels.front": ((32, 32, 3), np.uint8)}
    with DemoDataset.create(tmp_path / "demos", spec, capacity=64, fps=FPS, robot_type="so101_follower",
                            info_keys=("grasp_penalty",)) as demos:
        for ep in EPISODES:
            demos.add_episode(ep)
        export_lerobot(demos.episodes(), tmp_path / "ds", fps=demos.fps, robot_type=demos.manifest["robot_type"],
                       lossless=True)
    for a, b in zip(EPISODES, import_lerobot(tmp_path / "ds")):
        assert_exact_except_pixels(a, b)
        np.testing.assert_array_equal(a.stacked("pixels.front"), b.stacked("pixels.front"))


def test_export_a_replay_buffer_and_refuse_a_feature_buffer(tmp_path):
    spec = {"state": ((STATE,), np.float32), "pixels.gripper": ((32, 32, 3), np.uint8)}
    buf = ReplayBuffer(64, spec, 4, info_keys=("grasp_penalty",), rng=0)
    fill_buffer(buf, [episode(e, n, end, cameras=("gripper",)) for e, (n, end) in enumerate(zip(LENGTHS, ENDS))])
    export_replay_buffer(buf, tmp_path / "ds", fps=FPS, robot_type="so101_follower", task="grasp the cube",
                         lossless=True)
    back = list(import_lerobot(tmp_path / "ds"))
    for a, b in zip(episodes_from_buffer(buf, "grasp the cube"), back):
        assert_exact_except_pixels(a, b)
        np.testing.assert_array_equal(a.stacked("pixels.gripper"), b.stacked("pixels.gripper"))

    features = ReplayBuffer(8, {"state": ((STATE,), np.float32), "features.gripper": ((2, 8, 1, 1), np.float16)}, 4)
    with pytest.raises(ValueError, match="cached-feature buffer .*not camera pixels.*DemoDataset"):
        export_replay_buffer(features, tmp_path / "never", fps=FPS, robot_type="so101_follower")
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------------------------------- gripper
def test_gripper_commands_map_to_the_continuous_target_and_back():
    commands = np.array([2, 1, 0, 1, 1, 2, 1], np.float32)
    target = gripper_to_continuous(commands)
    np.testing.assert_array_equal(target, [1, 1, -1, -1, -1, 1, 1])
    # the same jaw targets again, as commands the discrete env executes identically
    np.testing.assert_array_equal(gripper_to_discrete(target), [2, 2, 0, 0, 0, 2, 2])
    np.testing.assert_array_equal(gripper_to_discrete(np.array([-0.9, -0.2, 0.3, 0.7])), [0, 1, 1, 2])
    with pytest.raises(ValueError, match="not a discrete gripper command"):
        gripper_to_continuous(np.array([0.5]))


def test_continuous_gripper_export_and_discrete_import(tmp_path):
    export_lerobot(EPISODES[:1], tmp_path / "ds", fps=FPS, robot_type="so101_follower", gripper="to_continuous",
                   camera_keys=["gripper"])
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    stored = data.column("action").combine_chunks().flatten().to_numpy().reshape(-1, 4)
    np.testing.assert_array_equal(stored[:, -1], gripper_to_continuous(EPISODES[0].actions[:, -1]))
    with pytest.raises(ValueError, match="not a discrete gripper command.*gripper='to_discrete'"):
        next(import_lerobot(tmp_path / "ds", expect_discrete_gripper=True))
    (ep,) = import_lerobot(tmp_path / "ds", gripper="to_discrete")
    np.testing.assert_array_equal(ep.actions[:, -1], gripper_to_discrete(stored[:, -1]))
    np.testing.assert_array_equal(ep.actions[:, :3], EPISODES[0].actions[:, :3])


# ---------------------------------------------------------------------------------------------------- other datasets
def rewrite_parquet(path, drop=(), keep=None):
    table = pq.read_table(path)
    names = [c for c in table.column_names if c not in drop and (keep is None or keep(c))]
    pq.write_table(table.select(names), path)


def test_a_plain_lerobot_dataset_without_our_extra_columns(lossless, tmp_path):
    """Another tool's dataset: no final observations, no next.truncated, no intervention flags."""
    root = corrupt_copy(lossless, tmp_path)
    rewrite_parquet(root / "meta/episodes/chunk-000/file-000.parquet", keep=lambda c: not c.startswith("final_"))
    rewrite_parquet(root / "data/chunk-000/file-000.parquet",
                    drop=("next.truncated", "complementary_info.is_intervention"))
    back = list(import_lerobot(root))
    assert [(e.terminated, e.truncated) for e in back] == [(True, False), (True, False), (False, False)]
    for a, b in zip(EPISODES, back):
        assert b.is_intervention.all()  # recorded demonstrations are the human's actions
        np.testing.assert_array_equal(b.stacked("state")[:-1], a.stacked("state")[:-1])
        np.testing.assert_array_equal(b.observations[-1]["state"], b.observations[-2]["state"])  # repeated
    rewrite_parquet(root / "data/chunk-000/file-000.parquet", drop=("next.done", "next.reward"))
    info = json.loads((root / "meta/info.json").read_text())
    del info["features"]["next.reward"], info["features"]["next.done"]
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="feature 'next.reward' .*pass reward_key=None"):
        import_lerobot(root)
    back = list(import_lerobot(root, reward_key=None))
    assert all(e.truncated and not e.terminated for e in back)  # no done flags: time limits, so bootstrap
    assert all(not e.rewards.any() for e in back)


def test_image_features_stored_in_the_parquet_rows(lossless, tmp_path):
    """LeRobot's "image" dtype: PNG bytes in the frame rows ({"bytes", "path"} structs) instead of a video."""
    import cv2

    root = corrupt_copy(lossless, tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.images.front"] = {"dtype": "image", "shape": [32, 32, 3],
                                                    "names": ["height", "width", "channel"]}
    (root / "meta/info.json").write_text(json.dumps(info))
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    cells = [{"bytes": cv2.imencode(".png", frame(e, t, "front")[..., ::-1])[1].tobytes(), "path": None}
             for e, n in enumerate(LENGTHS) for t in range(n)]
    pq.write_table(table.append_column("observation.images.front", pa.array(cells)), path)
    shutil.rmtree(root / "videos/observation.images.front")
    for a, b in zip(EPISODES, import_lerobot(root)):
        np.testing.assert_array_equal(a.stacked("pixels.front"), b.stacked("pixels.front"))
        np.testing.assert_array_equal(a.stacked("pixels.gripper"), b.stacked("pixels.gripper"))


@pytest.mark.skipif(b"libsvtav1" not in subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"],
                                                       capture_output=True).stdout,
                    reason="this ffmpeg build has no AV1 encoder")
def test_reads_av1_video_as_lerobot_writes_it(lossless, tmp_path):
    root = corrupt_copy(lossless, tmp_path)
    for path in root.rglob("*.mp4"):
        av1 = path.with_suffix(".av1.mp4")
        res = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-c:v", "libsvtav1",
                              "-preset", "10", "-crf", "20", "-g", "2", "-pix_fmt", "yuv420p", str(av1)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        av1.replace(path)
    back = list(import_lerobot(root))
    for a, b in zip(EPISODES, back):
        assert_exact_except_pixels(a, b)
        for cam in a.cameras:
            mean_abs, psnr = pixel_error(a.stacked("pixels." + cam), b.stacked("pixels." + cam))
            assert mean_abs <= VIDEO_TOLERANCE["mean_abs"] and psnr >= VIDEO_TOLERANCE["psnr_db"]


# ---------------------------------------------------------------------------------------------------- errors
def test_a_missing_or_old_dataset_is_refused_with_a_hint(lossy, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        import_lerobot(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="meta/info.json is missing"):
        import_lerobot(tmp_path / "empty")
    root = corrupt_copy(lossy, tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(ValueError, match="codebase_version is 'v2.1'.*convert_dataset_v21_to_v30"):
        import_lerobot(root)
    (root / "meta/info.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        import_lerobot(root)


def test_features_and_shapes_are_checked_against_the_policy(lossy):
    with pytest.raises(ValueError, match="feature 'observation.joints' .* is missing"):
        import_lerobot(lossy, state_key="observation.joints")
    with pytest.raises(ValueError, match=r"'observation.state' has shape \[17\] but the policy expects 18"):
        import_lerobot(lossy, expect_state_dim=18)
    with pytest.raises(ValueError, match=r"'action' has shape \[4\] but the policy expects 7 action values"):
        import_lerobot(lossy, expect_action_dim=7)
    with pytest.raises(ValueError, match="has 32×32 images but the policy expects \\(128, 128, 3\\)"):
        import_lerobot(lossy, expect_image_shape=(128, 128, 3))
    with pytest.raises(ValueError, match="camera feature 'observation.images.top' is missing"):
        import_lerobot(lossy, image_keys=["observation.images.top"])


def test_corrupt_files_are_named(lossy, tmp_path):
    root = corrupt_copy(lossy, tmp_path)
    (root / "videos/observation.images.front/chunk-000/file-000.mp4").unlink()
    with pytest.raises(ValueError, match="video file .*observation.images.front.*file-000.mp4 is missing"):
        list(import_lerobot(root))

    root = corrupt_copy(lossy, tmp_path / "b")
    video = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    cut = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(video), "-frames:v", "10",
                          "-c", "copy", str(video.with_suffix(".cut.mp4"))], capture_output=True)
    assert cut.returncode == 0
    video.with_suffix(".cut.mp4").replace(video)
    back = import_lerobot(root)
    next(back)  # episode 0 (frames 0-5) is still in the shortened video
    with pytest.raises(ValueError, match="episode 1: .*file-000.mp4 ends before the frame at 1.000000 s"):
        next(back)

    video.write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match="file-000.mp4: ffmpeg could not decode the video"):
        list(import_lerobot(root))

    root = corrupt_copy(lossy, tmp_path / "c")
    rewrite_parquet(root / "data/chunk-000/file-000.parquet", drop=("action",))
    with pytest.raises(ValueError, match="file-000.parquet: column 'action' is missing"):
        list(import_lerobot(root))

    root = corrupt_copy(lossy, tmp_path / "d")
    (root / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(ValueError, match="data file .*file-000.parquet is missing"):
        list(import_lerobot(root))

    root = corrupt_copy(lossy, tmp_path / "e")
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "total_episodes": 5}))
    with pytest.raises(ValueError, match="total_episodes is 5 but .* describes 3 episodes"):
        import_lerobot(root)


def test_export_refuses_bad_input_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_lerobot(EPISODES, tmp_path / "full", fps=FPS, robot_type="so101_follower")
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"
    other = episode(5, 3, "terminated", cameras=("gripper",))
    with pytest.raises(ValueError, match="episode 1: camera 'front' is missing"):
        export_lerobot([EPISODES[0], other], tmp_path / "mixed", fps=FPS, robot_type="so101_follower")
    longer_state = episode(4, 3, "terminated")
    longer_state.observations = [{**o, "state": np.zeros(STATE + 1, np.float32)} for o in longer_state.observations]
    with pytest.raises(ValueError, match="episode 1: state_dim is 18, the first episode's 17"):
        export_lerobot([EPISODES[0], longer_state], tmp_path / "mixed", fps=FPS, robot_type="so101_follower")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no partial dataset, no temporary folder
    with pytest.raises(ValueError, match="no episodes to export"):
        export_lerobot([], tmp_path / "none", fps=FPS, robot_type="so101_follower")
