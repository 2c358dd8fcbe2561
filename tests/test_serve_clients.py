"""The server as its users' clients see it, against a running server (127.0.0.1), for a tabular classifier, a
regressor and a text model: KServe Open Inference Protocol v2 through the real `tritonclient[http]` client,
unchanged (readiness, metadata, infer with JSON and with the binary tensor data extension; errors read through
the client's own exception), and the OpenAPI contract through the schemathesis command line with all checks."""

import httpx
import numpy as np
import pandas as pd
import pytest

import modeldojo as dojo
from modeldojo import tasks

pytest.importorskip("fastapi")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

tasks.load_all()
from modeldojo.export.exporter import export  # noqa: E402
from modeldojo.serving.app import Settings, create_app  # noqa: E402
from modeldojo.serving.predictor import open_predictor  # noqa: E402
from serving_helpers import running, schemathesis  # noqa: E402

NUMPY = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "BYTES": object}


def train(runs, task: str, kind: str, name: str, exported: bool) -> pd.DataFrame:
    frame, target, settings = tasks.get(task).example(kind)
    dojo.train(frame, target=target, task=task, runs_dir=str(runs), tracking=False, name=name,
               overrides={**settings, "train.epochs": 1, "data.label_error_check": False} if task != "tabular"
               else {"data.label_error_check": False})
    if exported:
        export(name, runs_dir=runs, data=frame)
    return frame.drop(columns=[target]).head(7).reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    rows = {"houses": train(folder, "tabular", "binary", "houses", exported=True),
            "prices": train(folder, "tabular", "regression", "prices", exported=True),
            "reviews": train(folder, "text", "binary", "reviews", exported=False)}
    return folder, rows


def client_inputs(client, name: str, rows: pd.DataFrame, binary: bool):
    """One InferInput per input the server's metadata names, typed as it says."""
    inputs = []
    for spec in client.get_model_metadata(name)["inputs"]:
        values = rows[spec["name"]]
        array = (values.astype(str).to_numpy(dtype=object) if spec["datatype"] == "BYTES"
                 else values.to_numpy(dtype=NUMPY[spec["datatype"]]))
        tensor = httpclient.InferInput(spec["name"], [len(rows)], spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def labels(result) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else str(value) for value in result.as_numpy("label")]


@pytest.mark.parametrize("name", ["houses", "prices", "reviews"])
def test_tritonclient_reads_metadata_and_infers_with_json_and_binary(runs, name):
    folder, rows = runs
    frame = rows[name]
    with running(create_app(lambda: open_predictor(name, folder))) as url:
        expected = httpx.post(url + "/predict", json={"inputs": frame.to_dict("records")}).json()["predictions"]
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        metadata = client.get_model_metadata(name)
        assert [spec["name"] for spec in metadata["inputs"]] == open_predictor(name, folder).features
        outputs = [spec["name"] for spec in metadata["outputs"]]
        assert outputs == (["value"] if name == "prices" else ["label", "probabilities"])

        as_json = client.infer(name, client_inputs(client, name, frame, binary=False), request_id="r1",
                               outputs=[httpclient.InferRequestedOutput(output, binary_data=False)
                                        for output in outputs])
        assert as_json.get_response()["id"] == "r1"
        as_binary = client.infer(name, client_inputs(client, name, frame, binary=True))  # the client's default
        assert all("parameters" in output for output in as_binary.get_response()["outputs"])  # binary outputs
        for result in (as_json, as_binary):
            if name == "prices":
                assert result.as_numpy("value").tolist() == pytest.approx([row["value"] for row in expected])
            else:
                assert labels(result) == [str(row["label"]) for row in expected]
                classes = list(expected[0]["probabilities"])
                probabilities = result.as_numpy("probabilities")
                assert probabilities.shape == (len(frame), len(classes))
                assert probabilities.ravel().tolist() == pytest.approx(
                    [row["probabilities"][label] for row in expected for label in classes])


def test_errors_reach_the_clients_own_exception(runs):
    folder, rows = runs
    frame = rows["houses"]
    with running(create_app(lambda: open_predictor("houses", folder), Settings(max_items=5))) as url:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        with pytest.raises(InferenceServerException) as unknown_model:
            client.get_model_metadata("nope")
        assert unknown_model.value.status() == "404" and "no model 'nope'" in unknown_model.value.message()

        wrong = httpclient.InferInput("colour", [2], "BYTES")
        wrong.set_data_from_numpy(np.array(["red", "blue"], dtype=object))
        with pytest.raises(InferenceServerException) as unknown_input:
            client.infer("houses", [wrong])
        assert unknown_input.value.status() == "400" and "no input 'colour'" in unknown_input.value.message()

        # Server limits hold for binary requests exactly as for JSON ones: rows per request.
        with pytest.raises(InferenceServerException) as too_many:
            client.infer("houses", client_inputs(client, "houses", frame, binary=True))
        assert too_many.value.status() == "400" and "at most 5" in too_many.value.message()

        typed = client_inputs(client, "houses", frame.head(2), binary=False)
        typed[0] = httpclient.InferInput(typed[0].name(), [2], "BYTES")
        typed[0].set_data_from_numpy(np.array(["a", "b"], dtype=object), binary_data=False)
        with pytest.raises(InferenceServerException) as datatype:
            client.infer("houses", typed)
        assert "datatype 'BYTES'" in datatype.value.message()


def test_binary_body_limits_and_broken_binary_data_are_refused(runs):
    folder, _ = runs
    with running(create_app(lambda: open_predictor("houses", folder), Settings(max_body_bytes=2000))) as url:
        header = b'{"inputs": [{"name": "size", "shape": [1], "datatype": "FP64", ' \
                 b'"parameters": {"binary_data_size": 8}}]}'
        over = httpx.post(url + "/v2/models/houses/infer", content=header + b"\0" * 4000,
                          headers={"Inference-Header-Content-Length": str(len(header))})
        assert over.status_code == 413 and "limit" in over.json()["error"]
        short = httpx.post(url + "/v2/models/houses/infer", content=header + b"\0" * 4,
                           headers={"Inference-Header-Content-Length": str(len(header))})
        assert short.status_code == 400 and "runs past" in short.json()["error"]
        lying = httpx.post(url + "/v2/models/houses/infer", content=header,
                           headers={"Inference-Header-Content-Length": "99999"})
        assert lying.status_code == 400 and "does not fit" in lying.json()["error"]


@pytest.mark.parametrize("name", ["houses", "prices", "reviews"])
def test_schemathesis_all_checks_pass_on_the_served_models_contract(runs, name):
    """Every documented route and status, request and response schema (built from the served model), positive
    and negative data, unsupported methods, stateful sequences: zero failures."""
    folder, rows = runs
    with running(create_app(lambda: open_predictor(name, folder))) as url:
        document = httpx.get(url + "/openapi.json").json()
        request = document["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]
        example = document["components"]["schemas"]["PredictRequest"]["example"]
        assert httpx.post(url + "/predict", json=example).status_code == 200  # the documented example works
        if name != "reviews":
            assert request["items"]["required"] == open_predictor(name, folder).features
        assert "/predict/upload" not in document["paths"]  # tables and texts take no file uploads
        finished = schemathesis(url, folder, 25)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
