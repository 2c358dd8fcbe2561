"""`dojo serve`: uvicorn (uvloop + httptools) running the app, one process per --workers, each with its own
model, batcher and bounded queue, and cores ÷ workers inference threads."""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from .app import Settings, create_app
from .predictor import open_predictor

ENVIRONMENT = "MODELDOJO_SERVE"  # how worker processes get their settings (uvicorn imports the app anew)


def app_from_environment():
    """The uvicorn factory: every worker process builds its app from the settings the parent wrote."""
    options = json.loads(os.environ[ENVIRONMENT])
    settings = Settings(**options.pop("settings"))
    task = options.pop("task", None)
    return create_app(lambda: open_predictor(**options), settings, task)


def task_of(reference: str, runs_dir: str) -> str:
    """Fail in the parent with a clear error before any worker starts: the reference exists and is readable."""
    from ..export.runtime import is_export, read_manifest
    from ..runs import META_FILE, Run

    if is_export(Path(reference)):
        return read_manifest(Path(reference))["task"]
    run = Run.open(reference, runs_dir)
    return json.loads((run.model_dir / META_FILE).read_text(encoding="utf-8"))["task"]


def serve(reference: str, *, runs_dir: str = "runs", host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          backend: str = "auto", name: str | None = None, threads: int = 0, drain_timeout: float = 30.0,
          log_level: str = "info", **settings) -> None:
    import uvicorn

    from .. import tasks

    task = task_of(reference, runs_dir)
    body_limit = tasks.get(task).codec.max_body_bytes  # photos need more than tables
    if body_limit and "max_body_bytes" not in settings:
        settings["max_body_bytes"] = body_limit
    deadline = tasks.get(task).codec.timeout_s  # generating an answer takes longer than scoring a row
    if deadline and "timeout_s" not in settings:
        settings["timeout_s"] = deadline
    cores = os.cpu_count() or 1
    options = {"reference": str(reference), "runs_dir": str(runs_dir), "backend": backend, "name": name,
               "threads": threads or max(1, cores // workers), "settings": asdict(Settings(**settings)),
               "task": task}
    os.environ[ENVIRONMENT] = json.dumps(options)
    # After uvicorn's graceful shutdown it re-raises the SIGTERM it caught: exit 0 then, not "killed".
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run("modeldojo.serving.server:app_from_environment", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http="httptools", log_level=log_level,
                timeout_graceful_shutdown=drain_timeout, access_log=False, server_header=False)
