"""Scores for generated chat answers: ROUGE-L, exact match, stop rate, answer length.

ROUGE-L comes from Google's `rouge-score` package (the reference implementation most papers report), but
with our tokenizer: its default one lowercases, replaces every character outside [a-z0-9] with a space and
splits, so Japanese text becomes no tokens at all. Measured with rouge-score 0.1.2: two *identical* Japanese
answers ("注文は明日届きます。") score 0.0, as do two unrelated ones — a Japanese evaluation would read 0
whatever the model did. `MixedScriptTokenizer` keeps Latin words and numbers whole and makes each CJK
ideograph or kana its own token (Japanese and Chinese have no spaces between words, and a character-level
LCS is the usual ROUGE for them).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# CJK ideographs (unified, extension A, compatibility), hiragana, katakana (+ phonetic extensions), the
# prolonged sound mark ー (inside the katakana block). Half-width katakana need no range: NFKC makes them
# full-width first.
_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# One CJK character, or a run of letters/digits (any other script, e.g. "café", "42") that holds none.
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")


def normalize(text: str) -> str:
    """NFKC (full-width "ＡＢＣ１２３" → "ABC123", half-width "ｶﾀｶﾅ" → "カタカナ") and case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


class MixedScriptTokenizer:
    """rouge-score's tokenizer interface (an object with `tokenize(text) -> list[str]`)."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(normalize(text))


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over the pairs, 0..1 (0.0 for no pairs). No stemming: Porter is English-only, and
    scores stay comparable across languages."""
    from rouge_score import rouge_scorer

    _same_length(predictions, references)
    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=MixedScriptTokenizer())
    # score(target, prediction): the reference comes first in rouge-score's signature.
    scores = [scorer.score(reference, prediction)["rougeL"].fmeasure
              for prediction, reference in zip(predictions, references)]
    return float(sum(scores) / len(scores))


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after `_canonical` (0.0 for no pairs)."""
    _same_length(predictions, references)
    if not predictions:
        return 0.0
    hits = sum(_canonical(p) == _canonical(r) for p, r in zip(predictions, references))
    return hits / len(predictions)


def stop_rate(answers) -> float:
    """Share of answers that ended on their own (end of turn or a stop string) rather than at max_new_tokens.
    A fine-tuned model that rarely stops has not learnt its end-of-turn token: the labels are wrong."""
    return sum(answer.finish_reason == "stop" for answer in answers) / len(answers) if answers else 0.0


def chat_scores(answers, references: Sequence[str]) -> dict[str, float]:
    """The chat task's evaluation numbers for `generation.Answer`s and their reference answers."""
    predictions = [answer.text for answer in answers]
    return {
        "rouge_l": rouge_l(predictions, references),
        "exact_match": exact_match(predictions, references),
        "stop_rate": stop_rate(answers),
        "mean_completion_tokens": (sum(answer.completion_tokens for answer in answers) / len(answers)
                                   if answers else 0.0),
    }


def _canonical(text: str) -> str:
    """NFKC + case fold, whitespace runs → one space, trailing punctuation dropped ("Yes." == "yes",
    "はい。" == "はい", "ＯＫ！" == "ok"). Punctuation inside the answer still counts."""
    text = " ".join(normalize(text).split())
    while text and (unicodedata.category(text[-1]).startswith("P") or text[-1].isspace()):
        text = text[:-1]
    return text


def _same_length(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
