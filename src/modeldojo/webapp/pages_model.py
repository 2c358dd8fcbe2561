"""Using a trained model from the browser: Try it (a form drawn from the task's codec, answered by the same
Predictor `dojo serve` uses) and Export (the `dojo export` command with its parity check, and the command that
serves the result)."""
import json
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .. import tasks
from ..config import Config
from ..errors import DojoError
from ..runs import Run
from .pages_runs import _run_dir
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

KEPT_PREDICTORS = 2  # loaded models kept in memory (a text model holds a few hundred MB)
EXPORT_TIMEOUT_S = 1800


class Predictors:
    """Loaded predictors by run name, the least recently used dropped first; loading is once per run."""

    def __init__(self, runs_dir: str) -> None:
        self.runs_dir, self._loaded, self._lock = runs_dir, OrderedDict(), threading.Lock()

    def get(self, name: str):
        from ..serving.predictor import open_predictor

        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            # The run's own model, not an export: Try it answers as soon as training ends.
            predictor = open_predictor(name, self.runs_dir, backend="native")
            self._loaded[name] = predictor
            while len(self._loaded) > KEPT_PREDICTORS:
                self._loaded.popitem(last=False)
            return predictor


def example_values(run: Run, features: list[str]) -> dict[str, Any]:
    """The first row of the run's training file, to fill the form with something real."""
    config = Config.from_dict((run.read_json("model/meta.json") or {}).get("config") or {}) \
        if (run.directory / "model" / "meta.json").is_file() else None
    if config is None or not config.data.path or not Path(config.data.path).exists():
        return {}
    try:
        frame = tasks.read(config.data.path, format=config.data.format, delimiter=config.data.delimiter,
                           encoding=config.data.encoding)
    except DojoError:
        return {}
    row = frame.head(1).to_dict("records")
    return {column: ("" if value is None or value != value else value)
            for column, value in (row[0] if row else {}).items() if column in features}


def _answer_view(answers: list[dict[str, Any]]) -> dict[str, Any]:
    answer = answers[0] if answers else {}
    probabilities = answer.get("probabilities") or {}
    ranked = sorted(probabilities.items(), key=lambda item: -(item[1] or 0))[:10]
    main = next((answer[key] for key in ("label", "value", "answer") if key in answer), None)
    return {"main": main, "probabilities": ranked,
            "raw": json.dumps(answers if len(answers) != 1 else answer, ensure_ascii=False, indent=1)}


def export_run(runs_dir: str, name: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "modeldojo.cli", "export", name, "--runs-dir", runs_dir, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    try:  # --json: one JSON document on stdout (human output goes to stderr)
        result = json.loads(done.stdout) if done.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {}
    if done.returncode != 0 or "error" in result:
        return {"ok": False, "message": result.get("error") or (done.stderr or done.stdout).strip()[-2000:]}
    return {"ok": True, "folder": result.get("folder"), "parity": result.get("parity") or {},
            "summary": result.get("summary"), "forced": result.get("forced"),
            "serve": f"dojo serve {result.get('folder')}"}


def add_routes(app) -> None:
    render = app.state.render
    settings = app.state.settings
    predictors = Predictors(settings.runs_dir)
    app.state.predictors = predictors
    exporting: set[str] = set()

    def ready(name: str) -> Run | None:
        run = Run(_run_dir(app, name))
        return run if run.status().get("status") == "completed" else None

    @app.get("/runs/{name}/try", response_class=HTMLResponse)
    async def try_page(request: Request, name: str):
        run = ready(name)
        if run is None:
            return render(request, "part_problem.html", status_code=409, problem_key="model_not_ready", page=True)
        predictor = await run_in_threadpool(predictors.get, name)
        fields = predictor.codec.form_fields()
        examples = await run_in_threadpool(example_values, run, [field["name"] for field in fields])
        return render(request, "try.html", name=name, fields=fields, examples=examples, task=predictor.task)

    @app.post("/runs/{name}/try", response_class=HTMLResponse)
    async def try_predict(request: Request, name: str):
        if ready(name) is None:
            return render(request, "part_problem.html", status_code=409, problem_key="model_not_ready")
        form = await request.form()
        predictor = await run_in_threadpool(predictors.get, name)
        fields = predictor.codec.form_fields()
        try:
            uploads = [(await form[field["name"]].read(), field["name"]) for field in fields
                       if field["widget"] == "image" and hasattr(form.get(field["name"]), "read")]
            if uploads:
                records = predictor.codec.upload_records(uploads)
            else:
                item = {field["name"]: str(form.get(field["name"], "")) for field in fields}
                records = predictor.codec.records([item])
            prediction = await run_in_threadpool(predictor.predict_records, records)
        except (ValueError, DojoError) as error:  # the same messages the HTTP API gives
            return render(request, "part_problem.html", status_code=422, problem=str(error))
        return render(request, "part_answer.html", **_answer_view(predictor.answers(prediction)),
                      widget=fields[0]["widget"] if len(fields) == 1 else "form")

    @app.post("/runs/{name}/export", response_class=HTMLResponse)
    async def export(request: Request, name: str):
        if ready(name) is None:
            return render(request, "part_problem.html", status_code=409, problem_key="model_not_ready")
        if name in exporting:  # a double click: one export per run at a time (they would share a folder)
            return render(request, "part_problem.html", status_code=409, problem_key="export_busy")
        exporting.add(name)
        try:
            result = await run_in_threadpool(export_run, settings.runs_dir, name)
        finally:
            exporting.discard(name)
        return render(request, "part_export.html", status_code=200 if result["ok"] else 422, **result)
