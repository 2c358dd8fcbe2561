"""Where `dojo serve --log-predictions TARGET` writes: a folder of rotated JSON-lines files (the default, nothing
to run), or a database URL (`postgresql://…`, for a team whose servers share one store; `sqlite:///…` works too).

Both stores take batches of finished entries from the prediction log's writer thread, never from the request
path, and both are read back by `read_entries` for `dojo monitor --logs TARGET`.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

FILE_PATTERN = "predictions-*.jsonl"
TABLE = "dojo_prediction_log"
DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql")


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


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """Strict JSON (NaN and infinities as null: PostgreSQL's json types refuse them); numpy values as numbers."""
    text = json.dumps(value, ensure_ascii=False, default=_plain)
    if "NaN" in text or "Infinity" in text:  # rare: only then walk the value (the words may be inside strings)
        text = json.dumps(_finite(json.loads(text)), ensure_ascii=False, allow_nan=False)
    # A lone surrogate (valid in a JSON request, not in UTF-8) becomes "?" rather than failing the whole write.
    return text.encode("utf-8", "replace").decode("utf-8")


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
    """The URL without its password (in the user part or the query), for messages."""
    from sqlalchemy.engine import make_url

    url = make_url(_engine_url(target))
    if "password" in url.query:
        url = url.update_query_dict({"password": "***"})
    return url.render_as_string(hide_password=True)


def _checked(target: str) -> str:
    # An unescaped "@" in a password would put its tail in the host name, and the driver's errors quote hosts.
    authority = target.split("://", 1)[-1].split("/", 1)[0]
    if authority.count("@") > 1:
        raise ConfigError("the log database URL has more than one '@': percent-encode an '@' in the password as %40, "
                          "or leave the password out and use PGPASSWORD or ~/.pgpass")
    return _engine_url(target)


def _database_error(target: str, error: Exception) -> DataError:
    from .. import privacy

    text = privacy.mask(str(error).replace(target, redacted_url(target)), kinds=privacy.PATTERN_KINDS)
    return DataError(f"prediction log {redacted_url(target)}: {text.splitlines()[0] if text else type(error).__name__}")


class FileStore:
    """JSON lines appended to predictions-<start time>-<n>.jsonl, a new file past `max_file_bytes`."""

    linger_s = 0.0  # appending is cheap: write what is there

    def __init__(self, folder: str | Path, max_file_bytes: int = 64 << 20) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = max_file_bytes
        self._stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self._number, self._handle, self._size = 0, None, 0

    def write(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            data = (to_json(entry) + "\n").encode("utf-8")
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

    linger_s = 0.5  # entries gather for up to half a second: a few transactions a second, not one per request

    def __init__(self, url: str) -> None:
        from sqlalchemy import MetaData, create_engine, inspect
        from sqlalchemy.exc import SQLAlchemyError

        self.url = url
        # pool_pre_ping: a server restarted behind a long-running `dojo serve` costs one failed batch, not all.
        self.engine = create_engine(_checked(url), pool_pre_ping=True, json_serializer=to_json)
        self.table = _table(MetaData())
        try:
            self.table.create(self.engine, checkfirst=True)
        except SQLAlchemyError as error:
            # Several servers starting together: another one created the table between the check and the create.
            try:
                exists = inspect(self.engine).has_table(TABLE)
            except SQLAlchemyError:
                exists = False
            if not exists:
                raise _database_error(url, error) from None

    def write(self, entries: list[dict[str, Any]]) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        rows = [{**entry, "time": dt.datetime.fromisoformat(entry["time"]),
                 "model_name": str((entry.get("model") or {}).get("name", ""))[:200]} for entry in entries]
        try:
            with self.engine.begin() as connection:
                connection.execute(self.table.insert(), rows)
        except SQLAlchemyError as error:
            if len(rows) == 1 or isinstance(error.__cause__, OSError):
                raise
            failed = 0  # one row the database refuses must not take the batch with it: row by row
            for row in rows:
                try:
                    with self.engine.begin() as connection:
                        connection.execute(self.table.insert(), [row])
                except SQLAlchemyError:
                    failed += 1
            if failed:
                raise DataError(f"{failed} of {len(rows)} log entries refused by the database: {error}") from None

    def close(self) -> None:
        self.engine.dispose()


def open_store(target: str | Path, max_file_bytes: int = 64 << 20):
    return DatabaseStore(str(target)) if is_database_url(target) else FileStore(target, max_file_bytes)


def read_entries(target: str | Path, model_name: str | None = None, limit: int = 200_000) -> list[dict[str, Any]]:
    """A log folder's or database's entries, oldest first: the newest `limit`, of one model when named."""
    if is_database_url(target):
        from sqlalchemy import MetaData, create_engine, inspect, select
        from sqlalchemy.exc import SQLAlchemyError

        engine = create_engine(_checked(str(target)))
        try:
            if not inspect(engine).has_table(TABLE):
                return []
            table = _table(MetaData())
            query = select(table).order_by(table.c.time.desc()).limit(limit)
            if model_name is not None:
                query = query.where(table.c.model_name == model_name)
            with engine.connect() as connection:
                found = connection.execute(query).mappings().all()
        except SQLAlchemyError as error:
            raise _database_error(str(target), error) from None
        finally:
            engine.dispose()
        return [{key: (value.isoformat() if key == "time" else value) for key, value in row.items()
                 if key != "model_name"} for row in reversed(found)]
    entries = []
    for path in sorted(Path(target).glob(FILE_PATTERN)):
        with open(path, encoding="utf-8") as handle:
            entries.extend(json.loads(line) for line in handle if line.strip())
    if model_name is not None:
        entries = [entry for entry in entries if (entry.get("model") or {}).get("name") == model_name]
    return entries[-limit:]
