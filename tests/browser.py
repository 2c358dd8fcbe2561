"""Browser fixtures for the web UI tests: Playwright for Python driving Debian's Chromium.

Playwright's own browser download is not used (it cannot be reached from every machine); the tests
launch an installed Chromium through ``executable_path``: ``$DOJO_CHROMIUM`` when set, else
``/usr/bin/chromium`` (Debian packages ``chromium`` + ``chromium-driver``; ``scripts/install_browser.sh``
installs them). Without Chromium, or without the ``playwright`` package (the ``dev`` extra), every test
that uses these fixtures skips with a message that says so.

Fixtures (imported into tests/conftest.py):

- ``browser`` (session): a headless ``playwright.sync_api.Browser``.
- ``new_page`` (function): factory ``new_page(locale="en-US", **context_options) -> Page``; each call
  opens a fresh browser context (own cookies, storage, locale) and a page in it. Every request made in
  that context is recorded in ``page.recorded_requests`` (a list of :class:`RecordedRequest`).
  Contexts are closed at the end of the test.
- ``page`` (function): ``new_page()`` with the defaults (locale en-US).

Helpers:

- ``assert_only_loopback(requests)``: fails if any URL's host is not 127.0.0.1, localhost or ::1
  (``data:``, ``blob:`` and ``about:`` URLs are allowed). Takes recorded requests, Playwright
  requests or URL strings.
- ``save_screenshot(page, name) -> Path``: writes ``<name>.png`` to ``$DOJO_TEST_ARTIFACTS``
  (default ``/tmp/dojo-test-artifacts``), so that CI can keep it.
- ``browser_available()`` / ``browser_skip_reason()``: for ``pytest.mark.skipif``.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DEFAULT_CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = ("Chromium not installed (Debian packages chromium and chromium-driver; "
                "scripts/install_browser.sh installs them, or set DOJO_CHROMIUM)")
PLAYWRIGHT_HINT = "playwright not installed (pip install 'playwright>=1.40'; it is in the dev extra)"
# Flags that work on the closed-network test machines: without the background-networking ones,
# Chromium keeps trying to reach Google's hosts at start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}
DEFAULT_ARTIFACTS = os.path.join(tempfile.gettempdir(), "dojo-test-artifacts")


def chromium_path() -> str:
    return os.environ.get("DOJO_CHROMIUM") or DEFAULT_CHROMIUM


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return f"{INSTALL_HINT}: {path} not found"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return PLAYWRIGHT_HINT
    return None


def browser_available() -> bool:
    return browser_skip_reason() is None


@dataclass(frozen=True)
class RecordedRequest:
    url: str
    method: str
    resource_type: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.resource_type})"


def _url_of(request) -> str:
    if isinstance(request, str):
        return request
    url = getattr(request, "url", None)
    if isinstance(url, str):
        return url
    raise TypeError(f"not a request or URL: {request!r}")


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    host = (parts.hostname or "").lower()
    return host in LOOPBACK_HOSTS


def assert_only_loopback(requests) -> None:
    """Fail if any request went to a host other than 127.0.0.1 / localhost / ::1."""
    urls = [_url_of(r) for r in requests]
    outside = [u for u in urls if not is_loopback_url(u)]
    assert not outside, (f"{len(outside)} of {len(urls)} requests left the machine "
                         f"(only loopback, data: and blob: are allowed): {outside}")


def artifacts_dir() -> Path:
    path = Path(os.environ.get("DOJO_TEST_ARTIFACTS") or DEFAULT_ARTIFACTS)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_screenshot(page, name: str, full_page: bool = True) -> Path:
    """Screenshot of ``page`` as ``<artifacts>/<name>.png``; returns the path."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "screenshot"
    if not safe.endswith(".png"):
        safe += ".png"
    path = artifacts_dir() / safe
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="session")
def browser():
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dojo-chromium-") as tmp:
        pw = sync_playwright().start()
        try:
            try:
                launched = pw.chromium.launch(
                    executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
                    downloads_path=tmp, timeout=60_000,
                )
            except Exception as exc:  # a broken install: skip with the reason rather than error every test
                pytest.skip(f"could not launch Chromium at {chromium_path()} ({INSTALL_HINT}): {exc}")
            try:
                yield launched
            finally:
                launched.close()
        finally:
            pw.stop()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(locale: str = "en-US", **context_options):
        context = browser.new_context(locale=locale, **context_options)
        contexts.append(context)
        recorded: list[RecordedRequest] = []
        context.on("request", lambda r: recorded.append(RecordedRequest(r.url, r.method, r.resource_type)))
        page = context.new_page()
        page.recorded_requests = recorded
        return page

    yield make
    for context in contexts:
        try:
            context.close()
        except Exception:
            pass


@pytest.fixture
def page(new_page):
    return new_page()
