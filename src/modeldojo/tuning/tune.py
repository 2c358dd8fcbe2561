"""`dojo tune` / `dojo.tune()`: read and check the data once, run the study, write the results.

A study is a run folder (`runs/<name>/`): `study.db` (Optuna, SQLite — running the same command again
resumes it), `trials.csv`, `best.yaml` (the full config with the best values: `dojo train best.yaml`
trains it), `study.json` (metric, direction, best value and parameters, trial counts) and `report.html`
(optimisation history, parameter importances, slice and parallel-coordinates plots).

Several machines share a study through one database: each runs `dojo tune CONFIG --storage
postgresql://… --name STUDY`; each writes its own copy of the outputs from the shared trials when it ends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import api, events as ev, runs as runs_module
from ..config import Config
from ..errors import ConfigError
from ..runs import Run
from . import report as report_module
from . import space as space_module
from . import study as study_module
from . import workers as workers_module
from .storage import redact


@dataclass
class TuneResult:
    run: Run
    best_value: float
    best_params: dict[str, Any]
    metric: str
    direction: str
    trials: pd.DataFrame
    best_config: Path
    counts: dict[str, int]


def tune(data=None, target: str | None = None, *, config: Config | str | Path | None = None,
         overrides: list[str] | dict[str, Any] | None = None, events: ev.EventBus | None = None,
         **shortcuts: Any) -> TuneResult:
    """Search hyperparameters; `workers=W` runs W processes (call it under `if __name__ == "__main__":`
    in a script, as for any multiprocessing code)."""
    config = api.resolve_config(data, target, config, overrides, **shortcuts)
    if config.tune.storage and not config.run.name:
        raise ConfigError("tune.storage is set: pass --name (run.name) so every worker and machine joins the "
                          "same study")
    bus = events or ev.EventBus()
    prepared = api.prepare(data, config)
    config = prepared.config
    bus.emit(ev.CHECKS_DONE, report=prepared.checks)
    from .. import tasks

    if tasks.get(prepared.task_name).no_tuning:
        raise ConfigError(f"dojo tune: {tasks.get(prepared.task_name).no_tuning}")
    if not config.tune.cv and config.data.validation_fraction <= 0 and prepared.validation is None:
        raise ConfigError("tune scores trials on the validation split: set data.validation_fraction > 0, "
                          "give data.validation_path, or use --cv K")
    api.require_enough_rows(prepared, config.tune.cv)  # too few rows: one message now, not a failure per trial
    run = _study_run(config, prepared.task_name)
    storage = config.tune.storage or f"sqlite:///{(run.directory / 'study.db').resolve()}"
    started = time.perf_counter()
    tracker = None
    try:
        run.set_status("running", kind="tune", task=prepared.task_name)
        run.write_text("config.yaml", config.to_yaml())
        study, dimensions = study_module.load(prepared, storage, run.name)
        if config.tracking.enabled:
            from .tracking import StudyTracker

            tracker = StudyTracker(config)
            tracker.start(study, run, config)
        ended = workers_module.run_all(prepared, storage, run.name, study, dimensions, bus=bus, tracker=tracker)
        study_module.require_complete(study)
        summary = study_module.summary(study, config, prepared.kind, started)
        result = _write_outputs(run, study, dimensions, config, summary, storage, ended)
        if tracker:
            tracker.finish(run, {"metric": summary["metric"], "value": study.best_value,
                                 "trial": study.best_trial.number})
        run.set_status("completed", finished=runs_module.now(), kind="tune")
    except BaseException as error:
        run.set_status("failed", finished=runs_module.now(), error=f"{type(error).__name__}: {error}")
        if tracker:
            tracker.finish(run, None, failed=f"{type(error).__name__}: {error}")
        raise
    return result


def _write_outputs(run: Run, study, dimensions, config: Config, summary: dict[str, Any], storage: str,
                   ended: list[dict[str, Any]]) -> TuneResult:
    table = pd.DataFrame(study_module.trials_table(study, dimensions))
    # A spreadsheet is where a trials table is read: data.output_encoding (a BOM by default) lets Excel open it.
    table.to_csv(run.directory / "trials.csv", index=False, encoding=config.data.output_encoding)
    best = space_module.apply(config, study.best_params).with_overrides({"run.name": None})
    best_path = run.directory / "best.yaml"
    run.write_text("best.yaml", best.to_yaml())
    details = {"metric": summary["metric"], "direction": summary["direction"], "best_value": study.best_value,
               "best_params": study.best_params, "best_trial": study.best_trial.number,
               "trials": len(table), "counts": summary["counts"], "search": config.tune.search,
               "cv": config.tune.cv, "workers": config.tune.workers, "pruning": config.tune.pruning,
               "storage": redact(storage), "seconds": round(summary["seconds"], 2),
               "workers_ended": ended}
    run.write_json("study.json", details)
    report_module.write(run.directory / "report.html", study, metric=summary["metric"],
                        direction=summary["direction"], title=f"modeldojo study {run.name}",
                        summary={k: details[k] for k in ("search", "cv", "pruning", "workers", "trials", "storage",
                                                         "seconds")})
    return TuneResult(run, study.best_value, study.best_params, summary["metric"], summary["direction"], table,
                      best_path, summary["counts"])


def _study_run(config: Config, task_name: str) -> Run:
    """The study's folder: reused when it holds an unfinished study (resume) or when the study lives in a
    shared storage (another machine's workers may have written to it), else created."""
    name = config.run.name or runs_module.default_name(f"tune-{task_name}", config.run.runs_dir)
    directory = Path(config.run.runs_dir) / runs_module.validate_name(name)
    run = Run(directory)
    shared = bool(config.tune.storage)
    if directory.is_dir() and (shared or ((directory / "study.db").is_file()
                                          and run.status().get("status") in ("running", "failed"))):
        run.set_status("running", resumed=runs_module.now())
        return run
    return Run.create(config.run.runs_dir, name, config.run.overwrite)
