"""``SACConfig``: every knob of the SAC agent (`hilserl.agents.sac`), with the HIL-SERL reference defaults, and
its validation. A plain dataclass: it round-trips through JSON (``to_dict`` / ``from_dict``) in ``agent.json`` and
is the ``policy`` section of a training config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

ENCODERS = ("efficientnet_lite0", "resnet10", "conv")


POLICY_TYPES = ("sac", "drqv2")  # policy.type: the agent (hilserl.agents.registry)


@dataclass
class SACConfig:
    # settings of the other policy type: the config loader names the type they need (hilserl.config)
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        k: "a DrQ-v2 setting: set policy.type=drqv2 to use it"
        for k in ("noise_std_start", "noise_std_end", "noise_std_steps", "noise_clip")}

    # ---- which agent: "sac" here; "drqv2" is `hilserl.agents.drqv2_config.DrQV2Config` (its own defaults)
    type: str = "sac"
    # ---- shapes
    state_dim: int = 18
    action_dim: int = 4  # continuous dims only (the gripper command is extra in discrete mode)
    discrete_gripper: bool = False
    num_gripper_actions: int = 3
    cameras: tuple[str, ...] = ()
    image_size: tuple[int, int] = (128, 128)
    environment_state_dim: int = 0
    # the simulation's cube pose beside the cameras (env.privileged_state): never an input, only the target of the
    # privileged auxiliary loss below; set from the environment like the other shape fields
    privileged_dim: int = 0
    # ---- encoder
    encoder: str = "efficientnet_lite0"  # "efficientnet_lite0" (shipped ImageNet weights), "resnet10", "conv"
    backbone_weights: str | None = None  # local .safetensors/.pth; None: shipped weights (effnet) / random (resnet)
    backbone_dtype: str = "auto"  # "auto" | "float32" | "bfloat16"
    backbone_trim_head: bool = False  # efficientnet_lite0 only: 320-channel maps before the 1x1 head conv
    cached_features: bool = False
    num_cached_shifts: int = 4
    augmentation_pad: int = 4  # random shift of up to this many pixels (replicate edges); 0 disables
    # the policy reads each camera's last k frames of the episode (the first repeated at its start), oldest first:
    # the backbone runs on every frame, the head takes the k maps side by side (DrQ-v2 stacks 3 frames)
    frame_stack: int = 1
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
    # temporal smoothness of the policy (CAPS, Mysore et al. 2021, "Regularizing Action Policies for Smooth Control
    # with Reinforcement Learning"): actor loss += it * mean |mu(s_t) - mu(s_t+1)| over the continuous dims, mu the
    # squashed mean action, s_t+1 the batch's next observation. An L1 cost in Q units: a dimension the critic does
    # not care about (x and y while lifting) stops moving; one whose Q slope is larger (the descent) still turns.
    action_smoothness: float = 0.0
    actor_q: str = "mean"  # the actor loss reads the critic ensemble's "mean" or its "min" (pessimistic)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    discrete_critic_lr: float = 3e-4
    grad_clip_norm: float | None = None
    utd_ratio: int = 2  # critic steps per actor step (HIL-SERL reference 2; some reported SO-101 runs used 20)
    # evaluate, keep as best model and deploy a running average of the acting weights, updated after every update
    # with this rate (0.002: about the last 500 updates); the live weights still act while training. 0: the live
    # weights everywhere (the reference). hilserl.agents.averaging; measured in docs/learning.md
    average_rate: float = 0.0
    # bf16 matrix products in the updates; weights, optimizer state and losses stay float32. "auto": on where the
    # CPU multiplies bf16 natively (AVX512-BF16 or AMX: 1.6-1.9x the updates/s), off elsewhere (see
    # hilserl.agents.precision). true / false force it. Acting is always float32.
    mixed_precision: bool | str = "auto"
    # privileged auxiliary loss (simulation only, env.privileged_state): the critic step also trains a linear head on
    # the observation embedding to predict the cube's pose (centimetres), with this weight against the critic loss,
    # so that the image heads learn where the cube is whatever the scene looks like (James, Davison & Johns 2017,
    # "Transferring End-to-End Visuomotor Control from Simulation to Real World"). The policy never reads the pose;
    # the head is dropped when a run starts from the policy (train.init_policy). 0: off.
    privileged_aux_weight: float = 0.0
    # asymmetric critic (simulation only, env.privileged_state): the continuous critic also reads the cube's pose,
    # through its own projection, so its values need not wait for the image heads to find the cube in a randomized
    # scene (Pinto, Andrychowicz, Welinder, Zaremba & Abbeel 2018, "Asymmetric Actor Critic for Image-Based Robot
    # Learning"). The actor and the gripper critic, which act, still see only the images and the arm's state. A run
    # that starts from such a policy without the pose builds a fresh critic (train.init_critic=false).
    asymmetric_critic: bool = False
    # the simulation's canonical view (env.canonical_view; set from the environment like the shape fields): each
    # camera also comes as "<camera>_canonical", the same state in the nominal look. Every critic step then trains on
    # the randomized and the canonical frames of its batch (TD targets from the canonical next frames), and pulls each
    # randomized frame's embedding onto its canonical twin's with this weight (squared distance, the canonical side
    # held fixed): RCAN (James et al. 2019) and SVEA (Hansen, Su & Wang 2021), hilserl.sim.canonical.
    canonical_view: bool = False
    canonical_consistency: float = 1.0

    def __post_init__(self):
        for name in ("cameras", "image_size", "conv_channels", "conv_strides", "hidden_dims",
                     "discrete_critic_hidden_dims"):
            setattr(self, name, tuple(getattr(self, name)))
        errors = []

        def check(ok: bool, name: str, msg: str):
            if not ok:
                errors.append(f"{name}: {msg} (got {getattr(self, name)!r})")

        own = type(self).__dataclass_fields__["type"].default
        check(self.type == own, "type", f"must be {own!r} in {type(self).__name__} (policy.type picks the config: "
              f"one of {list(POLICY_TYPES)})")
        check(self.state_dim >= 0, "state_dim", "must be >= 0")
        check(self.action_dim >= 1, "action_dim", "must be >= 1 (continuous dims, gripper excluded)")
        check(self.num_gripper_actions >= 2, "num_gripper_actions", "must be >= 2")
        check(len(self.image_size) == 2 and all(s >= 8 for s in self.image_size), "image_size", "must be (H, W) >= 8")
        check(self.environment_state_dim >= 0, "environment_state_dim", "must be >= 0")
        check(self.state_dim > 0 or len(self.cameras) > 0 or self.environment_state_dim > 0, "state_dim",
              "the observation is empty: give state_dim > 0, cameras or environment_state_dim")
        check(self.privileged_dim >= 0, "privileged_dim", "must be >= 0")
        check(self.privileged_dim == 0 or (len(self.cameras) > 0 and self.environment_state_dim == 0),
              "privileged_dim", "needs cameras, and environment_state_dim 0 (the pose is a target, not an input)")
        check(self.privileged_aux_weight >= 0.0, "privileged_aux_weight", "must be >= 0")
        check(len(set(self.cameras)) == len(self.cameras), "cameras", "must be unique")
        check(not self.canonical_view or len(self.cameras) > 0, "canonical_view", "needs cameras")
        check(self.canonical_consistency >= 0.0, "canonical_consistency", "must be >= 0")
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
        for name in ("image_feature_dim", "state_feature_dim", "num_spatial_features", "frame_stack"):
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
        check(self.actor_q in ("mean", "min"), "actor_q", 'expected "mean" or "min"')
        check(self.action_smoothness >= 0.0, "action_smoothness", "must be >= 0 (it is a cost)")
        check(0.0 < self.tau <= 1.0, "tau", "must be in (0, 1]")
        check(self.temperature_init > 0, "temperature_init", "must be > 0")
        check(self.temperature_parametrization in ("softplus", "log"), "temperature_parametrization",
              "must be 'softplus' or 'log'")
        for name in ("actor_lr", "critic_lr", "temperature_lr", "discrete_critic_lr"):
            check(getattr(self, name) > 0, name, "must be > 0")
        check(self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm", "must be None or > 0")
        check(self.utd_ratio >= 1, "utd_ratio", "must be >= 1")
        check(0.0 <= self.average_rate < 1.0, "average_rate", "must be in [0, 1) (0: no average)")
        if errors:
            raise ValueError(f"invalid {type(self).__name__}:\n  " + "\n  ".join(errors))

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
            raise ValueError(f"unknown {cls.__name__} field(s): {unknown}")
        return cls(**d)
