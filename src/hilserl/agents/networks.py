"""Policy and value networks: MLP, tanh-Gaussian actor, critic ensemble, discrete gripper critic.

All MLPs follow the HIL-SERL reference: Linear -> LayerNorm -> activation per hidden layer, Xavier-uniform
weights and zero biases. Critic ensembles hold E independent MLPs and return stacked outputs [E, B, ...].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

class _Tanh(torch.autograd.Function):
    """tanh computed as 2 * sigmoid(2x) - 1: same values (to ~1e-7 absolute), but on the CPU builds we measured
    torch.tanh is ~10x slower than torch.sigmoid, and tanh dominates the cost of small [256, 256] MLPs."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: Tensor) -> Tensor:
    return _Tanh.apply(x)


class FastTanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return _Tanh.apply(x)


ACTIVATIONS = {
    "tanh": FastTanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def mlp(in_dim: int, hidden_dims: tuple[int, ...], activation: str = "tanh", layer_norm: bool = True) -> nn.Sequential:
    """Hidden layers only (no output layer): [Linear -> LayerNorm -> act] * len(hidden_dims)."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        linear = nn.Linear(in_dim, width)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(make_activation(activation))
        in_dim = width
    return nn.Sequential(*layers)


def _xavier_linear(in_dim: int, out_dim: int) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class TanhGaussianActor(nn.Module):
    """Diagonal Gaussian over pre-squash actions, squashed by tanh into [-1, 1].

    std = exp(log_std) with log_std clipped so that std lies in [std_min, std_max] (1e-5, 5 by default).
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...] = (256, 256),
        activation: str = "tanh",
        std_min: float = 1e-5,
        std_max: float = 5.0,
    ):
        super().__init__()
        self.trunk = mlp(in_dim, hidden_dims, activation)
        last = hidden_dims[-1] if hidden_dims else in_dim
        self.mean = _xavier_linear(last, action_dim)
        self.log_std = _xavier_linear(last, action_dim)
        self.log_std_min = math.log(std_min)
        self.log_std_max = math.log(std_max)

    def distribution_params(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(features)
        # float32 from here on: under bf16 mixed precision the log-probabilities and entropy stay exact enough
        log_std = self.log_std(h).float().clamp(self.log_std_min, self.log_std_max)
        return self.mean(h).float(), log_std

    def forward(self, features: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Returns (action in [-1, 1], log-probability of that action [B])."""
        mean, log_std = self.distribution_params(features)
        if deterministic:
            u = mean
        else:
            u = mean + log_std.exp() * torch.randn_like(mean)
        # log N(u; mean, std), written out (cheaper than torch.distributions)
        log_prob = (-0.5 * ((u - mean) * torch.exp(-log_std)).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # tanh change of variables, numerically stable form of log(1 - tanh(u)^2)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return fast_tanh(u), log_prob


class DeterministicActor(nn.Module):
    """DrQ-v2's actor: a deterministic action tanh(mu(features)) in [-1, 1] (`hilserl.agents.drqv2`); exploration
    noise is added outside it (`hilserl.agents.exploration`). Same trunk as `TanhGaussianActor`, no std head."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dims: tuple[int, ...] = (256, 256),
                 activation: str = "tanh"):
        super().__init__()
        self.trunk = mlp(in_dim, hidden_dims, activation)
        self.mean = _xavier_linear(hidden_dims[-1] if hidden_dims else in_dim, action_dim)

    def forward(self, features: Tensor) -> Tensor:
        return torch.tanh(self.mean(self.trunk(features)).float())


class EnsembleMLP(nn.Module):
    """E independent MLPs [Linear -> LayerNorm -> act]* -> Linear(out_dim) on the same input. Output [E, B, out].

    Members are plain modules evaluated one after the other: for the small ensembles used here (2) this measured
    faster on CPU than one batched-matmul (bmm) ensemble, because LayerNorm keeps its fused affine.
    """

    def __init__(
        self,
        ensemble_size: int,
        in_dim: int,
        out_dim: int,
        hidden_dims: tuple[int, ...] = (256, 256),
        activation: str = "tanh",
    ):
        super().__init__()
        self.members = nn.ModuleList(
            nn.Sequential(mlp(in_dim, hidden_dims, activation), _xavier_linear(hidden_dims[-1], out_dim))
            for _ in range(ensemble_size)
        )
        self.ensemble_size = ensemble_size

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members])


class CriticEnsemble(nn.Module):
    """Q(s, a) for E ensemble members: features [B, F], actions [B, A] -> [E, B]."""

    def __init__(self, in_dim: int, action_dim: int, ensemble_size: int = 2,
                 hidden_dims: tuple[int, ...] = (256, 256), activation: str = "tanh", trunk_dim: int | None = None,
                 privileged_dim: int = 0, privileged_feature_dim: int = 64):
        super().__init__()
        # privileged_dim > 0: an asymmetric critic (Pinto et al. 2018) that also reads the simulation's privileged
        # state [B, P] through its own projection (Linear -> LayerNorm -> tanh), concatenated to the features
        self.privileged_proj = None
        if privileged_dim > 0:
            linear = _xavier_linear(privileged_dim, privileged_feature_dim)
            self.privileged_proj = nn.Sequential(linear, nn.LayerNorm(privileged_feature_dim), FastTanh())
            in_dim = in_dim + privileged_feature_dim
        # trunk_dim (DrQ-v2's critic trunk): each member first compresses the observation features to trunk_dim
        # (Linear -> LayerNorm -> tanh) and only then sees the action, so a few action inputs are not drowned by
        # hundreds of image features in the first layer's LayerNorm
        self.trunks = None
        if trunk_dim is not None:
            self.trunks = nn.ModuleList(nn.Sequential(_xavier_linear(in_dim, trunk_dim), nn.LayerNorm(trunk_dim),
                                                      FastTanh()) for _ in range(ensemble_size))
            in_dim = trunk_dim
        self.net = EnsembleMLP(ensemble_size, in_dim + action_dim, 1, hidden_dims, activation)

    def forward(self, features: Tensor, actions: Tensor, privileged: Tensor | None = None) -> Tensor:
        if self.privileged_proj is not None:
            if privileged is None:
                raise ValueError("this critic is asymmetric: it needs the privileged state beside the features")
            features = torch.cat([features, self.privileged_proj(privileged.to(features.dtype))], dim=-1)
        actions = actions.to(features.dtype)
        if self.trunks is None:
            return self.net(torch.cat([features, actions], dim=-1)).squeeze(-1).float()
        return torch.stack([member(torch.cat([trunk(features), actions], dim=-1))
                            for trunk, member in zip(self.trunks, self.net.members)]).squeeze(-1).float()


class DiscreteCritic(nn.Module):
    """Q(s, ·) over the gripper commands {0: close, 1: stay, 2: open}: features [B, F] -> [E, B, 3]."""

    def __init__(self, in_dim: int, num_actions: int = 3, ensemble_size: int = 1,
                 hidden_dims: tuple[int, ...] = (256, 256), activation: str = "tanh"):
        super().__init__()
        self.net = EnsembleMLP(ensemble_size, in_dim, num_actions, hidden_dims, activation)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).float()


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, parameter by parameter (one fused foreach call)."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    torch._foreach_lerp_(t_params, o_params, tau)
