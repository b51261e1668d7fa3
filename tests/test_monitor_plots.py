"""Plots: running average, resume de-duplication, PNG files from the metrics CSVs."""

import math

import numpy as np
import pytest

from hilserl.monitor.metrics import MetricsLogger
from hilserl.monitor.plots import keep_newest, plot_training, read_csv, running_average

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPISODE_PNGS = {f"{m}_vs_{x}.png" for m in ("success_rate", "intervention_rate", "reward")
                for x in ("episode", "env_step")}


def test_running_average_is_a_trailing_window_mean():
    rng = np.random.default_rng(0)
    v = rng.random(57)
    avg = running_average(v, window=20)
    for i in range(len(v)):
        assert avg[i] == pytest.approx(v[max(0, i - 19):i + 1].mean())
    assert running_average([0, 1, 1, 0], window=2).tolist() == [0.0, 0.5, 1.0, 0.5]
    assert running_average([3.0, 5.0], window=1).tolist() == [3.0, 5.0]
    assert running_average([], window=20).tolist() == []
    with pytest.raises(ValueError):
        running_average([1.0], window=0)


def test_running_average_skips_missing_values():
    avg = running_average([math.nan, 1.0, math.nan, 0.0], window=20)
    assert math.isnan(avg[0]) and avg[1:].tolist() == [1.0, 1.0, 0.5]


def test_keep_newest_drops_rows_a_resume_logged_again():
    rows = [{"episode": float(e), "tag": "old"} for e in range(1, 6)]
    rows += [{"episode": float(e), "tag": "new"} for e in range(4, 8)]  # resumed from a checkpoint at episode 3
    kept = keep_newest(rows, "episode")
    assert [r["episode"] for r in kept] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["tag"] for r in kept] == ["old"] * 3 + ["new"] * 4


def _log_episodes(run_dir, n, evals=False):
    with MetricsLogger(run_dir, tensorboard=False) as log:
        step = 0
        for ep in range(1, n + 1):
            step += 50
            log.log_episode({"episode": ep, "env_step": step, "reward": float(ep % 3), "length": 50,
                             "success": int(ep % 2 == 0), "intervention_rate": 0.5 / ep})
            if evals and ep % 10 == 0:
                log.log_eval({"env_step": step, "success_rate": ep / n, "mean_reward": 1.0, "mean_length": 40,
                              "episodes": 5})


def _assert_pngs(paths, run_dir):
    for p in paths:
        assert p.parent == run_dir / "plots"
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000


def test_plots_with_three_episodes(tmp_path):
    _log_episodes(tmp_path, 3)
    paths = plot_training(tmp_path)
    assert {p.name for p in paths} == EPISODE_PNGS
    _assert_pngs(paths, tmp_path)


def test_plots_with_eval_and_learner(tmp_path):
    _log_episodes(tmp_path, 30, evals=True)
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for i in range(1, 6):
            log.log_learner({"learner_step": 100 * i, "critic_loss": 1.0 / i, "actor_loss": -i, "temperature": 0.01})
    paths = plot_training(tmp_path)
    assert {p.name for p in paths} == EPISODE_PNGS | {"eval_success_rate_vs_env_step.png", "learner.png"}
    _assert_pngs(paths, tmp_path)
    assert len(read_csv(tmp_path / "metrics" / "eval.csv")) == 3


def test_no_episodes_is_not_an_error(tmp_path):
    assert plot_training(tmp_path) == []
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "episodes.csv").write_text("episode,env_step,reward,length,success,intervention_rate\n")
    assert plot_training(tmp_path) == []
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())
