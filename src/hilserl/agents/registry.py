"""``policy.type`` -> the agent: the one place that builds or loads an agent by its type, for the learner, the
actors, checkpoints, `hilserl eval` and ``train.init_policy``. `load_policy` loads a saved policy as it is evaluated
and deployed (the running average of its weights where the run kept one).

Both agents offer the same interface (`hilserl.agents.sac.SACAgent`'s: ``config``, ``encoder``, ``update``,
``select_action``, ``precompute_features``, ``precision_summary``, ``save`` / ``load``, ``state_dict``), so the
callers never ask which one they hold.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .drqv2 import DrQV2Agent
from .sac import SACAgent
from .sac_config import SACConfig

AGENTS: dict[str, type[SACAgent]] = {"sac": SACAgent, "drqv2": DrQV2Agent}


def make_agent(config: SACConfig) -> SACAgent:
    """A new agent of ``config.type`` (``config`` is a SACConfig or a DrQV2Config)."""
    return AGENTS[config.type](config)


def saved_policy_type(model_dir: str | os.PathLike) -> str:
    """The ``policy.type`` of a saved model folder (``agent.json``); folders from before the key are "sac"."""
    meta = json.loads((Path(model_dir) / "agent.json").read_text())
    return meta["config"].get("type", "sac")


def load_agent(model_dir: str | os.PathLike, device: str | torch.device = "cpu",
               optimizer_directory: str | os.PathLike | None = None) -> SACAgent:
    """The agent saved in ``model_dir`` (``model.safetensors`` + ``agent.json``), of whichever type it is."""
    kind = saved_policy_type(model_dir)
    if kind not in AGENTS:
        raise ValueError(f"{model_dir}: agent.json says policy.type {kind!r}; this hilserl knows {list(AGENTS)}")
    return AGENTS[kind].load(model_dir, device, optimizer_directory=optimizer_directory)


def load_policy(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> SACAgent:
    """The policy saved in ``model_dir`` as its run evaluated it and as it is deployed: with ``policy.average_rate``
    the averaged acting weights in the live ones' place (`hilserl.agents.averaging`); for acting, not for training
    on (a resumed run and ``train.init_policy`` load both: the live weights train on, the average goes on)."""
    return load_agent(model_dir, device).act_with_average()
