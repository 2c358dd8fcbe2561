"""Read CSV/TSV/JSONL/Parquet (or take a DataFrame) into pandas, failing with precise errors.

Every error names the file and, where the format has them, the line, column or byte offset,
says what was expected and what was found, and suggests the fix.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from . import encodings

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_PANDAS_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read(source, *, format: str = "auto", delimiter: str | None = None, encoding: str = "auto",
         prefer: str | None = None) -> pd.DataFrame:
    """Return a DataFrame whose attrs remember where each row came from (see `row_location`).

    encoding "auto" detects it (see encodings.py; `prefer` is a run's recorded encoding); attrs record the
    codec used ("encoding"), whether it was detected ("encoding_detected") and any doubt ("encoding_warning").
    """
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True).copy()
        frame.attrs = {"source": "<DataFrame>"}
        return frame
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        from .images import is_image_folder, read_folder, read_images

        if is_image_folder(path):
            return read_folder(path)
        frame = read_images(path)  # images to predict on (no labels)
        if frame is not None:
            return frame
        raise DataError(f"{path}: is a folder without class sub-folders or images; data must be one "
                        "CSV/TSV/JSONL/Parquet file, a folder of images per class (photos/cat/*.jpg, "
                        "photos/dog/*.jpg), a folder of images to predict on, or a detection dataset (a YOLO folder "
                        "with data.yaml, a COCO json, Pascal VOC xml)")
    kind = format if format != "auto" else SUFFIX_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; expected one of "
                        f"{', '.join(sorted(set(SUFFIX_FORMATS)))} (or set data.format)")
    if kind == "parquet":
        frame = _read_parquet(path)
    else:
        text, codec, warning = _decode(path, encoding, prefer)
        frame = _read_jsonl(path, text) if kind == "jsonl" else _read_delimited(path, text, kind, delimiter)
        frame.attrs.update(encoding=codec, encoding_detected=encoding == "auto", encoding_warning=warning)
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError(f"{path}: no data rows" + (f" (header has {frame.shape[1]} columns)" if frame.shape[1] else ""))
    frame.attrs.setdefault("source", str(path))
    return frame


def row_location(frame: pd.DataFrame, position: int) -> str:
    """'line L' in the source file for a 0-based row position, or 'row N' for in-memory data."""
    lines = frame.attrs.get("lines")
    if lines is not None:
        return f"line {int(lines[position])}"
    base = frame.attrs.get("line_base")
    if base is not None:
        return f"line {position + base}"
    return f"row {position}"


def source_name(frame: pd.DataFrame) -> str:
    return frame.attrs.get("source", "<data>")


def require_columns(where: str, present, needed: list[str]) -> None:
    """The one "missing columns" error for prediction inputs (files, frames, request records)."""
    missing = [column for column in needed if column not in present]
    if missing:
        raise DataError(f"{where}: missing {len(missing)} column(s) the model needs: "
                        f"{', '.join(repr(c) for c in missing)}. Expected columns: "
                        f"{', '.join(repr(c) for c in needed)}")


def _decode(path: Path, encoding: str, prefer: str | None = None) -> tuple[str, str, str | None]:
    """(text, codec used, warning or None). An explicit encoding is used as given, strictly."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    warning = None
    if encoding == "auto":
        codec, warning = encodings.detect(raw, str(path), prefer)
    else:
        codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    try:
        return raw.decode(codec), codec, warning
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (data.encoding / --encoding)") from None
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: {encodings.where(raw, error)} are not valid {encoding}. Expected {encoding} text; pass the "
            f"file's real encoding with --encoding, or --encoding auto to detect it."
        ) from None


def _read_delimited(path: Path, text: str, kind: str, delimiter: str | None) -> pd.DataFrame:
    if delimiter is None:
        delimiter = "\t" if kind == "tsv" else _sniff_delimiter(text)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, engine="c", on_bad_lines="error",
                            low_memory=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (no header row)") from None
    except pd.errors.ParserError as error:
        match = _PANDAS_FIELDS.search(str(error))
        if match:
            expected, line, found = match.groups()
            raise DataError(
                f"{path}, line {line}: expected {expected} fields (as in the header), found {found} "
                f"(delimiter {delimiter!r}). A value probably contains an unquoted {delimiter!r}; quote it or fix the row."
            ) from None
        raise DataError(f"{path}: cannot parse as delimited text ({error})") from None
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed and len(unnamed) == frame.shape[1]:
        raise DataError(f"{path}: the header row has no column names")
    frame.attrs["line_base"] = 2  # line 1 is the header
    return frame


def _sniff_delimiter(text: str) -> str:
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:  # a JSON array of records is common enough to accept
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {error.lineno}, column {error.colno}: invalid JSON ({error.msg})") from None
        frame = pd.DataFrame.from_records(records)
        frame.attrs["source"] = str(path)
        return frame
    records, lines = [], []
    # Records end at \n only: str.splitlines would also split inside a JSON string at U+2028/U+2029/NEL.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}, column {error.colno}: invalid JSON ({error.msg}). "
                            "Expected one JSON object per line.") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object ({{...}}), found {type(record).__name__}")
        records.append(record)
        lines.append(number)
    frame = pd.DataFrame.from_records(records)
    frame.attrs["lines"] = np.asarray(lines, dtype=np.int64)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types; all mean "not a readable parquet file"
        raise DataError(f"{path}: cannot read as Parquet ({type(error).__name__}: {error})") from None
