"""Tabular feature preparation with a JSON-serialisable state (no pickle).

What a user expects without asking: numeric-looking text becomes numbers, date columns are
expanded into parts, categoricals get a fixed category list (unseen values at prediction time
become missing and are counted), and identifiers / constants are left out.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError
from ...data.readers import source_name

DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
DATE_PARTS = ("year", "month", "day", "dayofweek", "dayofyear")
MAX_CATEGORIES = 1000  # rarer values are grouped as missing: keeps model files and one-hot sizes sane


class Preprocessor:
    def __init__(self, columns: dict[str, dict[str, Any]] | None = None) -> None:
        # column name → {"type": numeric|categorical|datetime, "categories": [...]}
        self.columns: dict[str, dict[str, Any]] = columns or {}

    # -- fitting -------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        for column in frame.columns:
            values = frame[column]
            kind = _column_type(values)
            spec: dict[str, Any] = {"type": kind}
            if kind == "categorical":
                counts = _as_text(values).value_counts()
                spec["categories"] = sorted(counts.index[:MAX_CATEGORIES].tolist())
            self.columns[str(column)] = spec
        return self

    @property
    def output_columns(self) -> list[str]:
        names = []
        for column, spec in self.columns.items():
            if spec["type"] == "datetime":
                names += [f"{column}_{part}" for part in DATE_PARTS]
            else:
                names.append(column)
        return names

    @property
    def categorical_columns(self) -> list[str]:
        return [c for c, spec in self.columns.items() if spec["type"] == "categorical"]

    # -- applying ------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
        """Model-ready features (floats and fixed-category pandas categoricals) and unseen-value counts."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"{source_name(frame)}: missing {len(missing)} column(s) the model was trained on: "
                            f"{', '.join(repr(c) for c in missing)}")
        out: dict[str, Any] = {}
        unseen: dict[str, int] = {}
        for column, spec in self.columns.items():
            values = frame[column]
            if spec["type"] == "numeric":
                out[column] = _to_float(values)
            elif spec["type"] == "datetime":
                stamps = _to_datetime(values)
                for part in DATE_PARTS:
                    out[f"{column}_{part}"] = getattr(stamps.dt, part).astype(float)
            else:
                text = _as_text(values)
                categorical = pd.Categorical(text, categories=spec["categories"])
                new = int((text.notna() & pd.isna(categorical)).sum())
                if new:
                    unseen[column] = new
                out[column] = categorical
        return pd.DataFrame(out, index=frame.index), unseen

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Preprocessor":
        return cls(state["columns"])


def category_codes(features: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categoricals as their codes (missing and unseen → NaN): what scikit-learn learns from, and what
    LightGBM compares its categorical splits against."""
    features = features.copy()
    for column in categorical:
        codes = features[column].cat.codes.astype(float)
        features[column] = codes.where(codes >= 0)
    return features


def _column_type(values: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    present = values.dropna()
    if present.empty:
        return "numeric"
    text = present.astype(str).str.strip()
    if pd.to_numeric(text, errors="coerce").notna().mean() >= 0.95:
        return "numeric"
    sample = text.iloc[:500]
    if sample.str.match(DATE_LIKE).mean() >= 0.9 and _to_datetime(sample).notna().mean() >= 0.9:
        return "datetime"
    return "categorical"


def _to_float(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.astype(float)
    else:
        numbers = pd.to_numeric(values.astype(str).str.strip().where(values.notna()), errors="coerce")
    return numbers.replace([np.inf, -np.inf], np.nan)


def _to_datetime(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    with warnings.catch_warnings():  # "could not infer format" is expected on mixed columns
        warnings.simplefilter("ignore")
        return pd.to_datetime(values, errors="coerce", format="mixed")


def _as_text(values: pd.Series) -> pd.Series:
    """Categories are strings; 1.0 and 1 are one category; missing stays missing."""
    def text(value):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()
    return values.map(text, na_action="ignore").astype(object).where(values.notna())
