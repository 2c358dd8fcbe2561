"""A tiny synchronous event bus.

Side effects (tracking, progress output, checkpoints) subscribe to events instead of being
called from the training code, so the core path stays short and testable: a test can
subscribe a list-appender and assert on what was emitted.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

Handler = Callable[..., None]

# The events the orchestration emits, with their keyword payloads.
RUN_STARTED = "run_started"          # run, config
CHECKS_DONE = "checks_done"          # report
TRAINING_STARTED = "training_started"  # task, rows
METRICS = "metrics"                  # metrics: dict[str, float], step: int | None, prefix: str
ARTIFACT = "artifact"                # path
RUN_COMPLETED = "run_completed"      # run, metrics
RUN_FAILED = "run_failed"            # run, error
STAGE = "stage"                      # name, detail (human-readable progress)
PROGRESS = "progress"                # name, completed, total (e.g. boosting rounds, CV folds)
# Validation scores while a booster trains (metrics, step = boosting round), for tuning's pruner. Learners
# compute them only when someone subscribed: each costs a prediction pass over the validation rows.
INTERMEDIATE = "intermediate"


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, event: str, handler: Handler) -> None:
        self._handlers[event].append(handler)

    def subscribe_all(self, subscriber: Any) -> None:
        """Subscribe every `on_<event>` method of an object."""
        for name in dir(subscriber):
            if name.startswith("on_"):
                self.subscribe(name[3:], getattr(subscriber, name))

    def has_subscribers(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def emit(self, event: str, **payload: Any) -> None:
        for handler in list(self._handlers.get(event, ())):
            handler(**payload)
