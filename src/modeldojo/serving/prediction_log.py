"""`dojo serve --log-predictions DIR|URL`: every answered (or refused) request as one JSON line — request id, time,
model name and source, inputs, outputs, latency, status — with personal data masked (privacy.mask_json).

The request path only puts a reference on a bounded queue (`put_nowait`: a full queue drops the entry and counts
it, it never waits); one writer thread takes what is queued, masks and serialises it, and hands the batch to a store (log_stores.py):
rotated JSON-lines files in a folder, or a table in a database such as PostgreSQL. `dojo monitor RUN --logs DIR|URL`
reads them back.

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

from . import log_stores
from .log_stores import FILE_PATTERN  # noqa: F401 - re-exported for readers of the folder layout

_STOP = object()


class PredictionLog:
    def __init__(self, target: str | Path, *, model: dict[str, Any], sample_rate: float = 1.0,
                 max_file_bytes: int = 64 << 20, max_queue: int = 10000, seed: int | None = None,
                 max_batch: int = 256, mask_names: bool = False) -> None:
        # The store opens here, in the server's start-up, so a bad database URL fails loudly before traffic.
        self.store = log_stores.open_store(target, max_file_bytes)
        self.model, self.sample_rate, self.max_batch = model, sample_rate, max_batch
        # Names need a spaCy model at ~15 ms a string: only on request (--log-mask-names), as a busy server's
        # writer would fall behind and drop entries; the patterns (e-mail, phones, My Number, cards …) always run.
        from .. import privacy

        self.kinds = None if mask_names else privacy.PATTERN_KINDS
        self.queue: queue.Queue = queue.Queue(max_queue)
        self.dropped = 0  # entries the full queue could not take (the writer fell behind) or the store refused
        self._random = random.Random(seed)
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
    def _entry(self, item) -> dict[str, Any]:
        from .. import privacy

        request_id, stamp, rows, answers, latency_s, status, error = item
        line = {"request_id": request_id,
                "time": dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="milliseconds"),
                "model": self.model, "status": status, "latency_ms": round(latency_s * 1000, 3),
                "inputs": privacy.mask_json(rows, kinds=self.kinds),
                "outputs": privacy.mask_json(answers, kinds=self.kinds),
                "error": privacy.mask(error, kinds=self.kinds).replace("\x00", "") if error else None}
        return line  # each store serialises it its own way, once (log_stores.to_json)

    def _write_all(self) -> None:
        stopping = False
        while not stopping:
            batch = [self.queue.get()]
            # What is queued meanwhile goes in the same write; a database store waits a little for more (one
            # transaction per request cost its server ~20 % of a 2-core machine's p99: bench/serve.py).
            deadline = time.monotonic() + self.store.linger_s
            while len(batch) < self.max_batch and _STOP not in batch:
                try:
                    batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if not batch:
                continue
            entries = []
            for item in batch:
                try:
                    entries.append(self._entry(item))
                except Exception as failure:  # noqa: BLE001 - one odd request loses its own entry only
                    self._lost(1, failure)
            try:
                self.store.write(entries)
            except Exception as failure:  # noqa: BLE001 - a full disk or a lost database must not stop serving
                self._lost(len(entries), failure)
        self.store.close()

    def _lost(self, count: int, failure: Exception) -> None:
        logging.getLogger("uvicorn.error").warning("prediction log: %d entries lost: %s", count,
                                                   privacy_safe(failure))
        self.dropped += count

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self.queue.put(_STOP)
        self._thread.join(timeout)


def privacy_safe(failure: Exception) -> str:
    """A store's error text, masked (a database error can quote the row it refused)."""
    from .. import privacy

    return privacy.mask(str(failure), kinds=privacy.PATTERN_KINDS)[:500]


class MaskingFilter(logging.Filter):
    """Personal data masked in every log record this filter sees (its message formatted first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .. import privacy

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business, not ours
            return True
        # Patterns only: this runs on the request and event-loop threads, where a name model's ~15 ms (and its
        # tokenizer, which is not thread-safe) do not belong.
        masked = privacy.mask(message, kinds=privacy.PATTERN_KINDS)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def read_logs(target: str | Path, model_name: str | None = None, limit: int = 200_000) -> list[dict[str, Any]]:
    """A prediction-log folder's or database's entries, oldest first (log_stores.read_entries)."""
    return log_stores.read_entries(target, model_name, limit)
