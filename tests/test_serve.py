"""dojo serve: routes, KServe v2, batching, and the hardening behaviours (auth, body limit, 422, 429, 504,
readiness, SIGTERM drain) against a real uvicorn server on 127.0.0.1."""
import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import modeldojo as dojo
from modeldojo import tasks

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
tasks.load_all()
from modeldojo.export.exporter import export  # noqa: E402
from modeldojo.serving.app import Settings, create_app  # noqa: E402
from modeldojo.serving.predictor import Predictor, open_predictor  # noqa: E402
from serving_helpers import free_port, running  # noqa: E402

ROW = {"size": 120.0, "rooms": 3, "city": "north", "built": "2004-05-01"}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    frame, target, _ = tasks.get("tabular").example("binary")
    frame.to_csv(runs / "houses.csv", index=False)
    dojo.train(str(runs / "houses.csv"), target=target, runs_dir=str(runs), tracking=False, name="houses",
               overrides={"data.label_error_check": False})
    export("houses", runs_dir=runs)
    return runs, frame.drop(columns=[target])


class SlowPredictor(Predictor):
    """The real model, `delay` seconds slower per batch, recording batch sizes."""
    delay = 0.0

    def predict_records(self, rows):
        self.batches = getattr(self, "batches", []) + [len(rows)]
        time.sleep(self.delay)
        return super().predict_records(rows)


def loading_until(release: threading.Event, runs):
    """A model loader that blocks until `release` is set: the server stays in its loading state."""
    def load():
        release.wait(30)
        return open_predictor("houses", runs)
    return load


def slow(runs, delay):
    predictor = open_predictor("houses", runs)
    slowed = SlowPredictor(**vars(predictor))
    slowed.delay = delay
    return slowed


def test_predict_matches_the_model(table_run):
    runs, rows = table_run
    predictor = open_predictor("houses", runs)
    assert predictor.backend == "onnx"  # the run's export is preferred
    with running(create_app(lambda: predictor)) as url:
        records = json.loads(rows.head(5).to_json(orient="records"))
        response = httpx.post(url + "/predict", json={"inputs": records})
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
    expected = dojo.load(runs / "houses").predict_proba(rows.head(5))
    assert [a["label"] for a in answers] == list(expected.idxmax(axis=1))
    got = np.array([[a["probabilities"][c] for c in expected.columns] for a in answers])
    np.testing.assert_allclose(got, expected.to_numpy(), atol=1e-5)


def test_open_inference_protocol(table_run):
    runs, rows = table_run
    with running(create_app(lambda: open_predictor("houses", runs))) as url:
        assert httpx.get(url + "/v2/health/live").json() == {"live": True}
        assert httpx.get(url + "/v2/health/ready").json() == {"ready": True}
        meta = httpx.get(url + "/v2/models/houses").json()
        assert meta["platform"] == "onnxruntime_onnx"
        assert {i["name"]: i["datatype"] for i in meta["inputs"]}["city"] == "BYTES"
        inputs = [{"name": item["name"], "shape": [2], "datatype": item["datatype"],
                   "data": [ROW[item["name"]], None]} for item in meta["inputs"]]
        body = httpx.post(url + "/v2/models/houses/infer", json={"id": "r1", "inputs": inputs}).json()
        assert body["id"] == "r1" and [o["name"] for o in body["outputs"]] == ["label", "probabilities"]
        assert body["outputs"][1]["shape"] == [2, 2] and len(body["outputs"][1]["data"]) == 4
        only = httpx.post(url + "/v2/models/houses/infer", json={"inputs": inputs,
                                                                 "outputs": [{"name": "label"}]}).json()
        assert [o["name"] for o in only["outputs"]] == ["label"]
        assert httpx.get(url + "/v2/models/other").status_code == 404
        inputs[0]["shape"] = [3]
        wrong = httpx.post(url + "/v2/models/houses/infer", json={"inputs": inputs})
        assert wrong.status_code == 400 and "shape [3]" in wrong.json()["error"]


def test_bad_requests_get_422_with_a_reason(table_run):
    runs, _ = table_run
    with running(create_app(lambda: open_predictor("houses", runs))) as url:
        malformed = httpx.post(url + "/predict", content=b'{"inputs": [', headers={"content-type": "application/json"})
        assert malformed.status_code == 422 and "JSON decode error" in malformed.json()["detail"]
        assert httpx.post(url + "/predict", json={"inputs": 5}).status_code == 422
        assert httpx.post(url + "/predict", json={"inputs": []}).status_code == 422
        assert httpx.post(url + "/predict", json={"rows": [ROW]}).status_code == 422
        missing = httpx.post(url + "/predict", json={"inputs": [{"size": 1}]})
        assert missing.status_code == 422 and "missing column" in missing.json()["detail"]
        nested = httpx.post(url + "/predict", json={"inputs": [{**ROW, "city": ["a", "b"]}]})
        assert nested.status_code == 422 and "inputs[0].city" in nested.json()["detail"]
        text = httpx.post(url + "/predict", json={"inputs": ["a text for a table model"]})
        assert text.status_code == 422
        upload = httpx.post(url + "/predict/upload", files=[("files", ("a.png", b"x", "image/png"))])
        assert upload.status_code == 404 and "no file uploads" in upload.json()["detail"]
        # odd but valid values are not errors: text in a number column is missing, like in training
        assert httpx.post(url + "/predict", json={"inputs": [{**ROW, "size": "n/a", "rooms": True}]}).status_code == 200


def test_an_answer_does_not_depend_on_its_batch_mates(table_run):
    runs, _ = table_run
    predictor = open_predictor("houses", runs)
    odd = {**ROW, "rooms": True}
    alone = predictor.answers(predictor.predict_records([odd]))
    together = predictor.answers(predictor.predict_records([odd, {**ROW, "rooms": None}, {**ROW, "size": "12"}]))
    assert alone[0]["label"] == together[0]["label"]
    assert alone[0]["probabilities"] == pytest.approx(together[0]["probabilities"], abs=1e-6)  # float32 sums


def test_body_limit_answers_413_without_reading_the_body(table_run):
    runs, _ = table_run
    with running(create_app(lambda: open_predictor("houses", runs), Settings(max_body_bytes=2048))) as url:
        big = {"inputs": [ROW] * 100}
        response = httpx.post(url + "/predict", json=big)
        assert response.status_code == 413 and "limit" in response.json()["detail"]

        def chunks():  # no Content-Length: counted while it streams
            payload = json.dumps(big).encode()
            for start in range(0, len(payload), 512):
                yield payload[start:start + 512]
        assert httpx.post(url + "/predict", content=chunks(),
                          headers={"content-type": "application/json"}).status_code == 413
        assert httpx.post(url + "/predict", json={"inputs": [ROW]}).status_code == 200


def test_bearer_token_guards_every_route_but_liveness(table_run):
    runs, _ = table_run
    token = {"authorization": "Bearer s3cret"}
    app = create_app(lambda: open_predictor("houses", runs), Settings(api_key="s3cret"))
    with running(app, headers=token) as url:
        assert httpx.get(url + "/v2/health/live").status_code == 200
        for path in ("/v2/health/ready", "/metrics", "/docs", "/openapi.json", "/v2/models/houses"):
            refused = httpx.get(url + path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
        assert httpx.post(url + "/predict", json={"inputs": [ROW]},
                          headers={"authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(url + "/predict", json={"inputs": [ROW]}, headers=token).status_code == 200


def test_a_full_queue_answers_429_with_retry_after(table_run):
    runs, _ = table_run
    predictor = slow(runs, 0.3)
    app = create_app(lambda: predictor, Settings(max_queue=2, max_batch_size=1, max_wait_ms=0))
    with running(app) as url, httpx.Client() as client:
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda _: client.post(url + "/predict", json={"inputs": [ROW]}, timeout=30),
                                      range(12)))
    codes = [r.status_code for r in responses]
    assert 429 in codes and 200 in codes and set(codes) <= {200, 429}, codes
    assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 429)


def test_a_slow_answer_times_out_with_504(table_run):
    runs, _ = table_run
    predictor = slow(runs, 0)
    app = create_app(lambda: predictor, Settings(timeout_s=0.2))
    with running(app) as url:
        predictor.delay = 1.0
        response = httpx.post(url + "/predict", json={"inputs": [ROW]})
        assert response.status_code == 504 and "0.2 s" in response.json()["detail"]
        predictor.delay = 0


def test_batching_batches_under_concurrency(table_run):
    runs, _ = table_run
    predictor = slow(runs, 0.02)
    with running(create_app(lambda: predictor, Settings(max_batch_size=16, max_wait_ms=5))) as url:
        predictor.batches = []
        with httpx.Client() as client, ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: client.post(url + "/predict", json={"inputs": [ROW]}).status_code,
                                  range(64)))
        metrics = httpx.get(url + "/metrics").text
    assert codes == [200] * 64
    assert max(predictor.batches) > 1 and len(predictor.batches) < 64
    count = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("dojo_batch_size_count")))
    total = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("dojo_batch_size_sum")))
    assert total / count > 1, (total, count)  # the batch-size metric shows batching too
    assert 'dojo_requests_total{route="/predict",status="200"} 64.0' in metrics
    assert "dojo_queue_depth" in metrics and "dojo_request_seconds_bucket" in metrics


def test_ready_only_after_loading_and_warm_up_and_not_while_draining(table_run):
    release = threading.Event()
    app = create_app(loading_until(release, table_run[0]))
    with running(app, ready=False) as url:
        assert httpx.get(url + "/v2/health/live").status_code == 200
        loading = httpx.get(url + "/v2/health/ready")
        assert loading.status_code == 503 and loading.json()["error"] == "model loading"
        assert httpx.post(url + "/predict", json={"inputs": [ROW]}).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while httpx.get(url + "/v2/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.post(url + "/predict", json={"inputs": [ROW]}).status_code == 200
        app.state.dojo.begin_drain()
        assert httpx.get(url + "/v2/health/ready").status_code == 503
        draining = httpx.post(url + "/predict", json={"inputs": [ROW]})
        assert draining.status_code == 503 and draining.headers["retry-after"] == "1"


def test_a_model_that_cannot_load_fails_liveness():
    def load():
        raise FileNotFoundError("model.onnx is gone")

    with running(create_app(load), ready=False) as url:
        deadline = time.monotonic() + 10
        while httpx.get(url + "/v2/health/live").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        live = httpx.get(url + "/v2/health/live")
        assert live.status_code == 500 and "model.onnx is gone" in live.json()["error"]


def test_sigterm_drains_in_flight_requests(table_run):
    """A `dojo serve` process: requests waiting in a batch when SIGTERM arrives are all answered, then it exits 0."""
    runs, _ = table_run
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "modeldojo.cli", "serve", "houses", "--runs-dir", str(runs),
                               "--port", str(port), "--max-wait-ms", "1500", "--max-batch-size", "64"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, url + "/predict", json={"inputs": [ROW]}, timeout=30) for _ in range(8)]
            time.sleep(0.5)  # all 8 now wait for the batch to fill
            server.send_signal(signal.SIGTERM)
            codes = [future.result().status_code for future in futures]
        assert codes == [200] * 8
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    output = server.stdout.read()
    assert "draining" in output, output


def test_dojo_predict_runs_the_same_runtime(table_run, tmp_path):
    from modeldojo.cli import main

    runs, rows = table_run
    rows.head(20).to_csv(tmp_path / "new.csv", index=False)
    outputs = {}
    for backend in ("onnx", "native"):
        out = tmp_path / f"{backend}.csv"
        assert main(["predict", "houses", "--runs-dir", str(runs), "--data", str(tmp_path / "new.csv"),
                     "--out", str(out), "--backend", backend]) == 0
        outputs[backend] = out.read_text().splitlines()
    assert [line.split(",")[-3] for line in outputs["onnx"]] == [line.split(",")[-3] for line in outputs["native"]]
    assert main(["predict", str(runs / "houses/export/onnx"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "folder.csv")]) == 0
    (tmp_path / "bad.csv").write_text("size\n1\n")
    assert main(["predict", "houses", "--runs-dir", str(runs), "--data", str(tmp_path / "bad.csv")]) == 3


def test_text_and_image_models_serve_through_the_same_server(tmp_path):
    from PIL import Image

    text, target, settings = tasks.get("text").example("binary")
    dojo.train(text, target=target, task="text", runs_dir=str(tmp_path), tracking=False, name="reviews",
               overrides={**settings, "train.epochs": 1, "data.label_error_check": False})
    with running(create_app(lambda: open_predictor("reviews", tmp_path))) as url:  # no export: PyTorch fallback
        texts = text.drop(columns=[target]).iloc[:3, 0].tolist()
        answers = httpx.post(url + "/predict", json={"inputs": texts}).json()["predictions"]
        assert [a["label"] for a in answers] == list(dojo.load(tmp_path / "reviews").predict(text.head(3)))
        assert httpx.get(url + "/v2/models/reviews").json()["platform"] == "modeldojo_text"

    images, target, settings = tasks.get("image").example("multiclass")
    dojo.train(images, target=target, task="image", runs_dir=str(tmp_path), tracking=False, name="pictures",
               overrides={**settings, "train.epochs": 1, "data.label_error_check": False})
    export("pictures", runs_dir=tmp_path, data=images)
    picture = Image.fromarray(np.asarray(images["image"].iloc[0]))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    with running(create_app(lambda: open_predictor("pictures", tmp_path))) as url:
        by_json = httpx.post(url + "/predict", json={"inputs": [encoded, "data:image/png;base64," + encoded]})
        assert by_json.status_code == 200, by_json.text
        first, second = by_json.json()["predictions"]
        assert first == second
        upload = httpx.post(url + "/predict/upload", files=[("files", ("a.png", buffer.getvalue(), "image/png"))])
        assert upload.status_code == 200 and upload.json()["predictions"][0]["label"] == first["label"]
        broken = httpx.post(url + "/predict", json={"inputs": [base64.b64encode(b"not an image").decode()]})
        assert broken.status_code == 422 and "not an image" in broken.json()["detail"]
        assert httpx.post(url + "/predict", json={"inputs": ["%%%"]}).status_code == 422
        # KServe v2: the image file's own bytes in a binary BYTES tensor (4-byte length, then the bytes).
        header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                         "parameters": {"binary_data_size": 4 + len(buffer.getvalue())}}],
                             "outputs": [{"name": "label"}]}).encode()
        body = header + len(buffer.getvalue()).to_bytes(4, "little") + buffer.getvalue()
        infer = httpx.post(url + "/v2/models/pictures/infer", content=body,
                           headers={"Inference-Header-Content-Length": str(len(header))})
        assert infer.status_code == 200 and infer.json()["outputs"][0]["data"] == [first["label"]]
        assert "/predict/upload" in httpx.get(url + "/openapi.json").json()["paths"]


class PickyPredictor(Predictor):
    """Fails any batch holding a row whose city is 'poison' — a bad request its batch mates must survive."""

    def predict_records(self, rows):
        time.sleep(0.05)
        if any(row["city"] == "poison" for row in rows):
            raise ValueError("city 'poison' cannot be predicted")
        return super().predict_records(rows)


def test_one_bad_request_does_not_fail_its_batch_mates(table_run):
    runs, _ = table_run
    predictor = PickyPredictor(**vars(open_predictor("houses", runs)))
    with running(create_app(lambda: predictor, Settings(max_batch_size=64, max_wait_ms=50))) as url:
        cities = ["north"] * 7 + ["poison"] + ["south"] * 7
        with httpx.Client() as client, ThreadPoolExecutor(len(cities)) as pool:
            responses = list(pool.map(lambda city: client.post(url + "/predict", json={"inputs": [{**ROW, "city": city}]}),
                                      cities))
    codes = [r.status_code for r in responses]
    assert codes == [200] * 7 + [422] + [200] * 7, codes
    assert "poison" in responses[7].json()["detail"]


def test_hostile_inputs_get_4xx_not_5xx(table_run, tmp_path):
    runs, _ = table_run
    with running(create_app(lambda: open_predictor("houses", runs))) as url:
        started = time.perf_counter()
        huge = {"inputs": [{"name": "size", "shape": [10 ** 4000] * 200, "datatype": "FP64", "data": [1]}]}
        assert httpx.post(url + "/v2/models/houses/infer", json=huge).status_code == 400
        assert time.perf_counter() - started < 2  # the shape is checked before anything multiplies it
        big_number = b'{"inputs": [{"size": 1' + b"0" * 400 + b', "rooms": 1e400, "city": "north", "built": null}]}'
        assert httpx.post(url + "/predict", content=big_number,
                          headers={"content-type": "application/json"}).status_code == 200
        mixed = [{**ROW, "built": "2020-01-01T00:00:00+05:00"}, {**ROW, "built": "2020-01-02"}]
        assert httpx.post(url + "/predict", json={"inputs": mixed}).status_code == 200


def test_image_bombs_are_refused_from_the_header():
    from PIL import Image

    from modeldojo.tasks.codec import Signature
    from modeldojo.tasks.image.codec import ImageCodec, decode_image_bytes

    buffer = io.BytesIO()
    Image.new("1", (6000, 5000)).save(buffer, format="PNG")  # 30 M pixels in a few kB
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(ValueError, match="over the limit"):
        decode_image_bytes(buffer.getvalue(), "files[0]")
    small = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(small, format="PNG")  # 16 M pixels: fine alone, not seven at once
    assert decode_image_bytes(small.getvalue(), "one").size == (4000, 4000)
    with pytest.raises(ValueError, match="request's images"):
        ImageCodec(Signature("m", "image", "binary", ["a", "b"], ["image"])).upload_records(
            [(small.getvalue(), f"files[{i}]") for i in range(7)])
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    with pytest.raises(ValueError, match="not an image"):
        decode_image_bytes(eps, "files[0]")


def test_stopping_while_the_model_loads_never_turns_ready(table_run):
    release = threading.Event()
    app = create_app(loading_until(release, table_run[0]))
    with running(app, ready=False) as url:
        app.state.dojo.begin_drain()
        release.set()
        time.sleep(1.5)
        assert httpx.get(url + "/v2/health/ready").status_code == 503
        assert app.state.dojo.batcher is None
