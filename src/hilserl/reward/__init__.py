"""The reward classifier: collect labelled frames (``dataset``), train a frozen-backbone classifier and pick its
threshold (``model``, ``train``), and use it as the reward (``wrapper``). CLI: ``hilserl reward record|train``."""

from hilserl.reward.dataset import DatasetError, DatasetWriter, RewardDataset, load_dataset, split_by_episode
from hilserl.reward.model import ClassifierFileError, ClassifierSpec, RewardClassifier, load_classifier
from hilserl.reward.recording import record_episode
from hilserl.reward.sim_dataset import collect_sim_dataset
from hilserl.reward.train import (ClassifierTrainConfig, ClassifierTrainResult, classification_metrics,
                                  pick_threshold, train_classifier)
from hilserl.reward.wrapper import RewardClassifierWrapper, wrap_with_classifier

__all__ = ["DatasetError", "DatasetWriter", "RewardDataset", "collect_sim_dataset", "load_dataset", "record_episode",
           "split_by_episode", "ClassifierFileError", "ClassifierSpec", "RewardClassifier", "load_classifier",
           "ClassifierTrainConfig", "ClassifierTrainResult", "classification_metrics", "pick_threshold",
           "train_classifier", "RewardClassifierWrapper", "wrap_with_classifier"]
