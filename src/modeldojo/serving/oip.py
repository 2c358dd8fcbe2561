"""KServe Open Inference Protocol v2 (https://kserve.github.io/website/docs/concepts/architecture/data-plane/
v2-protocol), as its clients speak it (tritonclient is tested): health, server and model metadata, and /infer
with one input tensor per model column, rows along the first axis.

- The body is read as JSON whatever its Content-Type (tritonclient sends none).
- The binary tensor data extension: with an `Inference-Header-Content-Length` header the body is that many
  bytes of JSON, then each input's raw bytes in order (`parameters.binary_data_size`); BYTES elements are a
  4-byte little-endian length and the bytes. Outputs come back the same way when the request asks
  (`binary_data_output`, or an output's `binary_data`), as tritonclient does by default.
- Errors are `{"error": "..."}`, which is what the protocol's clients read."""
from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from .. import __version__
from .schemas import InferRequest, InferResponse, ModelMetadata, ModelReady, error_responses, first_problem

HEADER = "inference-header-content-length"
NUMPY_TYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
               "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
RESERVED = {"binary_data_output", "binary_data", "binary_data_size"}  # the extension's own parameters
TAGS = ["open inference protocol"]


def metadata(predictor) -> dict[str, Any]:
    codec = predictor.codec
    inputs = [{"name": column, "datatype": codec.tensor_datatypes(column)[0], "shape": [-1]}
              for column in predictor.features]
    platform = "onnxruntime_onnx" if predictor.backend == "onnx" else f"modeldojo_{predictor.task}"
    return {"name": predictor.name, "versions": ["1"], "platform": platform, "inputs": inputs,
            "outputs": codec.outputs()}


# -- requests ----------------------------------------------------------------------------
def parse(body: bytes, header_length: str | None) -> tuple[InferRequest, list[bytes | None]]:
    """The request and, per input, its binary data (None where the JSON holds it). Raises ValueError."""
    if header_length is not None:
        if not header_length.isdigit() or not 0 < int(header_length) <= len(body):
            raise ValueError(f"Inference-Header-Content-Length {header_length[:20]!r} does not fit a body of "
                             f"{len(body)} bytes")
        header, binary = body[:int(header_length)], body[int(header_length):]
    else:
        header, binary = body, b""
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as error:
        raise ValueError(f"invalid inference request: {first_problem(error.errors())}") from None
    raws, offset = [], 0
    for index, tensor in enumerate(request.inputs):
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise ValueError(f"inputs[{index}] ({tensor.name}): no data and no binary_data_size")
            raws.append(None)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or tensor.data is not None:
            raise ValueError(f"inputs[{index}] ({tensor.name}): binary_data_size must be a whole number of bytes, "
                             "with no JSON data beside it")
        if offset + size > len(binary):
            raise ValueError(f"inputs[{index}] ({tensor.name}): binary_data_size {size} runs past the body's "
                             f"{len(binary)} bytes of binary data")
        raws.append(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise ValueError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return request, raws


def rows_from_tensors(request: InferRequest, raws: list[bytes | None], codec) -> list[dict[str, Any]]:
    """Input tensors → one record per row (cells still to be checked by the codec). Raises ValueError."""
    columns: dict[str, list[Any]] = {}
    for index, (tensor, raw) in enumerate(zip(request.inputs, raws)):
        where = f"inputs[{index}] ({tensor.name})"
        if tensor.name not in codec.features:
            raise ValueError(f"{where}: this model has no input {tensor.name!r}; it takes "
                             f"{', '.join(codec.features)}")
        if tensor.name in columns:
            raise ValueError(f"{where}: input given twice")
        allowed = codec.tensor_datatypes(tensor.name)
        if tensor.datatype not in allowed:
            raise ValueError(f"{where}: datatype {tensor.datatype[:20]!r}; this input takes {', '.join(allowed)}")
        data = _flatten(tensor.data) if raw is None else _from_binary(raw, tensor.datatype, where)
        # Checked before multiplying: a client-chosen shape of huge numbers would make math.prod itself slow.
        if len(tensor.shape) > 2 or any(size < 0 or size > len(data) for size in tensor.shape):
            raise ValueError(f"{where}: shape {tensor.shape[:4]} does not fit {len(data)} values (rows, or rows × 1)")
        if math.prod(tensor.shape) != len(data):
            raise ValueError(f"{where}: shape {tensor.shape} holds {math.prod(tensor.shape)} values, data has "
                             f"{len(data)}")
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            raise ValueError(f"{where}: one value per row expected, shape {tensor.shape}")
        columns[tensor.name] = data
    missing = [column for column in codec.features if column not in columns]
    if missing:
        raise ValueError(f"missing input(s) {', '.join(map(repr, missing))}; this model takes "
                         f"{', '.join(codec.features)}")
    counts = {len(values) for values in columns.values()}
    if len(counts) != 1:
        raise ValueError(f"inputs have different row counts: {sorted(counts)}")
    rows = counts.pop()
    if rows == 0:
        raise ValueError("inputs hold no rows")
    return [{name: values[row] for name, values in columns.items()} for row in range(rows)]


def _flatten(data: list[Any]) -> list[Any]:
    return [value for item in data for value in (_flatten(item) if isinstance(item, list) else [item])]


def _from_binary(raw: bytes, datatype: str, where: str) -> list[Any]:
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ValueError(f"{where}: BYTES data ends inside an element's 4-byte length")
            (length,) = struct.unpack_from("<I", raw, offset)
            if offset + 4 + length > len(raw):
                raise ValueError(f"{where}: a BYTES element of {length} bytes runs past the tensor's data")
            values.append(raw[offset + 4:offset + 4 + length])
            offset += 4 + length
        return values
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise ValueError(f"{where}: {len(raw)} bytes is not a whole number of {datatype} values")
    return np.frombuffer(raw, dtype=dtype).tolist()


# -- answers -----------------------------------------------------------------------------
def response(predictor, request: InferRequest, answers: list[dict[str, Any]], datatypes: dict[str, str]) -> Response:
    """`datatypes`: output name → OIP datatype (the codec's outputs)."""
    codec = predictor.codec
    wanted = {output.name: output for output in request.outputs} if request.outputs else None
    binary_default = bool((request.parameters or {}).get("binary_data_output", False))
    outputs, blobs = [], []
    for name, (shape, data) in codec.output_tensors(answers).items():
        if wanted is not None and name not in wanted:
            continue
        binary = binary_default if wanted is None else \
            bool((wanted[name].parameters or {}).get("binary_data", binary_default))
        output: dict[str, Any] = {"name": name, "datatype": datatypes[name], "shape": shape}
        if binary:
            blobs.append(_to_binary(data, datatypes[name]))
            output["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            output["data"] = data
        outputs.append(output)
    body: dict[str, Any] = {"model_name": predictor.name, "model_version": "1", "outputs": outputs}
    if request.id is not None:
        body["id"] = request.id
    passed = {key: value for key, value in (request.parameters or {}).items() if key not in RESERVED}
    if passed:
        body["parameters"] = passed
    header = json.dumps(body, allow_nan=False).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def _to_binary(data: list[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        encoded = [str(value).encode() for value in data]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    values = [np.nan if value is None else value for value in data]
    return np.asarray(values, dtype=NUMPY_TYPES[datatype]).tobytes()


# -- routes ------------------------------------------------------------------------------
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "binary tensor data extension: Inference-Header-Content-Length "
                                                "bytes of JSON (an InferRequest), then the inputs' raw data"}}}}
INFER_OK = {200: {"description": "outputs (JSON, or JSON then binary data when asked)",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                              "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def add_routes(app: FastAPI, state, ready_predictor, answer, records) -> None:
    def known(name: str, version: str = "1"):
        predictor = ready_predictor()
        if name != predictor.name or version != "1":
            raise HTTPException(404, f"no model {name!r} version {version!r}; this server has "
                                     f"{predictor.name!r} version '1'")
        return predictor

    @app.get("/v2", tags=TAGS, responses=error_responses(401))
    async def server_metadata() -> dict[str, Any]:
        return {"name": "modeldojo", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", tags=TAGS, responses=error_responses(500))
    async def live() -> JSONResponse:
        if state.status == "failed":
            return JSONResponse({"live": False, "error": state.error}, 500)
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready", tags=TAGS, responses=error_responses(401, 503))
    async def ready() -> JSONResponse:
        if state.status != "ready":
            return JSONResponse({"error": f"model {state.status}"}, 503, headers={"Retry-After": "1"})
        return JSONResponse({"ready": True})

    @app.get("/v2/models/{name}", response_model=ModelMetadata, tags=TAGS, responses=error_responses(401, 404, 503))
    @app.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, tags=TAGS,
             responses=error_responses(401, 404, 503))
    async def model_metadata(name: str, version: str = "1") -> dict[str, Any]:
        return metadata(known(name, version))

    @app.get("/v2/models/{name}/ready", response_model=ModelReady, tags=TAGS, responses=error_responses(401, 404, 503))
    @app.get("/v2/models/{name}/versions/{version}/ready", response_model=ModelReady, tags=TAGS,
             responses=error_responses(401, 404, 503))
    async def model_ready(name: str, version: str = "1") -> dict[str, Any]:
        known(name, version)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", tags=TAGS, openapi_extra=INFER_BODY,
              responses={**INFER_OK, **error_responses(400, 401, 404, 413, 429, 503, 504)})
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=TAGS, openapi_extra=INFER_BODY,
              responses={**INFER_OK, **error_responses(400, 401, 404, 413, 429, 503, 504)})
    async def infer(name: str, request: Request, version: str = "1") -> Response:
        predictor = known(name, version)
        body = await request.body()
        try:
            parsed, raws = parse(body, request.headers.get(HEADER))
            wanted = {output.name for output in parsed.outputs or []}
            datatypes = {output["name"]: output["datatype"] for output in predictor.codec.outputs()}
            if wanted - datatypes.keys():
                raise ValueError(f"unknown output(s) {sorted(wanted - datatypes.keys())}; this model has "
                                 f"{sorted(datatypes)}")
            rows = rows_from_tensors(parsed, raws, predictor.codec)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return response(predictor, parsed, await answer(await records(predictor, rows, 400), 400), datatypes)


__all__ = ["add_routes", "metadata", "InferResponse"]
