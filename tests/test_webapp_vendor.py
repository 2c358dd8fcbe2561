"""The web UI's vendored JavaScript (scripts/vendor_js.sh): checksums, licences, size, no external
fetches; and a browser smoke test that loads it from a loopback server (skips without Chromium)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from browser import assert_only_loopback, browser_available, browser_skip_reason, save_screenshot

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "modeldojo" / "webapp" / "static" / "vendor"
SCRIPT = ROOT / "scripts" / "vendor_js.sh"
MAX_TOTAL = 200 * 1024
# Things that would be fetched from outside when a page loads the files.
EXTERNAL_PATTERNS = [r"//cdn", r"fonts\.googleapis", r"fonts\.gstatic", r"unpkg\.com", r"jsdelivr", r"cdnjs"]
CSS_EXTERNAL = [r"@import", r"url\(\s*['\"]?\s*(https?:)?//"]


def manifest() -> dict:
    return json.loads((VENDOR / "vendor.json").read_text(encoding="utf-8"))


def test_every_listed_file_exists_with_its_checksum_and_size():
    files = manifest()["files"]
    assert files
    for entry in files:
        path = VENDOR / entry["file"]
        assert path.is_file(), f"{entry['file']} listed in vendor.json but missing (run scripts/vendor_js.sh)"
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['file']}: sha256 differs from vendor.json"
        assert len(data) == entry["size"], f"{entry['file']}: size differs from vendor.json"
        for key in ("package", "version", "source", "license"):
            assert entry[key], f"{entry['file']}: no {key} in vendor.json"


def test_no_unlisted_files():
    listed = {e["file"] for e in manifest()["files"]} | {"vendor.json"}
    present = {p.name for p in VENDOR.iterdir()}
    assert present == listed


def test_the_expected_assets_are_vendored():
    names = {e["file"] for e in manifest()["files"]}
    assert {"htmx.min.js", "htmx-ext-sse.min.js", "uPlot.iife.min.js", "uPlot.min.css"} <= names
    packages = manifest()["packages"]
    assert set(packages) == {"htmx.org", "htmx-ext-sse", "uplot"}
    assert packages["htmx.org"]["version"].startswith("2."), "the SSE extension and templates target htmx 2"
    assert packages["htmx-ext-sse"]["version"].startswith("2."), "htmx-ext-sse 2.x is the one for htmx 2"


def test_every_package_has_a_licence_file():
    files = manifest()["files"]
    for package, info in manifest()["packages"].items():
        assert info["license"], f"{package}: no licence name"
        licences = [e for e in files if e["package"] == package and e["kind"] == "license"]
        assert licences, f"{package}: no licence file vendored"
        for entry in licences:
            text = (VENDOR / entry["file"]).read_text(encoding="utf-8")
            assert re.search(r"licen[cs]e|permission", text, re.I), f"{entry['file']} does not look like a licence"


def test_total_size_is_small():
    total = sum(p.stat().st_size for p in VENDOR.iterdir() if p.is_file())
    assert total < MAX_TOTAL, f"vendored files are {total} bytes (limit {MAX_TOTAL})"


def test_no_external_urls_fetched_at_load_time():
    for path in VENDOR.iterdir():
        if path.suffix not in (".js", ".css"):
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in EXTERNAL_PATTERNS + (CSS_EXTERNAL if path.suffix == ".css" else []):
            match = re.search(pattern, text, re.I)
            assert not match, f"{path.name} references an external resource: {text[max(0, match.start() - 40):match.end() + 40]!r}"


def test_script_pins_match_the_manifest():
    """vendor.json was written by the current pins of scripts/vendor_js.sh (version and tarball integrity)."""
    pins = re.findall(r'^\s*"([^"|]+)\|([^|]+)\|(sha512-[^|]+)\|', SCRIPT.read_text(encoding="utf-8"), re.M)
    assert pins, "no package pins found in scripts/vendor_js.sh"
    packages = manifest()["packages"]
    assert {name for name, _, _ in pins} == set(packages)
    for name, version, integrity in pins:
        assert packages[name]["version"] == version, f"{name}: re-run scripts/vendor_js.sh"
        assert packages[name]["tarball_integrity"] == integrity, f"{name}: re-run scripts/vendor_js.sh"


# --- Browser smoke test -------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vendor smoke</title>
<link rel="stylesheet" href="/vendor/uPlot.min.css">
<script src="/vendor/htmx.min.js"></script>
<script src="/vendor/htmx-ext-sse.min.js"></script>
<script src="/vendor/uPlot.iife.min.js"></script>
</head><body>
<div id="feed" hx-ext="sse" sse-connect="/events" sse-swap="message">waiting</div>
<div id="chart"></div>
<script>
  window.drawChart = function () {
    const opts = {width: 320, height: 160, title: "smoke",
                  series: [{}, {label: "loss", stroke: "#1f77b4"}]};
    const data = [[1, 2, 3, 4, 5], [1.0, 0.6, 0.4, 0.3, 0.25]];
    window.plot = new uPlot(opts, data, document.getElementById("chart"));
    return document.querySelectorAll("#chart .uplot canvas").length;
  };
</script>
</body></html>
"""


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] == "/events":
            body = b"data: <b id='pushed'>hello from sse</b>\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def static_server(tmp_path):
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")
    shutil.copytree(VENDOR, tmp_path / "vendor")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(tmp_path)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not browser_available(), reason=browser_skip_reason() or "")
def test_vendored_js_loads_and_draws_in_chromium(static_server, new_page):
    page = new_page(locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(static_server + "/index.html")
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.evaluate("typeof window.uPlot") == "function"
    assert page.evaluate("htmx.version").startswith("2.")
    # The SSE extension connected to /events and swapped the pushed message in.
    page.wait_for_selector("#feed #pushed", timeout=10_000)
    assert page.text_content("#pushed") == "hello from sse"
    # uPlot draws a chart, styled by its stylesheet.
    assert page.evaluate("drawChart()") >= 1
    page.wait_for_selector("#chart .uplot")
    box = page.locator("#chart .uplot canvas").first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50
    assert page.evaluate("document.styleSheets[0].cssRules.length") > 0
    shot = save_screenshot(page, "webapp_vendor_smoke")
    assert shot.stat().st_size > 1000
    assert not errors, errors
    urls = [r.url for r in page.recorded_requests]
    assert any(u.endswith("/vendor/uPlot.iife.min.js") for u in urls), urls
    assert any("/events" in u for u in urls), urls
    assert_only_loopback(page.recorded_requests)


@pytest.mark.skipif(not browser_available(), reason=browser_skip_reason() or "")
def test_new_page_sets_the_locale(static_server, new_page):
    page = new_page(locale="ja-JP")
    page.goto(static_server + "/index.html")
    assert page.evaluate("navigator.language") == "ja-JP"
    assert_only_loopback(page.recorded_requests)


def test_assert_only_loopback():
    assert_only_loopback(["http://127.0.0.1:8000/", "http://localhost/x", "http://[::1]:9/", "data:,x",
                          "blob:http://127.0.0.1:8000/abc", "about:blank"])
    with pytest.raises(AssertionError, match="fonts.googleapis.com"):
        assert_only_loopback(["http://127.0.0.1/", "https://fonts.googleapis.com/css"])
