"""`events.jsonl` in every run folder: the run's events as they happen, one JSON object per line.

Written by the training process itself and read by anyone else while it runs — `dojo app`'s live page tails it
and streams it to the browser (server-sent events), so a training process needs no server of its own. Per-step
metrics are all kept (the curves); progress is kept at most a few times a second (and its last value), so a
booster's thousands of rounds do not make a large file.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

FILE_NAME = "events.jsonl"
PROGRESS_EVERY_S = 0.25


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a diverged loss shows as a gap in the curve
    return value


def _ends_with_newline(path: Path) -> bool:
    """True for a missing or empty file or one whose last line is whole (reads one byte, not the file)."""
    if not path.is_file() or path.stat().st_size == 0:
        return True
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


class EventLog:
    def __init__(self, run_directory: Path) -> None:
        self.path = Path(run_directory) / FILE_NAME
        self._ended_cleanly = _ends_with_newline(self.path)
        self._handle = open(self.path, "a", encoding="utf-8")
        self._last_progress: dict[str, float] = {}
        self._started = time.time()

    def _write(self, event: str, **fields: Any) -> None:
        if self._handle.closed:
            return
        if self._handle.tell() and not self._ended_cleanly:
            self._handle.write("\n")  # the previous process was killed mid-line: start on a line of our own
        self._ended_cleanly = True
        line = {"event": event, "time": round(time.time(), 3), "elapsed": round(time.time() - self._started, 3),
                **fields}
        self._handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()  # the reader is another process, now

    def on_metrics(self, metrics: dict[str, Any], step: int | None = None, prefix: str = "", **_: Any) -> None:
        scalars = {f"{prefix}{k}": _number(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if scalars:
            self._write("metrics", step=step, metrics=scalars)

    def on_intermediate(self, metrics: dict[str, Any], step: int, **_: Any) -> None:
        self.on_metrics(metrics, step=step, prefix="val_")

    def on_progress(self, name: str, completed: int, total: int, info: str = "", rate: float | None = None,
                    **_: Any) -> None:
        now = time.monotonic()
        if completed < total and now - self._last_progress.get(name, 0.0) < PROGRESS_EVERY_S:
            return
        self._last_progress[name] = now
        self._write("progress", name=name, completed=completed, total=total, info=info,
                    rate=round(rate, 2) if rate else None)  # examples per second, where the task counts them

    def on_stage(self, name: str, detail: str = "", **_: Any) -> None:
        self._write("stage", name=name, detail=detail)

    def on_run_completed(self, metrics: dict[str, Any], **_: Any) -> None:
        self._write("completed", metrics={k: _number(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        self._handle.close()

    def on_run_failed(self, error: BaseException, **_: Any) -> None:
        self._write("stopped" if type(error).__name__ == "StopRequested" else "failed",
                    error=f"{type(error).__name__}: {error}")
        self._handle.close()


def read(run_directory: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events from byte `offset` on, and the offset after the last whole line (a line still being written waits)."""
    path = Path(run_directory) / FILE_NAME
    if not path.is_file():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:  # a line cut short when a process was killed: the next process appends after it
            continue
    return events, offset + end
