"""The OpenAI-compatible chat routes, driven by the real `openai` client against a uvicorn server on a thread,
over the tiny random Llama (its answers are gibberish; greedy makes them reproducible): completion shape and
token counts, streaming == non-streaming, stop strings, model listing, errors as the client's own
exceptions (400, 404, 429, 503, 504), and concurrent callers getting the answers they get one by one."""
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from fastapi import FastAPI, HTTPException  # noqa: E402

from modeldojo.serving.app import Settings  # noqa: E402
from modeldojo.tasks.chat import generation, tiny  # noqa: E402
from modeldojo.tasks.chat import template as chat  # noqa: E402
from modeldojo.tasks.chat.engine import ChatEngine  # noqa: E402
from modeldojo.tasks.chat.openai_routes import add_routes  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from serving_helpers import running  # noqa: E402

NAME = "tiny-chat"
QUESTION = [{"role": "user", "content": "Where is my order?"}]
QUESTIONS = [
    QUESTION,
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Can you help with the refund?"}],
    [{"role": "user", "content": "注文はどこですか？"}],
    [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "What is the coffee status?"}],
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model, tokenizer, template, engine, slot, settings, client); slot["engine"] is what get_engine returns."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny.build(tmp_path_factory.mktemp("chat-openai") / "tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    template = chat.ensure_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(folder)
    engine = ChatEngine(model, tokenizer, template, default_max_new_tokens=16, max_waiting=8)
    slot, settings = {"engine": engine}, Settings(timeout_s=30.0, retry_after_s=2)

    def get_engine():
        if slot["engine"] == "raise":
            raise HTTPException(503, "model loading")
        return slot["engine"]

    app = FastAPI()
    add_routes(app, get_engine, settings, lambda: NAME)
    with running(app, ready=False) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        yield model, tokenizer, template, engine, slot, settings, client


@pytest.fixture
def client(served):
    return served[-1]


def ask(client, messages=QUESTION, **options):
    options = {"model": NAME, "max_tokens": 12, "temperature": 0, **options}
    return client.chat.completions.create(messages=messages, **options)


def streamed(client, messages=QUESTION, **options):
    """(text, chunks) of a streamed request."""
    chunks = list(ask(client, messages, stream=True, **options))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_completion_has_openai_shape_and_template_token_counts(served, client):
    model, tokenizer, template, *_ = served
    response = ask(client)
    assert response.id.startswith("chatcmpl-") and response.object == "chat.completion"
    assert response.model == NAME and isinstance(response.created, int)
    [choice] = response.choices
    assert choice.index == 0 and choice.message.role == "assistant" and choice.logprobs is None
    assert choice.finish_reason in ("stop", "length") and choice.message.content
    usage = response.usage
    assert usage.prompt_tokens == len(chat.prompt_ids(tokenizer, QUESTION, template.text))
    assert 1 <= usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The served answer is generation's own (the one evaluation scores).
    [direct] = generation.generate(model, tokenizer, template, [QUESTION], max_new_tokens=12)
    assert (choice.message.content, choice.finish_reason, usage.completion_tokens) == \
        (direct.text, direct.finish_reason, direct.completion_tokens)
    # max_completion_tokens wins over max_tokens; an unknown field is ignored
    short = ask(client, max_tokens=12, max_completion_tokens=2, extra_body={"frequency_penalty": 0.5})
    assert short.usage.completion_tokens <= 2


def test_stream_equals_the_completion_and_reports_usage(client):
    whole = ask(client, QUESTIONS[1])
    text, chunks = streamed(client, QUESTIONS[1], stream_options={"include_usage": True})
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" and c.model == NAME for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert [c.choices[0].finish_reason for c in with_choices[:-1]] == [None] * (len(with_choices) - 1)
    assert with_choices[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage  # the usage chunk comes last
    _, plain = streamed(client, QUESTIONS[1])  # no usage chunk unless asked
    assert all(c.choices and c.usage is None for c in plain)


def test_stop_strings_cut_the_answer(client):
    text = ask(client, max_tokens=16).choices[0].message.content
    # a two-character stop string from the answer, past its start, free of U+FFFD (half-decoded bytes)
    at = next(at for at in range(1, len(text) - 1) if "\ufffd" not in text[at:at + 2] and text[at:at + 2].strip())
    stop = text[at:at + 2]
    cut = text.find(stop)
    response = ask(client, max_tokens=16, stop=[stop, "never-seen-zzz"])
    assert response.choices[0].message.content == text[:cut]
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens <= 16
    assert streamed(client, max_tokens=16, stop=stop)[0] == text[:cut]


def test_models_are_listed_and_unknown_ones_are_404(client):
    [card] = client.models.list().data
    assert (card.id, card.object, card.owned_by) == (NAME, "model", "modeldojo")
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError) as error:
        client.models.retrieve("gpt-4o")
    assert error.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("messages, options, where", [
    ([], {}, "messages"),
    (QUESTION, {"n": 2}, "n"),
    (QUESTION + [{"role": "assistant", "content": "Hi"}], {}, "messages[1]"),
    ([{"role": "tool", "content": "x"}], {}, "messages[0].role"),
    ([{"role": "user", "content": ""}], {}, "messages[0].content"),
    (QUESTION, {"temperature": 3}, "temperature"),  # a pydantic validation error: 400, not 422
    (QUESTION, {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    (QUESTION, {"max_tokens": 10_000}, "context"),
])
def test_invalid_requests_are_400_in_openai_shape(client, messages, options, where):
    with pytest.raises(openai.BadRequestError) as error:
        ask(client, messages, **options)
    body = error.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"
    assert where in body["message"]


def test_busy_engine_is_429_with_retry_after(served, client):
    model, tokenizer, template, engine, slot, settings, _ = served
    busy = ChatEngine(model, tokenizer, template, max_waiting=0)
    slot["engine"] = busy
    held = busy.stream(QUESTION, max_tokens=4)  # holds the model until closed
    try:
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as error:
                ask(client, stream=stream)
            assert error.value.response.headers["retry-after"] == "2"
            assert error.value.body["code"] == "rate_limit_exceeded"
    finally:
        held.close()
        slot["engine"] = engine
    assert busy.complete(QUESTION, max_tokens=2).completion_tokens >= 1  # free again


def test_timeout_is_504_and_frees_the_line(served, client):
    model, tokenizer, template, engine, slot, settings, _ = served
    waiting = ChatEngine(model, tokenizer, template, max_waiting=1)
    slot["engine"], settings.timeout_s = waiting, 0.3
    held = waiting.stream(QUESTION, max_tokens=4)
    try:
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as error:
                ask(client, stream=stream)
            assert error.value.status_code == 504
        assert waiting.waiting == 0  # the timed-out callers left the line
    finally:
        held.close()
        slot["engine"], settings.timeout_s = engine, 30.0


def test_loading_model_is_503(served, client):
    slot = served[4]
    for state in (None, "raise"):
        slot["engine"] = state
        try:
            with pytest.raises(openai.InternalServerError) as error:
                ask(client)
            assert error.value.status_code == 503 and error.value.response.headers["retry-after"] == "2"
        finally:
            slot["engine"] = served[3]


def test_concurrent_requests_get_their_sequential_answers(client):
    alone = [ask(client, question).choices[0].message.content for question in QUESTIONS]

    def one(index):
        question = QUESTIONS[index % len(QUESTIONS)]
        if index % 2:
            return streamed(client, question)[0]
        return ask(client, question).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, range(8)))
    assert together == alone * 2


def test_a_client_leaving_mid_stream_frees_the_model(served, client):
    import time

    import httpx

    engine = served[3]
    started = time.monotonic()
    body = {"model": NAME, "messages": QUESTION, "temperature": 0, "stream": True, "max_tokens": 450}
    with httpx.stream("POST", str(client.base_url) + "chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # the first event, then hang up (450 tokens would take seconds)
    while engine.generating and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert not engine.generating and time.monotonic() - started < 3


def test_engine_deadlines_stop_the_generation(served):
    import time

    engine = served[3]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        engine.complete(QUESTION, max_tokens=450, timeout=0.2)
    assert time.monotonic() - started < 3 and not engine.generating
    stream = engine.stream(QUESTION, max_tokens=450, timeout=0.0)  # the turn comes at once; no piece in time
    with pytest.raises(TimeoutError):
        next(stream)
    assert not engine.generating and stream.answer is None
    with engine.stream(QUESTION, max_tokens=6) as pieces:  # and the engine still answers
        text = "".join(pieces)
    whole = engine.complete(QUESTION, max_tokens=6)
    assert pieces.answer == whole and text == whole.text  # token ids and counts included
