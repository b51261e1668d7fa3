"""Training health checks: read a run's episode and learner records as they are logged and say, while it trains,
when the numbers already show that something is going wrong, and what to do about it.

The config doctor checks settings before a run; these checks watch the run itself. Each one comes from a way real
HIL-SERL runs failed (SO-101 users' reports, the reference implementations' issue trackers):

    check                     sees                                                   severity
    not_finite                a loss, Q or the temperature is NaN/inf                error: training stops
    q_overestimation          mean Q above what the reward can pay                   warning
    q_divergence              mean Q below what the step penalties can cost          warning
    critic_divergence         critic loss above the whole value range squared       warning
    temperature_collapse      alpha under 1/100 of temperature_init: no exploration  warning
    temperature_runaway       alpha over 100x temperature_init (and 0.1): noise      warning
    shaking                   the commanded target swings by > 8 mm per tick          warning
    saturation                the policy's actions sit at the bounds                 warning
    interventions_not_falling the intervention rate is as high as at the start       warning
    no_success                no episode succeeds, not even with interventions       warning
    early_successes           the classifier says success at the earliest step       warning
    position_dependent        success only in one part of the workspace (simulation) warning

A finding is reported when its condition first holds, and again only after it cleared and came back.
``hilserl health RUN`` runs the same checks over a run's metrics files afterwards.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEVERITIES = ("error", "warning")
MARKS = {"error": "✗", "warning": "!"}
LEARNER_VALUES = ("critic_loss", "actor_loss", "q_mean", "td_target_mean", "temperature", "entropy",
                  "discrete_critic_loss", "discrete_q_mean", "temperature_loss")

# How far the commanded end-effector target swings per tick: mean |a_t - a_t-1| (on the [-1, 1] scale) times
# env.action_scale, in metres. Measured in the simulation at action_scale 0.02: an untrained policy 16 mm, the
# state config with the reference settings 4.6-6.2 mm, with target_entropy +0.5 5-7.6 mm, with the reported
# temperature_init 0.2 7.2-9.8 mm; the pixel config 11-16 mm at 0.02 but 4.1-4.6 mm at action_scale 0.01
SHAKING_M = 0.008


def swing_verdict(jitter: float, action_scale: float) -> tuple[float, str]:
    """A policy's jitter (mean |a_t - a_t-1| per tick, -1..1 scale) as metres of commanded swing per tick, and
    the verdict the shaking check would give it ("smooth", or "jerky: ..."): for the eval table and the report."""
    swing = jitter * action_scale
    return swing, "smooth" if swing <= SHAKING_M else "jerky: on the real arm this is visible shaking"


SATURATION_SHARE = 0.5  # share of the policy's action values at the bounds


@dataclass
class HealthFinding:
    check: str
    severity: str  # "error" | "warning"
    at: str  # "learner step 1200" / "episode 80"
    message: str  # what was seen, with the numbers
    advice: str  # what to do

    def line(self) -> str:
        return f"health {MARKS[self.severity]} {self.check} at {self.at}: {self.message}. {self.advice}"


@dataclass
class HealthLimits:
    """What the run's settings allow; everything the checks compare against."""

    max_q: float  # the most a transition can be worth: the success reward (success is terminal)
    min_q: float  # the least: the step penalty paid forever, step_penalty / (1 - discount)
    temperature_init: float
    window: int = 20  # episodes per comparison window
    earliest_success: int | None = None  # reward classifier: the first step it may say success; None: no check
    discount: float = 0.97
    target_entropy: float | None = None
    action_scale: float = 0.02  # metres per tick at a full command (env.action_scale)


def limits_from_config(cfg, window: int | None = None) -> HealthLimits:
    """Limits for a TrainConfig (or its dict form, as saved in a run's config.json)."""
    d = cfg if isinstance(cfg, dict) else asdict(cfg)
    policy, env, reward = d["policy"], d["env"], d["reward"]
    success, step = _reward_shaping(env, reward)
    earliest = (max(1, reward["min_steps"] + reward["consecutive_frames"] - 1) if reward["type"] == "classifier"
                else None)
    gamma = policy["discount"]
    per_step_low = (min(step, 0.0) - 4.0 * reward.get("action_rate_penalty", 0.0)  # (a_t - a_t-1)^2 <= 4
                    - reward.get("action_penalty", 0.0))  # a^2 <= 1
    min_q = per_step_low / (1.0 - gamma) if gamma < 1.0 else per_step_low * 1000.0
    max_q = max(success, step / (1.0 - gamma)) if step > 0 and gamma < 1.0 else success
    window = window or d.get("health", {}).get("window", 20)
    target = policy["target_entropy"] if policy["target_entropy"] is not None else -policy["action_dim"] / 2.0
    return HealthLimits(max_q=max_q, min_q=min_q, temperature_init=policy["temperature_init"], window=window,
                        earliest_success=earliest, discount=gamma, target_entropy=target,
                        action_scale=env.get("action_scale", 0.02))


def _reward_shaping(env: dict, reward: dict) -> tuple[float, float]:
    """(success_reward, step_penalty) from the reward section, their only home (both reward types)."""
    from hilserl.config import ConfigError

    for old in ("success_reward", "step_penalty", "reward_type"):
        if old in env:
            raise ConfigError(f"env.{old}: this config has the old layout; reward shaping is in the reward section "
                              "only (reward.success_reward, reward.step_penalty)")
    missing = [k for k in ("success_reward", "step_penalty") if k not in reward]
    if missing:
        raise ConfigError(f"reward.{missing[0]}: missing from the config; the health checks' Q limits need it")
    return float(reward["success_reward"]), float(reward["step_penalty"])


class HealthMonitor:
    """Feed it every learner record (``observe_learner``), every update's metrics if you can (``observe_update``:
    catches NaN at once) and every online episode record (``observe_episode``); each returns the findings that are
    new. Thread-safe (the remote learner logs episodes from its network threads)."""

    def __init__(self, limits: HealthLimits):
        self.limits = limits
        self.findings: list[HealthFinding] = []
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._episodes: list[dict] = []
        self._q_high = self._q_low = 0
        self._last_learner: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------ learner
    def observe_update(self, metrics: dict[str, Any], learner_step: int) -> list[HealthFinding]:
        with self._lock:
            return self._report([self._not_finite(metrics, learner_step)])

    def observe_learner(self, rec: dict[str, Any]) -> list[HealthFinding]:
        lim, at = self.limits, f"learner step {int(rec.get('learner_step', 0))}"
        found: list[tuple[str, HealthFinding | None]] = []
        with self._lock:
            self._last_learner = dict(rec)
            found.append(self._not_finite(rec, int(rec.get("learner_step", 0))))
            q = _finite_num(rec.get("q_mean"))
            span = lim.max_q - lim.min_q
            if q is not None:
                high = q > lim.max_q + 0.5 * max(abs(lim.max_q), 1.0)
                low = q < lim.min_q - 0.5 * max(abs(lim.min_q), 1.0)
                self._q_high = self._q_high + 1 if high else 0
                self._q_low = self._q_low + 1 if low else 0
                found.append(("q_overestimation", HealthFinding(
                    "q_overestimation", "warning", at,
                    f"the critic's mean Q is {q:.2f}, but no transition can be worth more than {lim.max_q:.2f} (the "
                    "success reward, paid once)",
                    "The value is over-estimated: keep interventions brief and early (long takeovers that carry "
                    "every episode to success inflate Q), check that the reward classifier has no false positives, "
                    "and that backup_entropy is false (hilserl doctor).") if self._q_high >= 2 else None))
                found.append(("q_divergence", HealthFinding(
                    "q_divergence", "warning", at,
                    f"the critic's mean Q is {q:.2f}, below the {lim.min_q:.2f} that the step penalty costs when "
                    "the task is never done",
                    "The critic is diverging downwards: check discount and step_penalty (hilserl doctor) and the "
                    "learning rates; restart from an earlier checkpoint if it keeps falling.")
                    if self._q_low >= 2 else None))
            loss = _finite_num(rec.get("critic_loss"))
            if loss is not None:
                found.append(("critic_divergence", HealthFinding(
                    "critic_divergence", "warning", at,
                    f"critic loss {loss:.3g} is larger than the whole range of values squared ({span ** 2:.3g})",
                    "The critic has diverged: lower critic_lr, set policy.grad_clip_norm (e.g. 10), or restart "
                    "from an earlier checkpoint.") if loss > span ** 2 else None))
            alpha = _finite_num(rec.get("temperature"))
            if alpha is not None:
                t0 = lim.temperature_init
                found.append(("temperature_collapse", HealthFinding(
                    "temperature_collapse", "warning", at,
                    f"the temperature α fell to {alpha:.2g}, under 1/100 of temperature_init ({t0:g}): the policy "
                    "has stopped exploring",
                    "If the policy is not yet good, raise target_entropy towards -action_dim/2 (the reference) or "
                    "give more demonstrations of what it misses.") if alpha < t0 / 100 else None))
                found.append(("temperature_runaway", HealthFinding(
                    "temperature_runaway", "warning", at,
                    f"the temperature α rose to {alpha:.3g} (temperature_init {t0:g}): the actions are mostly "
                    "noise and the arm shakes",
                    "The policy cannot reach its target entropy: check target_entropy (-action_dim/2, not lower "
                    "in magnitude) and temperature_init (0.01) with hilserl doctor.")
                    if alpha > max(0.1, 100 * t0) else None))
            return self._report(found)

    def _not_finite(self, rec: dict, step: int) -> tuple[str, HealthFinding | None]:
        bad = [k for k in LEARNER_VALUES if k in rec and not _finite(rec[k])]
        if not bad:
            return "not_finite", None
        return "not_finite", HealthFinding(
            "not_finite", "error", f"learner step {step}",
            f"{', '.join(f'{k}={rec[k]}' for k in bad)}: the networks' weights are no longer numbers",
            "Training stops here, so no checkpoint with broken weights is written; the buffers on disk are kept. "
            "Resume from the last checkpoint with a lower learning rate or policy.grad_clip_norm, and check the "
            "rewards and observations for NaN.")

    # ------------------------------------------------------------------------------------------------ episodes
    def observe_episode(self, rec: dict[str, Any]) -> list[HealthFinding]:
        with self._lock:
            self._episodes.append({k: _num(rec.get(k)) for k in (
                "episode", "length", "success", "intervention_rate", "action_jitter", "action_saturation",
                "cube_x", "cube_y")})
            n, w = len(self._episodes), self.limits.window
            if n % w:  # the episode checks run once per window of episodes
                return []
            at = f"episode {int(self._episodes[-1]['episode'] or n)}"
            last = self._episodes[-w:]
            found = [self._early_successes(last, at)]
            if n >= 2 * w:  # the first window's policy is still nearly random
                found += [self._shaking(last, at), self._saturation(last, at)]
            if n >= 3 * w:
                found.append(self._interventions_not_falling(self._episodes[:w], last, at))
                found.append(self._no_success(self._episodes[-2 * w:], at))
                found.append(self._position_dependent(self._episodes[-3 * w:], at))
            return self._report(found)

    def _shaking(self, last, at):
        lim = self.limits
        jitter = _mean(e["action_jitter"] for e in last)
        if jitter is None or jitter * lim.action_scale <= SHAKING_M:
            return "shaking", None
        alpha = _finite_num(self._last_learner.get("temperature"))
        entropy = _finite_num(self._last_learner.get("entropy"))
        noisy = (alpha is not None and alpha > 10 * lim.temperature_init) or (
            entropy is not None and lim.target_entropy is not None and entropy > lim.target_entropy + 1.0)
        if noisy or alpha is None:
            advice = ("Usually too much entropy: temperature_init 0.01 and target_entropy -action_dim/2 (hilserl "
                      "doctor); watch α in the learner lines.")
        else:
            advice = (f"The exploration noise is at its target (α {alpha:.3g}, entropy {entropy:.2f} vs target "
                      f"{lim.target_entropy:.2f}), so the policy's own choice swings from frame to frame. Check it "
                      "with `hilserl eval` (it reports the jitter of the deterministic policy); on the real arm a "
                      "smaller env.action_scale makes each swing smaller, and more demonstrations and brief "
                      "corrections give it a steadier target.")
        return "shaking", HealthFinding(
            "shaking", "warning", at,
            f"the policy's commands swing by {1000 * jitter * lim.action_scale:.1f} mm per tick on average "
            f"(action jitter {jitter:.2f} on the -1..1 scale x env.action_scale {lim.action_scale:g} m; a smooth "
            "policy: under 6 mm): the arm shakes", advice)

    def _saturation(self, last, at):
        share = _mean(e["action_saturation"] for e in last)
        if share is None or share <= SATURATION_SHARE:
            return "saturation", None
        return "saturation", HealthFinding(
            "saturation", "warning", at,
            f"{share:.0%} of the policy's action values are at the bounds (|a| > 0.99)",
            "A policy that always pushes full steps: either env.action_scale is too small for the distances "
            "(hilserl doctor checks it) or the actor has diverged (check q_mean and α in the learner lines).")

    def _early_successes(self, last, at):
        first = self.limits.earliest_success
        wins = [e for e in last if (e["success"] or 0) > 0.5 and e["length"] is not None]
        if first is None or len(wins) < 3:
            return "early_successes", None
        early = [e for e in wins if e["length"] <= first + 1]
        if len(early) < 0.5 * len(wins):
            return "early_successes", None
        return "early_successes", HealthFinding(
            "early_successes", "warning", at,
            f"{len(early)} of the last {len(wins)} successes came at step {first + 1} or sooner, the earliest the "
            "reward classifier may say success",
            "Likely classifier false positives (the robot learns to fake them): watch those episodes, record more "
            "negatives like them (hilserl reward record) and retrain, or raise reward.threshold.")

    def _interventions_not_falling(self, first, last, at):
        start, now = _mean(e["intervention_rate"] for e in first), _mean(e["intervention_rate"] for e in last)
        if start is None or now is None or now < 0.2 or now < 0.8 * start:
            return "interventions_not_falling", None
        return "interventions_not_falling", HealthFinding(
            "interventions_not_falling", "warning", at,
            f"the intervention rate is {now:.0%} over the last {len(last)} episodes, against {start:.0%} over the "
            "first ones",
            "The policy is not learning from the corrections: run hilserl doctor (temperature, target entropy, "
            "UTD, reward shape), keep takeovers brief, and check that corrected episodes end in success.")

    def _no_success(self, recent, at):
        if any((e["success"] or 0) > 0.5 for e in recent):
            return "no_success", None
        helped = _mean(e["intervention_rate"] for e in recent) or 0.0
        advice = ("Your corrections do not end in success either: the reward never fires. Check the reward "
                  "classifier (reward.threshold, the camera image, hilserl reward train's held-out numbers)."
                  if helped > 0.1 else
                  "Nobody is intervening: take over now and then and finish the task, so successes reach the "
                  "buffers; check the demo dataset holds successful demonstrations.")
        return "no_success", HealthFinding(
            "no_success", "warning", at, f"none of the last {len(recent)} episodes succeeded "
            f"(interventions: {helped:.0%} of their steps)", advice)

    def _position_dependent(self, recent, at):
        """The reported local optimum: one grasp motion that works for some cube positions only."""
        best = None
        for axis in ("cube_x", "cube_y"):
            pts = [(e[axis], (e["success"] or 0) > 0.5) for e in recent if e[axis] is not None]
            if len(pts) < 2 * self.limits.window:
                continue
            cut = float(np.median([p for p, _ in pts]))
            low = [s for p, s in pts if p <= cut]
            high = [s for p, s in pts if p > cut]
            if min(len(low), len(high)) < self.limits.window // 2:
                continue
            lo, hi = float(np.mean(low)), float(np.mean(high))
            gap = abs(hi - lo)
            if gap >= 0.4 and min(lo, hi) <= 0.3 and (best is None or gap > best[0]):
                best = (gap, axis, cut, lo, hi)
        if best is None:
            return "position_dependent", None
        _, axis, cut, lo, hi = best
        name = axis.split("_")[1]
        return "position_dependent", HealthFinding(
            "position_dependent", "warning", at,
            f"over the last {len(recent)} episodes the policy succeeds {hi:.0%} of the time with the cube at "
            f"{name} > {cut:.3f} m but {lo:.0%} at {name} <= {cut:.3f} m", "A local optimum (one motion that "
            "works where the cube usually is): add demonstrations and brief corrections where it fails, or narrow "
            "the reset range and widen it again as it improves.")

    # ------------------------------------------------------------------------------------------------ common
    def _report(self, found: list[tuple[str, HealthFinding | None]]) -> list[HealthFinding]:
        new = []
        for check, finding in found:
            if finding is None:
                self._active.discard(check)
            elif check not in self._active:
                self._active.add(check)
                self.findings.append(finding)
                new.append(finding)
        return new


class HealthLog:
    """``<run>/health.jsonl``: one JSON object per finding, appended and flushed at once."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "health.jsonl"

    def write(self, finding: HealthFinding) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(asdict(finding)) + "\n")


class TrainingHealthError(RuntimeError):
    """A health check that stops training (NaN weights)."""


class HealthReporter:
    """What a training loop uses: the monitor for ``cfg`` (nothing when ``health.enabled`` is false), each new
    finding printed with ``log`` and appended to ``<run>/health.jsonl``; an error raises TrainingHealthError."""

    def __init__(self, cfg, run_dir: str | Path, log):
        self.monitor = HealthMonitor(limits_from_config(cfg)) if cfg.health.enabled else None
        self.file = HealthLog(run_dir)
        self.log = log

    def update(self, metrics: dict, learner_step: int) -> None:
        if self.monitor is not None:
            self._emit(self.monitor.observe_update(metrics, learner_step))

    def learner(self, rec: dict) -> None:
        if self.monitor is not None:
            self._emit(self.monitor.observe_learner(rec))

    def episode(self, rec: dict) -> None:
        if self.monitor is not None:
            self._emit(self.monitor.observe_episode(rec))

    def _emit(self, findings: list[HealthFinding]) -> None:
        for finding in findings:
            self.log(finding.line())
            self.file.write(finding)
            if finding.severity == "error":
                raise TrainingHealthError(finding.line())


# ---------------------------------------------------------------------------------------------------- offline
def check_run(run_dir: str | Path, window: int | None = None) -> tuple[HealthMonitor, dict[str, int]]:
    """Run every check over a run folder's metrics files (``metrics/learner.csv`` and ``metrics/episodes.csv``),
    in the order they were logged. Returns the monitor (``.findings``) and how many rows each file had."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{run_dir}: no config.json (expected a run folder written by hilserl train or "
                                "hilserl learner)")
    from hilserl.train.config import upgrade_saved_config

    monitor = HealthMonitor(limits_from_config(upgrade_saved_config(json.loads(config_file.read_text())), window))
    counts, stream = {}, []
    for order, (name, observe) in enumerate((("learner", monitor.observe_learner),
                                              ("episodes", monitor.observe_episode))):
        rows = _read_rows(run_dir / "metrics" / f"{name}.csv")
        counts[name] = len(rows)
        stream += [(_num(row.get("env_step")) or 0.0, order, i, observe, row) for i, row in enumerate(rows)]
    for *_, observe, row in sorted(stream, key=lambda item: item[:3]):  # as they were logged, by env step
        observe(row)
    return monitor, counts


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _parse(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite_num(value: Any) -> float | None:
    """The value when it is a finite number (NaN/inf are the not_finite check's, not the range checks')."""
    v = _num(value)
    return v if v is not None and math.isfinite(v) else None


def _finite(value: Any) -> bool:
    v = _num(value)
    return v is None or math.isfinite(v)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


__all__ = ["HealthFinding", "HealthLimits", "HealthLog", "HealthMonitor", "HealthReporter", "TrainingHealthError",
           "check_run", "limits_from_config"]
