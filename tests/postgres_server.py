"""A throw-away PostgreSQL server for tests (Optuna's RDBStorage over SQLAlchemy + psycopg2).

The session fixture ``postgres_url`` runs ``initdb`` into a temporary folder, starts the server on
a free port of 127.0.0.1 (Unix socket inside the same folder, fsync off), creates a database
``optuna`` and yields ``postgresql+psycopg2://dojo@127.0.0.1:PORT/optuna``. At the end it stops
the server (``pg_ctl -m immediate stop``) and removes the folder. Without the server binaries
(Debian package ``postgresql``; ``scripts/install_postgres.sh`` installs it) the tests skip.

initdb refuses to run as root, so under root the server runs as the ``postgres`` system user
(created by the Debian package) via ``runuser`` (or ``su``).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

INSTALL_HINT = "PostgreSQL server not installed (Debian package postgresql; scripts/install_postgres.sh installs it)"
USER = "dojo"
DATABASE = "optuna"
SYSTEM_USER = "postgres"


def _version_key(bindir: str):
    major = Path(bindir).parent.name
    return tuple(int(p) for p in re.findall(r"\d+", major)) or (0,)


def find_bindir() -> str | None:
    """Folder holding initdb and pg_ctl: the highest /usr/lib/postgresql/<major>/bin, else PATH."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if all(os.access(os.path.join(bindir, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return bindir
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return os.path.dirname(initdb)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Runner:
    """Runs the server binaries as the current user, or as ``postgres`` when we are root."""

    def __init__(self):
        self.as_user = None
        if os.geteuid() == 0:
            try:
                self.as_user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                pytest.skip(f"PostgreSQL tests run as root need the '{SYSTEM_USER}' system user "
                            f"(initdb refuses to run as root; the Debian package postgresql creates it)")
            if not (shutil.which("runuser") or shutil.which("su")):
                pytest.skip("PostgreSQL tests run as root need runuser or su to start the server "
                            f"as the '{SYSTEM_USER}' user")

    def command(self, argv: list[str]) -> list[str]:
        if self.as_user is None:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", SYSTEM_USER, "--", *argv]
        return ["su", SYSTEM_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]

    def run(self, argv: list[str], cwd: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def own(self, path: str) -> None:
        if self.as_user is not None:
            os.chown(path, self.as_user.pw_uid, self.as_user.pw_gid)

    def can_use(self, path: str) -> bool:
        """Whether the server's user can write into ``path`` (all parents must be traversable)."""
        if self.as_user is None:
            return True
        try:
            return self.run(["test", "-w", path, "-a", "-x", path], cwd="/", timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def _make_base(runner: _Runner) -> str:
    """A fresh temp folder owned by the server's user, in a place that user can reach."""
    for parent in dict.fromkeys([None, "/tmp", "/var/tmp"]):
        base = tempfile.mkdtemp(prefix="dojo-pg-", dir=parent)
        runner.own(base)
        if runner.can_use(base):
            return base
        shutil.rmtree(base, ignore_errors=True)
    pytest.skip(f"no temporary folder that the '{SYSTEM_USER}' user can write to "
                f"(tried {tempfile.gettempdir()}, /tmp, /var/tmp)")


def _tail(path: str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty server log)"


def _output(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(s.strip() for s in (proc.stdout, proc.stderr) if s and s.strip())


@pytest.fixture(scope="session")
def postgres_url():
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(f"{INSTALL_HINT}: no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH")
    initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
    try:
        import psycopg2
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg2 (pip install psycopg2-binary)")

    runner = _Runner()
    base = _make_base(runner)
    data, sockdir, log = (os.path.join(base, n) for n in ("data", "socket", "server.log"))
    started = False

    def stop():
        try:
            runner.run([pg_ctl, "-D", data, "-m", "immediate", "stop"], cwd=base, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass

    try:
        os.mkdir(sockdir, 0o700)
        runner.own(sockdir)
        proc = runner.run([initdb, "-D", data, "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8",
                           "--locale=C"], cwd=base, timeout=180)
        if proc.returncode != 0:
            pytest.skip(f"initdb failed (exit {proc.returncode}):\n{_output(proc)[-3000:]}")

        failure = ""
        for _attempt in range(3):  # a freshly picked free port can be taken before the server binds it
            port = _free_port()
            options = (f"-h 127.0.0.1 -p {port} -k {shlex.quote(sockdir)} "
                       "-c fsync=off -c max_connections=100")
            try:
                proc = runner.run([pg_ctl, "-w", "-t", "60", "-D", data, "-l", log, "-o", options, "start"],
                                  cwd=base, timeout=120)
                ok, failure = proc.returncode == 0, _output(proc)
            except subprocess.TimeoutExpired:
                ok, failure = False, "pg_ctl start timed out"
            if ok:
                started = True
                break
            stop()  # in case it came half up
        if not started:
            pytest.skip(f"PostgreSQL server did not start: {failure}\n--- server log tail ---\n{_tail(log)}")

        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres",
                                    connect_timeout=30)
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE {DATABASE}")
            finally:
                conn.close()
        except psycopg2.Error as exc:
            pytest.skip(f"could not create database {DATABASE!r}: {exc}\n"
                        f"--- server log tail ---\n{_tail(log)}")

        yield f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started or os.path.exists(os.path.join(data, "postmaster.pid")):
            stop()
        shutil.rmtree(base, ignore_errors=True)
