"""How a served model's requests are read and its answers written: the task's wire format.

Serving never branches on a task's name: it asks the task's `codec` (a class attribute of every Task) to decode
JSON items and tensor elements into the records its model predicts, to encode the answers as JSON and as Open
Inference Protocol tensors, and to describe both in JSON Schema for the served model's OpenAPI document. This
base class is the table's format (one record per row, one value per column, typed by the column's kind); text
and image tasks subclass it for their cells. A new task brings its own codec and serving stays as it is."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

NUMERIC_DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                     "FP32", "FP64")
NULL = {"type": "null"}


@dataclass
class Signature:
    """What a served model takes and gives, read from its export manifest or its run."""

    name: str
    task: str
    kind: str
    classes: list[str] | None
    features: list[str]
    column_types: dict[str, str] = field(default_factory=dict)  # column → numeric / categorical / datetime


class Codec:
    """The table's wire format. Subclasses override the per-cell methods (`cell`, `cell_schema`, …)."""

    heavy: ClassVar[bool] = False  # decoding is real work (images): the server runs it off the event loop
    max_body_bytes: ClassVar[int | None] = None  # a larger default request body than the server's (photos)
    timeout_s: ClassVar[float | None] = None  # a longer default answer deadline than the server's (generation)
    uploads: ClassVar[bool] = False  # takes multipart file uploads (POST /predict/upload)
    strings: ClassVar[bool] = False  # an input item may be a bare string when the model has one column
    # A request's rows depend on each other (a forecast's history rows): each request runs in a model call of its
    # own, never batched with another client's rows.
    whole_requests: ClassVar[bool] = False

    @classmethod
    def add_routes(cls, app, ready_predictor, settings) -> None:
        """Routes of the task's own protocol beside /predict and /v2 (the server calls this when it knows the
        task before loading). `ready_predictor()` returns the loaded Predictor or raises 503."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.features = list(signature.features)
        self.kind, self.classes = signature.kind, [str(name) for name in signature.classes or []]

    # -- one cell ------------------------------------------------------------------------
    def column_type(self, column: str) -> str:
        return self.signature.column_types.get(column, "categorical")

    def cell(self, column: str, value: Any, where: str, budget: dict[str, int]) -> Any:
        """A JSON value (or a tensor element: a number, or bytes from a binary BYTES tensor) → the model's
        cell. Raises ValueError naming `where`. `budget` is shared by one request's cells (image pixels)."""
        if isinstance(value, bytes):
            value = _text(value, where)
        # Any scalar, read as training read the file's cells: text that is not a number is a missing number,
        # an unseen category is an unknown one. Lists and objects are refused.
        if value is not None and not isinstance(value, (str, int, float, bool, np.number)):
            raise ValueError(f"{where}: expected a number, a string or null, got {_shown(value)}")
        return value

    def cell_schema(self, column: str) -> dict[str, Any]:
        description = {"numeric": "a number (true = 1; text that is not a number counts as missing, as in "
                                  "training)", "datetime": "a date or time, e.g. 2024-05-01 (unreadable = missing)"}
        return {"type": ["string", "number", "boolean", "null"],
                "description": description.get(self.column_type(column), "a category (unseen ones are allowed)")
                + "; null when missing"}

    def cell_example(self, column: str) -> Any:
        return {"numeric": 1.0, "datetime": "2024-05-01"}.get(self.column_type(column), "a")

    def tensor_datatypes(self, column: str) -> tuple[str, ...]:
        """The OIP datatypes this column's input tensor may have; the first is the one metadata names."""
        kind = self.column_type(column)
        if kind == "numeric":
            return ("FP64",) + tuple(name for name in NUMERIC_DATATYPES if name != "FP64")
        if kind == "datetime":
            return ("BYTES",)
        return ("BYTES",) + NUMERIC_DATATYPES

    # -- requests ------------------------------------------------------------------------
    def records(self, items: list[Any]) -> list[dict[str, Any]]:
        """POST /predict `inputs` (or rows read from tensors) → one record per row. Raises ValueError."""
        budget = {"pixels": 0}  # per request: requests are decoded concurrently on a thread pool
        out = []
        for index, item in enumerate(items):
            if isinstance(item, str) and self.strings and len(self.features) == 1:
                item = {self.features[0]: item}
            if not isinstance(item, dict):
                raise ValueError(f"inputs[{index}]: expected an object with the columns {', '.join(self.features)}"
                                 + (" (or a string)" if self.strings and len(self.features) == 1 else "")
                                 + f", got {_shown(item)}")
            missing = [column for column in self.features if column not in item]
            if missing:
                raise ValueError(f"inputs[{index}]: missing column(s) {', '.join(map(repr, missing))}")
            out.append({column: self.cell(column, item[column], f"inputs[{index}].{column}", budget)
                        for column in self.features})
        return out

    def example_records(self, rows: int) -> list[dict[str, Any]]:
        """Records to warm the model up with (its first calls allocate memory and pick kernels)."""
        return [{column: None for column in self.features} for _ in range(rows)]

    def upload_records(self, blobs: list[tuple[bytes, str]]) -> list[dict[str, Any]]:
        raise ValueError(f"a {self.signature.task} model takes JSON: POST /predict")

    # -- answers -------------------------------------------------------------------------
    def answers(self, prediction) -> list[dict[str, Any]]:
        """One JSON object per row: {"value"} for regression, {"label", "probabilities"} for classifiers."""
        if self.kind == "regression":
            return [{"value": _number(value)} for value in prediction.values]
        classes = [str(name) for name in prediction.classes]
        return [{"label": _plain(label), "probabilities": dict(zip(classes, map(_number, row)))}
                for label, row in zip(prediction.values, prediction.probabilities)]

    def outputs(self) -> list[dict[str, Any]]:
        """The OIP output tensors: name, datatype, shape (-1 = rows)."""
        if self.kind == "regression":
            return [{"name": "value", "datatype": "FP64", "shape": [-1]}]
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(self.classes)]}]

    def output_tensors(self, answers: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[Any]]]:
        """Output name → (shape, row-major data)."""
        rows = len(answers)
        if self.kind == "regression":
            return {"value": ([rows], [answer["value"] for answer in answers])}
        return {"label": ([rows], [str(answer["label"]) for answer in answers]),
                "probabilities": ([rows, len(self.classes)],
                                  [answer["probabilities"][name] for answer in answers for name in self.classes])}

    # -- the web app's Try-it form (dojo app) ------------------------------------------------
    def form_fields(self) -> list[dict[str, Any]]:
        """One field per input: name and widget (number, date, text, textarea, image, chat). The web app draws
        the form from this and sends what the user typed back through `records` (or `upload_records`)."""
        widgets = {"numeric": "number", "datetime": "date"}
        return [{"name": column, "widget": widgets.get(self.column_type(column), "text")} for column in self.features]

    # -- the OpenAPI document ------------------------------------------------------------
    def item_schema(self) -> dict[str, Any]:
        """JSON Schema of one POST /predict input item, exactly what `records` accepts."""
        row = {"type": "object", "required": list(self.features),
               "properties": {column: self.cell_schema(column) for column in self.features},
               "description": "one row: the model's columns (other keys are ignored)"}
        if self.strings and len(self.features) == 1:
            return {"anyOf": [self.cell_schema(self.features[0]), row]}
        return row

    def item_example(self) -> Any:
        return {column: self.cell_example(column) for column in self.features}

    def answer_schema(self) -> dict[str, Any]:
        number = {"type": ["number", "null"]}  # null: NaN, which JSON cannot carry
        if self.kind == "regression":
            return {"type": "object", "required": ["value"], "properties": {"value": number}}
        return {"type": "object", "required": ["label", "probabilities"],
                "properties": {"label": {"type": ["string", "number", "boolean"]},
                               "probabilities": {"type": "object", "required": self.classes,
                                                 "properties": {name: number for name in self.classes}}}}


def _plain(value: Any) -> Any:
    """numpy scalars → Python values for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _number(value: Any) -> float | None:
    """A float for JSON; NaN / ±inf (which JSON cannot carry) as null."""
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: not UTF-8 text ({error})") from None


def _shown(value: Any) -> str:
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else \
        f"{type(value).__name__} {str(value)[:40]!r}"
