"""Dynamic micro-batching: requests wait in a bounded queue; one collector takes whatever is queued (up to
`max_batch_size` rows), waits at most `max_wait_ms` after the oldest request for more, and runs the batch in
one model call on a worker thread. While a batch runs, the next one gathers — so under load batches grow by
themselves and an idle server adds at most `max_wait_ms` to a request. A batch that fails is split in
halves until the bad request is alone; stop() answers everything queued before it."""
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


class Closed(Exception):
    """The batcher is stopping (SIGTERM) or its collector died: the caller answers 503."""


@dataclass
class _Request:
    rows: list[dict[str, Any]]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


_STOP = object()  # queued by stop(): everything queued before it is still answered


class MicroBatcher:
    """`run_batch(rows) → list of per-row answers`, called on one worker thread with up to max_batch_size rows."""

    def __init__(self, run_batch: Callable[[list[dict[str, Any]]], list[Any]], *, max_batch_size: int = 32,
                 max_wait_ms: float = 2.0, max_queue: int = 256, on_batch: Callable[[int, float], None] | None = None,
                 on_crash: Callable[[BaseException], None] | None = None) -> None:
        self.run_batch, self.max_batch_size, self.max_wait = run_batch, max_batch_size, max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue(max_queue)
        self.on_batch, self.on_crash = on_batch, on_crash  # (rows, seconds) → metrics; (error) → state failed
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="dojo-model")
        self.closed = False
        self._collector: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def start(self) -> None:
        self._collector = asyncio.get_running_loop().create_task(self._collect(), name="dojo-batcher")
        self._collector.add_done_callback(self._collector_ended)

    async def stop(self) -> None:
        """Answer everything already queued, then stop (graceful shutdown: nothing accepted is dropped)."""
        self.closed = True
        if self._collector and not self._collector.done():
            await self.queue.put(_STOP)
            await self._collector
        await asyncio.to_thread(self.executor.shutdown, True)

    async def submit(self, rows: list[dict[str, Any]]) -> list[Any]:
        if self.closed:
            raise Closed()
        request = _Request(rows, asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(request)
        except asyncio.QueueFull:
            raise QueueFull() from None
        return await request.future

    def _collector_ended(self, task: asyncio.Task) -> None:
        error = None if task.cancelled() else task.exception()
        if error is None:
            return
        log.error("batcher stopped: %r", error)
        self.closed = True
        while not self.queue.empty():  # nobody will answer these now
            request = self.queue.get_nowait()
            if request is not _STOP:
                _settle(request.future, exception=Closed())
        if self.on_crash:
            self.on_crash(error)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is _STOP:
                return
            batch, size = [first], len(first.rows)
            deadline = first.queued_at + self.max_wait
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
                if request is _STOP:
                    stopping = True
                    break
                batch.append(request)
                size += len(request.rows)
            await self._run(loop, batch)

    async def _run(self, loop, batch: list[_Request]) -> None:
        batch = [request for request in batch if not request.future.done()]  # timed-out callers are gone
        if not batch:
            return
        rows = [row for request in batch for row in request.rows]
        started = time.perf_counter()
        try:
            answers = await loop.run_in_executor(self.executor, self.run_batch, rows)
        except Exception as error:  # noqa: BLE001 - one bad request must not fail the others in its batch
            if len(batch) > 1:  # halves: a single bad request is found in log2(n) extra calls
                middle = len(batch) // 2
                await self._run(loop, batch[:middle])
                await self._run(loop, batch[middle:])
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
