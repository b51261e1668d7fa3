"""The console on the commands beside `hilserl train`: eval, record, reward record (the arm and the simulation),
and the actor of a learner/actor pair. Each test drives its loop with the page's commands (pushed into the hub as
the server would) and checks what the loop did with them and what the page was shown."""

import threading
import time
import urllib.request

import numpy as np
import torch

from hilserl.config import load_config
from hilserl.console.session import CONTROLS, Console
from hilserl.train.config import TrainConfig

TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.torch_threads=1", "--env.control_time_s=2"]


def _quiet_console() -> Console:
    return Console(log=lambda s: None)


def _scripted(console: Console, plan):
    """Push the page's commands when `plan(console)` returns them, right before the console takes its commands."""
    poll = console.poll

    def scripted_poll():
        for cmd in plan(console) or ():
            console.hub.push_command(cmd)
        poll()

    console.poll = scripted_poll


def _commands(console: Console) -> list[tuple[str, object]]:
    return [(c["command"], c["applied"]) for c in console.hub.history()["command"]]


def test_eval_shows_each_episode_refuses_the_controls_it_has_not_and_stops_between_episodes():
    from hilserl.agents.sac import SACAgent
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor
    from hilserl.train.build import policy_config
    from hilserl.train.evaluate import evaluate

    cfg = load_config(TrainConfig, None, TINY)
    env = SO101GraspCubeEnv(cfg.env)
    torch.manual_seed(0)  # the untrained policy's weights, whatever tests ran before in this process
    actor = Actor(env, SACAgent(policy_config(cfg, env.observation_space, env.action_space)), None, seed=3)
    console = _quiet_console()
    console.attach_eval(cfg, actor, 5)
    sent = []

    def plan(c):
        if c.episode == 1 and c.step == 2 and "takeover" not in sent:
            sent.append("takeover")
            return [{"command": "takeover"}, {"command": "success"}]
        if c.episode == 2 and c.step == 1 and "stop" not in sent:
            sent.append("stop")
            return [{"command": "stop"}]
        return []

    _scripted(console, plan)
    rows = []
    res = evaluate(actor, 5, before_episode=console.before_episode,
                   on_episode=lambda row: (rows.append(row), console.episode_done(
                       {"episode": row["episode"], "reward": row["reward"], "length": row["steps"],
                        "intervention_rate": 0.0, "success": row["success"]})))
    env.close()
    # stop asked in episode 2: that episode runs to its end (an evaluation episode is never cut), then no more
    assert len(res.rows) == 2 and rows == res.rows
    assert [r["steps"] for r in res.rows] == [20, 20]  # nothing ended them early: no marks in an evaluation
    state = console.hub.state()[0]
    assert state["mode"] == "eval" and set(state["controls"]) == set(CONTROLS["eval"])
    assert state["actor"] == "policy" and state["step"] == 20
    assert _commands(console) == [("takeover", "not available in eval"), ("success", "not available in eval"),
                                  ("stop", True)]
    table = console.hub.history()["episode"]
    assert [e["episode"] for e in table] == [1, 2] and [e["length"] for e in table] == [20, 20]


def test_record_takes_the_page_person_rerecord_and_stop(tmp_path):
    """`hilserl record` in the simulation with the console: re-record drops the attempt, a take-over with the arrow
    key is stored as the person's action, the expert finishes the episodes it is not driven in, stop ends it."""
    from hilserl.data.demo_dataset import DemoDataset
    from hilserl.data.episodes import observation_spec_from_space
    from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
    from hilserl.sim.expert import ExpertPerson
    from hilserl.train.record import record_demos

    env = SO101GraspCubeEnv(GraspCubeConfig(obs_type="state", control_time_s=5.0))
    person = ExpertPerson(env, noise=0.0)

    console = _quiet_console()
    record_env, person = console.attach_record(env, person, "discrete", None)
    sent = set()

    def plan(c):
        key = (c.episode, c.step)
        if key == (1, 2) and key not in sent:
            sent.add(key)
            return [{"command": "rerecord"}]
        if key == (2, 0) and key not in sent:  # drive +x for four steps, then give back to the expert
            sent.add(key)
            c.hub.set_motion([1, 0, 0], now=time.monotonic() + 600)
            return [{"command": "takeover"}]
        if key == (2, 4) and key not in sent:
            sent.add(key)
            return [{"command": "giveback"}]
        return []

    _scripted(console, plan)
    ds = DemoDataset.create(tmp_path / "demos", observation_spec_from_space(env.observation_space), capacity=400)
    stop_after_two = lambda: console.before_episode() and len(console.hub.history()["episode"]) < 3  # noqa: E731
    summary = record_demos(record_env, ds, 5, success_reward=10.0, step_penalty=-0.05, person=person,
                           log=lambda s: None, before_episode=stop_after_two, on_outcome=console.recorded)
    ds.close()
    env.close()
    assert summary.rerecorded == 1 and summary.saved == 2 and summary.quit
    results = [e["result"] for e in console.hub.history()["episode"]]
    assert results == ["re-recorded", "success, saved", "success, saved"]
    first = next(DemoDataset.open(tmp_path / "demos").episodes())
    assert np.allclose(first.actions[:4, :3], [0.5, 0.0, 0.0])  # the page's person drove the first four steps
    assert first.is_intervention.all() and first.terminated and first.rewards[-1] == 10.0
    assert not np.allclose(first.actions[4:, :3], [0.5, 0.0, 0.0])  # then the expert
    state = console.hub.state()[0]
    assert state["mode"] == "record" and "rerecord" in state["controls"] and "threshold" not in state["controls"]


def test_reward_record_on_the_arm_marks_switch_the_label_and_the_raw_frame_shows_the_crop(tmp_path):
    """`hilserl reward record` on the (emulated) arm with the console: Success switches the label on, Failure off,
    stop ends the recording; the page can fetch the camera's full frame with the crop drawn on it."""
    import cv2

    from hilserl.console.server import ConsoleServer
    from hilserl.envs.so101 import SO101EnvConfig, SO101Kinematics, SO101RealEnv
    from hilserl.reward.dataset import DatasetWriter, load_dataset
    from hilserl.reward.recording import record_with_env
    from hilserl.robot.cameras import CameraConfig, FakeCamera
    from hilserl.train.record import hold_still
    from robot_fakes import FakeClock, IdealFollower

    cfg = SO101EnvConfig(cameras={"gripper": CameraConfig(index=0, crop=(0, 80, 480, 480))}, reset_time_s=0.0,
                         control_time_s=1.0, intervention="none", keyboard_events=False, image_size=64)
    clock = FakeClock()
    camera = FakeCamera(lambda i: np.full((480, 640, 3), 40, np.uint8), crop=(0, 80, 480, 480), size=(64, 64),
                        name="gripper")
    env = SO101RealEnv(cfg, IdealFollower(q0=[0.0, -0.5, 0.6, 0.9, 0.0, 0.5]), {"gripper": camera},
                       kinematics=SO101Kinematics(), clock=clock, sleep=clock.sleep)
    console = _quiet_console()
    record_env, _ = console.attach_record(env, None, "discrete", None, "reward_record")
    sent = set()

    def plan(c):
        key = (c.episode, c.step)
        command = {(1, 3): "success", (1, 6): "failure", (2, 1): "stop"}.get(key)
        if command and key not in sent:
            sent.add(key)
            return [{"command": command}]
        return []

    _scripted(console, plan)
    server = ConsoleServer(console.hub, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"{server.url}api/raw/gripper", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            raw = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert raw.shape == (480, 640, 3)
        # the crop's left edge (x = 80) is drawn, the middle of the frame is the camera's own grey
        assert np.abs(raw[240, 80].astype(int) - [0, 215, 255]).max() < 40
        assert np.abs(raw[240, 320].astype(int) - 40).max() < 10
        writer = DatasetWriter(tmp_path / "reward", ["gripper"], (64, 64, 3), source="so101")
        res = record_with_env(writer, record_env, 3, hold_action=hold_still("discrete"), log=lambda s: None,
                              before_episode=console.before_episode, on_label=console.labelled,
                              on_episode=console.reward_recorded)
    finally:
        server.stop()
        env.close()
    assert res["saved"] == 1 and res["quit"]  # the second episode was stopped (quit: not kept)
    labels = load_dataset(tmp_path / "reward").labels.astype(bool).tolist()
    assert labels == [False] * 4 + [True] * 3 + [False] * 3  # on after step 3's frame, off after step 6's
    table = console.hub.history()["episode"]
    assert [e["result"] for e in table] == ["saved (3/10 frames success)", "stopped (0/2 frames success)"]
    assert console.hub.state()[0]["raw_cameras"] == ["gripper"]


def test_reward_record_in_the_simulation_shows_its_frames_and_stops_between_episodes(tmp_path):
    from hilserl.reward.dataset import load_dataset
    from hilserl.reward.sim_dataset import collect_sim_dataset

    console = _quiet_console()
    console.watch(str(tmp_path / "sim"))
    seen = []
    show = console.show
    console.show = lambda frames, label: (seen.append((sorted(frames), label)), show(frames, label))
    _scripted(console, lambda c: [{"command": "stop"}] if c.episode == 1 and c.step == 2 else [])
    collect_sim_dataset(tmp_path / "sim", num_positive=20, num_negative=60, image_size=32, seed=0, watch=console)
    ds = load_dataset(tmp_path / "sim")
    table = console.hub.history()["episode"]
    assert len(table) == 1 and table[0]["length"] == len(ds.labels) == len(seen)  # one episode, then stopped
    assert all(cams == ["front", "gripper"] for cams, _ in seen)
    assert [bool(v) for _, v in seen] == ds.labels.astype(bool).tolist()
    assert console.hub.state()[0]["mode"] == "collect" and sorted(console.hub.state()[2]) == ["front", "gripper"]


def test_the_actor_of_a_learner_shows_its_episodes_and_the_learners_lag_and_stops_alone(tmp_path):
    """`hilserl actor --console` against a real learner on loopback: episodes and the policy's lag reach the page,
    and Stop ends this actor (the learner is stopped by the test afterwards)."""
    import socket

    from hilserl.train.actor_process import run_actor
    from hilserl.train.learner_process import run_learner

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(TrainConfig, "configs/sim_grasp_state.json", [
        *TINY, "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20",
        "--train.eval_every=0", "--train.checkpoint_every=0", "--train.log_every=10", "--train.total_env_steps=5000",
        "--buffers.online_capacity=6000", "--buffers.demo_capacity=2000", f"--output_dir={tmp_path}",
        "--run_name=lrn", f"--transport.port={port}", "--transport.heartbeat_s=0.2"])
    stop = threading.Event()
    learner = threading.Thread(target=run_learner, args=(cfg,), kwargs={"log": lambda s: None, "stop": stop,
                                                                         "drain_s": 2.0}, daemon=True)
    learner.start()
    console = _quiet_console()
    lines = []
    _scripted(console, lambda c: [{"command": "stop"}] if c.episode >= 4 else [])
    try:
        res = run_actor(cfg, f"127.0.0.1:{port}", "console-actor", log=lines.append, console=console)
    finally:
        stop.set()
        learner.join(timeout=60)
    assert not learner.is_alive()
    assert 3 <= res.episodes <= 4 and any("stopped from the console" in line for line in lines)
    history = console.hub.history()
    assert len(history["episode"]) == res.episodes
    lags = [p for p in history["learner"] if "policy_lag_updates" in p]
    assert len(lags) == res.episodes and all(p["policy_lag_updates"] >= 0 for p in lags)
    assert console.hub.state()[0]["mode"] == "actor"
