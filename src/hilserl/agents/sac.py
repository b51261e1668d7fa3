"""SAC for HIL-SERL: continuous tanh-Gaussian actor, critic ensemble, optional discrete gripper critic.

Read top to bottom: ``SACConfig`` (every knob, reference defaults), the losses as plain functions of tensors,
then ``SACAgent`` (networks, one critic step, one actor+temperature step, the UTD loop, acting, save/load).

Batch format (what a replay buffer hands to ``update``)::

    observations / next_observations: flat dicts
        "state"              float32 [B, S]
        "pixels.<camera>"    uint8 [B, 3, H, W]          (faithful mode: augmented here, backbone run here)
        "features.<camera>"  float16 [B, K, C, h, w]     (cached mode, see below; or [B, C, h, w] already picked)
        "environment_state"  float32 [B, E]              (optional)
    actions          float32 [B, A]; discrete-gripper mode: A = action_dim + 1, the last column is the gripper
                     command index (0 = close, 1 = stay, 2 = open) stored as a float
    rewards          [B]   (n-step batches: the discounted sum of the row's rewards)
    terminals        [B]   1 = true terminal (no bootstrap); time-limit truncations must be 0
    discounts        [B]   optional: the bootstrap's discount per row (n-step returns: discount ** steps taken);
                           without it every row bootstraps with ``discount``
    is_intervention  [B]   (not used by the losses; interventions are data)
    gripper_penalty  [B]   optional, discrete mode: the grasp penalty already applied per transition, e.g. -0.02
                           where the gripper command changed the gripper state, else 0 (see ``grasp_penalty``).
                           Alternatively ``gripper_state_changed`` [B] in {0, 1}, multiplied by
                           ``config.grasp_penalty`` here. With neither key there is no penalty. The penalty enters
                           only the discrete critic's reward, never the continuous critic's.

Design decisions (and why):

* One trainable encoder (heads + proprio projection, + the conv stacks for ``encoder="conv"``) is shared by actor,
  critic and (by default) the discrete critic. It is trained by the critic losses only: the actor sees it detached.
* The TD targets use the ONLINE encoder under ``no_grad`` (DrQ-v2 / LeRobot style) and without dropout, so a
  target does not depend on a dropout draw; only the critic MLPs have target copies. A frozen backbone makes an
  encoder target copy nearly meaningless anyway.
* In the full update the actor reuses the critic step's observation embedding (detached). That embedding was made
  with the encoder weights from before the critic's optimizer step, which is exactly what the reference JAX code
  does (all losses of one update are computed from the same parameters). The actor's Q does use the freshly
  updated critic MLP (CleanRL order). The backbone runs once per image per update: obs and next_obs of every
  camera go through it in a single call.
* ``update(batches)`` = ``utd_ratio`` critic steps (one per batch) and one actor + temperature step on the last
  batch, as in HIL-SERL's ``update_high_utd``. Every critic step ends with the soft target update.
* Discrete gripper: double DQN — the next-state command is the argmax of the ONLINE discrete critic (ensemble mean),
  its value comes from the TARGET discrete critic (ensemble min). Acting: greedy when ``deterministic``; otherwise
  epsilon-greedy with ``gripper_epsilon`` (default 0.0, i.e. greedy, as in the reference implementations).
* Cached mode (``cached_features=True``): a frozen backbone gives the same map for the same pixels, so its maps can
  be computed once per stored frame (``precompute_features``: K random shifts per frame, float16) and training
  then picks one of the K per sample and runs only the cheap head. Cost: K x C*h*w*2 bytes per frame (512x4x4
  ResNet-10 maps: 16 KiB per shift, 64 KiB at K=4; a raw 128x128 frame is 48 KiB) and one backbone pass per
  frame per shift when the frame is stored, instead of two backbone passes per sample per update. Meaning: the
  augmentation is restricted to K fixed shifts per frame instead of a fresh one of 81 shifts every time; the
  maths is otherwise identical. At act time the policy still runs the backbone on unshifted pixels.
* Frozen backbones run under bf16 autocast when the CPU supports bf16 natively (``backbone_dtype="auto"``):
  ~1.6-2.7x faster, features differ from float32 by bf16 rounding (~3 significant digits). "float32" turns it off.
* The updates' matrix products run in bf16 on the same CPUs (``mixed_precision="auto"``): 1.6-1.9x the updates/s.
  Weights, Adam state and losses stay float32; Q values and log-probabilities are float32 from bf16 activations
  (Q differs from a float32 forward by ~0.1%, e.g. 0.01 at Q = 6, a fifth of one step's -0.05 penalty). Measured
  to learn as well as float32 (the point-reaching test, the state and pixel sim configs); ``false`` turns it off.
  Each optimizer step gets its own autocast context, because autocast keeps its bf16 copy of a weight until the
  context exits.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hilserl.fileio import atomic_write, atomic_write_json

from .augment import IMAGE_PREFIX, augment_observations
from .encoders import FEATURES, ObservationEncoder, build_backbone, precompute_features
from .networks import CriticEnsemble, DiscreteCritic, TanhGaussianActor, soft_update
from .precision import cpu_bf16_name, native_bf16

ENCODERS = ("efficientnet_lite0", "resnet10", "conv")
GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN = 0, 1, 2


# ============================================================================================= config
@dataclass
class SACConfig:
    # ---- shapes
    state_dim: int = 18
    action_dim: int = 4  # continuous dims only (the gripper command is extra in discrete mode)
    discrete_gripper: bool = False
    num_gripper_actions: int = 3
    cameras: tuple[str, ...] = ()
    image_size: tuple[int, int] = (128, 128)
    environment_state_dim: int = 0
    # ---- encoder
    encoder: str = "efficientnet_lite0"  # "efficientnet_lite0" (shipped ImageNet weights), "resnet10", "conv"
    backbone_weights: str | None = None  # local .safetensors/.pth; None: shipped weights (effnet) / random (resnet)
    backbone_dtype: str = "auto"  # "auto" | "float32" | "bfloat16"
    backbone_trim_head: bool = False  # efficientnet_lite0 only: 320-channel maps before the 1x1 head conv
    cached_features: bool = False
    num_cached_shifts: int = 4
    augmentation_pad: int = 4  # random shift of up to this many pixels (replicate edges); 0 disables
    image_feature_dim: int = 256
    state_feature_dim: int = 64
    num_spatial_features: int = 8
    head_dropout: float = 0.1
    conv_channels: tuple[int, ...] = (32, 32, 32, 32)
    conv_strides: tuple[int, ...] = (2, 2, 2, 1)
    # ---- networks
    hidden_dims: tuple[int, ...] = (256, 256)
    activation: str = "tanh"
    std_min: float = 1e-5
    std_max: float = 5.0
    critic_ensemble_size: int = 2
    critic_trunk_dim: int | None = None  # per critic: observation features -> this many (LayerNorm, tanh) before the action joins
    critic_subsample_size: int | None = None  # None: min over the whole target ensemble
    discrete_critic_ensemble_size: int = 1
    discrete_critic_hidden_dims: tuple[int, ...] = (256, 256)
    discrete_critic_trains_encoder: bool = True
    gripper_epsilon: float = 0.0
    grasp_penalty: float = -0.02
    # ---- SAC
    discount: float = 0.97
    n_step: int = 1  # n-step returns: the replay buffers sum up to n rewards of an episode before bootstrapping
    tau: float = 0.005
    temperature_init: float = 0.01
    temperature_parametrization: str = "softplus"  # "softplus" (reference) or "log"
    target_entropy: float | None = None  # None: -action_dim / 2 (continuous dims only)
    backup_entropy: bool = False
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    discrete_critic_lr: float = 3e-4
    grad_clip_norm: float | None = None
    utd_ratio: int = 2  # critic steps per actor step (HIL-SERL reference 2; the user's SO-101 runs use 20)
    # bf16 matrix products in the updates; weights, optimizer state and losses stay float32. "auto": on where the
    # CPU multiplies bf16 natively (AVX512-BF16 or AMX: 1.6-1.9x the updates/s), off elsewhere (see
    # hilserl.agents.precision). true / false force it. Acting is always float32.
    mixed_precision: bool | str = "auto"

    def __post_init__(self):
        for name in ("cameras", "image_size", "conv_channels", "conv_strides", "hidden_dims",
                     "discrete_critic_hidden_dims"):
            setattr(self, name, tuple(getattr(self, name)))
        errors = []

        def check(ok: bool, name: str, msg: str):
            if not ok:
                errors.append(f"{name}: {msg} (got {getattr(self, name)!r})")

        check(self.state_dim >= 0, "state_dim", "must be >= 0")
        check(self.action_dim >= 1, "action_dim", "must be >= 1 (continuous dims, gripper excluded)")
        check(self.num_gripper_actions >= 2, "num_gripper_actions", "must be >= 2")
        check(len(self.image_size) == 2 and all(s >= 8 for s in self.image_size), "image_size", "must be (H, W) >= 8")
        check(self.environment_state_dim >= 0, "environment_state_dim", "must be >= 0")
        check(self.state_dim > 0 or len(self.cameras) > 0 or self.environment_state_dim > 0, "state_dim",
              "the observation is empty: give state_dim > 0, cameras or environment_state_dim")
        check(len(set(self.cameras)) == len(self.cameras), "cameras", "must be unique")
        check(self.encoder in ENCODERS, "encoder", f"must be one of {ENCODERS}")
        check(self.backbone_dtype in ("auto", "float32", "bfloat16"), "backbone_dtype",
              "must be 'auto', 'float32' or 'bfloat16'")
        check(isinstance(self.mixed_precision, bool) or self.mixed_precision == "auto", "mixed_precision",
              "must be true, false or 'auto'")
        check(not (self.cached_features and self.encoder == "conv"), "cached_features",
              "needs a frozen backbone (encoder 'resnet10' or 'efficientnet_lite0'), not 'conv'")
        check(self.num_cached_shifts >= 1, "num_cached_shifts", "must be >= 1")
        check(not self.backbone_trim_head or self.encoder == "efficientnet_lite0", "backbone_trim_head",
              "only applies to encoder 'efficientnet_lite0'")
        check(self.augmentation_pad >= 0, "augmentation_pad", "must be >= 0")
        for name in ("image_feature_dim", "state_feature_dim", "num_spatial_features"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(0.0 <= self.head_dropout < 1.0, "head_dropout", "must be in [0, 1)")
        check(len(self.conv_channels) == len(self.conv_strides) and len(self.conv_channels) > 0, "conv_channels",
              "must be non-empty and as long as conv_strides")
        check(len(self.hidden_dims) > 0 and all(h >= 1 for h in self.hidden_dims), "hidden_dims",
              "must be a non-empty list of positive widths")
        check(len(self.discrete_critic_hidden_dims) > 0, "discrete_critic_hidden_dims", "must be non-empty")
        check(self.activation in ("tanh", "relu", "gelu", "silu", "elu"), "activation",
              "must be tanh, relu, gelu, silu or elu")
        check(0 < self.std_min < self.std_max, "std_min", "must satisfy 0 < std_min < std_max")
        check(self.critic_trunk_dim is None or self.critic_trunk_dim >= 1, "critic_trunk_dim", "must be null or >= 1")
        check(self.critic_ensemble_size >= 1, "critic_ensemble_size", "must be >= 1")
        check(self.critic_subsample_size is None or 1 <= self.critic_subsample_size <= self.critic_ensemble_size,
              "critic_subsample_size", "must be None or in [1, critic_ensemble_size]")
        check(self.discrete_critic_ensemble_size >= 1, "discrete_critic_ensemble_size", "must be >= 1")
        check(0.0 <= self.gripper_epsilon <= 1.0, "gripper_epsilon", "must be in [0, 1]")
        check(0.0 <= self.discount <= 1.0, "discount", "must be in [0, 1]")
        check(self.n_step >= 1, "n_step", "must be >= 1")
        check(0.0 < self.tau <= 1.0, "tau", "must be in (0, 1]")
        check(self.temperature_init > 0, "temperature_init", "must be > 0")
        check(self.temperature_parametrization in ("softplus", "log"), "temperature_parametrization",
              "must be 'softplus' or 'log'")
        for name in ("actor_lr", "critic_lr", "temperature_lr", "discrete_critic_lr"):
            check(getattr(self, name) > 0, name, "must be > 0")
        check(self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm", "must be None or > 0")
        check(self.utd_ratio >= 1, "utd_ratio", "must be >= 1")
        if errors:
            raise ValueError("invalid SACConfig:\n  " + "\n  ".join(errors))

    @property
    def resolved_target_entropy(self) -> float:
        return -self.action_dim / 2.0 if self.target_entropy is None else float(self.target_entropy)

    @property
    def full_action_dim(self) -> int:
        """Width of the action vector in batches and from ``select_action``."""
        return self.action_dim + (1 if self.discrete_gripper else 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SACConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SACConfig field(s): {unknown}")
        return cls(**d)


# ============================================================================================= losses
def td_target(rewards: Tensor, terminals: Tensor, next_q: Tensor, discount: float | Tensor,
              next_log_prob: Tensor | None = None, temperature: Tensor | float = 0.0) -> Tensor:
    """r + discount * (1 - terminal) * (min_e Q_target(s', a') [- alpha * log pi(a'|s')]).

    next_q: [E, B] target-critic values (already subsampled); next_log_prob given only with backup_entropy;
    discount: a number, or [B] per row (n-step returns).
    """
    v = next_q.min(dim=0).values
    if next_log_prob is not None:
        v = v - temperature * next_log_prob
    return rewards + discount * (1.0 - terminals) * v


def critic_loss(q: Tensor, target: Tensor) -> Tensor:
    """MSE, averaged over ensemble members and batch. q [E, B], target [B]."""
    return (q - target.unsqueeze(0)).pow(2).mean()


def actor_loss(log_prob: Tensor, q: Tensor, temperature: Tensor | float) -> Tensor:
    """E[alpha * log pi(a|s) - mean_e Q_e(s, a)], a ~ pi (reparameterised)."""
    return (temperature * log_prob - q.mean(dim=0)).mean()


def temperature_loss(temperature: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """alpha * (entropy - target): descending it raises alpha when entropy < target, lowers it when above."""
    entropy = -log_prob.detach().mean()
    return temperature * (entropy - target_entropy)


def double_dqn_target(rewards: Tensor, terminals: Tensor, next_q_online: Tensor, next_q_target: Tensor,
                      discount: float | Tensor) -> Tensor:
    """Double DQN: a* = argmax_a mean_e Q_online(s', a); value = min_e Q_target(s', a*).
    next_q_* : [E, B, num_actions]; rewards already include any grasp penalty."""
    best = next_q_online.mean(dim=0).argmax(dim=-1)  # [B]
    index = best.view(1, -1, 1).expand(next_q_target.shape[0], -1, 1)
    value = next_q_target.gather(-1, index).squeeze(-1).min(dim=0).values
    return rewards + discount * (1.0 - terminals) * value


def grasp_penalty(gripper_closed: Tensor | np.ndarray, command: Tensor | np.ndarray, penalty: float = -0.02):
    """Per-transition grasp penalty for a buffer/env to store as ``gripper_penalty``: ``penalty`` where the
    command changes the gripper state (close while open, open while closed), else 0."""
    closed = gripper_closed > 0.5
    changes = ((command == GRIPPER_CLOSE) & ~closed) | ((command == GRIPPER_OPEN) & closed)
    return changes * penalty


def _inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


# ============================================================================================= agent
class SACAgent(nn.Module):
    def __init__(self, config: SACConfig, *, _load_backbone_weights: bool = True):
        super().__init__()
        self.config = cfg = config
        backbone = None
        if cfg.cameras and cfg.encoder != "conv":
            backbone = build_backbone(cfg.encoder, cfg.backbone_weights, cfg.backbone_dtype,
                                      trim_head=cfg.backbone_trim_head, load_weights=_load_backbone_weights)
        self.encoder = ObservationEncoder(
            cfg.state_dim, cfg.cameras, cfg.image_size, cfg.encoder, backbone, cfg.environment_state_dim,
            cfg.image_feature_dim, cfg.state_feature_dim, cfg.num_spatial_features, cfg.head_dropout,
            cfg.conv_channels, cfg.conv_strides)
        d = self.encoder.out_dim
        self.actor = TanhGaussianActor(d, cfg.action_dim, cfg.hidden_dims, cfg.activation, cfg.std_min, cfg.std_max)
        self.critic = CriticEnsemble(d, cfg.action_dim, cfg.critic_ensemble_size, cfg.hidden_dims, cfg.activation,
                                     cfg.critic_trunk_dim)
        self.critic_target = _frozen_copy(self.critic)
        self.discrete_critic = self.discrete_critic_target = None
        if cfg.discrete_gripper:
            self.discrete_critic = DiscreteCritic(d, cfg.num_gripper_actions, cfg.discrete_critic_ensemble_size,
                                                  cfg.discrete_critic_hidden_dims, cfg.activation)
            self.discrete_critic_target = _frozen_copy(self.discrete_critic)
        init = cfg.temperature_init
        raw = _inverse_softplus(init) if cfg.temperature_parametrization == "softplus" else math.log(init)
        self.temperature_param = nn.Parameter(torch.tensor(raw, dtype=torch.float32))
        self.target_entropy = cfg.resolved_target_entropy
        self.num_critic_updates = 0
        self.num_actor_updates = 0

        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._augment_scratch: dict[str, dict[str, Tensor]] = {"obs": {}, "next_obs": {}}
        self._optim_param_names: dict[str, list[str]] = {}
        self._add_optimizer("critic", ["encoder.", "critic."], cfg.critic_lr)
        self._add_optimizer("actor", ["actor."], cfg.actor_lr)
        self._add_optimizer("temperature", ["temperature_param"], cfg.temperature_lr)
        if cfg.discrete_gripper:
            self._add_optimizer("discrete_critic", ["discrete_critic."], cfg.discrete_critic_lr)

    def _add_optimizer(self, name: str, prefixes: list[str], lr: float):
        named = [(n, p) for n, p in self.named_parameters()
                 if p.requires_grad and any(n.startswith(pre) for pre in prefixes)]
        self._optim_param_names[name] = [n for n, _ in named]
        self.optimizers[name] = torch.optim.Adam([p for _, p in named], lr=lr, **_fast_adam_kwargs())

    # ---------------------------------------------------------------------------------------- properties
    @property
    def temperature(self) -> Tensor:
        if self.config.temperature_parametrization == "softplus":
            return F.softplus(self.temperature_param)
        return self.temperature_param.exp()

    @property
    def device(self) -> torch.device:
        return self.temperature_param.device

    # ---------------------------------------------------------------------------------------- batch preparation
    def prepare_batch(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Move to device, augment pixels (obs and next_obs independently), run the frozen backbone once for all
        images. Returns the inputs every loss needs; nothing here is trained."""
        cfg, dev = self.config, self.device
        obs = {k: v.to(dev, non_blocking=True) for k, v in batch["observations"].items()}
        next_obs = {k: v.to(dev, non_blocking=True) for k, v in batch["next_observations"].items()}
        if cfg.augmentation_pad > 0 and cfg.cameras:
            # shifted images go into memory reused across batches: a prepared batch is consumed (backbone or
            # critic step) before the next one is prepared
            obs = augment_observations(obs, cfg.augmentation_pad, generator, self._augment_scratch["obs"])
            next_obs = augment_observations(next_obs, cfg.augmentation_pad, generator,
                                            self._augment_scratch["next_obs"])
        pre_obs, pre_next = self.encoder.backbone_features(obs, next_obs, generator=generator)
        actions = batch["actions"].to(dev).float()
        out = {
            "obs": pre_obs,
            "next_obs": pre_next,
            "actions": actions[:, : cfg.action_dim],
            "rewards": batch["rewards"].to(dev).float().view(-1),
            "terminals": batch["terminals"].to(dev).float().view(-1),
            "discounts": (batch["discounts"].to(dev).float().view(-1) if "discounts" in batch else cfg.discount),
        }
        if cfg.discrete_gripper:
            out["gripper_actions"] = actions[:, cfg.action_dim].round().long()
            penalty = torch.zeros_like(out["rewards"])
            if "gripper_penalty" in batch:
                penalty = batch["gripper_penalty"].to(dev).float().view(-1)
            elif "gripper_state_changed" in batch:
                penalty = batch["gripper_state_changed"].to(dev).float().view(-1) * cfg.grasp_penalty
            out["gripper_penalty"] = penalty
        return out

    # ---------------------------------------------------------------------------------------- critic step
    def critic_step(self, prep: dict) -> tuple[dict[str, float], Tensor]:
        """One gradient step on the critic ensemble (+ trainable encoder) and the discrete critic, then the soft
        target update. Returns metrics and the (detached) observation embedding for the actor step."""
        with self._precision():
            return self._critic_step(prep)

    def _critic_step(self, prep: dict) -> tuple[dict[str, float], Tensor]:
        cfg = self.config
        obs_emb = self.encoder(prep["obs"])
        with torch.no_grad():
            next_emb = self.encoder(prep["next_obs"], dropout=False)  # deterministic targets
            next_actions, next_log_prob = self.actor(next_emb)
            next_q = self.critic_target(next_emb, next_actions)
            if cfg.critic_subsample_size is not None and cfg.critic_subsample_size < cfg.critic_ensemble_size:
                idx = torch.randperm(cfg.critic_ensemble_size, device=next_q.device)[: cfg.critic_subsample_size]
                next_q = next_q[idx]
            target = td_target(prep["rewards"], prep["terminals"], next_q, prep["discounts"],
                               next_log_prob if cfg.backup_entropy else None, self.temperature.detach())
        q = self.critic(obs_emb, prep["actions"])
        loss = critic_loss(q, target)
        metrics = {"critic_loss": loss.item(), "q_mean": q.mean().item(), "td_target_mean": target.mean().item()}
        total = loss
        names = ["critic"]
        if cfg.discrete_gripper:
            d_loss = self._discrete_critic_loss(prep, obs_emb, next_emb, metrics)
            total = total + d_loss
            names.append("discrete_critic")
        self._step(names, total)
        soft_update(self.critic_target, self.critic, cfg.tau)
        if cfg.discrete_gripper:
            soft_update(self.discrete_critic_target, self.discrete_critic, cfg.tau)
        self.num_critic_updates += 1
        return metrics, obs_emb.detach()

    def _discrete_critic_loss(self, prep: dict, obs_emb: Tensor, next_emb: Tensor, metrics: dict) -> Tensor:
        cfg = self.config
        features = obs_emb if cfg.discrete_critic_trains_encoder else obs_emb.detach()
        q_all = self.discrete_critic(features)  # [E, B, 3]
        index = prep["gripper_actions"].view(1, -1, 1).expand(q_all.shape[0], -1, 1)
        q = q_all.gather(-1, index).squeeze(-1)
        with torch.no_grad():
            target = double_dqn_target(prep["rewards"] + prep["gripper_penalty"], prep["terminals"],
                                       self.discrete_critic(next_emb), self.discrete_critic_target(next_emb),
                                       prep["discounts"])
        loss = critic_loss(q, target)
        metrics["discrete_critic_loss"] = loss.item()
        metrics["discrete_q_mean"] = q.mean().item()
        return loss

    # ---------------------------------------------------------------------------------------- actor step
    def actor_step(self, obs_emb: Tensor) -> dict[str, float]:
        """One step on the actor and one on the temperature, from a detached observation embedding."""
        with self._precision():
            return self._actor_step(obs_emb.detach())

    def _actor_step(self, obs_emb: Tensor) -> dict[str, float]:
        actions, log_prob = self.actor(obs_emb)
        q = self.critic(obs_emb, actions)
        loss = actor_loss(log_prob, q, self.temperature.detach())
        self._step(["actor"], loss)
        t_loss = temperature_loss(self.temperature, log_prob, self.target_entropy)
        self._step(["temperature"], t_loss)
        self.num_actor_updates += 1
        return {"actor_loss": loss.item(), "temperature_loss": t_loss.item(),
                "temperature": self.temperature.item(), "entropy": -log_prob.mean().item()}

    def _precision(self):
        """bf16 autocast for one optimizer step when ``mixed_precision``, else nothing. One context per step, never
        one around several: autocast caches its bf16 copy of every trainable weight until the context exits, so a
        context spanning an optimizer step would run the next forward with the weights from before that step."""
        if self.mixed_precision_active:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def mixed_precision_active(self) -> bool:
        """Whether the updates run their matrix products in bf16 (``mixed_precision`` resolved for this device)."""
        mode = self.config.mixed_precision
        return native_bf16(self.device.type) if mode == "auto" else bool(mode)

    def precision_summary(self) -> str:
        """One line for the learner's log: what runs in which precision, and why."""
        cfg = self.config
        why = f"mixed_precision={json.dumps(cfg.mixed_precision)}"
        if cfg.mixed_precision == "auto":
            why += f", native bf16 on this {self.device.type.upper()}: {cpu_bf16_name() if self.device.type == 'cpu' else 'not used'}"
        text = f"updates: {'bf16 mixed precision' if self.mixed_precision_active else 'float32'} ({why})"
        backbone = self.encoder.backbone
        if backbone is not None:
            text += f"; frozen {cfg.encoder}: {'bf16' if backbone.compute_dtype == torch.bfloat16 else 'float32'}"
        return text

    def _step(self, names: list[str], loss: Tensor) -> None:
        params = [p for n in names for g in self.optimizers[n].param_groups for p in g["params"]]
        for n in names:
            self.optimizers[n].zero_grad(set_to_none=True)
        loss.backward(inputs=params)  # only these parameters get gradients (e.g. not the critic in the actor loss)
        if self.config.grad_clip_norm is not None:
            for n in names:
                nn.utils.clip_grad_norm_(
                    [p for g in self.optimizers[n].param_groups for p in g["params"]], self.config.grad_clip_norm)
        for n in names:
            self.optimizers[n].step()

    # ---------------------------------------------------------------------------------------- public updates
    def update_critic(self, batch: dict) -> dict[str, float]:
        return self.critic_step(self.prepare_batch(batch))[0]

    def update_actor(self, batch: dict) -> dict[str, float]:
        prep = self.prepare_batch(batch)
        with torch.no_grad(), self._precision():
            obs_emb = self.encoder(prep["obs"])
        return self.actor_step(obs_emb)

    def update(self, batches: dict | list[dict]) -> dict[str, float]:
        """The UTD loop: one critic step per batch, then actor + temperature on the last batch (reusing its
        embedding). Pass ``config.utd_ratio`` batches; a single dict is UTD 1."""
        if isinstance(batches, dict):
            batches = [batches]
        self.train()
        for batch in batches[:-1]:
            self.update_critic(batch)
        metrics, obs_emb = self.critic_step(self.prepare_batch(batches[-1]))
        metrics.update(self.actor_step(obs_emb))
        return metrics

    # ---------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def select_action(self, observation: dict, deterministic: bool = False) -> np.ndarray:
        """Observation dict (numpy or torch; ``state`` [S] or [B, S], ``pixels.<cam>`` uint8 [3, H, W] or
        [B, 3, H, W]) -> action float32 [A] or [B, A]: continuous dims in [-1, 1], then (discrete mode) the gripper
        command index as a float (greedy if deterministic, else epsilon-greedy with ``gripper_epsilon``)."""
        cfg = self.config
        obs, batched = {}, True
        for k, v in observation.items():
            t = torch.as_tensor(v, device=self.device)
            if k == "state" and t.dim() == 1:
                batched = False
            obs[k] = t
        if not batched:
            obs = {k: v.unsqueeze(0) for k, v in obs.items()}
        obs = {k: (v if k.startswith(IMAGE_PREFIX) or k.startswith(FEATURES) else v.float()) for k, v in obs.items()}
        was_training = self.training
        self.eval()
        try:
            emb = self.encoder.encode(obs)
            action, _ = self.actor(emb, deterministic=deterministic)
            if cfg.discrete_gripper:
                gripper = self.discrete_critic(emb).mean(0).argmax(-1)
                if not deterministic and cfg.gripper_epsilon > 0:
                    explore = torch.rand(gripper.shape, device=gripper.device) < cfg.gripper_epsilon
                    random_cmd = torch.randint(0, cfg.num_gripper_actions, gripper.shape, device=gripper.device)
                    gripper = torch.where(explore, random_cmd, gripper)
                action = torch.cat([action, gripper.unsqueeze(-1).float()], dim=-1)
        finally:
            self.train(was_training)
        out = action.cpu().numpy().astype(np.float32)
        return out if batched else out[0]

    # ---------------------------------------------------------------------------------------- cached mode
    def precompute_features(self, images: Tensor, generator: torch.Generator | None = None,
                            chunk_size: int = 256) -> Tensor:
        """uint8 [N, 3, H, W] -> float16 [N, K, C, h, w]: backbone maps for K = ``num_cached_shifts`` random shifts
        (up to ``augmentation_pad`` px) per frame. Store per frame; put in batches as ``features.<camera>``."""
        if self.encoder.backbone is None:
            raise ValueError("precompute_features needs a frozen backbone (encoder 'resnet10' or 'efficientnet_lite0')")
        images = torch.as_tensor(images, device=self.device)
        return precompute_features(self.encoder.backbone, images, self.config.num_cached_shifts,
                                   self.config.augmentation_pad, chunk_size, generator)

    # ---------------------------------------------------------------------------------------- save / load
    def save(self, directory: str | os.PathLike, optimizer_directory: str | os.PathLike | None = None) -> None:
        """``model.safetensors`` (all weights, frozen backbone included), ``optimizer.safetensors`` (Adam state as
        ``<optimizer>/<parameter name>/<exp_avg|exp_avg_sq|step>``), ``agent.json`` (config, counters, optimizer
        hyper-parameters). Each file is written to a temporary name and renamed, so a crash never leaves a torn
        file. No pickle anywhere. ``optimizer_directory`` puts the optimizer state elsewhere (a checkpoint keeps it
        with the training state, apart from the model an actor or `hilserl eval` loads)."""
        from safetensors.torch import save_file

        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.state_dict().items()}
        opt_tensors, opt_groups = {}, {}
        for name, opt in self.optimizers.items():
            state = opt.state_dict()
            names = self._optim_param_names[name]
            for idx, per_param in state["state"].items():
                for key, value in per_param.items():
                    opt_tensors[f"{name}/{names[idx]}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
            opt_groups[name] = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
        meta = {
            "format": "hilserl.sac/1",
            "config": self.config.to_dict(),
            "counters": {"num_critic_updates": self.num_critic_updates, "num_actor_updates": self.num_actor_updates},
            "optimizers": opt_groups,
        }
        atomic_write(os.path.join(directory, "model.safetensors"), lambda p: save_file(weights, p))
        opt_dir = os.fspath(optimizer_directory) if optimizer_directory is not None else directory
        os.makedirs(opt_dir, exist_ok=True)
        atomic_write(os.path.join(opt_dir, "optimizer.safetensors"), lambda p: save_file(opt_tensors, p))
        atomic_write_json(os.path.join(directory, "agent.json"), meta)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu",
             optimizer_directory: str | os.PathLike | None = None) -> "SACAgent":
        """Inverse of `save`. Without an optimizer file (a model folder on its own) the optimizers start fresh."""
        from safetensors.torch import load_file

        directory = os.fspath(directory)
        with open(os.path.join(directory, "agent.json")) as f:
            meta = json.load(f)
        agent = cls(SACConfig.from_dict(meta["config"]), _load_backbone_weights=False).to(device)
        agent.load_state_dict(load_file(os.path.join(directory, "model.safetensors"), device=str(device)), strict=True)
        opt_path = os.path.join(os.fspath(optimizer_directory or directory), "optimizer.safetensors")
        opt_tensors = load_file(opt_path, device=str(device)) if os.path.exists(opt_path) else None
        for name, opt in (agent.optimizers.items() if opt_tensors is not None else ()):
            names = agent._optim_param_names[name]
            state = {}
            for idx, pname in enumerate(names):
                prefix = f"{name}/{pname}/"
                entry = {k[len(prefix):]: v for k, v in opt_tensors.items() if k.startswith(prefix)}
                if entry:
                    state[idx] = entry
            groups = [dict({k: tuple(v) if isinstance(v, list) else v for k, v in g.items()},  # JSON lists -> tuples
                           params=list(range(len(names)))) for g in meta["optimizers"][name]]
            opt.load_state_dict({"state": state, "param_groups": groups})
        agent.num_critic_updates = meta["counters"]["num_critic_updates"]
        agent.num_actor_updates = meta["counters"]["num_actor_updates"]
        return agent


# ============================================================================================= helpers
def _frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def _fast_adam_kwargs() -> dict:
    """Fused Adam where this torch supports it (one kernel for all parameters), else foreach."""
    try:
        torch.optim.Adam([nn.Parameter(torch.zeros(1))], fused=True)
        return {"fused": True}
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}



