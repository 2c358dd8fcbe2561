import json

import pytest

import modeldojo as dojo
from modeldojo import runs
from modeldojo.errors import ConfigError, NotFoundError
from modeldojo.tasks.tabular.task import TabularTask


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "", "x" * 200, "a\\b"])
def test_run_names_are_validated(name):
    with pytest.raises(ConfigError, match="run.name"):
        runs.validate_name(name)


def test_run_folder_contents_and_fingerprint(regression_frame, fast, tmp_path):
    path = tmp_path / "houses.csv"
    regression_frame.to_csv(path, index=False)
    result = dojo.train(str(path), target="price", name="r1", **fast)
    files = {p.name for p in result.path.iterdir()}
    assert {"status.json", "config.yaml", "data.json", "environment.json", "checks.json", "metrics.json", "model",
            "report.html", "MODEL_CARD.md"} <= files
    data = json.loads((result.path / "data.json").read_text())
    assert data["rows"] == len(regression_frame) and data["hashed"] == "file bytes" and len(data["sha256"]) == 64
    assert data["train_rows"] + data["validation_rows"] + data["test_rows"] == len(regression_frame)
    assert dojo.Config.load(result.path / "config.yaml").data.target == "price"
    again = dojo.train(str(path), target="price", name="r2", **fast)
    assert json.loads((again.path / "data.json").read_text())["sha256"] == data["sha256"]


def test_existing_run_needs_overwrite(regression_frame, fast):
    dojo.train(regression_frame, target="price", name="same", **fast)
    with pytest.raises(ConfigError, match="already exists"):
        dojo.train(regression_frame, target="price", name="same", **fast)
    dojo.train(regression_frame, target="price", name="same", overwrite=True, **fast)


def test_failure_during_training_marks_run_failed_and_leaves_no_model(regression_frame, fast, monkeypatch):
    def explode(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(TabularTask, "fit", explode)
    with pytest.raises(RuntimeError, match="boom"):
        dojo.train(regression_frame, target="price", name="broken", **fast)
    run = runs.Run.open("broken", fast["runs_dir"])
    assert run.status()["status"] == "failed" and "boom" in run.status()["error"]
    assert not run.model_dir.exists()


def test_failure_while_saving_keeps_previous_model_and_no_temp(tmp_path):
    target = tmp_path / "model"
    runs.save_model_atomically(target, lambda d: (d / "weights.txt").write_text("v1"), {"v": 1})

    def half_written(directory):
        (directory / "weights.txt").write_text("v2-partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        runs.save_model_atomically(target, half_written, {"v": 2})
    assert (target / "weights.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_open_unknown_run():
    with pytest.raises(NotFoundError, match="no run"):
        runs.Run.open("does-not-exist", "nowhere")


def test_unnamed_runs_started_in_the_same_second_get_their_own_folders(regression_frame, fast, monkeypatch):
    import datetime as dt
    import types

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(runs, "dt", types.SimpleNamespace(datetime=Frozen, timezone=dt.timezone))
    first = dojo.train(regression_frame, target="price", **fast)
    second = dojo.train(regression_frame, target="price", **fast)  # was: run folder … already exists
    assert (first.run.name, second.run.name) == ("tabular-20260102-030405", "tabular-20260102-030405-2")
