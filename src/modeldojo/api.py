"""The one orchestration path: the CLI and the Python API both call these functions.

train: read → check (blocking problems stop here) → split → fit → evaluate → save atomically →
mark complete. Any failure after the run folder exists marks the run failed and leaves no model.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import events as ev
from . import runs as runs_module
from . import tasks
from .config import Config
from .data import balance, checks as checks_module, normalize as cells, splits
from .data.images import base_folder  # (data.checks imports it anyway)
from .data.target import require_column
from .environment import describe as describe_environment
from .errors import ConfigError, DataError, StopRequested
from .evaluation import card, report
from .model import Model
from .runs import Run, reading_encoding  # noqa: F401 (api.reading_encoding is public)
from .tracking.event_log import EventLog
from .training import stopping

# Keyword shortcuts accepted by train()/check() in Python, mapped to config keys.
SHORTCUTS = {"task": "task.name", "kind": "task.kind", "model": "model.name", "name": "run.name",
             "runs_dir": "run.runs_dir", "seed": "train.seed", "tracking": "tracking.enabled",
             "tracking_uri": "tracking.uri", "overwrite": "run.overwrite", "params": "model.params",
             "test_fraction": "data.test_fraction", "validation_fraction": "data.validation_fraction"}


@dataclass
class Prepared:
    """Data read, target validated, checks passed: everything decided before any compute."""

    config: Config
    frame: pd.DataFrame
    y: pd.Series
    kind: str
    task_name: str
    checks: checks_module.CheckReport
    features: list[str]
    validation: tuple[pd.DataFrame, pd.Series] | None = None
    test: tuple[pd.DataFrame, pd.Series] | None = None
    normalization: dict[str, Any] | None = None  # data/normalize.py's plan, saved with the model for new data


@dataclass
class TrainResult:
    run: Run
    model: Model
    metrics: dict[str, Any]
    checks: checks_module.CheckReport
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.run.directory

    def predict(self, data):
        return self.model.predict(data)


def resolve_config(data=None, target=None, config: Config | str | Path | None = None,
                   overrides: list[str] | dict[str, Any] | None = None, **shortcuts: Any) -> Config:
    if isinstance(config, (str, Path)):
        config = Config.load(config)
    config = config or Config()
    pairs: dict[str, Any] = {}
    if isinstance(data, (str, Path)):
        pairs["data.path"] = str(data)
    if target is not None:
        pairs["data.target"] = target
    for key, value in shortcuts.items():
        if key not in SHORTCUTS:
            raise ConfigError(f"unknown keyword {key!r}; use one of {', '.join(sorted(SHORTCUTS))} or overrides=")
        if value is not None:
            pairs[SHORTCUTS[key]] = value
    config = config.with_overrides(pairs)
    return config.with_overrides(overrides) if overrides else config


def _read(source, config: Config, prefer: str | None = None) -> pd.DataFrame:
    return tasks.read(source, format=config.data.format, delimiter=config.data.delimiter,
                      encoding=config.data.encoding, prefer=prefer)


def _task_name(frame: pd.DataFrame, config: Config) -> str:
    return config.task.name if config.task.name != "auto" else tasks.detect(frame, config.data.target, config)


def _task_frame(frame: pd.DataFrame, config: Config) -> tuple[type[tasks.Task], pd.DataFrame, Config]:
    """The task the data is for (unknown names fail here, before any compute), the rows in the task's own form,
    and the config with the task's defaults filled in (target, fine-tuning strategy)."""
    task_class = tasks.get(_task_name(frame, config))
    frame = task_class.normalize(frame, config)
    if config.data.normalize_text and not task_class.rewrites_rows():
        frame = cells.normalize_table(frame, skip=set(config.data.text_columns) | set(config.data.drop_columns))
    if config.data.mask_pii:
        frame = cells.mask_personal_data(frame)
    defaults, target = {}, task_class.default_target or frame.attrs.get("default_target")  # class folders: "label"
    if not config.data.target and target:
        defaults["data.target"] = target
    if config.finetune.strategy == "auto":
        defaults["finetune.strategy"] = task_class.default_strategy
    defaults.update(config.unchanged({**task_class.setting_defaults, **frame.attrs.get("setting_defaults", {})}))
    return task_class, frame, config.with_overrides(defaults) if defaults else config


def prepare(data=None, config: Config | None = None, *, run_checks: bool = True) -> Prepared:
    config = config or Config()
    source = data if isinstance(data, pd.DataFrame) else (data or config.data.path)
    if source is None:
        raise ConfigError("no training data: pass a file (dojo train data.csv) or set data.path")
    task_class, frame, config = _task_frame(_read(source, config), config)
    task_name, target = task_class.name, config.data.target
    if not target:
        raise ConfigError("no target column: pass --target COLUMN or set data.target")
    for column in [target, *config.data.drop_columns, *filter(None, [config.data.group_column])]:
        require_column(frame, column, "target" if column == target else "configured")
    report_ = task_class.check_data(frame, config, run_checks and task_class.row_label_checks)
    if report_.errors:
        raise DataError("\n".join(f.message for f in report_.errors))
    if report_.skipped_rows:  # unreadable images the user chose to leave out
        attrs = dict(frame.attrs)
        frame = frame.drop(index=frame.index[report_.skipped_rows]).reset_index(drop=True)
        frame.attrs = {k: v for k, v in attrs.items() if k != "lines"}
    kind = report_.kind
    excluded = set(report_.id_columns) | set(report_.constant_columns) | set(config.data.drop_columns) | {target}
    prepared = Prepared(config.with_overrides({"task.name": task_name, "task.kind": kind}), frame,
                        task_class.target_values(frame, target, kind, config.data.label_separator), kind, task_name,
                        report_, task_class.features(frame, excluded), normalization=frame.attrs.get("normalization"))
    for role, path in (("validation", config.data.validation_path), ("test", config.data.test_path)):
        if path:
            extra = cells.apply_plan(task_class.normalize(_read(path, config), config), prepared.normalization)
            extra = cells.mask_personal_data(extra) if config.data.mask_pii else extra
            require_column(extra, target, "target")
            setattr(prepared, role, (extra, task_class.target_values(extra, target, kind, config.data.label_separator)))
    return prepared


def _fit(prepared: Prepared, train_rows: np.ndarray, validation: tuple[pd.DataFrame, pd.Series] | None,
         bus: ev.EventBus, workdir: Path | None = None):
    frame, y, config = prepared.frame, prepared.y, prepared.config
    task = tasks.get(prepared.task_name)(config, prepared.kind, config.data.target)
    task.workdir = workdir
    task.excluded_columns = [c for c in frame.columns if c not in prepared.features and c != config.data.target]
    if prepared.kind in ("binary", "multiclass"):  # class balance means nothing for values, sets or texts
        train_rows = balance.resample(train_rows, y, config.data.resample, config.train.seed)
    X_val, y_val = (validation[0][prepared.features], validation[1]) if validation is not None else (None, None)
    if X_val is not None:
        keep = y_val.notna().to_numpy()
        X_val, y_val = X_val[keep], y_val[keep]
    info = task.fit(frame.iloc[train_rows][prepared.features], y.iloc[train_rows], X_val, y_val, bus)
    return task, info


def _score(task_class: type[tasks.Task], predict, frame: pd.DataFrame, y: pd.Series, kind: str, separator: str):
    """Metrics of `predict` (frame → Prediction) on the rows whose target is present."""
    keep = y.notna().to_numpy()
    frame, y = frame[keep], y[keep]
    prediction = predict(frame)
    return task_class.scores(kind, y.to_numpy(), prediction, separator), prediction, frame, y


def _gallery_source(image_columns: list[str], frame) -> tuple[str, Path | None] | None:
    """For image tasks: the column the report's gallery shows, and where its relative paths start."""
    return (image_columns[0], base_folder(frame)) if image_columns and frame is not None else None


def require_enough_rows(prepared: Prepared, cv: int | None = None) -> None:
    """Tuning: a clear DataError before any trial when the k folds, or the split and the validation rows that
    score each trial, are too small."""
    data = prepared.config.data
    if cv:
        groups = prepared.frame[data.group_column].astype(str).to_numpy() if data.group_column else None
        splits.folds(prepared.y, prepared.kind, cv, seed=prepared.config.train.seed, groups=groups,
                     validation_fraction=data.validation_fraction)
        return
    validation = _split(prepared)[1]
    rows = int(prepared.validation[1].notna().sum()) if prepared.validation else len(validation)
    if rows < splits.MIN_SCORED_ROWS:
        raise DataError(f"tune scores each trial on the validation split, which holds {rows} row(s) of "
                        f"{int(prepared.y.notna().sum())}; at least {splits.MIN_SCORED_ROWS} are needed: raise "
                        "data.validation_fraction, add rows (or give data.validation_path), or use --cv K")


def _split(prepared: Prepared):
    data, seed = prepared.config.data, prepared.config.train.seed
    groups = prepared.frame[data.group_column].astype(str).to_numpy() if data.group_column else None
    task_class = tasks.get(prepared.task_name)
    owned = task_class.split_rows(prepared.frame, prepared.y, prepared.config)
    if owned is not None:
        return owned
    labels, kind = task_class.split_labels(prepared.frame, prepared.y, prepared.kind)
    return splits.split(labels, kind, validation_fraction=data.validation_fraction,
                        test_fraction=data.test_fraction, seed=seed, groups=groups,
                        has_validation=prepared.validation is not None, has_test=prepared.test is not None)


def train(data=None, target: str | None = None, *, config: Config | str | Path | None = None,
          overrides: list[str] | dict[str, Any] | None = None, events: ev.EventBus | None = None,
          **shortcuts: Any) -> TrainResult:
    """Train, evaluate and save a model; return the run. `data` is a path or a DataFrame."""
    config = resolve_config(data, target, config, overrides, **shortcuts)
    bus = events or ev.EventBus()
    prepared = prepare(data, config)
    config = prepared.config
    bus.emit(ev.CHECKS_DONE, report=prepared.checks)
    train_rows, validation_rows, test_rows = _split(prepared)
    frame, y = prepared.frame, prepared.y
    validation = prepared.validation or ((frame.iloc[validation_rows], y.iloc[validation_rows])
                                         if len(validation_rows) else None)
    test = prepared.test or ((frame.iloc[test_rows], y.iloc[test_rows]) if len(test_rows) else None)

    name = config.run.name or runs_module.default_name(prepared.task_name, config.run.runs_dir)
    if runs_module.world_size() > 1:
        if not config.run.name:  # every process must agree on the folder: a timestamp would not
            raise ConfigError("launched with several processes (torchrun / accelerate): pass --name")
        if runs_module.process_rank() > 0:  # workers train; process 0 alone writes the run folder
            task, info = _fit(prepared, train_rows, validation, bus, workdir=Path(config.run.runs_dir) / name)
            return TrainResult(Run(Path(config.run.runs_dir) / name), None, {}, prepared.checks, info)
    run = Run.create(config.run.runs_dir, name, config.run.overwrite, resume=config.train.resume)
    bus.subscribe_all(EventLog(run.directory))  # events.jsonl: what `dojo app` streams live
    if config.tracking.enabled:
        from .tracking.mlflow_tracker import MlflowTracker, default_uri

        bus.subscribe_all(MlflowTracker(config.tracking.uri or default_uri(config.run.runs_dir),
                                        config.tracking.experiment, config.run.runs_dir))
    fingerprint = runs_module.fingerprint(frame, config.data.path if not isinstance(data, pd.DataFrame) else None)
    fingerprint.update(train_rows=int(len(train_rows)), validation_rows=len(validation[1]) if validation else 0,
                       test_rows=len(test[1]) if test else 0)
    try:
        # pid + host: a reader can tell a run that is training from one whose process died (dojo app)
        run.set_status("running", task=prepared.task_name, kind=prepared.kind, pid=os.getpid(),
                       host=socket.gethostname())
        run.write_text("config.yaml", config.to_yaml())
        run.write_json("data.json", fingerprint)
        run.write_json("environment.json", describe_environment())
        run.write_json("checks.json", prepared.checks.to_dict())
        bus.emit(ev.RUN_STARTED, run=run, config=config)
        task, info = _fit(prepared, train_rows, validation, bus, workdir=run.directory)
        stopping.check("after fitting, before evaluation")  # a task without a step loop stops here
        history = info.pop("history", None)
        if history:
            run.write_json("history.json", history)
        scores, sections = {}, []
        worst = pd.DataFrame()
        if test is not None:
            bus.emit(ev.STAGE, name="evaluate", detail=f"{len(test[1])} test rows")
            scores, prediction, test_frame, test_y = _score(
                type(task), lambda rows: task.predict(rows[prepared.features]), test[0], test[1], prepared.kind,
                config.data.label_separator)
            worst = task.worst(test_frame[prepared.features], prepared.kind, test_y, prediction,
                               config.evaluate.worst_examples, config.data.label_separator)
            extra_scores, sections = task.extra_evaluation(test_frame, test_y, prediction, bus)
            scores.update(extra_scores)
        bus.emit(ev.METRICS, metrics=scores, prefix="test_")
        bus.emit(ev.METRICS, metrics={k: v for k, v in info.items() if isinstance(v, (int, float))}, prefix="fit_")
        meta = {"task": prepared.task_name, "kind": prepared.kind, "target": config.data.target,
                "image_columns": prepared.checks.image_columns, "normalization": prepared.normalization,
                "features": task.input_columns, "created": runs_module.now(), "config": config.to_dict()}
        runs_module.save_model_atomically(run.model_dir, task.save, meta)
        run.write_json("metrics.json", {"test": scores, "fit": info})
        description = task.describe()
        if config.evaluate.report:
            report.write(run.directory / "report.html", title=f"modeldojo run {run.name}",
                         summary={"task": prepared.task_name, "kind": prepared.kind, "target": config.data.target,
                                  "learner": description.get("learner"), "train rows": len(train_rows),
                                  "test rows": len(test[1]) if test else 0, **info},
                         metrics=scores, kind=prepared.kind,
                         actual=test_y.to_numpy() if test is not None else None,
                         predicted=prediction.values if test is not None else None, worst=worst,
                         importance=task.feature_importance(), checks=prepared.checks.to_dict(), history=history,
                         images=_gallery_source(prepared.checks.image_columns, test[0] if test else frame),
                         sections=sections)
            card.write(run.directory / "MODEL_CARD.md", name=run.name, description=description, metrics=scores,
                       checks=prepared.checks.to_dict(), fingerprint=fingerprint, created=runs_module.now())
        run.set_status("completed", finished=runs_module.now(), learner=description.get("learner"))
        bus.emit(ev.RUN_COMPLETED, run=run, metrics=scores)
    except BaseException as error:  # KeyboardInterrupt too: the run must not look complete
        run.set_status("stopped" if isinstance(error, StopRequested) else "failed", finished=runs_module.now(),
                       error=f"{type(error).__name__}: {error}")
        bus.emit(ev.RUN_FAILED, run=run, error=error)
        raise
    return TrainResult(run, Model.from_task(task, run.model_dir), scores, prepared.checks, info)


def check(data, target: str | None = None, *, config: Config | str | Path | None = None,
          overrides=None, **shortcuts: Any) -> checks_module.CheckReport:
    """The data-quality report alone (blocking problems are findings, not exceptions)."""
    config = resolve_config(data, target, config, overrides, **shortcuts)
    source = data if isinstance(data, pd.DataFrame) else (data or config.data.path)
    if source is None:
        raise ConfigError("no data: pass a file or set data.path")
    task_class, frame, config = _task_frame(_read(source, config), config)
    # The table-model label-error check runs only where the task's data suits it (as in train).
    return task_class.check_data(frame, config, config.data.target not in frame.columns or task_class.row_label_checks)


def suggest(data, config: Config | None = None) -> dict[str, Any]:
    """What to train without being told: the task and a target column (the task's own, e.g. an image folder's
    label, else target.guess_target). `dojo app` pre-selects these; `dojo check` without --target names them."""
    from .data.target import guess_target

    config = config or Config()
    frame = _read(data, config)
    task_class, normalized, filled = _task_frame(frame, config)
    target = filled.data.target or guess_target(normalized)
    if target and config.task.name == "auto":  # with a target known, detection may pick another task
        task_class = tasks.get(_task_name(frame, filled.with_overrides({"data.target": target})))
    return {"task": task_class.name, "target": target, "columns": [str(c) for c in normalized.columns]}


def load(reference: str | Path, runs_dir: str | Path = "runs") -> Model:
    """A trained model from a run name, run folder or model folder."""
    path = Path(reference)
    if (path / runs_module.META_FILE).is_file():
        return Model.load(path)
    return Model.load(Run.open(reference, runs_dir).model_dir)


def evaluate(reference: str | Path, data=None, *, cv: int | None = None, runs_dir: str | Path = "runs",
             events: ev.EventBus | None = None) -> dict[str, Any]:
    """Re-evaluate a run: on new data (`data`), on its own test split, or by k-fold cross-validation.

    Writes <run>/evaluation/report.html and metrics.json (and cv.json with cv); returns what it wrote.
    """
    from . import reevaluation

    return reevaluation.evaluate(reference, data, cv=cv, runs_dir=runs_dir, events=events)


def cross_validate(prepared: Prepared, k: int, bus: ev.EventBus) -> dict[str, Any]:
    """k-fold (stratified / grouped as configured): fit a fresh model per fold, score on the held-out fold."""
    from . import reevaluation

    return reevaluation.cross_validate(prepared, k, bus)
