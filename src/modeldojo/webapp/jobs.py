"""Training started from the web app: one `dojo train` process at a time, the rest queued.

Each run trains in a process of its own, the same `dojo train` a user would type: the web server stays
responsive while PyTorch or a booster takes every core, a crash in training cannot take the pages down, and
what the page shows is what the command line does. The process writes the run folder (status.json,
events.jsonl, the model); the pages read that folder, so a run started here looks like any other.

Stop sends SIGTERM: the training loop finishes its step, writes a checkpoint and exits with code 8; the run is
`stopped` and Resume starts the same command with --resume. On a machine with two cores, two trainings at
once only make both slow, hence one at a time and a short queue; a full queue is refused with a reason.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_S = 60.0  # after SIGTERM, how long a step (and its checkpoint) may take before the process is killed


def _kill_group(process: subprocess.Popen) -> None:
    """The process and what it started (data-loader workers): they share its session."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


class Busy(Exception):
    """The queue is full, or the run is already queued or training: the message says which."""


@dataclass
class Job:
    name: str
    arguments: list[str]  # after `dojo train`
    state: str = "queued"  # queued → running → finished (or cancelled)
    returncode: int | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    process: subprocess.Popen | None = None
    stop_asked_at: float | None = None


class Jobs:
    def __init__(self, runs_dir: str | Path, max_queued: int = 3, python: str = sys.executable) -> None:
        self.runs_dir, self.max_queued, self.python = Path(runs_dir), max_queued, python
        self.logs = self.runs_dir / ".app-logs"  # a run's own folder may not exist yet (bad data fails first)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._queue: deque[Job] = deque()
        self._running: Job | None = None
        self._known: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._pump, name="dojo-app-jobs", daemon=True)
        self._thread.start()

    # -- what the pages call ---------------------------------------------------------------
    def submit(self, name: str, arguments: list[str], remember: bool = True) -> Job:
        """Queue `dojo train ARGUMENTS`; `remember`: keep them for Resume (a restart from scratch is not kept)."""
        with self._lock:
            active = self._running.name if self._running else None
            if name == active or any(job.name == name for job in self._queue):
                raise Busy(f"run {name!r} is already {'training' if name == active else 'queued'}")
            if (self._running or self._queue) and len(self._queue) >= self.max_queued:  # nothing runs: it starts
                raise Busy(f"{len(self._queue)} runs are already waiting behind {active!r} (at most "
                           f"{self.max_queued}); wait for one to finish or stop one")
            job = Job(name, list(arguments))
            if remember:  # kept beside the log: Resume repeats the command, even after the app restarted
                (self.logs / f"{name}.args.json").write_text(json.dumps(job.arguments), encoding="utf-8")
            self._queue.append(job)
            self._known[name] = job
        self._wake.set()
        return job

    def stop(self, name: str) -> str:
        """'cancelled' (it was waiting), 'stopping' (SIGTERM sent) or 'idle' (nothing of that name runs)."""
        with self._lock:
            for job in list(self._queue):
                if job.name == name:
                    self._queue.remove(job)
                    job.state = "cancelled"
                    return "cancelled"
            job = self._running
            if job is None or job.name != name or job.process is None:
                return "idle"
            if job.stop_asked_at is None:
                job.stop_asked_at = time.monotonic()
                job.process.send_signal(signal.SIGTERM)
            return "stopping"

    def state(self, name: str) -> dict | None:
        with self._lock:
            job = self._known.get(name)
            if job is None:
                return None
            ahead = [queued.name for queued in self._queue]
            position = ahead.index(name) + 1 if name in ahead else None
            return {"state": job.state, "returncode": job.returncode, "position": position,
                    "behind": self._running.name if self._running and position else None,
                    "stopping": job.stop_asked_at is not None and job.state == "running"}

    def active(self) -> list[tuple[str, str]]:
        """(name, state) of the training run and the queued ones."""
        with self._lock:
            running = [(self._running.name, "running")] if self._running else []
            return running + [(job.name, "queued") for job in self._queue]

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def close(self) -> None:
        """The server is shutting down: queued runs are dropped, a training one is asked to stop."""
        self._closing = True
        with self._lock:
            self._queue.clear()
            running = self._running
        if running and running.process and running.process.poll() is None:
            if running.stop_asked_at is None:  # a second SIGTERM would end it in the middle of its checkpoint
                running.process.send_signal(signal.SIGTERM)
            try:
                running.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(running.process)
        self._wake.set()

    # -- the one thread that starts and watches processes ---------------------------------
    def _pump(self) -> None:
        while not self._closing:
            self._wake.wait(0.2)
            self._wake.clear()
            with self._lock:
                job = self._running
                if job is not None:
                    code = job.process.poll()
                    if code is None and job.stop_asked_at and time.monotonic() - job.stop_asked_at > STOP_GRACE_S:
                        _kill_group(job.process)  # a step that never ends: the last checkpoint stays usable
                    elif code is not None:
                        job.state, job.returncode, self._running = "finished", code, None
                if self._running is None and self._queue and not self._closing:
                    job = self._queue.popleft()
                    try:
                        self._start(job)
                    except OSError as error:  # the queue goes on; the run page shows the reason
                        job.state, job.returncode = "finished", -1
                        with open(self.log_path(job.name), "a", encoding="utf-8") as log:
                            log.write(f"\ncould not start dojo train: {error}\n")

    def _start(self, job: Job) -> None:
        command = [self.python, "-m", "modeldojo.cli", "train", *job.arguments]
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "120"}
        with open(self.log_path(job.name), "ab") as log:
            log.write(("$ dojo train " + " ".join(job.arguments) + "\n").encode())
            # A session of its own: Ctrl+C on `dojo app` reaches the app, which stops the run cleanly (SIGTERM,
            # checkpoint), instead of interrupting training in the middle of a step.
            job.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=environment, start_new_session=True)
        job.state, job.started_at, self._running = "running", time.time(), job
