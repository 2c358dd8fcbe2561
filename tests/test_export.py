"""ONNX export: self-contained folder, parity check that refuses a broken export, int8 and fp16, manifest
round-trip, external-data paths refused, tabular learners as ONNX or native."""
import json

import numpy as np
import pytest

import modeldojo as dojo
from modeldojo import tasks
from modeldojo.errors import ConfigError

pytest.importorskip("onnxruntime")
tasks.load_all()
from modeldojo.export import onnx_format  # noqa: E402
from modeldojo.export.exporter import ParityError, export  # noqa: E402
from modeldojo.export.runtime import ExportedModel, read_manifest  # noqa: E402


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    frame, target, settings = tasks.get("text").example("multiclass")
    data = runs / "reviews.csv"
    frame.to_csv(data, index=False)
    dojo.train(str(data), target=target, task="text", runs_dir=str(runs), tracking=False, name="t",
               overrides={**settings, "train.epochs": 2, "data.label_error_check": False})
    return runs, frame, target


def test_text_export_is_self_contained_and_matches_the_model(text_run):
    runs, frame, target = text_run
    result = export("t", runs_dir=runs)
    folder = runs / "t" / "export" / "onnx"
    assert result["folder"] == str(folder) and result["parity"]["passed"] and not result["forced"]
    assert result["parity"]["max_abs_diff"] < 1e-4 and result["parity"]["agreement"] == 1.0
    names = {p.name for p in folder.rglob("*")}
    assert {"model.onnx", "manifest.json", "tokenizer"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".pt", ".bin"))]  # nothing to unpickle
    manifest = read_manifest(folder)
    assert manifest["task"] == "text" and manifest["classes"] and manifest["parity"]["rows"] > 0
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    exported = ExportedModel(folder)
    original = dojo.load(runs / "t")
    rows = frame.drop(columns=[target]).head(7)
    np.testing.assert_allclose(exported.predict_proba(rows), original.predict_proba(rows), atol=1e-5)
    assert list(exported.predict(rows).values) == list(original.predict(rows))


def test_int8_export_passes_its_own_tolerance(text_run):
    """The run's 18 validation rows: each label int8 flips moves accuracy by 5.6 points against an allowed 0.5,
    so the drop is judged against the allowed drop plus what the changed rows explain by chance (issue 12: 5
    changed labels, accuracy 0.61 → 0.44, failed one fresh clone). The rule itself, on fixed predictions:
    tests/test_export_parity.py."""
    runs, _, _ = text_run
    result = export("t", runs_dir=runs, quantize="int8")
    parity = result["parity"]
    assert parity["passed"], parity
    assert result["folder"].endswith("onnx-int8") and parity["decided_by"] == "both within tolerance"
    assert parity["max_abs_diff_allowed"] == 0.15 and parity["max_metric_drop_allowed"] == 0.005
    assert parity["rows"] == 18 and parity["changed_rows"] == round((1 - parity["agreement"]) * 18)
    assert parity["metric_drop"] <= parity["metric_drop_limit"]
    assert parity["metric_drop_limit"] == pytest.approx(0.005 + parity["metric_drop_noise"])


def test_a_broken_export_is_refused_and_leaves_nothing(text_run, monkeypatch):
    import onnx
    from onnx import numpy_helper

    runs, _, _ = text_run
    from modeldojo.tasks.text.task import TextTask

    original = TextTask.export_onnx

    def sabotaged(self, folder):  # the head's weights negated: a silently wrong model
        preprocessing = original(self, folder)
        model = onnx.load(str(folder / "model.onnx"))
        for tensor in model.graph.initializer:
            if tensor.name.startswith("head."):
                tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
        onnx.save(model, str(folder / "model.onnx"))
        return preprocessing

    monkeypatch.setattr(TextTask, "export_onnx", sabotaged)
    with pytest.raises(ParityError, match="parity failed on 18 rows") as caught:
        export("t", runs_dir=runs, out=runs / "broken")
    assert caught.value.exit_code == 6
    assert not (runs / "broken").exists() and not (runs / "broken.partial").exists()
    failed = json.loads((runs / "t" / "export_parity_failed.json").read_text())
    assert failed["passed"] is False and failed["decided_by"].startswith("largest probability difference")
    forced = export("t", runs_dir=runs, out=runs / "forced", force=True)
    assert forced["forced"] and read_manifest(runs / "forced")["parity"]["passed"] is False


def test_external_data_outside_the_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [tensor])
    (tmp_path / "export").mkdir()
    onnx.save(helper.make_model(graph), str(tmp_path / "export" / "model.onnx"))
    with pytest.raises(ConfigError, match="outside the export folder"):
        onnx_format.session(tmp_path / "export" / "model.onnx")


def test_image_export_matches_the_model(tmp_path):
    frame, target, settings = tasks.get("image").example("multiclass")
    dojo.train(frame, target=target, task="image", runs_dir=str(tmp_path), tracking=False, name="img",
               overrides={**settings, "train.epochs": 2, "data.label_error_check": False})
    with pytest.raises(ConfigError, match="--data"):  # trained from memory: no file to rebuild its split from
        export("img", runs_dir=tmp_path)
    result = export("img", runs_dir=tmp_path, data=frame)
    assert result["parity"]["passed"] and result["parity"]["max_abs_diff"] < 1e-4
    exported = ExportedModel(result["folder"])
    rows = frame.drop(columns=[target]).head(5)
    np.testing.assert_allclose(exported.predict_proba(rows), dojo.load(tmp_path / "img").predict_proba(rows),
                               atol=1e-5)
    assert read_manifest(result["folder"])["preprocessing"]["image_size"] > 0


@pytest.mark.parametrize("learner, kind, backend", [("lightgbm", "multiclass", "onnx"),
                                                     ("lightgbm", "regression", "onnx"),
                                                     ("xgboost", "binary", "native"),
                                                     ("catboost", "regression", "native"),
                                                     ("random_forest", "binary", "native")])
def test_tabular_export(tmp_path, learner, kind, backend):
    frame, target, _ = tasks.get("tabular").example(kind)
    frame.loc[::7, "city"] = None  # missing categoricals and numbers take the same branch as in the booster
    frame.loc[::5, "size"] = np.nan
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    dojo.train(str(data), target=target, runs_dir=str(tmp_path), tracking=False, name="tab",
               overrides={"data.label_error_check": False, "model.name": learner})
    result = export("tab", runs_dir=tmp_path)
    manifest = read_manifest(result["folder"])
    assert result["parity"]["passed"] and manifest["preprocessing"]["backend"] == backend
    assert (tmp_path / "tab/export/onnx" / ("model.onnx" if backend == "onnx" else "native")).exists()
    assert manifest["parity"]["compared"] == ("relative value" if kind == "regression" else "probability")
    rows = frame.drop(columns=[target])
    rows.loc[3, "city"] = "a city never seen"
    original, exported = dojo.load(tmp_path / "tab").predict_frame(rows), ExportedModel(result["folder"]).predict(rows)
    if kind == "regression":
        np.testing.assert_allclose(exported.values, original.values, rtol=1e-5)
    else:
        np.testing.assert_allclose(exported.probabilities, original.probabilities, atol=1e-5)
        assert list(exported.values) == list(original.values)
    with pytest.raises(ConfigError, match="no weights to quantize"):
        export("tab", runs_dir=tmp_path, quantize="int8")


def test_xgboost_on_numbers_exports_to_onnx(tmp_path):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(300, random_state=0)
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    dojo.train(str(tmp_path / "cancer.csv"), target="target", runs_dir=str(tmp_path), tracking=False, name="x",
               overrides={"data.label_error_check": False, "model.name": "xgboost"})
    result = export("x", runs_dir=tmp_path)
    assert read_manifest(result["folder"])["preprocessing"]["backend"] == "onnx"
    assert result["parity"]["passed"] and result["parity"]["max_abs_diff"] < 1e-5


def test_fp16_export_passes_its_own_tolerance(text_run):
    runs, frame, target = text_run
    result = export("t", runs_dir=runs, quantize="fp16")
    assert result["parity"]["passed"] and result["folder"].endswith("onnx-fp16")
    assert result["parity"]["max_abs_diff_allowed"] == 0.01
    import onnx

    weights = onnx.load(str(runs / "t/export/onnx-fp16/model.onnx")).graph.initializer
    assert any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in weights)


def test_dojo_export_command(text_run, capsys):
    from modeldojo.cli import main

    runs, _, _ = text_run
    assert main(["export", "t", "--runs-dir", str(runs), "--out", str(runs / "cli"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parity"]["passed"] and (runs / "cli" / "model.onnx").is_file()
    assert main(["export", "t", "--runs-dir", str(runs), "--out", str(runs / "cli2"),
                 "--max-abs-diff", "-1"]) == 6


def test_a_tree_export_that_rounds_thresholds_falls_back_to_the_native_file(tmp_path):
    """Values 1e-5 apart near 1000 are one float32 (ulp 6e-5): ONNX's float32 tree compares cannot split them
    as LightGBM (float64) did. Parity catches it; the export is the booster's own file, the report kept."""
    import pandas as pd

    rng = np.random.default_rng(0)
    x = 1000 + rng.integers(0, 400, 600) * 1e-5
    frame = pd.DataFrame({"x": x, "noise": rng.normal(size=600), "y": np.sin(x * 3e4) * 100 + 500})
    frame.to_csv(tmp_path / "close.csv", index=False)
    dojo.train(str(tmp_path / "close.csv"), target="y", runs_dir=str(tmp_path), tracking=False, name="close",
               overrides={"data.label_error_check": False, "model.params": {"min_child_samples": 2}})
    result = export("close", runs_dir=tmp_path)
    preprocessing = read_manifest(result["folder"])["preprocessing"]
    assert result["parity"]["passed"] and result["parity"]["max_abs_diff"] == 0
    assert preprocessing["backend"] == "native" and "float32" in preprocessing["why_native"]
    assert preprocessing["rejected_onnx_parity"]["passed"] is False
    assert not (tmp_path / "close/export/onnx/model.onnx").exists()


def test_cell_by_cell_encoding_equals_the_pandas_transform():
    """The server's fast encoder must see exactly what training's transform sees, on messy cells too."""
    import pandas as pd

    from modeldojo.tasks.tabular.preprocess import Preprocessor, category_codes

    train = pd.DataFrame({"n": [1.5, 2, None, 4], "t": ["1", " 2 ", "3.5", None], "c": ["a", "b", 3.0, None],
                          "d": ["2001-01-02", "2002-03-04", None, "2003-05-06"], "b": [True, False, True, False]})
    preprocessor = Preprocessor().fit(train)
    assert [spec["type"] for spec in preprocessor.columns.values()] == ["numeric", "numeric", "categorical",
                                                                      "datetime", "numeric"]
    new = pd.DataFrame({"n": ["7", "inf", None, "1_000", " 3 ", "abc", True, 2],
                        "t": [1, "1e3", "nan", float("nan"), "-2.5", "", None, "+4"],
                        "c": ["a", " b ", 3, 3.0, "3", "never seen", None, float("nan")],
                        "d": ["2001-01-02", "garbage", None, "2010-12-31", "2001-01-02", "2001-01-02", None, "x"],
                        "b": [True, False, None, 1, 0, "yes", 1.5, False]}, dtype=object)
    for frame in (new, new.infer_objects(), train):
        expected = category_codes(preprocessor.transform(frame)[0], preprocessor.categorical_columns)
        np.testing.assert_array_equal(preprocessor.encode(frame), expected.to_numpy(np.float64))
        np.testing.assert_array_equal(preprocessor.encode(frame.to_dict("records")), expected.to_numpy(np.float64))
    # A row's features never depend on its batch mates (pandas would make a [True, None] column object-typed).
    rows = new.to_dict("records")
    together = preprocessor.encode(rows)
    for index, row in enumerate(rows):
        np.testing.assert_array_equal(preprocessor.encode([row])[0], together[index])
