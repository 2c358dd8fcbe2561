"""`dojo app` in a real browser (Playwright driving Debian's Chromium): the beginner path on a small table, run
comparison, stop and resume, the Japanese catalogue, and no request to anywhere but this machine. Screenshots of
each page go to $DOJO_TEST_ARTIFACTS (browser.save_screenshot)."""
import re
import time

import pytest

import modeldojo as dojo
from modeldojo import tasks
from browser import assert_only_loopback, save_screenshot
from serving_helpers import running

pytest.importorskip("fastapi")
from modeldojo.webapp.app import AppSettings, create_app  # noqa: E402

TIMEOUT_MS = 60_000


@pytest.fixture
def app_url(tmp_path):
    settings = AppSettings(runs_dir=str(tmp_path / "runs"), tracking=False)
    app = create_app(settings)
    with running(app, ready=False) as url:
        yield url
    app.fastapi.state.jobs.close()


def table_file(tmp_path):
    frame, target, _ = tasks.get("tabular").example("binary")
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    return path, target


def test_beginner_path_from_a_csv_to_a_prediction(tmp_path, app_url, new_page):
    path, target = table_file(tmp_path)
    page = new_page()
    started = time.monotonic()
    clicks = 0
    page.goto(app_url + "/new")
    save_screenshot(page, "app-new")
    page.set_input_files("#file", str(path))  # choosing the file (one click) uploads it
    clicks += 1
    page.wait_for_url(re.compile(r"/new/[0-9a-f]{16}$"), timeout=TIMEOUT_MS)
    assert page.eval_on_selector("#target", "select => select.value") == target  # pre-selected
    assert page.inner_text("#task") == "tabular"
    save_screenshot(page, "app-setup")
    page.click("#start")
    clicks += 1
    page.wait_for_url(re.compile(r"/runs/[^/]+$"), timeout=TIMEOUT_MS)
    page.wait_for_function("window.dojoChartUpdates >= 3", timeout=TIMEOUT_MS)  # live curves
    page.wait_for_selector("#test-metrics", timeout=TIMEOUT_MS)
    assert "roc_auc" in page.inner_text("#test-metrics")
    save_screenshot(page, "app-run")
    page.click("#try-link")
    clicks += 1
    page.wait_for_selector("#try-form", timeout=TIMEOUT_MS)
    assert page.input_value("input[name=size]") != ""  # filled from a real row
    page.click("#predict")
    clicks += 1
    page.wait_for_selector("#prediction-value", timeout=TIMEOUT_MS)
    assert page.inner_text("#prediction-value").strip() in {"True", "False", "true", "false", "0", "1", "yes", "no"} \
        or page.inner_text("#prediction-value").strip()
    save_screenshot(page, "app-try")
    assert time.monotonic() - started < 60
    assert clicks <= 6
    assert_only_loopback(page.recorded_requests)


def test_compare_two_runs(tmp_path, app_url, new_page):
    frame, target, _ = tasks.get("tabular").example("binary")
    runs = tmp_path / "runs"
    for name, model in (("lgbm", "lightgbm"), ("linear", "linear")):
        dojo.train(frame, target=target, runs_dir=str(runs), tracking=False, name=name,
                   overrides={"model.name": model, "data.label_error_check": False})
    page = new_page()
    page.goto(app_url + "/runs/linear")  # a finished run offers the comparison with the one before it
    page.click("#compare-previous")
    page.wait_for_selector("#compare-metrics")
    assert sorted(page.locator("#compare-metrics th a").all_inner_texts()) == ["lgbm", "linear"]
    page.wait_for_function("document.querySelectorAll('#compare-charts canvas').length >= 1")
    page.goto(app_url + "/runs/linear/card")
    assert "linear" in page.inner_text("pre")
    save_screenshot(page, "app-card")
    page.goto(app_url + "/runs/linear/checks")
    save_screenshot(page, "app-checks")
    page.goto(app_url + "/")
    save_screenshot(page, "app-runs")
    page.fill("#filter", "l")
    page.check("input[value=lgbm]")
    page.check("input[value=linear]")
    page.click("#compare")
    page.wait_for_selector("#compare-metrics")
    assert "model.name" in page.inner_text("#differences")
    assert "roc_auc" in page.inner_text("#compare-metrics")
    save_screenshot(page, "app-compare")
    page.goto(app_url + "/compare?runs=lgbm")  # one run is not a comparison: a clear message, not a crash
    assert page.locator("#problem").count() == 1
    assert_only_loopback(page.recorded_requests)


def test_stop_then_resume_from_the_page(tmp_path, app_url, new_page):
    frame, target, overrides = tasks.get("text").example("binary")
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    page = new_page()
    page.goto(app_url + "/new")
    page.set_input_files("#file", str(path))
    page.wait_for_url(re.compile(r"/new/[0-9a-f]{16}$"), timeout=TIMEOUT_MS)
    assert page.eval_on_selector("#target", "select => select.value") == target
    page.fill("#model", overrides["model.name"])  # the tiny local encoder
    page.fill("#epochs", "400")
    page.fill("#time_budget", "600")  # longer than the test: only Stop ends it
    page.click("#start")
    page.wait_for_url(re.compile(r"/runs/[^/]+$"), timeout=TIMEOUT_MS)
    page.wait_for_function("window.dojoChartUpdates >= 3", timeout=TIMEOUT_MS)
    before = page.evaluate("window.dojoChartUpdates")
    page.wait_for_timeout(2000)
    assert page.evaluate("window.dojoChartUpdates") >= before + 2  # the curves move at least once a second
    page.click("#stop")
    page.wait_for_selector("#resume:not([hidden])", timeout=TIMEOUT_MS)
    assert page.get_attribute("#run", "data-state") == "stopped"
    save_screenshot(page, "app-stopped")
    stopped_at = page.inner_text("#log").split("on request at step ")[1].split()[0]
    page.click("#resume")
    # The loop's own stage event: the new process continued from the stopped step's checkpoint.
    page.wait_for_function(f"document.getElementById('log').textContent.includes('resume: from step-{int(stopped_at):08d}')",
                           timeout=TIMEOUT_MS)
    page.wait_for_selector("#stop:not([hidden])", timeout=TIMEOUT_MS)
    page.click("#stop")
    page.wait_for_selector("#resume:not([hidden])", timeout=TIMEOUT_MS)
    page.wait_for_function("document.getElementById('log').textContent.split('stopped: on request').length == 3",
                           timeout=TIMEOUT_MS)  # two stops, each after its own step
    assert_only_loopback(page.recorded_requests)


def test_japanese_catalogue_by_browser_language_and_switch(tmp_path, app_url, new_page):
    page = new_page(locale="ja-JP")
    page.goto(app_url + "/new")
    assert "データから始める" in page.inner_text("h1")
    assert "新しい学習" in page.inner_text("header")
    save_screenshot(page, "app-new-ja")
    page.click("#lang-en")
    assert "Start from your data" in page.inner_text("h1")
    page.goto(app_url + "/")  # the switch is remembered
    assert "Runs" in page.inner_text("h1")
    assert_only_loopback(page.recorded_requests)


def test_chat_box_keeps_the_conversation(tmp_path, app_url, new_page):
    frame, target, overrides = tasks.get("chat").example("generation")
    dojo.train(frame, target=target, runs_dir=str(tmp_path / "runs"), tracking=False, name="bot",
               overrides={**overrides, "evaluate.max_new_tokens": 8})
    page = new_page()
    page.goto(app_url + "/runs/bot/try")
    page.fill("#message", frame["instruction"][0])
    page.click("#predict")
    page.wait_for_selector("#chat .assistant", timeout=TIMEOUT_MS)
    page.fill("#message", "and then?")
    page.click("#predict")
    page.wait_for_function("document.querySelectorAll('#chat .assistant').length == 2", timeout=TIMEOUT_MS)
    turns = page.locator("#chat .turn").all_inner_texts()
    assert turns[0] == frame["instruction"][0] and turns[2] == "and then?" and len(turns) == 4
    save_screenshot(page, "app-chat")
    page.goto(app_url + "/runs/bot/report")
    assert_only_loopback(page.recorded_requests)
