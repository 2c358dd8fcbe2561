"""`dojo app`: the web app (webapp/) on this machine — parser and action, printed through cli._Output."""
from __future__ import annotations

import os
import secrets

from rich.markup import escape


def add_parser(command) -> None:
    app = command("app", "The web app: upload data, train with live curves, compare runs, try and export models, "
                  "in English or Japanese. Offline; 127.0.0.1 only unless --host (then a token is required).",
                  "dojo app\n  dojo app --port 8800 --runs-dir runs --max-upload-mb 500")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    app.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    app.add_argument("--token", help="require this token (default: $DOJO_APP_TOKEN; one is made up when --host is "
                                     "not a loopback address)")
    app.add_argument("--max-upload-mb", type=float, default=200, help="largest upload in MB (default 200)")
    app.add_argument("--max-queued", type=int, default=3, help="runs that may wait behind the training one "
                                                               "(default 3; more are refused)")
    app.add_argument("--no-tracking", action="store_true", help="do not record the app's runs in MLflow")


def app(args, out) -> int:
    from .environment import extra_installed
    from .errors import ConfigError

    if not extra_installed("app"):
        raise ConfigError("dojo app needs the web stack: pip install 'modeldojo[app]' (FastAPI, uvicorn, Jinja2)")
    import uvicorn

    from .commands import _runs_dir
    from .webapp.app import LOOPBACK_HOSTS, AppSettings, create_app

    token = args.token or os.environ.get("DOJO_APP_TOKEN") or None
    if token is None and args.host not in LOOPBACK_HOSTS:
        token = secrets.token_urlsafe(18)  # reachable from other machines: never without a token
    runs_dir = str(_runs_dir(args))
    settings = AppSettings(runs_dir=runs_dir, token=token, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                           max_queued=args.max_queued, tracking=not args.no_tracking)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else f"[{args.host}]" if ":" in args.host else args.host
    address = f"http://{shown}:{args.port}/"
    out.say(f"modeldojo app on [bold]{escape(address + (f'?token={token}' if token else ''))}[/] "
            f"(runs in {escape(runs_dir)}); Ctrl+C stops")
    # Open live pages keep an event stream going: shutdown waits 5 s for them, not forever.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=5)
    return 0
