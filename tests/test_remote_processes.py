"""`hilserl learner` + `hilserl actor` as real processes on loopback (state-only sim, tiny networks).

One run, in phases: a learner (with a token) and two actors (one keeps acting while the learner is away, one holds
still); an actor with the wrong token is refused; malformed and oversized messages are refused while the actors
keep being served; one actor is killed with SIGKILL and replaced by a new process with the same id; the learner is
killed with SIGKILL at a random moment and restarted with --resume; training finishes. Then the buffers on disk
are checked against what the actors sent: for each actor every seq 1..last is stored exactly once (none of the
acknowledged ones lost, none doubled), and nothing the learner had acknowledged before the kill is missing after it.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from hilserl.data import Transition
from hilserl.distributed import codec
from hilserl.distributed import hilserl_pb2 as pb
from hilserl.distributed.server import PROTOCOL, SERVICE, SESSION_HEADER

TOKEN = "process-test-token-0123456789abcdef"
CONFIG = "configs/sim_grasp_state.json"
TINY = ["--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]", "--train.batch_size=32",
        "--train.num_demos=2", "--train.training_starts=50", "--train.eval_every=0", "--train.checkpoint_every=2000",
        "--train.log_every=100", "--train.torch_threads=1", "--train.updates_per_env_step=0.02",
        "--buffers.online_capacity=60000", "--buffers.demo_capacity=20000", "--transport.heartbeat_s=0.2",
        "--transport.dead_actor_timeout_s=3", "--transport.reconnect_min_s=0.1", "--transport.reconnect_max_s=0.5",
        "--transport.max_message_mb=1", "--transport.max_unacked_mb=64", "--transport.give_up_after_s=60"]
TIMEOUT = 60.0  # bound for every wait; the whole run normally takes ~30 s
ROOT = Path(__file__).resolve().parents[1]
RUNNING: list["Proc"] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A `hilserl` subprocess whose combined output goes to a file the test reads."""

    def __init__(self, tmp: Path, name: str, args: list[str], token: str | None = TOKEN):
        self.log = tmp / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("HILSERL_TOKEN", None)
        if token is not None:
            env["HILSERL_TOKEN"] = token
        self.fh = open(self.log, "w")
        RUNNING.append(self)
        self.p = subprocess.Popen([sys.executable, "-m", "hilserl.cli", *args], cwd=ROOT, env=env, stdout=self.fh,
                                  stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = TIMEOUT, after: int = 0) -> re.Match:
        """The first match of `pattern` in the output (from character `after` on); fails if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.text(), after)
            if m:
                return m
            if self.p.poll() is not None:
                raise AssertionError(f"{self.log.name} exited ({self.p.returncode}) before {pattern!r}:\n"
                                     + self.text()[-3000:])
            if time.monotonic() > deadline:
                for proc in RUNNING:  # each process prints every thread's stack (faulthandler) into its log
                    if proc.p.poll() is None:
                        proc.p.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                raise AssertionError(f"timed out waiting for {pattern!r} in {self.log.name}:\n" + self.text()[-6000:])
            time.sleep(0.05)

    def acked(self) -> int:
        """The actor's latest 'acked X/Y' (0 before its first episode)."""
        found = re.findall(r"acked (\d+)/(\d+)", self.text())
        return int(found[-1][0]) if found else 0

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=TIMEOUT)

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError(f"{self.log.name} did not finish:\n" + self.text()[-3000:]) from None

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)
        self.fh.close()


def probe_hello(channel, cfg, token):
    """A Hello with the learner's own config (so only the token or the message decides)."""
    from hilserl.agents.sac import SACAgent
    from hilserl.train.actor import policy_fingerprint, policy_weights
    from hilserl.train.build import make_env, policy_config
    from hilserl.train.observations import ObservationProcessor

    env = make_env(cfg)
    policy = policy_config(cfg, env.observation_space, env.action_space)
    agent = SACAgent(policy)
    req = pb.HelloRequest(actor_id="probe", instance="probe", protocol=PROTOCOL,
                          policy_digest=policy_fingerprint(policy))
    codec.spec_to_proto(ObservationProcessor(agent, env.observation_space).spec, req.observation_spec)
    for k, (shape, dtype) in codec.weights_spec(policy_weights(agent)).items():
        req.policy_spec[k].dtype, req.policy_spec[k].shape[:] = dtype, shape
    env.close()
    call = channel.unary_unary(f"/{SERVICE}/Hello", request_serializer=pb.HelloRequest.SerializeToString,
                               response_deserializer=pb.HelloReply.FromString)
    return call(req, timeout=10, metadata=[("authorization", f"Bearer {token}")] if token else [])


def probe_stream(channel, session, message: bytes):
    call = channel.stream_stream(f"/{SERVICE}/StreamTransitions", request_serializer=None,
                                 response_deserializer=pb.Ack.FromString)
    with pytest.raises(grpc.RpcError) as err:
        list(call(iter([message]), timeout=10,
                  metadata=[("authorization", f"Bearer {TOKEN}"), (SESSION_HEADER, session)]))
    return err.value


def stored_seqs(run: Path) -> dict[str, dict[str, list[int]]]:
    """{actor: {"online": seqs, "demo": seqs}} from the buffer files (valid transitions only)."""
    from hilserl.data import ReplayBuffer

    out: dict[str, dict[str, list[int]]] = {}
    for name in ("online", "demo"):
        buf = ReplayBuffer.open(run / "buffers" / name)
        names = {r["index"]: a for a, r in buf.extra_state["ledger"].items()}
        tags = buf.tags()
        for a, s in zip(tags["actor"], tags["seq"]):
            out.setdefault(names[int(a)], {"online": [], "demo": []})[name].append(int(s))
        buf.close()
    return out


def test_two_actors_kill9_learner_and_actor_restart_exact_accounting(tmp_path):
    from hilserl.config import load_config
    from hilserl.train.config import TrainConfig

    port = free_port()
    common = [f"--config_path={CONFIG}", *TINY, f"--transport.port={port}"]
    learner_args = ["learner", *common, f"--output_dir={tmp_path}", "--run_name=run",
                    "--train.total_env_steps=1000000"]
    actor_args = ["actor", *common, "--learner", f"127.0.0.1:{port}"]
    procs: list[Proc] = []

    def spawn(name, args, token=TOKEN):
        procs.append(Proc(tmp_path, name, args, token))
        return procs[-1]

    try:
        learner = spawn("learner1", learner_args)
        a = spawn("actor_a", [*actor_args, "--actor_id=a"])
        b = spawn("actor_b", [*actor_args, "--actor_id=b", "--transport.disconnected_behavior=hold"])
        intruder = spawn("intruder", [*actor_args, "--actor_id=intruder"], token="wrong-token-000000000000000")
        learner.wait_for(r"learner listening on 127\.0\.0\.1:\d+")

        # ---- the wrong token is refused (a real actor process, and raw calls), and logged by the learner
        assert intruder.finish() == 3 and "UNAUTHENTICATED" in intruder.text()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cfg = load_config(TrainConfig, ROOT / CONFIG, TINY)
        for token in (None, "another-wrong-token-000000000"):
            with pytest.raises(grpc.RpcError) as err:
                probe_hello(channel, cfg, token)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        learner.wait_for(r"refused .*Hello from .*: wrong token")
        learner.wait_for(r"refused .*Hello from .*: no token")

        # ---- malformed and oversized messages are refused; the actors keep being served
        a.wait_for(r"acked [1-9]\d*/")
        before = a.acked(), b.acked()
        session = probe_hello(channel, cfg, TOKEN).session
        err = probe_stream(channel, session, b"\x12\x34garbage")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf" in err.details()
        session = probe_hello(channel, cfg, TOKEN).session
        o = {"state": np.zeros(17, np.float32), "environment_state": np.zeros(6, np.float32)}
        t = Transition(o, np.zeros(4, np.float32), 0.0, False, False, o, False, {"grasp_penalty": 0.0})
        bad = codec.encode_transition(t, seq=1, episode=1)
        bad.observation["state"].data = b"\x00" * 10  # 17 float32 need 68 bytes
        err = probe_stream(channel, session, pb.ActorMessage(transitions=[bad]).SerializeToString())
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "transition seq 1: observation['state']: shape (17,) of float32 needs 68 bytes, got 10" in err.details()
        session = probe_hello(channel, cfg, TOKEN).session
        err = probe_stream(channel, session, b"\x00" * (2 << 20))  # above transport.max_message_mb=1
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel.close()
        deadline = time.monotonic() + TIMEOUT
        while not (a.acked() > before[0] and b.acked() > before[1]):
            assert time.monotonic() < deadline, "the actors stopped being served after the bad messages"
            time.sleep(0.05)

        # ---- an actor killed with SIGKILL is dropped; a new process with its id continues its sequence
        mark = len(learner.text())
        b.kill9()
        learner.wait_for(r"actor b \(.*\): (disconnected|dropped)", after=mark)
        b2 = spawn("actor_b2", [*actor_args, "--actor_id=b", "--transport.disconnected_behavior=hold"])
        resumed_at = int(b2.wait_for(r"continuing at seq (\d+)").group(1))
        assert resumed_at >= 2  # b had stored transitions; the new process continues after them
        b2.wait_for(r"acked [1-9]\d*/")

        # ---- SIGKILL of the learner at a random moment, restart with --resume
        random_delay = random.Random().uniform(0.0, 1.5)
        time.sleep(random_delay)
        learner.kill9()
        acked_before = {}
        for name, proc in (("a", a), ("b", b2)):
            m = proc.wait_for(r"learner unreachable \(.*\); (\d+) acked")
            acked_before[name] = int(m.group(1))
        sent = {name: int(re.findall(r"acked \d+/(\d+)", p.text())[-1]) for name, p in (("a", a), ("b", b2))}
        learner2 = spawn("learner2", [*learner_args, "--resume",
                                      f"--train.total_env_steps={sum(sent.values()) + 400}"])
        learner2.wait_for(r"resumed .*agent from .*checkpoints")
        for name, proc in (("a", a), ("b", b2)):
            m = proc.wait_for(rf"reconnected to the learner at .*: it stores seq 1\.\.(\d+) of actor {name}")
            assert int(m.group(1)) >= acked_before[name], f"actor {name}: acknowledged transitions were lost"

        # ---- training finishes; everything the actors sent is stored exactly once
        assert learner2.finish() == 0, learner2.text()[-3000:]
        finals = {}
        for name, proc in (("a", a), ("b", b2)):
            assert proc.finish() == 0, proc.text()[-3000:]
            m = re.search(r"sent seq 1\.\.(\d+), learner acknowledged up to (\d+);", proc.text())
            assert m and m.group(1) == m.group(2), proc.text()[-2000:]
            finals[name] = int(m.group(1))
        stored = stored_seqs(tmp_path / "run")
        assert set(stored) == {"a", "b"}
        for name, last in finals.items():
            online, demo = stored[name]["online"], stored[name]["demo"]
            assert len(online) == len(set(online)) and len(demo) == len(set(demo)), f"actor {name}: doubled"
            assert set(online) | set(demo) == set(range(1, last + 1)), f"actor {name}: lost or unexpected seqs"
        assert sum(len(v["demo"]) for v in stored.values()) > 0  # demonstrations came from the actors
        # the final checkpoint counts every stored environment step (demonstrations are not environment steps)
        last = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())
        assert last["env_step"] == sum(len(v["online"]) for v in stored.values())
    finally:
        for p in procs:
            p.stop()
