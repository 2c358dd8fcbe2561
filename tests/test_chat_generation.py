"""Chat generation and metrics on the tiny Llama: greedy determinism, stream == generate, left-padded batches ==
one by one, stopping on the end-of-turn token once trained (and "length" when not), stop strings, token
counts, checkpoint defaults ignored; ROUGE-L for English and Japanese, exact match, stop rate."""
import threading

import pytest
import torch

from modeldojo.tasks.chat import generation, metrics, tiny
from modeldojo.tasks.chat import template as chat
from modeldojo.tasks.chat.generation import Answer

REPLY = "The order ships tomorrow."
QUESTION = [{"role": "user", "content": "Where is my order?"}]
CONVERSATIONS = [
    QUESTION,
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Can you help with the refund? The invoice is wrong and the delivery is late."}],
    [{"role": "user", "content": "注文はどこですか？"}],
    [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "パスワードを変更するにはどうすればいいですか？"}],
    [{"role": "user", "content": "What is the coffee status?"}],
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("chat-generation") / "tiny-llama")


def load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    setup = chat.ensure_template(tokenizer)
    return AutoModelForCausalLM.from_pretrained(folder), tokenizer, setup


@pytest.fixture(scope="module")
def untrained(folder):
    return load(folder)


@pytest.fixture(scope="module")
def trained(folder):
    """The tiny model after a few dozen AdamW steps on one conversation: it answers REPLY, then <|im_end|>."""
    model, tokenizer, setup = load(folder)
    encoded = [chat.encode(tokenizer, QUESTION + [{"role": "assistant", "content": REPLY}], setup.text,
                           end_of_turn=setup.end_of_turn)]
    batch = chat.collate(encoded, tokenizer.pad_token_id)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    return model, tokenizer, setup


def test_greedy_is_deterministic_and_equals_the_stream(untrained):
    model, tokenizer, setup = untrained
    first = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=24)
    again = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=24)
    assert [a.token_ids for a in first] == [a.token_ids for a in again]
    assert all(a.text for a in first)  # the random model writes something (bytes included)
    for conversation, answer in zip(CONVERSATIONS, first):
        pieces = list(generation.stream(model, tokenizer, setup, conversation, max_new_tokens=24))
        assert "".join(pieces) == answer.text


def test_left_padded_batches_answer_as_one_by_one(untrained):
    model, tokenizer, setup = untrained
    lengths = {len(chat.prompt_ids(tokenizer, c, setup.text)) for c in CONVERSATIONS}
    assert len(lengths) == len(CONVERSATIONS)  # prompts of different lengths: padding is really exercised
    batched = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=16, batch_size=8)
    alone = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=16, batch_size=1)
    assert [(a.text, a.token_ids, a.finish_reason) for a in batched] == \
           [(a.text, a.token_ids, a.finish_reason) for a in alone]


def test_token_counts_and_length_finish_on_the_untrained_model(untrained):
    model, tokenizer, setup = untrained
    answers = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=3)
    for conversation, answer in zip(CONVERSATIONS, answers):
        assert answer.prompt_tokens == len(chat.prompt_ids(tokenizer, conversation, setup.text))
        if setup.end_of_turn not in answer.token_ids:
            assert answer.finish_reason == "length" and answer.completion_tokens == len(answer.token_ids) == 3
    assert metrics.stop_rate(answers) < 1


def test_trained_model_stops_on_its_end_of_turn_token(trained):
    model, tokenizer, setup = trained
    answer, = generation.generate(model, tokenizer, setup, [QUESTION], max_new_tokens=40)
    assert answer.text == REPLY and answer.finish_reason == "stop"
    assert setup.end_of_turn not in answer.token_ids and tokenizer.decode(answer.token_ids) == REPLY
    assert answer.completion_tokens == len(answer.token_ids) + 1  # the end-of-turn token was generated
    pieces = list(generation.stream(model, tokenizer, setup, QUESTION, max_new_tokens=40))
    assert "".join(pieces) == REPLY and len(pieces) > 1  # streamed word by word, not all at the end
    assert model.training  # the fixture left it in training mode; generation put that back
    short, = generation.generate(model, tokenizer, setup, [QUESTION], max_new_tokens=2)
    assert short.finish_reason == "length" and short.completion_tokens == 2


def test_stop_strings_cut_the_text_and_end_generation(trained):
    model, tokenizer, setup = trained
    answer, = generation.generate(model, tokenizer, setup, [QUESTION], max_new_tokens=40, stop=["ships", "zzz"])
    assert answer.text == "The order " and answer.finish_reason == "stop"
    full = len(tokenizer(REPLY, add_special_tokens=False)["input_ids"]) + 1
    assert answer.completion_tokens < full  # generation itself stopped, not only the text
    pieces = list(generation.stream(model, tokenizer, setup, QUESTION, max_new_tokens=40, stop=["ships", "zzz"]))
    assert "".join(pieces) == "The order "


def test_checkpoint_sampling_defaults_do_not_leak_into_greedy(folder, untrained):
    model, tokenizer, setup = untrained
    expected = generation.generate(model, tokenizer, setup, CONVERSATIONS[:2], max_new_tokens=12)
    odd, _, _ = load(folder)
    odd.generation_config.update(do_sample=True, temperature=5.0, top_k=3, top_p=0.5, repetition_penalty=3.0)
    got = generation.generate(odd, tokenizer, setup, CONVERSATIONS[:2], max_new_tokens=12)
    assert [a.token_ids for a in got] == [a.token_ids for a in expected]


def test_sampling_is_seeded_and_leaves_the_callers_random_state_alone(untrained):
    model, tokenizer, setup = untrained
    state = torch.get_rng_state()
    one = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=12, temperature=1.0, seed=3)
    two = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=12, temperature=1.0, seed=3)
    other = generation.generate(model, tokenizer, setup, CONVERSATIONS, max_new_tokens=12, temperature=1.0, seed=4)
    assert [a.token_ids for a in one] == [a.token_ids for a in two] != [a.token_ids for a in other]
    assert torch.equal(torch.get_rng_state(), state)


def test_closing_a_stream_early_ends_its_thread(untrained):
    model, tokenizer, setup = untrained
    pieces = generation.stream(model, tokenizer, setup, QUESTION, max_new_tokens=500)
    next(pieces)
    pieces.close()
    assert not [t for t in threading.enumerate() if t.name == "modeldojo-chat-stream"]


# -- metrics -----------------------------------------------------------------------------------------

def test_rouge_l_english_and_japanese():
    from rouge_score import rouge_scorer

    assert metrics.rouge_l([REPLY], [REPLY]) == 1.0
    assert metrics.rouge_l(["The order ships tomorrow."], ["the order ships today"]) == pytest.approx(0.75)
    assert metrics.rouge_l(["注文は明日届きます。"], ["注文は明日届きます。"]) == 1.0
    assert metrics.rouge_l(["注文は明日届きます。"], ["返金を確認した"]) == 0.0  # no character in common
    assert 0 < metrics.rouge_l(["注文は明日届きます。"], ["注文は明後日届きます"]) < 1
    assert metrics.rouge_l(["ｶﾀｶﾅ ＡＢＣ"], ["カタカナ abc"]) == 1.0  # NFKC: half/full width forms agree
    assert metrics.rouge_l(["a", "b"], ["a", "c"]) == 0.5 and metrics.rouge_l([], []) == 0.0
    # Why our tokenizer: rouge-score's default one drops every non-ASCII character.
    default = rouge_scorer.RougeScorer(["rougeL"]).score("注文は明日届きます。", "注文は明日届きます。")
    assert default["rougeL"].fmeasure == 0.0
    with pytest.raises(ValueError):
        metrics.rouge_l(["a"], [])


def test_exact_match_normalises_width_case_space_and_trailing_punctuation():
    assert metrics.exact_match(["ＯＫ！", "Hello,  World!", "はい。", "ｶﾀｶﾅ", " Yes\n"],
                               ["ok", "hello, world", "はい", "カタカナ", "yes."]) == 1.0
    assert metrics.exact_match(["Hello world", "yes"], ["Hello, world", "no"]) == 0.0


def test_stop_rate_and_chat_scores():
    answers = [Answer("はい", [1], 5, 2, "stop"), Answer("Nope", [2, 3], 5, 2, "stop"),
               Answer("ok ok", [4, 5, 6, 7], 5, 4, "length"), Answer("OK", [8], 5, 2, "stop")]
    assert metrics.stop_rate(answers) == 0.75 and metrics.stop_rate([]) == 0.0
    scores = metrics.chat_scores(answers, ["はい。", "yes", "ok", "ok"])
    assert scores["exact_match"] == 0.5 and scores["stop_rate"] == 0.75
    assert scores["mean_completion_tokens"] == 2.5
    assert scores["rouge_l"] == pytest.approx((1 + 0 + 2 / 3 + 1) / 4)
