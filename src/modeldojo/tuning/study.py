"""Hyperparameter search with Optuna: each trial is a normal fit on the prepared data, scored on the
validation split (or by k-fold cross-validation); the study lives in a storage, so it resumes and several
workers (processes or machines) can share it.

The data is read and checked once per worker; every trial reuses it with its own config. A trial that fails
(bad combination, non-finite loss) is recorded as failed and the study goes on.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
import zlib
from dataclasses import replace
from typing import Any, Callable

from .. import events as ev
from ..errors import ConfigError, DojoError
from ..evaluation.metrics import LOWER_IS_BETTER
from . import space as space_module
from .storage import open_storage

# Trials that count towards tune.trials: a failed trial does not (its worker may have died; it is retried).
COUNTED = ("COMPLETE", "PRUNED")


def objective_metric(config, kind: str) -> tuple[str, str]:
    from .. import tasks
    from ..evaluation.metrics import PRIMARY

    metric = config.tune.metric
    if metric == "auto":  # the task's main metric (chat: ROUGE-L); before the task is resolved, the kind's
        metric = tasks.get(config.task.name).primary_metric(kind) if config.task.name != "auto" else PRIMARY[kind]
    direction = config.tune.direction
    if direction == "auto":
        direction = "minimize" if metric in LOWER_IS_BETTER or metric.endswith("loss") else "maximize"
    return metric, direction


def sampler_for(config, dimensions, worker: int = 0):
    import optuna

    # Each worker its own seed: parallel random/TPE workers with one seed would propose the same points.
    seed = config.train.seed + worker
    if config.tune.storage:
        # A shared storage may have workers on other machines, all numbered from 0: this machine and
        # process get their own offset (such a study is not reproducible from its seed anyway).
        seed += 1000 * (zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000)
    if config.tune.search == "grid":
        return optuna.samplers.GridSampler({d.key: d.grid() for d in dimensions}, seed=seed)
    if config.tune.search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Optuna's TPE samples its first 10 trials at random: a 6-trial text study would be a random search.
    # A third of the budget (2–10 trials) explores first instead.
    startup = max(2, min(10, config.tune.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def pruner_for(config):
    import optuna

    # From the 4th trial on, after each report. "quartile" stops only trials in the bottom quarter of the
    # earlier trials at the same step: on Ames (bench/tune.py pruning) it saved as much time as "median"
    # (0.48x vs 0.41x) and lost less of the best score (-0.0013 vs -0.0022 R²), because boosting curves
    # cross: a slow-starting low learning rate often ends best, and "median" stops more of those.
    if config.tune.pruning == "quartile":
        return optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=0)
    if config.tune.pruning == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if config.tune.pruning == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def dimensions_for(prepared) -> list[space_module.Dimension]:
    from .. import tasks

    config = prepared.config
    space = config.tune.space or tasks.get(prepared.task_name).search_space(config, prepared.kind)
    return space_module.parse(space, config)


def target_trials(config, dimensions) -> int:
    trials = config.tune.trials
    if config.tune.search == "grid":
        size = 1
        for dimension in dimensions:
            size *= len(dimension.grid())
        trials = min(trials, size)
    return trials


def load(prepared, storage_url: str, study_name: str, worker: int = 0):
    """Create the study (or join / resume it) with this worker's sampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # dojo reports trials itself
    config = prepared.config
    dimensions = dimensions_for(prepared)
    _, direction = objective_metric(config, prepared.kind)
    storage = open_storage(storage_url, heartbeat=config.tune.heartbeat, retries=config.tune.retries)
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                sampler=sampler_for(config, dimensions, worker), pruner=pruner_for(config),
                                load_if_exists=True)
    if worker == 0 and not study.get_trials(deepcopy=False) and config.tune.search != "grid":
        start = baseline(prepared, dimensions)
        if start:  # trial 0 = the settings as they are: tuning cannot end below not tuning (on validation)
            study.enqueue_trial(start, user_attrs={"baseline": True}, skip_if_exists=True)
    return study, dimensions


def baseline(prepared, dimensions) -> dict[str, Any]:
    """The config's current value of every dimension that the space contains."""
    from .. import tasks

    config = prepared.config
    defaults = tasks.get(prepared.task_name).default_params(config)
    values: dict[str, Any] = {}
    for dimension in dimensions:
        group, key, *entry = dimension.key.split(".")
        current = getattr(getattr(config, group), key, None)
        if entry:
            current = (current or {}).get(entry[0], defaults.get(entry[0]) if (group, key) == ("model", "params")
                                          else None)
        if current is not None and dimension.contains(current):
            values[dimension.key] = current
    return values


def counts(study) -> dict[str, int]:
    tally: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        tally[trial.state.name] = tally.get(trial.state.name, 0) + 1
    return tally


def optimize(prepared, score_trial: Callable, study, dimensions, *, bus: ev.EventBus,
             on_trial: Callable | None = None) -> None:
    """Run trials in this process until the study holds tune.trials complete/pruned ones (all workers
    together), as many failed ones, or tune.timeout passes. `score_trial(prepared_for_trial, report)` →
    metrics, where `report(metrics, step)` passes intermediate validation metrics and raises
    optuna.TrialPruned when the pruner says stop."""
    import optuna

    config = prepared.config
    metric, _ = objective_metric(config, prepared.kind)
    trials = target_trials(config, dimensions)

    def objective(trial) -> float:
        params = {d.key: d.suggest(trial) for d in dimensions}
        trial_config = space_module.apply(config, params)

        def intermediate(metrics: dict[str, float], step: int) -> None:
            if metric in metrics:
                trial.report(float(metrics[metric]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{metric} {metrics[metric]:.4f} at step {step}")

        try:
            scores = score_trial(replace(prepared, config=trial_config), intermediate)
        except (DojoError, ValueError, RuntimeError) as error:  # recorded for the trials table, then FAIL
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:1000])
            raise
        if metric not in scores:
            raise ConfigError(f"tune.metric {metric!r} not among the trial's metrics: {', '.join(sorted(scores))}")
        for name, value in scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                trial.set_user_attr(name, float(value))
        return float(scores[metric])

    def after_trial(study_, trial) -> None:
        tally = counts(study_)
        finished = sum(tally.get(state, 0) for state in COUNTED)
        if finished >= trials or tally.get("FAIL", 0) >= trials:
            study_.stop()  # this worker starts no new trial; others stop after their current one
        if on_trial:
            on_trial(study_, trial)
        best = f" · best {metric} {study_.best_value:.4f}" if tally.get("COMPLETE") else ""
        bus.emit(ev.PROGRESS, name="trials", completed=min(finished, trials), total=trials,
                 info=f"trial {trial.number}: {trial.state.name.lower()}"
                      + (f" {metric} {trial.value:.4f}" if trial.value is not None else "") + best)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial → failed, and queued again
        tally = counts(study)
        if sum(tally.get(state, 0) for state in COUNTED) < trials and tally.get("FAIL", 0) < trials:
            study.optimize(objective, n_trials=None if config.tune.timeout else 10 * trials,
                           timeout=config.tune.timeout or None, callbacks=[after_trial],
                           catch=(DojoError, ValueError, RuntimeError))


def require_complete(study) -> None:
    tally = counts(study)
    if not tally.get("COMPLETE"):
        failures = [t.user_attrs.get("error") or t.system_attrs.get("fail_reason", "")
                    for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
        raise ConfigError(f"no trial finished; {tally.get('FAIL', 0)} failed, {tally.get('PRUNED', 0)} pruned"
                          + (f": {failures[-1]}" if failures and failures[-1] else ""))


def summary(study, config, kind: str, started: float) -> dict[str, Any]:
    metric, direction = objective_metric(config, kind)
    return {"metric": metric, "direction": direction, "seconds": time.perf_counter() - started,
            "counts": counts(study)}


def trials_table(study, dimensions) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        pruned = trial.state.name == "PRUNED"
        # Optuna gives a pruned trial its last intermediate value (an early-step score): shown as the step
        # it was stopped at instead, so the value column compares finished trials only.
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     "value": None if pruned else trial.value, **{d.key: trial.params.get(d.key) for d in dimensions},
                     "pruned_at": trial.last_step if pruned else None,
                     "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else None,
                     "retry_of": trial.system_attrs.get("failed_trial")})
    return rows
