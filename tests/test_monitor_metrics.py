"""Metrics: CSV files (header, rows, resume), TensorBoard scalars, console lines."""

import csv
import warnings

import numpy as np
import pytest

from hilserl.monitor.metrics import MetricsLogger, format_episode_line, format_learner_line


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _episode(ep, **extra):
    rec = dict(episode=ep, env_step=100 * ep, reward=7.85, length=80, success=1, intervention_rate=0.235)
    rec.update(extra)
    return rec


def test_episode_csv_header_rows_and_missing_keys(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log_episode(_episode(1, cube_x=0.25))
    rec = _episode(2)
    del rec["reward"]  # a missing key is an empty cell
    log.log_episode(rec)
    log.close()
    rows = _rows(tmp_path / "metrics" / "episodes.csv")
    assert rows[0] == ["episode", "env_step", "reward", "length", "success", "intervention_rate", "action_jitter",
                       "action_saturation", "cube_x"]
    assert rows[1] == ["1", "100", "7.85", "80", "1", "0.235", "", "", "0.25"]
    assert rows[2] == ["2", "200", "", "80", "1", "0.235", "", "", ""]
    assert not (tmp_path / "tensorboard").exists()


def test_numpy_and_bool_values_are_plain_numbers(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log_episode(_episode(1, success=np.bool_(True), reward=np.float32(2.5), length=np.int64(30)))
    row = _rows(tmp_path / "metrics" / "episodes.csv")[1]
    assert row[2:5] == ["2.5", "30", "1"]


def test_extra_keys_after_the_header_warn_and_keep_the_csv_rectangular(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log_episode(_episode(1))
    with pytest.warns(UserWarning, match="learner_updates"):
        log.log_episode(_episode(2, learner_updates=17))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per key only
        log.log_episode(_episode(3, learner_updates=18))
    log.close()
    rows = _rows(tmp_path / "metrics" / "episodes.csv")
    assert len(rows) == 4 and all(len(r) == 8 for r in rows)


def test_missing_required_key_fails_loudly(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        with pytest.raises(KeyError, match="env_step"):
            log.log_episode({"episode": 1, "reward": 1.0, "length": 3, "success": 0, "intervention_rate": 0.0})
        with pytest.raises(KeyError, match="episode"):
            log.log_episode({"env_step": 3, "reward": 1.0})
        with pytest.raises(KeyError, match="learner_step"):
            log.log_learner({"critic_loss": 1.0})


def test_reopen_appends_with_the_existing_header(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log_episode(_episode(1))
    log.log_learner({"learner_step": 100, "critic_loss": 3.0})
    log.close()
    # a crash mid-line leaves a partial row; it is cut when the run is reopened
    with open(tmp_path / "metrics" / "episodes.csv", "a") as f:
        f.write("2,200,7.")
    log = MetricsLogger(tmp_path, tensorboard=False)
    rec = _episode(2)
    log.log_episode({k: rec[k] for k in reversed(list(rec))})  # key order does not matter: the header rules
    log.log_learner({"learner_step": 200, "critic_loss": 2.0})
    log.close()
    rows = _rows(tmp_path / "metrics" / "episodes.csv")
    assert rows[0][0] == "episode" and [r[0] for r in rows] == ["episode", "1", "2"]
    assert rows[2] == ["2", "200", "7.85", "80", "1", "0.235", "", ""]
    assert _rows(tmp_path / "metrics" / "learner.csv") == [["learner_step", "critic_loss"], ["100", "3"],
                                                           ["200", "2"]]


def test_rows_are_flushed_before_close(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log_eval({"env_step": 1000, "success_rate": 0.6, "mean_reward": 3.1, "mean_length": 55.0, "episodes": 5})
    rows = _rows(tmp_path / "metrics" / "eval.csv")  # read while the logger is still open
    assert rows == [["env_step", "success_rate", "mean_reward", "mean_length", "episodes"],
                    ["1000", "0.6", "3.1", "55", "5"]]
    log.close()


def test_tensorboard_scalars_can_be_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path)
    log.log_episode(_episode(1, reward=-4.0, cube_x=float("nan")))  # NaN: empty cell, no scalar
    log.log_episode(_episode(2, reward=7.85, cube_x=0.21))
    log.log_learner({"learner_step": 1200, "critic_loss": 3.2051, "temperature": 0.0123, "env_step": 1500})
    log.log_eval({"env_step": 2000, "success_rate": 0.6, "episodes": 5})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    rewards = acc.Scalars("episode/reward")
    assert [(e.step, round(e.value, 4)) for e in rewards] == [(100, -4.0), (200, 7.85)]
    assert [e.step for e in acc.Scalars("episode/cube_x")] == [200]
    crit = acc.Scalars("learner/critic_loss")
    assert crit[0].step == 1200 and crit[0].value == pytest.approx(3.2051, rel=1e-6)
    assert acc.Scalars("eval/success_rate")[0].step == 2000
    assert "learner/learner_step" not in acc.Tags()["scalars"]


def test_console_lines_match_the_users_format():
    assert format_episode_line(_episode(12, env_step=1034)) == \
        "Episode 12 | step 1034 | reward 7.85 | intervention 23.5% | SUCCESS"
    assert format_episode_line(_episode(13, success=0, reward=-4.0, intervention_rate=0.0)).endswith(
        "reward -4.00 | intervention 0.0% | FAIL")
    rec = {"learner_step": 1200, "critic_loss": 3.2051, "actor_loss": -12.8812, "temperature_loss": -0.0012,
           "temperature": 0.0123, "online_size": 1530, "demo_size": 412, "updates_per_s": 9.8, "q_mean": 5.0}
    assert format_learner_line(rec) == \
        "Step 1200: critic=3.2051 actor=-12.8812 temp=-0.0012 α=0.0123 online=1530 demo=412 updates/s=9.8"


def test_echo_receives_console_lines(tmp_path):
    lines = []
    with MetricsLogger(tmp_path, tensorboard=False, echo=lines.append) as log:
        log.log_episode(_episode(1))
        log.log_learner({"learner_step": 5, "critic_loss": 1.0})
    assert lines == ["Episode 1 | step 100 | reward 7.85 | intervention 23.5% | SUCCESS", "Step 5: critic=1.0000"]
