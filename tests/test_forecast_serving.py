"""The forecast task through the `dojo` command, the export folder and the server, with the clients users use
(httpx on POST /predict, tritonclient on KServe v2, schemathesis on the OpenAPI contract)."""
import json

import httpx
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("statsforecast")
pytest.importorskip("fastapi")

from modeldojo import tasks  # noqa: E402
from modeldojo.cli import main  # noqa: E402

tasks.load_all()
from modeldojo.serving.app import create_app  # noqa: E402
from modeldojo.serving.predictor import open_predictor  # noqa: E402
from serving_helpers import running, schemathesis  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forecast")
    frame, target, _ = tasks.get("forecast").example("forecast")
    frame["month"] = frame["month"].dt.strftime("%Y-%m-%d")
    frame.to_csv(folder / "sales.csv", index=False)
    code = main(["train", str(folder / "sales.csv"), "--target", "sales", "--time", "month", "--id", "store",
                 "--horizon", "6", "--name", "sales", "--runs-dir", str(folder / "runs"), "--no-tracking",
                 "forecast.models=[seasonal_naive,theta]", "forecast.backtest_windows=2", "-q"])
    assert code == 0
    return folder, frame


def test_cli_trains_predicts_with_history_and_future_and_exports(run, capsys):
    folder, frame = run
    runs = str(folder / "runs")
    assert (folder / "runs" / "sales" / "report.html").is_file()
    history = frame[frame["store"] == "east"].head(48)
    history.to_csv(folder / "history.csv", index=False)
    pd.DataFrame({"store": ["east"] * 3, "month": ["2023-01-01", "2023-02-01", "2023-03-01"]}).to_csv(
        folder / "future.csv", index=False)
    out = folder / "forecast.csv"
    assert main(["predict", "sales", "--runs-dir", runs, "--data", str(folder / "history.csv"), "--future",
                 str(folder / "future.csv"), "--out", str(out)]) == 0
    written = pd.read_csv(out, encoding="utf-8-sig")
    assert list(written.columns[:3]) == ["store", "month", "prediction"] and len(written) == 3
    assert {"q0.1", "q0.9"} <= set(written.columns) and (written["q0.9"] >= written["q0.1"]).all()
    # history only: the next horizon of the series given
    assert main(["predict", "sales", "--runs-dir", runs, "--data", str(folder / "history.csv"), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 6
    # a timestamp inside the history is refused with the file and line
    pd.DataFrame({"store": ["east"], "month": ["2019-03-01"]}).to_csv(folder / "past.csv", index=False)
    capsys.readouterr()
    assert main(["predict", "sales", "--runs-dir", runs, "--data", str(folder / "past.csv")]) == 3
    assert "past.csv" in capsys.readouterr().err
    assert main(["export", "sales", "--runs-dir", runs, "-q"]) == 0
    manifest = json.loads((folder / "runs" / "sales" / "export" / "forecast" / "manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["rows"] == 18
    pd.DataFrame({"store": ["east"] * 2, "month": ["2024-01-01", "2024-02-01"]}).to_csv(folder / "next.csv",
                                                                                          index=False)
    assert main(["predict", str(folder / "runs" / "sales" / "export" / "forecast"), "--data",
                 str(folder / "next.csv"), "--out", str(out)]) == 0
    from_export = pd.read_csv(out, encoding="utf-8-sig")
    assert main(["predict", "sales", "--runs-dir", runs, "--data", str(folder / "next.csv"), "--out", str(out)]) == 0
    assert from_export.equals(pd.read_csv(out, encoding="utf-8-sig"))


def test_check_states_frequency_and_refuses_duplicates(run, capsys):
    folder, frame = run
    doubled = pd.concat([frame, frame.tail(1)])
    doubled.to_csv(folder / "doubled.csv", index=False)
    code = main(["check", str(folder / "doubled.csv"), "--target", "sales", "--time", "month", "--id", "store",
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    from modeldojo.errors import DataError

    assert code == DataError.exit_code
    assert any(f["code"] == "duplicate_timestamps" and "line 181" in f["message"] for f in report["findings"])


def test_server_answers_from_stored_history_and_from_history_in_the_request(run):
    folder, frame = run
    with running(create_app(lambda: open_predictor("sales", folder / "runs"))) as url:
        stored = httpx.post(url + "/predict", json={"inputs": [{"store": "north", "month": "2024-01-01"},
                                                               {"store": "north", "month": "2024-02-01"}]})
        assert stored.status_code == 200, stored.text
        answers = stored.json()["predictions"]
        assert all(np.isfinite(a["value"]) and a["quantiles"]["q0.1"] <= a["quantiles"]["q0.9"] for a in answers)
        history = frame[frame["store"] == "east"].head(40).to_dict("records")
        given = httpx.post(url + "/predict", json={"inputs": [*history, {"store": "east", "month": "2022-05-01"}]})
        assert given.status_code == 200, given.text
        values = [a["value"] for a in given.json()["predictions"]]
        assert values[:40] == [None] * 40 and np.isfinite(values[40])
        unknown = httpx.post(url + "/predict", json={"inputs": [{"store": "nowhere", "month": "2024-01-01"}]})
        assert unknown.status_code in (400, 422) and "nowhere" in unknown.text


def test_kserve_v2_with_tritonclient_and_schemathesis(run):
    httpclient = pytest.importorskip("tritonclient.http")
    folder, _ = run
    with running(create_app(lambda: open_predictor("sales", folder / "runs"))) as url:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        metadata = client.get_model_metadata("sales")
        assert [spec["name"] for spec in metadata["inputs"]] == ["month", "store"]
        inputs = []
        for name, values in (("month", ["2024-01-01", "2024-02-01"]), ("store", ["south", "south"])):
            tensor = httpclient.InferInput(name, [2], "BYTES")
            tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=False)
            inputs.append(tensor)
        answer = client.infer("sales", inputs)
        assert answer.as_numpy("value").shape == (2,) and np.isfinite(answer.as_numpy("value")).all()
        assert answer.as_numpy("quantiles").shape == (2, 9)
        # Every check but positive_data_acceptance: a schema-valid row may name a series the model never saw or a
        # timestamp inside its history, which JSON Schema cannot express; those get a located 4xx answer.
        finished = schemathesis(url, folder, 15, exclude=("positive_data_acceptance",))
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]


def test_a_forecast_does_not_depend_on_the_other_series_asked_for(tmp_path):
    import modeldojo as dojo

    frame, target, _ = tasks.get("forecast").example("forecast")
    result = dojo.train(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="global", overrides={
        "forecast.time_column": "month", "forecast.id_columns": ["store"], "forecast.horizon": 6,
        "forecast.backtest_windows": 2, "forecast.models": ["lightgbm"]})
    steps = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01", "2024-07-01"]
    alone = result.model.predict_frame(pd.DataFrame({"store": "north", "month": steps})).values
    together = result.model.predict_frame(pd.DataFrame({"store": ["north"] * 7 + ["east"] * 7,
                                                        "month": steps * 2})).values[:7]
    np.testing.assert_allclose(alone, together, rtol=1e-12)  # step 7 is past the stored horizon: a refit
    short = frame[frame["store"] == "east"].tail(3)
    with pytest.raises(Exception, match="history row"):
        result.model.predict_frame(short)


def test_requests_with_history_are_never_batched_together(run):
    from concurrent.futures import ThreadPoolExecutor

    folder, frame = run
    plain = [{"store": "east", "month": "2024-01-01"}]
    # another client's history for the same series: flat zeros, which would change a shared batch's forecast
    other = [{"store": "east", "month": row["month"], "sales": 0.0} for row in frame[frame["store"] == "east"]
             .to_dict("records")] + [{"store": "east", "month": "2024-01-01"}]
    with running(create_app(lambda: open_predictor("sales", folder / "runs"))) as url:
        expected = httpx.post(url + "/predict", json={"inputs": plain}).json()["predictions"][0]["value"]
        with ThreadPoolExecutor(8) as pool:
            calls = [pool.submit(httpx.post, url + "/predict", json={"inputs": body}, timeout=60)
                     for _ in range(6) for body in (plain, other)]
            answers = [call.result().json()["predictions"] for call in calls]
    assert all(answer[0]["value"] == expected for answer in answers[::2])


def test_quantize_tune_and_id_overrides(run, capsys):
    folder, _ = run
    from modeldojo.errors import ConfigError

    assert main(["export", "sales", "--runs-dir", str(folder / "runs"), "--quantize", "int8"]) == ConfigError.exit_code
    assert "no weights to quantize" in capsys.readouterr().err
    assert main(["tune", str(folder / "sales.csv"), "forecast.time_column=month", "forecast.id_columns=[store]",
                 "forecast.horizon=6", "tracking.enabled=false",
                 "--target", "sales", "--runs-dir", str(folder / "runs")]) == ConfigError.exit_code
    assert "already searches its models" in capsys.readouterr().err
    # overrides typed after --id's columns are overrides, not more id columns
    assert main(["check", str(folder / "sales.csv"), "--target", "sales", "--time", "month", "--horizon", "6", "--id", "store",
                 "forecast.fill_gaps=error", "--json"]) == 0
