"""The SAC losses and TD targets as plain functions of tensors (``E``: ensemble members, ``B``: batch rows).
`hilserl.agents.sac.SACAgent` feeds them; nothing here holds state."""

from __future__ import annotations

from torch import Tensor


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


def actor_loss(log_prob: Tensor, q: Tensor, temperature: Tensor | float, reduce: str = "mean") -> Tensor:
    """E[alpha * log pi(a|s) - Q(s, a)], a ~ pi (reparameterised); Q is the mean of the ensemble's E critics
    (q: [E, B]) or, with ``reduce="min"``, their minimum, which also charges the actor for where they disagree."""
    return (temperature * log_prob - ensemble_value(q, reduce)).mean()


def deterministic_actor_loss(q: Tensor, reduce: str = "min") -> Tensor:
    """DrQ-v2's actor loss: -E[Q(s, a)], a = the actor's (noisy, clipped) action; Q is the minimum of the E critics
    (q: [E, B]; DrQ-v2: min(Q1, Q2)) or, with ``reduce="mean"``, their mean."""
    return -ensemble_value(q, reduce).mean()


def ensemble_value(q: Tensor, reduce: str) -> Tensor:
    """[E, B] -> [B]: the ensemble's minimum (``"min"``) or mean (``"mean"``)."""
    return q.min(dim=0).values if reduce == "min" else q.mean(dim=0)


def smoothness_loss(mean_now: Tensor, mean_next: Tensor) -> Tensor:
    """mean |mu(s_t) - mu(s_t+1)| over batch and action dims: the jitter of the deterministic policy between two
    consecutive observations (both arguments [B, A], squashed to [-1, 1])."""
    return (mean_now - mean_next).abs().mean()


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


PRIVILEGED_UNITS_PER_METRE = 100.0  # the privileged targets are metres; the loss compares centimetres


def privileged_loss(prediction: Tensor, target_m: Tensor) -> Tensor:
    """MSE in centimetres between the auxiliary head's prediction [B, P] and the privileged pose [B, P] (metres):
    a 1 cm error everywhere costs 1, on the scale of the critic's squared TD errors."""
    return (prediction.float() - target_m.float() * PRIVILEGED_UNITS_PER_METRE).pow(2).mean()
