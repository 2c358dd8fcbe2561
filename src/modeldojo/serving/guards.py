"""ASGI middleware in front of every route: metrics and timing, bearer-token auth, and a body limit that
answers 413 from the Content-Length header (or as soon as a chunked body passes the limit) without reading
the rest. Plain ASGI, not BaseHTTPMiddleware: it costs less per request and never buffers bodies."""
from __future__ import annotations

import hmac
import json
import time

from .metrics import Metrics

OPEN_PATHS = ("/v2/health/live",)  # liveness stays answerable without a token (orchestrators probe it)


def error_body(path: str, message: str) -> dict:
    """The Open Inference Protocol's routes answer errors as {"error"} (what its clients read), OpenAI-style
    routes (/v1) as {"error": {"message", "type", …}} (what the openai client reads), the others as {"detail"}
    (FastAPI's convention)."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return {"error": message} if path.startswith("/v2") else {"detail": message}


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(scope, send)
        received, started, refused = 0, False, False

        async def counted_receive():
            # A chunked body over the limit: answer 413 now and tell the app the client left, so it stops
            # reading (an exception here would become FastAPI's generic 400).
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not refused:
                    refused = True
                    if not started:
                        await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if refused:
                return  # the 413 is already on its way
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, tracked_send)

    async def _refuse(self, scope, send):
        await send_json(send, 413, error_body(scope["path"], f"request body over the limit of {self.max_bytes} "
                                                             "bytes (--max-body-bytes)"), [(b"connection", b"close")])


class BearerAuth:
    def __init__(self, app, token: str | None) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send):
        if self.expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):  # constant time: no timing oracle on the key
            return await send_json(send, 401, error_body(scope["path"], "missing or invalid bearer token "
                                                                        "(Authorization: Bearer <api key>)"),
                                   [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


class Measure:
    """Counts and times every request under its route template (/v2/models/{name}/infer, not each name)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def tracked_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
