"""A real uvicorn server on a free 127.0.0.1 port, on a background thread, for the serving tests."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(app, ready: bool = True, headers: dict | None = None):
    """Yield the base URL while `app` serves; `ready`: wait for readiness (the model loaded and warmed), else
    only for the server to answer."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                                           log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url + ("/v2/health/ready" if ready else "/v2/health/live"), timeout=1,
                                 headers=headers)
            if response.status_code == 200 or not ready:  # not waiting for readiness: any answer will do
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        raise TimeoutError("server did not come up")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(20)


def schemathesis(url: str, folder, max_examples: int, exclude: tuple[str, ...] = ()):
    """The schemathesis command line with all checks (but `exclude`) on the served OpenAPI document; the finished
    process (assert its returncode is 0, printing its output otherwise)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).with_name("schemathesis")), "run", url + "/openapi.json", "--checks", "all",
               *[word for check in exclude for word in ("--exclude-checks", check)],
               "--max-examples", str(max_examples), "--seed", "7", "--no-color"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"}, cwd=folder)
