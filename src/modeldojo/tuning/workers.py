"""What a tuning worker does, and running W of them on one machine against one storage.

Worker 0 is the calling process (it shows progress); workers 1..W-1 are spawned processes that get the
already-checked data, so the checks run once. Each worker draws from its own sampler seed and stops when
the study as a whole holds tune.trials finished trials. The cores are shared out: W workers each get
cores/W threads, so four workers on two cores do not fight over eight thread pools.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from dataclasses import replace
from typing import Any

from .. import api, events as ev, tasks
from . import study as study_module


def score_trial(prepared, report) -> dict[str, float]:
    """Fit one trial's config and score it: the validation split (validation metrics reported while it
    trains feed the pruner), or the mean over tune.cv folds."""
    quiet = ev.EventBus()  # trials' own progress would drown the trials table
    config = prepared.config
    if config.tune.cv:
        return api.cross_validate(prepared, config.tune.cv, quiet)["mean"]
    quiet.subscribe(ev.METRICS, lambda metrics, step=None, prefix="", **_: report(metrics, step)
                    if prefix == "val_" and step is not None else None)
    quiet.subscribe(ev.INTERMEDIATE, lambda metrics, step, **_: report(metrics, step))
    # The score must come from rows the model did not learn from: no refit on train+validation here.
    prepared = replace(prepared, config=config.with_overrides({"train.refit_full": False}))
    train_rows, validation_rows, _ = api._split(prepared)
    frame, y = prepared.frame, prepared.y
    validation = prepared.validation or (frame.iloc[validation_rows], y.iloc[validation_rows])
    task, _ = api._fit(prepared, train_rows, validation, quiet)
    return api._score(type(task), lambda rows: task.predict(rows[prepared.features]), validation[0], validation[1],
                      prepared.kind, config.data.label_separator)[0]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def share_threads(prepared, workers: int):
    """The prepared data with train.threads set to this worker's share of the cores (when left automatic),
    and the torch thread count to restore afterwards (neural tasks), or None."""
    if workers <= 1 or prepared.config.train.threads:
        return prepared, None
    threads = max(1, cores() // workers)
    previous = None
    if tasks.get(prepared.task_name).neural:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    return replace(prepared, config=prepared.config.with_overrides({"train.threads": threads})), previous


def work(prepared, storage_url: str, study_name: str, worker: int, workers: int, *,
         bus: ev.EventBus | None = None, tracker=None, study=None, dimensions=None) -> None:
    """Run trials in this process until the study is done."""
    prepared, torch_threads = share_threads(prepared, workers)
    try:
        if study is None:
            study, dimensions = study_module.load(prepared, storage_url, study_name, worker)
        study_module.optimize(prepared, score_trial, study, dimensions, bus=bus or ev.EventBus(),
                              on_trial=tracker.log_trial if tracker else None)
    finally:
        if torch_threads:  # the calling process goes on after the study (Python API): give its threads back
            import torch

            torch.set_num_threads(torch_threads)


def _worker_process(prepared, storage_url: str, study_name: str, worker: int, workers: int,
                    parent_run: str | None) -> None:
    warnings.filterwarnings("ignore")  # the coordinator reports; W copies of every warning help no one
    tracker = None
    if parent_run:
        from .tracking import StudyTracker

        tracker = StudyTracker(prepared.config, parent_run)
    work(prepared, storage_url, study_name, worker, workers, tracker=tracker)


def run_all(prepared, storage_url: str, study_name: str, study, dimensions, *, bus: ev.EventBus,
            tracker=None) -> list[dict[str, Any]]:
    """Worker 0 here, the others as spawned processes; returns how each spawned worker ended."""
    workers = prepared.config.tune.workers
    # spawn, not fork: a forked copy of a process that already started OpenMP/torch thread pools can hang.
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_process, name=f"dojo-tune-worker-{index}",
                                 args=(prepared, storage_url, study_name, index, workers,
                                       tracker.parent_id if tracker else None))
                 for index in range(1, workers)]
    for process in processes:
        process.start()
    try:
        work(prepared, storage_url, study_name, 0, workers, bus=bus, tracker=tracker, study=study,
             dimensions=dimensions)
        for process in processes:
            process.join()
    except BaseException:
        for process in processes:  # Ctrl+C or an error here: do not leave workers running on their own
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        raise
    ended = [{"worker": index, "exit_code": process.exitcode} for index, process in enumerate(processes, 1)]
    for end in ended:
        if end["exit_code"]:
            print(f"warning: tuning worker {end['worker']} exited with code {end['exit_code']}; its running trial "
                  "is retried by the heartbeat check on the next run", file=sys.stderr)
    return ended
