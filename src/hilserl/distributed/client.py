"""The actor's side of the transport: queue transitions, stream them, keep them until acked, reconnect, resend.

What is guaranteed:
- Sequence numbers: the first connection's Hello tells the actor how many of its transitions the learner already
  stores (a restarted actor continues its numbering there); every `send` then gets the next number, no gaps.
- Nothing is dropped on the actor's side: a transition stays in the unacked queue until an Ack covers it. While
  the learner is unreachable the queue keeps growing up to ``max_unacked_bytes``; then `send` blocks (the robot
  holds still) until acks free space. It never discards.
- Reconnects use exponential backoff with jitter (``reconnect_min_s`` doubling up to ``reconnect_max_s``, each
  wait drawn from [0.5, 1] of that); after a reconnect every unacked transition is resent, oldest first. The
  learner stores each seq once, so a resend never duplicates.
- The learner is considered dead when it has not acked for ``learner_dead_after_s`` while messages are in flight;
  the stream is then cancelled and the client reconnects. Heartbeats (empty messages) keep an idle actor alive.
- Weights arrive in a background thread, are checked against the actor's own policy weight names, shapes and
  dtypes, and wait in `take_weights()` until the actor's next step; the actor keeps its last weights while the
  learner is away. Weights that fail the checks are refused (logged) and the previous ones kept.
- Errors that retrying cannot fix (wrong token, refused config, a newer process took over this actor id, a
  message the learner calls malformed, a learner that lost acknowledged transitions) stop the client: `send`,
  `wait_connected` and `flush` then raise `TransportError` with the learner's explanation.

`send` and `send_episode` must be called from one thread (the actor's loop).

The settings (defaults: those of the training config's ``transport`` section) are in `client_settings`, the gRPC
calls in `client_rpc`; this module is the queue, the streams and the reconnect loop.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import grpc
import torch

from hilserl.data import Transition
from hilserl.distributed import codec
from hilserl.distributed import hilserl_pb2 as pb
from hilserl.distributed.client_rpc import (FATAL, call_metadata, hello, open_channel, stream_transitions,
                                            subscribe_weights)
from hilserl.distributed.client_settings import DEFAULT_HEARTBEAT_S, ClientSettings, HelloInfo, TransportError

__all__ = ["ClientSettings", "HelloInfo", "LearnerClient", "TransportError"]

log = logging.getLogger("hilserl.transport")


@dataclass
class _Item:
    seq: int
    core: bytes
    observation: bytes
    continues: bool  # its observation is the next_observation of seq - 1


@dataclass
class _Stream:
    cursor: int  # next seq to send on this stream
    last_sent_seq: int = -1
    last_sent: float = field(default_factory=time.monotonic)
    last_ack: float = field(default_factory=time.monotonic)
    inflight: deque = field(default_factory=deque)  # (bytes, episode keys) per message awaiting its ack
    inflight_bytes: int = 0
    sent_episodes: set = field(default_factory=set)
    closed: bool = False
    call: object = None


class LearnerClient:
    def __init__(self, settings: ClientSettings, observation_spec: dict, policy_spec: dict, policy_digest: str,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S):
        self.settings = settings
        self._observation_spec = codec.normalize_spec(observation_spec)
        self._policy_spec = dict(policy_spec)
        self._policy_digest = policy_digest
        self._instance = secrets.token_hex(8)
        self._heartbeat_s = heartbeat_s
        self._cond = threading.Condition()
        self._items: dict[int, _Item] = {}
        self._episodes: dict[int, tuple[int, bytes]] = {}  # episode -> (last seq, serialised stats), until acked
        self._unacked_bytes = 0
        self._warned_full = False
        self._max_message = settings.max_message_bytes
        self._max_batch = settings.max_batch_bytes
        self._acked = 0
        self._last_seq = 0  # last seq handed out
        self._first: HelloInfo | None = None
        self._connected = False
        self._stream: _Stream | None = None
        self._error: TransportError | None = None
        self._closing = False  # no more sends; finish what is queued
        self._stopped = threading.Event()  # stop now
        self._training_done = False
        self._updates_behind = 0
        self._status_wanted = False  # send a message now (its ack brings the learner's status)
        self._acks = 0
        self._weights: tuple[int, dict[str, torch.Tensor], float] | None = None
        self._weights_version: int | None = None  # newest version received
        self.weights_version_in_use = 0
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"actor-{settings.actor_id}-link", daemon=True)

    # ------------------------------------------------------------------------------------------------ public
    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float | None = None) -> HelloInfo:
        """Block until connected (the first Hello's answer), or raise TransportError / TimeoutError."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._connected or self._error is not None or self._stopped.is_set(),
                                     timeout)
            self._raise_if_failed()
            if not ok or not self._connected:
                raise TimeoutError(f"learner at {self.settings.address} not reachable within {timeout} s")
            return self._first

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def training_done(self) -> bool:
        return self._training_done

    @property
    def updates_behind(self) -> int:
        """Updates the learner still owes to the data it stores (from the latest ack)."""
        return self._updates_behind

    def refresh_status(self, timeout: float) -> None:
        """Ask the learner for a fresh ack now (updates_behind, training_done) and wait up to `timeout` for it."""
        with self._cond:
            seen = self._acks
            self._status_wanted = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._acks > seen or self._error is not None, timeout)
            self._raise_if_failed()

    @property
    def acked_seq(self) -> int:
        return self._acked

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def unacked(self) -> tuple[int, int]:
        """(transitions, bytes) sent or queued but not yet acked."""
        with self._cond:
            return len(self._items), self._unacked_bytes

    @property
    def error(self) -> TransportError | None:
        return self._error

    def send(self, transition: Transition, episode: int, demo: bool = False, weights_version: int = 0,
             continues: bool = False) -> int:
        """Queue one transition; returns its seq. `continues`: its observation is the previous transition's
        next_observation (same episode), so a stream that just sent that one may leave it out."""
        if self._first is None:
            raise TransportError("send() before the first connection to the learner (call wait_connected)")
        seq = self._last_seq + 1
        core, obs = codec.transition_parts(transition, seq, episode, demo, weights_version)
        item = _Item(seq, core, obs, continues)
        size = len(core) + len(obs)
        if size + 1024 > self._max_message:
            raise TransportError(f"one transition is {size} bytes, more than the message limit {self._max_message} "
                                 "bytes; raise transport.max_message_mb on the learner and the actor")
        with self._cond:
            if self._unacked_bytes + size > self.settings.max_unacked_bytes and self._items:
                if not self._warned_full:  # once per filling, not once per transition
                    log.warning("unacked queue full (%d transitions, %.0f MB): holding until the learner "
                                "acknowledges", len(self._items), self._unacked_bytes / 2**20)
                self._warned_full = True
                self._cond.wait_for(lambda: self._error is not None or self._stopped.is_set()
                                    or self._unacked_bytes + size <= self.settings.max_unacked_bytes)
            self._raise_if_failed()
            if self._unacked_bytes < self.settings.max_unacked_bytes // 2:
                self._warned_full = False
            self._items[seq] = item
            self._unacked_bytes += size
            self._last_seq = seq
            self._cond.notify_all()
        return seq

    def send_episode(self, episode: int, last_seq: int, values: dict[str, float]) -> None:
        msg = pb.EpisodeStats(episode=episode, last_seq=last_seq,
                              values={k: float(v) for k, v in values.items()}).SerializeToString()
        with self._cond:
            self._episodes[episode] = (last_seq, msg)
            self._cond.notify_all()

    def take_weights(self) -> tuple[int, dict[str, torch.Tensor], float] | None:
        """The newest weights received since the last call: (version, tensors, learner publish time) or None."""
        with self._cond:
            w, self._weights = self._weights, None
            return w

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is acked (True) or `timeout` passes (False)."""
        with self._cond:
            done = self._cond.wait_for(lambda: (not self._items and not self._episodes) or self._error is not None,
                                       timeout)
            self._raise_if_failed()
            return done

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued (up to `timeout`), then disconnect. True if everything was acked."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            drained = self._error is None and self._first is not None and self.flush(timeout)
        except TransportError:
            drained = False
        if drained:  # let the stream half-close and end on the learner's side
            self._thread.join(timeout=2.0)
        self._stopped.set()
        with self._cond:
            if self._stream is not None and self._stream.call is not None:
                self._stream.call.cancel()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        return drained

    # ------------------------------------------------------------------------------------------------ internals
    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, error: TransportError) -> None:
        log.error("%s", error)
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def _on_hello(self, reply: pb.HelloReply) -> None:
        """Reconcile the queue with what the learner stores."""
        with self._cond:
            if self._first is None:
                self._first = HelloInfo(reply.acked_seq, reply.last_episode, reply.demos_wanted,
                                        reply.weights_version, reply.training_done)
                self._acked = self._last_seq = reply.acked_seq
            elif reply.acked_seq < self._acked:
                raise TransportError(f"the learner stores this actor's transitions only up to seq {reply.acked_seq} "
                                     f"but had acknowledged up to {self._acked}: it lost acknowledged data (was it "
                                     "restarted on another run folder?)")
            elif reply.acked_seq > self._last_seq:
                raise TransportError(f"the learner stores seq {reply.acked_seq} of actor id "
                                     f"{self.settings.actor_id!r} but this process only sent up to {self._last_seq}: "
                                     "another actor process uses the same id")
            else:
                for seq in range(self._acked + 1, reply.acked_seq + 1):
                    self._drop(seq)
                self._acked = reply.acked_seq
            if reply.heartbeat_ms:
                self._heartbeat_s = reply.heartbeat_ms / 1000
            if reply.max_message_bytes:  # the smaller of the two limits decides
                self._max_message = min(self.settings.max_message_bytes, reply.max_message_bytes)
                self._max_batch = min(self.settings.max_batch_bytes, max(1 << 16, self._max_message // 2))
            self._training_done = self._training_done or reply.training_done

    def _drop(self, seq: int) -> None:
        item = self._items.pop(seq, None)
        if item is not None:
            self._unacked_bytes -= len(item.core) + len(item.observation)

    def _run(self) -> None:
        s = self.settings
        attempt, down_since, was_up = 0, time.monotonic(), False
        while not self._stopped.is_set():
            channel, reason = None, ""
            try:
                channel = open_channel(s)
                reply = hello(channel, s, self._instance, self._observation_spec, self._policy_spec,
                              self._policy_digest)
                self._on_hello(reply)
                n, _ = self.unacked
                if was_up or self.reconnects:
                    log.info("reconnected to the learner at %s: it stores seq 1..%d of actor %s; resending %d",
                             s.address, reply.acked_seq, s.actor_id, n)
                else:
                    log.info("connected to the learner at %s: it stores seq 1..%d of actor %s", s.address,
                             reply.acked_seq, s.actor_id)
                attempt, was_up = 0, True
                self._serve(channel, reply)
                reason = "stream ended"
            except grpc.RpcError as e:
                code = e.code()
                if code in FATAL:
                    self._fail(TransportError(f"learner at {s.address} refused actor {s.actor_id!r}: "
                                              f"{code.name}: {e.details()}"))
                    return
                reason = f"{code.name}: {e.details()}"
            except TransportError as e:
                self._fail(e)
                return
            except Exception as e:  # noqa: BLE001 - never let the link thread die silently
                self._fail(TransportError(f"transport failure: {type(e).__name__}: {e}"))
                return
            finally:
                with self._cond:
                    up = self._connected
                    self._connected = False
                    self._stream = None
                    self._cond.notify_all()
                if channel is not None:
                    channel.close()
            if self._stopped.is_set() or (self._closing and not self._items and not self._episodes):
                return
            if up:
                n, nbytes = self.unacked
                log.warning("learner unreachable (%s); %d acked, %d unacked kept (%.1f MB); reconnecting", reason,
                            self._acked, n, nbytes / 2**20)
                down_since = time.monotonic()
                self.reconnects += 1
            if s.give_up_after_s and time.monotonic() - down_since > s.give_up_after_s:
                self._fail(TransportError(f"learner at {s.address} unreachable for more than {s.give_up_after_s} s "
                                          f"(last error: {reason})"))
                return
            delay = min(s.reconnect_max_s, s.reconnect_min_s * 2 ** min(attempt, 30)) * random.uniform(0.5, 1.0)
            attempt += 1
            self._stopped.wait(delay)

    def _serve(self, channel: grpc.Channel, reply: pb.HelloReply) -> None:
        md = call_metadata(self.settings.token, reply.session)
        have = self._weights_version
        if have is not None and reply.weights_version < have:
            have = None  # a learner restarted from an older checkpoint: take its weights, not only newer versions
        weights_call = subscribe_weights(channel, have, md)
        reader = threading.Thread(target=self._read_weights, args=(weights_call,), daemon=True,
                                  name=f"actor-{self.settings.actor_id}-weights")
        reader.start()
        with self._cond:
            st = _Stream(cursor=self._acked + 1)
            st.call = stream_transitions(channel, self._requests(st), md)
            self._stream = st
            self._connected = True
            self._cond.notify_all()
        try:
            for ack in st.call:
                self._on_ack(st, ack)
        finally:
            with self._cond:
                st.closed = True
                self._cond.notify_all()
            weights_call.cancel()
            reader.join(timeout=2.0)

    def _on_ack(self, st: _Stream, ack: pb.Ack) -> None:
        with self._cond:
            st.last_ack = time.monotonic()
            if st.inflight:
                nbytes, episodes = st.inflight.popleft()
                st.inflight_bytes -= nbytes
                for e in episodes:
                    self._episodes.pop(e, None)
            if ack.acked_seq > self._last_seq:
                raise TransportError(f"the learner acknowledged seq {ack.acked_seq} but this actor only sent up to "
                                     f"{self._last_seq}")
            for seq in range(self._acked + 1, ack.acked_seq + 1):
                self._drop(seq)
            self._acked = max(self._acked, ack.acked_seq)
            self._training_done = self._training_done or ack.training_done
            self._updates_behind = ack.updates_behind
            self._acks += 1
            self._cond.notify_all()

    def _ready_episodes(self, st: _Stream) -> list[int]:
        """Episode statistics not yet sent on this stream whose last transition is (the learner logs statistics
        with or after their episode's last transition)."""
        return [e for e, (last, _) in self._episodes.items()
                if e not in st.sent_episodes and (last <= self._acked or last < st.cursor)]

    def _requests(self, st: _Stream):
        """The messages of one stream: unacked transitions from the cursor on, episode statistics, heartbeats."""
        s = self.settings
        while True:
            with self._cond:
                while True:
                    if st.closed or self._stopped.is_set():
                        return
                    pending_episodes = self._ready_episodes(st)
                    has_items = st.cursor <= self._last_seq
                    if self._closing and not has_items and not pending_episodes and not st.inflight:
                        return  # everything acked: half-close, the learner ends the stream
                    room = len(st.inflight) < s.max_inflight_messages and st.inflight_bytes < s.max_inflight_bytes
                    if room and (has_items or pending_episodes or self._status_wanted):
                        break
                    now = time.monotonic()
                    if st.inflight and now - st.last_ack > s.learner_dead_after_s:
                        log.warning("no ack from the learner for %.1f s; reconnecting", now - st.last_ack)
                        st.closed = True
                        st.call.cancel()
                        return
                    if room and now - st.last_sent >= self._heartbeat_s:
                        break
                    if room:  # idle: until the next heartbeat is due
                        timeout = self._heartbeat_s - (now - st.last_sent)
                    else:  # waiting for acks: until the learner would count as dead
                        timeout = s.learner_dead_after_s - (now - st.last_ack)
                    self._cond.wait(timeout=max(0.01, timeout))
                parts, size = [], 0
                while st.cursor <= self._last_seq:
                    item = self._items[st.cursor]
                    elide = item.continues and st.last_sent_seq == item.seq - 1
                    payload = item.core + (codec.OBSERVATION_IS_PREVIOUS_NEXT if elide else item.observation)
                    if parts and size + len(payload) > self._max_batch:
                        break
                    parts.append(payload)
                    size += len(payload)
                    st.last_sent_seq = item.seq
                    st.cursor += 1
                episodes = self._ready_episodes(st)
                msg = codec.actor_message(parts, [self._episodes[e][1] for e in episodes], self.weights_version_in_use)
                self._status_wanted = False
                if not st.inflight:
                    st.last_ack = time.monotonic()  # the learner's silence is timed from the first unacked message
                st.inflight.append((len(msg), episodes))
                st.inflight_bytes += len(msg)
                st.sent_episodes.update(episodes)
                st.last_sent = time.monotonic()
            yield msg

    def _read_weights(self, call) -> None:
        try:
            for msg in call:
                try:
                    weights = codec.decode_weights(msg, self._policy_spec, self.settings.max_message_bytes)
                except codec.CodecError as e:
                    log.error("refused policy weights from the learner: %s; keeping version %s", e,
                              self._weights_version)
                    continue
                with self._cond:
                    self._weights = (int(msg.version), weights, float(msg.published_unix_time))
                    self._weights_version = int(msg.version)
        except grpc.RpcError:
            pass  # the transition stream's end decides about reconnecting
