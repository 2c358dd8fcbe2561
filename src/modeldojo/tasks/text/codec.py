"""The text task's wire format: a row is its text column(s) as strings; one column may come as a bare string."""
from __future__ import annotations

from typing import Any, ClassVar

from ..codec import Codec, _shown, _text


class TextCodec(Codec):
    strings: ClassVar[bool] = True

    def form_fields(self) -> list[dict[str, Any]]:
        return [{"name": column, "widget": "textarea"} for column in self.features]

    def cell(self, column: str, value: Any, where: str, budget: dict[str, int]) -> Any:
        if isinstance(value, bytes):  # a binary BYTES tensor element
            return _text(value, where)
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {_shown(value)}")
        return value

    def cell_schema(self, column: str) -> dict[str, Any]:
        return {"type": "string", "description": f"the text of column {column!r}"}

    def cell_example(self, column: str) -> Any:
        return "Great coffee, arrived fast."

    def tensor_datatypes(self, column: str) -> tuple[str, ...]:
        return ("BYTES",)

    def example_records(self, rows: int) -> list[dict[str, Any]]:
        return [{column: "a short text to warm the model up" for column in self.features} for _ in range(rows)]

    def item_example(self) -> Any:
        return self.cell_example(self.features[0]) if len(self.features) == 1 else super().item_example()
