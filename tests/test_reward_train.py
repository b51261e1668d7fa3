"""Classifier training: metrics, the threshold rule, end-to-end training on a small dataset (split by episode,
saved files), and `hilserl train` with reward.type=classifier."""

import json

import numpy as np
import pytest

from hilserl.reward.dataset import DatasetWriter, load_dataset
from hilserl.reward.model import ClassifierSpec, RewardClassifier
from hilserl.reward.train import ClassifierTrainConfig, classification_metrics, pick_threshold, train_classifier


def test_classification_metrics_by_hand():
    probs = [0.9, 0.8, 0.3, 0.6, 0.1, 0.2]
    labels = [1, 1, 1, 0, 0, 0]
    m = classification_metrics(probs, labels, 0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-4) and m["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["recall"] == pytest.approx(2 / 3, abs=1e-4) and m["f1"] == pytest.approx(2 / 3, abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.9, 0.99, 1.0])
def test_picked_threshold_meets_the_precision_target_on_its_data(seed, target):
    rng = np.random.default_rng(seed)
    labels = rng.random(400) < 0.2
    probs = np.clip(np.where(labels, rng.normal(0.8, 0.15, 400), rng.normal(0.3, 0.2, 400)), 0, 0.99)
    probs[np.flatnonzero(labels)[:3]] = 0.995  # the most confident frames are positives: the target is reachable
    thr, reached = pick_threshold(probs, labels, target)
    assert reached and thr >= 0.5
    m = classification_metrics(probs, labels, thr)
    assert m["precision"] >= target and m["tp"] > 0
    # and it is the best recall that does so: the next lower probability (if >= 0.5) misses the target
    lower = probs[(probs <= thr) & (probs > 0.5)]
    if len(lower):
        assert classification_metrics(probs, labels, lower.max() - 1e-9)["precision"] < target


def test_unreachable_precision_is_reported():
    probs = np.array([0.95, 0.9, 0.8, 0.7])
    labels = np.array([0, 1, 0, 1])  # the most confident frame is a negative
    thr, reached = pick_threshold(probs, labels, 0.99)
    assert not reached and 0.5 <= thr < 1
    with pytest.raises(ValueError, match="no positives"):
        pick_threshold(probs, np.zeros(4), 0.99)


def _synthetic_dataset(path, n_episodes=16, t=8, size=32):
    """Success = a bright square in the gripper image (and a bright bar in the front image)."""
    rng = np.random.default_rng(0)
    w = DatasetWriter(path, ("gripper", "front"), (size, size, 3))
    for e in range(n_episodes):
        labels = np.zeros(t, bool)
        if e % 2 == 0:
            labels[t // 2:] = True
        g = rng.integers(0, 120, (t, size, size, 3), dtype=np.uint8)
        f = rng.integers(0, 120, (t, size, size, 3), dtype=np.uint8)
        g[labels, 8:24, 8:24] = 255
        f[labels, :6] = 255
        w.add_episode({"gripper": g, "front": f}, labels, kind="synthetic")
    return load_dataset(path)


def test_train_classifier_end_to_end(tmp_path):
    ds = _synthetic_dataset(tmp_path / "ds")
    cfg = ClassifierTrainConfig(steps=60, batch_size=16, hidden_dim=32, backbone_dtype="float32", num_shifts=2,
                                test_fraction=0.25, seed=1)
    res = train_classifier(ds, tmp_path / "clf", cfg, log=lambda s: None)
    assert set(res.train_episodes).isdisjoint(res.test_episodes)
    assert res.n_train + res.n_test == len(ds) and res.n_test == 8 * len(res.test_episodes)
    assert res.losses[-1] < res.losses[0]
    if res.target_reached:
        assert res.metrics["precision"] >= 0.99
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert meta["image_keys"] == ["gripper", "front"] and meta["image_size"] == [32, 32]
    assert meta["encoder"] == "efficientnet_lite0" and meta["trim_head"] is True
    assert meta["threshold"] == pytest.approx(res.threshold)
    assert set(meta["test_episodes"]).isdisjoint(meta["train_episodes"])
    assert "held_out_at_threshold" in meta["metrics"]
    back = RewardClassifier.load(tmp_path / "clf")
    p = back.predict_proba({c: ds.images[c] for c in ds.cameras})
    assert p[ds.labels].mean() > p[~ds.labels].mean() + 0.3  # it learned the bright square


def _arm_dataset(path, rng, bright_square: bool = False, shut_on_nothing: bool = False):
    """16 episodes of 8 frames, every other one a success from halfway: the gripper closed partway on something
    (opening 0.3-0.5), commanded closed, still, high. The other frames: open and low, or with ``shut_on_nothing``
    every fourth episode's jaws shut (opening 0) at any height. Images: noise, with a bright square on the success
    frames with ``bright_square``."""
    w = DatasetWriter(path, ("gripper",), (32, 32, 3), with_arm=True)
    for e in range(16):
        t = 8
        labels = np.zeros(t, bool)
        if e % 2 == 0:
            labels[t // 2:] = True
        # columns as recorded (ARM_STATE): opening, jaw velocity, closed command, end-effector height
        if shut_on_nothing and e % 4 == 1:
            arm = np.stack([np.zeros(t), np.zeros(t), np.ones(t), rng.uniform(0.0, 0.15, t)], 1)
        else:
            arm = np.stack([rng.uniform(0.6, 1.0, t), rng.normal(0, 1, t), np.zeros(t), rng.uniform(0.0, 0.03, t)],
                           1)
        k = int(labels.sum())
        arm[labels] = np.stack([rng.uniform(0.3, 0.5, k), np.zeros(k), np.ones(k), rng.uniform(0.06, 0.15, k)], 1)
        g = rng.integers(0, 120 if bright_square else 256, (t, 32, 32, 3), dtype=np.uint8)
        if bright_square:
            g[labels, 8:24, 8:24] = 255
        w.add_episode({"gripper": g}, labels, arm=arm)
    return load_dataset(path)


def test_the_classifier_reads_the_arm_state_when_the_dataset_has_it(tmp_path):
    # the images tell nothing (noise), the arm tells everything: success = the gripper closed partway on something
    # (opening 0.3-0.5) while the end-effector is high
    rng = np.random.default_rng(0)
    ds = _arm_dataset(tmp_path / "ds", rng)
    cfg = ClassifierTrainConfig(steps=80, batch_size=16, hidden_dim=32, backbone_dtype="float32", num_shifts=1,
                                seed=1)
    res = train_classifier(ds, tmp_path / "clf", cfg, log=lambda s: None)
    clf = RewardClassifier.load(tmp_path / "clf")
    assert clf.needs_state and res.metrics_at_half["accuracy"] >= 0.95
    states = np.zeros((len(ds), 17), np.float32)
    states[:, 12], states[:, 11], states[:, 13], states[:, 16] = ds.arm.T
    p = clf.predict_proba({"gripper": ds.images["gripper"]}, state=states)
    assert p[ds.labels].min() > p[~ds.labels].max()  # every frame on the right side
    cfg.arm_state = False  # the images alone: nothing to learn
    cache = {}
    alone = train_classifier(ds, None, cfg, log=lambda s: None, feature_cache=cache)
    again = train_classifier(ds, None, cfg, log=lambda s: None, feature_cache=cache)  # the maps reused
    assert len(cache) == 1 and again.losses == alone.losses and again.threshold == alone.threshold
    assert not alone.classifier.needs_state and alone.metrics_at_half["accuracy"] < 0.8
    plain = DatasetWriter(tmp_path / "plain", ("gripper",), (32, 32, 3))
    for labels in ([0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]):
        plain.add_episode({"gripper": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)}, labels)
    cfg.arm_state = True
    with pytest.raises(ValueError, match="arm_state: .* holds no arm state"):
        train_classifier(load_dataset(tmp_path / "plain"), None, cfg, log=lambda s: None)


def test_hilserl_train_with_the_classifier_reward(tmp_path):
    from hilserl.config import load_config
    from hilserl.train.config import TrainConfig
    from hilserl.train.loop import train

    spec = ClassifierSpec(image_keys=("gripper",), image_size=(32, 32), hidden_dim=16, backbone_dtype="float32")
    RewardClassifier(spec, threshold=0.5).save(tmp_path / "clf")
    cfg = load_config(TrainConfig, None, [
        "--env.obs_type=state", "--env.image_size=32", "--policy.hidden_dims=[32, 32]",
        "--policy.discrete_critic_hidden_dims=[32, 32]", "--train.batch_size=16", "--train.num_demos=0",
        "--train.training_starts=20", "--train.eval_every=0", "--train.checkpoint_every=0", "--train.log_every=20",
        "--train.torch_threads=1", "--buffers.online_capacity=5000", "--buffers.demo_capacity=2000",
        "--buffers.on_disk=false", "--run_name=clf", f"--output_dir={tmp_path}", "--train.total_env_steps=40",
        "--reward.type=classifier", f"--reward.classifier_path={tmp_path / 'clf'}", "--reward.min_steps=5",
        "--reward.consecutive_frames=2"])
    res = train(cfg, log=lambda s: None)
    assert res.env_steps >= 40 and res.learner_updates > 0
    saved = json.loads((res.run_dir / "config.json").read_text())
    assert saved["reward"]["type"] == "classifier" and saved["reward"]["min_steps"] == 5


def test_the_arm_veto_learns_from_the_arm_alone_and_overrules_the_images(tmp_path):
    # in training the images and the arm agree: success is a bright square and the gripper closed partway on
    # something, high; the others are open grippers and jaws shut on nothing (opening 0), with plain images. Then
    # frames whose images say success while the jaws are shut on nothing
    ds = _arm_dataset(tmp_path / "ds", np.random.default_rng(1), bright_square=True, shut_on_nothing=True)
    cfg = ClassifierTrainConfig(steps=400, batch_size=16, hidden_dim=32, backbone_dtype="float32", num_shifts=1,
                                seed=2)
    clf = train_classifier(ds, tmp_path / "clf", cfg, log=lambda s: None).classifier
    assert clf.spec.arm_veto and json.loads((tmp_path / "clf" / "classifier.json").read_text())["arm_veto"]
    imgs = {"gripper": ds.images["gripper"][ds.labels][:8]}  # success as the camera sees it
    states = np.zeros((8, 17), np.float32)
    states[:, 13], states[:, 16] = 1.0, 0.1  # commanded closed, high, still
    fine = states.copy()
    fine[:, 12] = 0.4  # closed on the cube
    assert clf.predict_proba(imgs, state=fine).min() > 0.5
    shut = states.copy()  # opening 0: closed on nothing
    assert clf.predict_proba(imgs, state=shut).max() < 0.5
    cfg.arm_veto = False
    alone = train_classifier(ds, None, cfg, log=lambda s: None).classifier
    assert alone.head.veto is None and not alone.spec.arm_veto
    assert alone.predict_proba(imgs, state=shut).min() > 0.5  # without it the images overrule the arm here
