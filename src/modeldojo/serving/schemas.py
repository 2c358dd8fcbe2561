"""Request and response bodies (pydantic): they are the OpenAPI schema the docs and schemathesis read."""
from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"inputs": ["Great coffee, arrived fast."]},
        {"inputs": [{"size": 120.5, "rooms": 3, "city": "north", "built": "2004-05-01"}]}]})
    inputs: list[Union[str, dict[str, Any]]] = Field(
        min_length=1, description="Rows to predict: objects with the model's columns (tables), strings (text "
                                  "with one column), base64 strings (images)")


class PredictResponse(BaseModel):
    model: str
    predictions: list[dict[str, Any]] = Field(
        description='Per row: {"label", "probabilities"} for classifiers, {"value"} for regression')


class InferInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int] = Field(min_length=1)
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """KServe Open Inference Protocol v2: one tensor per input column, rows along the first axis."""
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[InferOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
