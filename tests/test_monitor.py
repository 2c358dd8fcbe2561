"""`dojo monitor`: drift of new rows or of a prediction log against the run's training rows, with the exit code a
pipeline gates on."""
import json

import httpx
import pytest

import modeldojo as dojo
from modeldojo import tasks
from modeldojo.cli import main
from modeldojo.monitoring.monitor import EXIT_CODE
from modeldojo.tasks.tabular.task import TabularTask


@pytest.fixture
def classifier(tmp_path):
    frame = TabularTask.example("binary", seed=0)[0]
    frame.to_csv(tmp_path / "houses.csv", index=False)
    dojo.train(str(tmp_path / "houses.csv"), target="price", runs_dir=str(tmp_path / "runs"), tracking=False,
               name="houses", overrides={"data.label_error_check": False})
    return tmp_path


def test_shifted_rows_alert_and_unshifted_ones_do_not(classifier, capsys):
    runs = str(classifier / "runs")
    fresh = TabularTask.example("binary", seed=1)[0]  # the same process, other rows
    fresh.to_csv(classifier / "fresh.csv", index=False)
    assert main(["monitor", "houses", "--runs-dir", runs, "--data", str(classifier / "fresh.csv"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["drift"]["drifted"] == [] and not summary["alert"]
    assert "estimated_performance" in summary and "realised" in summary  # the new rows carry the target
    shifted = fresh.copy()
    shifted["size"] = shifted["size"] * 1.6  # bigger houses
    shifted["city"] = "north"
    shifted.to_csv(classifier / "shifted.csv", index=False)
    assert main(["monitor", "houses", "--runs-dir", runs, "--data", str(classifier / "shifted.csv"),
                 "--json"]) == EXIT_CODE
    summary = json.loads(capsys.readouterr().out)
    assert {"size", "city"} <= set(summary["drift"]["drifted"]) and summary["alert"]
    report = (classifier / "runs" / "houses" / "monitoring").glob("*/report.html")
    assert any("ALERT" in path.read_text(encoding="utf-8") for path in report)


def test_monitor_reads_a_prediction_log(classifier, capsys):
    pytest.importorskip("fastapi")
    from modeldojo.serving.app import Settings, create_app
    from modeldojo.serving.predictor import open_predictor
    from serving_helpers import running

    tasks.load_all()
    logs = classifier / "logs"
    rows = TabularTask.example("binary", seed=2)[0].drop(columns=["price"])
    rows["size"] = rows["size"] * 2
    with running(create_app(lambda: open_predictor("houses", classifier / "runs"),
                            Settings(log_predictions=str(logs)))) as url:
        for start in range(0, len(rows), 40):
            chunk = rows.iloc[start:start + 40].to_dict("records")
            assert httpx.post(url + "/predict", json={"inputs": chunk}).status_code == 200
    assert main(["monitor", "houses", "--runs-dir", str(classifier / "runs"), "--logs", str(logs),
                 "--json"]) == EXIT_CODE
    summary = json.loads(capsys.readouterr().out)
    assert summary["current_rows"] == len(rows) and "size" in summary["drift"]["drifted"]


def test_free_text_drift_through_the_models_embeddings(tmp_path):
    from modeldojo.monitoring.monitor import monitor
    from modeldojo.tasks.text.task import TextTask

    frame, target, settings = TextTask.example("binary")
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    dojo.train(str(tmp_path / "reviews.csv"), target=target, task="text", runs_dir=str(tmp_path / "runs"),
               tracking=False, name="reviews", overrides={**settings, "train.epochs": 2,
                                                          "data.label_error_check": False})
    same = TextTask.example("binary", seed=1)[0]
    quiet = monitor("reviews", same, runs_dir=tmp_path / "runs")
    assert "embedding_drift" in quiet and not quiet["embedding_drift"]["drifted"]
    off_topic = same.copy()
    off_topic["review"] = [f"the train to osaka was cancelled again, platform {i}" for i in range(len(same))]
    loud = monitor("reviews", off_topic, runs_dir=tmp_path / "runs")
    assert loud["embedding_drift"]["drifted"] and loud["alert"] and loud["untested_columns"] == []
