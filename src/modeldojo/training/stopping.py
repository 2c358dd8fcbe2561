"""Stop on request: `dojo app`'s Stop button (or an orchestrator) sends SIGTERM to a `dojo train` process.

The signal only sets a flag. The training loop looks at it after each optimiser step, writes a checkpoint and
raises `StopRequested`; the run is marked `stopped` and `--resume` continues it from that step, exactly. Tasks
without a step loop (boosters, statistical forecasters) finish their fit and stop before evaluation. A second
signal is left to its default (the process ends at once): a user who insists is obeyed.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

from ..errors import StopRequested

_asked = threading.Event()


def request() -> None:
    _asked.set()


def requested() -> bool:
    return _asked.is_set()


def check(where: str) -> None:
    """Raise StopRequested when a stop was asked for (`where` says what was finished)."""
    if _asked.is_set():
        raise StopRequested(f"training stopped on request {where}")


@contextmanager
def on_signals(signals=(signal.SIGTERM,)):
    """While the block runs, these signals ask for a stop instead of ending the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous, owner = {}, os.getpid()

    def asked(number, _frame):
        if os.getpid() != owner:
            # A worker forked while training (a multiprocessing pool, a data loader) inherited this handler; its
            # parent's terminate() must still end it, or the parent waits for it forever.
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        request()
        signal.signal(number, previous.get(number) or signal.SIG_DFL)  # the next one ends the process

    _asked.clear()  # before the handlers: a signal arriving right after them must count
    for number in signals:
        previous[number] = signal.signal(number, asked)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler or signal.SIG_DFL)  # None: a handler not set from Python
        _asked.clear()
