"""`dojo retrain NAME --data new.csv`: a challenger trained with the champion's own resolved config on old + new
rows, compared with the champion on the same held-out rows, and promoted only when it is better for sure.

Held-out rows that neither model trains on: the champion's frozen test split (rebuilt from its data file and seed)
plus the newest share of the new rows (`data.test_fraction` of them, in file order: the latest window). The
challenger trains on everything else.

Promotion needs all of:
- the paired bootstrap interval (95 %) of the per-row score difference (challenger − champion: correct answers for
  classifiers, negative absolute error for regression) lies above `margin`;
- no class's recall drops by more than `tolerance` (classifiers);
- the challenger's export passes its parity check (a model that cannot be deployed is not promoted).
The decision — metrics, interval, data fingerprints, reason — is stored on both versions; a failed or partial
challenger run is never registered, let alone promoted.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import versions
from .config import Config
from .errors import ConfigError, DojoError
from .model import Model
from .runs import Run, fingerprint, write_json


def _rows(model: Model, config: Config, new) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(old training rows, old test rows, new training rows, new held-out rows), all in the task's own form."""
    from . import api, tasks

    prepared = api.prepare(config.data.path, config, run_checks=False)
    train_rows, validation_rows, test_rows = api._split(prepared)
    old = prepared.frame
    if prepared.test is not None:  # a champion from an earlier retraining: its held-out rows are a file
        old_test = prepared.test[0][[c for c in old.columns if c in prepared.test[0].columns]]
    elif len(test_rows):
        old_test = old.iloc[test_rows]
    else:
        raise ConfigError("the champion has no test split (data.test_fraction=0): nothing to compare on")
    fresh = new if isinstance(new, pd.DataFrame) else tasks.read(new)
    fresh = model._normalize(fresh)
    missing = [c for c in [*model.features, model.target] if c not in fresh.columns]
    if missing:
        raise ConfigError(f"the new rows lack the champion's column(s) {', '.join(map(repr, missing))}")
    fresh = fresh[[c for c in old.columns if c in fresh.columns]]
    held = max(1, int(round(len(fresh) * config.data.test_fraction)))
    keep = np.sort(np.concatenate([train_rows, validation_rows]))
    return old.iloc[keep], old_test, fresh.iloc[:len(fresh) - held], fresh.iloc[len(fresh) - held:]


def _per_row_scores(model: Model, frame: pd.DataFrame) -> np.ndarray:
    prediction = model.predict_frame(frame[model.features])
    actual = frame[model.target].to_numpy()
    if model.kind == "regression":
        return -np.abs(np.asarray(prediction.values, dtype=float) - actual.astype(float))
    return (np.asarray(prediction.values).astype(str) == actual.astype(str)).astype(float)


def paired_interval(challenger: np.ndarray, champion: np.ndarray, samples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float, float]:
    """(mean difference, lower, upper): a percentile bootstrap of the mean per-row difference, rows resampled in
    pairs (both models are scored on the same rows, so the pairing removes the rows' own difficulty)."""
    difference = np.asarray(challenger, dtype=float) - np.asarray(champion, dtype=float)
    generator = np.random.default_rng(seed)
    means = difference[generator.integers(0, len(difference), (samples, len(difference)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(difference.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _class_recalls(model: Model, frame: pd.DataFrame) -> dict[str, float]:
    predicted = np.asarray(model.predict_frame(frame[model.features]).values).astype(str)
    actual = frame[model.target].astype(str).to_numpy()
    return {label: float((predicted[actual == label] == label).mean()) for label in sorted(set(actual))}


def retrain(name: str, data, *, runs_dir: str | Path = "runs", margin: float = 0.0, tolerance: float = 0.05,
            export: bool = True, uri: str | None = None) -> dict[str, Any]:
    from . import api

    champion_dir = versions.resolve(f"models:/{name}@{versions.CHAMPION}", runs_dir, uri)
    mlflow = versions.client(runs_dir, uri)
    champion_version = versions.alias_version(mlflow, name, versions.CHAMPION)
    champion = Model.load(Run(champion_dir).model_dir)
    config = Config.from_dict(champion.meta["config"])
    if config.data.path is None:
        raise ConfigError(f"the champion of {name!r} was trained from an in-memory DataFrame: its rows are unknown")
    old_train, old_test, new_train, new_test = _rows(champion, config, data)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")  # two retrains in one second stay apart
    folder = Path(runs_dir) / f".retrain-{name}-{stamp}"
    folder.mkdir(parents=True)
    train_file, test_file = folder / "train.parquet", folder / "test.parquet"
    pd.concat([old_train, new_train], ignore_index=True).to_parquet(train_file, index=False)
    held_out = pd.concat([old_test, new_test], ignore_index=True)
    held_out.to_parquet(test_file, index=False)
    decision: dict[str, Any] = {"champion_version": champion_version, "champion_run": champion_dir.name,
                                "held_out_rows": len(held_out), "margin": margin, "tolerance": tolerance,
                                "train_sha256": fingerprint(pd.DataFrame(), train_file)["sha256"],
                                "held_out_sha256": fingerprint(held_out, test_file)["sha256"]}
    challenger_name = f"{name}-challenger-{stamp}"
    try:
        result = api.train(str(train_file), config=config.with_overrides(
            {"data.path": str(train_file), "data.test_path": str(test_file), "run.name": challenger_name,
             "run.overwrite": False, "run.runs_dir": str(runs_dir)}))
    except DojoError as error:  # a failed challenger is never registered or promoted
        decision.update(promoted=False, reason=f"challenger training failed: {error}")
        versions.tag_decision(mlflow, name, champion_version, decision)
        return decision
    challenger = result.model
    mean, lower, upper = paired_interval(_per_row_scores(challenger, held_out), _per_row_scores(champion, held_out))
    decision.update(challenger_run=challenger_name, difference=mean, interval=[lower, upper],
                    metric="accuracy" if champion.kind != "regression" else "negative absolute error")
    reasons = []
    if lower <= margin:
        reasons.append(f"the 95 % interval of the difference [{lower:.4g}, {upper:.4g}] does not lie above the "
                       f"margin {margin:g}")
    if champion.kind in ("binary", "multiclass"):
        before, after = _class_recalls(champion, held_out), _class_recalls(challenger, held_out)
        worse = {label: round(before[label] - after.get(label, 0.0), 4) for label in before
                 if before[label] - after.get(label, 0.0) > tolerance}
        decision["recall_drops"] = worse
        if worse:
            reasons.append(f"recall drops beyond {tolerance:g} for class(es) {worse}")
    if export and not reasons:
        from .export.exporter import export as run_export
        from .errors import ParityError

        try:
            decision["parity"] = run_export(challenger_name, runs_dir=runs_dir)["parity"].get("passed", True)
        except ParityError as error:
            reasons.append(f"the export failed its parity check: {error}")
    registered = versions.register(challenger_name, name, runs_dir=runs_dir, alias=versions.CHALLENGER, uri=uri)
    decision.update(challenger_version=registered["version"], promoted=not reasons,
                    reason="; ".join(reasons) or "better beyond the margin on the same held-out rows")
    versions.tag_decision(mlflow, name, champion_version, decision)
    versions.tag_decision(mlflow, name, registered["version"], decision)
    if not reasons:
        versions.promote(name, registered["version"], runs_dir=runs_dir, uri=uri)
    write_json(Run.open(challenger_name, runs_dir).directory / "decision.json", decision)
    return decision
