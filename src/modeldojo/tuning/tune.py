"""`dojo tune` / `dojo.tune()`: read and check the data once, run the study, write the results.

A study is a run folder (`runs/<name>/`): `study.db` (Optuna, SQLite — running the same command again
resumes it), `trials.csv`, `best.yaml` (the full config with the best values: `dojo train best.yaml`
trains it) and `study.json` (metric, direction, best value and parameters).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import api, events as ev, runs as runs_module
from ..config import Config
from ..errors import ConfigError
from ..runs import Run
from . import space as space_module
from . import study as study_module


@dataclass
class TuneResult:
    run: Run
    best_value: float
    best_params: dict[str, Any]
    metric: str
    direction: str
    trials: pd.DataFrame
    best_config: Path


def tune(data=None, target: str | None = None, *, config: Config | str | Path | None = None,
         overrides: list[str] | dict[str, Any] | None = None, events: ev.EventBus | None = None,
         **shortcuts: Any) -> TuneResult:
    config = api.resolve_config(data, target, config, overrides, **shortcuts)
    bus = events or ev.EventBus()
    prepared = api.prepare(data, config)
    config = prepared.config
    bus.emit(ev.CHECKS_DONE, report=prepared.checks)
    if not config.tune.cv and config.data.validation_fraction <= 0 and prepared.validation is None:
        raise ConfigError("tune scores trials on the validation split: set data.validation_fraction > 0, "
                          "give data.validation_path, or use --cv K")
    run = _study_run(config, prepared.task_name)
    storage = config.tune.storage or f"sqlite:///{(run.directory / 'study.db').resolve()}"

    def score_trial(trial_prepared, report) -> dict[str, float]:
        quiet = ev.EventBus()  # trials' own progress would drown the trials table
        if trial_prepared.config.tune.cv:
            return api.cross_validate(trial_prepared, trial_prepared.config.tune.cv, quiet)["mean"]
        # Validation metrics the training loop emits while it trains feed the pruner.
        quiet.subscribe(ev.METRICS, lambda metrics, step=None, prefix="", **_: report(metrics, step)
                        if prefix == "val_" and step is not None else None)
        train_rows, validation_rows, _ = api._split(trial_prepared)
        frame, y = trial_prepared.frame, trial_prepared.y
        validation = trial_prepared.validation or (frame.iloc[validation_rows], y.iloc[validation_rows])
        task, _ = api._fit(trial_prepared, train_rows, validation, quiet)
        features = trial_prepared.features
        return api._score(lambda rows: task.predict(rows[features]), validation[0], validation[1],
                          trial_prepared.kind, trial_prepared.config.data.label_separator)[0]

    try:
        run.write_text("config.yaml", config.to_yaml())
        summary = study_module.run(prepared, score_trial, storage=storage, study_name=run.name, bus=bus)
        study = summary["study"]
        table = pd.DataFrame(study_module.trials_table(study, summary["dimensions"]))
        table.to_csv(run.directory / "trials.csv", index=False)
        best = space_module.apply(config, study.best_params).with_overrides({"run.name": None})
        best_path = run.directory / "best.yaml"
        run.write_text("best.yaml", best.to_yaml())
        run.write_json("study.json", {"metric": summary["metric"], "direction": summary["direction"],
                                      "best_value": study.best_value, "best_params": study.best_params,
                                      "best_trial": study.best_trial.number, "trials": len(study.trials),
                                      "search": config.tune.search, "cv": config.tune.cv, "storage": storage,
                                      "seconds": round(summary["seconds"], 2)})
        run.set_status("completed", finished=runs_module.now(), kind="tune")
    except BaseException as error:
        run.set_status("failed", finished=runs_module.now(), error=f"{type(error).__name__}: {error}")
        raise
    return TuneResult(run, study.best_value, study.best_params, summary["metric"], summary["direction"], table,
                      best_path)


def _study_run(config: Config, task_name: str) -> Run:
    """The study's folder: reused when it holds an unfinished study (resume), else created."""
    name = config.run.name or runs_module.default_name(f"tune-{task_name}")
    directory = Path(config.run.runs_dir) / runs_module.validate_name(name)
    run = Run(directory)
    if (directory / "study.db").is_file() and run.status().get("status") in ("running", "failed"):
        run.set_status("running", resumed=runs_module.now())
        return run
    return Run.create(config.run.runs_dir, name, config.run.overwrite)
