"""The reward classifier: a frozen pretrained backbone (shared with the policy's choices) plus a small trainable
head per camera, and its file format.

Head (every layer trains; LeRobot's classifier runs the spatial embedding and projection under no_grad, so only
its last layer learns — here nothing is under no_grad except the frozen backbone)::

    per camera:  SpatialLearnedEmbeddings(8) -> Dropout -> Linear(256) -> LayerNorm -> ReLU
    arm state (``arm_state``: the ``arm_fields`` values, by default the gripper's opening, velocity and closed
               command and the end-effector's height, standardized with the training set's mean and std)
               -> Linear(64) -> LayerNorm -> ReLU
    all concatenated -> Linear(256) -> Dropout -> LayerNorm -> ReLU -> Linear(1)   (the full head's logit)
    arm veto (``arm_veto``, with ``arm_state``): the arm's values alone -> Linear(64) -> ReLU -> Linear(64) -> ReLU
               -> Linear(1), trained beside the full head on the same frames with its own loss
    logit = -logsumexp(-full, -veto): success only where both say so (the probability is at most either's)

Why the arm state: a head on frozen ImageNet features, trained on randomized looks, still mistakes a cube lying
under the closed jaws for a lifted one on a table pattern it never saw, and misses lifted cubes under a light it
never saw (docs/real_arm.md). The arm knows how far the gripper closed, whether it was told to close and has
stopped, and how high it is, whatever the camera sees; the images still tell what proprioception cannot (whether
the jaws closed on the cube or on something else of its size).

Why the veto: inside one head the arm's values are a few inputs among the cameras', and on a table the head never
saw, image features it has never met can outvote them: jaws shut on nothing (opening 0) beside the cube scored
0.99 on a dark walnut table. A head that sees only the arm cannot be moved by any look, so its "no" stands
(docs/real_arm.md).

Files (a classifier is a folder)::

    classifier.safetensors   the head's weights only (the backbone comes from the package: the shipped ImageNet
                             weights of EfficientNet-Lite0, or the named ResNet-10 weights file)
    classifier.json          format + version, encoder, trim_head, backbone dtype, image keys, image size,
                             feature-map shape, head sizes, whether it reads the arm state (which fields, and the
                             mean and std it standardizes them with), threshold, crop note, metrics, sha256 of
                             the weights

``RewardClassifier.load`` checks everything and raises ``ClassifierFileError`` (a ``ValueError``) naming the file
and what is wrong: corrupt or truncated weights, a JSON that does not match the weights (encoder, trim_head,
cameras, shapes), a wrong format version. A missing folder or file is a ``FileNotFoundError`` naming the path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hilserl.agents.encoders import FrozenBackbone, SpatialLearnedEmbeddings, build_backbone
from hilserl.fileio import atomic_write, atomic_write_json
from hilserl.obs_format import channels_first
from hilserl.reward.dataset import ARM_STATE, LEGACY_ARM_STATE, arm_state, check_arm_fields

FORMAT = "hilserl.reward_classifier"
FORMAT_VERSION = 1
WEIGHTS_FILE = "classifier.safetensors"
META_FILE = "classifier.json"
ENCODERS = ("efficientnet_lite0", "resnet10")
CROP_NOTE = ("no crop: the full frame as the camera gives it, resized to image_size; random shifts of up to "
             "augmentation_pad pixels (replicate edges) during training only")


class ClassifierFileError(ValueError):
    """A classifier file that cannot be used; the message names the file and what is wrong."""


@dataclass
class ClassifierSpec:
    """Everything that fixes the classifier's architecture and inputs (stored in classifier.json)."""

    image_keys: tuple[str, ...] = ("gripper",)
    image_size: tuple[int, int] = (128, 128)
    encoder: str = "efficientnet_lite0"
    trim_head: bool = True
    backbone_weights: str | None = None  # resnet10: a local weights file; efficientnet_lite0: None = shipped
    backbone_dtype: str = "auto"
    num_spatial_features: int = 8
    hidden_dim: int = 256
    dropout: float = 0.1
    feature_map_shape: tuple[int, int, int] | None = None  # filled from the backbone
    arm_state: bool = False  # also read what the arm measured (hilserl.reward.dataset.ARM_FIELDS)
    # which arm values, in order; None with arm_state: the pair classifiers read before the gripper's velocity and
    # command were recorded (LEGACY_ARM_STATE), so their classifier.json files load as they were trained
    arm_fields: tuple[str, ...] | None = None
    arm_mean: tuple[float, ...] | None = None  # the training frames' arm-state mean and std (standardization)
    arm_std: tuple[float, ...] | None = None
    # an arm-only head whose "no" the images cannot overrule; False in classifier.json files made before it
    arm_veto: bool = False

    def __post_init__(self):
        self.image_keys = tuple(self.image_keys)
        if self.arm_veto and not self.arm_state:
            raise ValueError("arm_veto: needs arm_state true (the veto reads the arm's values)")
        if self.arm_state:
            self.arm_fields = check_arm_fields(self.arm_fields or LEGACY_ARM_STATE, "arm_fields")
        elif self.arm_fields is not None:
            raise ValueError(f"arm_fields: only with arm_state true, got {list(self.arm_fields)}")
        n = len(self.arm_fields or ARM_STATE)
        for name in ("arm_mean", "arm_std"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != n or not all(np.isfinite(value)):
                    raise ValueError(f"{name}: expected {n} finite values "
                                     f"({', '.join(self.arm_fields or ARM_STATE)}), got {list(value)}")
                setattr(self, name, value)
        if self.arm_std is not None and min(self.arm_std) <= 0:
            raise ValueError(f"arm_std: expected values > 0, got {list(self.arm_std)}")
        self.image_size = tuple(int(s) for s in self.image_size)
        if self.feature_map_shape is not None:
            self.feature_map_shape = tuple(int(s) for s in self.feature_map_shape)
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {list(ENCODERS)}, got {self.encoder!r}")
        if not self.image_keys:
            raise ValueError("image_keys: at least one camera is needed")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size: expected (H, W) >= 16, got {self.image_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")


def make_backbone(spec: ClassifierSpec) -> FrozenBackbone:
    return build_backbone(spec.encoder, spec.backbone_weights, spec.backbone_dtype, trim_head=spec.trim_head)


class CameraHead(nn.Module):
    """SpatialLearnedEmbeddings -> Dropout -> Linear -> LayerNorm -> ReLU."""

    def __init__(self, channels: int, height: int, width: int, num_features: int, hidden: int, dropout: float):
        super().__init__()
        self.pool = SpatialLearnedEmbeddings(channels, height, width, num_features)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.pool.out_dim, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.proj(self.dropout(self.pool(x.float())))))


ARM_HIDDEN = 64


class ClassifierHead(nn.Module):
    """Feature maps per camera [B, C, h, w] (and, with ``arm_state``, the arm's values [B, F]) -> one logit [B]."""

    def __init__(self, spec: ClassifierSpec):
        super().__init__()
        if spec.feature_map_shape is None:
            raise ValueError("feature_map_shape: unknown (build the head from a backbone)")
        c, h, w = spec.feature_map_shape
        self.image_keys = spec.image_keys
        self.cameras = nn.ModuleDict({cam: CameraHead(c, h, w, spec.num_spatial_features, spec.hidden_dim,
                                                      spec.dropout) for cam in spec.image_keys})
        d = spec.hidden_dim
        self.arm = None
        if spec.arm_state:
            n = len(spec.arm_fields)
            self.arm = nn.Sequential(nn.Linear(n, ARM_HIDDEN), nn.LayerNorm(ARM_HIDDEN), nn.ReLU())
            # the standardization is part of the spec (classifier.json), not of the trained weights
            self.register_buffer("arm_mean", torch.tensor(spec.arm_mean or (0.0,) * n), persistent=False)
            self.register_buffer("arm_std", torch.tensor(spec.arm_std or (1.0,) * n), persistent=False)
        self.fuse = nn.Linear(d * len(spec.image_keys) + (ARM_HIDDEN if spec.arm_state else 0), d)
        self.dropout = nn.Dropout(spec.dropout)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, 1)
        self.veto = None
        if spec.arm_veto:
            n = len(spec.arm_fields)
            self.veto = nn.Sequential(nn.Linear(n, ARM_HIDDEN), nn.ReLU(), nn.Linear(ARM_HIDDEN, ARM_HIDDEN), nn.ReLU(),
                                      nn.Linear(ARM_HIDDEN, 1))

    def logits(self, maps: dict[str, Tensor], arm: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(the full head's logit [B], the arm veto's logit [B] or None): what training fits, each on its own."""
        parts = [self.cameras[cam](maps[cam]) for cam in self.image_keys]
        veto = None
        if self.arm is not None:
            if arm is None:
                raise ValueError("arm: this classifier also reads the arm's state (gripper opening, velocity and "
                                 "command, end-effector height); none was given")
            a = (arm.float() - self.arm_mean) / self.arm_std
            parts.append(self.arm(a))
            if self.veto is not None:
                veto = self.veto(a).squeeze(-1)
        x = torch.relu(self.norm(self.dropout(self.fuse(torch.cat(parts, dim=-1)))))
        return self.out(x).squeeze(-1), veto

    def forward(self, maps: dict[str, Tensor], arm: Tensor | None = None) -> Tensor:
        full, veto = self.logits(maps, arm)
        if veto is None:
            return full
        return -torch.logsumexp(torch.stack([-full, -veto]), dim=0)  # a soft minimum: both must say success


def _images_to_tensor(images, size: tuple[int, int], key: str) -> Tensor:
    """uint8 [H, W, 3] / [B, H, W, 3] (numpy or torch) or [B, 3, H, W] tensor -> uint8 [B, 3, H, W]."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4:
        raise ValueError(f"images[{key!r}]: expected [H, W, 3] or [B, H, W, 3], got shape {tuple(t.shape)}")
    if t.shape[-1] == 3 and t.shape[1] != 3:
        t = channels_first(t)
    if tuple(t.shape[2:]) != tuple(size):
        raise ValueError(f"images[{key!r}]: the classifier was trained on {size[0]}x{size[1]} images, "
                         f"got {t.shape[2]}x{t.shape[3]}")
    return t.contiguous()


class RewardClassifier(nn.Module):
    """Frozen backbone + trainable head. ``predict_proba({camera: uint8 image(s)})`` -> success probability."""

    def __init__(self, spec: ClassifierSpec, backbone: FrozenBackbone | None = None, threshold: float = 0.5,
                 metadata: dict | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else make_backbone(spec)
        shape = tuple(self.backbone.output_shape(spec.image_size))
        if spec.feature_map_shape is not None and tuple(spec.feature_map_shape) != shape:
            raise ValueError(f"feature_map_shape: the {spec.encoder} backbone (trim_head={spec.trim_head}) gives "
                             f"{list(shape)} for {spec.image_size} images, the spec says "
                             f"{list(spec.feature_map_shape)}")
        self.spec = dataclasses.replace(spec, feature_map_shape=shape)
        self.head = ClassifierHead(self.spec)
        self.threshold = float(threshold)
        self.metadata = dict(metadata or {})
        self.eval()

    @property
    def image_keys(self) -> tuple[str, ...]:
        return self.spec.image_keys

    @property
    def image_size(self) -> tuple[int, int]:
        return self.spec.image_size

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def features(self, images: dict) -> dict[str, Tensor]:
        """Backbone maps per camera (frozen, no grad); all cameras go through the backbone in one call."""
        xs = [_images_to_tensor(images[cam], self.image_size, cam) for cam in self.image_keys]
        maps = self.backbone(torch.cat(xs, 0)).split([x.shape[0] for x in xs], 0)
        return dict(zip(self.image_keys, maps))

    @property
    def needs_state(self) -> bool:
        """Whether predictions need the arm's state vector beside the images."""
        return self.spec.arm_state

    def forward(self, images: dict, arm: Tensor | None = None) -> Tensor:
        return self.head(self.features(images), arm)

    @torch.no_grad()
    def predict_proba(self, images: dict, state=None):
        """{camera: uint8 [H, W, 3]} -> float; {camera: uint8 [B, H, W, 3]} -> float array [B]. ``state``: the
        arm's state vector(s) [17] / [B, 17] (the policy observation's ``state``), for a classifier that reads the
        arm (``needs_state``)."""
        missing = [k for k in self.image_keys if k not in images]
        if missing:
            raise KeyError(f"the reward classifier needs camera(s) {missing}, got {sorted(images)}")
        single = np.asarray(images[self.image_keys[0]]).ndim == 3
        arm = None
        if self.needs_state:
            if state is None:
                raise ValueError("state: this reward classifier also reads the arm's state (gripper opening, "
                                 "velocity and command, end-effector height); pass the observation's state vector")
            fields = self.spec.arm_fields
            arm = torch.from_numpy(arm_state(state, fields)).reshape(-1, len(fields))
        was_training = self.head.training
        self.head.eval()
        p = torch.sigmoid(self(images, arm)).numpy()
        self.head.train(was_training)
        return float(p[0]) if single else p

    # ------------------------------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        if self.spec.encoder == "resnet10" and not self.spec.backbone_weights:
            raise ValueError("backbone_weights: a randomly initialised ResNet-10 cannot be rebuilt when the "
                             "classifier is loaded (only the head is saved); give a weights file or use "
                             "efficientnet_lite0")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in self.head.state_dict().items()}
        wpath = d / WEIGHTS_FILE
        atomic_write(wpath, lambda tmp: save_file(weights, tmp, metadata={"format": FORMAT,
                                                                          "format_version": str(FORMAT_VERSION)}))
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            **json.loads(json.dumps(dataclasses.asdict(self.spec))),
            "threshold": self.threshold, "crop": CROP_NOTE,
            **{k: v for k, v in self.metadata.items() if k not in ("format", "format_version", "threshold")},
            **(extra or {}),
            "weights_sha256": _sha256(wpath),
        }
        atomic_write_json(d / META_FILE, meta)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, backbone: FrozenBackbone | None = None) -> "RewardClassifier":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(directory)
        if d.is_file() and d.name in (META_FILE, WEIGHTS_FILE):
            d = d.parent
        if not d.is_dir():
            raise FileNotFoundError(f"reward classifier {d}: no such folder (expected {META_FILE} and "
                                    f"{WEIGHTS_FILE} inside)")
        mpath, wpath = d / META_FILE, d / WEIGHTS_FILE
        for p in (mpath, wpath):
            if not p.is_file():
                raise FileNotFoundError(f"reward classifier {d}: {p.name} is missing")
        try:
            meta = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ClassifierFileError(f"{mpath}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ClassifierFileError(f"{mpath}: not a reward classifier file (format "
                                      f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected "
                                      f"{FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ClassifierFileError(f"{mpath}: format_version {meta.get('format_version')!r}; this hilserl reads "
                                      f"version {FORMAT_VERSION}")
        names = [f.name for f in dataclasses.fields(ClassifierSpec)]
        missing = [n for n in ("image_keys", "image_size", "encoder", "trim_head", "feature_map_shape", "threshold")
                   if n not in meta]
        if missing:
            raise ClassifierFileError(f"{mpath}: missing field(s) {missing}")
        try:
            spec = ClassifierSpec(**{n: meta[n] for n in names if n in meta})
        except (TypeError, ValueError) as e:
            raise ClassifierFileError(f"{mpath}: {e}") from None
        thr = meta["threshold"]
        if not isinstance(thr, (int, float)) or not 0.0 < float(thr) < 1.0:
            raise ClassifierFileError(f"{mpath}: threshold must be a probability in (0, 1), got {thr!r}")
        sha = meta.get("weights_sha256")
        if sha is not None and sha != _sha256(wpath):
            raise ClassifierFileError(f"{wpath}: its sha256 does not match classifier.json (the weights file is "
                                      "corrupt, truncated, or from another classifier)")
        try:
            weights = load_file(str(wpath))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ClassifierFileError(f"{wpath}: not a readable safetensors file ({e})") from None
        if backbone is None:
            backbone = make_backbone(spec)
        try:
            model = cls(spec, backbone, float(thr), metadata=meta)
        except ValueError as e:  # the backbone gives another map shape than recorded
            raise ClassifierFileError(f"{mpath}: {e}") from None
        expected = model.head.state_dict()
        unexpected = sorted(set(weights) - set(expected))
        absent = sorted(set(expected) - set(weights))
        if absent or unexpected:
            cams_w = sorted({k.split(".")[1] for k in weights if k.startswith("cameras.")})
            raise ClassifierFileError(
                f"{wpath}: the weights do not match classifier.json (image_keys {list(spec.image_keys)}; the "
                f"weights hold cameras {cams_w}); missing {absent[:4]}, unexpected {unexpected[:4]}")
        for k, v in weights.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise ClassifierFileError(
                    f"{wpath}: tensor {k} has shape {list(v.shape)} but encoder={spec.encoder!r} "
                    f"(trim_head={spec.trim_head}, maps {list(model.spec.feature_map_shape)}) with "
                    f"{len(spec.image_keys)} camera(s) needs {list(expected[k].shape)}: classifier.json and the "
                    "weights do not belong together")
        model.head.load_state_dict(weights, strict=True)
        model.eval()
        return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_classifier(path: str | os.PathLike, backbone: FrozenBackbone | None = None) -> RewardClassifier:
    return RewardClassifier.load(path, backbone)


__all__ = ["ClassifierSpec", "ClassifierHead", "RewardClassifier", "ClassifierFileError", "load_classifier",
           "make_backbone", "FORMAT_VERSION", "WEIGHTS_FILE", "META_FILE"]
