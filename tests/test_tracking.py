from mlflow.tracking import MlflowClient

import modeldojo as dojo
from modeldojo.tasks.tabular.task import TabularTask


def test_runs_are_recorded_in_embedded_sqlite(regression_frame, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    dojo.train(regression_frame, target="price", runs_dir=str(runs_dir), name="tracked")
    assert (runs_dir / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{runs_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("modeldojo")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["data.target"] == "price"
    assert "test_r2" in run.data.metrics and "fit_rounds" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "report.html"} <= artifacts

    monkeypatch.setattr(TabularTask, "fit", lambda *a, **k: 1 / 0)
    try:
        dojo.train(regression_frame, target="price", runs_dir=str(runs_dir), name="fails")
    except ZeroDivisionError:
        pass
    statuses = {r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])}
    assert statuses == {"tracked": "FINISHED", "fails": "FAILED"}


def test_event_log_starts_a_line_of_its_own_after_a_killed_writer(tmp_path):
    from modeldojo.tracking import event_log

    (tmp_path / event_log.FILE_NAME).write_text('{"event": "stage", "name": "fit"}\n{"event": "metr')  # cut off
    log = event_log.EventLog(tmp_path)
    log.on_stage("resume", "from step-00000004")
    events, _ = event_log.read(tmp_path)
    assert [event.get("name") for event in events] == ["fit", "resume"]  # the torn line is skipped, not joined
