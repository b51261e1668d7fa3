"""Training the reward classifier: cache backbone maps, train the head on balanced batches, measure it on held-out
episodes, pick the threshold, save.

Steps (``train_classifier``):

1. Split by episode (``split_by_episode``): whole episodes go to the held-out side, never single frames.
2. Cache: the backbone is frozen, so its maps are computed once per training frame for ``num_shifts`` random
   shifts of up to ``augmentation_pad`` pixels (as the policy's cached mode does), and once for every held-out
   frame unshifted (as at inference). Head training then costs only the small head.
3. Head training: Adam (lr 3e-4), BCE on the logit, each batch half positives and half negatives (drawn with
   replacement from the training frames), one of the K cached shifts picked per sample, dropout on. When the
   dataset stores what the arm measured (``ARM_STATE``) the head reads it too (``arm_state``), standardized with
   the training frames' mean and std.
4. Held-out metrics: accuracy, precision, recall, F1 and the confusion matrix, at 0.5 and at the picked threshold.
5. Threshold (``pick_threshold``): the lowest threshold (not below 0.5) whose held-out precision reaches
   ``target_precision`` (default 0.99) — i.e. the highest recall at that precision — moved to the midpoint of
   the gap above it, which keeps the same held-out precision and recall but leaves a margin over the most
   confident held-out negative.

   Risk of this choice: the threshold is fitted on the same held-out frames it is then reported on, so the
   reported precision at the threshold is optimistic (it is met by construction); with a few hundred held-out
   frames, 0.99 rests on at most a handful of negatives near the boundary, and a new failure mode the dataset
   lacks (another cube colour, a hand in view) can exceed any threshold. The metrics at 0.5 are reported beside
   it as the unbiased figure. The fix for false positives in use is more negative data of that failure mode (and
   the wrapper's consecutive-frame rule), not a higher threshold.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hilserl.agents.encoders import FrozenBackbone, pick_cached, precompute_features
from hilserl.obs_format import channels_first
from hilserl.reward.dataset import RewardDataset, load_dataset, split_by_episode
from hilserl.reward.model import ClassifierSpec, RewardClassifier, make_backbone


@dataclass
class ClassifierTrainConfig:
    encoder: str = "efficientnet_lite0"
    trim_head: bool = True
    backbone_weights: str | None = None
    backbone_dtype: str = "auto"
    steps: int = 300
    batch_size: int = 64  # half positives, half negatives
    lr: float = 3e-4
    num_shifts: int = 4  # cached random shifts per training frame
    augmentation_pad: int = 4
    test_fraction: float = 0.25  # share of episodes held out (stratified: with / without positives)
    target_precision: float = 0.99
    min_threshold: float = 0.5
    num_spatial_features: int = 8
    hidden_dim: int = 256
    dropout: float = 0.1
    arm_state: bool | None = None  # also read what the arm measured; None: when the dataset has it
    arm_veto: bool = True  # with the arm state: an arm-only head whose "no" the images cannot overrule
    seed: int = 0
    torch_threads: int = 0  # 0: torch's default

    def validate(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"{name}: expected {what}, got {getattr(self, name)!r}")

        need(self.encoder in ("efficientnet_lite0", "resnet10"), "encoder", "'efficientnet_lite0' or 'resnet10'")
        need(self.encoder != "resnet10" or bool(self.backbone_weights), "backbone_weights",
             "a weights file for resnet10 (a random backbone cannot be rebuilt when the classifier is loaded)")
        need(self.steps >= 1, "steps", ">= 1")
        need(self.batch_size >= 2 and self.batch_size % 2 == 0, "batch_size", "an even number >= 2")
        need(self.lr > 0, "lr", "> 0")
        need(self.num_shifts >= 1, "num_shifts", ">= 1")
        need(self.augmentation_pad >= 0, "augmentation_pad", ">= 0")
        need(0.0 < self.test_fraction < 1.0, "test_fraction", "a value in (0, 1)")
        need(0.0 < self.target_precision <= 1.0, "target_precision", "a value in (0, 1]")
        need(0.0 <= self.min_threshold < 1.0, "min_threshold", "a value in [0, 1)")
        need(self.torch_threads >= 0, "torch_threads", ">= 0")


@dataclass
class ClassifierTrainResult:
    path: Path | None
    threshold: float
    target_reached: bool
    metrics: dict  # held-out, at the threshold
    metrics_at_half: dict  # held-out, at 0.5
    n_train: int
    n_test: int
    train_episodes: list[int] = field(default_factory=list)
    test_episodes: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    classifier: RewardClassifier | None = None

    def summary(self) -> dict:
        m = self.metrics
        return {"accuracy": m["accuracy"], "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                "threshold": round(self.threshold, 6), "n_train": self.n_train, "n_test": self.n_test,
                "confusion_matrix": m["confusion_matrix"], "target_reached": self.target_reached,
                "accuracy_at_0.5": self.metrics_at_half["accuracy"],
                "precision_at_0.5": self.metrics_at_half["precision"]}


# ============================================================================================= metrics
def classification_metrics(probs, labels, threshold: float) -> dict:
    """Predicted positive = prob > threshold. Confusion matrix [[tn, fp], [fn, tp]] (rows: true label)."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    pred = p > threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    n = max(1, len(y))
    precision = tp / (tp + fp) if tp + fp else 1.0  # no positive predictions: no false positives
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    r = lambda v: round(float(v), 4)  # noqa: E731
    return {"threshold": float(threshold), "n": int(len(y)), "accuracy": r((tp + tn) / n), "precision": r(precision),
            "recall": r(recall), "f1": r(f1), "confusion_matrix": [[tn, fp], [fn, tp]],
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def pick_threshold(probs, labels, target_precision: float = 0.99, min_threshold: float = 0.5) -> tuple[float, bool]:
    """(threshold, reached). Among thresholds t >= ``min_threshold`` (never below 0.5: success must at least be
    the more likely answer), the lowest whose precision of (prob > t) on these frames reaches the target with at
    least one predicted positive (= the best recall at that precision), moved up to the midpoint of the gap to the
    next probability above it (same decisions on these frames, more margin over the most confident negative).
    If none reaches the target: the most precise one (ties: best recall), and reached=False."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if not y.any():
        raise ValueError("pick_threshold: the frames hold no positives; the held-out split needs success frames")
    values = np.unique(p)  # ascending
    candidates = np.unique(np.concatenate([[min_threshold], values[values > min_threshold]]))
    best, best_key = None, None
    for t in candidates:
        pred = p > t
        tp = int((pred & y).sum())
        fp = int((pred & ~y).sum())
        if tp == 0:
            continue
        prec = tp / (tp + fp)
        if prec >= target_precision:
            return _margin(t, values, min_threshold), True
        key = (prec, tp)
        if best_key is None or key > best_key:
            best, best_key = t, key
    if best is None:  # nothing above min_threshold is a positive at all
        return float(min_threshold), False
    return _margin(best, values, min_threshold), False


def _margin(t: float, values: np.ndarray, min_threshold: float) -> float:
    """Midpoint between t and the next probability above it, when t is itself a probability of the data (and not
    the floor): no frame lies strictly between the two, so no decision changes."""
    above = values[values > t]
    if t == min_threshold and not np.any(values == t):
        return float(t)
    return float((t + above[0]) / 2) if len(above) else float(t)


# ============================================================================================= features + head
def cache_features(backbone: FrozenBackbone, images: np.ndarray, num_shifts: int, pad: int,
                   generator: torch.Generator | None = None, chunk_size: int = 128) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float16 maps [N, K, C, h, w] of K random shifts per frame (K = 1, pad = 0: the
    unshifted maps, as at inference)."""
    x = channels_first(torch.from_numpy(np.ascontiguousarray(images)), contiguous=True)
    return precompute_features(backbone, x, num_shifts, pad, chunk_size, generator)


def train_head(classifier: RewardClassifier, features: dict[str, torch.Tensor], labels: np.ndarray, steps: int,
               batch_size: int, lr: float, generator: torch.Generator | None = None,
               log: Callable[[str], None] | None = None, arm: np.ndarray | None = None) -> list[float]:
    """Adam + BCE on balanced batches of cached maps (one of the K shifts per sample; ``arm``: the frames' arm
    state, for a classifier that reads it). Returns the losses."""
    y = torch.as_tensor(np.asarray(labels).astype(np.float32))
    pos = torch.nonzero(y > 0.5).flatten()
    neg = torch.nonzero(y < 0.5).flatten()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"training frames: need both classes, got {len(pos)} positive and {len(neg)} negative")
    head = classifier.head
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    half = batch_size // 2
    arm_t = None if arm is None else torch.as_tensor(np.asarray(arm, dtype=np.float32))
    losses = []
    for step in range(steps):
        idx = torch.cat([pos[torch.randint(len(pos), (half,), generator=generator)],
                         neg[torch.randint(len(neg), (half,), generator=generator)]])
        maps = {cam: pick_cached(f[idx], generator).float() for cam, f in features.items()}
        full, veto = head.logits(maps, None if arm_t is None else arm_t[idx])
        loss = F.binary_cross_entropy_with_logits(full, y[idx])
        if veto is not None:  # its own loss: fitted through the soft minimum it would learn little where the
            loss = loss + F.binary_cross_entropy_with_logits(veto, y[idx])  # full head is already sure
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log and (step + 1) % 50 == 0:
            log(f"head step {step + 1}/{steps}: BCE {np.mean(losses[-50:]):.4f}")
    head.eval()
    return losses


@torch.no_grad()
def predict_from_features(classifier: RewardClassifier, features: dict[str, torch.Tensor],
                          chunk: int = 512, arm: np.ndarray | None = None) -> np.ndarray:
    head = classifier.head
    was = head.training
    head.eval()
    n = next(iter(features.values())).shape[0]
    arm_t = None if arm is None else torch.as_tensor(np.asarray(arm, dtype=np.float32))
    out = []
    for s in range(0, n, chunk):
        out.append(torch.sigmoid(head({c: pick_cached(f[s:s + chunk]).float() for c, f in features.items()},
                                      None if arm_t is None else arm_t[s:s + chunk])))
    head.train(was)
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


# ============================================================================================= the whole thing
def train_classifier(dataset: str | Path | RewardDataset, out_dir: str | Path | None,
                     cfg: ClassifierTrainConfig | None = None, log: Callable[[str], None] = print,
                     backbone: FrozenBackbone | None = None,
                     feature_cache: dict | None = None) -> ClassifierTrainResult:
    """Train, evaluate on held-out episodes, pick the threshold, and (with ``out_dir``) save the classifier.
    ``feature_cache`` (a dict the caller keeps): the cached backbone maps are kept there and reused by a later call
    on the same dataset with the same backbone, shifts and split (e.g. heads with and without the arm state), with
    the same result as computing them again."""
    cfg = cfg or ClassifierTrainConfig()
    cfg.validate()
    t0 = time.perf_counter()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    ds = dataset if isinstance(dataset, RewardDataset) else load_dataset(dataset)
    if ds.num_positive == 0 or ds.num_negative == 0:
        raise ValueError(f"{ds.root}: needs positive and negative frames, has {ds.num_positive} positive and "
                         f"{ds.num_negative} negative")
    train_idx, test_idx = split_by_episode(ds.episode_ids, ds.labels, cfg.test_fraction, cfg.seed)
    if not ds.labels[test_idx].any() or not ds.labels[train_idx].any():
        raise ValueError(f"{ds.root}: the split by episode leaves one side without positives; record more "
                         "success episodes")
    train_eps = sorted(set(ds.episode_ids[train_idx].tolist()))
    test_eps = sorted(set(ds.episode_ids[test_idx].tolist()))
    log(f"split by episode: train {len(train_idx)} frames ({int(ds.labels[train_idx].sum())} positive) from "
        f"{len(train_eps)} episodes, held out {len(test_idx)} frames ({int(ds.labels[test_idx].sum())} positive) "
        f"from {len(test_eps)} episodes")
    use_arm = ds.arm is not None if cfg.arm_state is None else cfg.arm_state
    if use_arm and ds.arm is None:
        raise ValueError(f"arm_state: {ds.root} holds no arm state (recorded without it); train on the images "
                         "alone (arm_state false) or record the dataset again")
    arm_train = ds.arm[train_idx] if use_arm else None
    arm_test = ds.arm[test_idx] if use_arm else None
    if use_arm:
        log(f"arm state: {', '.join(ds.arm_fields)} beside the images")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    spec = ClassifierSpec(image_keys=ds.cameras, image_size=ds.image_shape[:2], encoder=cfg.encoder,
                          trim_head=cfg.trim_head, backbone_weights=cfg.backbone_weights,
                          backbone_dtype=cfg.backbone_dtype, num_spatial_features=cfg.num_spatial_features,
                          hidden_dim=cfg.hidden_dim, dropout=cfg.dropout, arm_state=use_arm,
                          arm_fields=ds.arm_fields if use_arm else None,
                          arm_mean=tuple(arm_train.mean(0).tolist()) if use_arm else None,
                          arm_std=tuple(np.maximum(arm_train.std(0), 1e-3).tolist()) if use_arm else None,
                          arm_veto=bool(use_arm and cfg.arm_veto))
    backbone = backbone or make_backbone(spec)
    clf = RewardClassifier(spec, backbone)
    tc = time.perf_counter()
    key = (str(ds.root), cfg.encoder, cfg.trim_head, cfg.backbone_weights, cfg.backbone_dtype, cfg.num_shifts,
           cfg.augmentation_pad, cfg.test_fraction, cfg.seed)
    if feature_cache is not None and key in feature_cache:
        train_feats, test_feats, gen_state = feature_cache[key]
        gen.set_state(gen_state)  # where computing them would have left it
    else:
        train_feats = {cam: cache_features(backbone, ds.images[cam][train_idx], cfg.num_shifts,
                                           cfg.augmentation_pad, gen) for cam in ds.cameras}
        test_feats = {cam: cache_features(backbone, ds.images[cam][test_idx], 1, 0) for cam in ds.cameras}
        if feature_cache is not None:
            feature_cache[key] = (train_feats, test_feats, gen.get_state())
    log(f"cached backbone maps {tuple(next(iter(train_feats.values())).shape[2:])} x {cfg.num_shifts} shifts "
        f"in {time.perf_counter() - tc:.1f} s")
    losses = train_head(clf, train_feats, ds.labels[train_idx], cfg.steps, cfg.batch_size, cfg.lr, gen, log,
                        arm_train)
    probs = predict_from_features(clf, test_feats, arm=arm_test)
    y_test = ds.labels[test_idx]
    at_half = classification_metrics(probs, y_test, 0.5)
    threshold, reached = pick_threshold(probs, y_test, cfg.target_precision, cfg.min_threshold)
    metrics = classification_metrics(probs, y_test, threshold)
    if not reached:
        log(f"WARNING: no threshold reaches precision {cfg.target_precision} on the held-out episodes; using the "
            f"most precise one ({metrics['precision']}). Record more negatives of the failure modes.")
    clf.threshold = threshold
    result = ClassifierTrainResult(None, threshold, reached, metrics, at_half, len(train_idx), len(test_idx),
                                   train_eps, test_eps, losses, 0.0, clf)
    if out_dir is not None:
        extra = {
            "target_precision": cfg.target_precision, "target_reached": reached,
            "threshold_rule": ("lowest threshold >= min_threshold whose held-out precision >= target_precision, moved to the "
                               "midpoint of the gap above it; fitted on the held-out split, so the precision "
                               "reported at it is optimistic (see metrics.held_out_at_0.5)"),
            "metrics": {"held_out_at_threshold": metrics, "held_out_at_0.5": at_half},
            "n_train": len(train_idx), "n_test": len(test_idx),
            "train_episodes": train_eps, "test_episodes": test_eps,
            "dataset": {"path": str(ds.root), "num_frames": len(ds), "label_counts": ds.manifest.get("label_counts"),
                        "source": ds.manifest.get("source")},
            "train_config": dataclasses.asdict(cfg),
            "final_loss": round(float(np.mean(losses[-20:])), 5),
        }
        result.path = clf.save(out_dir, extra)
    result.seconds = time.perf_counter() - t0
    return result


def format_report(res: ClassifierTrainResult) -> str:
    m, h = res.metrics, res.metrics_at_half
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    lines = [
        f"held-out episodes: {len(res.test_episodes)} ({res.n_test} frames); training: {len(res.train_episodes)} "
        f"episodes ({res.n_train} frames)",
        f"threshold {res.threshold:.4f} ({'meets' if res.target_reached else 'MISSES'} the precision target on the "
        "held-out split it was picked on)",
        f"  accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  f1 {m['f1']:.4f}",
        "  confusion matrix (rows: true, columns: predicted)",
        "                 pred neg  pred pos",
        f"    true neg     {tn:8d}  {fp:8d}",
        f"    true pos     {fn:8d}  {tp:8d}",
        f"at 0.5: accuracy {h['accuracy']:.4f}  precision {h['precision']:.4f}  recall {h['recall']:.4f}  "
        f"f1 {h['f1']:.4f}",
    ]
    if res.path is not None:
        lines.append(f"saved: {res.path}")
    return "\n".join(lines)


__all__ = ["ClassifierTrainConfig", "ClassifierTrainResult", "classification_metrics", "pick_threshold",
           "cache_features", "train_head", "predict_from_features", "train_classifier", "format_report"]
