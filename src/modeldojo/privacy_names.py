"""Person names for privacy.find: the optional named-entity step, from a spaCy model the user installed.

Patterns cannot find names, so a model does: `ja_ginza` for Japanese (then `en_core_web_sm`) when installed,
never downloaded (ja_ginza's training data includes CC BY-NC-SA material, so it is the user's choice, not our
dependency). Only person labels are kept ("Person" in ja_ginza's ENE labels, "PERSON" in OntoNotes'); places,
companies and titles are not personal data and masking them would blank most of a sentence (bench/pii_ner.py:
every label masked 52 of 71 name-free sentences, person labels alone 1).

Measured with ja_ginza 5.3.0 on 264 Japanese sentences with 275 names (bench/pii_ner.py): recall 0.993,
precision 0.993 once patterns win overlaps (the model calls some phone numbers and e-mails people), 14–28 ms a
sentence on 2 cores. Katakana foreign names are the misses.
"""
from __future__ import annotations

import functools
import re
import threading
import warnings

PERSON_LABELS = {"Person", "PERSON"}
MODELS = ("ja_ginza", "en_core_web_sm")
# SudachiPy (ja_ginza's tokenizer) refuses more than 49,149 bytes: longer text goes in pieces below this.
MAX_CHUNK_BYTES = 40_000
_BREAK = re.compile(r"(?<=[\n。．.!?！？])")
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def pipeline():
    """The installed model, loaded once; None when there is none or it does not load (the step is optional)."""
    try:
        import spacy
    except ImportError:
        return None
    installed = set(spacy.util.get_installed_models())
    for name in MODELS:
        if name in installed:
            try:
                return spacy.load(name)
            except Exception as error:  # noqa: BLE001 - e.g. a model built for another spaCy version
                warnings.warn(f"personal data: the spaCy model {name} did not load ({error}); names are not found")
                return None
    return None


def available() -> bool:
    return pipeline() is not None


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # a lone surrogate (from a JSON request) counts, not fails


def chunks(text: str, limit: int = MAX_CHUNK_BYTES) -> list[tuple[int, str]]:
    """(offset, piece) with every piece under `limit` UTF-8 bytes, cut after sentence ends where possible."""
    pieces, start, position, size = [], 0, 0, 0
    for sentence in filter(None, _BREAK.split(text)):
        while _size(sentence) > limit:  # one "sentence" alone is too long: cut it by characters
            if size:
                pieces.append((start, text[start:position]))
                start, size = position, 0
            cut = max(1, len(sentence.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", errors="ignore")))
            pieces.append((position, sentence[:cut]))
            position, start, sentence = position + cut, position + cut, sentence[cut:]
        length = _size(sentence)
        if size and size + length > limit:
            pieces.append((start, text[start:position]))
            start, size = position, 0
        position, size = position + len(sentence), size + length
    if position > start:
        pieces.append((start, text[start:position]))
    return pieces


def person_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each person name in `text`; [] without a model."""
    model = pipeline()
    if model is None or not text.strip():
        return []
    pieces = chunks(text)
    spans = []
    with _LOCK:  # SudachiPy's tokenizer is not thread-safe ("Already borrowed"): one text at a time
        documents = list(model.pipe(piece for _, piece in pieces))
    for (offset, _), document in zip(pieces, documents):
        spans += [(offset + entity.start_char, offset + entity.end_char) for entity in document.ents
                  if entity.label_ in PERSON_LABELS]
    return spans


def outside(text: str, spans: list[tuple[int, int]], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `spans` that no `taken` span covers, without their surrounding spaces."""
    pieces = []
    for start, end in spans:
        position = start
        for other_start, other_end in sorted(taken):
            if other_end <= position or other_start >= end:
                continue
            if other_start > position:
                pieces.append((position, other_start))
            position = max(position, other_end)
        if position < end:
            pieces.append((position, end))
    trimmed = []
    for start, end in pieces:
        piece = text[start:end]
        if piece.strip():
            start += len(piece) - len(piece.lstrip())
            trimmed.append((start, start + len(piece.strip())))
    return trimmed
