"""Training health checks: each check fires on the pattern it is for, stays quiet on a healthy run, is reported once
while it lasts; NaN weights stop `hilserl train` before a checkpoint or the actor gets them."""

import json
import math

import pytest
import torch

from hilserl.cli import main as cli_main
from hilserl.config import load_config, to_dict
from hilserl.data import ReplayBuffer
from hilserl.monitor.health import HealthLimits, HealthMonitor, TrainingHealthError, check_run, limits_from_config
from hilserl.monitor.metrics import MetricsLogger
from hilserl.train import learner as learner_module
from hilserl.train.checkpoint import last_checkpoint
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train

LIMITS = HealthLimits(max_q=10.0, min_q=-0.05 / 0.03, temperature_init=0.01, window=10)


def learner_rec(step, **kw):
    rec = {"learner_step": step, "critic_loss": 0.2, "actor_loss": -1.0, "q_mean": 2.0, "temperature": 0.01,
           "entropy": 1.0}
    rec.update(kw)
    return rec


def episode(i, success=1, intervention=0.0, jitter=0.2, saturation=0.0, length=40, cube_x=0.25, cube_y=0.0):
    return {"episode": i, "env_step": 40 * i, "reward": 9.0 if success else -2.0, "length": length,
            "success": success, "intervention_rate": intervention, "action_jitter": jitter,
            "action_saturation": saturation, "cube_x": cube_x, "cube_y": cube_y}


def checks(findings):
    return [f.check for f in findings]


def feed_episodes(monitor, episodes):
    out = []
    for e in episodes:
        out += monitor.observe_episode(e)
    return out


# --------------------------------------------------------------------------------------------- limits
def test_limits_follow_the_reward_settings():
    sim = limits_from_config(load_config(TrainConfig, "configs/sim_grasp.json", []))
    # the pixel config's worst step: the step penalty and the action penalty at full command (0.05 * 1^2)
    assert sim.max_q == 10.0 and sim.min_q == pytest.approx((-0.05 - 0.05) / 0.03) and sim.earliest_success is None
    plain = limits_from_config(load_config(TrainConfig, "configs/sim_grasp_state.json", []))
    assert plain.min_q == pytest.approx(-0.05 / 0.03)
    sparse = limits_from_config(load_config(TrainConfig, None, ["--reward.success_reward=1",
                                                                "--reward.step_penalty=0"]))
    assert sparse.max_q == 1.0 and sparse.min_q == 0.0
    real = limits_from_config(load_config(TrainConfig, "configs/so101_grasp.json", ["--reward.success_reward=5"]))
    assert real.max_q == 5.0 and real.earliest_success == 30 + 10 - 1  # min_steps + consecutive_frames - 1
    assert limits_from_config(to_dict(load_config(TrainConfig, None, ["--health.window=7"]))).window == 7
    penalised = limits_from_config(load_config(TrainConfig, None, ["--reward.action_rate_penalty=0.1"]))
    assert penalised.min_q == pytest.approx((-0.05 - 0.4) / 0.03)  # the worst step also pays the largest swing


def test_limits_read_reward_shaping_from_the_reward_section_only():
    from hilserl.config import ConfigError

    d = to_dict(load_config(TrainConfig, None, ["--reward.success_reward=3"]))
    assert limits_from_config(d).max_q == 3.0
    old = {**d, "env": {**d["env"], "success_reward": 10.0}}  # a config from before reward shaping moved
    with pytest.raises(ConfigError, match=r"^env.success_reward: .*reward.success_reward"):
        limits_from_config(old)
    del d["reward"]["step_penalty"]
    with pytest.raises(ConfigError, match=r"^reward.step_penalty: missing"):
        limits_from_config(d)


# --------------------------------------------------------------------------------------------- learner checks
def test_healthy_learner_records_raise_nothing():
    m = HealthMonitor(LIMITS)
    for step in range(100, 3000, 100):
        assert m.observe_learner(learner_rec(step, q_mean=-1.0 + step / 1000, critic_loss=0.5)) == []


def test_q_above_what_the_reward_pays_is_overestimation_after_two_records():
    m = HealthMonitor(LIMITS)
    assert m.observe_learner(learner_rec(100, q_mean=16.0)) == []  # one record may be a blip
    found = m.observe_learner(learner_rec(200, q_mean=17.0))
    assert checks(found) == ["q_overestimation"] and "17.00" in found[0].message and "10.00" in found[0].message
    assert m.observe_learner(learner_rec(300, q_mean=18.0)) == []  # reported once while it lasts
    m.observe_learner(learner_rec(400, q_mean=5.0))  # cleared
    m.observe_learner(learner_rec(500, q_mean=16.0))
    assert checks(m.observe_learner(learner_rec(600, q_mean=16.0))) == ["q_overestimation"]  # back again


def test_q_below_the_step_penalties_and_exploding_critic_loss():
    m = HealthMonitor(LIMITS)
    m.observe_learner(learner_rec(100, q_mean=-3.0))
    assert checks(m.observe_learner(learner_rec(200, q_mean=-3.0))) == ["q_divergence"]
    span = LIMITS.max_q - LIMITS.min_q
    assert m.observe_learner(learner_rec(300, q_mean=1.0, critic_loss=0.9 * span ** 2)) == []
    assert checks(m.observe_learner(learner_rec(400, q_mean=1.0, critic_loss=1.1 * span ** 2))) == [
        "critic_divergence"]


@pytest.mark.parametrize("alpha, check", [(5e-5, "temperature_collapse"), (2.0, "temperature_runaway")])
def test_temperature_out_of_range(alpha, check):
    m = HealthMonitor(LIMITS)
    assert m.observe_learner(learner_rec(100, temperature=0.003)) == []
    assert checks(m.observe_learner(learner_rec(200, temperature=alpha))) == [check]


def test_not_finite_is_an_error_at_once():
    m = HealthMonitor(LIMITS)
    found = m.observe_update({"critic_loss": float("nan"), "q_mean": 1.0}, 17)
    assert [(f.check, f.severity, f.at) for f in found] == [("not_finite", "error", "learner step 17")]
    assert "critic_loss=nan" in found[0].message
    assert checks(HealthMonitor(LIMITS).observe_learner(learner_rec(5, temperature=math.inf))) == ["not_finite"]


# --------------------------------------------------------------------------------------------- episode checks
def test_healthy_run_raises_nothing():
    m = HealthMonitor(LIMITS)
    stream = [episode(i, success=int(i % 4 != 0), intervention=max(0.0, 0.6 - i / 50), cube_x=0.2 + (i % 7) / 70,
                      jitter=0.8 if i < 10 else 0.25) for i in range(1, 121)]
    assert feed_episodes(m, stream) == []


def test_shaking_and_saturation_after_the_first_window():
    m = HealthMonitor(LIMITS)
    assert feed_episodes(m, [episode(i, jitter=0.9, saturation=0.8) for i in range(1, 11)]) == []  # early: normal
    found = feed_episodes(m, [episode(i, jitter=0.45, saturation=0.6) for i in range(11, 21)])
    assert sorted(checks(found)) == ["saturation", "shaking"] and found[0].at == "episode 20"


@pytest.mark.parametrize("alpha, entropy, advice", [(0.011, -1.5, "exploration noise is at its target"),
                                                     (0.011, 0.5, "too much entropy"),
                                                     (0.5, -1.5, "too much entropy")])
def test_shaking_advice_depends_on_the_exploration_noise(alpha, entropy, advice):
    m = HealthMonitor(HealthLimits(**{**LIMITS.__dict__, "target_entropy": -1.5}))
    m.observe_learner(learner_rec(100, temperature=alpha, entropy=entropy))
    found = feed_episodes(m, [episode(i, jitter=0.7) for i in range(1, 21)])
    assert checks(found) == ["shaking"] and advice in found[0].advice


def test_shaking_is_judged_in_metres_of_commanded_motion():
    fine = HealthMonitor(HealthLimits(**{**LIMITS.__dict__, "action_scale": 0.01}))  # 0.45 x 1 cm = 4.5 mm
    assert feed_episodes(fine, [episode(i, jitter=0.45) for i in range(1, 21)]) == []
    coarse = HealthMonitor(LIMITS)  # the same jitter at 2 cm per full command: 9 mm per tick
    found = feed_episodes(coarse, [episode(i, jitter=0.45) for i in range(1, 21)])
    assert checks(found) == ["shaking"] and "9.0 mm per tick" in found[0].message
    cfg = load_config(TrainConfig, "configs/sim_grasp.json", ["--env.action_scale=0.01"])
    assert limits_from_config(cfg).action_scale == 0.01


def test_interventions_that_do_not_fall():
    m = HealthMonitor(LIMITS)
    found = feed_episodes(m, [episode(i, intervention=0.5) for i in range(1, 31)])
    assert checks(found) == ["interventions_not_falling"] and "50%" in found[0].message
    falling = HealthMonitor(LIMITS)
    assert feed_episodes(falling, [episode(i, intervention=0.5 if i <= 10 else 0.25) for i in range(1, 31)]) == []


def test_no_success_says_whether_the_human_helped():
    helped = feed_episodes(HealthMonitor(LIMITS), [episode(i, success=0, intervention=0.4) for i in range(1, 31)])
    assert "no_success" in checks(helped)
    assert "reward never fires" in next(f for f in helped if f.check == "no_success").advice
    alone = feed_episodes(HealthMonitor(LIMITS), [episode(i, success=0, intervention=0.0) for i in range(1, 31)])
    assert "Nobody is intervening" in next(f for f in alone if f.check == "no_success").advice


def test_successes_at_the_classifiers_earliest_step():
    limits = HealthLimits(**{**LIMITS.__dict__, "earliest_success": 39})
    m = HealthMonitor(limits)
    found = feed_episodes(m, [episode(i, success=1, length=40 if i % 2 else 70) for i in range(1, 11)])
    assert checks(found) == ["early_successes"] and "5 of the last 10" in found[0].message
    ground_truth = HealthMonitor(LIMITS)  # no classifier: no such check
    assert feed_episodes(ground_truth, [episode(i, success=1, length=2) for i in range(1, 11)]) == []


def test_success_in_one_part_of_the_workspace_only():
    m = HealthMonitor(LIMITS)
    stream = [episode(i, cube_x=0.2 + (i % 10) / 100, success=int((i % 10) >= 5)) for i in range(1, 31)]
    found = feed_episodes(m, stream)
    assert checks(found) == ["position_dependent"]
    assert "x > 0.245" in found[0].message and "100%" in found[0].message and " 0% " in found[0].message
    real_arm = [dict(e, cube_x=None, cube_y=None) for e in stream]  # no cube position: no check
    assert feed_episodes(HealthMonitor(LIMITS), real_arm) == []


# --------------------------------------------------------------------------------------------- offline + loop
def test_check_run_reads_a_run_folder_and_the_cli_prints_it(tmp_path, capsys):
    cfg = load_config(TrainConfig, None, ["--health.window=10"])
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for i in range(1, 31):
            log.log_episode(episode(i, intervention=0.5))
        log.log_learner(learner_rec(100))
    monitor, counts = check_run(tmp_path)
    assert counts == {"learner": 1, "episodes": 30} and checks(monitor.findings) == ["interventions_not_falling"]
    assert cli_main(["health", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "30 episodes, 1 learner records" in out and "interventions_not_falling at episode 30" in out
    assert cli_main(["health", str(tmp_path / "missing")]) == 2


TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=0",
        "--train.checkpoint_every=40", "--train.torch_threads=1", "--buffers.online_capacity=2000",
        "--buffers.demo_capacity=1000", "--run_name=nan"]


def test_nan_weights_stop_training_before_a_checkpoint(tmp_path, monkeypatch):
    original = learner_module.Learner.update
    calls = {"n": 0}

    def update_that_breaks(self, actor=True):
        calls["n"] += 1
        if calls["n"] == 150:  # something blows the critic up; the next losses are NaN for real
            with torch.no_grad():
                for p in self.agent.critic.parameters():
                    p.fill_(float("nan"))
        return original(self, actor)

    monkeypatch.setattr(learner_module.Learner, "update", update_that_breaks)
    lines = []
    cfg = load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", "--train.total_env_steps=400"])
    with pytest.raises(TrainingHealthError, match="not_finite at learner step 150"):
        train(cfg, log=lines.append)
    run = tmp_path / "nan"
    assert any(line.startswith("health ✗ not_finite") for line in lines)
    assert [json.loads(x)["check"] for x in (run / "health.jsonl").read_text().splitlines()] == ["not_finite"]
    ckpt = last_checkpoint(run)  # the checkpoints written before the NaN, none after
    state = json.loads((ckpt / "training_state" / "state.json").read_text())
    assert 0 < state["learner_updates"] < 150
    online = ReplayBuffer.open(run / "buffers" / "online")  # the buffers are kept, readable
    try:
        assert len(online) > state["online_size"]
    finally:
        online.close()


def test_policy_motion_measures_jumps_between_consecutive_policy_steps():
    from hilserl.train.actor import _PolicyMotion
    from hilserl.train.evaluate import EvalResult

    m = _PolicyMotion(dims=2)
    m.add([0.0, 0.0, 2.0], False)  # the third value (a gripper command) is not a motion
    m.add([1.0, 0.0, 0.0], False)  # jump 0.5
    m.add([0.3, 0.3, 1.0], True)  # a person's action: not the policy's, and breaks the chain
    m.add([-1.0, 0.5], False)
    m.add([-1.0, 1.0], False)  # jump 0.25
    assert m.summary() == {"action_jitter": 0.375, "action_saturation": 0.5}  # 4 of the 8 values at the bounds
    only_people = _PolicyMotion(dims=2)
    only_people.add([1.0, 1.0], True)
    assert only_people.summary() == {}  # no key: nothing to say (and nothing non-finite sent over the network)
    rows = [{"success": 1, "reward": 9.0, "steps": 20, "action_jitter": 0.2},
            {"success": 0, "reward": -5.0, "steps": 100, "action_jitter": None},
            {"success": 1, "reward": 9.0, "steps": 30, "action_jitter": 0.4}]
    assert EvalResult(rows).action_jitter == 0.3 and EvalResult(rows).summary()["action_jitter"] == 0.3


def test_reversals_tell_shaking_from_a_fast_single_turn():
    """Jitter cannot tell a five-tick grasp (down hard, then up hard) from a policy that flips back and forth;
    reversals can: the grasp turns once, the shaking policy on every tick."""
    from hilserl.train.actor import _PolicyMotion

    grasp, shaking = _PolicyMotion(dims=1), _PolicyMotion(dims=1)
    for z in (-0.94, -0.72, 0.97, 0.96, 0.96):  # a traced pixel-policy grasp: descend, close, lift
        grasp.add([z], False)
    for z in (0.9, -0.9, 0.9, -0.9, 0.9):
        shaking.add([z], False)
    assert grasp.summary()["action_jitter"] == pytest.approx(0.48)  # high: one big turn over four changes
    assert grasp.summary()["action_reversals"] == 0.0
    assert shaking.summary()["action_reversals"] == 1.0
    two = _PolicyMotion(dims=1)
    two.add([0.0], False)
    two.add([1.0], False)
    assert "action_reversals" not in two.summary()  # one change: nothing to reverse yet
