"""Tasks live in one sub-package each and register themselves on import.

`load_all()` imports every sub-package, so adding a task is adding a folder.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

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


def read(source, **options):
    """Rows from a path or DataFrame: a layout a task reads itself (tasks' `read_source`), else the shared readers
    (data/readers.py, `options` are theirs: format, delimiter, encoding, prefer)."""
    import pandas as pd

    from ..data import readers

    if not isinstance(source, pd.DataFrame) and source is not None:
        load_all()
        for name in TASKS:
            frame = TASKS.get(name).read_source(Path(source))
            if frame is not None:
                return frame
    return readers.read(source, **options)


def detect(frame, target, config=None) -> str:
    """The registered task that claims the data most strongly (or the one the config's settings ask for)."""
    load_all()
    if config is not None:
        for name in TASKS:
            if TASKS.get(name).claims(config):
                return name
    scores = {name: TASKS.get(name).detect(frame, target) for name in TASKS}
    return max(scores, key=scores.get)
