"""Run folders: one per training run, holding everything needed to trust and reuse it.

runs/<name>/
  status.json        running → completed | failed (written last: a completed run has all its files)
  config.yaml        the resolved config
  data.json          data fingerprint (hash, schema, row counts per split)
  environment.json   package versions and hardware
  checks.json        data-quality report
  metrics.json       test metrics (+ validation, cross-validation)
  model/             meta.json + the task's files, written atomically (temp folder + rename)
  report.html, MODEL_CARD.md
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError, NotFoundError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MODEL_DIR = "model"
META_FILE = "meta.json"
STATUS_FILE = "status.json"


def validate_name(name: str) -> str:
    if not NAME.match(name) or ".." in name:
        raise ConfigError(f"run.name: got {name!r}; use letters, digits, '.', '_' or '-' (no path separators "
                          "or '..'), starting with a letter or digit, at most 128 characters")
    return name


def world_size() -> int:
    """Processes in this training job (set by torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_name(task: str, runs_dir: str | Path | None = None) -> str:
    """<task>-<timestamp>, with -2, -3 … when a run started in the same second already has that folder."""
    name = candidate = f"{task}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    number = 1
    while runs_dir is not None and (Path(runs_dir) / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _fsync_dir(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    # Japanese names and labels stay readable (plain UTF-8, no \uXXXX escapes).
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_model_atomically(directory: Path, writer, meta: dict[str, Any]) -> Path:
    """Build the model in a temp folder beside `directory`, fsync, then swap it in with a rename.

    A crash at any point leaves either the previous model or none — never a half-written one.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        writer(temp)
        write_json(temp / META_FILE, meta)
        for file in temp.iterdir():
            if file.is_file():
                with open(file, "rb") as stream:
                    os.fsync(stream.fileno())
        _fsync_dir(temp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(temp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return directory


def fingerprint(frame: pd.DataFrame, path: str | None) -> dict[str, Any]:
    """Identify the exact data a model saw: a content hash, the schema and the row count."""
    digest = hashlib.sha256()
    if path and Path(path).is_file():
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        hashed = "file bytes"
    else:
        digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
        digest.update("|".join(map(str, frame.columns)).encode())
        hashed = "cell values"
    facts = {"source": path or frame.attrs.get("source", "<DataFrame>"), "sha256": digest.hexdigest(),
             "hashed": hashed, "rows": int(len(frame)), "columns": int(frame.shape[1]),
             "schema": {str(c): str(t) for c, t in frame.dtypes.items()}}
    if frame.attrs.get("encoding"):  # text files: how they were decoded, reused by predict/evaluate
        facts.update(encoding=frame.attrs["encoding"], encoding_detected=bool(frame.attrs.get("encoding_detected")))
    return facts


class Run:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, overwrite: bool = False, resume: bool = False) -> "Run":
        directory = Path(runs_dir) / validate_name(name)
        if resume and cls(directory).resumable():
            run = cls(directory)
            run.set_status("running", resumed=now())
            return run
        if directory.exists():
            if not overwrite:
                raise ConfigError(f"run folder {directory} already exists; choose another --name, pass "
                                  "--overwrite (run.overwrite=true), or --resume to continue an unfinished run")
            if not (directory / STATUS_FILE).exists():
                raise ConfigError(f"{directory} exists and is not a modeldojo run; refusing to overwrite it")
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        run = cls(directory)
        run.set_status("running", started=now())
        return run

    @classmethod
    def open(cls, reference: str | Path, runs_dir: str | Path = "runs") -> "Run":
        """A run by folder path, by name under runs_dir, or by model version (models:/NAME@champion,
        models:/NAME/3: versions.py)."""
        if str(reference).startswith("models:/"):
            from .versions import resolve

            reference = resolve(str(reference), runs_dir)
        candidates = [Path(reference), Path(runs_dir) / str(reference)]
        for directory in candidates:
            if (directory / STATUS_FILE).is_file() or (directory / MODEL_DIR / META_FILE).is_file():
                return cls(directory)
        raise NotFoundError(f"no run {str(reference)!r}: looked in {', '.join(str(c) for c in candidates)} "
                            "(see `dojo runs`)")

    def resumable(self) -> bool:
        """An unfinished run that left a whole training checkpoint behind."""
        if self.status().get("status") not in ("running", "failed", "stopped"):
            return False
        checkpoints = self.directory / "checkpoints"
        return checkpoints.is_dir() and any(p.name.startswith("step-") and (p / "state.json").is_file()
                                            for p in checkpoints.iterdir())

    def status(self) -> dict[str, Any]:
        path = self.directory / STATUS_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"status": "unknown"}

    def set_status(self, status: str, **extra: Any) -> None:
        current = self.status() if (self.directory / STATUS_FILE).is_file() else {}
        current.update(extra, status=status, updated=now())
        write_json(self.directory / STATUS_FILE, current)

    def write_json(self, name: str, data: Any) -> Path:
        write_json(self.directory / name, data)
        return self.directory / name

    def read_json(self, name: str) -> Any:
        path = self.directory / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.directory / name, text)
        return self.directory / name


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    root = Path(runs_dir)
    if not root.is_dir():
        return rows
    for directory in sorted(root.iterdir()):
        if not (directory / STATUS_FILE).is_file():
            continue
        run = Run(directory)
        status = run.status()
        rows.append({"name": run.name, "status": status.get("status"), "task": status.get("task"),
                     "kind": status.get("kind"), "learner": status.get("learner"),
                     "started": status.get("started"), "metrics": run.read_json("metrics.json") or {}})
    return rows


def reading_encoding(reference: str | Path, runs_dir: str | Path = "runs") -> tuple[str, str | None]:
    """(encoding, prefer) for reading a new file for a run when no --encoding is given.

    An encoding set explicitly at training is reused as is. A detected one is only the preference: each file
    is detected again (its own BOM or UTF-8 proves more than the training file did), the run's encoding
    breaking cp932/euc_jp ties and tried before guessing a Western code page. Runs older than this
    record (and export folders) give ("auto", None).
    """
    try:
        facts = Run.open(reference, runs_dir).read_json("data.json") or {}
    except NotFoundError:
        return "auto", None
    if facts.get("encoding") and not facts.get("encoding_detected"):
        return facts["encoding"], None
    return "auto", facts.get("encoding")
