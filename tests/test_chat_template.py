"""Chat template foundations: assistant-only labels with pad == eos, training/inference prompt parity,
refusal of templates that are not prefix-preserving, collation, truncation, the ChatML default, and a
tiny Llama that learns from the labels (so they are wired the way the model reads them)."""
import pytest
import torch

from modeldojo.errors import ConfigError, DataError
from modeldojo.tasks.chat import template as chat
from modeldojo.tasks.chat import tiny

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
ONE = [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "The order ships tomorrow."}]
MULTI = ONE + [{"role": "user", "content": "返金は？"}, {"role": "assistant", "content": "返金は明日届きます。"}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("chat") / "tiny-llama")


@pytest.fixture
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def spans(mask):
    """[start, stop) runs of True."""
    runs, start = [], None
    for at, on in enumerate(mask + [False]):
        if on and start is None:
            start = at
        elif not on and start is not None:
            runs.append((start, at))
            start = None
    return runs


@pytest.mark.parametrize("conversation", [ONE, MULTI, [SYSTEM] + MULTI], ids=["one-turn", "multi-turn", "system"])
def test_mask_is_answers_plus_their_end_of_turn_while_pad_is_eos(tokenizer, conversation):
    setup = chat.ensure_template(tokenizer)
    end = setup.end_of_turn
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == end == tokenizer.convert_tokens_to_ids("<|im_end|>")
    encoded = chat.encode(tokenizer, conversation, setup.text)
    ids, labels, mask = encoded.input_ids, encoded.labels, encoded.assistant_mask
    assert len(ids) == len(labels) == len(mask) and not encoded.truncated
    assert labels == [token if on else -100 for token, on in zip(ids, mask)]
    answers = [m["content"] for m in conversation if m["role"] == "assistant"]
    runs = spans(mask)
    assert len(runs) == len(answers)
    for (start, stop), answer in zip(runs, answers):
        assert ids[stop - 1] == end  # the end-of-turn token is trained ...
        assert tokenizer.decode(ids[start:stop - 1]) == answer  # ... after exactly the answer's tokens
        assert tokenizer.decode(ids[stop]) == "\n" and not mask[stop]  # ChatML's newline after it is not
    # Every <|im_end|> closing a system or user turn is untrained; one per message in all.
    closing = [at for at, token in enumerate(ids) if token == end]
    assert len(closing) == len(conversation)
    for at, message in zip(closing, conversation):
        assert (labels[at] == end) == (message["role"] == "assistant")


def test_prompt_ids_are_the_start_of_the_training_sequence(tokenizer):
    text = chat.ensure_template(tokenizer).text
    for conversation in (ONE, MULTI, [SYSTEM] + MULTI):
        prompt = chat.prompt_ids(tokenizer, conversation[:-1], text)
        encoded = chat.encode(tokenizer, conversation, text)
        assert encoded.input_ids[:len(prompt)] == prompt
        assert spans(encoded.assistant_mask)[-1][0] == len(prompt)  # the answer starts right after the prompt
    with pytest.raises(DataError, match="ends with a user"):
        chat.prompt_ids(tokenizer, ONE, text)


def test_a_template_that_is_not_prefix_preserving_is_refused_naming_the_turn(tokenizer):
    # Renders only the last two messages: earlier turns vanish once later ones follow.
    last_two = ("{%- for m in messages[-2:] -%}"
                "{{- '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' -}}{%- endfor -%}"
                "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}")
    chat.encode(tokenizer, ONE, last_two)  # one turn happens to be fine
    with pytest.raises(ConfigError, match=r"not prefix-preserving: .*turn 2 \(assistant\)"):
        chat.encode(tokenizer, MULTI, last_two)
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="not prefix-preserving"):
        chat.ensure_template(tokenizer, last_two)  # refused when the run is set up, before any data


def test_answers_quoting_control_tokens_stay_text_and_fused_boundaries_are_refused(tokenizer):
    text = chat.ensure_template(tokenizer).text
    quoting = chat.encode(tokenizer, [ONE[0], {"role": "assistant", "content": "Type <|im_end|> to stop."}], text)
    assert quoting.input_ids.count(tokenizer.eos_token_id) == 2  # the quoted one is plain characters
    assert tokenizer.decode([t for t in quoting.labels if t != -100]) == "Type <|im_end|> to stop.<|im_end|>"
    # "assistant\n" + "\n\nHi" tokenizes as "\n\n" + "\n" + ...: the prompt's last token never appears.
    with pytest.raises(DataError, match=r"turn 4 \(assistant\).*leading whitespace"):
        chat.encode(tokenizer, ONE + [{"role": "user", "content": "And?"}, {"role": "assistant", "content": "\n\nHi"}],
                    text)


def test_a_template_without_an_end_of_turn_token_is_refused(tokenizer):
    plain = "{%- for m in messages -%}{{ m['role'] }}: {{ m['content'] }}\n{%- endfor -%}" \
            "{%- if add_generation_prompt -%}{{ 'assistant: ' }}{%- endif -%}"
    with pytest.raises(ConfigError, match="no special token"):
        chat.end_of_turn_id(tokenizer, plain)


def test_collate_pads_right_with_pad_id_and_ignores_padding(tokenizer):
    text = chat.ensure_template(tokenizer).text
    rows = [chat.encode(tokenizer, ONE, text), chat.encode(tokenizer, MULTI, text)]
    batch = chat.collate(rows, tokenizer.pad_token_id)
    short, width = len(rows[0].input_ids), len(rows[1].input_ids)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, width)
    assert batch["input_ids"][0, short:].eq(tokenizer.pad_token_id).all()
    assert batch["labels"][0, short:].eq(-100).all() and batch["attention_mask"][0, short:].eq(0).all()
    assert batch["labels"][0, :short].tolist() == rows[0].labels  # copied, not rederived from the pad id
    assert batch["labels"][0, :short].eq(tokenizer.pad_token_id).sum() == 1  # the trained <|im_end|> survives
    assert batch["attention_mask"][1].eq(1).all()


def test_truncation_keeps_the_start_and_says_so(tokenizer):
    text = chat.ensure_template(tokenizer).text
    whole = chat.encode(tokenizer, MULTI, text)
    cut = chat.encode(tokenizer, MULTI, text, max_length=20)
    assert cut.truncated and not whole.truncated
    assert not chat.encode(tokenizer, MULTI, text, max_length=len(whole.input_ids)).truncated  # exactly fits
    assert cut.input_ids == whole.input_ids[:20] and cut.labels == whole.labels[:20] and len(cut.assistant_mask) == 20


def test_a_tokenizer_without_a_template_gets_chatml(tokenizer):
    tokenizer.chat_template = None
    setup = chat.ensure_template(tokenizer)
    assert setup.source == "default" and setup.text == chat.CHATML == tokenizer.chat_template
    assert setup.added_tokens == ()  # its ChatML tokens exist already
    given = chat.ensure_template(tokenizer, chat.CHATML)  # the same template given again is fine
    assert given.source == "tokenizer"
    with pytest.raises(ConfigError, match="its own chat template"):
        chat.ensure_template(tokenizer, chat.CHATML.replace("<|im_end|>", "<|im_end|>\n"))


def test_chatml_tokens_are_added_to_a_tokenizer_that_lacks_them_and_embeddings_grow(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE({symbol: at for at, symbol in enumerate(alphabet)}, []))
    core.pre_tokenizer, core.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bare = PreTrainedTokenizerFast(tokenizer_object=core)  # no specials, no template, like a base model's
    setup = chat.ensure_template(bare)
    assert setup.source == "default" and setup.added_tokens == chat.CHATML_TOKENS
    assert setup.end_of_turn == bare.convert_tokens_to_ids("<|im_end|>")
    assert chat.encode(bare, ONE, setup.text).labels[-2] == setup.end_of_turn
    model = AutoModelForCausalLM.from_pretrained(folder)
    rows = model.get_input_embeddings().weight.shape[0]
    assert len(bare) < rows and not chat.fit_embeddings(model, bare)  # never shrinks
    model.resize_token_embeddings(len(bare) - 1)
    assert chat.fit_embeddings(model, bare) and model.get_input_embeddings().weight.shape[0] == len(bare)


def test_tiny_llama_learns_from_the_collated_labels(folder, tokenizer):
    from transformers import AutoModelForCausalLM

    text = chat.ensure_template(tokenizer).text
    batch = chat.collate([chat.encode(tokenizer, c, text) for c in (ONE, MULTI, [SYSTEM] + ONE)],
                         tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model(**batch).loss
        assert torch.isfinite(loss)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0], losses
    assert tiny.build(folder) == folder  # a complete folder is reused, not rebuilt
