"""Which columns hold prose, in any script; and prose as numbers for the table-model checks.

Whitespace counts words in English, but Japanese and Chinese put no spaces between words, so a whole Japanese
review is one "word" and would read as a category. A cell written mostly in CJK ideographs, kana or hangul
is therefore measured in characters: CJK_CHARS_PER_WORD of them count as one word, and each counts as two
characters of length (they are double-width and carry more than a Latin letter). A 10-character Japanese
sentence so meets the same bar as a 4-word, 20-character English one. Cells written mostly in other scripts
are measured exactly as before (characters and whitespace-separated words), so English behaviour is unchanged.

For the same reason the checks read prose as character n-grams (no dictionary, no word segmentation), not as
one code per distinct text.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

FREE_TEXT_MIN_CHARS = 20
FREE_TEXT_MIN_WORDS = 4
CJK_CHARS_PER_WORD = 2.5  # Japanese averages 2-3 characters a word, Chinese ~1.5-2: one bar for both
TEXT_COMPONENTS = 32  # character n-gram TF-IDF reduced to this many numbers per free-text column

# Hangul jamo, hiragana, katakana (+ phonetic extensions, ー), hangul compatibility jamo, CJK extension A, unified
# ideographs, hangul syllables, compatibility ideographs, half-width katakana, extensions B-F.
CJK_RANGES = ("\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
              "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f")
_CJK = re.compile(f"[{CJK_RANGES}]")


def measure(text: str) -> tuple[float, float]:
    """(length in characters, length in words) of one cell, in the units its script calls for."""
    cjk = len(_CJK.findall(text))
    if cjk and 2 * cjk >= sum(character.isalpha() for character in text):  # mostly CJK letters
        return 2.0 * cjk, cjk / CJK_CHARS_PER_WORD
    return float(len(text)), float(len(text.split()))


def is_free_text(values: pd.Series) -> bool:
    """Prose, not categories: long, several words (or CJK characters), mostly distinct."""
    sample = values.dropna().astype(str).head(500)
    if not len(sample) or sample.nunique() < 0.5 * len(sample):
        return False
    if not _CJK.search("\n".join(sample)):  # no CJK at all: the vectorised measure, as it always was
        chars, words = sample.str.len(), sample.str.split().str.len()
    else:
        chars, words = (pd.Series(part) for part in zip(*(measure(text) for text in sample)))
    return bool(chars.median() >= FREE_TEXT_MIN_CHARS and words.median() >= FREE_TEXT_MIN_WORDS)


def free_text_columns(frame: pd.DataFrame, exclude: set) -> list[str]:
    """Columns that hold prose, not categories (any script; see the module docstring)."""
    return [column for column in frame.columns
            if column not in exclude and not pd.api.types.is_numeric_dtype(frame[column])
            and is_free_text(frame[column])]


def text_components(values: pd.Series, seed: int = 0, components: int = TEXT_COMPONENTS) -> np.ndarray:
    """Free text as a few numbers a tree can split on: TF-IDF of character 1-3-grams, reduced by truncated SVD.

    char_wb takes n-grams inside whitespace-separated chunks: for English that is within words, for Japanese
    within clauses, so 「配送が遅い」 and 「配送がとても遅い」 share 配送, 遅い… where one code per text shares nothing.
    Missing cells are empty texts (all zeros)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = values.astype(object).where(values.notna(), "").astype(str)
    try:
        matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, max_features=50000,
                                 dtype=np.float32).fit_transform(texts)
    except ValueError:  # no character at all (every cell empty)
        return np.zeros((len(values), 1))
    rank = min(components, matrix.shape[0] - 1, matrix.shape[1] - 1)
    if rank < 1:
        return matrix.toarray()
    return TruncatedSVD(rank, random_state=seed).fit_transform(matrix)
