"""`dojo app` at the HTTP level: upload limits, bad files (the CLI's own messages), the training queue (queued or
refused with a reason), the token and the Host check, and the catalogue's completeness."""
import html
import io
import json
import re
import stat
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from modeldojo import tasks

pytest.importorskip("fastapi")
from modeldojo.webapp import i18n  # noqa: E402
from modeldojo.webapp.app import AppSettings, create_app  # noqa: E402
from modeldojo.webapp.jobs import Busy, Jobs  # noqa: E402
from serving_helpers import running  # noqa: E402

TEMPLATES = Path(i18n.__file__).with_name("templates")


@pytest.fixture
def served(tmp_path):
    def start(**options):
        app = create_app(AppSettings(runs_dir=str(tmp_path / "runs"), tracking=False, **options))
        return app, running(app, ready=False)
    return start


def test_upload_over_the_limit_is_refused_before_it_is_read(served):
    app, server = served(max_upload_bytes=1000)
    with server as url:
        big = b"a,b\n" + b"1,2\n" * 20000  # 80 KB against 1 KB (+ the form's 16 KB)
        answer = httpx.post(url + "/new", files={"file": ("big.csv", big)})
        assert answer.status_code == 413 and "upload limit" in answer.json()["detail"]
        assert not list((Path(app.fastapi.state.settings.runs_dir) / ".uploads").glob("*/*"))  # nothing kept


def test_bad_files_get_the_clis_messages(served, tmp_path):
    _, server = served()
    with server as url:
        wrong = httpx.post(url + "/new", files={"file": ("notes.docx", b"PK\x03\x04")})
        assert wrong.status_code == 400 and "unsupported file type .docx" in wrong.text
        empty = httpx.post(url + "/new", files={"file": ("empty.csv", b"")})
        assert empty.status_code == 400 and "the file is empty" in empty.text
        escape = io.BytesIO()
        with zipfile.ZipFile(escape, "w") as bundle:
            bundle.writestr("../../evil.txt", "x")
        refused = httpx.post(url + "/new", files={"file": ("photos.zip", escape.getvalue())})
        assert refused.status_code == 400 and "points outside" in refused.text
        assert not (tmp_path / "evil.txt").exists()
        # A table whose target column is not a number where the rest are: the same DataError as `dojo check`,
        # naming the file, line and column, shown before any training.
        rows = "size,price\n" + "".join(f"{n},{n * 10}\n" for n in range(1, 60)) + "61,unknown\n"
        uploaded = httpx.post(url + "/new", files={"file": ("prices.csv", rows.encode())}, follow_redirects=True, timeout=120)
        assert uploaded.status_code == 400
        assert re.search(r"prices\.csv, line 61, column 'price'.*'unknown'", html.unescape(uploaded.text))
        assert ".uploads" not in uploaded.text


def test_the_setup_page_preselects_the_target_and_the_check_part_follows_a_new_choice(served, tmp_path):
    frame, target, _ = tasks.get("tabular").example("binary")
    _, server = served()
    with server as url:
        page = httpx.post(url + "/new", files={"file": ("houses.csv", frame.to_csv(index=False).encode())},
                          follow_redirects=True, timeout=120)
        assert f'<option value="{target}" selected>' in page.text
        upload = re.search(r"/new/([0-9a-f]{16})/start", page.text).group(1)
        part = httpx.get(url + f"/new/{upload}/checks", params={"target": "city"}, timeout=120)
        assert "multiclass" in part.text and "<html" not in part.text


def fake_python(tmp_path, seconds):
    """A stand-in for `python -m modeldojo.cli train …` that just takes `seconds`."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexec sleep {seconds}\n")  # exec: a signal reaches the sleep itself
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_runs_wait_in_a_queue_and_a_full_queue_is_refused_with_a_reason(tmp_path):
    jobs = Jobs(tmp_path / "runs", max_queued=1, python=fake_python(tmp_path, 60))
    try:
        jobs.submit("first", [])
        deadline = time.monotonic() + 10
        while jobs.state("first")["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        jobs.submit("second", [])
        assert jobs.state("second") == {"state": "queued", "returncode": None, "position": 1, "behind": "first",
                                        "stopping": False}
        with pytest.raises(Busy, match="already waiting behind 'first'"):
            jobs.submit("third", [])
        with pytest.raises(Busy, match="already training"):
            jobs.submit("first", [])
        assert jobs.stop("second") == "cancelled"
        assert jobs.stop("first") == "stopping"
        deadline = time.monotonic() + 10
        while jobs.state("first")["state"] != "finished" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jobs.state("first")["returncode"] != 0  # SIGTERM ended the stand-in
        assert json.loads((tmp_path / "runs" / ".app-logs" / "first.args.json").read_text()) == []
    finally:
        jobs.close()


def test_a_token_is_asked_once_then_kept_in_a_strict_cookie(served):
    _, server = served(token="s3cret")
    with server as url:
        assert httpx.get(url + "/").status_code == 401
        assert httpx.get(url + "/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with httpx.Client() as client:
            first = client.get(url + "/?token=s3cret")
            assert first.status_code == 200
            assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
            assert client.get(url + "/new").status_code == 200  # the cookie carries on


def test_without_a_token_only_requests_addressed_to_this_machine_are_answered(served):
    _, server = served()
    with server as url:
        assert httpx.get(url + "/").status_code == 200
        rebound = httpx.get(url + "/", headers={"Host": "attacker.example:8765"})
        assert rebound.status_code == 403 and "127.0.0.1" in rebound.text


def test_every_key_has_both_languages_and_every_key_used_exists():
    words = i18n.catalogue()
    assert all(set(entry) >= set(i18n.LANGUAGES) and all(entry.values()) for entry in words.values())
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_]+)["']""", template.read_text(encoding="utf-8")))
    for module in TEMPLATES.parent.glob("*.py"):
        used |= set(re.findall(r"""problem_key=["']([a-z0-9_]+)["']""", module.read_text(encoding="utf-8")))
    used = {key for key in used if not key.endswith("_")}  # "status_" ~ state: the states are listed below
    used |= {f"status_{state}" for state in ("queued", "running", "completed", "failed", "stopped", "cancelled",
                                             "unknown")}
    assert used - set(words) == set()
    assert i18n.from_accept_language("fr-FR,ja;q=0.8,en;q=0.5") == "ja"
    assert i18n.from_accept_language("de") == "en"
    assert i18n.choose("ja", "en", "en") == "ja" and i18n.choose(None, "ja", "en-US") == "ja"


def test_pages_load_nothing_from_outside():
    for template in [*TEMPLATES.glob("*.html"), *TEMPLATES.parent.glob("static/*.*")]:
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), template.name
        assert "@import" not in text and "fonts.googleapis" not in text



def wait_for(url, name, states=("completed", "failed", "stopped"), seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = httpx.get(url + f"/runs/{name}/state").json()
        if state["state"] in states:
            return state
        time.sleep(0.3)
    raise AssertionError(f"run {name} still {state['state']} after {seconds} s: {state['log_tail']}")


def test_a_zip_of_image_folders_trains_answers_an_image_and_exports(served, tmp_path):
    from PIL import Image

    frame, target, overrides = tasks.get("image").example("binary")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for number, row in frame.iterrows():
            picture = io.BytesIO()
            Image.fromarray(row["image"]).save(picture, format="PNG")
            bundle.writestr(f"photos/{row[target]}/{number:03d}.png", picture.getvalue())
    app, server = served()
    with server as url:
        page = httpx.post(url + "/new", files={"file": ("photos.zip", archive.getvalue())}, follow_redirects=True, timeout=120)
        assert page.status_code == 200 and '<span id="task">image</span>' in page.text
        assert '<option value="label" selected>' in page.text  # class folders: the folder name is the label
        upload = re.search(r"/new/([0-9a-f]{16})/start", page.text).group(1)
        started = httpx.post(url + f"/new/{upload}/start", data={"target": "label", "name": "photos",
                                                                  "model": overrides["model.name"], "epochs": "2"}, timeout=120)
        assert started.status_code == 303 and started.headers["location"] == "/runs/photos"
        state = wait_for(url, "photos")
        assert state["state"] == "completed", state["log_tail"]
        form = httpx.get(url + "/runs/photos/try")
        assert 'type="file"' in form.text  # the image codec's widget
        picture = io.BytesIO()
        Image.fromarray(frame["image"][0]).save(picture, format="PNG")
        answer = httpx.post(url + "/runs/photos/try", files={"image": ("stripes.png", picture.getvalue())})
        assert answer.status_code == 200, answer.text
        assert re.search(r'id="prediction-value">(rows|columns)<', answer.text)
        broken = httpx.post(url + "/runs/photos/try", files={"image": ("broken.png", b"not an image")})
        assert broken.status_code == 422 and "image" in broken.text.lower()
        exported = httpx.post(url + "/runs/photos/export", timeout=300)
        assert exported.status_code == 200 and 'id="export-ok"' in exported.text, exported.text
        assert "dojo serve" in exported.text


def test_a_start_beyond_the_queue_is_refused_on_the_page(served, tmp_path):
    frame, _, _ = tasks.get("tabular").example("binary")
    app, server = served()
    app.fastapi.state.jobs.close()
    app.fastapi.state.jobs = Jobs(tmp_path / "runs", max_queued=0, python=fake_python(tmp_path, 60))
    with server as url:
        page = httpx.post(url + "/new", files={"file": ("houses.csv", frame.to_csv(index=False).encode())},
                          follow_redirects=True, timeout=120)
        upload = re.search(r"/new/([0-9a-f]{16})/start", page.text).group(1)
        first = httpx.post(url + f"/new/{upload}/start", data={"target": "price", "name": "one"}, timeout=120)
        assert first.status_code == 303
        deadline = time.monotonic() + 10
        while httpx.get(url + "/runs/one/state").json()["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)  # the queue's thread starts it
        second = httpx.post(url + f"/new/{upload}/start", data={"target": "price", "name": "two"}, timeout=120)
        assert second.status_code == 409 and "waiting behind" in html.unescape(second.text)
        assert httpx.get(url + "/runs/one/state").json()["state"] == "running"
    app.fastapi.state.jobs.close()


def test_a_chat_run_is_tried_in_a_chat_box_that_keeps_the_conversation(served, tmp_path):
    import modeldojo as dojo

    frame, target, overrides = tasks.get("chat").example("generation")
    runs = tmp_path / "runs"
    dojo.train(frame, target=target, runs_dir=str(runs), tracking=False, name="bot",
               overrides={**overrides, "evaluate.max_new_tokens": 8})
    _, server = served()
    with server as url:
        page = httpx.get(url + "/runs/bot/try")
        assert page.status_code == 200 and 'id="chat"' in page.text and 'id="message"' in page.text
        field = re.search(r'id="chat" class="chat" data-field="([^"]+)"', page.text).group(1)
        conversation = [{"role": "user", "content": frame["instruction"][0]}]
        answer = httpx.post(url + "/runs/bot/try", data={field: json.dumps(conversation)}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert 'id="prediction-value"' in answer.text
        empty = httpx.post(url + "/runs/bot/try", data={field: "  "})
        assert empty.status_code == 422 and "empty" in empty.text


def test_unknown_runs_and_uploads_are_404_pages_and_paths_are_refused(served):
    _, server = served()
    with server as url:
        for address in ("/runs/nothing", "/runs/..%2F..%2Fetc/state", "/new/0123456789abcdef", "/new/..%2Fx",
                        "/runs/nothing/events", "/runs/a..b/report"):
            answer = httpx.get(url + address)
            assert answer.status_code == 404, (address, answer.status_code)


def test_other_sites_cannot_post_and_loopback_host_forms_are_accepted(served):
    _, server = served()
    with server as url:
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            answer = httpx.post(url + "/runs/anything/stop", headers=headers)
            assert answer.status_code == 403 and "another site" in answer.text
        assert httpx.post(url + "/runs/anything/stop", headers={"Origin": url}).status_code == 200  # its own page
        for host in ("LOCALHOST:8765", "[::1]:8765", "[::1]", "127.0.0.1"):
            assert httpx.get(url + "/", headers={"Host": host}).status_code == 200, host


def test_a_completed_run_is_never_resumed_over_and_its_event_stream_ends(served, tmp_path):
    import modeldojo as dojo

    frame, target, _ = tasks.get("tabular").example("binary")
    runs = tmp_path / "runs"
    dojo.train(frame, target=target, runs_dir=str(runs), tracking=False, name="done",
               overrides={"data.label_error_check": False})
    (runs / ".app-logs").mkdir(parents=True, exist_ok=True)
    (runs / ".app-logs" / "done.args.json").write_text("[]")
    (runs / "copy (2)").mkdir()  # a folder copied by hand is not listed, and does not break the list
    (runs / "copy (2)" / "status.json").write_text('{"status": "completed"}')
    _, server = served()
    with server as url:
        refused = httpx.post(url + "/runs/done/resume")
        assert refused.status_code == 409 and "only a stopped or failed run" in refused.text
        assert (runs / "done" / "model").is_dir()
        listed = httpx.get(url + "/api/runs").json()
        assert [row["name"] for row in listed] == ["done"]
        with httpx.stream("GET", url + "/runs/done/events", timeout=30) as stream:
            kinds = [line.split(": ", 1)[1] for line in stream.iter_lines() if line.startswith("event: ")]
        assert kinds[0] == "state" and kinds[-1] == "end"
        events = [kind for kind in kinds if kind == "dojo"]
        assert len(events) >= 3


def test_an_excel_cp932_csv_with_japanese_columns_is_read_and_its_target_offered(served, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "japanese_inquiries", Path(__file__).resolve().parents[1] / "examples" / "japanese_inquiries.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    path = generator.write(tmp_path / "問い合わせ.csv", rows=120)  # Shift_JIS (cp932), CRLF, as Excel saves it
    _, server = served()
    with server as url:
        page = httpx.post(url + "/new", files={"file": (path.name, path.read_bytes())}, follow_redirects=True,
                          timeout=120)
        assert page.status_code == 200, page.text[-500:]
        assert "問い合わせ内容" in page.text and "カテゴリ" in page.text  # decoded, not mojibake
        assert '<option value="カテゴリ" selected>' in page.text  # a conventional Japanese target name
