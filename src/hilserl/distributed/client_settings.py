"""What the actor's client is configured with (``ClientSettings``), what it learns from the learner's first Hello
(``HelloInfo``), and the error that stops it (``TransportError``).

The settings that a training config also has take their defaults from `hilserl.train.config.TransportConfig`, so a
client built without a config behaves like an actor started with the default ``transport`` section.
"""

from __future__ import annotations

from dataclasses import dataclass

from hilserl.train.config import TransportConfig

_TRANSPORT = TransportConfig()  # the defaults of the `transport` section
_MB = 2**20


class TransportError(RuntimeError):
    """The learner refused this actor for a reason retrying cannot fix (the message says which)."""


@dataclass
class ClientSettings:
    address: str  # HOST:PORT of the learner
    actor_id: str
    token: str | None = None
    tls: bool = _TRANSPORT.tls
    tls_ca: str | None = _TRANSPORT.tls_ca  # CA that signed the learner's certificate (None: system roots)
    tls_cert: str | None = _TRANSPORT.tls_cert  # client certificate for mutual TLS (optional)
    tls_key: str | None = _TRANSPORT.tls_key
    tls_server_name: str | None = _TRANSPORT.tls_server_name  # name in the learner's certificate, if not the address
    max_message_bytes: int = int(_TRANSPORT.max_message_mb * _MB)
    max_batch_bytes: int = 4 << 20  # one ActorMessage carries at most this much (unless one transition is more)
    max_inflight_bytes: int = 32 << 20  # sent but not yet acked, per stream
    max_inflight_messages: int = 2  # while the learner stores one message the next fills up (group commit)
    max_unacked_bytes: int = int(_TRANSPORT.max_unacked_mb * _MB)  # queued but not yet acked; `send` blocks beyond
    reconnect_min_s: float = _TRANSPORT.reconnect_min_s
    reconnect_max_s: float = _TRANSPORT.reconnect_max_s
    connect_timeout_s: float = 5.0
    give_up_after_s: float = _TRANSPORT.give_up_after_s  # unreachable this long -> TransportError; 0: keep trying
    learner_dead_after_s: float = 10.0


DEFAULT_HEARTBEAT_S = _TRANSPORT.heartbeat_s  # until the learner's Hello reply names its own


@dataclass
class HelloInfo:
    acked_seq: int
    last_episode: int
    demos_wanted: int
    weights_version: int
    training_done: bool
