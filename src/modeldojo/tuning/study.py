"""Hyperparameter search with Optuna: each trial is a normal fit on the prepared data, scored on the
validation split (or by k-fold cross-validation); the study lives in a storage, so it resumes.

The data is read and checked once; every trial reuses it with its own config. A trial that fails
(bad combination, non-finite loss) is recorded as failed and the study goes on.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from .. import events as ev
from ..errors import ConfigError, DojoError
from ..evaluation.metrics import LOWER_IS_BETTER, PRIMARY
from . import space as space_module


def objective_metric(config, kind: str) -> tuple[str, str]:
    metric = config.tune.metric if config.tune.metric != "auto" else PRIMARY[kind]
    direction = config.tune.direction
    if direction == "auto":
        direction = "minimize" if metric in LOWER_IS_BETTER or metric.endswith("loss") else "maximize"
    return metric, direction


def sampler_for(config, dimensions):
    import optuna

    seed = config.train.seed
    if config.tune.search == "grid":
        return optuna.samplers.GridSampler({d.key: d.grid() for d in dimensions}, seed=seed)
    if config.tune.search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner_for(config):
    import optuna

    if config.tune.pruning == "median":  # compare from the 3rd trial on, after each trial's first evaluation
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if config.tune.pruning == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def run(prepared, score_trial, *, storage: str, study_name: str, bus: ev.EventBus) -> dict[str, Any]:
    """Run the study; `score_trial(prepared_for_trial, report)` → metrics dict, where `report(metrics, step)`
    passes intermediate validation metrics (and raises optuna.TrialPruned to stop the trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # dojo reports trials itself
    config = prepared.config
    space = config.tune.space or _default_space(prepared)
    dimensions = space_module.parse(space, config)
    metric, direction = objective_metric(config, prepared.kind)
    trials = config.tune.trials
    if config.tune.search == "grid":
        size = 1
        for dimension in dimensions:
            size *= len(dimension.grid())
        trials = min(trials, size)
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                sampler=sampler_for(config, dimensions), pruner=pruner_for(config),
                                load_if_exists=True)
    done = sum(1 for t in study.trials if t.state.is_finished())
    started = time.perf_counter()

    def objective(trial) -> float:
        params = {d.key: d.suggest(trial) for d in dimensions}
        trial_config = space_module.apply(config, params)

        def intermediate(metrics: dict[str, float], step: int) -> None:
            if metric in metrics:
                trial.report(float(metrics[metric]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{metric} {metrics[metric]:.4f} at step {step}")

        scores = score_trial(replace(prepared, config=trial_config), intermediate)
        if metric not in scores:
            raise ConfigError(f"tune.metric {metric!r} not among the trial's metrics: {', '.join(sorted(scores))}")
        for name, value in scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                trial.set_user_attr(name, float(value))
        return float(scores[metric])

    def report(study_, trial) -> None:
        finished = sum(1 for t in study_.trials if t.state.is_finished())
        best = f" · best {metric} {study_.best_value:.4f}" if _has_complete(study_) else ""
        bus.emit(ev.PROGRESS, name="trials", completed=finished - done, total=max(0, trials - done),
                 info=f"trial {trial.number}: {trial.state.name.lower()}"
                      + (f" {metric} {trial.value:.4f}" if trial.value is not None else "") + best)

    remaining = max(0, trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=config.tune.timeout or None, callbacks=[report],
                       catch=(DojoError, ValueError, RuntimeError))
    if not _has_complete(study):
        failures = [t.user_attrs.get("error", "") for t in study.trials]
        raise ConfigError(f"no trial finished; {len(study.trials)} failed" + (f": {failures[-1]}" if failures[-1]
                                                                                else ""))
    return {"study": study, "metric": metric, "direction": direction, "dimensions": dimensions,
            "seconds": time.perf_counter() - started, "resumed_trials": done}


def _has_complete(study) -> bool:
    import optuna

    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _default_space(prepared) -> dict[str, Any]:
    from .. import tasks

    return tasks.get(prepared.task_name).search_space(prepared.config, prepared.kind)


def trials_table(study, dimensions) -> list[dict[str, Any]]:
    rows = []
    for trial in study.trials:
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     "value": trial.value, **{d.key: trial.params.get(d.key) for d in dimensions},
                     "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else None})
    return rows
