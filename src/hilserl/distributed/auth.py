"""Who may talk to the learner: a shared token, optional TLS, and loopback-only listening without a token.

Rules (what is guaranteed):
- The token comes from the environment variable ``HILSERL_TOKEN`` or from a file named in the config
  (``transport.token_file``), never from the command line (it would show in ``ps`` and shell history). It must be
  at least 16 printable ASCII characters.
- A learner listens on a non-loopback address only with a token (`check_bind`); on loopback a token is optional
  and, when set, still required from every caller.
- Every call must carry ``authorization: Bearer <token>``; the comparison takes constant time
  (`hmac.compare_digest`). A call without the right token is refused with UNAUTHENTICATED, logged with the peer's
  address, and counted; the server keeps serving everyone else.
- TLS: the learner presents ``tls_cert``/``tls_key``; with ``tls_ca`` it also demands client certificates signed
  by that CA (mutual TLS). The actor verifies the learner against ``tls_ca`` (or the system roots).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import stat
import threading
from pathlib import Path

import grpc

TOKEN_ENV = "HILSERL_TOKEN"
MIN_TOKEN_LENGTH = 16
AUTH_HEADER = "authorization"

log = logging.getLogger("hilserl.transport")


class AuthError(ValueError):
    """A token or TLS setting that cannot be used; the message says which and why."""


def _check_token(token: str, source: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise AuthError(f"{source}: the token must be at least {MIN_TOKEN_LENGTH} characters, got {len(token)}")
    if not all(33 <= ord(c) < 127 for c in token):
        raise AuthError(f"{source}: the token must be printable ASCII without spaces")
    return token


def load_token(token_file: str | os.PathLike | None = None, environ: dict | None = None) -> str | None:
    """The shared token from ``HILSERL_TOKEN`` or `token_file` (not both), or None when neither is set."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(TOKEN_ENV)
    if from_env is not None and token_file:
        raise AuthError(f"both {TOKEN_ENV} and transport.token_file are set; use one of them")
    if from_env is not None:
        return _check_token(from_env, TOKEN_ENV)
    if not token_file:
        return None
    path = Path(token_file)
    if not path.is_file():
        raise AuthError(f"transport.token_file: no such file {str(path)!r}")
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("transport.token_file %s is readable by other users; chmod 600 it", path)
    return _check_token(path.read_text(), f"transport.token_file {path}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: treat as reachable from outside


def check_bind(host: str, token: str | None, tls: bool) -> None:
    """Refuse to listen beyond loopback without a token; warn when the token would cross the network in clear."""
    if is_loopback(host):
        return
    if token is None:
        raise AuthError(f"transport.host={host!r} is not a loopback address: set a shared token ({TOKEN_ENV} or "
                        "transport.token_file) before listening on it")
    if not tls:
        log.warning("listening on %s without TLS: the token and all data cross the network unencrypted "
                    "(set transport.tls, tls_cert and tls_key)", host)


def bearer(token: str | None) -> list[tuple[str, str]]:
    return [] if token is None else [(AUTH_HEADER, f"Bearer {token}")]


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) and logs every call without ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()
        self._lock = threading.Lock()
        self.refused = 0

    def intercept_service(self, continuation, handler_call_details):
        got = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTH_HEADER and isinstance(value, str):
                got = value
        if got and hmac.compare_digest(got.encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        reason = "wrong token" if got else "no token"
        method = handler_call_details.method

        def deny(_request, context):
            with self._lock:
                self.refused += 1
            log.warning("refused %s from %s: %s", method, context.peer(), reason)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{reason}: this learner requires the shared token "
                          f"({TOKEN_ENV} or transport.token_file)")

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise AuthError(f"transport.{what}: no such file {str(p)!r}")
    return p.read_bytes()


def server_credentials(cert: str | None, key: str | None, client_ca: str | None) -> grpc.ServerCredentials:
    if not cert or not key:
        raise AuthError("transport.tls: the learner needs tls_cert and tls_key (PEM files)")
    ca = _read(client_ca, "tls_ca")
    return grpc.ssl_server_credentials([(_read(key, "tls_key"), _read(cert, "tls_cert"))], root_certificates=ca,
                                       require_client_auth=ca is not None)


def channel_credentials(ca: str | None, cert: str | None, key: str | None) -> grpc.ChannelCredentials:
    if bool(cert) != bool(key):
        raise AuthError("transport.tls_cert and tls_key: give both (client certificate for mutual TLS) or neither")
    return grpc.ssl_channel_credentials(root_certificates=_read(ca, "tls_ca"), private_key=_read(key, "tls_key"),
                                        certificate_chain=_read(cert, "tls_cert"))
