"""The HTTP API: POST /predict, the KServe Open Inference Protocol v2 routes, GET /metrics, OpenAPI docs.

States: loading (live, not ready) → ready (after the model is loaded and warmed up) → draining (SIGTERM:
not ready, new predictions 503, in-flight ones finish) — or failed (the model could not load: liveness 500,
so an orchestrator restarts it)."""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from .. import __version__
from . import oip, openapi
from ..errors import DataError
from .batching import Closed, MicroBatcher, QueueFull
from .guards import BearerAuth, BodyLimit, Measure, error_body
from .metrics import CONTENT_TYPE, Metrics
from .predictor import Predictor
from .schemas import ErrorDetail, PredictRequest, PredictResponse, error_responses, first_problem

log = logging.getLogger("uvicorn.error")  # printed in uvicorn's format, beside its own lines


@dataclass
class Settings:
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 256  # requests waiting, per worker process
    timeout_s: float = 10.0  # from arrival to answer; beyond it 504
    max_body_bytes: int = 1 << 20
    max_items: int = 256  # rows in one request
    api_key: str | None = None
    retry_after_s: int = 1
    log_predictions: str | None = None  # a folder: every request logged there, masked (prediction_log.py)
    log_mask_names: bool = False  # also person names (needs an installed spaCy model; ~15 ms a text cell)
    log_sample_rate: float = 1.0


class State:
    def __init__(self) -> None:
        self.status, self.error = "loading", None
        self.stopping = False  # set once by SIGTERM / shutdown, from any state; a load finishing later stays unready
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.log = None  # prediction_log.PredictionLog when --log-predictions is given

    def begin_drain(self) -> None:
        self.stopping = True
        if self.status in ("ready", "loading"):
            self.status = "draining"
            log.info("draining: readiness is now 503; in-flight requests finish")

    def crashed(self, error: BaseException) -> None:
        self.status, self.error = "failed", f"batcher: {type(error).__name__}: {error}"


def create_app(load: Callable[[], Predictor], settings: Settings | None = None, task: str | None = None) -> FastAPI:
    """`load` builds the predictor (on a thread, after startup, so liveness answers while a model loads);
    `task` (known before loading) adds that task's own routes (its codec's add_routes)."""
    settings = settings or Settings()
    state, metrics = State(), Metrics()
    from .prediction_log import MaskingFilter

    if not any(isinstance(existing, MaskingFilter) for existing in log.filters):
        log.addFilter(MaskingFilter())  # the server's log never quotes personal data from a request

    def warm_and_serve(predictor: Predictor) -> None:
        for rows in sorted({1, settings.max_batch_size}):  # first calls allocate memory and pick kernels
            predictor.predict_records(predictor.example_records(rows))

    def run_batch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        predictor = state.predictor
        return predictor.answers(predictor.predict_records(rows))

    async def start(loop) -> None:
        try:
            predictor = await loop.run_in_executor(None, load)
            await loop.run_in_executor(None, warm_and_serve, predictor)
        except Exception as error:  # noqa: BLE001 - reported through liveness and the log
            state.status, state.error = "failed", f"{type(error).__name__}: {error}"
            log.error("model failed to load: %s", state.error)
            return
        if state.stopping:
            return
        state.predictor = predictor
        batch_size = 1 if predictor.codec.whole_requests else settings.max_batch_size  # 1: one request per call
        state.batcher = MicroBatcher(run_batch, max_batch_size=batch_size,
                                     max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
                                     on_batch=metrics.batch, on_crash=state.crashed)
        state.batcher.start()
        if settings.log_predictions:
            from .prediction_log import PredictionLog

            try:  # a log database that cannot be reached fails the start, not the first requests
                state.log = PredictionLog(settings.log_predictions, sample_rate=settings.log_sample_rate,
                                          mask_names=settings.log_mask_names,
                                          model={"name": predictor.name, "task": predictor.task,
                                                 "source": predictor.source, "backend": predictor.backend})
            except Exception as error:  # noqa: BLE001 - reported through liveness and the log, masked
                from .prediction_log import privacy_safe

                state.status, state.error = "failed", f"prediction log: {privacy_safe(error)}"
                log.error("%s", state.error)
                return
        state.status = "ready"
        log.info("ready: %s (%s, %s backend on %s)", predictor.name, predictor.task, predictor.backend,
                 predictor.device)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _drain_on_sigterm(state)
        loading = asyncio.get_running_loop().create_task(start(asyncio.get_running_loop()))
        yield
        state.begin_drain()
        if not loading.done():  # stopped while the model loads: don't wait for the load to finish
            loading.cancel()
        if state.batcher:
            await state.batcher.stop()
        if state.log:
            await asyncio.to_thread(state.log.close)

    app = FastAPI(title="modeldojo model server", version=__version__, lifespan=lifespan,
                  description="Predictions from a modeldojo run or export. POST /predict takes JSON `inputs` "
                              "(records for tables, strings for text, base64 for images); the /v2 routes are "
                              "the KServe Open Inference Protocol.")
    app.state.dojo = state
    app.state.metrics = metrics

    def ready_predictor() -> Predictor:
        if state.status != "ready":
            raise HTTPException(503, f"model {state.status}", headers={"Retry-After": str(settings.retry_after_s)})
        return state.predictor

    async def answer(rows: list[dict[str, Any]], invalid: int = 422) -> list[dict[str, Any]]:
        metrics.queue_depth.set(state.batcher.depth)
        started = time.perf_counter()
        try:
            answers = await asyncio.wait_for(state.batcher.submit(rows), settings.timeout_s)
            if state.log:
                state.log.record(rows, answers, time.perf_counter() - started)
            return answers
        except QueueFull:
            raise HTTPException(429, f"queue full ({settings.max_queue} requests waiting); retry shortly",
                                headers={"Retry-After": str(settings.retry_after_s)}) from None
        except Closed:
            raise HTTPException(503, "server stopping", headers={"Retry-After": str(settings.retry_after_s)}) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise HTTPException(504, f"no answer within {settings.timeout_s:g} s") from None
        except (DataError, ValueError) as error:  # the rows themselves (found alone after the batch split)
            if state.log:
                state.log.record(rows, None, time.perf_counter() - started, status=invalid, error=str(error))
            raise HTTPException(invalid, str(error)) from None

    async def records(predictor: Predictor, items: list[Any], invalid: int = 422) -> list[dict[str, Any]]:
        if len(items) > settings.max_items:
            raise HTTPException(invalid, f"{len(items)} inputs in one request; at most {settings.max_items}")
        try:
            if predictor.codec.heavy:  # decoding (images) is real work: off the event loop
                return await run_in_threadpool(predictor.records, items)
            return predictor.records(items)
        except ValueError as error:
            raise HTTPException(invalid, str(error)) from None

    predict_errors = error_responses(400, 401, 413, 422, 429, 503, 504, body=ErrorDetail)  # 400: an unreadable body

    @app.post("/predict", response_model=PredictResponse, tags=["predict"], responses=predict_errors)
    async def predict(body: PredictRequest) -> dict[str, Any]:
        predictor = ready_predictor()
        return {"model": predictor.name, "predictions": await answer(await records(predictor, body.inputs))}

    @app.post("/predict/upload", response_model=PredictResponse, tags=["predict"],
              responses={**predict_errors, **error_responses(404, body=ErrorDetail)})
    async def predict_upload(files: list[UploadFile] = File(description="files")) -> dict[str, Any]:
        predictor = ready_predictor()
        if not predictor.codec.uploads:  # and the model's OpenAPI document leaves this route out
            raise HTTPException(404, f"a {predictor.task} model takes no file uploads: send JSON to POST /predict")
        if len(files) > settings.max_items:
            raise HTTPException(422, f"{len(files)} files in one request; at most {settings.max_items}")
        blobs = [(await upload.read(), f"files[{index}] ({upload.filename})") for index, upload in enumerate(files)]
        try:
            rows = await run_in_threadpool(predictor.codec.upload_records, blobs)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        return {"model": predictor.name, "predictions": await answer(rows)}

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                        **error_responses(401, body=ErrorDetail)})
    async def prometheus() -> Response:
        if state.batcher:
            metrics.queue_depth.set(state.batcher.depth)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    oip.add_routes(app, state, ready_predictor, answer, records)
    if task is not None:
        from .. import tasks

        tasks.get(task).codec.add_routes(app, ready_predictor, settings)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, str(error.detail)), error.status_code,
                            headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        message = first_problem(list(error.errors()), where="request")
        return JSONResponse(error_body(request.url.path, message), 400 if request.url.path.startswith("/v2") else 422)

    app.openapi = lambda: openapi.document(app, state, settings)

    # The last added runs first: measure everything, then authenticate, then limit the body.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BearerAuth, token=settings.api_key)
    app.add_middleware(Measure, metrics=metrics)
    return app


def _drain_on_sigterm(state: State) -> None:
    """Chain onto uvicorn's SIGTERM handler: readiness goes 503 at once; uvicorn then stops accepting
    connections, lets in-flight requests finish (--drain-timeout) and runs the lifespan shutdown above."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals belong to the main thread (in tests the server may run on another)
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        state.begin_drain()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)
