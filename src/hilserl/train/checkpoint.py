"""Checkpoints: safetensors + JSON, written atomically, never un-pickled.

Layout of ``<run>/checkpoints/<env_step:07d>/``:

    pretrained_model/   model.safetensors, agent.json (agent config + counters), train_config.json
    training_state/     optimizer.safetensors, state.json (loop counters, buffer sizes), rng.safetensors

A checkpoint is first written to a hidden temporary folder, its files fsynced, and then renamed into place, and
``checkpoints/last`` (a small JSON file, replaced atomically) names the newest one; a crash during a write leaves
the previous checkpoint intact and ``last`` pointing at it. Re-saving a step moves the old folder aside before the
new one is renamed in, so a numbered folder is always complete. The replay buffers live in ``<run>/buffers`` as
memory-mapped files and are flushed right before the checkpoint is written, so the buffer state on disk matches the
counters (`hilserl train`; `hilserl learner` commits them with every acknowledged batch anyway).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from hilserl.agents.averaging import KEY_PREFIX
from hilserl.agents.registry import load_agent
from hilserl.agents.sac import PRIVILEGED_PREFIX, SACAgent
from hilserl.fileio import atomic_write_json, fsync_dir

LAST = "last.json"


def _fsync_tree(root: Path) -> None:
    """Every file and folder under `root` on disk (before the folder is renamed into place)."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            fsync_dir(path)
    fsync_dir(root)


def _complete(path: Path) -> bool:
    return (path / "training_state" / "state.json").exists() and (path / "pretrained_model" / "agent.json").exists()


def save_checkpoint(run_dir: Path, env_step: int, agent: SACAgent, train_config: dict, state: dict,
                    rng: dict[str, np.ndarray | torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"{env_step:07d}"
    tmp = ckpt_root / f".tmp-{env_step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model_dir, state_dir = tmp / "pretrained_model", tmp / "training_state"
    agent.save(model_dir, optimizer_directory=state_dir)
    atomic_write_json(model_dir / "train_config.json", train_config)
    atomic_write_json(state_dir / "state.json", state)
    save_file({k: torch.as_tensor(np.asarray(v)) for k, v in rng.items()}, str(state_dir / "rng.safetensors"))
    _fsync_tree(tmp)
    old = ckpt_root / f".old-{env_step:07d}"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():  # re-saving the same step (e.g. after a resume): move the old one aside, atomically
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(ckpt_root)
    if old.exists():
        shutil.rmtree(old)
    atomic_write_json(ckpt_root / LAST, {"env_step": env_step, "path": final.name})
    return final


def save_best_model(run_dir: Path, agent: SACAgent, train_config: dict, evaluation: dict) -> Path:
    """`<run>/best_model/`: the model (no optimizer state) of the best evaluation so far, replaced atomically."""
    run_dir = Path(run_dir)
    tmp, final = run_dir / ".tmp-best_model", run_dir / "best_model"
    if tmp.exists():
        shutil.rmtree(tmp)
    agent.save(tmp, optimizer_directory=tmp / "unused")
    shutil.rmtree(tmp / "unused")
    atomic_write_json(tmp / "train_config.json", train_config)
    atomic_write_json(tmp / "evaluation.json", evaluation)
    old = run_dir / ".old-best_model"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    fsync_dir(run_dir)
    return final


def last_checkpoint(run_dir: Path) -> Path | None:
    ckpt_root = Path(run_dir) / "checkpoints"
    marker = ckpt_root / LAST
    if marker.exists():
        path = ckpt_root / json.loads(marker.read_text())["path"]
        if _complete(path):
            return path
    done = sorted(p for p in ckpt_root.glob("[0-9]*") if _complete(p))
    return done[-1] if done else None


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[SACAgent, dict, dict[str, np.ndarray]]:
    from safetensors.torch import load_file

    path = Path(path)
    model_dir, state_dir = path / "pretrained_model", path / "training_state"
    if not (model_dir / "agent.json").exists():
        raise FileNotFoundError(f"checkpoint {path}: no pretrained_model/agent.json (is this a checkpoint folder?)")
    agent = load_agent(model_dir, device, optimizer_directory=state_dir)
    state = json.loads((state_dir / "state.json").read_text()) if (state_dir / "state.json").exists() else {}
    rng_file = state_dir / "rng.safetensors"
    rng = {k: v.numpy() for k, v in load_file(str(rng_file)).items()} if rng_file.exists() else {}
    return agent, state, rng


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """Accept a run folder, a checkpoint folder or a pretrained_model folder; return the pretrained_model."""
    p = Path(path)
    if (p / "agent.json").exists():
        return p
    if (p / "pretrained_model" / "agent.json").exists():
        return p / "pretrained_model"
    last = last_checkpoint(p)
    if last is not None:
        return last / "pretrained_model"
    raise FileNotFoundError(f"--checkpoint {p}: expected a run folder, a checkpoint folder or a pretrained_model "
                            "folder containing agent.json")


# the policy fields that decide the networks' shapes and meaning: a policy trained with other values cannot start
# another run
ARCHITECTURE_FIELDS = (
    "state_dim", "action_dim", "discrete_gripper", "num_gripper_actions", "cameras", "image_size",
    "environment_state_dim", "encoder", "backbone_trim_head", "image_feature_dim", "state_feature_dim",
    "num_spatial_features", "conv_channels", "conv_strides", "hidden_dims", "activation", "critic_ensemble_size", "critic_trunk_dim",
    "discrete_critic_ensemble_size", "discrete_critic_hidden_dims", "temperature_parametrization", "frame_stack",
)
_SAVED_BEFORE_THE_FIELD = {"frame_stack": 1}  # what a policy saved before a field existed had


def load_initial_policy(agent: SACAgent, path: str | os.PathLike, with_critic: bool = True) -> Path:
    """Start a new run from a trained policy (``train.init_policy``), e.g. one pretrained in the simulation: copy
    its weights (actor, critics and their targets, encoder heads, SAC's temperature or DrQ-v2's exploration step)
    into ``agent``, and the running average of the acting weights (`_load_with_average`). The optimizers,
    counters and buffers stay fresh. Refuses, naming the fields, a policy whose networks have another shape, and
    one whose frozen backbone differs from the one this config builds (its heads were trained on that backbone's
    features, and actors build their backbone from the config). ``with_critic=False`` (``train.init_critic``) keeps
    the continuous critic and its target as this agent built them (fresh). Returns the model folder it loaded."""
    from safetensors.torch import load_file

    try:
        model_dir = resolve_model_dir(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"train.init_policy: {path} holds no policy (expected a run folder, a checkpoint "
                                "folder or a pretrained_model folder containing agent.json)") from None
    saved = json.loads((model_dir / "agent.json").read_text())["config"]
    ours = agent.config.to_dict()
    if saved.get("type", "sac") != ours["type"]:  # agent.json from before policy.type: a SAC policy
        raise ValueError(f"train.init_policy: the policy in {model_dir} is a policy.type "
                         f"{saved.get('type', 'sac')!r} policy and this run trains policy.type {ours['type']!r}; "
                         f"start from a {ours['type']!r} run or set --policy.type={saved.get('type', 'sac')}")
    saved = {**_SAVED_BEFORE_THE_FIELD, **saved}
    diffs = [f"policy.{k}: {_show(saved.get(k))} there, {_show(ours[k])} here"
             for k in ARCHITECTURE_FIELDS if _show(saved.get(k)) != _show(ours[k])]
    if diffs:
        raise ValueError(f"train.init_policy: the policy in {model_dir} does not fit this run's networks:\n  "
                         + "\n  ".join(diffs))
    critic_reads = [bool(c.get("asymmetric_critic")) and c.get("privileged_dim", 0) for c in (saved, ours)]
    if with_critic and critic_reads[0] != critic_reads[1]:
        raise ValueError(f"train.init_policy: the continuous critic in {model_dir} reads "
                         f"{critic_reads[0] or 'no'} privileged values (policy.asymmetric_critic), this run's "
                         f"{critic_reads[1] or 'none'}: start with a fresh critic (--train.init_critic=false)")
    weights = load_file(str(model_dir / "model.safetensors"), device=str(agent.device))
    current = agent.state_dict()
    backbone = sorted(k for k in current if k.startswith("encoder.backbone."))
    if any(k not in weights or not torch.equal(weights[k], current[k]) for k in backbone):
        raise ValueError(f"train.init_policy: the policy in {model_dir} was trained on another frozen backbone than "
                         f"this config builds (policy.encoder={ours['encoder']!r}, policy.backbone_weights="
                         f"{ours['backbone_weights']!r} here, {saved.get('backbone_weights')!r} there); give "
                         "policy.backbone_weights the weights file it was trained with")
    # the parts that stay as this agent built them: the privileged auxiliary head (a training aid of the run that
    # made it, not part of the policy) and, with init_critic false, the continuous critic and its target
    own = (PRIVILEGED_PREFIX, *(() if with_critic else ("critic.", "critic_target.")))
    weights = {**{k: v for k, v in weights.items() if not k.startswith(own)},
               **{k: v for k, v in current.items() if k.startswith(own)}}
    _load_with_average(agent, weights)
    return model_dir


def _load_with_average(agent: SACAgent, weights: dict[str, torch.Tensor]) -> None:
    """Load a saved policy's weights into a new run's agent. The running average of the acting weights
    (``policy.average_rate``) carries over where both keep one, so the new run's first evaluation scores the policy
    the old run deployed; it starts at the loaded live weights where only the new run keeps one, and is dropped
    where only the old run kept one."""
    ours = agent.policy_average is not None
    theirs = any(k.startswith(KEY_PREFIX) for k in weights)
    if not ours:
        weights = {k: v for k, v in weights.items() if not k.startswith(KEY_PREFIX)}
    missing, unexpected = agent.load_state_dict(weights, strict=False)
    missing = [k for k in missing if theirs or not k.startswith(KEY_PREFIX)]
    if missing or unexpected:
        raise ValueError(f"train.init_policy: the saved policy's weights do not match this run's agent (missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]})")
    if ours and not theirs:
        agent.policy_average.reset()


def _show(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)
