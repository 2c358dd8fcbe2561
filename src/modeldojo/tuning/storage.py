"""Optuna storages that parallel workers can share without losing trials.

* `sqlite:///path` (the default, one machine): WAL journal mode plus a long busy timeout. SQLite allows one
  writer at a time; with the default rollback journal and pysqlite's 5 s timeout, four workers writing
  heartbeats and trial updates hit "database is locked" (measured in bench/tune.py --storage-check).
* `postgresql://…` (several machines): every machine runs `dojo tune … --storage URL --name STUDY`.
* `journal:///path`: Optuna's append-only journal file (no database), for file systems where SQLite's
  locking misbehaves; it has no heartbeats, so dead workers' trials are not retried.

RDB storages get heartbeats: a running trial whose worker stops beating for 2x tune.heartbeat seconds is
marked failed by the next worker that starts a trial, and re-queued with the same parameters up to
tune.retries times.
"""
from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

from ..errors import ConfigError

SQLITE_BUSY_SECONDS = 300


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def open_storage(url: str, *, heartbeat: int, retries: int):
    import optuna

    if url.startswith("journal:///"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:///"):]))
    engine_kwargs: dict = {}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS) as connection:
            # WAL lets readers go on while one process writes; the mode is stored in the file itself.
            connection.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs = {"pool_pre_ping": True}  # a server restart must not kill a long study
    elif "://" not in url:
        raise ConfigError(f"tune.storage: {url!r} is not a storage URL (sqlite:///file.db, "
                          "postgresql://user@host/db or journal:///file.log)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries))
        except ImportError as error:
            raise ConfigError(f"tune.storage {url.split(':')[0]}: its database driver is missing ({error}); for "
                              "PostgreSQL: pip install 'modeldojo[tune]' (psycopg2-binary)") from None
        except Exception as error:  # sqlalchemy.exc.OperationalError etc.: say which storage
            raise ConfigError(f"tune.storage: cannot open {redact(url)}: {type(error).__name__}: "
                              f"{str(error).splitlines()[0]}") from None


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}:***@{host}" if ":" in credentials else url
    return url
