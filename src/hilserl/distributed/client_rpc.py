"""The actor's gRPC calls to the learner: the channel (TLS, message limits, keepalive), call metadata (token,
session), Hello, the weights subscription and the transition stream. No state: `hilserl.distributed.client`
decides when to call what."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from hilserl.distributed import codec
from hilserl.distributed import hilserl_pb2 as pb
from hilserl.distributed.auth import bearer, channel_credentials
from hilserl.distributed.client_settings import ClientSettings
from hilserl.distributed.server import PROTOCOL, SERVICE, SESSION_HEADER

# status codes retrying cannot fix: the client stops with a TransportError
FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED}


def open_channel(s: ClientSettings) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", s.max_message_bytes),
               ("grpc.max_send_message_length", s.max_message_bytes),
               ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
               ("grpc.enable_retries", 0)]
    if not s.tls:
        return grpc.insecure_channel(s.address, options=options)
    if s.tls_server_name:
        options.append(("grpc.ssl_target_name_override", s.tls_server_name))
    return grpc.secure_channel(s.address, channel_credentials(s.tls_ca, s.tls_cert, s.tls_key), options=options)


def call_metadata(token: str | None, session: str | None = None) -> list[tuple[str, str]]:
    md = bearer(token)
    if session:
        md.append((SESSION_HEADER, session))
    return md


def hello(channel: grpc.Channel, s: ClientSettings, instance: str, observation_spec: dict, policy_spec: dict,
          policy_digest: str) -> pb.HelloReply:
    req = pb.HelloRequest(actor_id=s.actor_id, instance=instance, protocol=PROTOCOL, policy_digest=policy_digest)
    codec.spec_to_proto(observation_spec, req.observation_spec)
    for k, (shape, dtype) in policy_spec.items():
        req.policy_spec[k].dtype = dtype
        req.policy_spec[k].shape[:] = shape
    call = channel.unary_unary(f"/{SERVICE}/Hello", request_serializer=pb.HelloRequest.SerializeToString,
                               response_deserializer=pb.HelloReply.FromString)
    return call(req, timeout=s.connect_timeout_s, metadata=call_metadata(s.token))


def subscribe_weights(channel: grpc.Channel, have_version: int | None, metadata: list[tuple[str, str]]):
    """The learner's stream of policy weights, newer than `have_version` (None: starting with its current ones)."""
    subscribe = channel.unary_stream(f"/{SERVICE}/SubscribeWeights",
                                     request_serializer=pb.WeightsRequest.SerializeToString,
                                     response_deserializer=pb.Weights.FromString)
    return subscribe(pb.WeightsRequest(has_weights=have_version is not None, have_version=have_version or 0),
                     metadata=metadata)


def stream_transitions(channel: grpc.Channel, requests: Iterator[bytes], metadata: list[tuple[str, str]]):
    """Send the (already serialised) ActorMessages of `requests`; the call yields the learner's Acks."""
    stream_rpc = channel.stream_stream(f"/{SERVICE}/StreamTransitions", request_serializer=None,
                                       response_deserializer=pb.Ack.FromString)
    return stream_rpc(requests, metadata=metadata)
