"""The agents for HIL-SERL (SAC, DrQ-v2): networks, encoders (frozen backbones + trainable heads), augmentation."""

from .augment import augment_batch, augment_observations, random_shift, shift_images
from .drqv2 import DrQV2Agent
from .drqv2_config import DrQV2Config
from .encoders import (
    ConvEncoder,
    EfficientNetLite0,
    FrozenBackbone,
    ObservationEncoder,
    ResNet10,
    SpatialLearnedEmbeddings,
    build_backbone,
    efficientnet_lite0_weights_path,
    precompute_features,
)
from .losses import actor_loss, critic_loss, double_dqn_target, td_target, temperature_loss
from .networks import CriticEnsemble, DeterministicActor, DiscreteCritic, TanhGaussianActor, soft_update
from .averaging import PolicyAverage
from .registry import load_agent, load_policy, make_agent
from .sac import SACAgent
from .sac_config import SACConfig

__all__ = [
    "ConvEncoder", "CriticEnsemble", "DeterministicActor", "DiscreteCritic", "DrQV2Agent", "DrQV2Config",
    "EfficientNetLite0", "FrozenBackbone", "ObservationEncoder",
    "ResNet10", "SACAgent", "SACConfig", "SpatialLearnedEmbeddings", "TanhGaussianActor", "actor_loss",
    "augment_batch", "augment_observations", "build_backbone", "critic_loss", "double_dqn_target",
    "efficientnet_lite0_weights_path", "precompute_features", "random_shift", "shift_images",
    "PolicyAverage", "load_agent", "load_policy", "make_agent", "soft_update", "td_target", "temperature_loss",
]
