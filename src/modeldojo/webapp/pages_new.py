"""Starting a run: upload → preview with the target pre-selected → the data checks → a few settings → Start.

The task and target come from the same code the command line uses (api.suggest, api.check), so the page shows
before any compute exactly the problems `dojo train` would stop on. Start queues `dojo train` with the choices
as its flags (jobs.py) and goes to the run's live page.
"""
import datetime as dt
import re
from pathlib import Path

from .. import api, tasks
from ..config import Config
from ..errors import DojoError, NotFoundError
from ..runs import NAME
from . import uploads
from .jobs import Busy
from fastapi import File, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

PREVIEW_ROWS = 10
STRATEGIES = ("auto", "full", "head", "freeze", "lora")


def _data_path(app, upload_id: str) -> Path:
    folder = uploads.folder_of(app.state.uploads, upload_id)
    entries = sorted(folder.iterdir())
    return entries[0] if len(entries) == 1 else folder


def _default_name(path: Path, runs_dir: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "run"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stem[:40]}-{stamp}"
    number = 2
    while (runs_dir / name).exists():
        name, number = f"{stem[:40]}-{stamp}-{number}", number + 1
    return name


def _setup_values(path: Path, target: str | None) -> dict:
    """Preview, the suggested task/target and the check report: everything the setup page shows."""
    frame = tasks.read(str(path))
    columns = [str(c) for c in frame.columns]
    chosen = Config().with_overrides({"data.target": target}) if target in columns else Config()
    suggested = api.suggest(frame, chosen)
    report = api.check(str(path), target=suggested["target"])  # by path: its messages name the file
    task_class = tasks.get(suggested["task"])
    preview = frame.head(PREVIEW_ROWS)
    return {"columns": suggested["columns"], "target": suggested["target"], "task": task_class.name,
            "neural": task_class.neural, "report": report, "preview_columns": [str(c) for c in preview.columns],
            "preview_rows": preview.astype(object).where(preview.notna(), "").values.tolist(),
            "total_rows": len(frame), "strategies": STRATEGIES}


def _shown(error: Exception, app, upload_id: str) -> str:
    """The message with the upload's server-side folder left out: the user knows the file by its own name."""
    return str(error).replace(str(app.state.uploads / upload_id) + "/", "")


def train_arguments(path: Path, form: dict, runs_dir: Path, tracking: bool) -> list[str]:
    arguments = [str(path), "--name", form["name"], "--runs-dir", str(runs_dir)]
    if form.get("target"):
        arguments += ["--target", form["target"]]
    if not tracking:
        arguments.append("--no-tracking")
    if (form.get("model") or "auto") != "auto":
        arguments += ["--model", form["model"]]
    if (form.get("strategy") or "auto") != "auto":
        arguments += ["--strategy", form["strategy"]]
    if form.get("epochs"):
        arguments += ["--epochs", str(int(form["epochs"]))]
    if form.get("time_budget"):
        arguments.append(f"train.time_limit={float(form['time_budget'])}")
    return arguments


def add_routes(app) -> None:
    render = app.state.render
    settings = app.state.settings

    @app.get("/new", response_class=HTMLResponse)
    def new_run(request: Request):
        return render(request, "new.html")

    @app.post("/new", response_class=HTMLResponse)
    async def upload(request: Request, file: UploadFile = File(...)):
        try:
            path = await run_in_threadpool(uploads.save, file.file, file.filename or "data", app.state.uploads,
                                           settings.max_upload_bytes)
        except DojoError as error:
            return render(request, "new.html", status_code=400, problem=str(error))
        upload_id = path.relative_to(app.state.uploads).parts[0]
        return RedirectResponse(f"/new/{upload_id}", status_code=303)

    @app.get("/new/{upload_id}", response_class=HTMLResponse)
    async def setup(request: Request, upload_id: str, target: str | None = None):
        try:
            path = _data_path(app, upload_id)
            values = await run_in_threadpool(_setup_values, path, target)
        except NotFoundError:
            raise  # a 404 page, not a complaint about a file
        except DojoError as error:  # unreadable file: the CLI's own message (file, line, column)
            return render(request, "new.html", status_code=400, problem=_shown(error, app, upload_id))
        return render(request, "setup.html", upload_id=upload_id, file_name=path.name,
                      name=_default_name(path, Path(settings.runs_dir)), **values)

    @app.get("/new/{upload_id}/checks", response_class=HTMLResponse)
    async def checks_part(request: Request, upload_id: str, target: str | None = None):
        try:
            values = await run_in_threadpool(_setup_values, _data_path(app, upload_id), target)
        except NotFoundError:
            raise
        except DojoError as error:
            return render(request, "part_problem.html", problem=_shown(error, app, upload_id))
        return render(request, "part_checks.html", **values)

    @app.post("/new/{upload_id}/start", response_class=HTMLResponse)
    async def start(request: Request, upload_id: str):
        form = {key: str(value).strip() for key, value in (await request.form()).items()}
        try:
            path = _data_path(app, upload_id)
            if not NAME.match(form.get("name", "")) or ".." in form["name"]:
                raise DojoError(f"run name {form.get('name')!r}: use letters, digits, '.', '_' or '-'")
            if (Path(settings.runs_dir) / form["name"]).exists():
                raise DojoError(f"a run named {form['name']!r} exists already; choose another name")
            arguments = train_arguments(path, form, Path(settings.runs_dir), settings.tracking)
            app.state.jobs.submit(form["name"], arguments)
        except (DojoError, Busy, ValueError) as error:
            values = await run_in_threadpool(_setup_values, _data_path(app, upload_id), form.get("target"))
            return render(request, "setup.html", status_code=409, upload_id=upload_id, file_name=path.name,
                          name=form.get("name", ""), refused=str(error), **values)
        return RedirectResponse(f"/runs/{form['name']}", status_code=303)
