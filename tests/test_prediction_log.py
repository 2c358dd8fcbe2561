"""`dojo serve --log-predictions`: entries written off the request path, rotated, masked — canary personal data
sent through good, malformed and failing requests is found in no log file and no server log line."""
import logging
import time

import httpx
import pytest

import modeldojo as dojo
from modeldojo import tasks

pytest.importorskip("fastapi")
tasks.load_all()
from modeldojo.serving.app import Settings, create_app  # noqa: E402
from modeldojo.serving.prediction_log import PredictionLog, read_logs  # noqa: E402
from modeldojo.serving.predictor import open_predictor  # noqa: E402
from serving_helpers import running  # noqa: E402

CANARY_EMAIL, CANARY_PHONE = "canary.taro@example.co.jp", "090-1234-5678"


def test_a_slow_disk_never_slows_the_request_path(tmp_path, monkeypatch):
    log = PredictionLog(tmp_path / "logs", model={"name": "m"}, max_queue=5)
    original = log.store.write

    def slow(lines):  # a disk that takes 200 ms per write
        time.sleep(0.2)
        original(lines)

    monkeypatch.setattr(log.store, "write", slow)
    started = time.perf_counter()
    for number in range(50):
        log.record([{"x": number}], [{"value": number}], 0.001)
    assert time.perf_counter() - started < 0.05  # 50 records queued or dropped without waiting
    assert log.dropped >= 40  # the bounded queue dropped (and counted) what the writer could not take
    log.close(timeout=5)
    assert 1 <= len(read_logs(tmp_path / "logs")) <= 10


def test_files_rotate_and_sampling_keeps_a_share(tmp_path):
    log = PredictionLog(tmp_path / "logs", model={"name": "m"}, max_file_bytes=2000, sample_rate=0.5, seed=0)
    kept = sum(log.record([{"x": n, "text": "y" * 100}], [{"value": n}], 0.001) is not None for n in range(200))
    log.close()
    entries = read_logs(tmp_path / "logs")
    assert 70 <= kept <= 130 and len(entries) == kept
    assert len(list((tmp_path / "logs").glob("predictions-*.jsonl"))) > 3
    assert set(entries[0]) >= {"request_id", "time", "model", "inputs", "outputs", "latency_ms", "status"}


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(self.format(record))


def test_canary_personal_data_reaches_no_log(tmp_path):
    frame, target, _ = tasks.get("tabular").example("binary")
    dojo.train(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="houses",
               overrides={"data.label_error_check": False})
    logs = tmp_path / "prediction-logs"
    good = frame.drop(columns=[target]).head(3).to_dict("records")
    good[0]["city"] = f"mail {CANARY_EMAIL} or call {CANARY_PHONE}"
    settings = Settings(log_predictions=str(logs))
    server_log = Collect()
    with running(create_app(lambda: open_predictor("houses", tmp_path), settings)) as url:
        logging.getLogger("uvicorn.error").addHandler(server_log)  # after uvicorn configured its logging
        assert httpx.post(url + "/predict", json={"inputs": good}).status_code == 200
        malformed = httpx.post(url + "/predict", json={"inputs": [{"size": CANARY_EMAIL}]})  # missing columns
        assert malformed.status_code == 422
        not_json = httpx.post(url + "/predict", content=f"{{{CANARY_PHONE}", headers={"content-type":
                                                                                         "application/json"})
        assert not_json.status_code in (400, 422)
        logging.getLogger("uvicorn.error").warning("prediction failed: value %s", CANARY_EMAIL)
    entries = read_logs(logs)
    assert [entry["status"] for entry in entries] == [200]  # the malformed rows never reached the model
    assert entries[0]["inputs"][0]["city"] == "mail <EMAIL> or call <PHONE>"
    assert len(entries[0]["outputs"]) == 3 and entries[0]["model"]["name"] == "houses"
    for path in logs.iterdir():
        text = path.read_text(encoding="utf-8")
        assert CANARY_EMAIL not in text and CANARY_PHONE not in text
    logging.getLogger("uvicorn.error").removeHandler(server_log)
    assert any("prediction failed: value <EMAIL>" in message for message in server_log.messages)
    assert all(CANARY_EMAIL not in message for message in server_log.messages)


def test_a_database_store_takes_the_log_and_monitor_reads_it(tmp_path, postgres_url):
    """`--log-predictions postgresql://…`: entries land in a table of a real PostgreSQL server, masked, and
    `dojo monitor --logs URL` reads them back (a team's servers share one store)."""
    url = postgres_url.replace("postgresql+psycopg2://", "postgresql://")  # what a user types
    frame, target, _ = tasks.get("tabular").example("binary")
    frame.to_csv(tmp_path / "houses.csv", index=False)  # monitor compares against the run's own file
    dojo.train(str(tmp_path / "houses.csv"), target=target, runs_dir=str(tmp_path), tracking=False, name="houses",
               overrides={"data.label_error_check": False})
    rows = frame.drop(columns=[target]).head(40).to_dict("records")
    rows[0]["city"] = f"mail {CANARY_EMAIL}"
    with running(create_app(lambda: open_predictor("houses", tmp_path), Settings(log_predictions=url))) as served:
        for start in range(0, 40, 4):
            assert httpx.post(served + "/predict", json={"inputs": rows[start:start + 4]}).status_code == 200
    entries = [entry for entry in read_logs(url) if entry["model"]["source"].startswith(str(tmp_path))]
    assert len(entries) == 10 and all(entry["status"] == 200 for entry in entries)
    assert entries[0]["inputs"][0]["city"] == "mail <EMAIL>"
    assert entries[0]["time"] <= entries[-1]["time"]
    summary = dojo.monitor("houses", logs=url, runs_dir=str(tmp_path))
    assert summary["current_rows"] >= 40


def test_a_database_store_that_fails_loses_entries_not_the_server(tmp_path):
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", model={"name": "m"})
    log.record([{"x": 1}], [{"value": 1}], 0.001)
    log.close()
    assert [entry["inputs"] for entry in read_logs(f"sqlite:///{tmp_path / 'log.db'}")] == [[{"x": 1}]]
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", model={"name": "m"})
    log.store.table.drop(log.store.engine)  # the table disappears under a running server
    log.record([{"x": 2}], [{"value": 2}], 0.001)
    log.close()
    assert log.dropped == 1


def test_a_log_database_that_cannot_be_reached_fails_the_start(tmp_path):
    frame, target, _ = tasks.get("tabular").example("binary")
    dojo.train(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="houses",
               overrides={"data.label_error_check": False})
    url = "postgresql://dojo:secret-word@127.0.0.1:1/nowhere"  # port 1: nothing listens
    with running(create_app(lambda: open_predictor("houses", tmp_path), Settings(log_predictions=url)),
                 ready=False) as served:
        for _ in range(300):
            live = httpx.get(served + "/v2/health/live")
            if live.status_code == 500:
                break
            time.sleep(0.1)
    assert live.status_code == 500 and "prediction log" in live.json()["error"]
    assert "secret-word" not in live.text


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_shared_database_keeps_models_apart_and_odd_values_lose_nothing(tmp_path, request, database):
    """Both databases keep odd values (NaN, quotes, tabs, newlines, backslashes, NUL) and each model's rows."""
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        import sqlalchemy

        url = request.getfixturevalue("postgres_url")
        with sqlalchemy.create_engine(url).begin() as connection:  # the session's server is shared: start empty
            connection.execute(sqlalchemy.text("DROP TABLE IF EXISTS dojo_prediction_log"))
    for name in ("prices", "churn"):
        log = PredictionLog(url, model={"name": name, "source": f"/runs/{name}"})
        log.record([{"x": float("nan"), "text": "lone \ud800 surrogate"}], [{"value": float("inf")}], 0.001)
        log.record([{"x": 1.0, "text": 'tab\there, "quotes", comma, new\nline, back\\slash'}], [{"value": 2.0}],
                   0.001, status=422, error="bad\x00value")
        log.close()
        assert log.dropped == 0
    prices = read_logs(url, model_name="prices")
    assert len(prices) == 2 and {entry["model"]["name"] for entry in prices} == {"prices"}
    answered, refused = sorted(prices, key=lambda entry: entry["status"])
    assert answered["inputs"][0]["x"] is None and answered["outputs"][0]["value"] is None  # NaN / inf → null
    assert "\x00" not in refused["error"]
    assert refused["inputs"][0]["text"] == 'tab\there, "quotes", comma, new\nline, back\\slash'  # CSV quoting
    assert len(read_logs(url)) == 4 and len(read_logs(url, limit=1)) == 1


def test_a_password_never_reaches_a_message():
    from modeldojo.errors import ConfigError
    from modeldojo.serving.log_stores import redacted_url

    assert "hunter2" not in redacted_url("postgresql://dojo:hunter2@db/logs?password=hunter2")
    with pytest.raises(ConfigError, match="percent-encode"):
        PredictionLog("postgresql://dojo:hun@ter2@db/logs", model={"name": "m"})
