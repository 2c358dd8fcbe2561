"""Errors a user can act on. Each carries the exit code the CLI returns for it.

Exit codes (documented in docs/cli.md):
  0 success · 1 unexpected internal error · 2 bad command line or config ·
  3 bad input data (blocking data-quality problem) · 4 training failed · 5 run or model not found ·
  6 export refused (parity check failed) · 8 training stopped on request (resumable with --resume)
"""
from __future__ import annotations


class DojoError(Exception):
    """Base class: the message is meant for the user, verbatim."""

    exit_code = 1


class ConfigError(DojoError):
    """A config value, override or command-line flag is wrong."""

    exit_code = 2


class DataError(DojoError):
    """The input data cannot be used as given (file, line and column named in the message)."""

    exit_code = 3


class TrainingError(DojoError):
    exit_code = 4


class NotFoundError(DojoError):
    """A run, model folder or file that was asked for does not exist."""

    exit_code = 5


class ParityError(DojoError):
    """An export whose outputs differ from the original model's beyond the tolerance."""

    exit_code = 6


class StopRequested(DojoError):
    """Training was asked to stop (SIGTERM, e.g. `dojo app`'s Stop button): the last checkpoint is on disk and the
    run is marked `stopped`; `dojo train … --resume` continues it."""

    exit_code = 8
