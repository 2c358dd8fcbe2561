"""Answers from a chat model: batched `generate` for evaluation, `stream` for `dojo chat` and server-sent events.

Both build the prompt with `template.prompt_ids` (so it is token-identical to what training saw), stop on the
template's end-of-turn token and the tokenizer's eos, and run transformers' own `model.generate` with one
explicitly built GenerationConfig — so for greedy decoding `"".join(stream(...))` equals `generate(...)`'s text.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ...errors import ConfigError
from .template import ChatTemplate, prompt_ids

# Decoded text drops special tokens (the end-of-turn token, a stray <|im_start|>): the answer a user reads.
# The streamer decodes with the same arguments, which is what makes both paths' text equal.
DECODE = {"skip_special_tokens": True}


@dataclass
class Answer:
    text: str  # the new tokens decoded, cut before the first stop string
    token_ids: list[int]  # the tokens the model generated, without the end-of-turn token and padding
    prompt_tokens: int  # len(prompt_ids(...)): padding is not counted
    completion_tokens: int  # decoding steps spent on this answer: token_ids plus the end-of-turn token if emitted
    finish_reason: Literal["stop", "length"]  # "stop": end of turn or a stop string; "length": max_new_tokens hit


def generation_config(tokenizer, template: ChatTemplate, max_new_tokens: int = 128, temperature: float = 0.0,
                      top_p: float = 1.0, stop: list[str] | None = None):
    """Every setting that changes the answer, given explicitly.

    transformers (5.x) fills each field left None from the checkpoint's generation_config.json, even when a
    GenerationConfig is passed. Many instruct checkpoints put sampling there (do_sample=True, temperature,
    top_k; SmolLM2's model card samples at temperature 0.2, top_p 0.9), which would make a "greedy" evaluation
    sample, its scores change run to run, and a run depend on which copy of a model was loaded. Hence no
    field that affects decoding is left None (only rarities such as bad_words_ids or forced_eos_token_id)."""
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ConfigError(f"need temperature >= 0 and 0 < top_p <= 1, got temperature={temperature}, top_p={top_p}")
    sample = temperature > 0
    # Filters that only act when sampling; set only then, as transformers warns about them otherwise.
    # top_k=0: transformers' default top_k=50 would add a cut nobody asked for. The rest: neutral values.
    filters = dict(temperature=temperature, top_p=top_p, top_k=0, min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0,
                   eta_cutoff=0.0) if sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=0,  # min_new_tokens overrides any min_length
        do_sample=sample, num_beams=1, num_return_sequences=1, **filters,
        repetition_penalty=1.0, no_repeat_ngram_size=0, renormalize_logits=False,
        eos_token_id=stop_ids(tokenizer, template),
        # Finished rows of a batch are filled with pad_token_id; filling them with the end-of-turn token
        # makes "cut at the first end-of-turn id" right for rows ended by a stop string too.
        pad_token_id=template.end_of_turn,
        stop_strings=_stop_strings(stop) or None,
        use_cache=True, return_dict_in_generate=False, output_scores=False,
    )


def stop_ids(tokenizer, template: ChatTemplate) -> list[int]:
    """End-of-turn first, then the tokenizer's eos when it is another token (a base model ends text with it)."""
    ids = [template.end_of_turn]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def generate(model, tokenizer, template: ChatTemplate, conversations: list[list[dict]], max_new_tokens: int = 128,
             temperature: float = 0.0, top_p: float = 1.0, stop: list[str] | None = None, batch_size: int = 8,
             seed: int = 0) -> list[Answer]:
    """One Answer per conversation (each ending with a user or system turn), in the given order.

    Greedy (temperature 0) answers do not depend on batch_size. Sampled ones are reproducible for the same
    seed, conversations and batch_size, but a conversation's sample depends on its batch companions."""
    import torch

    config = generation_config(tokenizer, template, max_new_tokens, temperature, top_p, stop)
    prompts = [prompt_ids(tokenizer, conversation, template.text) for conversation in conversations]
    # Batches of similar length waste less compute on padding; answers are put back in the given order.
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    answers: list[Answer | None] = [None] * len(prompts)
    device = model.device
    with _evaluating(model), _seeded(seed if config.do_sample else None, device):
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start:start + max(1, batch_size)]
            width = max(len(prompts[index]) for index in chunk)
            # LEFT padding: a decoder continues from each row's last position, so the prompts must all end at
            # the right edge; right padding would make the model write after pad tokens. The attention mask
            # hides the pads and transformers derives position ids from it, so each row decodes as if alone.
            ids = torch.full((len(chunk), width), template.end_of_turn, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                size = len(prompts[index])
                ids[row, width - size:] = torch.tensor(prompts[index], dtype=torch.long)
                mask[row, width - size:] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                                 tokenizer=tokenizer)  # the tokenizer is what stop strings are matched with
            for row, index in enumerate(chunk):
                answers[index] = _answer(tokenizer, config, out[row, width:].tolist(), len(prompts[index]), stop)
    return answers  # type: ignore[return-value]


def stream(model, tokenizer, template: ChatTemplate, conversation: list[dict], max_new_tokens: int = 128,
           temperature: float = 0.0, top_p: float = 1.0, stop: list[str] | None = None,
           seed: int = 0) -> Iterator[str]:
    """Text pieces of one answer as they are generated; joined, they are `generate(...)`'s text.

    transformers' TextIteratorStreamer with `model.generate` on a thread, rather than a hand-written decoding
    loop: the same code decides every token (sampling, stop strings, cache), so the two paths cannot drift.
    The streamer holds back an unfinished word; this generator also holds back text that may be the start of a
    stop string, so nothing past a stop string is ever sent. Closing the generator early (a client
    disconnecting) stops generation at the next token instead of running on to max_new_tokens."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    config = generation_config(tokenizer, template, max_new_tokens, temperature, top_p, stop)
    ids = torch.tensor([prompt_ids(tokenizer, conversation, template.text)], dtype=torch.long, device=model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, **DECODE)
    cancel, failure = threading.Event(), []

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    def run():
        try:
            with _evaluating(model), _seeded(seed if config.do_sample else None, model.device):
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                               tokenizer=tokenizer, streamer=streamer,
                               stopping_criteria=StoppingCriteriaList([Cancelled()]))
        except BaseException as error:  # re-raised in the caller's thread; end() unblocks its loop
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=run, name="modeldojo-chat-stream", daemon=True)
    worker.start()
    stops, text, sent = _stop_strings(stop), "", 0
    try:
        for piece in streamer:
            text += piece
            cut = _first_stop(text, stops)
            if cut is not None:
                if cut > sent:
                    yield text[sent:cut]
                return  # finally: cancel, so generation ends now
            safe = len(text) - _held_back(text, stops)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        if len(text) > sent:
            yield text[sent:]
    finally:
        cancel.set()
        worker.join()
    if failure:
        raise failure[0]


# -- helpers -----------------------------------------------------------------------------------------

def _answer(tokenizer, config, new: list[int], prompt_tokens: int, stop: list[str] | None) -> Answer:
    end = set(config.eos_token_id) | {config.pad_token_id}
    # The first end id ends the answer: either the model emitted it or, with a stop string, it is padding.
    size = next((at for at, token in enumerate(new) if token in end), len(new))
    tokens = new[:size]
    text = tokenizer.decode(tokens, **DECODE)
    cut = _first_stop(text, _stop_strings(stop))
    if cut is not None:
        return Answer(text[:cut], tokens, prompt_tokens, size, "stop")
    if size < len(new):  # the end-of-turn (or eos) token was generated; it cost a step too
        return Answer(text, tokens, prompt_tokens, size + 1, "stop")
    return Answer(text, tokens, prompt_tokens, size, "length")


def _stop_strings(stop: list[str] | None) -> list[str]:
    if isinstance(stop, str):
        stop = [stop]
    return [s for s in (stop or []) if s]  # an empty stop string would cut every answer to nothing


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [at for at in (text.find(s) for s in stops) if at >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that could still grow into a stop string."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


class _evaluating:
    """model.eval() for the call, then the previous mode back (dropout would make greedy answers random)."""

    def __init__(self, model):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


class _seeded:
    """Seeds torch for sampling without disturbing the caller's random state (fork_rng restores it)."""

    def __init__(self, seed: int | None, device):
        self.seed, self.device, self.fork = seed, device, None

    def __enter__(self):
        if self.seed is None:
            return
        import torch

        cuda = getattr(self.device, "type", "cpu") == "cuda"
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if cuda else []
        self.fork = torch.random.fork_rng(devices=devices)
        self.fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        if self.fork is not None:
            self.fork.__exit__(*exc)
