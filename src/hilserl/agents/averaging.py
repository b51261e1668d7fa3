"""A running average of the acting policy's weights (``policy.average_rate``): the policy a run evaluates, keeps as
its best model and deploys, while the live weights go on collecting the training data and learning.

After every update: avg <- avg + rate * (live - avg), over the weights that act (the encoder's trainable heads, the
actor, the gripper critic; not the frozen backbone, not the continuous critics, not DrQ-v2's exploration step).
With rate 0.002 the average spans about the last 500 updates. This is Polyak-Ruppert averaging (Polyak and
Juditsky, 1992) applied to the policy, as in Nikishin, Izmailov, Athiwaratkun, Podoprikhin, Garipov, Shvechikov,
Vetrov and Wilson, 2018, "Improving Stability in Deep Reinforcement Learning with Weight Averaging"; the critics'
target networks (``tau``) are the same idea for the bootstrap. Why it is on for the pixel policy and what it
measured: docs/learning.md.

The average lives in the agent's weights as buffers named ``policy_average.<weight name with / for .>``, so it is
saved with every checkpoint and best model, restored on resume, and moved with the agent between devices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTING_PREFIXES = ("encoder.", "actor.", "discrete_critic.")
FROZEN_PREFIXES = ("encoder.backbone.",)
KEY_PREFIX = "policy_average."


def acting_weight_names(agent: nn.Module) -> list[str]:
    """The agent's saved floating-point weights that act: trainable encoder parts, actor, gripper critic."""
    return [k for k, v in agent.state_dict().items()
            if k.startswith(ACTING_PREFIXES) and not k.startswith(FROZEN_PREFIXES) and v.is_floating_point()]


class PolicyAverage(nn.Module):
    """The exponential moving average of `agent`'s acting weights, starting at their current values."""

    def __init__(self, agent: nn.Module, rate: float):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"policy.average_rate: must be in (0, 1) to keep an average (got {rate!r})")
        self.rate = float(rate)
        self.names = acting_weight_names(agent)
        live = agent.state_dict()
        for name in self.names:
            self.register_buffer(name.replace(".", "/"), live[name].detach().clone())
        # where each live weight sits (module, attribute): looked up on every update, so a device move (which may
        # replace a buffer object) never leaves the average reading a stale tensor. A plain list: not submodules.
        self._slots = [(agent.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]) for name in self.names]

    def _live(self) -> list[Tensor]:
        return [getattr(module, attr).detach() for module, attr in self._slots]

    def _averaged(self) -> list[Tensor]:
        return [getattr(self, name.replace(".", "/")) for name in self.names]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the live weights (after each learner update)."""
        torch._foreach_lerp_(self._averaged(), self._live(), self.rate)

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average at the live weights (a run that starts from another run's policy)."""
        for avg, live in zip(self._averaged(), self._live()):
            avg.copy_(live)

    def weights(self) -> dict[str, Tensor]:
        """The averaged weights under the live weights' names (a copy: `Actor.load_policy_weights` takes it)."""
        return {name: t.detach().clone() for name, t in zip(self.names, self._averaged())}
