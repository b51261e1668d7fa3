"""End to end: train -> checkpoint -> resume -> eval on a tiny state-only run, and the simulated human."""

import json

import numpy as np
import pytest

from hilserl.cli import run_eval
from hilserl.config import load_config
from hilserl.data import ReplayBuffer
from hilserl.train.config import TrainConfig
from hilserl.train.loop import train

TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=2", "--train.training_starts=20", "--train.eval_every=0",
        "--train.checkpoint_every=0", "--train.log_every=20", "--train.torch_threads=1",
        "--buffers.online_capacity=5000", "--buffers.demo_capacity=2000", "--run_name=tiny"]


def _cfg(tmp_path, steps, *extra):
    return load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", f"--train.total_env_steps={steps}",
                                           *extra])


def _snapshot(run_dir):
    out = {}
    for name in ("online", "demo"):
        buf = ReplayBuffer.open(run_dir / "buffers" / name)
        out[name] = {"len": len(buf), "added": buf.num_added, "episodes": buf.num_episodes,
                     "valid": buf._valid.copy(), "rewards": buf._reward.copy(), "actions": buf._action.copy(),
                     "intervention": buf._intervention.copy()}
        buf.close()
    return out


def test_train_checkpoint_resume_eval(tmp_path):
    lines = []
    res = train(_cfg(tmp_path, 150, "--train.eval_every=100", "--train.eval_episodes=2"), log=lines.append)
    run = res.run_dir
    assert res.evals and res.best_model == run / "best_model"
    best = json.loads((run / "best_model" / "evaluation.json").read_text())
    assert best["success_rate"] == max(ev["success_rate"] for ev in res.evals)
    assert (run / "best_model" / "model.safetensors").exists() and not (run / "best_model" / "unused").exists()
    assert res.env_steps >= 150 and res.learner_updates > 0
    ckpt = res.last_checkpoint
    assert (ckpt / "pretrained_model" / "model.safetensors").exists()
    assert (ckpt / "pretrained_model" / "train_config.json").exists()
    assert (ckpt / "training_state" / "optimizer.safetensors").exists()
    state = json.loads((ckpt / "training_state" / "state.json").read_text())
    assert state["env_step"] == res.env_steps and state["learner_updates"] == res.learner_updates
    assert (run / "metrics" / "episodes.csv").read_text().count("\n") == res.episodes + 1
    assert any(line.startswith("Episode 1 |") for line in lines)
    assert any(line.startswith("Step 20:") for line in lines)
    assert not list(run.rglob("*.pkl")) and not list(run.rglob("*.pt"))

    before = _snapshot(run)
    assert before["online"]["len"] == state["online_size"] and before["demo"]["len"] == state["demo_size"]

    # resume with the same budget: nothing new happens, buffers and counters are exactly as they were
    res2 = train(_cfg(tmp_path, 150, "--train.eval_every=100", "--train.eval_episodes=2"), resume=True,
                 log=lines.append)
    assert (res2.env_steps, res2.episodes, res2.learner_updates) == (res.env_steps, res.episodes, res.learner_updates)
    after = _snapshot(run)
    for name in ("online", "demo"):
        for key, value in before[name].items():
            np.testing.assert_array_equal(after[name][key], value, err_msg=f"{name}.{key}")

    # resume with more budget: training continues from the counters, the buffers grow
    res3 = train(_cfg(tmp_path, 260), resume=True, log=lines.append)
    assert res3.env_steps >= 260 and res3.episodes > res.episodes and res3.learner_updates > res.learner_updates
    assert _snapshot(run)["online"]["added"] > before["online"]["added"]

    # a fresh run into the same folder is refused instead of overwriting it
    with pytest.raises(FileExistsError):
        train(_cfg(tmp_path, 150), log=lines.append)

    from rich.console import Console

    summary = run_eval(str(run), 3, tmp_path / "eval", False, 1, 0, Console(file=open(tmp_path / "eval.txt", "w")))
    assert summary["episodes"] == 3
    assert (tmp_path / "eval" / "eval_episodes.mp4").stat().st_size > 1000
    assert (tmp_path / "eval" / "success_map.png").stat().st_size > 1000
    assert "Success rate" in (tmp_path / "eval.txt").read_text()


def test_simulated_human_interventions_are_routed_to_both_buffers(tmp_path):
    cfg = _cfg(tmp_path, 120, "--human.watch_probability_start=1.0", "--human.watch_probability_end=1.0",
               "--human.first_takeover_after=[2, 3]", "--human.takeover_steps=[3, 4]", "--human.gap_steps=[2, 2]",
               "--train.num_demos=1")
    res = train(cfg, log=lambda s: None)
    rows = (res.run_dir / "metrics" / "episodes.csv").read_text().splitlines()
    header = rows[0].split(",")
    rates = [float(r.split(",")[header.index("intervention_rate")]) for r in rows[1:]]
    assert max(rates) > 0.0, "the simulated human never took over"
    snap = _snapshot(res.run_dir)
    n_interventions_online = int(snap["online"]["intervention"].sum())
    demo_len_from_demos = json.loads((res.last_checkpoint / "training_state" / "state.json").read_text())
    assert n_interventions_online > 0
    # every intervention also went to the demo buffer (on top of the expert demo transitions)
    assert snap["demo"]["added"] >= n_interventions_online + 1
    assert demo_len_from_demos["demo_size"] == snap["demo"]["len"]


def test_human_schedule_decays():
    from hilserl.sim.human import SimHumanConfig, SimulatedHuman
    from hilserl.sim.env import SO101GraspCubeEnv

    human = SimulatedHuman(SO101GraspCubeEnv(obs_type="state"), SimHumanConfig(decay_episodes=100),
                           np.random.default_rng(0))
    assert human.watch_probability(0) == pytest.approx(0.8)
    assert human.watch_probability(50) == pytest.approx(0.45)
    assert human.watch_probability(500) == pytest.approx(0.1)


def test_grasp_penalty_reads_the_closed_flag():
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.gripper import step_grasp_penalty as grasp_penalty

    env = SO101GraspCubeEnv(obs_type="state")
    open_state, _ = env.reset(seed=0)
    for _ in range(3):
        closed_state, *_ = env.step(np.array([0, 0, 0, 0], np.float32))  # close
    close, stay, opn = (np.array([0, 0, 0, g], np.float32) for g in (0, 1, 2))
    assert grasp_penalty(open_state["state"], close, -0.02) == -0.02
    assert grasp_penalty(open_state["state"], opn, -0.02) == 0.0
    assert grasp_penalty(closed_state["state"], opn, -0.02) == -0.02
    assert grasp_penalty(closed_state["state"], close, -0.02) == 0.0
    assert grasp_penalty(closed_state["state"], stay, -0.02) == 0.0


def _same_episode_with_and_without(**penalty):
    """One random-action episode run twice, plain and with a reward penalty (Actor keyword): (plain, penalised)."""
    from hilserl.agents.sac import SACAgent
    from hilserl.envs import make_env
    from hilserl.train.actor import Actor
    from hilserl.train.build import policy_config

    cfg = load_config(TrainConfig, None, ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]",
                                          "--policy.discrete_critic_hidden_dims=[32, 32]"])
    env = make_env(cfg.env)
    agent = SACAgent(policy_config(cfg, env.observation_space, env.action_space))
    runs = []
    for kwargs in ({}, penalty):
        got = []
        Actor(env, agent, None, seed=3, **kwargs).run_episode(1, 0, got.append, random_actions=True)
        runs.append(got)
    env.close()
    plain, penalised = runs
    assert len(plain) == len(penalised) > 5
    for a, b in zip(plain, penalised):
        assert np.array_equal(a.action, b.action)  # same episode, same actions
    return plain, penalised


def test_action_rate_penalty_is_subtracted_per_step():
    plain, penalised = _same_episode_with_and_without(action_rate_penalty=0.5)
    moves = [t.action[:3].astype(np.float64) for t in plain]
    for i, (a, b) in enumerate(zip(plain, penalised)):
        expected = 0.0 if i == 0 else 0.5 * float(np.mean((moves[i] - moves[i - 1]) ** 2))
        assert a.reward - b.reward == pytest.approx(expected, abs=1e-9)
    with pytest.raises(Exception, match="action_rate_penalty"):
        load_config(TrainConfig, None, ["--reward.action_rate_penalty=-1"])


def test_action_penalty_is_a_control_cost_on_what_ran():
    plain, penalised = _same_episode_with_and_without(action_penalty=0.2)
    for a, b in zip(plain, penalised):  # the gripper command (last dim) is not a move
        assert a.reward - b.reward == pytest.approx(0.2 * float(np.mean(a.action[:3].astype(np.float64) ** 2)))
    with pytest.raises(Exception, match="action_penalty"):
        load_config(TrainConfig, None, ["--reward.action_penalty=-1"])


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_both_gripper_modes_train_and_evaluate_with_shapes_from_the_env(tmp_path, mode):
    """The policy's action size comes from the env's action space: 3 continuous dims + a close/stay/open command
    (discrete), or 4 continuous dims (continuous). The state config with only ``env.gripper_mode`` changed trains,
    stores actions of the env's size, checkpoints and evaluates."""
    from rich.console import Console

    cfg = load_config(TrainConfig, "configs/sim_grasp_state.json",
                      [*TINY, f"--output_dir={tmp_path}", "--train.total_env_steps=60", f"--env.gripper_mode={mode}",
                       "--train.num_demos=1"])
    res = train(cfg, log=lambda line: None)
    saved = json.loads((res.run_dir / "config.json").read_text())["policy"]
    assert saved["discrete_gripper"] == (mode == "discrete")
    assert saved["action_dim"] == (3 if mode == "discrete" else 4)
    online = ReplayBuffer.open(res.run_dir / "buffers" / "online")
    try:
        assert online.action_dim == 4 and len(online) == res.env_steps >= 60
        gripper = online._action[: len(online), 3]
        if mode == "discrete":
            assert set(np.unique(gripper)) <= {0.0, 1.0, 2.0}
        else:
            assert np.all(np.abs(gripper) <= 1.0) and len(np.unique(gripper)) > 3
    finally:
        online.close()
    summary = run_eval(str(res.run_dir), 2, None, False, 0, 0, Console(file=open(tmp_path / "eval.txt", "w")))
    assert summary["episodes"] == 2
