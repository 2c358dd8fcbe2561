"""The chat task's wire format. POST /predict and the KServe v2 routes take a question (a string) or a
conversation ({"messages": [...]}, ending with the user's turn) and answer {"answer", "finish_reason"}; the
OpenAI-compatible /v1 routes (openai_routes.py) are added to the server for chat models only."""
from __future__ import annotations

import json
from typing import Any, ClassVar

from ..codec import Codec, _shown, _text

ROLES = ("system", "user", "assistant")


def checked_messages(value: Any, where: str) -> list[dict[str, str]]:
    """A conversation from a client, validated: {role, content} turns, ending with the user's. ValueError
    names the turn."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list of {{role, content}} messages, got {_shown(value)}")
    messages = []
    for index, turn in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(turn, dict):
            raise ValueError(f"{here}: expected an object with 'role' and 'content', got {_shown(turn)}")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise ValueError(f"{here}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{here}.content: expected non-empty text")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ValueError(f"{where}: the last message must be the user's (the model answers it), got "
                         f"{messages[-1]['role']!r}")
    return messages


class ChatCodec(Codec):
    strings: ClassVar[bool] = True  # a bare string is one question
    timeout_s: ClassVar[float | None] = 120.0  # a few hundred tokens on a CPU take tens of seconds

    def form_fields(self) -> list[dict[str, Any]]:  # the web app keeps the conversation, sends it as JSON
        return [{"name": column, "widget": "chat"} for column in self.features]

    def cell(self, column: str, value: Any, where: str, budget: dict[str, int]) -> Any:
        if isinstance(value, bytes):  # a BYTES tensor element: a question, or a JSON list of messages
            value = _text(value, where)
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                try:
                    value = json.loads(stripped)
                except json.JSONDecodeError:
                    pass  # a question that happens to start with "["
            if isinstance(value, str):
                if not stripped:
                    raise ValueError(f"{where}: the question is empty")
                value = [{"role": "user", "content": value}]
        return json.dumps(checked_messages(value, where), ensure_ascii=False)

    def cell_schema(self, column: str) -> dict[str, Any]:
        turn = {"type": "object", "required": ["role", "content"],
                "properties": {"role": {"enum": list(ROLES)}, "content": {"type": "string", "minLength": 1}}}
        return {"anyOf": [{"type": "string", "minLength": 1, "description": "a question"},
                          {"type": "array", "items": turn, "minItems": 1,
                           "description": "a conversation ending with the user's turn"}]}

    def cell_example(self, column: str) -> Any:
        return "Do I need a permit to replace my windows?"

    def tensor_datatypes(self, column: str) -> tuple[str, ...]:
        return ("BYTES",)

    def example_records(self, rows: int) -> list[dict[str, Any]]:
        # One short question whatever `rows`: warming up a generator on a full batch costs seconds, and the
        # first call's allocations are what the warm-up is for.
        return [{self.features[0]: json.dumps([{"role": "user", "content": "Hello"}])}]

    def item_example(self) -> Any:
        return self.cell_example(self.features[0])

    # -- answers -------------------------------------------------------------------------
    def answers(self, prediction) -> list[dict[str, Any]]:
        reasons = prediction.notes.get("finish_reasons") or ["stop"] * len(prediction.values)
        return [{"answer": str(text), "finish_reason": reason} for text, reason in zip(prediction.values, reasons)]

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": "answer", "datatype": "BYTES", "shape": [-1]},
                {"name": "finish_reason", "datatype": "BYTES", "shape": [-1]}]

    def output_tensors(self, answers: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[Any]]]:
        rows = len(answers)
        return {"answer": ([rows], [answer["answer"] for answer in answers]),
                "finish_reason": ([rows], [answer["finish_reason"] for answer in answers])}

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "object", "required": ["answer", "finish_reason"],
                "properties": {"answer": {"type": "string"},
                               "finish_reason": {"enum": ["stop", "length"],
                                                 "description": "stop: the model ended its turn; length: it hit "
                                                                "the token limit"}}}

    # -- more routes -----------------------------------------------------------------------
    @classmethod
    def add_routes(cls, app, ready_predictor, settings) -> None:
        """POST /v1/chat/completions and GET /v1/models (OpenAI's API), on the model the server loads — a run's
        own or an export's: one model answers both /predict and /v1."""
        from .openai_routes import add_routes

        def engine():
            return engine_of(ready_predictor().model, settings)

        add_routes(app, engine, settings, lambda: ready_predictor().name)


_engines: dict[int, Any] = {}


def engine_of(model, settings):
    """The ChatEngine of a served model (a run's Model or an ExportedModel), made once."""
    key = id(model)
    if key not in _engines:
        from .engine import ChatEngine

        runtime = getattr(model, "_runtime", None)  # an export folder's runtime holds its model parts
        if runtime is not None:
            parts = runtime.engine_parts
        else:
            task = model._fitted()
            parts = (task.model, task.tokenizer, task.template)
        config = getattr(model, "meta", {}).get("config", {}) if runtime is None else model.manifest.get("config", {})
        _engines[key] = ChatEngine(*parts, default_max_new_tokens=(config.get("evaluate") or {}).get(
            "max_new_tokens", 256), max_waiting=max(1, min(settings.max_queue, 32)),
            system_prompt=(config.get("data") or {}).get("system_prompt"))
    return _engines[key]
