"""The forecast task's wire format: one row per item, as in the table it was trained on.

POST /predict with rows to forecast (from the stored history):

    {"inputs": [{"store": "north", "month": "2024-01-01"}, {"store": "north", "month": "2024-02-01"}]}

or with the history in the request too (rows that carry the target, e.g. "sales": 41.5, are history and answer
null; they replace the stored history of their series):

    {"inputs": [{"store": "east", "month": "2023-11-01", "sales": 40.1}, …, {"store": "east", "month": "2024-01-01"}]}

Each answer: {"value": 52.3, "quantiles": {"q0.1": 47.0, …, "q0.9": 58.1}} (null for history rows). Known covariates
are columns of the rows to forecast. Open Inference Protocol: one input tensor per column (BYTES for keys and
timestamps), outputs "value" (FP64, one per row) and "quantiles" (FP64, rows x levels, the levels in the order of
the model's quantiles)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..codec import Codec, _number


class ForecastCodec(Codec):
    whole_requests = True  # history rows of one request must never reach another request's forecast

    def column_type(self, column: str) -> str:
        return "datetime" if column == self.features[0] else self.signature.column_types.get(column, "categorical")

    def records(self, items: list[Any]) -> list[dict[str, Any]]:
        rows = super().records(items)
        for row, item in zip(rows, items):  # other scalar keys travel along: the target of history rows
            for key, value in item.items():
                if key not in row and (value is None or isinstance(value, (int, float, str))):
                    row[key] = value
        return rows

    def example_records(self, rows: int) -> list[dict[str, Any]]:
        return []  # nothing to warm up: the stored forecast is a lookup, a refit needs real series

    def answers(self, prediction) -> list[dict[str, Any]]:
        names = list(prediction.columns)
        return [{"value": _number(value) if np.isfinite(value) else None,
                 "quantiles": {name: _number(prediction.columns[name][row]) for name in names}}
                for row, value in enumerate(np.asarray(prediction.values, dtype=float))]

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": "value", "datatype": "FP64", "shape": [-1]},
                {"name": "quantiles", "datatype": "FP64", "shape": [-1, -1]}]

    def output_tensors(self, answers: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[Any]]]:
        rows = len(answers)
        names = list(answers[0]["quantiles"]) if answers else []
        return {"value": ([rows], [answer["value"] for answer in answers]),
                "quantiles": ([rows, len(names)], [answer["quantiles"][name] for answer in answers
                                                   for name in names])}

    def item_schema(self) -> dict[str, Any]:
        schema = super().item_schema()
        schema["description"] = ("one row: the series' key columns and the timestamp to forecast (with known "
                                 "covariates); a row that also carries the target is history")
        return schema

    def answer_schema(self) -> dict[str, Any]:
        number = {"type": ["number", "null"]}
        return {"type": "object", "required": ["value", "quantiles"],
                "properties": {"value": number,
                               "quantiles": {"type": "object", "additionalProperties": number}}}
