"""SAC for HIL-SERL: continuous tanh-Gaussian actor, critic ensemble, optional discrete gripper critic.

``SACAgent``: networks, one critic step, one actor+temperature step, the UTD loop, acting, save/load. Its knobs
(with the reference defaults) are ``SACConfig`` (`hilserl.agents.sac_config`, re-exported here); the losses are plain
functions of tensors in `hilserl.agents.losses`.

Batch format (what a replay buffer hands to ``update``; the observation keys and layouts are `hilserl.obs_format`)::

    observations / next_observations: flat dicts
        "state"              float32 [B, S]
        "pixels.<camera>"    uint8 [B, 3, H, W]          (faithful mode: augmented here, backbone run here)
        "features.<camera>"  float16 [B, K, C, h, w]     (cached mode, see below; or [B, C, h, w] already picked)
        "environment_state"  float32 [B, E]              (optional; with ``privileged_dim`` the target of the
                                                          privileged auxiliary loss, not an input)
        "pixels.<camera>_canonical" / "features.<camera>_canonical"   with ``canonical_view``: the same frame in
                                                          the simulation's nominal look (a training aid, not an input)
    actions          float32 [B, A]; discrete-gripper mode: A = action_dim + 1, the last column is the gripper
                     command index (0 = close, 1 = stay, 2 = open) stored as a float
    rewards          [B]   (n-step batches: the discounted sum of the row's rewards)
    terminals        [B]   1 = true terminal (no bootstrap); time-limit truncations must be 0
    discounts        [B]   optional: the bootstrap's discount per row (n-step returns: discount ** steps taken);
                           without it every row bootstraps with ``discount``
    is_intervention  [B]   (not used by the losses; interventions are data)
    grasp_penalty    [B]   optional, discrete mode: the grasp penalty of each transition, e.g. -0.02 where the
                           gripper command changed the gripper state, else 0 (`hilserl.gripper`). Without it there is
                           no penalty. It enters only the discrete critic's reward, never the continuous critic's.

Design decisions (and why):

* One trainable encoder (heads + proprio projection, + the conv stacks for ``encoder="conv"``) is shared by actor,
  critic and (by default) the discrete critic. It is trained by the critic losses only: the actor sees it detached.
* The TD targets use the ONLINE encoder under ``no_grad`` (DrQ-v2 / LeRobot style) and without dropout, so a
  target does not depend on a dropout draw; only the critic MLPs have target copies. A frozen backbone makes an
  encoder target copy nearly meaningless anyway.
* In the full update the actor reuses the critic step's observation embedding (detached); with
  ``action_smoothness`` also its next-observation embedding (the TD target's) and one dropout-free pass of the
  head. Those embeddings were made with the encoder weights from before the critic's optimizer step, which is
  exactly what the reference JAX code does (all losses of one update are computed from the same parameters). The actor's Q does use the freshly
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
* Canonical view (``canonical_view``, simulation pretraining): ``prepare_batch`` turns a batch of B rows into 2B,
  the randomized frames and then their canonical twins, both bootstrapping from the canonical next frames, so every
  loss of the update sees both views unchanged; the critic step adds the pull of each randomized embedding onto
  its twin's (``canonical_consistency``).
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
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hilserl.fileio import atomic_write, atomic_write_json
from hilserl.obs_format import ENV_STATE, STATE, canonical_camera, feature_key, is_camera_key, pixel_key

from .augment import augment_observations
from .averaging import PolicyAverage
from .encoders import ObservationEncoder, build_backbone, precompute_features
from .losses import (PRIVILEGED_UNITS_PER_METRE, actor_loss, critic_loss, double_dqn_target, privileged_loss,
                     smoothness_loss, td_target, temperature_loss)
from .networks import CriticEnsemble, DiscreteCritic, TanhGaussianActor, soft_update
from .precision import cpu_bf16_name, native_bf16
from .sac_config import SACConfig

__all__ = ["PRIVILEGED_PREFIX", "SACAgent", "SACConfig"]

PRIVILEGED_PREFIX = "privileged_head."  # the auxiliary head's weights: a training aid, not part of the policy


# ============================================================================================= canonical view
def _canonical_views(obs: dict[str, Tensor], cameras) -> dict[str, Tensor]:
    """The observation with each camera's frames (or cached maps) replaced by its canonical view's."""
    out = {k: v for k, v in obs.items() if not is_camera_key(k)}
    for cam in cameras:
        for key in (feature_key, pixel_key):
            if key(canonical_camera(cam)) in obs:
                out[key(cam)] = obs[key(canonical_camera(cam))]
                break
        else:
            raise KeyError(f"policy.canonical_view: the batch has no canonical view of camera {cam!r} (expected "
                           f"{feature_key(canonical_camera(cam))!r} or {pixel_key(canonical_camera(cam))!r}; the "
                           "simulation's env.canonical_view=true gives it)")
    return out


def _paired_with_canonical(prep: dict, canon: dict[str, Tensor], canon_next: dict[str, Tensor]) -> dict:
    """A batch of B rows -> 2B: the randomized frames, then the same transitions seen in the canonical view. Both
    halves bootstrap from the canonical next frames (SVEA: the targets come from the unperturbed view)."""
    b = prep["actions"].shape[0]
    out = dict(prep)
    out["obs"] = {k: torch.cat([prep["obs"][k], canon[k]]) for k in prep["obs"]}
    out["next_obs"] = {k: torch.cat([canon_next[k], canon_next[k]]) for k in canon_next}
    for k in ("actions", "rewards", "terminals", "discounts", "gripper_actions", "grasp_penalty"):
        if isinstance(out.get(k), Tensor):
            out[k] = torch.cat([out[k], out[k]])
    out["canonical_split"] = b
    return out


# ============================================================================================= agent
class SACAgent(nn.Module):
    """SAC, and the actor-critic machinery other agents reuse (`hilserl.agents.drqv2.DrQV2Agent`): the encoder,
    the critic ensemble and its target, the discrete gripper critic, batch preparation, the UTD loop, precision,
    acting and save/load. A subclass replaces only the hooks ``_build_policy``, ``_policy_optimizers``,
    ``_td_target``, ``_actor_step`` and ``_continuous_action`` (and ``FORMAT``, ``CONFIG``)."""

    FORMAT = "hilserl.sac/1"  # agent.json's "format"
    CONFIG = SACConfig

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
            cfg.conv_channels, cfg.conv_strides, cfg.frame_stack)
        d = self.encoder.out_dim
        self._build_policy(d)
        if cfg.asymmetric_critic and cfg.privileged_dim == 0:
            raise ValueError("policy.asymmetric_critic: the critic would read the privileged pose, but there is none "
                             "(privileged_dim 0: the simulation's env.privileged_state=true gives it)")
        self.critic = CriticEnsemble(d, cfg.action_dim, cfg.critic_ensemble_size, cfg.hidden_dims, cfg.activation,
                                     cfg.critic_trunk_dim, cfg.privileged_dim if cfg.asymmetric_critic else 0,
                                     cfg.state_feature_dim)
        self.critic_target = _frozen_copy(self.critic)
        # the privileged auxiliary head: embedding -> the cube's pose; trained with the critic, never acts
        self.privileged_head = nn.Linear(d, cfg.privileged_dim) if cfg.privileged_dim > 0 else None
        self.discrete_critic = self.discrete_critic_target = None
        if cfg.discrete_gripper:
            self.discrete_critic = DiscreteCritic(d, cfg.num_gripper_actions, cfg.discrete_critic_ensemble_size,
                                                  cfg.discrete_critic_hidden_dims, cfg.activation)
            self.discrete_critic_target = _frozen_copy(self.discrete_critic)
        self.num_critic_updates = 0
        self.num_actor_updates = 0
        self._hold_policy = False  # update(actor=False): the policy's losses are computed but nothing is stepped

        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._augment_scratch: dict[str, dict[str, Tensor]] = {"obs": {}, "next_obs": {}}
        self._optim_param_names: dict[str, list[str]] = {}
        self._add_optimizer("critic", ["encoder.", "critic.", PRIVILEGED_PREFIX], cfg.critic_lr)
        for name, prefixes, lr in self._policy_optimizers():
            self._add_optimizer(name, prefixes, lr)
        if cfg.discrete_gripper:
            self._add_optimizer("discrete_critic", ["discrete_critic."], cfg.discrete_critic_lr)
        # last: it copies the acting weights built above
        self.policy_average = PolicyAverage(self, cfg.average_rate) if cfg.average_rate > 0 else None

    def _build_policy(self, in_dim: int) -> None:
        """The policy's own modules: SAC's tanh-Gaussian actor and its learned temperature."""
        cfg = self.config
        self.actor = TanhGaussianActor(in_dim, cfg.action_dim, cfg.hidden_dims, cfg.activation, cfg.std_min,
                                       cfg.std_max)
        init = cfg.temperature_init
        raw = _inverse_softplus(init) if cfg.temperature_parametrization == "softplus" else math.log(init)
        self.temperature_param = nn.Parameter(torch.tensor(raw, dtype=torch.float32))
        self.target_entropy = cfg.resolved_target_entropy

    def _policy_optimizers(self) -> list[tuple[str, list[str], float]]:
        """(optimizer name, parameter prefixes, learning rate) of the policy's own parameters."""
        cfg = self.config
        return [("actor", ["actor."], cfg.actor_lr), ("temperature", ["temperature_param"], cfg.temperature_lr)]

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
        return next(self.critic.parameters()).device

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
        if cfg.canonical_view:
            # the canonical frames go through the backbone in the same call
            pre_obs, pre_next, pre_canon, pre_canon_next = self.encoder.backbone_features(
                obs, next_obs, _canonical_views(obs, cfg.cameras), _canonical_views(next_obs, cfg.cameras),
                generator=generator)
        else:
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
            if "grasp_penalty" in batch:
                penalty = batch["grasp_penalty"].to(dev).float().view(-1)
            out["grasp_penalty"] = penalty
        if cfg.canonical_view:
            out = _paired_with_canonical(out, pre_canon, pre_canon_next)
        return out

    # ---------------------------------------------------------------------------------------- critic step
    def critic_step(self, prep: dict) -> tuple[dict[str, float], dict[str, Tensor]]:
        """One gradient step on the critic ensemble (+ trainable encoder) and the discrete critic, then the soft
        target update. Returns metrics and the (detached) embeddings the actor step reads: ``obs`` (as the critic
        saw it) and, with ``action_smoothness``, ``obs_plain`` and ``next_obs`` (both without dropout, so that two
        consecutive observations differ only in what the camera and the state saw)."""
        metrics, embeddings = self._critic_step_in_precision(prep)
        return metric_floats(metrics), embeddings

    def _critic_step_in_precision(self, prep: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        with self._precision():
            return self._critic_step(prep)

    def _critic_step(self, prep: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        cfg = self.config
        obs_emb = self.encoder(prep["obs"])
        embeddings = {"obs": obs_emb.detach()}
        privileged = self._privileged(prep["obs"])  # None unless the critic is asymmetric
        if privileged is not None:
            embeddings["privileged"] = privileged
        with torch.no_grad():
            next_emb = self.encoder(prep["next_obs"], dropout=False)  # deterministic targets
            if cfg.action_smoothness > 0:
                embeddings["obs_plain"] = self.encoder(prep["obs"], dropout=False)
                embeddings["next_obs"] = next_emb
            target = self._td_target(prep, next_emb)
        q = self.critic(obs_emb, prep["actions"], privileged)
        loss = critic_loss(q, target)
        metrics = {"critic_loss": loss.detach(), "q_mean": q.detach().mean(), "td_target_mean": target.mean()}
        total = loss
        names = ["critic"]
        if "canonical_split" in prep and cfg.canonical_consistency > 0:
            b = prep["canonical_split"]  # rows [:b] randomized frames, [b:] their canonical twins
            consistency = (obs_emb[:b].float() - obs_emb[b:].detach().float()).pow(2).sum(-1).mean()
            total = total + cfg.canonical_consistency * consistency
            metrics["canonical_consistency"] = consistency.detach()
        if self.privileged_head is not None and cfg.privileged_aux_weight > 0:
            aux = privileged_loss(self.privileged_head(obs_emb), prep["obs"][ENV_STATE])
            total = total + cfg.privileged_aux_weight * aux
            metrics["privileged_loss"] = aux.detach()
        if cfg.discrete_gripper:
            d_loss = self._discrete_critic_loss(prep, obs_emb, next_emb, metrics)
            total = total + d_loss
            names.append("discrete_critic")
        self._step(names, total)
        soft_update(self.critic_target, self.critic, cfg.tau)
        if cfg.discrete_gripper:
            soft_update(self.discrete_critic_target, self.discrete_critic, cfg.tau)
        self.num_critic_updates += 1
        return metrics, embeddings

    def _td_target(self, prep: dict, next_emb: Tensor) -> Tensor:
        """SAC's TD target (under no_grad): a' ~ pi(s'), the minimum over the target critics, no entropy term unless
        ``backup_entropy``."""
        next_actions, next_log_prob = self.actor(next_emb)
        next_q = self._target_q(prep, next_emb, next_actions)
        return td_target(prep["rewards"], prep["terminals"], next_q, prep["discounts"],
                         next_log_prob if self.config.backup_entropy else None, self.temperature.detach())

    def _target_q(self, prep: dict, next_emb: Tensor, next_actions: Tensor) -> Tensor:
        """The target critics' Q(s', a') [E, B], or a random ``critic_subsample_size`` of them."""
        cfg = self.config
        next_q = self.critic_target(next_emb, next_actions, self._privileged(prep["next_obs"]))
        if cfg.critic_subsample_size is not None and cfg.critic_subsample_size < cfg.critic_ensemble_size:
            idx = torch.randperm(cfg.critic_ensemble_size, device=next_q.device)[: cfg.critic_subsample_size]
            next_q = next_q[idx]
        return next_q

    def _privileged(self, pre: dict) -> Tensor | None:
        """The asymmetric critic's extra input: the privileged pose in centimetres (None for a plain critic)."""
        if not self.config.asymmetric_critic:
            return None
        return pre[ENV_STATE] * PRIVILEGED_UNITS_PER_METRE

    def _discrete_critic_loss(self, prep: dict, obs_emb: Tensor, next_emb: Tensor, metrics: dict) -> Tensor:
        cfg = self.config
        features = obs_emb if cfg.discrete_critic_trains_encoder else obs_emb.detach()
        q_all = self.discrete_critic(features)  # [E, B, 3]
        index = prep["gripper_actions"].view(1, -1, 1).expand(q_all.shape[0], -1, 1)
        q = q_all.gather(-1, index).squeeze(-1)
        with torch.no_grad():
            target = double_dqn_target(prep["rewards"] + prep["grasp_penalty"], prep["terminals"],
                                       self.discrete_critic(next_emb), self.discrete_critic_target(next_emb),
                                       prep["discounts"])
        loss = critic_loss(q, target)
        metrics["discrete_critic_loss"] = loss.detach()
        metrics["discrete_q_mean"] = q.detach().mean()
        return loss

    # ---------------------------------------------------------------------------------------- actor step
    def actor_step(self, embeddings: dict[str, Tensor] | Tensor) -> dict[str, float]:
        """One step on the actor and one on the temperature, from detached embeddings (``critic_step``'s; a bare
        tensor is the observation embedding alone, without the smoothness term)."""
        if isinstance(embeddings, Tensor):
            embeddings = {"obs": embeddings}
        return metric_floats(self._actor_step_in_precision(embeddings))

    def _actor_step_in_precision(self, embeddings: dict[str, Tensor]) -> dict[str, Tensor]:
        with self._precision():
            return self._actor_step({k: v.detach() for k, v in embeddings.items()})

    def _actor_step(self, emb: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.config
        obs_emb = emb["obs"]
        actions, log_prob = self.actor(obs_emb)
        q = self.critic(obs_emb, actions, emb.get("privileged"))
        loss = actor_loss(log_prob, q, self.temperature.detach(), cfg.actor_q)
        metrics = {}
        if cfg.action_smoothness > 0 and "next_obs" in emb:
            mean_now, _ = self.actor(emb["obs_plain"], deterministic=True)
            mean_next, _ = self.actor(emb["next_obs"], deterministic=True)
            smooth = smoothness_loss(mean_now, mean_next)
            loss = loss + cfg.action_smoothness * smooth
            metrics["policy_smoothness"] = smooth.detach()
        self._step(["actor"], loss)
        t_loss = temperature_loss(self.temperature, log_prob, self.target_entropy)
        self._step(["temperature"], t_loss)
        self.num_actor_updates += not self._hold_policy
        return {"actor_loss": loss.detach(), "temperature_loss": t_loss.detach(),
                "temperature": self.temperature.detach().clone(), "entropy": -log_prob.detach().mean(), **metrics}

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
        if self._hold_policy:  # only the policy's own steps run while it is held (update(actor=False))
            return
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

    def update(self, batches: dict | list[dict], actor: bool = True) -> dict[str, float]:
        """The UTD loop: one critic step per batch, then actor + temperature on the last batch (reusing its
        embedding). Pass ``config.utd_ratio`` batches; a single dict is UTD 1. ``actor=False``: the critic steps
        only (a warm-up): the policy's losses are still computed and reported, but the policy, its running average
        and its counters stay as they are."""
        if isinstance(batches, dict):
            batches = [batches]
        self.train()
        for batch in batches[:-1]:
            self._critic_step_in_precision(self.prepare_batch(batch))
        metrics, embeddings = self._critic_step_in_precision(self.prepare_batch(batches[-1]))
        self._hold_policy = not actor
        try:
            metrics.update(self._actor_step_in_precision(embeddings))
        finally:
            self._hold_policy = False
        if actor and self.policy_average is not None:
            self.policy_average.update()
        return metric_floats(metrics)  # one device-to-host copy per update: a GPU's queue never waits on a metric

    # ---------------------------------------------------------------------------------------- acting
    def act_with_average(self) -> "SACAgent":
        """Put the averaged acting weights in the live ones' place, for a policy loaded to be evaluated or deployed
        (`hilserl.agents.registry.load_policy`), not trained further. No average: unchanged. Returns self."""
        if self.policy_average is not None:
            self.load_state_dict(self.policy_average.weights(), strict=False)
        return self

    @torch.no_grad()
    def select_action(self, observation: dict, deterministic: bool = False) -> np.ndarray:
        """Observation dict (numpy or torch; ``state`` [S] or [B, S], ``pixels.<cam>`` uint8 [3, H, W] or
        [B, 3, H, W]) -> action float32 [A] or [B, A]: continuous dims in [-1, 1], then (discrete mode) the gripper
        command index as a float (greedy if deterministic, else epsilon-greedy with ``gripper_epsilon``)."""
        cfg = self.config
        obs, batched = {}, True
        for k, v in observation.items():
            t = torch.as_tensor(v, device=self.device)
            if k == STATE and t.dim() == 1:
                batched = False
            obs[k] = t
        if not batched:
            obs = {k: v.unsqueeze(0) for k, v in obs.items()}
        obs = {k: (v if is_camera_key(k) else v.float()) for k, v in obs.items()}
        was_training = self.training
        self.eval()
        try:
            emb = self.encoder.encode(obs)
            action = self._continuous_action(emb, deterministic)
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

    def _continuous_action(self, emb: Tensor, deterministic: bool) -> Tensor:
        """The actor's continuous action [B, A] in [-1, 1]: tanh(mean) or a sample of the squashed Gaussian."""
        return self.actor(emb, deterministic=deterministic)[0]

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
            "format": self.FORMAT,
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
        agent = cls(cls.CONFIG.from_dict(meta["config"]), _load_backbone_weights=False).to(device)
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


def _inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


def metric_floats(metrics: dict) -> dict[str, float]:
    """Metrics kept as 0-d tensors during an update -> Python floats, with one device-to-host copy for all of them
    (``.item()`` per metric would wait for the GPU once per metric)."""
    keys = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    values = torch.stack([metrics[k].float() for k in keys]).tolist() if keys else []
    return {**metrics, **dict(zip(keys, values))}
