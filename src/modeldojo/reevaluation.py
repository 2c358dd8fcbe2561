"""Re-evaluating a run (`dojo evaluate`): on new labelled rows, on its own test split rebuilt from the same file
and seed, or by k-fold cross-validation. Built on api's preparation, split and scoring (api.evaluate and
api.cross_validate call in here)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from . import events as ev
from . import runs as runs_module
from . import tasks
from .api import Prepared, _fit, _gallery_source, _read, _score, _split, prepare
from .config import Config
from .data import normalize as cells, splits
from .data.target import require_column
from .errors import ConfigError, DataError
from .evaluation import metrics as metrics_module, report
from .model import Model
from .runs import Run


def evaluate(reference: str | Path, data=None, *, cv: int | None = None, runs_dir: str | Path = "runs",
             events: ev.EventBus | None = None) -> dict[str, Any]:
    """Re-evaluate a run: on new data (`data`), on its own test split, or by k-fold cross-validation.

    Writes <run>/evaluation/report.html and metrics.json (and cv.json with cv); returns what it wrote.
    """
    run = Run.open(reference, runs_dir)
    model = Model.load(run.model_dir)
    config = Config.from_dict(model.meta["config"])
    bus = events or ev.EventBus()
    out = run.directory / "evaluation"
    out.mkdir(exist_ok=True)
    source = data if data is not None else config.data.path
    if source is None:
        raise ConfigError(f"run {run.name} was trained from an in-memory DataFrame; pass --data FILE to evaluate it")
    result: dict[str, Any] = {"run": run.name, "data": "<DataFrame>" if isinstance(source, pd.DataFrame) else str(source)}
    kind, target = model.kind, config.data.target
    task_class = tasks.get(model.meta["task"])
    if cv:
        result["cv"] = cross_validate(prepare(source, config, run_checks=False), cv, bus)
        run.write_json("evaluation/cv.json", result["cv"])
        scores, actual, predicted, worst, frame = {}, None, None, None, None
    else:
        if data is None:  # the run's own test split, rebuilt from the same file and seed
            prepared = prepare(source, config, run_checks=False)
            _require_same_data(run, prepared, config)
            rows = _split(prepared)[2]
            if len(rows) == 0:
                raise ConfigError(f"run {run.name} has no test split (data.test_fraction=0); pass --data FILE")
            frame, y = prepared.frame.iloc[rows], prepared.y.iloc[rows]
        else:  # new labelled data: no training checks (one class or few rows are fine here)
            frame = _read(data, config, prefer=(run.read_json("data.json") or {}).get("encoding"))
            if frame.attrs.get("encoding_warning"):
                result["warnings"] = [frame.attrs["encoding_warning"]]
            frame = cells.apply_plan(task_class.normalize(frame, config), model.meta.get("normalization"))
            require_column(frame, target, "target")
            y = task_class.target_values(frame, target, kind, config.data.label_separator)
        bus.emit(ev.STAGE, name="evaluate", detail=f"{int(y.notna().sum())} rows")
        scores, prediction, frame, y = _score(task_class, lambda rows: model.predict_frame(rows[model.features]),
                                              frame, y, kind, config.data.label_separator)
        actual, predicted = y.to_numpy(), prediction.values
        worst = task_class.worst(frame[model.features], kind, y, prediction, config.evaluate.worst_examples,
                                 config.data.label_separator)
        result["metrics"] = scores
        run.write_json("evaluation/metrics.json", scores)
    report.write(out / "report.html", title=f"Evaluation of {run.name}", summary={"data": result["data"],
                 "kind": kind, "target": target}, metrics=scores, kind=kind,
                 actual=actual, predicted=predicted, worst=worst, importance=model.feature_importance(),
                 cv=result.get("cv"), images=_gallery_source(model.meta.get("image_columns") or [], frame))
    result["report"] = str(out / "report.html")
    return result


def cross_validate(prepared: Prepared, k: int, bus: ev.EventBus) -> dict[str, Any]:
    """k-fold (stratified / grouped as configured): fit a fresh model per fold, score on the held-out fold."""
    data, seed = prepared.config.data, prepared.config.train.seed
    if tasks.get(prepared.task_name).no_cross_validation:
        raise ConfigError(f"--cv: {tasks.get(prepared.task_name).no_cross_validation}")
    groups = prepared.frame[data.group_column].astype(str).to_numpy() if data.group_column else None
    table = []
    for number, (train_rows, test_rows) in enumerate(splits.folds(prepared.y, prepared.kind, k, seed=seed,
                                                                  groups=groups,
                                                                  validation_fraction=data.validation_fraction),
                                                     start=1):
        bus.emit(ev.STAGE, name="cv", detail=f"fold {number}/{k}")
        bus.emit(ev.PROGRESS, name="cross-validation folds", completed=number - 1, total=k)
        inner_train, inner_validation = splits.holdout(train_rows, data.validation_fraction, prepared.y,
                                                       prepared.kind, groups, seed + 1)
        validation = (prepared.frame.iloc[inner_validation], prepared.y.iloc[inner_validation]) \
            if len(inner_validation) else None
        task, _ = _fit(prepared, inner_train, validation, bus)
        scores = _score(type(task), lambda rows: task.predict(rows[prepared.features]),
                        prepared.frame.iloc[test_rows], prepared.y.iloc[test_rows], prepared.kind,
                        data.label_separator)[0]
        table.append({"fold": str(number), **metrics_module.scalar(scores)})
    frame = pd.DataFrame(table).set_index("fold")
    summary = [{"fold": "mean", **frame.mean().to_dict()}, {"fold": "std", **frame.std().to_dict()}]
    return {"folds": k, "table": table + summary, "mean": summary[0], "std": summary[1]}


def _require_same_data(run: Run, prepared: Prepared, config: Config) -> None:
    recorded = run.read_json("data.json") or {}
    current = runs_module.fingerprint(prepared.frame, config.data.path)
    if recorded.get("sha256") and recorded["sha256"] != current["sha256"]:
        raise DataError(f"{config.data.path} changed since run {run.name} was trained (sha256 differs), so its "
                        "test split cannot be rebuilt; pass --data with a held-out file instead")
