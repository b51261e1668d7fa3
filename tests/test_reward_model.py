"""Reward classifier model: the head trains in every layer and the backbone never; files round trip; corrupt or
mismatched files fail with errors that say what is wrong."""

import json

import numpy as np
import pytest
import torch

from hilserl.reward.model import ClassifierFileError, ClassifierSpec, RewardClassifier
from hilserl.reward.train import cache_features, predict_from_features, train_head

# the shipped EfficientNet-Lite0 weights (the default backbone) on small images: fast, and rebuilt identically at load
SPEC = ClassifierSpec(image_keys=("gripper", "front"), image_size=(32, 32), encoder="efficientnet_lite0",
                      trim_head=True, backbone_dtype="float32", hidden_dim=32)


def _images(rng, n):
    return {cam: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for cam in SPEC.image_keys}


@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    return RewardClassifier(SPEC, threshold=0.7)


def test_every_head_parameter_trains_and_no_backbone_parameter_does(clf):
    rng = np.random.default_rng(0)
    imgs = _images(rng, 24)
    labels = np.arange(24) % 2 == 0
    imgs["gripper"][labels, :8] = 255  # something to learn
    gen = torch.Generator().manual_seed(0)
    feats = {c: cache_features(clf.backbone, imgs[c], 2, 2, gen) for c in SPEC.image_keys}
    head0 = {k: v.detach().clone() for k, v in clf.head.named_parameters()}
    bb0 = {k: v.detach().clone() for k, v in clf.backbone.named_parameters()}
    assert len(head0) >= 10 and len(bb0) > 0
    assert all(p.requires_grad for p in clf.head.parameters())
    assert not any(p.requires_grad for p in clf.backbone.parameters())
    losses = train_head(clf, feats, labels, steps=5, batch_size=8, lr=1e-3, generator=gen)
    assert len(losses) == 5 and np.isfinite(losses).all()
    unchanged = [k for k, v in clf.head.named_parameters() if torch.equal(v, head0[k])]
    assert unchanged == [], f"head parameters that did not train: {unchanged}"
    for k, v in clf.backbone.named_parameters():
        assert torch.equal(v, bb0[k]), k
    # the cached path (K=1, no shift) and predict_proba on raw images agree
    feats1 = {c: cache_features(clf.backbone, imgs[c], 1, 0) for c in SPEC.image_keys}
    np.testing.assert_allclose(predict_from_features(clf, feats1), clf.predict_proba(imgs), atol=1e-3)  # float16 cache
    assert isinstance(clf.predict_proba({c: v[0] for c, v in imgs.items()}), float)


def test_a_random_backbone_cannot_be_saved(tmp_path):
    spec = ClassifierSpec(image_keys=("gripper",), image_size=(32, 32), encoder="resnet10", backbone_dtype="float32")
    with pytest.raises(ValueError, match="backbone_weights"):
        RewardClassifier(spec).save(tmp_path / "r")


def test_save_load_round_trip(clf, tmp_path):
    clf.save(tmp_path / "c", {"metrics": {"accuracy": 1.0}})
    meta = json.loads((tmp_path / "c" / "classifier.json").read_text())
    for key in ("format_version", "threshold", "encoder", "trim_head", "image_keys", "image_size", "crop",
                "metrics", "feature_map_shape", "weights_sha256"):
        assert key in meta, key
    back = RewardClassifier.load(tmp_path / "c")
    assert back.threshold == pytest.approx(0.7) and back.image_keys == SPEC.image_keys
    imgs = _images(np.random.default_rng(1), 3)
    np.testing.assert_allclose(back.predict_proba(imgs), clf.predict_proba(imgs), atol=1e-6)


def test_a_classifier_that_reads_the_arm_needs_the_state_and_keeps_its_standardization(tmp_path):
    import dataclasses

    from hilserl.reward.dataset import ARM_STATE

    torch.manual_seed(0)
    spec = dataclasses.replace(SPEC, arm_state=True, arm_fields=ARM_STATE, arm_mean=(0.5, 0.0, 0.5, 0.1),
                               arm_std=(0.3, 1.0, 0.5, 0.05))
    arm_clf = RewardClassifier(spec, threshold=0.6)
    rng = np.random.default_rng(2)
    imgs = _images(rng, 3)
    states = rng.random((3, 17)).astype(np.float32)
    with pytest.raises(ValueError, match="state: this reward classifier also reads the arm's state"):
        arm_clf.predict_proba(imgs)
    p = arm_clf.predict_proba(imgs, state=states)
    for index, change in ((16, 0.2), (11, 4.0), (13, 1.0)):  # higher; the jaw moving; commanded closed
        moved = states.copy()
        moved[:, index] += change
        assert not np.allclose(arm_clf.predict_proba(imgs, state=moved), p), index  # another answer
    moved = states.copy()
    moved[:, 3] += 1.0  # a joint the classifier does not read: the same answer
    np.testing.assert_allclose(arm_clf.predict_proba(imgs, state=moved), p, atol=1e-6)
    assert isinstance(arm_clf.predict_proba({c: v[0] for c, v in imgs.items()}, state=states[0]), float)
    arm_clf.save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "classifier.json").read_text())
    assert meta["arm_state"] is True and meta["arm_fields"] == list(ARM_STATE)
    assert meta["arm_mean"] == [0.5, 0.0, 0.5, 0.1] and meta["arm_std"] == [0.3, 1.0, 0.5, 0.05]
    back = RewardClassifier.load(tmp_path / "a")
    assert back.needs_state and back.spec.arm_mean == (0.5, 0.0, 0.5, 0.1) and back.spec.arm_fields == ARM_STATE
    np.testing.assert_allclose(back.predict_proba(imgs, state=states), p, atol=1e-6)
    _edit_meta(tmp_path / "a", arm_std=[0.3, 1.0, 0.5, 0.0])
    with pytest.raises(ClassifierFileError, match="arm_std: expected values > 0"):
        RewardClassifier.load(tmp_path / "a")


def test_a_classifier_saved_before_the_arm_fields_were_named_reads_its_pair(tmp_path):
    """classifier.json files from before ``arm_fields`` read the gripper's opening and the end-effector's height."""
    import dataclasses

    torch.manual_seed(1)
    spec = dataclasses.replace(SPEC, arm_state=True, arm_mean=(0.5, 0.1), arm_std=(0.3, 0.05))
    assert spec.arm_fields == ("gripper_opening", "ee_height")
    clf = RewardClassifier(spec, threshold=0.6)
    clf.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "classifier.json").read_text())
    del meta["arm_fields"]
    (tmp_path / "old" / "classifier.json").write_text(json.dumps(meta))
    back = RewardClassifier.load(tmp_path / "old")
    rng = np.random.default_rng(3)
    imgs, states = _images(rng, 2), rng.random((2, 17)).astype(np.float32)
    np.testing.assert_allclose(back.predict_proba(imgs, state=states), clf.predict_proba(imgs, state=states),
                               atol=1e-6)
    moved = states.copy()
    moved[:, 11] += 4.0  # the velocity: not read by a pair classifier
    np.testing.assert_allclose(back.predict_proba(imgs, state=moved), clf.predict_proba(imgs, state=states),
                               atol=1e-6)
    with pytest.raises(ValueError, match="arm_mean: expected 2 finite values"):
        dataclasses.replace(SPEC, arm_state=True, arm_mean=(0.5, 0.0, 0.5, 0.1))


def _edit_meta(path, **changes):
    meta = json.loads((path / "classifier.json").read_text())
    meta.update(changes)
    (path / "classifier.json").write_text(json.dumps(meta))


def test_corrupt_or_mismatched_files_give_clear_errors(clf, tmp_path):
    d = tmp_path / "c"
    clf.save(d)
    good_meta = (d / "classifier.json").read_text()
    good_weights = (d / "classifier.safetensors").read_bytes()

    def restore():
        (d / "classifier.json").write_text(good_meta)
        (d / "classifier.safetensors").write_bytes(good_weights)

    with pytest.raises(FileNotFoundError, match="no such folder"):
        RewardClassifier.load(tmp_path / "missing")
    (d / "classifier.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="classifier.safetensors is missing"):
        RewardClassifier.load(d)
    restore()
    # truncated weights: caught by the checksum, and (without one) by the safetensors reader
    (d / "classifier.safetensors").write_bytes(good_weights[:100])
    with pytest.raises(ClassifierFileError, match="sha256"):
        RewardClassifier.load(d)
    meta = json.loads(good_meta)
    del meta["weights_sha256"]
    (d / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ClassifierFileError, match="not a readable safetensors file"):
        RewardClassifier.load(d)
    restore()
    (d / "classifier.json").write_text("{not json")
    with pytest.raises(ClassifierFileError, match="not valid JSON"):
        RewardClassifier.load(d)
    restore()
    _edit_meta(d, format_version=99)
    with pytest.raises(ClassifierFileError, match="format_version"):
        RewardClassifier.load(d)
    restore()
    _edit_meta(d, image_keys=["gripper"])  # the weights hold two cameras
    with pytest.raises(ClassifierFileError, match="cameras"):
        RewardClassifier.load(d)
    restore()
    _edit_meta(d, hidden_dim=64)  # shapes differ
    with pytest.raises(ClassifierFileError, match="shape"):
        RewardClassifier.load(d)
    restore()
    _edit_meta(d, trim_head=False)  # the untrimmed backbone gives 1280-channel maps, not 320
    with pytest.raises(ClassifierFileError, match="trim_head=False"):
        RewardClassifier.load(d)
    restore()
    _edit_meta(d, encoder="vit")
    with pytest.raises(ClassifierFileError, match="encoder"):
        RewardClassifier.load(d)
    restore()
    _edit_meta(d, threshold=1.5)
    with pytest.raises(ClassifierFileError, match="threshold"):
        RewardClassifier.load(d)
    restore()
    assert RewardClassifier.load(d).threshold == pytest.approx(0.7)
    with pytest.raises(ValueError, match="32x32"):
        clf.predict_proba({c: np.zeros((64, 64, 3), np.uint8) for c in SPEC.image_keys})


def test_the_arm_veto_caps_what_the_images_say(tmp_path):
    """With ``arm_veto`` the probability is at most the arm-only head's and at most the full head's: when the arm
    says no, no image can say yes."""
    import dataclasses

    from hilserl.reward.dataset import ARM_STATE, arm_state

    with pytest.raises(ValueError, match="arm_veto: needs arm_state"):
        dataclasses.replace(SPEC, arm_veto=True)
    torch.manual_seed(4)
    spec = dataclasses.replace(SPEC, arm_state=True, arm_fields=ARM_STATE, arm_mean=(0.5, 0.0, 0.5, 0.1),
                               arm_std=(0.3, 1.0, 0.5, 0.05), arm_veto=True)
    clf = RewardClassifier(spec, threshold=0.6)
    rng = np.random.default_rng(5)
    imgs, states = _images(rng, 16), rng.random((16, 17)).astype(np.float32)
    feats = {c: cache_features(clf.backbone, imgs[c], 1, 0) for c in SPEC.image_keys}
    arm = torch.as_tensor(arm_state(states))
    with torch.no_grad():
        full, veto = clf.head.logits({c: f[:, 0].float() for c, f in feats.items()}, arm)
    p = predict_from_features(clf, feats, arm=arm_state(states))
    assert (p <= torch.sigmoid(torch.minimum(full, veto)).numpy() + 1e-6).all()
    with torch.no_grad():
        clf.head.veto[-1].bias.fill_(-20.0)  # the arm says no
        clf.head.out.bias.fill_(20.0)  # and the images (with the arm inside the full head) say yes
    assert clf.predict_proba(imgs, state=states).max() < 1e-6
    with torch.no_grad():
        clf.head.veto[-1].bias.fill_(20.0)  # the arm agrees: the full head decides
        clf.head.out.bias.fill_(0.0)
    with torch.no_grad():
        full, _ = clf.head.logits({c: f[:, 0].float() for c, f in feats.items()}, arm)
    np.testing.assert_allclose(predict_from_features(clf, feats, arm=arm_state(states)),
                               torch.sigmoid(full).numpy(), atol=1e-6)
    clf.save(tmp_path / "v")
    assert json.loads((tmp_path / "v" / "classifier.json").read_text())["arm_veto"] is True
    back = RewardClassifier.load(tmp_path / "v")
    np.testing.assert_allclose(back.predict_proba(imgs, state=states), clf.predict_proba(imgs, state=states),
                               atol=1e-6)
    # a classifier.json written before the veto existed reads as one without it
    plain = RewardClassifier(dataclasses.replace(spec, arm_veto=False), threshold=0.6)
    plain.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "classifier.json").read_text())
    del meta["arm_veto"]
    (tmp_path / "old" / "classifier.json").write_text(json.dumps(meta))
    assert RewardClassifier.load(tmp_path / "old").head.veto is None
