"""`dojo serve --log-predictions DIR`: every answered (or refused) request as one JSON line — request id, time,
model name and source, inputs, outputs, latency, status — with personal data masked (privacy.mask_json).

The request path only puts a reference on a bounded queue (`put_nowait`: a full queue drops the entry and counts
it, it never waits); one writer thread masks, serialises and appends, rotating files at `max_file_bytes`
(predictions-<start time>-<n>.jsonl). `dojo monitor RUN --logs DIR` reads these files back.

The server's own log lines pass through `MaskingFilter`, so an error message that quotes a cell (a DataError naming
a value) never writes an e-mail address or a phone number into the log either.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

FILE_PATTERN = "predictions-*.jsonl"
_STOP = object()


def _plain(value: Any) -> Any:
    """JSON for what a request may hold beyond JSON (image bytes, arrays): a short description."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<array {tuple(shape)}>"
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class PredictionLog:
    def __init__(self, folder: str | Path, *, model: dict[str, Any], sample_rate: float = 1.0,
                 max_file_bytes: int = 64 << 20, max_queue: int = 10000, seed: int | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model, self.sample_rate, self.max_file_bytes = model, sample_rate, max_file_bytes
        self.queue: queue.Queue = queue.Queue(max_queue)
        self.dropped = 0  # entries the full queue could not take (the writer fell behind)
        self._random = random.Random(seed)
        self._stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self._number, self._handle, self._size = 0, None, 0
        self._thread = threading.Thread(target=self._write_all, name="dojo-prediction-log", daemon=True)
        self._thread.start()

    # -- the request path: never blocks ----------------------------------------------------
    def record(self, rows: list[dict[str, Any]], answers: list[Any] | None, latency_s: float,
               status: int = 200, error: str | None = None) -> str | None:
        """Queue one request's entry; returns its id (None when sampled out or dropped)."""
        if self.sample_rate < 1.0 and self._random.random() >= self.sample_rate:
            return None
        request_id = uuid.uuid4().hex
        entry = (request_id, time.time(), rows, answers, latency_s, status, error)
        try:
            self.queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            return None
        return request_id

    # -- the writer thread -----------------------------------------------------------------
    def _write_all(self) -> None:
        from .. import privacy

        while True:
            item = self.queue.get()
            if item is _STOP:
                break
            request_id, stamp, rows, answers, latency_s, status, error = item
            line = {"request_id": request_id,
                    "time": dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="milliseconds"),
                    "model": self.model, "status": status, "latency_ms": round(latency_s * 1000, 3),
                    "inputs": privacy.mask_json(rows), "outputs": privacy.mask_json(answers),
                    "error": privacy.mask(error) if error else None}
            try:
                self._append(json.dumps(line, ensure_ascii=False, default=_plain) + "\n")
            except OSError as failure:  # a full disk must not take the server down: count and go on
                logging.getLogger("uvicorn.error").warning("prediction log: %s", failure)
                self.dropped += 1
            if self.queue.empty() and self._handle:
                self._handle.flush()
        if self._handle:
            self._handle.close()

    def _append(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._handle is None or self._size + len(data) > self.max_file_bytes and self._size:
            if self._handle:
                self._handle.close()
            self._number += 1
            path = self.folder / f"predictions-{self._stamp}-{self._number:04d}.jsonl"
            self._handle, self._size = open(path, "ab"), 0
        self._handle.write(data)
        self._size += len(data)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self.queue.put(_STOP)
        self._thread.join(timeout)


class MaskingFilter(logging.Filter):
    """Personal data masked in every log record this filter sees (its message formatted first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .. import privacy

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business, not ours
            return True
        masked = privacy.mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def read_logs(folder: str | Path) -> list[dict[str, Any]]:
    """Every entry of a prediction-log folder, oldest file first."""
    entries = []
    for path in sorted(Path(folder).glob(FILE_PATTERN)):
        with open(path, encoding="utf-8") as handle:
            entries.extend(json.loads(line) for line in handle if line.strip())
    return entries
