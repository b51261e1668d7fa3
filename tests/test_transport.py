"""Actor <-> learner transport in one process, on 127.0.0.1 with port 0: the array codec's strict checks, token
auth, malformed/oversized messages refused while other actors keep being served, dead-actor drop, replacement
actors, reconnect + resend without duplicates, weights push, hold/keep-acting, and the learner's ledger surviving a
crash at every point of a commit."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hilserl.data import Transition
from hilserl.distributed import codec
from hilserl.distributed import hilserl_pb2 as pb
from hilserl.distributed.auth import AuthError, check_bind, is_loopback, load_token
from hilserl.distributed.client import ClientSettings, LearnerClient, TransportError
from hilserl.distributed.server import (PROTOCOL, SERVICE, SESSION_HEADER, ActorStart, IngestResult, LearnerServer,
                                        ServerSettings)

SPEC = {"state": ((3,), np.float32), "pixels.cam": ((8, 8, 3), np.uint8)}
POLICY = {"actor.w": ((2, 3), "float32"), "actor.b": ((2,), "float32")}
TOKEN = "s3cret-token-for-tests-0123456789"
WAIT = 20.0  # upper bound for anything that should happen within milliseconds


def obs(i: int) -> dict:
    return {"state": np.full(3, i, np.float32), "pixels.cam": np.full((8, 8, 3), i % 256, np.uint8)}


def transition(i: int, end: bool = False) -> Transition:
    return Transition(obs(i), np.array([i, 0.5], np.float32), float(i), False, end, obs(i + 1), i % 3 == 0,
                      {"grasp_penalty": 0.0})


class MemorySink:
    """The storage contract of the learner, in memory: store each (actor, seq) once, in order."""

    schema = codec.TransitionSchema(SPEC, 2, ("grasp_penalty",))
    policy_spec = POLICY
    policy_digest = "tiny-policy"

    def __init__(self):
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.stored: list[tuple[str, int, float, float]] = []  # actor, seq, obs value, next obs value
        self.episodes: list[tuple[str, int]] = []
        self.done = False

    def actor_connected(self, actor_id):
        return ActorStart(self.acked.get(actor_id, 0), 0, 0)

    def ingest(self, actor_id, transitions, episodes):
        with self.lock:
            new = 0
            for w in transitions:
                if w.seq <= self.acked.get(actor_id, 0):
                    continue
                assert w.seq == self.acked.get(actor_id, 0) + 1
                self.acked[actor_id] = w.seq
                t = w.transition
                self.stored.append((actor_id, w.seq, float(t.observation["state"][0]),
                                    float(t.next_observation["state"][0])))
                new += 1
            self.episodes += [(actor_id, e) for e, _, _ in episodes]
            return IngestResult(self.acked.get(actor_id, 0), new, len(transitions) - new)

    def actor_disconnected(self, actor_id):
        pass

    def training_done(self):
        return self.done

    def updates_behind(self):
        return 0

    def seqs(self, actor):
        return [s for a, s, _, _ in self.stored if a == actor]


def start_server(sink=None, token=None, port=0, **kw):
    settings = ServerSettings(port=port, heartbeat_s=kw.pop("heartbeat_s", 0.1),
                              dead_after_s=kw.pop("dead_after_s", 5.0), **kw)
    server = LearnerServer(sink or MemorySink(), settings, token=token)
    server.start()
    return server


def client_for(server, actor="a", token=None, **kw) -> LearnerClient:
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.2)
    c = LearnerClient(ClientSettings(f"127.0.0.1:{server.port}", actor, token=token, **kw), SPEC, POLICY,
                      "tiny-policy", heartbeat_s=0.1)
    c.start()
    return c


def send_episode(client, first: int, n: int, episode: int = 1) -> None:
    for i in range(first, first + n):
        client.send(transition(i, end=i == first + n - 1), episode, continues=i > first)


def wait_until(cond, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def hello(channel, actor="probe", token=TOKEN, spec=SPEC, policy=POLICY) -> pb.HelloReply:
    req = pb.HelloRequest(actor_id=actor, instance="probe-1", protocol=PROTOCOL, policy_digest="tiny-policy")
    codec.spec_to_proto(spec, req.observation_spec)
    for k, (shape, dtype) in policy.items():
        req.policy_spec[k].dtype, req.policy_spec[k].shape[:] = dtype, shape
    call = channel.unary_unary(f"/{SERVICE}/Hello", request_serializer=pb.HelloRequest.SerializeToString,
                               response_deserializer=pb.HelloReply.FromString)
    md = [("authorization", f"Bearer {token}")] if token else []
    return call(req, timeout=5, metadata=md)


def raw_stream(channel, session: str, messages, token=TOKEN):
    call = channel.stream_stream(f"/{SERVICE}/StreamTransitions", request_serializer=None,
                                 response_deserializer=pb.Ack.FromString)
    return call(iter(messages), timeout=5, metadata=[("authorization", f"Bearer {token}"), (SESSION_HEADER, session)])


# ------------------------------------------------------------------------------------------------ codec
@pytest.mark.parametrize("dtype", ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"])
def test_tensor_roundtrip_every_allowed_dtype(dtype):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((2, 3, 4)) * 10).astype(dtype)
    back = codec.decode_tensor(pb.Tensor.FromString(codec.encode_tensor(arr).SerializeToString()), "x", 1 << 20)
    assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
    big_endian = arr.astype(arr.dtype.newbyteorder(">"))
    assert np.array_equal(codec.decode_tensor(codec.encode_tensor(big_endian), "x", 1 << 20), arr)


@pytest.mark.parametrize("tensor, expected, message", [
    (pb.Tensor(dtype="object", shape=[1], data=b"\x00" * 8), None, "dtype 'object' is not allowed"),
    (pb.Tensor(dtype="float32", shape=[3], data=b"\x00" * 8), None, "needs 12 bytes, got 8"),
    (pb.Tensor(dtype="uint8", shape=[1] * 9, data=b"\x00"), None, "9 dimensions"),
    (pb.Tensor(dtype="uint8", shape=[4096, 4096], data=b""), None, "more than the limit"),
    (pb.Tensor(dtype="float32", shape=[1], data=np.float32([np.nan]).tobytes()), None, "NaN"),
    (pb.Tensor(dtype="bool", shape=[2], data=b"\x01\x02"), None, "bytes other than 0 and 1"),
    (pb.Tensor(dtype="float32", shape=[2], data=b"\x00" * 8), ((3,), np.float32), "expected shape (3,)"),
    (pb.Tensor(dtype="float64", shape=[3], data=b"\x00" * 24), ((3,), np.float32), "expected dtype float32"),
])
def test_tensor_checks_name_what_is_wrong(tensor, expected, message):
    with pytest.raises(codec.CodecError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        codec.decode_tensor(tensor, "observation['state']", 1 << 20, expected)
    assert str(err.value).startswith("observation['state']")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_cleanly_or_decode_consistently(data):
    try:
        t = pb.Tensor.FromString(data)
    except Exception:  # noqa: BLE001 - not protobuf at all: the server answers INVALID_ARGUMENT
        return
    try:
        arr = codec.decode_tensor(t, "t", 1 << 16)
    except codec.CodecError:
        return
    assert arr.nbytes == len(t.data) and arr.shape == tuple(t.shape)


def test_transition_batch_checks_keys_seqs_and_elided_observations():
    schema = MemorySink.schema
    parts = [codec.transition_parts(transition(i), i, 1) for i in (1, 2, 3)]
    msg = pb.ActorMessage.FromString(codec.actor_message(
        [parts[0][0] + parts[0][1]] + [core + codec.OBSERVATION_IS_PREVIOUS_NEXT for core, _ in parts[1:]], []))
    batch, previous = codec.decode_batch(msg, schema, None, 1 << 20)
    assert [w.seq for w in batch] == [1, 2, 3] and previous[0] == 3
    for i, w in enumerate(batch, start=1):  # the elided observations are the previous next observations
        assert w.transition.observation["state"][0] == i and w.transition.next_observation["state"][0] == i + 1
        assert w.transition.info == {"grasp_penalty": 0.0} and w.transition.is_intervention == (i % 3 == 0)
    with pytest.raises(codec.CodecError, match="transition 1 was not the previous one"):
        codec.decode_batch(pb.ActorMessage(transitions=[msg.transitions[1]]), schema, None, 1 << 20)
    gap = pb.ActorMessage(transitions=[msg.transitions[0], msg.transitions[2]])
    with pytest.raises(codec.CodecError, match="must be consecutive"):
        codec.decode_batch(gap, schema, None, 1 << 20)
    bad = pb.Transition.FromString(parts[0][0] + parts[0][1])
    del bad.next_observation["pixels.cam"]
    with pytest.raises(codec.CodecError, match=r"transition seq 1: next_observation: missing key 'pixels.cam'"):
        codec.decode_batch(pb.ActorMessage(transitions=[bad]), schema, None, 1 << 20)
    bad = pb.Transition.FromString(parts[0][0] + parts[0][1])
    bad.reward = float("inf")
    with pytest.raises(codec.CodecError, match="reward is inf"):
        codec.decode_batch(pb.ActorMessage(transitions=[bad]), schema, None, 1 << 20)


def test_weights_roundtrip_exact_and_checked():
    from hilserl.agents.sac import SACAgent, SACConfig
    from hilserl.train.actor import policy_weights

    agent = SACAgent(SACConfig(state_dim=5, action_dim=3, discrete_gripper=True, cameras=("gripper",),
                               image_size=(32, 32), encoder="resnet10", hidden_dims=(16, 16),
                               discrete_critic_hidden_dims=(16, 16), image_feature_dim=8))
    weights = policy_weights(agent)
    assert weights and not any(k.startswith(("encoder.backbone.", "critic.", "critic_target.")) for k in weights)
    assert any(k.startswith("encoder.backbone.") for k in agent.state_dict())  # the actor has its own copy
    spec = codec.weights_spec(weights)
    msg = pb.Weights.FromString(codec.encode_weights(weights, 7, 1.0).SerializeToString())
    back = codec.decode_weights(msg, spec, 64 << 20)
    assert msg.version == 7 and all(torch.equal(back[k], weights[k]) for k in weights)
    name = next(iter(spec))
    wrong = dict(spec, **{name: ((1, 2, 3), spec[name][1])})
    with pytest.raises(codec.CodecError, match="expected shape"):
        codec.decode_weights(msg, wrong, 64 << 20)
    with pytest.raises(codec.CodecError, match="missing tensor"):
        codec.decode_weights(msg, {**spec, "actor.extra": ((1,), "float32")}, 64 << 20)


# ------------------------------------------------------------------------------------------------ auth rules
def test_token_sources_and_bind_rules(tmp_path, monkeypatch):
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o600)
    assert load_token(str(f), environ={}) == TOKEN
    assert load_token(None, environ={"HILSERL_TOKEN": TOKEN}) == TOKEN
    assert load_token(None, environ={}) is None
    with pytest.raises(AuthError, match="both HILSERL_TOKEN and transport.token_file"):
        load_token(str(f), environ={"HILSERL_TOKEN": TOKEN})
    with pytest.raises(AuthError, match="at least 16 characters"):
        load_token(None, environ={"HILSERL_TOKEN": "short"})
    with pytest.raises(AuthError, match="no such file"):
        load_token(str(tmp_path / "missing"), environ={})
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("robot-pc")
    check_bind("127.0.0.1", None, tls=False)
    with pytest.raises(AuthError, match="not a loopback address"):
        check_bind("0.0.0.0", None, tls=False)
    check_bind("0.0.0.0", TOKEN, tls=True)


def test_no_token_command_line_setting():
    from hilserl.config import ConfigError, load_config
    from hilserl.train.config import TrainConfig

    with pytest.raises(ConfigError, match="transport.token: unknown key"):
        load_config(TrainConfig, None, [f"--transport.token={TOKEN}"])


# ------------------------------------------------------------------------------------------------ server + client
def test_stream_acks_stored_transitions_and_resends_after_learner_restart():
    sink = MemorySink()
    server = start_server(sink)
    port = server.port
    client = client_for(server)
    try:
        assert client.wait_connected(WAIT).acked_seq == 0
        send_episode(client, 1, 40)
        client.send_episode(1, client.last_seq, {"reward": 1.0, "success": 1.0})
        assert client.flush(WAIT) and client.acked_seq == 40
        assert sink.seqs("a") == list(range(1, 41)) and sink.episodes == [("a", 1)]
        server.stop(grace=0)  # the learner goes away; the actor keeps acting and keeps its transitions
        wait_until(lambda: not client.connected, "the client to notice")
        send_episode(client, 41, 30, episode=2)
        assert client.unacked[0] == 30
        server = start_server(sink, port=port)  # back on the same port with the same storage
        assert client.flush(WAIT)
        assert sink.seqs("a") == list(range(1, 71)) and client.reconnects >= 1
        # after a reconnect the first transition is sent whole, later ones reuse the previous next observation
        assert all(nxt == o + 1 for _, _, o, nxt in sink.stored) and [o for _, _, o, _ in sink.stored] == \
            list(range(1, 71))
    finally:
        client.close(timeout=1)
        server.stop(grace=0)


def test_lost_acknowledged_data_stops_the_actor():
    sink = MemorySink()
    server = start_server(sink)
    client = client_for(server)
    try:
        client.wait_connected(WAIT)
        send_episode(client, 1, 5)
        assert client.flush(WAIT)
        sink.acked["a"] = 2  # a learner that comes back with fewer transitions than it acknowledged
        server.stop(grace=0)
        server = start_server(sink, port=server.port)
        wait_until(lambda: client.error is not None, "the client to refuse the learner")
        assert "lost acknowledged data" in str(client.error)
        with pytest.raises(TransportError, match="lost acknowledged data"):
            client.send(transition(6), 1)
    finally:
        client.close(timeout=0)
        server.stop(grace=0)


def test_wrong_or_missing_token_refused_and_logged(caplog):
    sink = MemorySink()
    server = start_server(sink, token=TOKEN)
    good = client_for(server, "good", token=TOKEN)
    caplog.set_level(logging.WARNING, logger="hilserl.transport")
    try:
        good.wait_connected(WAIT)
        for token in (None, "not-the-right-token-0123456789"):
            bad = client_for(server, "bad", token=token)
            with pytest.raises(TransportError, match="UNAUTHENTICATED"):
                bad.wait_connected(WAIT)
            bad.close(timeout=0)
        send_episode(good, 1, 10)
        assert good.flush(WAIT) and sink.seqs("good") == list(range(1, 11)) and sink.seqs("bad") == []
        assert server.metrics()["refused"] == 2
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "no token" in logged and "wrong token" in logged and "127.0.0.1" in logged
    finally:
        good.close(timeout=1)
        server.stop(grace=0)


def test_malformed_and_oversized_messages_refused_while_serving_others():
    sink = MemorySink()
    server = start_server(sink, token=TOKEN, max_message_bytes=256 << 10)
    good = client_for(server, "good", token=TOKEN, max_message_bytes=256 << 10, max_batch_bytes=64 << 10)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        good.wait_connected(WAIT)
        core, obs_part = codec.transition_parts(transition(1), 1, 1)
        wrong_dtype = pb.Transition.FromString(core + obs_part)
        wrong_dtype.next_observation["state"].dtype = "complex64"
        wrong_shape = pb.Transition.FromString(core + obs_part)
        wrong_shape.next_observation["state"].shape[:] = [4]
        huge = pb.ActorMessage(transitions=[pb.Transition.FromString(core + obs_part)])
        huge.transitions[0].observation["state"].data = b"\x00" * (300 << 10)
        cases = [(b"\xff\xff\xff not protobuf", grpc.StatusCode.INVALID_ARGUMENT, "not a valid protobuf"),
                 (pb.ActorMessage(transitions=[wrong_dtype]).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT,
                  "next_observation['state']: dtype 'complex64' is not allowed"),
                 (pb.ActorMessage(transitions=[wrong_shape]).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT,
                  "needs 16 bytes, got 12"),
                 (huge.SerializeToString(), grpc.StatusCode.RESOURCE_EXHAUSTED, "")]
        for i, (message, code, text) in enumerate(cases):
            session = hello(channel, actor=f"probe{i}").session
            with pytest.raises(grpc.RpcError) as err:
                list(raw_stream(channel, session, [message]))
            assert err.value.code() == code and text in (err.value.details() or "")
            send_episode(good, 10 * i + 1, 10, episode=i + 1)  # the good actor is served in between
            assert good.flush(WAIT)
        assert sink.seqs("good") == list(range(1, 41))
        assert not any(a.startswith("probe") for a, *_ in sink.stored)
        assert server.metrics()["malformed"] == 3
        # a Hello whose config does not match is refused with the differences named
        with pytest.raises(grpc.RpcError) as err:
            hello(channel, spec={"state": ((4,), np.float32), "pixels.cam": ((8, 8, 3), np.uint8)})
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "observation key 'state'" in err.value.details()
    finally:
        channel.close()
        good.close(timeout=1)
        server.stop(grace=0)


def test_silent_actor_is_dropped_and_replacement_takes_over():
    sink = MemorySink()
    server = start_server(sink, dead_after_s=0.5)
    old = client_for(server, "arm")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        # a connected actor that stops sending (no heartbeats either) is dropped and its call ends
        session = hello(channel, actor="frozen", token=None).session
        release = threading.Event()

        def one_message_then_silence():
            yield codec.actor_message([], [])
            release.wait(WAIT)

        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            list(raw_stream(channel, session, one_message_then_silence(), token=None))
        release.set()
        assert err.value.code() == grpc.StatusCode.CANCELLED and time.monotonic() - t0 < 5
        assert server.metrics()["actors_dropped"] == 1 and "frozen" not in server.live_actors()

        old.wait_connected(WAIT)
        send_episode(old, 1, 25)
        assert old.flush(WAIT)
        old.send(transition(26), 2)  # maybe unacked when the replacement arrives: the replacement's numbering
        new = client_for(server, "arm")  # decides; the old process is refused from now on
        info = new.wait_connected(WAIT)
        assert info.acked_seq in (25, 26)
        wait_until(lambda: old.error is not None, "the replaced actor to be stopped")
        assert "taken over by a newer actor process" in str(old.error)
        send_episode(new, 100, 10, episode=3)
        assert new.flush(WAIT)
        assert sink.seqs("arm") == list(range(1, info.acked_seq + 11))  # continued, no gap, no duplicate
        assert server.metrics()["actors_replaced"] == 1
        new.close(timeout=1)
    finally:
        channel.close()
        old.close(timeout=0)
        server.stop(grace=0)


def test_hello_only_sessions_hold_no_slot_and_known_actors_get_back_in():
    sink = MemorySink()
    sink.acked["veteran"] = 7  # stored before a learner restart: known although it never connected to this server
    server = start_server(sink, max_actors=2, dead_after_s=WAIT)  # the watchdog plays no part here
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    clients = []

    def connect(actor):
        clients.append(client_for(server, actor))
        return clients[-1], clients[-1].wait_connected(WAIT)

    def refused(actor):
        with pytest.raises(grpc.RpcError) as err:
            hello(channel, actor=actor, token=None)
        return err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_actors=2" in err.value.details()

    try:
        arm, _ = connect("arm")
        send_episode(arm, 1, 5)
        assert arm.flush(WAIT) and arm.close(timeout=WAIT)
        wait_until(lambda: server.live_actors() == [], "arm's session to end")
        idle = [hello(channel, actor=a, token=None).session for a in ("idle0", "idle1")]  # Hello, then nothing
        assert server.live_actors() == ["idle0", "idle1"]  # every slot taken by a session that does not stream

        # (a) the known actor comes back and streams: it takes the oldest idle session's slot
        arm, info = connect("arm")
        assert info.acked_seq == 5
        send_episode(arm, 6, 5, episode=2)
        assert arm.flush(WAIT) and sink.seqs("arm") == list(range(1, 11))
        assert server.live_actors() == ["arm", "idle1"]
        # (b) a new actor gets in too: the other idle session holds nothing either
        fresh, info = connect("fresh")
        assert info.acked_seq == 0
        send_episode(fresh, 1, 3)
        assert fresh.flush(WAIT) and sink.seqs("fresh") == [1, 2, 3]
        assert server.live_actors() == ["arm", "fresh"] and server.metrics()["actors_evicted"] == 2
        for session in idle:  # the evicted sessions are gone for good
            with pytest.raises(grpc.RpcError) as err:
                list(raw_stream(channel, session, [codec.actor_message([], [])], token=None))
            assert err.value.code() == grpc.StatusCode.ABORTED
        assert not any(a.startswith("idle") for a, *_ in sink.stored)

        # both slots held by streaming actors: a stranger is refused; a new process of a known actor replaces
        # its own (stale) session
        assert refused("late")
        arm2, info = connect("arm")
        assert info.acked_seq == 10
        wait_until(lambda: arm.error is not None, "the old arm process to be stopped")
        send_episode(arm2, 11, 2, episode=3)
        assert arm2.flush(WAIT) and sink.seqs("arm") == list(range(1, 13))
        assert server.live_actors() == ["arm", "fresh"]

        # a known actor's Hello-only session cannot be taken by a stranger, but by another known actor
        assert fresh.close(timeout=WAIT)
        wait_until(lambda: server.live_actors() == ["arm"], "fresh's session to end")
        hello(channel, actor="fresh", token=None)
        assert refused("late")
        veteran, info = connect("veteran")  # known from the stored transitions only
        assert info.acked_seq == 7
        send_episode(veteran, 8, 2)
        assert veteran.flush(WAIT) and sink.seqs("veteran") == [8, 9]
        assert server.live_actors() == ["arm", "veteran"] and server.metrics()["actors_evicted"] == 3
        assert not any(a == "late" for a, *_ in sink.stored)
    finally:
        channel.close()
        for c in clients:
            c.close(timeout=0)
        server.stop(grace=0)


def test_weights_newest_version_checked_before_use():
    server = start_server()
    server.weights.publish({"actor.w": torch.ones(2, 3), "actor.b": torch.zeros(2)}, 1)
    client = client_for(server)
    try:
        client.wait_connected(WAIT)
        wait_until(lambda: client._weights is not None, "the first weights")
        version, weights, _ = client.take_weights()
        assert version == 1 and torch.equal(weights["actor.w"], torch.ones(2, 3))
        assert client.take_weights() is None  # each version is handed out once
        server.weights.publish({"actor.w": torch.ones(3, 3), "actor.b": torch.zeros(2)}, 2)  # wrong shape: refused
        server.weights.publish({"actor.w": torch.full((2, 3), 5.0), "actor.b": torch.ones(2)}, 3)
        wait_until(lambda: client._weights_version == 3, "version 3")
        version, weights, _ = client.take_weights()
        assert version == 3 and torch.equal(weights["actor.b"], torch.ones(2))
    finally:
        client.close(timeout=1)
        server.stop(grace=0)


@pytest.mark.parametrize("hold", [True, False])
def test_disconnected_behaviour_hold_or_keep_acting(hold):
    from hilserl.train.actor_process import _Link

    class StubActor:
        weights_version = 0

        def load_policy_weights(self, weights, version):
            self.weights_version = version

    server = start_server()
    port = server.port
    client = client_for(server)
    link = _Link(client, StubActor(), hold=hold, max_updates_behind=0, log=lambda s: None)
    try:
        client.wait_connected(WAIT)
        server.stop(grace=0)
        wait_until(lambda: not client.connected, "the disconnect")
        stepped = threading.Event()
        worker = threading.Thread(target=lambda: (link.before_step(), stepped.set()), daemon=True)
        worker.start()
        if hold:  # no step while the learner is away
            assert not stepped.wait(0.5)
            server = start_server(port=port)
        assert stepped.wait(WAIT)
    finally:
        client.close(timeout=0)
        server.stop(grace=0)


def _certificates(tmp_path):
    """A throwaway CA, a learner certificate for 127.0.0.1 and an actor (client) certificate, made by openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=hilserl-test-ca")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("learner", "actor"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", "san.ext")
    return {k: str(tmp_path / k) for k in ("ca.pem", "learner.pem", "learner.key", "actor.pem", "actor.key")}


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_link_with_token(tmp_path, mutual):
    from hilserl.distributed.auth import server_credentials

    certs = _certificates(tmp_path)
    sink = MemorySink()
    creds = server_credentials(certs["learner.pem"], certs["learner.key"], certs["ca.pem"] if mutual else None)
    server = LearnerServer(sink, ServerSettings(heartbeat_s=0.1), token=TOKEN, credentials=creds)
    server.start()
    clients = []
    try:
        tls = dict(tls=True, tls_ca=certs["ca.pem"])
        if mutual:
            tls.update(tls_cert=certs["actor.pem"], tls_key=certs["actor.key"])
        good = client_for(server, "tls", token=TOKEN, **tls)
        clients.append(good)
        good.wait_connected(WAIT)
        send_episode(good, 1, 10)
        assert good.flush(WAIT) and sink.seqs("tls") == list(range(1, 11))
        # plaintext to a TLS learner, or (mutual TLS) no client certificate: never connects
        refused = [client_for(server, "plain", token=TOKEN, give_up_after_s=0.5)]
        if mutual:
            refused.append(client_for(server, "nocert", token=TOKEN, give_up_after_s=0.5, tls=True,
                                      tls_ca=certs["ca.pem"]))
        for c in refused:
            clients.append(c)
            with pytest.raises(TransportError, match="unreachable"):
                c.wait_connected(WAIT)
        assert sink.seqs("plain") == [] and sink.seqs("nocert") == []
    finally:
        for c in clients:
            c.close(timeout=0)
        server.stop(grace=0)


# ------------------------------------------------------------------------------------------------ learner ledger
def _learner(path):
    from hilserl.agents.sac import SACConfig
    from hilserl.train.config import BufferConfig
    from hilserl.train.learner import Learner

    policy = SACConfig(state_dim=3, action_dim=1, discrete_gripper=True, hidden_dims=(8,),
                       discrete_critic_hidden_dims=(8,))
    spec = {"state": ((3,), np.float32), "pixels.cam": ((8, 8, 3), np.uint8)}
    return Learner(policy, BufferConfig(online_capacity=1000, demo_capacity=500), spec, 8, path)


def _stored(learner):
    names = learner.actor_names()
    out = {}
    for buf in ("online", "demo"):
        tags = getattr(learner, buf).tags()
        out[buf] = sorted((names[int(a)], int(s)) for a, s in zip(tags["actor"], tags["seq"]))
    return out


@pytest.mark.parametrize("crash_at", ["before_commit", "after_demo_flush", "after_commit"])
def test_learner_ledger_exact_after_a_crash_at_any_point_of_a_commit(tmp_path, crash_at):
    """A process crash leaves the buffer files as written; the reopened learner acks exactly what it stores, and
    resending everything unacked stores each transition once (also in the window between the two flushes)."""
    learner = _learner(tmp_path)
    plan = [("a", s, s % 4 == 0) for s in range(1, 31)] + [("b", s, s % 2 == 0) for s in range(1, 21)]

    def ingest(lr, actor, seq, intervention):
        t = transition(seq)
        t = Transition(t.observation, t.action[:2], t.reward, False, False, t.next_observation, intervention,
                       t.info)
        return lr.ingest(actor, seq, t, episode=1)

    for actor, seq, iv in plan[:20] + plan[30:40]:
        ingest(learner, actor, seq, iv)
    learner.commit()
    acked = {"a": 20, "b": 10}
    for actor, seq, iv in plan[20:30] + plan[40:]:
        ingest(learner, actor, seq, iv)
    if crash_at == "after_demo_flush":
        learner.demo.flush(extra_state={"ledger": learner._ledger_json(), "open": learner._open["demo"]})
    elif crash_at == "after_commit":
        learner.commit()
        acked = {"a": 30, "b": 20}
    # kill -9: nothing more is written; a new process opens the same files
    reopened = _learner(tmp_path)
    assert {a: reopened.acked_seq(a) for a in ("a", "b")} == acked
    for actor, seq, iv in plan:  # the actors resend everything they have not seen acked (and more)
        if seq > acked[actor]:
            assert ingest(reopened, actor, seq, iv)
        else:
            assert not ingest(reopened, actor, seq, iv)  # duplicates are recognised
    reopened.commit()
    stored = _stored(reopened)
    assert stored["online"] == sorted((a, s) for a, s, _ in plan)
    assert stored["demo"] == sorted((a, s) for a, s, iv in plan if iv)
    with pytest.raises(Exception, match="does not follow the stored seq"):
        ingest(reopened, "a", 40, False)
    reopened.close()
    final = _learner(tmp_path)
    assert _stored(final) == stored and final.env_steps == len(plan)
    final.close()


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from hilserl.agents.sac import SACAgent, SACConfig
    from hilserl.train import checkpoint as ckpt

    agent = SACAgent(SACConfig(state_dim=3, action_dim=1, hidden_dims=(8,)))
    first = ckpt.save_checkpoint(tmp_path, 100, agent, {}, {"env_step": 100}, {})

    def crash(*args, **kwargs):  # the process dies after the model files, before the training state
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 200, agent, {}, {"env_step": 200}, {})
    monkeypatch.undo()
    assert (tmp_path / "checkpoints" / ".tmp-0000200").exists()  # the half-written one stays hidden
    assert ckpt.last_checkpoint(tmp_path) == first
    _, state, _ = ckpt.load_checkpoint(first)
    assert state == {"env_step": 100}
    again = ckpt.save_checkpoint(tmp_path, 100, agent, {}, {"env_step": 100, "again": True}, {})  # re-save a step
    assert again == first and ckpt.load_checkpoint(first)[1]["again"] is True
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [".tmp-0000200", "0000100", "last.json"]
