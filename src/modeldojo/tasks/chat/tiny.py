"""A tiny randomly initialised Llama (2 layers, width 32) with a locally trained byte-level BPE tokenizer.

Used by unit and contract tests: builds offline in about a second, trains in seconds. It mirrors the traps
of SmolLM2-135M-Instruct on purpose: ChatML template, bos `<|im_start|>`, and pad == eos == `<|im_end|>`, so
a label mask derived from the pad id would drop every end-of-turn token — tests must catch that.

The tokenizer is byte-level, so any text (Japanese included) encodes without unknown tokens; its merges are
learnt from a few hundred generated English and Japanese sentences so that ids are word-like, not bytes.
The folder is written whole into a temporary sibling, then renamed, with MARKER written last: a folder that
has the marker is complete and is reused as is.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from ...cache import build_once
from .template import CHATML, CHATML_TOKENS

MARKER = "tiny-chat.txt"
VOCABULARY = 600  # 256 byte symbols + 2 control tokens + merges


def sentences() -> list[str]:
    """A few hundred deterministic English and Japanese Q/A-like sentences to learn merges from."""
    things = ["order", "invoice", "password", "delivery", "refund", "account", "coffee", "ticket"]
    asks = ["How do I change my {}?", "Where is my {}?", "Can you help with the {}?", "What is the {} status?"]
    answers = ["Your {} is ready.", "Open the settings page to update the {}.", "The {} ships tomorrow.",
               "Please contact support about the {}."]
    japanese = {"order": "注文", "invoice": "請求書", "password": "パスワード", "delivery": "配送",
                "refund": "返金", "account": "アカウント", "coffee": "コーヒー", "ticket": "チケット"}
    ja = ["{}はどこですか？", "{}を変更するにはどうすればいいですか？", "{}は明日届きます。", "{}の状況を確認しました。"]
    text = [pattern.format(thing) for thing, pattern in itertools.product(things, asks + answers)]
    text += [pattern.format(japanese[thing]) for thing, pattern in itertools.product(things, ja)]
    text += ["system", "user", "assistant", "You are a helpful assistant.", "あなたは親切なアシスタントです。"]
    # Blank lines, so that "\n\n" becomes one token as in SmolLM2 (byte-level BPE only merges it where no
    # letter follows): "assistant\n" + an answer starting "\n\n" then tokenizes as "\n\n" + "\n", unlike the
    # prompt alone — a trap the template tests exercise.
    text += [f"{a}\n\n\n{b}\n\n" for a, b in zip(text[:40], text[40:80])]
    return text * 4  # repetition makes whole words frequent enough to merge


def tokenizer(template: str | None = None):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCABULARY, show_progress=False,
                                  special_tokens=[AddedToken(token, special=True, normalized=False)
                                                  for token in CHATML_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(sentences(), trainer=trainer)
    start, end = CHATML_TOKENS
    wrapped = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=start, eos_token=end,
                                      pad_token=end,  # pad == eos, as in SmolLM2: the trap tests must survive
                                      model_max_length=512)
    wrapped.chat_template = template or CHATML
    return wrapped


def build(folder: Path, template: str | None = None, *, seed: int = 0) -> Path:
    """The tiny model and tokenizer saved (safetensors) in `folder`; reused when `folder` is complete."""
    def write(partial: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
        from transformers.utils import logging

        logging.disable_progress_bar()
        words = tokenizer(template)
        start, end = (words.convert_tokens_to_ids(token) for token in CHATML_TOKENS)
        config = LlamaConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
                             bos_token_id=start, eos_token_id=end, pad_token_id=end)
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(partial)
        words.save_pretrained(partial)

    return build_once(Path(folder), MARKER, f"tiny chat model, seed {seed}\n", write)
