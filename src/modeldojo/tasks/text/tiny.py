"""A tiny randomly initialised BERT (2 layers, width 64) with a word-level vocabulary.

Width 64 rather than 32: at 32 the 3-class example stalled at 2/3 accuracy in some seeds and precisions
(scripts/tiny_probe.py); at 64 it learns in every one we tried.

Used by the contract test and unit tests: trains in seconds, needs no download.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build(folder: Path, words: list[str], *, layers: int = 2, width: int = 64, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "config.json").is_file():
        return folder
    vocabulary = SPECIAL + sorted(set(words) - set(SPECIAL))
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(vocabulary)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * width, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
