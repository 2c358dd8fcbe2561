"""Request and response bodies (pydantic): they are the OpenAPI schema the docs and schemathesis read."""
from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """The generic shape; the served model's OpenAPI document replaces it with the model's own columns."""
    model_config = ConfigDict(extra="forbid")
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
    data: list[Any] | None = None  # absent when the tensor travels as binary data (parameters.binary_data_size)
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
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
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


class ModelReady(BaseModel):
    name: str
    ready: bool


class ErrorMessage(BaseModel):
    """The Open Inference Protocol's error body (what its clients read)."""
    error: str


class ErrorDetail(BaseModel):
    """The error body of the other routes."""
    detail: str


REASONS = {400: "invalid request (the message says what and where)", 401: "missing or invalid bearer token",
           404: "unknown model or version", 413: "request body over --max-body-bytes",
           422: "invalid inputs (the message names the item and column)", 429: "queue full: retry after a moment",
           500: "the model failed to load", 503: "not ready: loading or draining", 504: "no answer within --timeout"}


def error_responses(*statuses: int, body: type[BaseModel] = ErrorMessage) -> dict[int, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the body the server sends."""
    return {status: {"model": body, "description": REASONS[status]} for status in statuses}


def first_problem(problems: list[dict[str, Any]], where: str = "body") -> str:
    """pydantic's (or FastAPI's) validation errors as one line: where and what of the first, and how many more."""
    first = problems[0] if problems else {}
    place = ".".join(str(part) for part in first.get("loc", ())) or where
    return f"{place}: {first.get('msg', 'invalid')}" + (f" ({len(problems) - 1} more)" if len(problems) > 1 else "")
