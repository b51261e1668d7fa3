"""The learner's gRPC service: actors say Hello, stream transitions (acked after storage), receive policy weights.

What the server guarantees (the storage behind it, a `TransitionSink`, guarantees durability and exactly-once):
- An ``Ack(acked_seq)`` is sent only after `TransitionSink.ingest` returned for that message, i.e. after the
  transitions are stored; acks come one per message, in order.
- Each actor has one live session. A Hello from a new process with the same actor id (a replacement) ends the old
  session first, waiting for any ingest in flight, so the replacement's Hello reports exactly what is stored and
  the old process can never store anything again (its later calls are refused with FAILED_PRECONDITION). A Hello
  from the same process (a reconnect) simply opens a new session.
- Slots: at most ``max_actors`` sessions are open. A session holds its slot firmly once it has streamed a valid
  message (transitions or a heartbeat); until then (it has only said Hello) it holds it loosely. When the slots
  are full, a Hello ends the oldest loose session it outranks and takes its slot (counted in ``actors_evicted``):
  a known actor (one that has streamed to this server before, or whose transitions the sink stores,
  `ActorStart.acked_seq` > 0, e.g. from before a learner restart) outranks every loose session, an unknown actor
  only those of unknown actors (so a stranger cannot push a returning actor out between its Hello and its first
  message). A Hello finding no such session is refused with RESOURCE_EXHAUSTED. So clients that only say Hello
  never lock real actors out, and a known actor is refused only while ``max_actors`` other actors are streaming;
  its own old session never counts (it ends first, as described above).
- An actor silent for ``dead_after_s`` (no message, not even a heartbeat; for a session that never streamed:
  since its Hello) is dropped: its calls are cancelled and its thread freed; it may come back with a new Hello.
  The thread pool admits ``2 * max_actors + 2`` concurrent calls (two per actor and two Hellos) and refuses more
  with RESOURCE_EXHAUSTED at once, so nothing ever waits in a queue (no hangs).
- Malformed messages (not protobuf, wrong dtype/shape/keys, sizes that disagree, NaNs, non-consecutive seqs) are
  refused with INVALID_ARGUMENT naming the field, oversized ones (above ``max_message_bytes``) by gRPC with
  RESOURCE_EXHAUSTED; nothing of a refused message is stored, and every other actor keeps being served.
- Weights: `WeightsBoard.publish` serialises a version once; each subscriber gets the newest version it does not
  have (intermediate versions are skipped when a subscriber is slow).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import torch

from hilserl.distributed import codec
from hilserl.distributed import hilserl_pb2 as pb
from hilserl.distributed.auth import TokenInterceptor
from hilserl.train.config import TransportConfig

log = logging.getLogger("hilserl.transport")

PROTOCOL = 1
SERVICE = pb.DESCRIPTOR.services_by_name["Learner"].full_name
SESSION_HEADER = "x-hilserl-session"
ACTOR_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class Refused(Exception):
    """The sink refuses a Hello or a batch; `code` is the gRPC status the actor receives."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class ActorStart:
    """What a (re)connecting actor needs to continue: its stored seqs, its episode count, demos still wanted."""

    acked_seq: int
    last_episode: int
    demos_wanted: int = 0


@dataclass
class IngestResult:
    acked_seq: int
    stored: int
    duplicates: int


class TransitionSink(Protocol):
    """Storage behind the server (the learner). Calls for one actor never overlap."""

    schema: codec.TransitionSchema
    policy_spec: dict  # name -> (shape, dtype name) of the policy weights
    policy_digest: str

    def actor_connected(self, actor_id: str) -> ActorStart: ...

    def ingest(self, actor_id: str, transitions: list[codec.WireTransition],
               episodes: list[tuple[int, int, dict[str, float]]]) -> IngestResult: ...

    def actor_disconnected(self, actor_id: str) -> None: ...

    def training_done(self) -> bool: ...

    def updates_behind(self) -> int: ...


_TRANSPORT = TransportConfig()  # the defaults of the `transport` section


@dataclass
class ServerSettings:
    """The server's settings; the defaults are `TransportConfig`'s (the one home of transport settings)."""

    host: str = _TRANSPORT.host
    port: int = 0  # 0: any free port (see LearnerServer.port)
    max_message_bytes: int = int(_TRANSPORT.max_message_mb * (1 << 20))
    max_actors: int = _TRANSPORT.max_actors
    heartbeat_s: float = _TRANSPORT.heartbeat_s
    dead_after_s: float = _TRANSPORT.dead_actor_timeout_s


class WeightsBoard:
    """The newest policy weights, serialised once, for every subscriber."""

    def __init__(self):
        self._cond = threading.Condition()
        self._version = -1
        self._data = b""
        self._closed = False
        self.published_unix_time = 0.0

    def publish(self, weights: dict[str, torch.Tensor], version: int, since: float | None = None) -> int:
        """Encode and publish; returns the message size in bytes. `since`: the time.time() the weights were made
        (the actor's latency measurement starts there; default now)."""
        now = time.time() if since is None else since
        data = codec.encode_weights(weights, version, now).SerializeToString()
        with self._cond:
            self._version, self._data, self.published_unix_time = version, data, now
            self._cond.notify_all()
        return len(data)

    @property
    def version(self) -> int:
        return self._version

    def newer_than(self, version: int, timeout: float) -> tuple[int, bytes] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._version > version, timeout)
            if self._version > version and not self._closed:
                return self._version, self._data
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class _Session:
    actor_id: str
    instance: str
    sid: str
    peer: str
    last_seen: float
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a batch is being stored
    alive: bool = True
    known: bool = False  # its actor has streamed to this server or has transitions stored (outranks strangers)
    streaming: bool = False  # it has streamed a valid message: it holds its slot firmly
    busy: bool = False  # its message is being stored (maybe waiting for the storage): not silent
    contexts: set = field(default_factory=set)
    transitions: int = 0


class LearnerServer:
    def __init__(self, sink: TransitionSink, settings: ServerSettings, weights: WeightsBoard | None = None,
                 token: str | None = None, credentials: grpc.ServerCredentials | None = None):
        self.sink = sink
        self.settings = settings
        self.weights = weights or WeightsBoard()
        self._lock = threading.Lock()
        self._hello_lock = threading.Lock()  # one Hello at a time: replacement decisions never interleave
        self._sessions: dict[str, _Session] = {}  # sid -> session
        self._by_actor: dict[str, _Session] = {}
        self._superseded: set[tuple[str, str]] = set()  # (actor id, instance) replaced by a newer process
        self._known: set[str] = set()  # actors that streamed a valid message or have transitions stored
        self._counters = dict(transitions_received=0, transitions_stored=0, duplicates=0, bytes_received=0,
                              messages=0, malformed=0, refused=0, actors_dropped=0, actors_replaced=0,
                              actors_evicted=0, weights_sent=0, ingest_s=0.0)
        self._stop = threading.Event()
        max_bytes = int(settings.max_message_bytes)
        concurrent = 2 * settings.max_actors + 2
        options = [("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes),
                   ("grpc.so_reuseport", 0),  # a second learner on the same port fails instead of sharing it
                   ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                   ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.min_ping_interval_without_data_ms", 5_000)]
        self._interceptor = TokenInterceptor(token) if token is not None else None
        self._server = grpc.server(ThreadPoolExecutor(max_workers=concurrent + 2, thread_name_prefix="learner-rpc"),
                                   interceptors=[self._interceptor] if self._interceptor else None,
                                   options=options, maximum_concurrent_rpcs=concurrent)
        handlers = {"Hello": grpc.unary_unary_rpc_method_handler(self._hello),
                    "StreamTransitions": grpc.stream_stream_rpc_method_handler(self._stream_transitions),
                    "SubscribeWeights": grpc.unary_stream_rpc_method_handler(self._subscribe_weights)}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        host = f"[{settings.host}]" if ":" in settings.host else settings.host  # an IPv6 address
        address = f"{host}:{settings.port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if not self.port:
            raise OSError(f"cannot listen on {address} (in use by another process?)")
        self._watchdog = threading.Thread(target=self._watch, name="learner-watchdog", daemon=True)

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> int:
        self._server.start()
        self._watchdog.start()
        log.info("learner listening on %s:%d", self.settings.host, self.port)
        return self.port

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        self.weights.close()
        self._server.stop(grace).wait()

    def live_actors(self) -> list[str]:
        with self._lock:
            return sorted(a for a, s in self._by_actor.items() if s.alive)

    def metrics(self) -> dict:
        with self._lock:
            out = dict(self._counters)
            out["actors_connected"] = sum(s.alive for s in self._by_actor.values())
        out["refused"] += self._interceptor.refused if self._interceptor else 0
        return out

    def _count(self, **deltas) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._counters[k] += v

    # ------------------------------------------------------------------------------------------------ sessions
    def _end(self, s: _Session, reason: str, counter: str | None = None, wait: bool = False) -> None:
        """Stop a session: no ingest from it starts any more, its calls are cancelled. `wait`: also wait until an
        ingest already in flight has finished (a replacement's Hello must see everything the old one stored)."""
        with self._lock:
            if not s.alive:
                ended_here = False
            else:
                s.alive, ended_here = False, True
        if wait:
            with s.lock:  # an ingest holds it from its alive check to its end
                pass
        if ended_here:
            self._retire(s, reason, counter)

    def _retire(self, s: _Session, reason: str, counter: str | None) -> None:
        """The rest of ending a session once its `alive` flag was cleared (by the caller, exactly once)."""
        with self._lock:
            if self._by_actor.get(s.actor_id) is s:
                del self._by_actor[s.actor_id]
            self._sessions.pop(s.sid, None)
            contexts = list(s.contexts)
            if counter:
                self._counters[counter] += 1
        for ctx in contexts:
            ctx.cancel()
        self.sink.actor_disconnected(s.actor_id)
        log.info("actor %s (%s): %s", s.actor_id, s.peer, reason)

    def _watch(self) -> None:
        period = max(0.05, min(self.settings.heartbeat_s, self.settings.dead_after_s / 4))
        while not self._stop.wait(period):
            now = time.monotonic()
            with self._lock:
                silent = [s for s in self._sessions.values()
                          if not s.busy and now - s.last_seen > self.settings.dead_after_s]
            for s in silent:
                log.warning("actor %s (%s): no message for %.1f s, dropped", s.actor_id, s.peer, now - s.last_seen)
                self._end(s, "dropped", "actors_dropped")

    def _session(self, context) -> _Session:
        sid = dict(context.invocation_metadata() or ()).get(SESSION_HEADER, "")
        with self._lock:
            s = self._sessions.get(sid)
        if s is None or not s.alive:
            context.abort(grpc.StatusCode.ABORTED, "unknown or expired session; say Hello again")
        return s

    # ------------------------------------------------------------------------------------------------ handlers
    def _malformed(self, context, actor: str, error: Exception) -> None:
        self._count(malformed=1)
        log.warning("refused a message from actor %s (%s): %s", actor, context.peer(), error)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error)[:2000])

    def _hello(self, raw: bytes, context) -> bytes:
        try:
            req = pb.HelloRequest.FromString(raw)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's malformed message
            self._malformed(context, "?", ValueError("HelloRequest: not a valid protobuf message"))
        if not ACTOR_ID.fullmatch(req.actor_id):
            self._malformed(context, "?", ValueError(f"actor_id {req.actor_id[:80]!r}: expected 1-64 characters "
                                                     "from A-Z a-z 0-9 _ . -"))
        if req.protocol != PROTOCOL:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"protocol {req.protocol}: this learner speaks "
                          f"protocol {PROTOCOL}; update the actor")
        try:
            obs = codec.spec_from_proto(req.observation_spec, "observation_spec")
            pol = codec.spec_from_proto(req.policy_spec, "policy_spec")
        except codec.CodecError as e:
            self._malformed(context, req.actor_id, e)
        diffs = codec.spec_differences(codec.normalize_spec(self.sink.schema.observation), obs, "observation key")
        diffs += codec.spec_differences(self.sink.policy_spec, pol, "policy weight")
        if req.policy_digest != self.sink.policy_digest:
            diffs.append(f"policy settings differ: learner {self.sink.policy_digest}, actor {req.policy_digest[:500]}")
        if diffs:
            log.warning("refused actor %s (%s): %s", req.actor_id, context.peer(), "; ".join(diffs[:5]))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the actor's config does not match the learner's: "
                          + "; ".join(diffs[:10]))
        with self._hello_lock:
            return self._open_session(req, context)

    def _open_session(self, req: pb.HelloRequest, context) -> bytes:
        actor = req.actor_id
        with self._lock:
            if (actor, req.instance) in self._superseded:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"actor id {actor!r} was taken over by a newer "
                              "actor process; this one must stop")
            old = self._by_actor.get(actor)
        if old is not None:
            replaced = old.instance != req.instance
            if replaced:
                with self._lock:
                    self._superseded.add((actor, old.instance))
            self._end(old, "replaced by a new actor process" if replaced else "reconnected",
                      "actors_replaced" if replaced else None, wait=True)
        try:
            start = self.sink.actor_connected(actor)
        except Refused as e:
            context.abort(e.code, str(e))
        s = _Session(actor, req.instance, secrets.token_hex(16), context.peer(), time.monotonic())
        cap = self.settings.max_actors
        with self._lock:  # the slot decision and the evictions are one step: no loose session turns firm meanwhile
            if start.acked_seq > 0:
                self._known.add(actor)
            s.known = actor in self._known
            others = [o for a, o in self._by_actor.items() if a != actor and o.alive]
            loose = sorted((o for o in others if not o.streaming and (s.known or not o.known)),
                           key=lambda o: (o.known, o.last_seen))  # strangers' sessions first, oldest Hello first
            excess = len(others) + 1 - cap
            admitted = excess <= len(loose)
            evicted = loose[:max(0, excess)] if admitted else []
            for o in evicted:
                o.alive = False
            if admitted:
                self._sessions[s.sid] = s
                self._by_actor[actor] = s
        for o in evicted:
            self._retire(o, f"gave its slot to actor {actor} (it said Hello but never streamed)", "actors_evicted")
        if not admitted:
            self.sink.actor_disconnected(actor)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the learner already serves max_actors={cap} actors")
        log.info("actor %s connected from %s: %d transitions stored, continues at seq %d", actor, s.peer,
                 start.acked_seq, start.acked_seq + 1)
        st = self.settings
        return pb.HelloReply(session=s.sid, acked_seq=start.acked_seq, last_episode=start.last_episode,
                             demos_wanted=start.demos_wanted, weights_version=max(0, self.weights.version),
                             heartbeat_ms=int(st.heartbeat_s * 1000), dead_after_ms=int(st.dead_after_s * 1000),
                             max_message_bytes=st.max_message_bytes,
                             training_done=self.sink.training_done()).SerializeToString()

    def _attach(self, s: _Session, context) -> None:
        with self._lock:
            s.contexts.add(context)
        if not s.alive:  # ended between the lookup and now: its cancel missed this call
            context.abort(grpc.StatusCode.ABORTED, "session ended; say Hello again")

    def _stream_transitions(self, request_iterator, context):
        s = self._session(context)
        self._attach(s, context)
        max_bytes = self.settings.max_message_bytes
        previous = None  # (seq, next_observation) of the last transition on this stream
        ended = "disconnected (call ended)"
        try:
            for raw in request_iterator:
                s.last_seen = time.monotonic()
                # a message's bytes are counted with its transitions (one update), so that a reader of metrics()
                # never sees one without the other; a refused message counts its bytes as it is refused
                counted = False
                ended = "refused a malformed message"
                try:
                    try:
                        msg = pb.ActorMessage.FromString(raw)
                    except Exception:  # noqa: BLE001
                        self._malformed(context, s.actor_id, ValueError("ActorMessage: not a valid protobuf message"))
                    try:
                        batch, new_previous = codec.decode_batch(msg, self.sink.schema, previous, max_bytes)
                        episodes = [(int(e.episode), int(e.last_seq), codec.decode_episode(e)) for e in msg.episodes]
                    except codec.CodecError as e:
                        self._malformed(context, s.actor_id, e)
                    ended = "disconnected (call ended)"
                    if not s.streaming:  # a valid message: the session holds its slot firmly from now on
                        with self._lock:
                            s.streaming = s.known = True
                            self._known.add(s.actor_id)
                    t0 = time.perf_counter()
                    s.busy = True
                    try:
                        with s.lock:
                            if not s.alive:
                                context.abort(grpc.StatusCode.ABORTED, "session ended; say Hello again")
                            try:
                                res = self.sink.ingest(s.actor_id, batch, episodes)
                            except Refused as e:
                                ended = "refused a message"
                                self._count(malformed=1)
                                log.warning("refused a message from actor %s (%s): %s", s.actor_id, s.peer, e)
                                context.abort(e.code, str(e))
                    finally:
                        s.busy, s.last_seen = False, time.monotonic()
                    previous = new_previous
                    s.transitions += res.stored
                    self._count(messages=1, bytes_received=len(raw), transitions_received=len(batch),
                                transitions_stored=res.stored, duplicates=res.duplicates,
                                ingest_s=time.perf_counter() - t0)
                    counted = True
                finally:
                    if not counted:
                        self._count(messages=1, bytes_received=len(raw))
                yield pb.Ack(acked_seq=res.acked_seq, training_done=self.sink.training_done(),
                             updates_behind=max(0, self.sink.updates_behind())).SerializeToString()
            ended = "disconnected (stream closed by the actor)"
        except grpc.RpcError:
            ended = "disconnected (stream broke)"
        finally:
            with self._lock:
                s.contexts.discard(context)
            self._end(s, ended)  # the actor says Hello again to continue

    def _subscribe_weights(self, raw: bytes, context):
        s = self._session(context)
        try:
            req = pb.WeightsRequest.FromString(raw)
            have = req.have_version if req.has_weights else -1
        except Exception:  # noqa: BLE001
            self._malformed(context, s.actor_id, ValueError("WeightsRequest: not a valid protobuf message"))
        self._attach(s, context)
        try:
            while s.alive and context.is_active() and not self._stop.is_set():
                got = self.weights.newer_than(have, timeout=self.settings.heartbeat_s)
                if got is None:
                    continue
                have, data = got
                self._count(weights_sent=1)
                yield data
        finally:
            with self._lock:
                s.contexts.discard(context)


def settings_from(transport, port: int | None = None) -> ServerSettings:
    """ServerSettings from a `TransportConfig` section."""
    return dataclasses.replace(ServerSettings(), host=transport.host,
                               port=transport.port if port is None else port,
                               max_message_bytes=int(transport.max_message_mb * (1 << 20)),
                               max_actors=transport.max_actors, heartbeat_s=transport.heartbeat_s,
                               dead_after_s=transport.dead_actor_timeout_s)
