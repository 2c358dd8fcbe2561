"""Tasks live in one sub-package each and register themselves on import.

`load_all()` imports every sub-package, so adding a task is adding a folder.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import TASKS, Prediction, Task  # noqa: F401

_loaded = False


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")
    _loaded = True


def get(name: str) -> type[Task]:
    load_all()
    return TASKS.get(name)


def detect(frame, target) -> str:
    """The registered task that claims the data most strongly."""
    load_all()
    scores = {name: TASKS.get(name).detect(frame, target) for name in TASKS}
    return max(scores, key=scores.get)
