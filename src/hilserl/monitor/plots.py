"""Training curves as PNG files, drawn from the CSV files that `MetricsLogger` writes.

    paths = plot_training("outputs/train/run1")     # -> run1/plots/*.png

Per-episode curves (success, intervention rate, reward) are drawn twice, against episodes and against environment
steps: the raw per-episode values faint, the running average over the last 20 episodes bold (the HIL-SERL paper's
Figure 4 uses the same 20-episode running average). When ``metrics/eval.csv`` exists the evaluation success rate is
drawn against environment steps, and when ``metrics/learner.csv`` exists the learner's losses and temperature.

A resumed run can log the same episodes twice (it restarts from its last checkpoint); the newest copy is plotted.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

WINDOW = 20  # episodes in the running average

# name stem, CSV column, title, y label, is a 0..1 rate shown in percent
EPISODE_PLOTS = (
    ("success_rate", "success", "Success rate", "success rate (%)", True),
    ("intervention_rate", "intervention_rate", "Human intervention rate", "steps under human control (%)", True),
    ("reward", "reward", "Episode reward", "episode return (sum of rewards)", False),
)
X_AXES = (
    ("episode", "episode", "episode"),
    ("env_step", "env_step", "environment steps (transitions)"),
)

RAW_COLOR = "#1f77b4"
AVG_COLOR = "#d62728"


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics CSV; numeric cells become floats, empty cells NaN, other text stays text."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if k is None:  # more cells than header columns: ignore the surplus
                    continue
                if v is None or v == "":
                    row[k] = math.nan
                    continue
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            rows.append(row)
    return rows


def keep_newest(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Drop rows superseded by a resume: when ``key`` (e.g. episode) stops increasing, the earlier rows with a key at
    or above the new value are replaced by the rows logged after the restart."""
    out: list[dict[str, Any]] = []
    for row in rows:
        k = row.get(key, math.nan)
        if isinstance(k, float) and math.isnan(k):
            out.append(row)
            continue
        while out and isinstance(out[-1].get(key), float) and not math.isnan(out[-1][key]) and out[-1][key] >= k:
            out.pop()
        out.append(row)
    return out


def running_average(values: Sequence[float], window: int = WINDOW) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start), ignoring NaN; NaN where none is finite."""
    if window < 1:
        raise ValueError(f"window: expected >= 1, got {window}")
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, v, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(0, hi - window)
    total, count = csum[hi] - csum[lo], ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    out = []
    for r in rows:
        v = r.get(key, math.nan)
        out.append(v if isinstance(v, float) else math.nan)
    return np.asarray(out, dtype=float)


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _percent_axis(ax) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.set_ylim(-5, 105)
    ax.yaxis.set_major_formatter(PercentFormatter(100))


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_episode_metric(out_dir: Path, rows, stem, column, title, ylabel, is_rate, x_name, x_key, x_label,
                         run_name: str) -> Path | None:
    x_all, y_all = _column(rows, x_key), _column(rows, column)
    avg_all = running_average(y_all)  # over episodes in order, whatever the x axis
    ok = np.isfinite(x_all) & np.isfinite(y_all)
    if not ok.any():
        return None
    x, y, avg = x_all[ok], y_all[ok], avg_all[ok]
    scale = 100.0 if is_rate else 1.0
    plt, fig, ax = _figure()
    n = int(ok.sum())
    faint = 0.3 if n > 50 else 0.5  # few points: a little less faint so they are still seen
    if is_rate and column == "success":
        ax.scatter(x, y * scale, s=10 if n > 50 else 25, color=RAW_COLOR, alpha=faint, linewidths=0,
                   label="per episode (0 or 100%)")
    else:
        ax.plot(x, y * scale, color=RAW_COLOR, alpha=faint, linewidth=0.8, marker="o",
                markersize=2.5 if n > 50 else 4, label="per episode")
    last = avg[-1] * scale
    last_txt = f"{last:.0f}%" if is_rate else f"{last:.2f}"
    ax.plot(x, avg * scale, color=AVG_COLOR, linewidth=2.4,
            label=f"running average, last {WINDOW} episodes (now {last_txt})")
    if is_rate:
        _percent_axis(ax)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x_label)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} vs {x_label.split(' (')[0]} — {run_name} ({n} episodes)")
    ax.legend(loc="best", fontsize=9, framealpha=0.85)
    return _save(plt, fig, out_dir / f"{stem}_vs_{x_name}.png")


def _plot_eval(out_dir: Path, rows, run_name: str) -> Path | None:
    x, y = _column(rows, "env_step"), _column(rows, "success_rate")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    x, y = x[ok], y[ok]
    n_eps = _column(rows, "episodes")[ok]
    plt, fig, ax = _figure()
    ax.plot(x, y * 100.0, color=AVG_COLOR, linewidth=2.2, marker="o", markersize=5, label="evaluation")
    _percent_axis(ax)
    ax.set_xlabel("environment steps (transitions)")
    ax.set_ylabel("evaluation success rate (%)")
    eps = f", {int(n_eps[-1])} episodes each" if np.isfinite(n_eps[-1]) else ""
    ax.set_title(f"Evaluation success rate vs environment steps — {run_name}{eps}")
    ax.legend(loc="best", fontsize=9)
    return _save(plt, fig, out_dir / "eval_success_rate_vs_env_step.png")


def _plot_learner(out_dir: Path, rows, run_name: str) -> Path | None:
    panels = [("critic_loss", "critic loss (TD, MSE)"), ("actor_loss", "actor loss"),
              ("temperature", "temperature α"), ("q_mean", "mean Q value")]
    step = _column(rows, "learner_step")
    panels = [(k, lbl) for k, lbl in panels if np.isfinite(_column(rows, k)).any()]
    if not panels or not np.isfinite(step).any():
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(10, 3.3 * nrows), dpi=110, squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        y = _column(rows, key)
        ok = np.isfinite(step) & np.isfinite(y)
        ax.plot(step[ok], y[ok], color=RAW_COLOR, linewidth=1.2)
        if key == "temperature":
            ax.set_yscale("log" if (y[ok] > 0).all() else "linear")
        ax.set_title(label)
        ax.set_xlabel("learner updates")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Learner — {run_name}")
    return _save(plt, fig, out_dir / "learner.png")


def plot_training(run_dir: str | Path) -> list[Path]:
    """Write PNGs of ``run_dir/metrics/*.csv`` into ``run_dir/plots/``; returns their paths ([] without data)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics"
    episodes = keep_newest(read_csv(metrics / "episodes.csv"), "episode")
    evals = keep_newest(read_csv(metrics / "eval.csv"), "env_step")
    learner = keep_newest(read_csv(metrics / "learner.csv"), "learner_step")
    if not (episodes or evals or learner):
        return []
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = run_dir.resolve().name
    paths: list[Path] = []
    if episodes:
        for stem, column, title, ylabel, is_rate in EPISODE_PLOTS:
            for x_name, x_key, x_label in X_AXES:
                p = _plot_episode_metric(out_dir, episodes, stem, column, title, ylabel, is_rate, x_name, x_key,
                                         x_label, name)
                if p is not None:
                    paths.append(p)
    if evals:
        p = _plot_eval(out_dir, evals, name)
        if p is not None:
            paths.append(p)
    if learner:
        p = _plot_learner(out_dir, learner, name)
        if p is not None:
            paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hilserl.monitor.plots RUN_DIR", file=sys.stderr)
        return 2
    paths = plot_training(args[0])
    if not paths:
        print(f"no metrics to plot in {Path(args[0]) / 'metrics'} (no episodes, evaluations or learner steps yet)")
        return 0
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
