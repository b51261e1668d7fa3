"""The benchmarks' measures, so they cannot break unnoticed: bench_learning's on hand-made evaluation records, the
critic action scan on a tiny trained run, and bench_step's profile on a few steps."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench_learning")


def test_steps_to_threshold_and_the_lowest_evaluation_after_it():
    evals = [(500, 0.4), (1000, 0.9), (1500, 0.85), (2000, 1.0), (2500, 0.95)]
    assert bench.first_at(evals, 0.9) == 1000
    assert bench.min_after(evals, 0.9) == 0.85
    assert bench.first_at([(500, 0.5)], 0.9) is None and bench.min_after([(500, 0.5)], 0.9) is None
    assert bench.min_after([(500, 0.95)], 0.9) is None  # nothing after the first 90%


def test_quarters_of_the_cube_start_region():
    centre = (0.25, 0.0)
    rows = [{"cube_x": 0.27, "cube_y": 0.01, "success": 1}, {"cube_x": 0.27, "cube_y": 0.02, "success": 0},
            {"cube_x": 0.26, "cube_y": -0.03, "success": 1}, {"cube_x": 0.22, "cube_y": 0.02, "success": 0},
            {"cube_x": 0.23, "cube_y": -0.01, "success": 1}]
    q = bench.quarter_success(rows, centre)
    assert q["front_left"] == {"success": 0.5, "episodes": 2}
    assert q["front_right"] == {"success": 1.0, "episodes": 1}
    assert q["back_left"] == {"success": 0.0, "episodes": 1}
    assert q["back_right"] == {"success": 1.0, "episodes": 1}


def test_aggregate_over_seeds():
    def run(to90, final, dip, jitter, quarters, wall=10.0):
        return {"env_steps_to_90": to90, "final_success_rate": final, "min_eval_after_90": dip,
                "action_jitter": jitter, "wall_s": wall,
                "quarter_success": {k: {"success": v, "episodes": 5} for k, v in zip(bench.QUARTERS, quarters)}}

    agg = bench.aggregate({"0": run(1000, 1.0, 0.9, 0.3, [1, 1, 1, 1]), "1": run(3000, 0.96, 0.85, 0.4, [1, 0.8, 1, 1]),
                           "2": run(None, 0.7, None, 0.5, [0.5, 1, 1, None])})
    assert agg["median_env_steps_to_90"] == 3000  # a seed that never got there counts as slowest
    assert agg["seeds_reaching_90"] == 2 and agg["min_final_success"] == 0.7
    assert agg["min_eval_after_90"] == 0.85 and agg["mean_action_jitter"] == pytest.approx(0.4)
    assert agg["min_quarter_success"] == 0.5
    none = bench.aggregate({"0": run(None, 0.2, None, 0.5, [0, 0, 0, 0]), "1": run(2000, 0.9, None, 0.5, [1] * 4)})
    assert none["median_env_steps_to_90"] is None  # most seeds never reached 90%


def test_critic_action_scan_on_a_trained_run(tmp_path):
    from hilserl.config import load_config
    from hilserl.train.config import TrainConfig
    from hilserl.train.loop import train

    cfg = load_config(TrainConfig, None, [
        "--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=0",
        "--train.torch_threads=1", "--buffers.on_disk=false", "--train.total_env_steps=60",
        f"--output_dir={tmp_path}", "--run_name=scan"])
    res = train(cfg, log=lambda line: None)
    out = _load("critic_action_scan").scan(res.run_dir, episodes=1)
    assert 0.0 <= out["interior_argmax"] <= 1.0 and out["q_range"] >= 0.0
    assert 0.0 <= out["policy_mean_abs_action"] <= 1.0 and out["steps"] >= 1


def test_bench_step_profiles_every_part_of_a_step():
    out = _load("bench_step").profile(ROOT / "configs" / "sim_grasp.json",
                                      ["--policy.mixed_precision=false", "--policy.backbone_dtype=float32",
                                       "--train.batch_size=32"], steps=6, updates=2)
    for key in ("act_ms", "env_step_ms", "features_ms", "sample_ms", "update_ms", "eval_features_ms"):
        assert out[key] > 0, key
    assert out["train_step_ms"] >= out["features_ms"] + out["update_ms"]
    assert out["eval_features_ms"] < out["features_ms"]  # one unshifted frame instead of K shifted copies
    assert out["precision"].startswith("updates: float32")
