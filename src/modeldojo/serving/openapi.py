"""The served model's OpenAPI document: FastAPI's, with POST /predict's request, response and example built
from the model's own inputs, classes and outputs (the task's codec describes them), and routes the model does
not take (file uploads for a table) left out. Built once the model is loaded; before that, the generic one."""
from __future__ import annotations

from typing import Any

from fastapi.openapi.utils import get_openapi

from .schemas import InferRequest, InferResponse


def document(app, state, settings) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (InferRequest, InferResponse):  # the /infer routes read their body themselves
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    predictor = state.predictor if state.status == "ready" else None
    if predictor is None:
        return schema  # not cached: the model's own document comes once it is loaded
    codec = predictor.codec
    components["PredictRequest"] = {
        "title": "PredictRequest", "type": "object", "required": ["inputs"], "additionalProperties": False,
        "properties": {"inputs": {"type": "array", "items": codec.item_schema(), "minItems": 1,
                                  "maxItems": settings.max_items,
                                  "description": f"rows for {predictor.name} ({predictor.task}, {predictor.kind})"}},
        "example": {"inputs": [codec.item_example()]}}
    components["PredictResponse"] = {
        "title": "PredictResponse", "type": "object", "required": ["model", "predictions"],
        "properties": {"model": {"type": "string", "const": predictor.name},
                       "predictions": {"type": "array", "items": codec.answer_schema(),
                                       "description": "one answer per input, in order"}}}
    if not codec.uploads:
        schema["paths"].pop("/predict/upload", None)
        components.pop("Body_predict_upload_predict_upload_post", None)
    app.openapi_schema = schema
    return schema
