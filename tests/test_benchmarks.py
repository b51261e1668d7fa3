"""The benchmarks' measures, so they cannot break unnoticed: bench_learning's on hand-made evaluation records, the
critic action scan on a tiny trained run, and bench_step's profile on a few steps. And every benchmark's command
line on a tiny budget, as a separate process from the repository root: exit status 0, and its last stdout line is
the JSON report with sane figures."""

import importlib.util
import json
import os
import subprocess
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


def run_benchmark(name: str, *args, timeout: float = 300) -> dict:
    """Run benchmarks/<name>.py as a command; its last stdout line parsed as JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{name} printed nothing"
    return json.loads(lines[-1])


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


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny trained state-config run (60 env steps)."""
    from hilserl.config import load_config
    from hilserl.train.config import TrainConfig
    from hilserl.train.loop import train

    cfg = load_config(TrainConfig, None, [
        "--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=0",
        "--train.torch_threads=1", "--buffers.on_disk=false", "--train.total_env_steps=60",
        f"--output_dir={tmp_path_factory.mktemp('runs')}", "--run_name=scan"])
    return train(cfg, log=lambda line: None).run_dir


def test_critic_action_scan_on_a_trained_run(trained_run):
    out = _load("critic_action_scan").scan(trained_run, episodes=1)
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


# ------------------------------------------------------------------------------------------------ command lines
def test_critic_action_scan_command_line(trained_run):
    out = run_benchmark("critic_action_scan", trained_run, "--episodes", 1)
    assert out["episodes"] == 1 and 1 <= out["steps"] <= 100
    assert 0.0 <= out["interior_argmax"] <= 1.0 and out["q_range"] >= 0.0
    assert 0.0 <= out["policy_mean_abs_action"] <= 1.0
    assert Path(out["model"]).is_relative_to(trained_run)  # the run's last checkpoint


def test_bench_step_command_line():
    out = run_benchmark("bench_step", "--steps", 6, "--updates", 2)
    for profile in ("float32", "default"):
        for key in ("act_ms", "env_step_ms", "features_ms", "sample_ms", "update_ms", "train_step_ms"):
            assert out[profile][key] > 0, (profile, key)
    assert out["float32"]["precision"].startswith("updates: float32") and out["threads"] == 1 and out["cpu"]


def test_bench_sim_command_line():
    out = run_benchmark("bench_sim", "--episodes", 2, "--seconds", 0.3)
    assert out["pixel_steps_per_s"] > 0 and out["state_steps_per_s"] > 0
    assert out["episodes"] == 2 and out["expert_success_rate"] > 0  # the seeded expert grasps at least once
    assert 1 <= out["expert_mean_steps"] <= 100 and out["control_hz"] == 10 and out["physics_substeps"] >= 1
    # the preset: its randomization against the nominal scene, and its canonical view's second render on top
    out = run_benchmark("bench_sim", "--episodes", 1, "--seconds", 0.2, "--rounds", 1, "--config",
                        "configs/sim_pretrain.json")
    assert set(out["rounds"]) == {"nominal", "config", "canonical"}
    assert 0 < out["canonical_rate_vs_nominal"] and 0 < out["pixel_rate_vs_nominal"]


def test_bench_learner_command_line():
    out = run_benchmark("bench_learner", "--smoke")
    assert out["smoke"] is True and out["batch"] == 8
    assert set(out["updates_per_s"]) == {"state", "state_gripper", "state_float32", "state_gripper_float32",
                                         "pixels_conv", "pixels_resnet10_frozen", "pixels_resnet10_cached",
                                         "pixels_default", "pixels_default_2critics"}  # no "_bf16" rows on a CPU
    assert all(rate > 0 for rate in out["updates_per_s"].values()), out["updates_per_s"]
    assert out["sample_ms"] > 0
    frame = 128 * 128 * 3  # one uint8 camera frame: stored once per transition (+ state, action, ...)
    assert frame < out["bytes_per_transition"] < 2 * frame
    assert out["notes"]["cached_bytes_per_frame.resnet10"] == 4 * 512 * 4 * 4 * 2  # K=4 shifts of [512, 4, 4] fp16
    assert out["notes"]["cached_bytes_per_frame.efficientnet_lite0"] == 4 * 320 * 4 * 4 * 2
    assert out["notes"]["device"] == "cpu"
    subset = run_benchmark("bench_learner", "--smoke", "--only", "state", "pixels_default")
    assert set(subset["updates_per_s"]) == {"state", "pixels_default"}


def test_bench_learning_runs_a_drqv2_policy_too():
    out = run_benchmark("bench_learning", "--configs", "state", "--seeds", 0, "--env_steps", 40, "--eval_every", 40,
                        "--eval_episodes", 1, "--final_episodes", 1, "--jobs", 1, "--", "--policy.type=drqv2")
    assert out["state"]["human"]["per_seed"]["0"]["final_episodes"] == 1  # its final policy loaded as DrQ-v2


def test_bench_learning_command_line():
    out = run_benchmark("bench_learning", "--configs", "state", "--seeds", 0, "--env_steps", 60, "--eval_every", 30,
                        "--eval_episodes", 1, "--final_episodes", 2, "--jobs", 1)
    assert out["env_steps"] == 60 and out["jobs"] == 1 and set(out) >= {"state", "cpu"}
    agg, seed = out["state"]["human"]["aggregate"], out["state"]["human"]["per_seed"]["0"]
    assert agg["seeds"] == 1 and agg["min_final_success"] == seed["final_success_rate"]
    assert 0.0 <= seed["final_success_rate"] <= 1.0 and seed["final_episodes"] == 2
    assert sum(q["episodes"] for q in seed["quarter_success"].values()) == 2
    assert seed["env_steps"] >= 60 and seed["learner_updates"] >= 1 and seed["evals"]
    assert all(0.0 <= success <= 1.0 for _, success in seed["evals"])


def test_bench_reward_command_line():
    out = run_benchmark("bench_reward", "--smoke")
    assert out["n_positive"] >= 20 and out["n_negative"] >= 30
    assert out["n_train"] + out["n_test"] == out["n_positive"] + out["n_negative"]
    assert sum(map(sum, out["confusion_matrix"])) == out["n_test"]
    for key in ("accuracy", "precision", "recall", "f1", "threshold"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["rl_env_steps"] == 60 and out["rl_final_episodes"] == 1
    assert 0.0 <= out["rl_success_with_classifier"] <= 1.0 and 0.0 <= out["rl_success_with_ground_truth"] <= 1.0
    roll = out["classifier_policy_rollouts"]
    assert roll["episodes"] == 1 and 0.0 <= roll["frame_disagreement_rate"] <= 1.0
    assert out["rl_train_episodes"]["classifier"] >= 1 and out["rl_train_episodes"]["ground_truth"] >= 1


def test_bench_reward_robust_command_line(tmp_path):
    out = run_benchmark("bench_reward", "--robust", "--smoke", "--errors", tmp_path / "errors")
    assert out["mode"] == "robust" and out["smoke"] is True
    assert set(out["classifiers"]) == {"nominal", "randomized", "randomized_arm"}
    assert out["classifiers"]["nominal"]["hooks"] == [] and "table_texture" in out["classifiers"]["randomized"]["hooks"]
    assert [out["classifiers"][c]["arm_state"] for c in ("nominal", "randomized", "randomized_arm")] == [
        False, False, True]
    assert set(out["eval"]) == {"nominal", "camera_pose", "heldout_a", "heldout_b", "heldout_c"}
    for name, row in out["eval"].items():
        assert row["frames"]["positive"] == 4 and row["frames"]["negative"] == 8, name
        for clf in ("nominal", "randomized", "randomized_arm"):
            m = row[clf]
            assert m["tp"] + m["fn"] == 4 and m["fp"] + m["tn"] == 8, (name, clf)
            assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0
            assert 0 <= m["fp_near_the_bar"] <= min(m["fp"], row["near_the_bar"]), (name, clf)
            assert m["precision_away_from_the_bar"] >= m["precision"] or m["fp_near_the_bar"] == 0, (name, clf)
    assert set(out["target_met_away_from_the_bar"]) == set(out["target_met_on_heldout_looks"])
    assert out["eval"]["heldout_b"]["look"] == "heldout_b" and out["eval"]["camera_pose"]["hooks"] == ["camera_pose"]
    met = out["target_met_on_heldout_looks"]
    assert set(met) == set(out["classifiers"]) and all(isinstance(v, bool) for v in met.values())
    assert out["cpu"] and "avx512_bf16" in out


def test_bench_transport_command_line():
    out = run_benchmark("bench_transport", "--seconds", 2, "--warmup", 0.5)
    assert out["transitions_per_s"] > 0 and out["transitions_per_message"] >= 1
    frame = 128 * 128 * 3  # within an episode a transition carries one frame (its next observation)
    assert frame < out["bytes_per_transition_on_wire"] < 2 * frame
    assert out["weights_bytes"] > 0 and out["weights_pushes"] >= 1  # pushed once per second while streaming
    assert out["weights_push_ms"] > 0 and out["weights_push_ms_p90"] >= out["weights_push_ms"]


# ------------------------------------------------------------------------------------------------ bench_transfer
transfer = _load("bench_transfer")


def test_transfer_ratio_of_steps_to_90():
    assert transfer.ratio_to_90(1000, 4000, 10_000) == {"steps_to_90_ratio": 0.25, "steps_to_90_ratio_below": None,
                                                        "at_most_a_third": True}
    assert transfer.ratio_to_90(2000, 4000, 10_000)["at_most_a_third"] is False
    assert transfer.ratio_to_90(0, 3000, 10_000)["steps_to_90_ratio"] == 0.0  # zero-shot already at 90%
    never = transfer.ratio_to_90(3000, None, 10_000)  # scratch never got there: it needs more than its budget
    assert never["steps_to_90_ratio"] is None and never["steps_to_90_ratio_below"] == 0.3 and never["at_most_a_third"]
    assert transfer.ratio_to_90(4000, None, 10_000)["at_most_a_third"] is False  # 4000 > 10000 / 3: undecided
    assert transfer.ratio_to_90(None, 2000, 10_000)["at_most_a_third"] is False


def test_transfer_zero_shot_pools_the_looks():
    mean, (lo, hi) = transfer.pooled({"a": {"successes": 45, "episodes": 50}, "b": {"successes": 30, "episodes": 50}})
    assert mean == 0.75 and lo < 0.75 < hi and hi - lo < 0.2  # 100 episodes: a narrower interval than either look's


def test_transfer_aggregate_and_targets():
    def seed(zero, fine, scratch, at_most_a_third):
        arm = lambda to90: {"env_steps_to_90": to90, "final_success_rate": 1.0, "min_eval_after_90": None,
                            "action_jitter": 0.2, "wall_s": 5.0, "quarter_success": {}}
        return {"zero_shot_success": zero, "steps_to_90_ratio": fine / scratch if scratch else None,
                "at_most_a_third": at_most_a_third, "pretrain": {"wall_s": 9.0}, "finetune": arm(fine),
                "scratch": arm(scratch)}

    agg = transfer.aggregate({"0": seed(0.8, 500, 3000, True), "1": seed(0.72, 1000, None, True)})
    assert agg["min_zero_shot_success"] == 0.72 and agg["mean_zero_shot_success"] == 0.76
    assert agg["finetune"]["median_env_steps_to_90"] == 750 and agg["scratch"]["seeds_reaching_90"] == 1
    assert agg["max_steps_to_90_ratio"] is None  # one seed's ratio is only a bound
    assert all(agg["targets"].values())
    agg = transfer.aggregate({"0": seed(0.9, 500, 3000, True), "1": seed(0.65, 2000, 3000, False)})
    assert agg["max_steps_to_90_ratio"] == 2000 / 3000 and not any(agg["targets"].values())


def test_bench_transfer_command_line(tmp_path):
    runs = tmp_path / "runs"
    out = run_benchmark("bench_transfer", "--smoke", "--seeds", 0, "--critic_warmup", 5, "--finetune_critic", "fresh",
                        "--keep_runs", runs, timeout=600)
    assert out["smoke"] is True and out["cpu"] and out["heldout_looks"] == ["heldout_a", "heldout_b", "heldout_c"]
    seed = out["per_seed"]["0"]
    for key in ("zero_shot_success", "finetune_steps_to_90", "scratch_steps_to_90", "finetune_final_success",
                "scratch_final_success"):
        assert key in seed, key
    assert set(seed["zero_shot"]) == set(out["heldout_looks"]) and seed["zero_shot_nominal"]["episodes"] == 1
    assert all(r["episodes"] == out["zero_shot_episodes"] for r in seed["zero_shot"].values())
    assert 0.0 <= seed["zero_shot_success"] <= 1.0 and out["aggregate"]["seeds"] == 1
    pretrained = seed["pretrain"]["policy"]
    assert Path(pretrained).is_relative_to(runs / "pretrain") and (Path(pretrained) / "agent.json").exists()
    fine, scratch = seed["finetune"], seed["scratch"]
    # the fine-tune run started from the pretrained policy, as its own run folder and log say; scratch did not
    saved = json.loads((runs / "finetune" / "finetune-0" / "config.json").read_text())
    assert saved["train"]["init_policy"] == fine["init_policy"] == fine["initialised_from"] == pretrained
    assert out["finetune_critic"] == "fresh" and saved["train"]["init_critic"] is False and fine["init_critic"] is False
    assert saved["env"]["look"] == fine["look"] == "heldout_a"
    assert out["critic_warmup"] == saved["train"]["critic_warmup"] == fine["critic_warmup"] == 5  # fine-tune arm only
    assert scratch["critic_warmup"] == 0
    assert json.loads((runs / "scratch" / "scratch-0" / "config.json").read_text())["train"]["init_policy"] is None
    assert scratch["init_policy"] is None and scratch["initialised_from"] is None
    # both arms: evaluated at step 0 and every eval_every steps, on the same episodes; the start policies differ
    for arm in (fine, scratch):
        assert [step for step, _ in arm["evals"]][:3] == [0, 30, 60] and arm["final_episodes"] == 2
        assert arm["env_steps"] >= 60 and arm["learner_updates"] >= 1
    assert fine["eval_records"][0] != scratch["eval_records"][0]
    assert seed["pretrain"]["learner_updates"] >= 1 and seed["pretrain"]["evals"]
