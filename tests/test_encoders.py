"""Backbones, frozen wrapper, spatial embeddings, cached features."""

import hashlib

import torch

from hilserl.agents.encoders import (
    EfficientNetLite0,
    FrozenBackbone,
    ResNet10,
    SpatialLearnedEmbeddings,
    efficientnet_lite0_weights_path,
    load_weights_file,
    pick_cached,
    precompute_features,
)


def test_efficientnet_lite0_loads_shipped_imagenet_weights_and_gives_1280x4x4():
    path = efficientnet_lite0_weights_path()
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    net = EfficientNetLite0("imagenet")
    random_net = EfficientNetLite0(None)
    ours = net.net.state_dict()
    # every trunk tensor is the shipped one, and the stem is not at its random init
    for key, value in ours.items():
        assert torch.equal(value, shipped[key]), key
    assert not torch.allclose(random_net.net._conv_stem.weight, net.net._conv_stem.weight)

    def digest(sd):
        h = hashlib.sha256()
        for k in sorted(sd):
            h.update(k.encode())
            h.update(sd[k].float().numpy().tobytes())
        return h.hexdigest()

    shipped_trunk = {k: v for k, v in shipped.items() if not k.startswith("_fc.")}
    assert digest(ours) == digest(shipped_trunk)
    # ImageNet BN statistics: far from the (0, 1) init
    assert net.net._bn0.running_var.mean() > 2.0 or net.net._bn0.running_mean.abs().mean() > 0.5
    frozen = FrozenBackbone(net)
    out = frozen(torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8))
    assert out.shape == (2, 1280, 4, 4) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_resnet10_shape_and_weights_file_roundtrip(tmp_path):
    from safetensors.torch import save_file

    net = ResNet10()
    assert net(torch.zeros(1, 3, 128, 128)).shape == (1, 512, 4, 4)
    n_blocks = sum(1 for m in net.modules() if m.__class__.__name__ == "BasicBlock")
    assert n_blocks == 4
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 4 for m in norms)
    file = tmp_path / "r10.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(file))
    loaded = ResNet10(file)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert torch.equal(loaded(x), net(x))
    pth = tmp_path / "r10.pth"
    torch.save(net.state_dict(), pth)  # test fixture only; the library reads it with weights_only=True
    assert torch.equal(ResNet10(pth)(x), net(x))
    assert set(load_weights_file(file)) == set(net.state_dict())


def test_frozen_backbone_has_no_grad_and_stays_in_eval_mode():
    frozen = FrozenBackbone(ResNet10())
    frozen.train()
    assert not frozen.module.training
    assert all(not p.requires_grad for p in frozen.parameters())
    out = frozen(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert not out.requires_grad and out.grad_fn is None


def test_spatial_learned_embeddings_matches_definition():
    torch.manual_seed(0)
    layer = SpatialLearnedEmbeddings(channels=5, height=3, width=4, num_features=8)
    x = torch.randn(2, 5, 3, 4)
    kernel = layer.kernel.view(5, 3, 4, 8)
    expected = torch.einsum("bchw,chwf->bcf", x, kernel).reshape(2, 40)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_precomputed_features_equal_backbone_features_and_pick_per_sample():
    torch.manual_seed(0)
    frozen = FrozenBackbone(ResNet10(), compute_dtype=None)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    cached = precompute_features(frozen, images, num_shifts=2, pad=0, chunk_size=2)
    assert cached.shape == (3, 2, 512, 1, 1) and cached.dtype == torch.float16
    direct = frozen(images)
    assert torch.allclose(cached[:, 0].float(), direct, rtol=2e-3, atol=2e-3)
    shifted = precompute_features(frozen, images, num_shifts=4, pad=4)
    assert not torch.equal(shifted[:, 0], shifted[:, 1])  # different fixed shifts per frame
    stack = torch.arange(4 * 3).view(4, 3, 1, 1, 1).float()  # sample b, shift k -> value 3b + k
    picked = pick_cached(stack, torch.Generator().manual_seed(0)).view(-1)
    assert ((picked - torch.arange(4) * 3) >= 0).all() and ((picked - torch.arange(4) * 3) < 3).all()


def test_bfloat16_backbone_close_to_float32():
    torch.manual_seed(0)
    net = ResNet10()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    f32 = FrozenBackbone(net, None)(x)
    bf16 = FrozenBackbone(net, torch.bfloat16)(x)
    assert bf16.dtype == torch.float32
    rel = (f32 - bf16).norm() / f32.norm()
    assert rel < 0.05

