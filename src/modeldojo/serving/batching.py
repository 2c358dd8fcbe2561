"""Dynamic micro-batching: requests wait in a bounded queue; one collector takes whatever is queued (up to
`max_batch_size` rows), waits at most `max_wait_ms` after the oldest request for more, and runs the batch in
one model call on a worker thread. While a batch runs, the next one gathers — so under load batches grow by
themselves and an idle server adds at most `max_wait_ms` to a request."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("uvicorn.error")  # printed in uvicorn's format, beside its own lines


class QueueFull(Exception):
    """The bounded queue is full: the caller answers 429 with Retry-After."""


@dataclass
class _Request:
    rows: list[dict[str, Any]]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """`run_batch(rows) → list of per-row answers`, called on one worker thread with up to max_batch_size rows."""

    def __init__(self, run_batch: Callable[[list[dict[str, Any]]], list[Any]], *, max_batch_size: int = 32,
                 max_wait_ms: float = 2.0, max_queue: int = 256, on_batch: Callable[[int, float], None] | None = None
                 ) -> None:
        self.run_batch, self.max_batch_size, self.max_wait = run_batch, max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue[_Request] = asyncio.Queue(max_queue)
        self.on_batch = on_batch  # (rows, seconds) → metrics
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="dojo-model")
        self._collector: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def start(self) -> None:
        self._collector = asyncio.get_running_loop().create_task(self._collect(), name="dojo-batcher")

    async def stop(self) -> None:
        """Answer everything already queued, then stop (graceful shutdown: nothing accepted is dropped)."""
        while not self.queue.empty():
            await asyncio.sleep(0.005)
        if self._collector:
            self._collector.cancel()
            try:
                await self._collector
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, rows: list[dict[str, Any]]) -> list[Any]:
        request = _Request(rows, asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(request)
        except asyncio.QueueFull:
            raise QueueFull() from None
        return await request.future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].rows)
            deadline = batch[0].queued_at + self.max_wait
            while size < self.max_batch_size:
                if self.queue.empty():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        request = await asyncio.wait_for(self.queue.get(), remaining)
                    except (asyncio.TimeoutError, TimeoutError):
                        break
                else:
                    request = self.queue.get_nowait()
                batch.append(request)
                size += len(request.rows)
            live = [request for request in batch if not request.future.done()]  # timed-out callers are gone
            if live:
                await self._run(loop, live)

    async def _run(self, loop, batch: list[_Request]) -> None:
        rows = [row for request in batch for row in request.rows]
        started = time.perf_counter()
        try:
            answers = await loop.run_in_executor(self.executor, self.run_batch, rows)
        except Exception as error:  # noqa: BLE001 - one bad request must not fail the others in its batch
            if len(batch) > 1:
                for request in batch:
                    await self._run(loop, [request])
                return
            log.warning("prediction failed: %s", error)
            _settle(batch[0].future, exception=error)
            return
        if self.on_batch:
            self.on_batch(len(rows), time.perf_counter() - started)
        start = 0
        for request in batch:
            _settle(request.future, result=answers[start:start + len(request.rows)])
            start += len(request.rows)


def _settle(future: asyncio.Future, result=None, exception: BaseException | None = None) -> None:
    if future.done():  # the caller timed out meanwhile
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
