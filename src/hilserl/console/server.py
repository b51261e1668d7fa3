"""The console's web server: a starlette app run by uvicorn in a background thread with its own event loop.

Routes: ``/`` (the page) and ``/static/<name>`` (its script and style, from a fixed list: no other file is ever
served); ``/api/state`` (numbers and history, JSON), ``/api/events`` (the live feed, server-sent events),
``/api/frame/<camera>`` (the latest policy image, encoded here as PNG, never on the control loop),
``/api/raw/<camera>`` (the real arm: the camera's full frame with the policy's crop drawn, JPEG); ``POST
/api/command`` and ``POST /api/keys`` (controls). With a token set every ``/api`` route needs it, as
``Authorization: Bearer <token>`` or ``?token=<token>``: a missing token is refused with 401, a wrong one with 403.
Without a token the server listens on loopback only (`check_console_bind`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
from importlib import resources

import numpy as np

from hilserl.console import DEFAULT_HOST, DEFAULT_PORT, ConsoleError
from hilserl.console.hub import ConsoleHub
from hilserl.console.session import COMMANDS
from hilserl.distributed.auth import TOKEN_ENV, is_loopback

STATIC = {"index.html": "text/html", "console.js": "text/javascript", "console.css": "text/css"}
FEED_PERIOD_S = 0.1  # the live feed checks the hub ten times a second
RAW_PERIOD_S = 0.5  # a raw camera frame is read and encoded at most twice a second, however many pages ask


def check_console_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and token is None:
        raise ConsoleError(f"--console_host={host!r} is not a loopback address: the console's controls move the "
                           f"arm, so set a token first ({TOKEN_ENV} or --console_token_file), or keep the default "
                           f"{DEFAULT_HOST} and use an SSH tunnel")


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _finite(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(value) -> str:
    return json.dumps(_finite(json.loads(json.dumps(value, default=_json_default))))


def _static(name: str) -> bytes:
    return resources.files("hilserl.console").joinpath("static", name).read_bytes()


class _Frames:
    """PNG-encoded latest frames, encoded once per frame version (in the server thread)."""

    def __init__(self, hub: ConsoleHub):
        self.hub = hub
        self._cache: dict[str, tuple[int, bytes]] = {}

    def png(self, camera: str) -> bytes | None:
        version, img = self.hub.frame(camera)
        cached = self._cache.get(camera)
        if cached is not None and cached[0] == version:
            return cached[1]
        if img is None:
            return None
        import cv2

        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
        data = buf.tobytes() if ok else b""
        self._cache[camera] = (version, data)
        return data


class _RawFrames:
    """The real cameras' full frames with the crop the policy gets drawn on them, JPEG-encoded in the server's
    thread pool, at most once per `RAW_PERIOD_S` per camera."""

    def __init__(self, hub: ConsoleHub):
        self.hub = hub
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def jpeg(self, camera: str) -> bytes | None:
        source = self.hub.raw_source(camera)
        if source is None:
            return None
        with self._lock:
            cached = self._cache.get(camera)
            if cached is not None and time.monotonic() - cached[0] < RAW_PERIOD_S:
                return cached[1]
            import cv2

            read, crop = source
            img = np.ascontiguousarray(np.asarray(read())[..., ::-1])  # RGB -> BGR for OpenCV
            if crop is not None:
                top, left, h, w = (int(v) for v in crop)
                thick = max(2, img.shape[1] // 200)
                cv2.rectangle(img, (left, top), (left + w - 1, top + h - 1), (0, 215, 255), thick)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
            data = buf.tobytes() if ok else b""
            self._cache[camera] = (time.monotonic(), data)
            return data


def build_app(hub: ConsoleHub, token: str | None = None):
    """The starlette app over `hub`; with `token` every /api route requires it."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    frames = _Frames(hub)
    raw_frames = _RawFrames(hub)

    def refused(request):
        return _refusal(request, token)

    def plain_json(data) -> Response:
        return Response(_dumps(data), media_type="application/json")

    async def page(request):
        return Response(_static("index.html"), media_type=STATIC["index.html"], headers={"Cache-Control": "no-store"})

    async def static(request):
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            return Response("not found", status_code=404)
        return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "no-store"})

    async def state(request):
        if (r := refused(request)) is not None:
            return r
        values, version, cameras = hub.state()
        _, seq = hub.events_since(1 << 62)
        return plain_json({"state": values, "frame_version": version, "cameras": cameras, "seq": seq,
                           "history": hub.history()})

    async def frame(request):
        if (r := refused(request)) is not None:
            return r
        data = frames.png(request.path_params["camera"])
        if not data:
            return Response("no such camera", status_code=404)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def raw(request):
        from starlette.concurrency import run_in_threadpool

        if (r := refused(request)) is not None:
            return r
        try:  # a camera read may block a moment: never on the event loop
            data = await run_in_threadpool(raw_frames.jpeg, request.path_params["camera"])
        except Exception as e:  # a camera that failed: the page says so, the run goes on (the env reports it)
            return JSONResponse({"error": f"camera {request.path_params['camera']!r}: {e}"}, status_code=503)
        if not data:
            return Response("no such camera", status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def events(request):
        if (r := refused(request)) is not None:
            return r
        try:  # a reconnecting page says where it stopped (Last-Event-ID): nothing is sent twice
            since = max(int(request.query_params.get("since", "0")), int(request.headers.get("last-event-id", "0")))
        except ValueError:
            since = 0
        return StreamingResponse(_feed(hub, request, since), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def command(request):
        if (r := refused(request)) is not None:
            return r
        body = await _body(request)
        name = body.get("command") if isinstance(body, dict) else None
        if name not in COMMANDS:
            return JSONResponse({"error": f"command: expected one of {list(COMMANDS)}, got {name!r}"}, 400)
        if not hub.push_command({"command": name, "value": body.get("value")}):
            return JSONResponse({"error": "too many pending commands; try again"}, status_code=429)
        return JSONResponse({"ok": True})

    async def keys(request):
        if (r := refused(request)) is not None:
            return r
        body = await _body(request)
        try:
            direction = [float(body.get(k, 0.0)) for k in ("x", "y", "z")]
        except (AttributeError, TypeError, ValueError):
            return JSONResponse({"error": "keys: expected {x, y, z} in -1..1 and fast"}, status_code=400)
        hub.set_motion(direction, bool(body.get("fast", False)))
        return JSONResponse({"ok": True})

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/state", state),
              Route("/api/events", events), Route("/api/frame/{camera}", frame), Route("/api/raw/{camera}", raw),
              Route("/api/command", command, methods=["POST"]), Route("/api/keys", keys, methods=["POST"])]
    return Starlette(routes=routes)


def _refusal(request, token: str | None):
    """None when the request may pass; else the refusal: 401 without a token, 403 with a wrong one."""
    from starlette.responses import JSONResponse

    if token is None:
        return None
    got = request.headers.get("authorization", "")
    got = got[7:] if got.startswith("Bearer ") else request.query_params.get("token", "")
    if not got:
        return JSONResponse({"error": f"this console requires its token ({TOKEN_ENV}); open the page with "
                             "#token=<token> or send Authorization: Bearer <token>"}, status_code=401)
    if not hmac.compare_digest(got.encode(), token.encode()):
        return JSONResponse({"error": "wrong token"}, status_code=403)
    return None


async def _body(request):
    try:
        return json.loads((await request.body())[:10_000] or b"{}")
    except ValueError:
        return {}


async def _feed(hub: ConsoleHub, request, since: int):
    """The live feed: the state when it changed, then each new event; ends when the hub closes or the page
    goes away. It only reads the hub, so a slow page only slows its own feed."""
    last = None
    seq = since
    yield "retry: 1000\n\n"
    while not hub.closed:
        values, version, cameras = hub.state()
        current = _dumps({"state": values, "frame_version": version, "cameras": cameras})
        if current != last:
            last = current
            yield f"event: state\ndata: {current}\n\n"
        new, seq_now = hub.events_since(seq)
        for s, kind, data in new:
            yield f"id: {s}\nevent: {kind}\ndata: {_dumps(data)}\n\n"
        seq = seq_now
        if await request.is_disconnected():
            break
        await asyncio.sleep(FEED_PERIOD_S)


class ConsoleServer:
    """uvicorn serving `build_app(hub, token)` from a daemon thread (its own event loop)."""

    def __init__(self, hub: ConsoleHub, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None):
        import uvicorn

        check_console_bind(host, token)
        self.hub, self.host, self.token = hub, host, token
        config = uvicorn.Config(build_app(hub, token), host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.port = port
        self.thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> "ConsoleServer":
        self.thread = threading.Thread(target=self.server.run, name="hilserl-console", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConsoleError(f"the console could not listen on {self.host}:{self.port} (in use? choose "
                                   "another with --console_port)")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        self.hub.close()
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=5)
