"""DrQ-v2 (Yarats, Fergus, Lazaric and Pinto, 2021, arXiv:2107.09645; public code github.com/facebookresearch/drqv2):
a deterministic actor with scheduled Gaussian exploration noise, on the same machinery as SAC.

``DrQV2Agent`` reuses `hilserl.agents.sac.SACAgent`'s encoder (frozen backbone + trainable heads, cached
features), augmentation, critic ensemble and target, discrete gripper critic, batches (n-step returns come from
the replay buffers), UTD loop, precision, acting and save/load. It replaces the policy and its two losses:

* Actor: a = tanh(mu(s)) (`hilserl.agents.networks.DeterministicActor`); no temperature, no entropy.
* Acting: deterministic -> the mean; exploring -> mean + N(0, std^2), clamped to [-1, 1], std from the linear
  schedule ``noise_std_start`` -> ``noise_std_end`` over ``noise_std_steps`` learner updates
  (`hilserl.agents.exploration`). DrQ-v2 counts environment steps; here the schedule counts the learner's actor
  updates (with ``train.updates_per_env_step`` 1, the environment steps since ``train.training_starts``), so the
  agent knows where it stands without being told, and the count travels in the weights (``exploration.step``) to
  actors, checkpoints and ``train.init_policy``. DrQ-v2's first 2,000 steps of uniform random actions
  (``num_expl_steps``) are left out: the demonstrations and the human fill that role here.
* Critic target: a' = mu(s') + clip(N(0, std^2), +-``noise_clip``) clamped to [-1, 1]; y = r + gamma^n (1 - done)
  min_e Q_target,e(s', a') (the minimum over the target critics, as ``min(target_Q1, target_Q2)``). The critic
  loss is the MSE averaged over the critics (DrQ-v2 sums the two; a constant factor 2 that Adam ignores).
* Actor loss, every update, on the same (detached) embedding as the critic step: a = mu(s) + clipped noise
  (straight-through clamp), loss = -min_e Q_e(s, a) (``actor_q``: "min" as DrQ-v2, or "mean"), plus the optional
  smoothness term on the noiseless means, as in SAC.
* Target critics: Polyak averaging with ``tau`` (DrQ-v2: 0.01) after every critic step (with ``utd_ratio`` 1, once
  per update as in DrQ-v2).
"""

from __future__ import annotations

from torch import Tensor

from .drqv2_config import DrQV2Config
from .exploration import ExplorationSchedule, noisy_action
from .losses import deterministic_actor_loss, smoothness_loss, td_target
from .networks import DeterministicActor
from .sac import SACAgent

__all__ = ["DrQV2Agent", "DrQV2Config"]


class DrQV2Agent(SACAgent):
    FORMAT = "hilserl.drqv2/1"
    CONFIG = DrQV2Config

    def __init__(self, config: DrQV2Config, *, _load_backbone_weights: bool = True):
        if not isinstance(config, DrQV2Config):
            raise TypeError(f"DrQV2Agent needs a DrQV2Config (policy.type 'drqv2'), got {type(config).__name__}")
        super().__init__(config, _load_backbone_weights=_load_backbone_weights)

    # ---------------------------------------------------------------------------------------- the policy
    def _build_policy(self, in_dim: int) -> None:
        cfg = self.config
        self.actor = DeterministicActor(in_dim, cfg.action_dim, cfg.hidden_dims, cfg.activation)
        self.exploration = ExplorationSchedule(cfg.noise_std_start, cfg.noise_std_end, cfg.noise_std_steps)

    def _policy_optimizers(self) -> list[tuple[str, list[str], float]]:
        return [("actor", ["actor."], self.config.actor_lr)]

    @property
    def noise_std(self) -> float:
        """The exploration noise's std at the schedule's current step."""
        return self.exploration.std()

    # ---------------------------------------------------------------------------------------- losses
    def _td_target(self, prep: dict, next_emb: Tensor) -> Tensor:
        """Under no_grad: y = r + discount * (1 - terminal) * min_e Q_target,e(s', mu(s') + clipped noise)."""
        next_actions = noisy_action(self.actor(next_emb), self.noise_std, self.config.noise_clip)
        next_q = self._target_q(prep, next_emb, next_actions)
        return td_target(prep["rewards"], prep["terminals"], next_q, prep["discounts"])

    def _actor_step(self, emb: dict[str, Tensor]) -> dict[str, Tensor | float]:
        cfg = self.config
        std = self.noise_std
        obs_emb = emb["obs"]
        actions = noisy_action(self.actor(obs_emb), std, cfg.noise_clip)
        loss = deterministic_actor_loss(self.critic(obs_emb, actions, emb.get("privileged")), cfg.actor_q)
        metrics = {}
        if cfg.action_smoothness > 0 and "next_obs" in emb:
            smooth = smoothness_loss(self.actor(emb["obs_plain"]), self.actor(emb["next_obs"]))
            loss = loss + cfg.action_smoothness * smooth
            metrics["policy_smoothness"] = smooth.detach()
        self._step(["actor"], loss)
        if not self._hold_policy:  # a critic warm-up (update(actor=False)) holds the schedule too
            self.exploration.advance()
            self.num_actor_updates += 1
        return {"actor_loss": loss.detach(), "noise_std": std, **metrics}

    # ---------------------------------------------------------------------------------------- acting
    def _continuous_action(self, emb: Tensor, deterministic: bool) -> Tensor:
        mean = self.actor(emb)
        return mean if deterministic else noisy_action(mean, self.noise_std)
