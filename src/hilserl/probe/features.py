"""The feature maps the probe reads: a few layers of each backbone, run as the policy runs it.

Backbones (the ones `hilserl.agents.encoders.build_backbone` offers, plus a baseline):

* ``efficientnet_lite0``: the shipped ImageNet weights. Layers: ``block10`` (stride 16, 112 channels), ``block15``
  (stride 32, 320 channels: the map the policy reads with ``backbone_trim_head=true``, as in the shipped configs)
  and ``head`` (the 1x1 head convolution, 1280 channels: the map with ``backbone_trim_head=false``).
* ``resnet10``: HIL-SERL's ResNet-10 shape. No weights ship for it, so unless ``weights`` names a local file it is
  randomly initialised, which is what the policy gets too. Layers: ``stage3`` (stride 16, 256 channels) and
  ``stage4`` (stride 32, 512 channels: the policy's map).
* ``pixels``: no network, the image itself area-averaged to 16x16 (values 0..1): how much a linear probe finds
  without any encoder, the floor an encoder should beat.

Each map is read two ways (``views``): ``gap``, global average pooling ([N, C]: what a pooled head sees) and
``flat``, the whole map flattened ([N, C*h*w]). The policy's head (`SpatialLearnedEmbeddings` then a linear layer)
is linear in the flattened map, so what a linear probe finds in ``flat`` bounds what that head can read linearly.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

BACKBONES = ("efficientnet_lite0", "resnet10", "pixels")
POLICY_LAYER = {"efficientnet_lite0": "block15", "resnet10": "stage4", "pixels": None}
VIEWS = ("gap", "flat")


def _efficientnet_layers(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net = module.net
    x = (x.float() - 127.0) * (1.0 / 128.0)  # as EfficientNetLite0.forward
    x = net._swish(net._bn0(net._conv_stem(x)))
    out = {}
    for i, block in enumerate(net._blocks):  # eval mode: no drop-connect, as in EfficientNetLite0.forward
        x = block(x)
        if i == 10:
            out["block10"] = x
    out["block15"] = x
    if not module.trim_head:
        out["head"] = net._swish(net._bn1(net._conv_head(x)))
    return out


def _resnet_layers(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    x = module.stem((x.float() - module.mean) * module.inv_std)  # as ResNet10.forward
    out = {}
    for i, stage in enumerate(module.stages):
        x = stage(x)
        if i >= 2:
            out[f"stage{i + 1}"] = x
    return out


def _pixel_layers(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"16x16": F.adaptive_avg_pool2d(x.float() * (1.0 / 255.0), 16)}


def load_backbone(name: str, dtype: str = "auto", weights: str | None = None):
    """The frozen backbone as the policy builds it (None for ``pixels``)."""
    from hilserl.agents.encoders import build_backbone

    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    if name == "pixels":
        return None
    return build_backbone(name, weights=weights, dtype=dtype, trim_head=False)


def layer_maps(backbone, name: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every probed layer's map for uint8 images [B, 3, H, W], computed as `FrozenBackbone.forward` computes its
    output (channels_last, no grad, the backbone's autocast dtype, float32 out)."""
    if backbone is None:
        return _pixel_layers(images)
    x = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=backbone.compute_dtype or torch.float32,
                                         enabled=backbone.compute_dtype is not None):
        maps = (_efficientnet_layers if name == "efficientnet_lite0" else _resnet_layers)(backbone.module, x)
    return {k: v.float().contiguous() for k, v in maps.items()}


def extract_features(name: str, images: np.ndarray, dtype: str = "auto", weights: str | None = None,
                     batch_size: int = 32, seed: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """uint8 images [N, H, W, 3] -> ({layer: float32 map [N, C, h, w]}, seconds per frame). The time is the
    backbone's forward pass through its deepest probed layer, in batches of `batch_size`, on torch's threads.
    `seed` draws a randomly initialised backbone's weights (resnet10 without a weights file)."""
    torch.manual_seed(seed)
    backbone = load_backbone(name, dtype, weights)
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    layer_maps(backbone, name, tensor[:2])  # warm-up: the first call pays for allocation and kernel choice
    chunks: dict[str, list[np.ndarray]] = {}
    seconds = 0.0
    for start in range(0, len(tensor), batch_size):
        t0 = time.perf_counter()
        maps = layer_maps(backbone, name, tensor[start:start + batch_size])
        seconds += time.perf_counter() - t0
        for layer, m in maps.items():
            chunks.setdefault(layer, []).append(m.numpy())
    return {layer: np.concatenate(parts) for layer, parts in chunks.items()}, seconds / max(1, len(tensor))


def view(feature_map: np.ndarray, how: str) -> np.ndarray:
    """[N, C, h, w] -> [N, C] (``gap``: global average pooling) or [N, C*h*w] (``flat``)."""
    if how == "gap":
        return feature_map.mean(axis=(2, 3))
    if how == "flat":
        return feature_map.reshape(len(feature_map), -1)
    raise ValueError(f"view {how!r}: expected one of {VIEWS}")
