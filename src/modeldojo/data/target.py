"""Target column: validation with precise errors, and inference of the prediction kind."""
from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from ..errors import DataError
from .readers import row_location, source_name

KINDS = ("regression", "binary", "multiclass", "multilabel")
DEFAULT_SEPARATOR = "|"
# An integer target with at most this many distinct values is treated as classes.
MAX_INTEGER_CLASSES = 20


def require_column(frame: pd.DataFrame, column: str, role: str) -> None:
    if column not in frame.columns:
        close = difflib.get_close_matches(column, [str(c) for c in frame.columns], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        columns = ", ".join(repr(str(c)) for c in frame.columns[:30]) + (" …" if frame.shape[1] > 30 else "")
        raise DataError(f"{source_name(frame)}: {role} column {column!r} not found.{hint} Columns found: {columns}")


def numeric_target(frame: pd.DataFrame, target: str, *, strict: bool) -> pd.Series | None:
    """The target as floats when it is (or is meant to be) numeric, else None.

    A mostly-numeric text column with a few non-numbers is a data error, not a classification
    problem with hundreds of classes: name the first bad value.
    """
    column = frame[target]
    if pd.api.types.is_bool_dtype(column):
        return None
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    present = column.dropna()
    if present.empty:
        return None
    parsed = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    share = parsed.notna().mean()
    if share == 0 and not strict:
        return None
    if share < 1.0 and (strict or share >= 0.9):
        bad_positions = np.flatnonzero(column.notna().to_numpy() & pd.to_numeric(
            column.astype(str).str.strip(), errors="coerce").isna().to_numpy())
        first = int(bad_positions[0])
        raise DataError(
            f"{source_name(frame)}, {row_location(frame, first)}, column {target!r}: expected a number "
            f"(the target is numeric in {parsed.notna().sum()} of {len(present)} rows), found {column.iloc[first]!r}. "
            f"{len(bad_positions)} row(s) like this; fix or remove them, or leave the cell empty to drop the row.")
    if share < 0.9:
        return None
    return pd.to_numeric(column.astype(str).str.strip(), errors="coerce")


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def infer_kind(frame: pd.DataFrame, target: str, requested: str = "auto") -> str:
    """regression / binary / multiclass / multilabel from the target's values, or validate the requested kind.

    Multi-label is inferred only from list cells (JSON arrays in JSONL, lists in a DataFrame); delimited
    strings such as "billing|refund" need task.kind: multilabel, as a "|" may just be part of a class name.
    """
    if requested == "multilabel" or (requested == "auto" and frame[target].map(_is_list).any()):
        return "multilabel"
    numbers = numeric_target(frame, target, strict=requested == "regression")
    present = frame[target].dropna()
    n_classes = present.nunique()
    if requested == "regression":
        return "regression"
    if requested in ("binary", "multiclass"):
        if requested == "binary" and n_classes > 2:
            raise DataError(f"{source_name(frame)}: task.kind is binary but target {target!r} has {n_classes} classes")
        return requested
    if numbers is not None:
        finite = numbers[np.isfinite(numbers)]
        integer_valued = len(finite) > 0 and bool(np.all(np.mod(finite, 1) == 0))
        if not (integer_valued and finite.nunique() <= MAX_INTEGER_CLASSES and finite.nunique() < 0.5 * len(finite)):
            return "regression"
    return "binary" if n_classes <= 2 else "multiclass"


def target_values(frame: pd.DataFrame, target: str, kind: str, separator: str = DEFAULT_SEPARATOR) -> pd.Series:
    """The target column converted for the kind: floats (NaN for missing/inf), class labels as strings, or
    (multilabel) each row's label set as one canonical string: sorted, de-duplicated, joined by `separator`."""
    if kind == "multilabel":
        return frame[target].map(lambda cell: _label_set_text(cell, separator)).astype(object)
    if kind == "regression":
        values = numeric_target(frame, target, strict=True)
        return values.where(np.isfinite(values))
    column = frame[target]
    labels = column.astype(object).where(column.notna())
    # Classes are strings throughout (model files, reports, predictions); 1.0 and 1 are one class.
    return labels.map(lambda value: value if value is None or value != value else _label_text(value))


def _label_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label_set_text(cell, separator: str):
    if _is_list(cell):
        labels = [_label_text(v) for v in cell if not (v is None or v != v)]
    elif cell is None or (isinstance(cell, float) and cell != cell):
        return None  # missing: the row is dropped like any missing target (an empty list means "no labels")
    else:
        labels = [part.strip() for part in str(cell).split(separator)]
    return separator.join(sorted({label for label in labels if label}))


def label_sets(values, separator: str = DEFAULT_SEPARATOR) -> list[list[str]]:
    """Canonical multi-label strings → lists of labels ("" → no labels)."""
    return [[label for label in str(value).split(separator) if label] if value is not None else [] for value in values]


def label_matrix(values, labels: list[str], separator: str = DEFAULT_SEPARATOR) -> np.ndarray:
    """(rows, labels) 0/1 indicator matrix of canonical multi-label strings; unknown labels are ignored."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(values), len(labels)), dtype=np.int64)
    for row, present in enumerate(label_sets(values, separator)):
        for label in present:
            if label in index:
                matrix[row, index[label]] = 1
    return matrix


# Column names that usually hold what is to be predicted (compared case- and space-insensitively).
TARGET_NAMES = ("target", "label", "labels", "class", "y", "outcome", "answer", "sale_price", "saleprice", "price",
                "stars", "rating", "score", "category", "churn", "survived", "目的変数", "正解", "ラベル", "クラス",
                "分類", "カテゴリ", "評価")


def guess_target(frame: pd.DataFrame) -> str | None:
    """The column a user most likely wants predicted: a conventional name (label, target, price …), else the last
    column (where most published tables put it). `dojo check` and `dojo app` offer it; training never assumes it."""
    if frame.shape[1] == 0:
        return None
    plain = {str(column).strip().lower().replace(" ", "_").replace("-", "_"): column for column in frame.columns}
    for name in TARGET_NAMES:
        if name in plain:
            return plain[name]
    return frame.columns[-1]
