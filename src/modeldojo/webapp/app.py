"""`dojo app`: the whole workflow in a browser — upload data, train with live curves, compare runs, try and
export a model. Offline: every script and style is served from this package (static/vendor, pinned npm files).

Server-rendered pages (Jinja2) with htmx for the small updates, live progress over server-sent events read from
the run's events.jsonl (tracking/event_log.py), and training in a `dojo train` process per run (jobs.py). The
pages are split by what they do: starting a run (pages_new.py), watching and comparing runs (pages_runs.py),
using a trained model (pages_model.py).

Hardening as for `dojo serve`: 127.0.0.1 by default; an optional token (`--token`, or $DOJO_APP_TOKEN) asked once
as ?token=… and then kept in an HttpOnly, SameSite=Strict cookie (so other sites cannot post with it); a body
limit from the upload limit; without a token, requests must name this machine in their Host header (a page
on another site cannot reach the app through DNS rebinding).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ..errors import NotFoundError
from ..serving.guards import BodyLimit, send_json
from . import i18n
from .jobs import Jobs
from .uploads import human_size

HERE = Path(__file__).parent
TOKEN_COOKIE, LANGUAGE_COOKIE = "dojo_token", "dojo_lang"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
FORM_OVERHEAD = 16 << 10  # multipart headers and the form's other fields, on top of the file itself


@dataclass
class AppSettings:
    runs_dir: str = "runs"
    token: str | None = None
    max_upload_bytes: int = 200 << 20
    max_queued: int = 3
    tracking: bool = True  # runs started here are recorded in MLflow like the CLI's


class Guard:
    """Token (cookie, bearer header or ?token=) and Host checks in front of every route, as plain ASGI."""

    def __init__(self, app, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        if scope["method"] not in SAFE_METHODS and _cross_site(headers):
            # A page on another site posting a form here (the browser adds Origin / Sec-Fetch-Site): refused,
            # token or not, so no other site can start, stop or export anything.
            return await send_json(send, 403, {"detail": "refused: this request comes from another site"})
        if self.token is None:
            if host and host not in LOOPBACK_HOSTS:
                return await send_json(send, 403, {"detail": f"host {host!r} refused: without --token the app "
                                                   "answers only requests addressed to 127.0.0.1 or localhost"})
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [""])[0]
        cookies = headers.get(b"cookie", b"").decode("latin-1")
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE and not given:
                given = value
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        if bearer.startswith("Bearer ") and not given:
            given = bearer[7:]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return await send_json(send, 401, {"detail": "this app needs its token: open the address `dojo app` "
                                               "printed (…/?token=…) or send Authorization: Bearer <token>"})

        async def with_cookie(message):
            if message["type"] == "http.response.start" and (query.get("token") or [""])[0]:
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def _host_name(header: str) -> str:
    """'127.0.0.1:8765' → '127.0.0.1', '[::1]:8765' → '::1', 'LOCALHOST' → 'localhost'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _cross_site(headers: dict[bytes, bytes]) -> bool:
    if headers.get(b"sec-fetch-site", b"").decode("latin-1") == "cross-site":
        return True
    origin = headers.get(b"origin", b"").decode("latin-1")
    if not origin or origin == "null":
        return origin == "null"  # a sandboxed or file:// page; a same-site request may carry no Origin at all
    authority = origin.split("://", 1)[-1].lower()
    return authority != headers.get(b"host", b"").decode("latin-1").strip().lower()


class UploadLimit(BodyLimit):
    async def _refuse(self, scope, send):
        await send_json(send, 413, {"detail": f"the file is larger than the upload limit of "
                                              f"{human_size(self.max_bytes)} (dojo app --max-upload-mb)"},
                        [(b"connection", b"close")])


def create_app(settings: AppSettings | None = None):
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates

    from . import pages_model, pages_new, pages_runs

    settings = settings or AppSettings()
    runs_dir = Path(settings.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    jobs = Jobs(runs_dir, settings.max_queued)
    app = FastAPI(title="modeldojo app", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.jobs = settings, jobs
    app.state.uploads = runs_dir / ".uploads"
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        language = i18n.choose(request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE),
                               request.headers.get("accept-language"))
        response = templates.TemplateResponse(request, template, {"t": i18n.translator(language), "lang": language,
                                                              "limit": human_size(settings.max_upload_bytes),
                                                              "limit_bytes": settings.max_upload_bytes,
                                                              **values}, status_code=status_code)
        if request.query_params.get("lang") in i18n.LANGUAGES:  # the switch: remembered from now on
            response.set_cookie(LANGUAGE_COOKIE, language, samesite="strict", max_age=365 * 86400)
        return response

    app.state.render = render

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError):  # a bad run name or upload id in the address
        return render(request, "part_problem.html", status_code=404, problem_key="not_found", what=str(error),
                      page=True)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (pages_new, pages_runs, pages_model):
        module.add_routes(app)

    @app.on_event("shutdown")
    def stop_jobs() -> None:
        jobs.close()

    guarded = Guard(UploadLimit(app, settings.max_upload_bytes + FORM_OVERHEAD), settings.token)
    guarded.fastapi = app  # tests reach the routes' state through this
    return guarded
