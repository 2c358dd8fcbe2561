"""OpenAI-compatible routes for a served chat model: POST /v1/chat/completions (JSON or server-sent events),
GET /v1/models and GET /v1/models/{id} — what the `openai` client and the tools built on it call.

    add_routes(app, get_engine, settings, model_name)

* `get_engine()` returns the ChatEngine, or None / raises (an HTTPException(503) while the model loads): the
  routes then answer 503 with Retry-After. `model_name()` is the id the routes report and list.
* `settings` is read at request time for `timeout_s` (seconds until the answer, or its first streamed piece;
  beyond it 504 and the generation is stopped) and `retry_after_s` (the Retry-After of 429 and 503).
* Every error of these routes, request validation included, is OpenAI's shape
  `{"error": {"message", "type", "param", "code"}}` with the status OpenAI uses: 400 for an invalid request
  (where FastAPI would say 422), 404, 429 (the engine's line is full), 500, 503, 504. The conversion is done
  by the routes' own APIRoute class, so it holds whatever exception handlers the app has. (The app's
  middlewares answer 401 and 413 before a route runs, in the app's own shape; the client still raises its
  AuthenticationError / APIStatusError for them.)
* Generation runs on the threadpool, never on the event loop; a stream is iterated there piece by piece.
  A client that disconnects mid-stream stops its generation at the next token.

Where these differ from OpenAI: `model` in a request is not checked (any name gets the one served model;
responses carry its id), `n` must be 1, content parts must be text (joined with newlines), role "developer"
is taken as "system", and request fields without meaning here (tools, logprobs, penalties…) are ignored.
An omitted temperature is 1.0, as OpenAI documents; send 0 for greedy (deterministic) answers.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Union

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from ...errors import DataError
from .engine import Busy, ChatEngine, ChatStream, ContextLengthExceeded
from .generation import Answer

log = logging.getLogger("uvicorn.error")

DEFAULT_TEMPERATURE = 1.0  # OpenAI's documented default
MAX_STOP = 4  # stop sequences per request, as OpenAI allows
OWNER = "modeldojo"


# -- request and response bodies (also the OpenAPI schema) ---------------------------------------------

class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(description="system, user or assistant (developer is taken as system)")
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; fields it has that mean nothing here are accepted and ignored."""
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="not checked: the served model answers")
    messages: list[ChatMessage]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="wins over max_tokens")
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy; omitted: 1")
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Union[str, list[str], None] = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, description="must be 1")
    seed: int | None = None
    user: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AnswerMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AnswerMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class APIError(Exception):
    """An error these routes answer in OpenAI's shape."""

    TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             413: "invalid_request_error", 429: "requests"}

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status, headers=self.headers)


class OpenAIRoute(APIRoute):
    """Answers every failure of its route in OpenAI's error shape, whatever the app's exception handlers say."""

    def get_route_handler(self):
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except APIError as error:
                return error.response()
            except RequestValidationError as error:
                param, message = _problem(list(error.errors()))
                return APIError(400, message, param=param).response()
            except HTTPException as error:
                headers = dict(error.headers or {})
                return APIError(error.status_code, str(error.detail), headers=headers or None).response()

        return route


ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in {
    400: "invalid request (the message says what and where)", 404: "unknown model",
    429: "the model is busy: retry after Retry-After seconds", 500: "internal error",
    503: "the model is loading", 504: "no answer within the server's timeout"}.items()}


# -- the routes --------------------------------------------------------------------------------------

def add_routes(app: FastAPI, get_engine: Callable[[], ChatEngine | None], settings,
               model_name: Callable[[], str]) -> None:
    """Add the OpenAI routes to `app` (see the module's docstring)."""
    router = APIRouter(route_class=OpenAIRoute, tags=["openai"])
    created = int(time.time())

    def retry_after() -> dict[str, str]:
        return {"Retry-After": str(getattr(settings, "retry_after_s", 1))}

    def engine() -> ChatEngine:
        try:
            found = get_engine()
        except HTTPException as error:
            headers = {**retry_after(), **(error.headers or {})} if error.status_code == 503 else error.headers
            raise APIError(error.status_code, str(error.detail), headers=headers) from None
        except Exception as error:  # noqa: BLE001 - a model still loading (or failed): not ready
            raise APIError(503, f"model not ready: {error}", headers=retry_after()) from None
        if found is None:
            raise APIError(503, "model loading", headers=retry_after())
        return found

    def failure(error: BaseException) -> APIError:
        """An engine exception as the answer to send."""
        if isinstance(error, Busy):
            return APIError(429, str(error), code="rate_limit_exceeded", headers=retry_after())
        if isinstance(error, TimeoutError):
            return APIError(504, f"no answer within {settings.timeout_s:g} s", code="timeout")
        if isinstance(error, ContextLengthExceeded):
            return APIError(400, str(error), param="messages", code="context_length_exceeded")
        if isinstance(error, (ValueError, DataError)):
            text = str(error)
            return APIError(400, text, param="messages" if text.startswith("messages") else None)
        log.error("chat completion failed", exc_info=error)
        return APIError(500, f"internal error: {type(error).__name__}")

    @router.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_card(model_name(), created)]}

    @router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=ERRORS)
    async def get_model(model_id: str) -> dict[str, Any]:
        name = model_name()
        if model_id != name:
            raise APIError(404, f"The model '{model_id}' does not exist; this server serves '{name}'",
                           param="model", code="model_not_found")
        return _card(name, created)

    @router.post("/v1/chat/completions", response_model=ChatCompletion, responses={
        **ERRORS, 200: {"description": "a chat.completion object, or with stream=true server-sent events of "
                                       "chat.completion.chunk objects ending with `data: [DONE]`",
                        "content": {"text/event-stream": {}}}})
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        chat = engine()
        options = _options(body)
        messages = options.pop("messages")
        name, ident, now = model_name(), f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            try:
                answer = await run_in_threadpool(chat.complete, messages, **options,
                                                 timeout=settings.timeout_s)
            except Exception as error:  # noqa: BLE001 - each becomes its status
                raise failure(error) from None
            return {"id": ident, "object": "chat.completion", "created": now, "model": name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                                 "finish_reason": answer.finish_reason, "logprobs": None}],
                    "usage": _usage(answer)}

        # Streamed: everything that can fail with a status (validation, busy, timeout) fails before the
        # first byte — the turn and the first piece are awaited here, then the 200 and the events follow.
        try:
            stream = await run_in_threadpool(chat.stream, messages, **options,
                                             timeout=settings.timeout_s)
        except Exception as error:  # noqa: BLE001
            raise failure(error) from None
        try:
            first = await run_in_threadpool(_next_piece, stream)
        except BaseException as error:
            with anyio.CancelScope(shield=True):  # a cancelled request must still free the model
                await run_in_threadpool(stream.close)
            if isinstance(error, Exception):
                raise failure(error) from None
            raise
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(stream, first, failure, ident, now, name, usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(router)


# -- helpers -----------------------------------------------------------------------------------------

_END = object()


def _next_piece(stream: ChatStream):
    """next(stream), or _END (a StopIteration cannot cross into a future)."""
    return next(stream, _END)


async def _events(stream: ChatStream, first, failure, ident: str, created: int, model: str,
                  include_usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        if include_usage:
            body.setdefault("usage", None)
        return _sse(body)

    try:
        yield chunk({"role": "assistant", "content": ""})
        piece = first
        while piece is not _END:
            if piece:
                yield chunk({"content": piece})
            piece = await run_in_threadpool(_next_piece, stream)
        answer = stream.answer
        yield chunk({}, answer.finish_reason)
        if include_usage:
            yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [], "usage": _usage(answer)})
    except Exception as error:  # noqa: BLE001 - after the 200: told as an error event, which the client raises
        yield _sse(failure(error).body())
    finally:
        with anyio.CancelScope(shield=True):  # also when the client left (cancelled): free the model
            await run_in_threadpool(stream.close)
    yield "data: [DONE]\n\n"


def _sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _options(body: ChatCompletionRequest) -> dict[str, Any]:
    """The request as ChatEngine keywords, or APIError(400) for what the engine cannot do."""
    if body.n not in (None, 1):
        raise APIError(400, f"n must be 1 (one answer per request), got {body.n}", param="n")
    stop = body.stop
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        raise APIError(400, f"at most {MAX_STOP} stop sequences, got {len(stop)}", param="stop")
    messages = []
    for index, message in enumerate(body.messages):
        content = message.content
        if isinstance(content, list):
            kinds = [part.type for part in content if part.type != "text" or part.text is None]
            if kinds:
                raise APIError(400, f"messages[{index}].content: only text parts are supported, got "
                                    f"{kinds[0]!r}", param=f"messages[{index}].content")
            content = "\n".join(part.text for part in content)
        messages.append({"role": "system" if message.role == "developer" else message.role, "content": content})
    return {"messages": messages,
            "max_tokens": body.max_completion_tokens or body.max_tokens,
            "temperature": DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "stop": stop, "seed": body.seed}


def _usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


def _problem(problems: list[dict[str, Any]]) -> tuple[str | None, str]:
    """pydantic's first validation error as (param, message), the param in OpenAI's spelling (messages[0].role)."""
    first = problems[0] if problems else {}
    if first.get("type") == "json_invalid":
        return None, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', 'unreadable')}"
    param = ""
    for part in first.get("loc", ()):
        if part == "body":
            continue
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    message = f"{param or 'body'}: {first.get('msg', 'invalid')}"
    if len(problems) > 1:
        message += f" ({len(problems) - 1} more)"
    return param or None, message
