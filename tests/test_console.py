"""The browser console without a browser: the hub (bounded, never blocking, each command delivered once), the
server's refusals (no token beyond loopback, controls without the token), the hooks in the training loop (a run
with the console attached and no command is the run without it), and the page's commands applied on the control
side (take over -> stored intervention, success/failure marks, threshold -> the reward wrapper)."""

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from hilserl.config import load_config
from hilserl.console import ConsoleError, ConsoleHub
from hilserl.train.config import TrainConfig

TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=0",
        "--train.checkpoint_every=0", "--train.log_every=20", "--train.torch_threads=1",
        "--buffers.online_capacity=2000", "--buffers.demo_capacity=1000", "--env.control_time_s=3"]


# ---------------------------------------------------------------------------------------------------- the hub
def test_hub_keeps_only_bounded_state_and_never_waits_for_a_reader():
    hub = ConsoleHub(max_events=50, max_commands=4, history=30)
    t0 = time.perf_counter()
    for i in range(20_000):  # nobody reads: the loop's side must still be quick and memory stays bounded
        hub.publish("episode", {"episode": i})
        hub.put_frames({"gripper": np.full((8, 8, 3), i % 255, np.uint8)})
        hub.update(step=i)
    assert time.perf_counter() - t0 < 5.0
    events, seq = hub.events_since(0)
    assert seq == 20_000 and len(events) == 50 and events[-1][2] == {"episode": 19_999}
    assert [e["episode"] for e in hub.history()["episode"]] == list(range(19_970, 20_000))
    version, frame = hub.frame("gripper")
    assert version == 20_000 and frame[0, 0, 0] == 19_999 % 255  # only the latest frame is kept
    assert hub.state()[0]["step"] == 19_999


def test_hub_delivers_each_command_once_and_refuses_when_full():
    hub = ConsoleHub(max_commands=3)
    assert all(hub.push_command({"command": c}) for c in ("takeover", "success", "pause"))
    assert not hub.push_command({"command": "stop"})  # full: refused, not silently dropped
    assert [c["command"] for c in hub.pop_commands()] == ["takeover", "success", "pause"]
    assert hub.pop_commands() == []
    assert hub.push_command({"command": "stop"})


def test_held_keys_expire_without_a_refresh():
    hub = ConsoleHub()
    hub.set_motion([1, -1, 0], fast=True, now=100.0)
    direction, fast = hub.motion(now=100.3)
    assert direction.tolist() == [1.0, -1.0, 0.0] and fast
    assert hub.motion(now=101.0)[0].tolist() == [0.0, 0.0, 0.0]  # a closed tab does not keep the arm moving


# ---------------------------------------------------------------------------------------------------- the server
def _call(url, data=None, headers=None):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(), headers=headers or {},
                                 method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_non_loopback_bind_without_a_token_is_refused(capsys, monkeypatch):
    from hilserl.cli import main
    from hilserl.console.server import ConsoleServer

    monkeypatch.delenv("HILSERL_TOKEN", raising=False)
    with pytest.raises(ConsoleError, match="--console_host='0.0.0.0' is not a loopback address.*HILSERL_TOKEN"):
        ConsoleServer(ConsoleHub(), host="0.0.0.0", port=0)
    assert main(["train", "--console", "--console_host=0.0.0.0", "--config_path=configs/sim_grasp_state.json"]) == 2
    err = capsys.readouterr().err
    assert "--console_host" in err and "--console_token_file" in err


def test_the_console_listens_on_loopback_by_default():
    from hilserl.cli import build_parser
    from hilserl.console.server import ConsoleServer

    args = build_parser().parse_args(["train", "--console"])
    assert (args.console_host, args.console_port, args.console_token_file) == ("127.0.0.1", 8765, None)
    server = ConsoleServer(ConsoleHub(), port=0).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert _call(server.url + "api/state")[0] == 200  # loopback without a token: open
    finally:
        server.stop()


def test_controls_need_the_token_when_one_is_set():
    from hilserl.console.server import ConsoleServer

    hub = ConsoleHub()
    token = "s3cret-token-0123456789"
    server = ConsoleServer(hub, port=0, token=token).start()
    url = server.url
    try:
        assert _call(url + "api/command", {"command": "stop"})[0] == 401
        assert _call(url + "api/command", {"command": "stop"}, {"Authorization": "Bearer wrong-token"})[0] == 403
        assert _call(url + "api/keys", {"x": 1})[0] == 401
        assert _call(url + "api/state")[0] == 401 and _call(url + "api/frame/gripper")[0] == 401
        assert hub.pop_commands() == []  # nothing refused got through
        assert _call(url + "api/command", {"command": "pause"}, {"Authorization": f"Bearer {token}"})[0] == 200
        assert _call(url + f"api/command?token={token}", {"command": "resume"})[0] == 200
        assert _call(url + f"api/command?token={token}", {"command": "rm -rf"})[0] == 400
        assert [c["command"] for c in hub.pop_commands()] == ["pause", "resume"]
        # the page shell carries no data; only the console's own files are served, nothing else
        assert _call(url)[0] == 200 and _call(url + "static/console.js")[0] == 200
        for path in ("static/hub.py", "static/..%2F__init__.py", "static/%2E%2E/server.py", "../pyproject.toml"):
            assert _call(url + path)[0] == 404, path
    finally:
        server.stop()
    assert not server.thread.is_alive()


# ---------------------------------------------------------------------------------------------------- the loop
def _buffers(run_dir):
    from hilserl.data import ReplayBuffer

    out = {}
    for name in ("online", "demo"):
        buf = ReplayBuffer.open(run_dir / "buffers" / name)
        n = len(buf)
        out[name] = {"n": n, "action": buf._action.copy(), "reward": buf._reward.copy(),
                     "intervention": buf._intervention.copy(), "terminated": buf._terminated.copy(),
                     **{f"frame_{k}": v.copy() for k, v in buf._frames.items()}}
        buf.close()
    return out


def test_a_run_with_the_console_attached_and_no_command_is_the_run_without_it(tmp_path):
    from hilserl.console.session import Console
    from hilserl.train.loop import train

    runs = []
    for name, console in (("off", None), ("on", Console(log=lambda s: None))):
        cfg = load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", f"--run_name={name}",
                                              "--train.total_env_steps=70"])
        res = train(cfg, log=lambda s: None, console=console)
        runs.append((res, _buffers(res.run_dir)))
    (off, a), (on, b) = runs
    assert (off.env_steps, off.episodes, off.learner_updates) == (on.env_steps, on.episodes, on.learner_updates)
    for buf in ("online", "demo"):
        for key, value in a[buf].items():
            np.testing.assert_array_equal(b[buf][key], value, err_msg=f"{buf}.{key}")
    assert len(runs[1][0].run_dir.joinpath("metrics", "episodes.csv").read_text().splitlines()) == on.episodes + 1


def test_commands_take_over_mark_and_stop_through_the_intervention_path(tmp_path):
    """Scripted page commands while a state run trains: the person's steps are stored as interventions with
    their action, a success mark ends the episode with the success reward, stop ends the run with a checkpoint."""
    from hilserl.console.session import Console
    from hilserl.train.loop import train

    console = Console(log=lambda s: None)
    hub = console.hub
    seen = []

    def script(t):
        seen.append(t)
        s = console.step
        if console.episode == 2 and s == 3:
            hub.push_command({"command": "takeover"})
            # held (the page refreshes it every 0.2 s): stamped ahead, so a slow update on a loaded machine
            # cannot let it go stale between two steps
            hub.set_motion([1, 0, 0], now=time.monotonic() + 600)
        elif console.episode == 2 and s == 8:
            hub.push_command({"command": "success"})
        elif console.episode == 3 and s == 2:
            hub.push_command({"command": "failure"})
        elif console.episode == 4 and s == 1:
            hub.push_command({"command": "stop"})

    transition = console.transition
    console.transition = lambda t: (transition(t), script(t))
    cfg = load_config(TrainConfig, None, [*TINY, f"--output_dir={tmp_path}", "--run_name=cmd",
                                          "--human.enabled=false", "--train.total_env_steps=1000"])
    res = train(cfg, log=lambda s: None, console=console)
    assert res.episodes == 4 and res.env_steps < 1000 and res.last_checkpoint.name == f"{res.env_steps:07d}"
    episodes = [e for e in hub.history()["episode"]]
    assert [e["result"] for e in episodes[1:]] == ["success (marked)", "failure (marked)", "stopped"]
    first = episodes[0]["length"]
    ep2 = seen[first:first + episodes[1]["length"]]
    flags = [t.is_intervention for t in ep2]
    assert flags[:3] == [False] * 3 and all(flags[3:])  # from the step after the command on (three stored)
    assert all(np.allclose(t.action[:3], [0.5, 0.0, 0.0]) for t in ep2[3:])
    moved = [t.next_observation["state"][14] - t.observation["state"][14] for t in ep2[3:]]
    assert np.mean(moved) > 0.003  # the end-effector went +x
    assert ep2[-1].terminated and ep2[-1].reward == cfg.reward.success_reward
    online = _buffers(res.run_dir)["online"]
    assert online["intervention"][:online["n"]].sum() == sum(flags)  # the buffer holds the same flags
    journal = [json.loads(line) for line in (res.run_dir / "console.jsonl").read_text().splitlines()]
    assert [j["command"] for j in journal] == ["takeover", "success", "failure", "stop"]


def test_pause_waits_between_episodes_until_resume_or_stop():
    from hilserl.console.session import Console

    console = Console(log=lambda s: None)
    console.hub.push_command({"command": "pause"})
    results = []
    waiter = threading.Thread(target=lambda: results.append(console.before_episode()))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive() and console.hub.state()[0]["phase"] == "paused"
    console.hub.push_command({"command": "resume"})
    waiter.join(timeout=5)
    assert results == [True] and console.hub.state()[0]["phase"] == "training"
    console.hub.push_command({"command": "pause"})
    console.hub.push_command({"command": "stop"})
    assert console.before_episode() is False  # stop also ends a pause


def test_health_findings_and_learner_points_reach_the_page():
    from hilserl.console.session import _HealthTee, _LoggerTee
    from hilserl.monitor.health import HealthFinding

    class Monitor:
        findings = []

    class Reporter:
        monitor = Monitor()

        def update(self, metrics, step):
            self.monitor.findings.append(HealthFinding("q_divergence", "warning", f"learner step {step}",
                                                       "Q above the most a transition is worth", "lower the lr"))

    class Logger:
        rows = []

        def log_learner(self, rec):
            self.rows.append(rec)

    hub = ConsoleHub()
    _HealthTee(Reporter(), hub).update({}, 7)
    _LoggerTee(Logger(), hub).log_learner({"learner_step": 7, "critic_loss": float("nan"), "temperature": 0.1,
                                           "updates_per_s": 12.5, "actor_loss": 1.0})
    history = hub.history()
    assert history["finding"][0]["at"] == "learner step 7" and history["finding"][0]["advice"] == "lower the lr"
    assert history["learner"][0]["temperature"] == 0.1 and "actor_loss" not in history["learner"][0]


class _FakeClassifier:
    image_keys = ("gripper",)
    image_size = (16, 16)
    threshold = 0.6

    def predict_proba(self, images):
        return 0.5


def test_a_threshold_command_reaches_the_reward_wrapper(tmp_path):
    from hilserl.console.session import Console

    console = Console(log=lambda s: None)
    actor, wrapper = classifier_actor(console, tmp_path)
    console.hub.push_command({"command": "threshold", "value": 0.3})
    console.hub.push_command({"command": "threshold", "value": 1.5})
    try:
        stats = actor.run_episode(1, 0, console.transition)
    finally:
        wrapper.close()
    assert wrapper.threshold == 0.3  # 1.5 was refused
    assert console.hub.state()[0]["classifier_consecutive"] == stats.length  # p = 0.5 now counts as success
    cmds = console.hub.history()["command"]
    assert cmds[0]["applied"] is True and "expected a probability" in cmds[1]["applied"]


def classifier_actor(console, run_dir):
    """An actor on a state simulation whose reward is a (fake) classifier's, with `console` attached."""
    from hilserl.agents.sac import SACAgent
    from hilserl.reward.wrapper import RewardClassifierWrapper
    from hilserl.sim.env import SO101GraspCubeEnv
    from hilserl.train.actor import Actor
    from hilserl.train.build import policy_config

    cfg = load_config(TrainConfig, None, [*TINY, "--env.control_time_s=1"])
    wrapper = RewardClassifierWrapper(SO101GraspCubeEnv(cfg.env), _FakeClassifier(), consecutive_frames=100)
    actor = Actor(wrapper, SACAgent(policy_config(cfg, wrapper.observation_space, wrapper.action_space)), None)

    class Quiet:
        monitor = None

        def __getattr__(self, name):
            return lambda *a, **k: None

    console.attach(cfg, actor, Quiet(), Quiet(), run_dir)
    return actor, wrapper
