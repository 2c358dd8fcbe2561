"""KServe Open Inference Protocol v2 routes (https://kserve.github.io/website/docs/concepts/architecture/
data-plane/v2-protocol): health, model metadata and /infer, with one input tensor per model column."""
from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from .. import __version__
from .schemas import InferRequest, InferResponse, ModelMetadata

COLUMN_TYPES = {"numeric": "FP64", "categorical": "BYTES", "datetime": "BYTES"}


def output_names(predictor) -> set[str]:
    return {"value"} if predictor.kind == "regression" else {"label", "probabilities"}


def metadata(predictor) -> dict[str, Any]:
    inputs = [{"name": column, "datatype": COLUMN_TYPES.get(predictor.column_types.get(column), "BYTES"),
               "shape": [-1]} for column in predictor.features]
    if predictor.kind == "regression":
        outputs = [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    else:
        outputs = [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                   {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(predictor.classes or [])]}]
    platform = "onnxruntime_onnx" if predictor.backend == "onnx" else f"modeldojo_{predictor.task}"
    return {"name": predictor.name, "versions": ["1"], "platform": platform, "inputs": inputs, "outputs": outputs}


def rows_from_tensors(request: InferRequest) -> list[dict[str, Any]]:
    """Input tensors (rows along axis 0, row-major data) → one record per row. Raises ValueError."""
    columns: dict[str, list[Any]] = {}
    for index, tensor in enumerate(request.inputs):
        data = [value for item in tensor.data for value in (item if isinstance(item, list) else [item])]
        # Checked before multiplying: a client-chosen shape of huge numbers would make math.prod itself slow.
        if len(tensor.shape) > 2 or any(size < 0 or size > len(data) for size in tensor.shape):
            raise ValueError(f"inputs[{index}] ({tensor.name}): shape {tensor.shape[:4]} does not fit "
                             f"{len(data)} values (rows, or rows × 1)")
        values = math.prod(tensor.shape)
        if values != len(data):
            raise ValueError(f"inputs[{index}] ({tensor.name}): shape {tensor.shape} holds {values} values, "
                             f"data has {len(data)}")
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            raise ValueError(f"inputs[{index}] ({tensor.name}): one value per row expected, shape {tensor.shape}")
        if tensor.name in columns:
            raise ValueError(f"inputs[{index}]: input {tensor.name!r} given twice")
        columns[tensor.name] = data
    counts = {len(values) for values in columns.values()}
    if len(counts) != 1:
        raise ValueError(f"inputs have different row counts: {sorted(counts)}")
    rows = counts.pop()
    if rows == 0:
        raise ValueError("inputs hold no rows")
    return [{name: values[row] for name, values in columns.items()} for row in range(rows)]


def tensors_from_answers(predictor, answers: list[dict[str, Any]], wanted: set[str] | None) -> list[dict]:
    rows = len(answers)
    if predictor.kind == "regression":
        outputs = [{"name": "value", "shape": [rows], "datatype": "FP64", "data": [a["value"] for a in answers]}]
    else:
        classes = [str(name) for name in predictor.classes]
        outputs = [{"name": "label", "shape": [rows], "datatype": "BYTES", "data": [str(a["label"]) for a in answers]},
                   {"name": "probabilities", "shape": [rows, len(classes)], "datatype": "FP64",
                    "data": [a["probabilities"][name] for a in answers for name in classes]}]
    return [output for output in outputs if wanted is None or output["name"] in wanted]


def add_routes(app: FastAPI, state, ready_predictor, answer, records) -> None:
    def known(name: str):
        predictor = ready_predictor()
        if name != predictor.name:
            raise HTTPException(404, f"no model {name!r}; this server has {predictor.name!r}")
        return predictor

    @app.get("/v2", tags=["open inference protocol"])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "modeldojo", "version": __version__, "extensions": []}

    @app.get("/v2/health/live", tags=["open inference protocol"])
    async def live() -> JSONResponse:
        if state.status == "failed":
            return JSONResponse({"live": False, "error": state.error}, 500)
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready", tags=["open inference protocol"])
    async def ready() -> JSONResponse:
        if state.status != "ready":
            return JSONResponse({"ready": False, "status": state.status}, 503, headers={"Retry-After": "1"})
        return JSONResponse({"ready": True})

    @app.get("/v2/models/{name}", response_model=ModelMetadata, tags=["open inference protocol"])
    async def model_metadata(name: str) -> dict[str, Any]:
        return metadata(known(name))

    @app.get("/v2/models/{name}/ready", tags=["open inference protocol"])
    async def model_ready(name: str) -> dict[str, Any]:
        known(name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", response_model=InferResponse, tags=["open inference protocol"],
              responses={404: {"description": "unknown model"}, 422: {"description": "invalid tensors"},
                         429: {"description": "queue full"}, 503: {"description": "not ready"},
                         504: {"description": "timed out"}})
    async def infer(name: str, body: InferRequest) -> dict[str, Any]:
        predictor = known(name)
        wanted = {output.name for output in body.outputs} if body.outputs else None
        available = output_names(predictor)  # not metadata(): that lists every column, per request
        if wanted and wanted - available:
            raise HTTPException(422, f"unknown output(s) {sorted(wanted - available)}; this model has "
                                     f"{sorted(available)}")
        try:
            rows = rows_from_tensors(body)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        answers = await answer(await records(predictor, rows))
        return {"model_name": predictor.name, "model_version": "1", "id": body.id,
                "outputs": tensors_from_answers(predictor, answers, wanted)}
