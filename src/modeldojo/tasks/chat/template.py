"""One chat template per run, rendered the same way in training, evaluation, `dojo chat` and serving.

A conversation is `list[dict]` with `role` in {"system", "user", "assistant"} and `content` a string.

Why this module exists rather than TRL's assistant-only loss: TRL needs `{% generation %}` markers in the
template, which SmolLM2's (and most) templates lack. And the common shortcut "labels = ids, -100 where
id == pad" is wrong for SmolLM2, whose pad token *is* its end-of-turn token `<|im_end|>`: it would mask
every `<|im_end|>`, and the model would never learn to stop. So labels come from positions, never from ids:

* `encode` renders the whole conversation once, then finds each assistant answer by *incremental prefix
  rendering* — messages[:i] with the generation prompt ends where answer i starts, messages[:i+1] ends after
  it. That works for any template that renders earlier turns the same however many turns follow
  ("prefix-preserving"); one that does not is refused with a ConfigError rather than silently mis-masked,
  and a conversation whose ids alone break the prefix (leading whitespace fusing at a boundary) with a
  DataError, so the data pipeline can name and skip that row.
* `prompt_ids` is the only way a generation prompt is made, so a prompt at inference is token-identical to
  the start of the training sequence for the same conversation.

Message text is encoded with `sanitize_control_tokens` where transformers has it (>= 5.x): a user writing
"<|im_end|>" gets plain characters, not a forged turn boundary. Training and inference share the helper, so
both see the same ids whichever transformers version is installed.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, DataError

# ChatML as SmolLM2 and Qwen write it, minus any default system prompt: a system turn is rendered when the
# conversation has one, and nothing is invented when it has none (an invented prompt would be trained as data).
CHATML = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('unknown role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
ROLES = ("system", "user", "assistant")
IGNORE = -100  # the label value torch's cross-entropy skips
_PROBE = "Probe."  # an answer no template rewrites (no surrounding whitespace to trim)


@dataclass(frozen=True)
class ChatTemplate:
    """What `ensure_template` settled on. `text` is what the run stores (it is also set as
    `tokenizer.chat_template`, so `save_pretrained` writes it); `added_tokens` lists tokens added to the
    vocabulary — call `fit_embeddings(model, tokenizer)` after loading the model."""

    text: str
    source: str  # "tokenizer" | "given" | "default"
    end_of_turn: int
    added_tokens: tuple[str, ...] = ()


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # the id where trained, IGNORE elsewhere; aligned with input_ids (the model shifts)
    assistant_mask: list[bool]
    truncated: bool = False


def ensure_template(tokenizer, template: str | None = None) -> ChatTemplate:
    """Choose the run's template — the tokenizer's own, else `template`, else CHATML — set it on the
    tokenizer, add ChatML's control tokens if the template uses them and the vocabulary lacks them, and check
    that it can be trained on (it ends assistant turns with a special token, and is prefix-preserving).

    A given template that differs from the tokenizer's own is refused rather than ignored: a model was
    instruction-tuned with its own template, and quietly training it on another would be a silent surprise."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # tokenizers with named templates (e.g. "default", "tool_use")
        own = own.get("default")
    if own and template and own != template:
        raise ConfigError("the model's tokenizer has its own chat template and a different one was given; "
                          "leave the template unset to use the model's (recommended for an instruct model)")
    text, source = (own, "tokenizer") if own else (template, "given") if template else (CHATML, "default")
    added = _add_control_tokens(tokenizer, text)
    tokenizer.chat_template = text
    end = end_of_turn_id(tokenizer, text)
    probe = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Again?"}, {"role": "assistant", "content": _PROBE}]
    encode(tokenizer, probe, text, end_of_turn=end)  # raises ConfigError now rather than on the first batch
    return ChatTemplate(text, source, end, added)


def fit_embeddings(model, tokenizer) -> bool:
    """Grow the model's token embeddings when the tokenizer has ids beyond them; True if it did. Never
    shrinks: many checkpoints pad their embedding matrix past the vocabulary (to a multiple of 64)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer))
    return True


def end_of_turn_id(tokenizer, template: str) -> int:
    """The token that closes an assistant turn — the one a model must learn to emit, and generation stops on.

    Rule: render a one-turn conversation with and without its answer; the text after the answer is the
    template's closing glue (ChatML: "<|im_end|>\\n"); the first *added* token in it (special or control
    token, e.g. `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `</s>`) is the end of turn. Plain text such as
    the newline that follows is not: a model stops on a token, not on a character sequence."""
    question = [{"role": "user", "content": "Hi."}]
    prompt = _render_text(tokenizer, question, template, generation_prompt=True)
    full = _render_text(tokenizer, question + [{"role": "assistant", "content": _PROBE}], template)
    if not full.startswith(prompt + _PROBE):
        raise ConfigError("chat template is not prefix-preserving: a one-turn conversation does not render as "
                          f"its generation prompt followed by the answer ({prompt!r} vs {full!r})")
    closing = full[len(prompt) + len(_PROBE):]
    added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    for token in tokenizer(closing, add_special_tokens=False)["input_ids"]:
        if token in added:
            return token
    raise ConfigError(f"chat template closes an assistant turn with {closing!r}, which holds no special token: "
                      "the model would have no token to stop on")


def encode(tokenizer, conversation: list[dict], template: str, max_length: int | None = None, *,
           end_of_turn: int | None = None) -> Encoded:
    """The conversation's ids and labels: assistant answers and their end-of-turn token trained, the rest not.

    Each assistant turn i trains the ids between render(messages[:i], generation prompt) and
    render(messages[:i+1]) up to and including the last end-of-turn token among them. What follows that
    token (ChatML's "\\n") is *not* trained: generation stops at the end-of-turn token, so the model never
    produces that newline; the next prompt's rendering supplies it. Turns are numbered from 1 in errors.

    Raises ConfigError when the template is not prefix-preserving, DataError when only this conversation's
    ids are not (its answer's leading whitespace fuses with the template's text: see `_prefix`).
    `end_of_turn` may be passed (from `ChatTemplate.end_of_turn`) to skip finding it per conversation.
    Truncation keeps the start and cuts at `max_length` (an answer cut short has no end-of-turn token left to
    train; callers decide whether to keep such rows — `truncated` says which)."""
    _check(conversation)
    if end_of_turn is None:
        end_of_turn = end_of_turn_id(tokenizer, template)
    ids = _render_ids(tokenizer, conversation, template)
    mask = [False] * len(ids)
    for index, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        start = _prefix(tokenizer, conversation, index, ids, template, generation_prompt=True)
        stop = _prefix(tokenizer, conversation, index, ids, template, generation_prompt=False)
        closing = [at for at in range(start, stop) if ids[at] == end_of_turn]
        if stop <= start or not closing:
            raise ConfigError(f"chat template does not close assistant turn {index + 1} with its end-of-turn "
                              f"token {tokenizer.convert_ids_to_tokens(end_of_turn)!r}")
        # The last one, not the first: without sanitizing, an answer quoting "<|im_end|>" has an extra one.
        mask[start:closing[-1] + 1] = [True] * (closing[-1] + 1 - start)
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, mask = ids[:max_length], mask[:max_length]
    labels = [token if trained else IGNORE for token, trained in zip(ids, mask)]
    return Encoded(ids, labels, mask, truncated)


def prompt_ids(tokenizer, conversation: list[dict], template: str) -> list[int]:
    """The generation prompt for `conversation` (which must not end with an assistant turn): the same ids
    `encode` produces for this conversation followed by an answer, up to where the answer starts."""
    _check(conversation)
    if conversation[-1]["role"] == "assistant":
        raise DataError("a generation prompt needs a conversation that ends with a user (or system) turn, "
                        "not an assistant one")
    return _render_ids(tokenizer, conversation, template, generation_prompt=True)


def collate(encoded: list[Encoded], pad_id: int) -> dict[str, Any]:
    """A right-padded batch: input_ids (padded with `pad_id`), attention_mask, labels (IGNORE on padding).
    Labels are copied from each row, never recomputed from ids: pad_id may equal the end-of-turn id."""
    import torch

    width = max(len(row.input_ids) for row in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, item in enumerate(encoded):
        size = len(item.input_ids)
        input_ids[row, :size] = torch.tensor(item.input_ids, dtype=torch.long)
        attention[row, :size] = 1
        labels[row, :size] = torch.tensor(item.labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


# -- helpers -----------------------------------------------------------------------------------------

def _check(conversation) -> None:
    if not isinstance(conversation, list) or not conversation:
        raise DataError("a conversation must be a non-empty list of {'role', 'content'} messages")
    for index, message in enumerate(conversation):
        if not isinstance(message, dict) or message.get("role") not in ROLES \
                or not isinstance(message.get("content"), str):
            raise DataError(f"turn {index + 1} of a conversation must be a dict with role in {ROLES} and "
                            f"string content, got {message!r:.200}")
    if conversation[0]["role"] == "assistant":
        # Its start would be the generation prompt of an empty conversation, which templates cannot render.
        raise DataError("a conversation cannot start with an assistant turn")


def _add_control_tokens(tokenizer, text: str) -> tuple[str, ...]:
    """Make ChatML's markers single, never-split tokens when the template uses them. Only ChatML is known
    here; another template's control tokens must already be in its tokenizer (they are, for real models)."""
    from tokenizers import AddedToken

    known = tokenizer.get_added_vocab()
    missing = [token for token in CHATML_TOKENS if token in text and token not in known]
    before = len(tokenizer)
    if missing:
        tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in missing],
                             special_tokens=True)
    # Reported only when they are new ids: a token already in the base vocabulary gets no new embedding row.
    return tuple(missing) if len(tokenizer) > before else ()


def _sanitizes(tokenizer) -> bool:
    # On older transformers an unknown keyword would be passed to the template and silently ignored.
    return "sanitize_control_tokens" in inspect.signature(tokenizer.apply_chat_template).parameters


def _render_ids(tokenizer, conversation, template, generation_prompt=False) -> list[int]:
    extra = {"sanitize_control_tokens": True} if _sanitizes(tokenizer) else {}
    try:
        out = tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=True,
                                            add_generation_prompt=generation_prompt, return_dict=True, **extra)
    except Exception as error:  # jinja2 TemplateError, raise_exception(...), a missing variable
        raise ConfigError(f"chat template failed to render: {type(error).__name__}: {error}") from error
    ids = out["input_ids"]  # BatchEncoding (return_dict=True on 4.x and 5.x alike)
    return list(ids.tolist() if hasattr(ids, "tolist") else ids)


def _render_text(tokenizer, conversation, template, generation_prompt=False) -> str:
    try:
        return tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as error:
        raise ConfigError(f"chat template failed to render: {type(error).__name__}: {error}") from error


def _prefix(tokenizer, conversation, index, ids, template, *, generation_prompt) -> int:
    """Where assistant turn `index` starts (generation_prompt=True: render(conversation[:index]) with the
    prompt) or ends (render(conversation[:index + 1])), after checking that those ids start `ids`.

    Ids, not text, are compared: the prompt at inference is exactly these ids, so a mismatch that only shows
    in ids is still a mismatch. Text is rendered only to tell the two causes apart in the error."""
    count = index if generation_prompt else index + 1
    part = _render_ids(tokenizer, conversation[:count], template, generation_prompt)
    if ids[:len(part)] == part:
        return len(part)
    what = "the generation prompt before" if generation_prompt else "the end of"
    text = _render_text(tokenizer, conversation[:count], template, generation_prompt)
    if _render_text(tokenizer, conversation, template).startswith(text):
        # The template is fine; this conversation's text fuses with the template's at a boundary (SmolLM2's
        # BPE turns "assistant\n" + "\n\nHi" into "\n\n" + "\n": the prompt's last token never occurs).
        # Training on such a row would teach a sequence inference never sees, so the row is refused.
        raise DataError(f"{what} turn {index + 1} (assistant) tokenizes differently alone than inside the "
                        "conversation: its text fuses with the chat template's at the boundary (e.g. an answer "
                        "that starts with a newline or several spaces); strip leading whitespace from answers")
    raise ConfigError(f"chat template is not prefix-preserving: {what} turn {index + 1} (assistant) is not a "
                      "prefix of the whole conversation's rendering; earlier turns render differently once "
                      "later turns follow")
