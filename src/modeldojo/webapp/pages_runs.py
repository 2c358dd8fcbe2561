"""Watching and comparing runs: the runs table, a run's live page (server-sent events from its events.jsonl),
Stop / Resume, the side-by-side comparison, and the run's own report, model card and checks."""
import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from .. import tasks
from ..errors import NotFoundError
from ..runs import NAME, Run, list_runs
from ..tracking import event_log
from .jobs import Busy
from fastapi import Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

FINAL = ("completed", "failed", "stopped", "cancelled")
EVENT_POLL_S = 0.25  # the live page's curves move at least this often while events arrive
LOG_TAIL_LINES = 30


def _run_dir(app, name: str) -> Path:
    if not NAME.match(name) or ".." in name:  # a name is one folder under the runs folder, never a path
        raise NotFoundError(f"run {name!r}")
    return Path(app.state.settings.runs_dir) / name


def _primary(task: str | None, kind: str | None) -> str | None:
    """The task's main metric (what `dojo runs` shows); None for a task this install lacks."""
    try:
        return tasks.get(task).primary_metric(kind or "") if task else None
    except Exception:  # noqa: BLE001 - an unknown task or kind: no main metric to name
        return None


def _main_metric(row: dict[str, Any]) -> tuple[str | None, Any]:
    test = (row.get("metrics") or {}).get("test") or {}
    if not test:
        return None, None
    name = _primary(row.get("task"), row.get("kind")) or next(iter(test), None)
    return name, test.get(name)


def _duration(status: dict[str, Any]) -> float | None:
    import datetime as dt

    try:
        start = dt.datetime.fromisoformat(status.get("resumed") or status["started"])
        end = dt.datetime.fromisoformat(status.get("finished") or status["updated"])
    except (KeyError, TypeError, ValueError):
        return None
    return round((end - start).total_seconds(), 1)


def _tail(path: Path, size: int = 16 << 10) -> list[str]:
    """The last lines of a process log, reading only its end (pages poll this several times a second)."""
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def run_state(app, name: str) -> dict[str, Any]:
    """Status as the page shows it: the job's (queued, training) first, else the run folder's."""
    job = app.state.jobs.state(name)
    directory = _run_dir(app, name)
    status = Run(directory).status() if (directory / "status.json").is_file() else {}
    state = status.get("status", "unknown")
    if job and job["state"] in ("queued", "cancelled"):
        state = job["state"]
    elif job and job["state"] == "running" and state not in ("running",):
        state = "running"  # the process has started; its run folder follows in a moment
    elif job and job["state"] == "finished" and state in ("running", "unknown"):
        state = "failed"  # it ended without marking its run: killed, or stopped by bad data before the run began
    elif job is None and state == "running" and status.get("host") == socket.gethostname() \
            and not _alive(status.get("pid")):
        state, status["error"] = "failed", "the training process ended without finishing (the app or the machine " \
                                           "stopped)"  # Resume continues from its last checkpoint
    log_path = app.state.jobs.log_path(name)
    tail = _tail(log_path)
    if state == "failed" and not status.get("error") and len(tail) > 1:
        status["error"] = tail[-1]  # the command's own message (file, line, column), as the CLI printed it
    return {"name": name, "state": state, "error": status.get("error"), "job": job, "log_tail": tail,
            "primary": _primary(status.get("task"), status.get("kind")),
            "resumable": Run(directory).resumable() if directory.is_dir() else False,
            "exists": directory.is_dir() or job is not None}


def runs_table(app) -> list[dict[str, Any]]:
    rows = []
    for row in list_runs(app.state.settings.runs_dir):
        if not NAME.match(row["name"]) or ".." in row["name"]:
            continue  # a folder someone copied by hand ("run (copy)"): not addressable, not listed
        metric, value = _main_metric(row)
        status = Run(_run_dir(app, row["name"])).status()
        rows.append({**row, "state": run_state(app, row["name"])["state"], "metric": metric, "value": value,
                     "duration": _duration(status)})
    known = {row["name"] for row in rows}
    for name, state in app.state.jobs.active():  # queued runs have no folder yet
        if name not in known:
            rows.append({"name": name, "state": state, "task": None, "metric": None, "value": None,
                         "started": None, "duration": None})
    return sorted(rows, key=lambda row: row.get("started") or "9999", reverse=True)


def curves(directory: Path) -> dict[str, list[list[float]]]:
    """metric name → [[step …], [value …]] from the run's events (per-step loss, per-evaluation scores)."""
    found: dict[str, dict[float, float]] = {}
    events, _ = event_log.read(directory)
    for event in events:
        if event.get("event") == "metrics" and event.get("step") is not None:
            for metric, value in event["metrics"].items():
                if value is not None and not metric.startswith(("test_", "fit_")) and metric != "val_rows":
                    found.setdefault(metric, {})[float(event["step"])] = float(value)
    return {metric: [list(points), list(points.values())] for metric, points in found.items()}


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        out = {}
        for key, value in values.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: values}


def comparison(app, names: list[str]) -> dict[str, Any]:
    configs, metrics, series = {}, {}, {}
    for name in names:
        directory = _run_dir(app, name)
        path = directory / "config.yaml"
        configs[name] = _flat(yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
        metrics[name] = ((Run(directory).read_json("metrics.json") or {}).get("test") or {})
        series[name] = curves(directory)
    keys = sorted(set().union(*configs.values()))
    differing = [(key, [configs[name].get(key) for name in names]) for key in keys
                 if len({json.dumps(configs[name].get(key), sort_keys=True, default=str) for name in names}) > 1
                 and key not in ("run.name",)]
    metric_names = [m for m in dict.fromkeys(m for name in names for m in metrics[name])
                    if all(isinstance(metrics[name].get(m), (int, float, type(None))) for name in names)]
    charts = {}
    for name in names:
        for metric, points in series[name].items():
            charts.setdefault(metric, {})[name] = points
    return {"names": names, "differing": differing, "metric_names": metric_names, "metrics": metrics,
            "charts": charts}


def add_routes(app) -> None:
    render = app.state.render

    def missing(request, what: str):
        return render(request, "part_problem.html", status_code=404, problem=what, page=True)

    @app.get("/", response_class=HTMLResponse)
    async def runs_page(request: Request):
        return render(request, "runs.html", runs=await run_in_threadpool(runs_table, app))

    @app.get("/api/runs")
    async def runs_json():
        return JSONResponse(await run_in_threadpool(runs_table, app))

    @app.get("/runs/{name}", response_class=HTMLResponse)
    async def run_page(request: Request, name: str):
        state = run_state(app, name)
        if not state["exists"]:
            return missing(request, f"run {name!r}")
        return render(request, "run.html", run=state)

    @app.get("/runs/{name}/state")
    async def state_json(name: str):
        return JSONResponse(run_state(app, name))

    @app.get("/runs/{name}/events")
    async def events(request: Request, name: str):
        directory = _run_dir(app, name)
        if not run_state(app, name)["exists"]:
            raise NotFoundError(f"run {name!r}")

        async def stream():
            offset, last_state, quiet = 0, None, 0
            while True:
                # The state first: it names the task's main metric, which picks the validation curve to draw.
                state = await run_in_threadpool(run_state, app, name)
                found, offset = await run_in_threadpool(event_log.read, directory, offset)
                shown = {key: state[key] for key in ("state", "error", "job", "resumable", "primary")}
                if shown != last_state:  # only changes; the log's tail matters once the run has ended
                    tail = state["log_tail"] if state["state"] in FINAL else []
                    yield f"event: state\ndata: {json.dumps({**shown, 'log_tail': tail})}\n\n"
                    last_state = shown
                for event in found:  # one message per event: the page redraws as each arrives
                    yield f"event: dojo\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
                quiet = quiet + 1 if state["state"] in FINAL and not found else 0
                # Ended, and nothing new twice in a row: the process's last lines (written after its status) are in.
                if quiet >= 2 or await request.is_disconnected():
                    yield "event: end\ndata: {}\n\n"
                    return
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/runs/{name}/stop", response_class=HTMLResponse)
    async def stop(request: Request, name: str):
        outcome = app.state.jobs.stop(name)  # cancelled, stopping or idle
        return render(request, "part_note.html", note_key=f"stop_{outcome}")

    @app.post("/runs/{name}/resume")
    async def resume(request: Request, name: str):
        directory = _run_dir(app, name)
        arguments_file = app.state.jobs.logs / f"{name}.args.json"
        if not arguments_file.is_file():
            return render(request, "part_problem.html", status_code=404, page=True,
                          problem=f"run {name!r} was not started from this app: resume it with dojo train --resume")
        state = run_state(app, name)
        if state["state"] not in ("stopped", "failed"):  # a completed run is never trained over
            return render(request, "part_problem.html", status_code=409, page=True,
                          problem=f"run {name!r} is {state['state']}: only a stopped or failed run can be resumed")
        arguments = json.loads(arguments_file.read_text(encoding="utf-8"))
        restart = not Run(directory).resumable()  # no checkpoint (a booster, or stopped early): start over
        try:
            app.state.jobs.submit(name, [*arguments, "--overwrite"] if restart else arguments, remember=False)
        except Busy as error:
            return render(request, "part_problem.html", status_code=409, problem=str(error), page=True)
        return RedirectResponse(f"/runs/{name}", status_code=303)

    @app.get("/runs/{name}/summary", response_class=HTMLResponse)
    async def summary(request: Request, name: str):
        run = Run(_run_dir(app, name))
        metrics = (run.read_json("metrics.json") or {}).get("test") or {}
        shown = {key: value for key, value in metrics.items() if isinstance(value, (int, float))}
        previous = [row["name"] for row in await run_in_threadpool(runs_table, app)
                    if row["name"] != name and row.get("metric")]  # newest first
        return render(request, "part_summary.html", name=name, metrics=shown, state=run_state(app, name),
                      previous=previous[0] if previous else None)

    @app.get("/compare", response_class=HTMLResponse)
    async def compare(request: Request, runs: list[str] = Query(default=[])):
        names = list(dict.fromkeys(runs))
        if not 2 <= len(names) <= 5 or any(not _run_dir(app, name).is_dir() for name in names):
            return render(request, "runs.html", status_code=400, runs=await run_in_threadpool(runs_table, app),
                          problem_key="compare_pick")
        return render(request, "compare.html", **await run_in_threadpool(comparison, app, names))

    @app.get("/runs/{name}/report")
    async def report(request: Request, name: str):
        path = _run_dir(app, name) / "report.html"
        return FileResponse(path) if path.is_file() else missing(request, f"{name}/report.html")

    @app.get("/runs/{name}/card", response_class=HTMLResponse)
    async def card(request: Request, name: str):
        path = _run_dir(app, name) / "MODEL_CARD.md"
        if not path.is_file():
            return missing(request, f"{name}/MODEL_CARD.md")
        return render(request, "text.html", title=f"{name}: MODEL_CARD.md", text=path.read_text(encoding="utf-8"))

    @app.get("/runs/{name}/checks", response_class=HTMLResponse)
    async def checks(request: Request, name: str):
        found = Run(_run_dir(app, name)).read_json("checks.json")
        if found is None:
            return missing(request, f"{name}/checks.json")
        return render(request, "checks.html", name=name, checks=found)
