"""The detection task's wire format: images in (the shared image cells of `modeldojo.tasks.image_codec`: base64
or a data: URL in JSON, the file's raw bytes in a binary BYTES tensor, or a multipart upload), boxes out.

POST /predict answers one object per image:

    {"predictions": [{"boxes": [{"class": "cat", "score": 0.91, "box": [12.0, 30.5, 200.0, 180.0]}], "count": 1},
                     {"boxes": [], "count": 0}]}

`box` is [x_min, y_min, x_max, y_max] in pixels of the image as sent (exclusive right / bottom edges), and the
boxes come best score first.

Open Inference Protocol (KServe v2). An image's detections are ragged (0…n boxes), which no dense tensor holds,
so each row's boxes travel as one BYTES element: the JSON list above, as a string, beside an INT64 count.

    POST /v2/models/{name}/infer
    {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                 "data": ["iVBORw0KGgo…", "data:image/jpeg;base64,/9j/4AAQ…"]}]}

(or, with the binary extension, the files' own bytes as the BYTES elements: 4-byte little-endian length, then
the bytes, per image, and "parameters": {"binary_data_size": …} on the input)

    {"model_name": "…", "model_version": "1",
     "outputs": [{"name": "detections", "datatype": "BYTES", "shape": [2],
                  "data": ["[{\"class\": \"cat\", \"score\": 0.91, \"box\": [12.0, 30.5, 200.0, 180.0]}]", "[]"]},
                 {"name": "count", "datatype": "INT64", "shape": [2], "data": [1, 0]}]}

A client parses each "detections" element with json.loads; "count" lets it size or filter rows without
parsing."""
from __future__ import annotations

import json
import math
from typing import Any

from ..image_codec import ImageCodec


class DetectionCodec(ImageCodec):
    """Image cells in; per image {"boxes": [{"class", "score", "box"}…], "count"} out."""

    # -- answers -------------------------------------------------------------------------
    def answers(self, prediction) -> list[dict[str, Any]]:
        """`prediction.values`: one JSON string per image, a list of {"class", "score", "box"} (a list already
        parsed is taken too). Raises ValueError on a malformed detection: the model's bug, not the client's."""
        out = []
        for row, value in enumerate(prediction.values):
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            found = json.loads(value) if isinstance(value, str) else value
            if not isinstance(found, (list, tuple)):
                raise ValueError(f"prediction row {row}: expected a list of detections, got {type(found).__name__}")
            boxes = [_detection(item, f"prediction row {row}[{index}]") for index, item in enumerate(found)]
            boxes.sort(key=lambda box: -box["score"])  # stable: the model's order among equal scores
            out.append({"boxes": boxes, "count": len(boxes)})
        return out

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": "detections", "datatype": "BYTES", "shape": [-1]},
                {"name": "count", "datatype": "INT64", "shape": [-1]}]

    def output_tensors(self, answers: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[Any]]]:
        rows = len(answers)
        return {"detections": ([rows], [json.dumps(answer["boxes"], ensure_ascii=False, allow_nan=False)
                                        for answer in answers]),
                "count": ([rows], [int(answer["count"]) for answer in answers])}

    def answer_schema(self) -> dict[str, Any]:
        name: dict[str, Any] = {"type": "string", "description": "the object's class"}
        if self.classes:
            name["enum"] = list(self.classes)
        box = {"type": "object", "required": ["class", "score", "box"], "additionalProperties": False,
               "properties": {
                   "class": name,
                   "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "the model's confidence"},
                   "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                           "description": "[x_min, y_min, x_max, y_max] in pixels of the image as sent "
                                          "(exclusive right / bottom edges)"}}}
        return {"type": "object", "required": ["boxes", "count"], "additionalProperties": False,
                "properties": {"boxes": {"type": "array", "items": box, "description": "best score first"},
                               "count": {"type": "integer", "minimum": 0, "description": "len(boxes)"}}}


def _detection(item: Any, where: str) -> dict[str, Any]:
    """One model detection → {"class": str, "score": float, "box": [4 floats]}, all finite."""
    if not isinstance(item, dict) or not {"class", "score", "box"} <= item.keys():
        raise ValueError(f"{where}: expected an object with 'class', 'score' and 'box'")
    score = float(item["score"])
    box = item["box"]
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ValueError(f"{where}.box: expected [x_min, y_min, x_max, y_max]")
    box = [float(number) for number in box]
    if not all(map(math.isfinite, [score, *box])):
        raise ValueError(f"{where}: a score or box coordinate is not a finite number")
    return {"class": str(item["class"]), "score": score, "box": box}
