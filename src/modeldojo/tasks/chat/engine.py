"""One loaded chat model shared by concurrent callers (the server's routes, `dojo chat`): one answer at a time.

A causal LM on CPU answers one request at a time at full speed; two at once would each run at half speed and
double the memory of the key/value caches. So `ChatEngine` lets one generation run and keeps the others in a
first-come, first-served line of at most `max_waiting`; a request that finds the line full gets `Busy` at
once (a server answers 429 and the client retries), never an unbounded wait.

Answers come from `generation.generate` / `generation.stream` — the prompt is always `template.prompt_ids`
with the one stored template, and decoding is the same code evaluation uses — so an answer served here is
the answer `dojo eval` scored. The engine only adds the line, validation of the messages, the context-length
check, and a way to stop a generation early (a deadline, a closed stream): the model is handed to
`generation` wrapped in `_Tap`, which adds a stopping criterion to `model.generate` and keeps its output ids
(which the streamed path needs for its token counts).

    engine = ChatEngine(model, tokenizer, ensure_template(tokenizer))
    answer = engine.complete([{"role": "user", "content": "Hi"}], max_tokens=32)     # -> generation.Answer
    with engine.stream(messages) as pieces:       # waits for its turn here (Busy / TimeoutError)
        for piece in pieces:                      # text deltas; "".join(...) == the Answer's text
            print(piece, end="")
    pieces.answer                                 # the final Answer once the pieces are exhausted
"""
from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from . import generation
from .generation import Answer
from .template import ROLES, ChatTemplate, prompt_ids

__all__ = ["Busy", "ChatEngine", "ChatStream", "ContextLengthExceeded", "check_messages"]


class Busy(Exception):
    """The line for the model is full: retry shortly (HTTP 429)."""


class ContextLengthExceeded(ValueError):
    """The prompt, or the prompt plus the tokens asked for, is longer than the model's context."""


def check_messages(messages: Any) -> list[dict[str, str]]:
    """The conversation as plain {"role", "content"} dicts (other keys dropped), or ValueError naming the message.

    Roles are system/user/assistant, contents non-empty strings, the first turn is not the assistant's (a
    template cannot render the prompt before it) and the last is the user's (an answer is asked for)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {role, content} objects")
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{index}] must be an object with role and content, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{index}].role must be one of {', '.join(ROLES)}; got {role!r:.60}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{index}].content must be a string, got "
                             f"{'nothing' if content is None else type(content).__name__}")
        if not content:
            raise ValueError(f"messages[{index}].content is empty")
        clean.append({"role": role, "content": content})
    if clean[0]["role"] == "assistant":
        raise ValueError("messages[0] is an assistant message; a conversation starts with a system or user message")
    if clean[-1]["role"] != "user":
        raise ValueError(f"messages[{len(clean) - 1}] is a {clean[-1]['role']} message; the last message must be "
                         "the user's (the model answers it)")
    return clean


@dataclass(frozen=True)
class _Job:
    messages: list[dict[str, str]]
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int


class ChatEngine:
    """Answers for one causal LM + tokenizer + ChatTemplate, one generation at a time.

    default_max_new_tokens: when a call gives no max_tokens (cut to what the context leaves).
    max_waiting: callers that may wait for their turn while one generates; one more raises Busy.
    context_length: prompt + answer tokens the model takes; default model.config.max_position_embeddings
    (None or 0: unchecked).
    system_prompt: the run's data.system_prompt, put first in a conversation that has no system turn — as
    training put it, so the served prompt is the one the model learnt from."""

    def __init__(self, model, tokenizer, template: ChatTemplate, *, default_max_new_tokens: int = 256,
                 max_waiting: int = 8, context_length: int | None = None, system_prompt: str | None = None) -> None:
        if default_max_new_tokens < 1 or max_waiting < 0:
            raise ValueError("need default_max_new_tokens >= 1 and max_waiting >= 0")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.default_max_new_tokens = default_max_new_tokens
        self.system_prompt = system_prompt
        config = getattr(model, "config", None)
        self.context_length = context_length if context_length is not None else \
            getattr(config, "max_position_embeddings", None)
        self._line = _Line(max_waiting)

    @property
    def max_waiting(self) -> int:
        return self._line.max_waiting

    @property
    def waiting(self) -> int:
        """Callers in line now (not counting the one generating)."""
        return self._line.waiting

    @property
    def generating(self) -> bool:
        return self._line.held

    def prompt_tokens(self, messages) -> int:
        return len(prompt_ids(self.tokenizer, check_messages(messages), self.template.text))

    def complete(self, messages, *, max_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
                 stop: str | list[str] | None = None, seed: int | None = None,
                 timeout: float | None = None) -> Answer:
        """The whole answer. Raises ValueError (bad messages or settings; ContextLengthExceeded), Busy (the
        line is full), TimeoutError (no answer within `timeout` seconds of this call, waiting included: the
        generation is stopped, not left running)."""
        job = self._prepare(messages, max_tokens, temperature, top_p, stop, seed)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._line.enter(deadline)
        try:
            tap = _Tap(self.model, lambda: deadline is not None and time.monotonic() > deadline)
            [answer] = generation.generate(tap, self.tokenizer, self.template, [job.messages],
                                           max_new_tokens=job.max_new_tokens, temperature=job.temperature,
                                           top_p=job.top_p, stop=job.stop, batch_size=1, seed=job.seed)
        finally:
            self._line.leave()
        if tap.stopped:
            raise TimeoutError(f"no answer within {timeout:g} s")
        return answer

    def stream(self, messages, *, max_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
               stop: str | list[str] | None = None, seed: int | None = None,
               timeout: float | None = None) -> ChatStream:
        """Waits for this caller's turn, then returns the answer's text pieces as a ChatStream (an iterator of
        str; `.answer` holds the final Answer once it is exhausted). The stream holds the model until it is
        exhausted or closed: close it (or use it in a `with` block) when a consumer stops early.

        Raises here: ValueError, Busy, TimeoutError (the turn did not come within `timeout`). From its first
        `next()`: TimeoutError when the first piece did not come within `timeout` of this call either; once a
        piece was sent the stream runs to its end (max_tokens bounds it)."""
        job = self._prepare(messages, max_tokens, temperature, top_p, stop, seed)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._line.enter(deadline)
        try:
            return ChatStream(self, job, deadline, timeout)
        except BaseException:
            self._line.leave()
            raise

    # -- helpers -------------------------------------------------------------------------------------

    def _prepare(self, messages, max_tokens, temperature, top_p, stop, seed) -> _Job:
        clean = check_messages(messages)
        if self.system_prompt and clean[0]["role"] != "system":
            clean = [{"role": "system", "content": self.system_prompt}, *clean]
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if not 0 <= temperature <= 2:
            raise ValueError(f"temperature must be between 0 and 2, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be greater than 0 and at most 1, got {top_p}")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if not all(isinstance(s, str) for s in stops):
            raise ValueError("stop must be a string or a list of strings")
        size = len(prompt_ids(self.tokenizer, clean, self.template.text))
        wanted = max_tokens or self.default_max_new_tokens
        if self.context_length:
            room = self.context_length - size
            if room < 1:
                raise ContextLengthExceeded(f"the messages are {size} tokens; this model's context is "
                                            f"{self.context_length} tokens: shorten the conversation")
            if max_tokens is not None and max_tokens > room:
                raise ContextLengthExceeded(f"{size} tokens in the messages plus {max_tokens} asked for exceed "
                                            f"this model's context of {self.context_length} tokens: ask for at "
                                            f"most {room} or shorten the conversation")
            wanted = min(wanted, room)
        # Sampling without a seed is random, as callers expect; generation.generate would otherwise seed 0.
        seed = seed if seed is not None else random.SystemRandom().randrange(2 ** 31)
        return _Job(clean, size, wanted, float(temperature), float(top_p), stops, int(seed))


class ChatStream(Iterator[str]):
    """Text deltas of one answer, from `ChatEngine.stream`. Not to be iterated from two threads at once, but
    `close()` may be called from any thread (it stops the generation at the next token, then waits for a
    `next()` in progress). `answer` is None until the pieces are exhausted (a closed stream keeps None)."""

    def __init__(self, engine: ChatEngine, job: _Job, deadline: float | None, timeout: float | None) -> None:
        self.answer: Answer | None = None
        self._engine, self._job, self._deadline, self._timeout = engine, job, deadline, timeout
        self._cancel, self._lock = threading.Event(), threading.Lock()
        self._text: list[str] = []
        self._sent = self._late = self._done = False
        self._tap = _Tap(engine.model, self._should_stop)
        self._pieces = generation.stream(self._tap, engine.tokenizer, engine.template, job.messages,
                                         max_new_tokens=job.max_new_tokens, temperature=job.temperature,
                                         top_p=job.top_p, stop=job.stop, seed=job.seed)

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        with self._lock:
            if self._done:
                raise StopIteration
            try:
                piece = next(self._pieces)
            except StopIteration:
                self._finish()
                if self._late:
                    raise TimeoutError(f"no answer within {self._timeout:g} s") from None
                if not self._cancel.is_set():
                    self.answer = self._final_answer()
                raise
            except BaseException:
                self._pieces.close()
                self._finish()
                raise
            if self._late:  # the deadline passed before this first piece: the caller has given up
                self._pieces.close()
                self._finish()
                raise TimeoutError(f"no answer within {self._timeout:g} s")
            self._sent = True
            self._text.append(piece)
            return piece

    def close(self) -> None:
        """Stop generating and give the model to the next caller (no-op once exhausted or closed)."""
        self._cancel.set()
        with self._lock:
            if not self._done:
                self._pieces.close()  # generation.stream's finally: stop its thread and join it
                self._finish()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a stream dropped without close() must not keep the model forever
        try:
            if not self._done:
                self.close()
        except Exception:  # noqa: BLE001 - nothing to report to during garbage collection
            pass

    def _should_stop(self) -> bool:
        if self._cancel.is_set():
            return True
        if not self._sent and self._deadline is not None and time.monotonic() > self._deadline:
            self._late = True
            return True
        return False

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._engine._line.leave()

    def _final_answer(self) -> Answer:
        """generation's own Answer for the ids model.generate returned (token counts, finish reason), with the
        text the pieces carried (equal to it: both decode the same ids and cut at the same stop string)."""
        engine, job = self._engine, self._job
        config = generation.generation_config(engine.tokenizer, engine.template, job.max_new_tokens,
                                              job.temperature, job.top_p, job.stop)
        output = self._tap.output
        new = output[0, job.prompt_tokens:].tolist() if output is not None else []
        answer = generation._answer(engine.tokenizer, config, new, job.prompt_tokens, job.stop)
        return replace(answer, text="".join(self._text))


class _Line:
    """One holder at a time, the others waiting first come, first served, at most `max_waiting` of them."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self.held = False
        self._queue: collections.deque[object] = collections.deque()
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def enter(self, deadline: float | None) -> None:
        with self._changed:
            if not self.held and not self._queue:
                self.held = True
                return
            if len(self._queue) >= self.max_waiting:
                raise Busy(f"the model is busy ({len(self._queue)} requests already waiting); retry shortly")
            ticket = object()
            self._queue.append(ticket)
            try:
                while self.held or self._queue[0] is not ticket:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError("no turn with the model before the deadline")
                    self._changed.wait(left)
            except BaseException:
                self._queue.remove(ticket)
                self._changed.notify_all()  # the next in line may be first now
                raise
            self._queue.popleft()
            self.held = True

    def leave(self) -> None:
        with self._changed:
            self.held = False
            self._changed.notify_all()


class _Tap:
    """The model as `generation` sees it, plus: every `generate` call also stops when `should_stop()` is true
    (checked after each token), and keeps its output ids in `output`. Everything else is the model's own."""

    def __init__(self, model, should_stop: Callable[[], bool]) -> None:
        self._model, self._should_stop = model, should_stop
        self.output = None
        self.stopped = False

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def generate(self, *args, stopping_criteria=None, **kwargs):
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tap = self

        class Requested(StoppingCriteria):
            def __call__(self, input_ids, scores, **_):
                stop = bool(tap._should_stop())
                tap.stopped = tap.stopped or stop
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        criteria = StoppingCriteriaList([*(stopping_criteria or []), Requested()])
        self.output = self._model.generate(*args, stopping_criteria=criteria, **kwargs)
        return self.output
