"""Where `dojo serve --log-predictions TARGET` writes: a folder of rotated JSON-lines files (the default, nothing
to run), or a database URL (`postgresql://…`, for a team whose servers share one store; `sqlite:///…` works too).

Both stores take batches of finished entries from the prediction log's writer thread, never from the request
path, and both are read back by `read_entries` for `dojo monitor --logs TARGET`.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

FILE_PATTERN = "predictions-*.jsonl"
TABLE = "dojo_prediction_log"
DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql")


def is_database_url(target: str | Path) -> bool:
    scheme = str(target).split("://", 1)[0] if "://" in str(target) else ""
    return scheme.split("+", 1)[0] in DATABASE_SCHEMES


def _engine_url(target: str) -> str:
    # SQLAlchemy knows PostgreSQL as postgresql+driver; `postgres://` (Heroku-style) and a bare `postgresql://`
    # go through psycopg2, which the `tune` extra already installs.
    if target.startswith("postgres://"):
        target = "postgresql://" + target[len("postgres://"):]
    if target.startswith("postgresql://"):
        target = "postgresql+psycopg2://" + target[len("postgresql://"):]
    return target


def redacted_url(target: str) -> str:
    """The URL without its password, for messages and the model card."""
    from sqlalchemy.engine import make_url

    return make_url(_engine_url(target)).render_as_string(hide_password=True)


class FileStore:
    """JSON lines appended to predictions-<start time>-<n>.jsonl, a new file past `max_file_bytes`."""

    def __init__(self, folder: str | Path, max_file_bytes: int = 64 << 20) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = max_file_bytes
        self._stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self._number, self._handle, self._size = 0, None, 0

    def write(self, lines: list[str]) -> None:
        for text in lines:
            data = (text + "\n").encode("utf-8")
            if self._handle is None or self._size + len(data) > self.max_file_bytes and self._size:
                if self._handle:
                    self._handle.close()
                self._number += 1
                path = self.folder / f"predictions-{self._stamp}-{self._number:04d}.jsonl"
                self._handle, self._size = open(path, "ab"), 0
            self._handle.write(data)
            self._size += len(data)
        self._handle.flush()

    def close(self) -> None:
        if self._handle:
            self._handle.close()


def _table(metadata):
    from sqlalchemy import JSON, Column, DateTime, Float, Integer, String, Table, Text

    return Table(TABLE, metadata,
                 Column("request_id", String(32), primary_key=True),
                 Column("time", DateTime(timezone=True), index=True),
                 Column("model_name", String(200), index=True),
                 Column("model", JSON), Column("status", Integer), Column("latency_ms", Float),
                 Column("inputs", JSON), Column("outputs", JSON), Column("error", Text))


class DatabaseStore:
    """One row per entry in `dojo_prediction_log` (created when missing), inserted a batch per transaction."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import MetaData, create_engine

        self.url = url
        # pool_pre_ping: a server restarted behind a long-running `dojo serve` costs one failed batch, not all.
        self.engine = create_engine(_engine_url(url), pool_pre_ping=True)
        self.table = _table(MetaData())
        self.table.create(self.engine, checkfirst=True)

    def write(self, lines: list[str]) -> None:
        rows = []
        for text in lines:
            entry = json.loads(text)
            rows.append({**entry, "time": dt.datetime.fromisoformat(entry["time"]),
                         "model_name": str((entry.get("model") or {}).get("name", ""))})
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), rows)

    def close(self) -> None:
        self.engine.dispose()


def open_store(target: str | Path, max_file_bytes: int = 64 << 20):
    return DatabaseStore(str(target)) if is_database_url(target) else FileStore(target, max_file_bytes)


def read_entries(target: str | Path) -> list[dict[str, Any]]:
    """Every entry of a log folder (oldest file first) or a log database (oldest first)."""
    if is_database_url(target):
        from sqlalchemy import MetaData, create_engine, inspect, select

        engine = create_engine(_engine_url(str(target)))
        try:
            if not inspect(engine).has_table(TABLE):
                return []
            table = _table(MetaData())
            with engine.connect() as connection:
                found = connection.execute(select(table).order_by(table.c.time)).mappings().all()
        finally:
            engine.dispose()
        return [{key: (value.isoformat() if key == "time" else value) for key, value in row.items()
                 if key != "model_name"} for row in found]
    entries = []
    for path in sorted(Path(target).glob(FILE_PATTERN)):
        with open(path, encoding="utf-8") as handle:
            entries.extend(json.loads(line) for line in handle if line.strip())
    return entries
