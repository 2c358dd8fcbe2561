"""Unicode and Japanese-format normalisation of table cells before any type is inferred (data.normalize_text).

Files from Excel on Japanese Windows write one value several ways: full-width digits and letters (１，２３４,
ＡＢＣ), half-width katakana next to full-width (ｶﾞｲﾄﾞ, ガイド), amounts with yen marks, dates as 2024年1月5日
or in the imperial era (令和6年1月5日, R6.1.5). Left alone, a number column is read as text and one category
becomes two. So every column of text cells that is not prose (free text stays as written: its wording is the
model's input; image paths stay as written: they name files) goes through:
  1. NFKC, cell by cell: compatibility forms become their plain equivalents (ＡＢＣ１２３ → ABC123,
     ｶﾞｲﾄﾞ → ガイド, ㍻ → 平成, ① → 1, ㈱ → (株)).
  2. numbers: if every present cell then reads as a number, the column becomes numbers. Thousands separators
     in groups of three (1,234,567.5); one currency per column (¥ / "\\" — the yen sign as cp932 decodes it —
     / 円 / $ / € / £), never two; minus as -, −, ▲ or △ (the last two: Japanese accounting).
  3. dates: else, if every present cell reads as a year-first date and at least one is written the Japanese
     way, the column becomes dates: 2024年1月5日, 令和6年1月5日 (元年 = year 1), the one-character and Latin era
     abbreviations 令6.1.5 / R6.1.5 / H31/4/30 (Excel's "ge.m.d"), and Western 2024/1/5 or 2024-01-05 cells
     alongside; an optional weekday (金) and time 10:30[:00] may follow. Era years convert arithmetically
     (平成32年 = 2020, as pre-printed forms used it). Columns of Western dates only are left to the model's own
     type inference, which already reads them.
A column whose cells mostly (80 %) but not all read as numbers or dates is left as text and reported,
so no value is ever turned into a missing one here.

The decisions are taken once, on the training table (`normalize_table`), recorded with the model (the plan, plain
JSON) and replayed by `apply_plan` on data to evaluate or predict, with the same cell functions, cell by cell:
a row is read as the training rows were, whatever else is in its batch. A new cell that does not read (an
unknown currency, a typo) stays text, for the model to treat as it treats any unreadable value.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from .freetext import free_text_columns
from .images import image_columns
from .readers import row_location

PLAN_VERSION = 1
MOSTLY = 0.8  # a column that does not convert is reported when at least this share of its cells reads
EXAMPLES = 3

ERAS = {"明治": 1868, "大正": 1912, "昭和": 1926, "平成": 1989, "令和": 2019}  # first (元) year of each era
ERA_ABBREVIATIONS = {"明": "明治", "大": "大正", "昭": "昭和", "平": "平成", "令": "令和",
                     "M": "明治", "T": "大正", "S": "昭和", "H": "平成", "R": "令和"}
CURRENCIES = {"¥": "¥", "\\": "¥", "円": "¥", "$": "$", "€": "€", "£": "£"}
_MINUS = "-−▲△"

_NUMBER = re.compile(r"""
    (?P<sign>[-+−▲△])?\s*(?P<prefix>[¥\\$€£])?\s*(?P<inner_sign>[-+−▲△])?
    (?P<digits>[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?
              |[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?
              |\.[0-9]+(?:[eE][-+]?[0-9]+)?)
    \s*(?P<suffix>円)?""", re.VERBOSE)
_ERA_NAMES = "|".join([*ERAS, *ERA_ABBREVIATIONS, *(name.lower() for name in ERA_ABBREVIATIONS if name.isascii())])
_DATE = re.compile(rf"""
    (?:(?P<era>{_ERA_NAMES})\s*(?P<era_year>元|[0-9]{{1,2}})|(?P<year>[0-9]{{4}}))
    (?:\s*年\s*(?P<kanji_month>[0-9]{{1,2}})\s*月\s*(?P<kanji_day>[0-9]{{1,2}})\s*日
      |(?P<separator>[/.-])(?P<month>[0-9]{{1,2}})(?P=separator)(?P<day>[0-9]{{1,2}}))
    (?:\s*\([月火水木金土日](?:曜日?)?\))?
    (?:(?:\s+|T)(?P<hour>[0-9]{{1,2}}):(?P<minute>[0-9]{{2}})(?::(?P<second>[0-9]{{2}}))?)?""", re.VERBOSE)


# -- one cell ---------------------------------------------------------------------------------------------
def fold(value):
    """NFKC for text cells (ASCII is already normal: skipped for speed); other cells as they are."""
    if isinstance(value, str) and not value.isascii():
        return unicodedata.normalize("NFKC", value)
    return value


def read_number(text: str) -> tuple[str, str | None] | None:
    """(the number as plain ASCII, e.g. "-1234.5", its currency or None) for a folded cell, or None."""
    match = _NUMBER.fullmatch(text.strip())
    if not match or (match["sign"] and match["inner_sign"]) or (match["prefix"] and match["suffix"]):
        return None
    sign = match["sign"] or match["inner_sign"]
    marker = match["prefix"] or match["suffix"]
    return ("-" if sign and sign in _MINUS else "") + match["digits"].replace(",", ""), CURRENCIES.get(marker)


def read_date(text: str) -> tuple[datetime, bool] | None:
    """(the date, whether it was written the Japanese way) for a folded cell, or None."""
    match = _DATE.fullmatch(text.strip())
    if not match:
        return None
    era = match["era"]
    if era:
        era = ERA_ABBREVIATIONS.get(era.upper() if era.isascii() else era, era)
        if match["era"].isascii() and match["separator"] == "-":  # S1-2-3, R2-1-1: codes and room numbers
            return None
        era_year = 1 if match["era_year"] == "元" else int(match["era_year"])
        year = ERAS[era] + era_year - 1
    else:
        year = int(match["year"])
    month, day = (match["kanji_month"], match["kanji_day"]) if match["kanji_month"] else (match["month"], match["day"])
    if not 1678 <= year <= 2261 or (era and era_year < 1):  # pandas' datetime64[ns] range
        return None
    try:
        stamp = datetime(year, int(month), int(day), int(match["hour"] or 0), int(match["minute"] or 0),
                         int(match["second"] or 0))
    except ValueError:  # 2月30日, 25:00
        return None
    return stamp, bool(era or match["kanji_month"])


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _number(value) -> tuple[str, str | None] | None:
    """(plain number text, currency or None) for a folded present cell, or None. Numbers in a column of
    mixed cells (JSON) count as read; booleans do not."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return repr(value.item() if isinstance(value, np.generic) else value), None
    return read_number(value) if isinstance(value, str) else None


def _read_cell(cell, rule: dict[str, Any]) -> tuple[bool, Any]:
    """(read, value) of a present cell under a column's rule: its number text or date, else its folded text."""
    folded = fold(cell)
    if rule["as"] == "number":
        number = _number(folded)
        if number and number[1] in (None, rule.get("currency")):
            return True, number[0]
    elif rule["as"] == "date" and isinstance(folded, str):
        date = read_date(folded)
        if date:
            return True, pd.Timestamp(date[0])
    return False, folded


# -- one column -------------------------------------------------------------------------------------------
def _convert(values: pd.Series, rule: dict[str, Any]) -> pd.Series | None:
    """The column as its rule reads it, or None when nothing changes. A cell that does not read stays (folded)
    text, and the column then holds numbers (or dates) and text side by side."""
    kind = rule["as"]
    if kind == "number" and pd.api.types.is_numeric_dtype(values) or \
            kind == "date" and pd.api.types.is_datetime64_any_dtype(values) or \
            not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return None
    cells = values.tolist()
    results = [(True, None) if _missing(cell) else _read_cell(cell, rule) for cell in cells]
    if kind == "text":
        if all(value is None or value is cell or isinstance(cell, str) and value == cell
               for cell, (_, value) in zip(cells, results)):
            return None
        return pd.Series([cell if value is None else value for cell, (_, value) in zip(cells, results)],
                         index=values.index, dtype=values.dtype)
    if all(read for read, _ in results):  # a proper column, typed as pandas types the same plain text
        plain = pd.Series([value for _, value in results], index=values.index, dtype=object)
        if kind == "date":
            return pd.to_datetime(plain)
        try:
            numbers = pd.to_numeric(plain)
        except (ValueError, OverflowError):  # an integer beyond int64/uint64: as a float, like other huge numbers
            return plain.map(lambda value: np.nan if value is None else float(value)).astype(float)
        return numbers if pd.api.types.is_numeric_dtype(numbers) else numbers.astype(float)
    mixed = [cell if value is None else float(value) if read and kind == "number" else value
             for cell, (read, value) in zip(cells, results)]
    return pd.Series(mixed, index=values.index, dtype=object)


def _foldable(cell) -> bool:
    return isinstance(cell, (str, int, float, np.integer, np.floating)) and not isinstance(cell, (bool, np.bool_))


def _decide(frame: pd.DataFrame, column) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The rule for one training column, and what to report about it."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values):
        return None, []
    if pd.api.types.is_numeric_dtype(values):  # already numbers: new files may still write them full-width
        return {"as": "number", "currency": None}, []
    if pd.api.types.is_datetime64_any_dtype(values):
        return {"as": "date"}, []
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return None, []
    present = [(position, cell) for position, cell in enumerate(values.tolist()) if not _missing(cell)]
    if not present or not all(_foldable(cell) for _, cell in present):  # lists, dicts, arrays, booleans
        return None, []
    name, count = str(column), len(present)
    folded = [fold(cell) for _, cell in present]
    numbers = [_number(value) for value in folded]
    currencies = sorted({number[1] for number in numbers if number and number[1]})
    read = sum(number is not None for number in numbers)
    if read == count and len(currencies) <= 1:
        rewritten = [(cell, number[0]) for (_, cell), number in zip(present, numbers) if str(cell) != number[0]]
        example = f", e.g. {rewritten[0][0]!r} → {rewritten[0][1]}" if rewritten else ""
        unit = f"; currency {currencies[0]}" if currencies else ""
        return {"as": "number", "currency": currencies[0] if currencies else None}, [_entry(
            "normalized", "info", f"column {name!r}: read as numbers ({_cells(count)}, {len(rewritten)} rewritten"
            f"{example}{unit})", name, {"as": "number", "cells": count, "rewritten": len(rewritten)})]
    entries = []
    if read == count:
        entries.append(_entry("not_normalized", "warning", f"column {name!r} holds amounts in several currencies "
                              f"({', '.join(currencies)}); it is left as text rather than mixing units: convert or "
                              "split it by currency", name, {"as": "number", "currencies": currencies}))
    elif read >= MOSTLY * count:
        entries.append(_unread(frame, name, "numbers", present, [number is not None for number in numbers]))
    dates = [read_date(value) if isinstance(value, str) else None for value in folded]
    japanese = [position for (position, cell), date in zip(present, dates) if date and date[1]]
    dated = sum(date is not None for date in dates)
    if japanese and dated == count:
        first = next(cell for (_, cell), date in zip(present, dates) if date[1])
        example = read_date(fold(first))[0]
        shown = example.date().isoformat() if example.time() == datetime.min.time() else example.isoformat(" ")
        return {"as": "date"}, entries + [_entry(
            "normalized", "info", f"column {name!r}: read as dates ({_cells(count)}, {len(japanese)} written the "
            f"Japanese way, e.g. {first!r} → {shown})", name, {"as": "date", "cells": count})]
    if japanese and dated >= MOSTLY * count:
        entries.append(_unread(frame, name, "dates", present, [date is not None for date in dates]))
    changed = [(cell, value) for (_, cell), value in zip(present, folded) if value != cell]
    if changed:
        before, after = len({str(cell) for _, cell in present}), len({str(value) for value in folded})
        entries.append(_entry("normalized", "info", f"column {name!r}: {_cells(len(changed))} NFKC-normalised "
                              f"(full-width / half-width forms, e.g. {changed[0][0]!r} → {changed[0][1]!r}); "
                              f"{before} distinct values became {after}", name,
                              {"as": "text", "cells": len(changed), "distinct_before": before,
                               "distinct_after": after}))
    return {"as": "text"}, entries


def _unread(frame: pd.DataFrame, name: str, what: str, present: list, read: list[bool]) -> dict[str, Any]:
    failed = [(position, cell) for (position, cell), ok in zip(present, read) if not ok]
    shown = list(dict.fromkeys(str(cell) for _, cell in failed))[:EXAMPLES]
    return _entry("not_normalized", "warning", f"column {name!r} reads as {what} in {len(present) - len(failed)} "
                  f"of {len(present)} cells but not in {len(failed)} ({', '.join(map(repr, shown))}; first at "
                  f"{row_location(frame, failed[0][0])}); it is left as text: correct or empty those cells to "
                  f"have it read as {what}", name, {"as": what, "unread": len(failed), "examples": shown})


def _cells(count: int) -> str:
    return f"{count} cell" + ("" if count == 1 else "s")


def _entry(code: str, severity: str, message: str, column: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "severity": severity, "message": message, "column": column, "details": details}


# -- the table --------------------------------------------------------------------------------------------
def normalize_table(frame: pd.DataFrame, skip=()) -> pd.DataFrame:
    """Training: decide each column's rule, apply it, and leave the plan (attrs "normalization", JSON, to save
    with the model) and what changed (attrs "normalization_report", findings for the check report).

    Left as written: `skip` (e.g. configured text columns), free-text columns and image columns."""
    skip = set(skip) | set(free_text_columns(frame, set())) | set(image_columns(frame, set()))
    plan: dict[str, Any] = {"version": PLAN_VERSION, "columns": {}}
    report: list[dict[str, Any]] = []
    for column in frame.columns:
        if column in skip:
            continue
        rule, entries = _decide(frame, column)
        if rule is not None:
            plan["columns"][str(column)] = rule
        report += entries
    out = apply_plan(frame, plan)
    if out is frame:
        out = frame.copy(deep=False)
    out.attrs = {**frame.attrs, "normalization": plan, "normalization_report": report}
    return out


def apply_plan(frame: pd.DataFrame, plan: dict[str, Any] | None) -> pd.DataFrame:
    """The recorded rules on rows to evaluate or predict, with the same cell functions as training. A column the
    plan names but the rows lack is left to the model's own missing-column error."""
    if not plan or not plan.get("columns"):
        return frame
    by_name = {str(column): column for column in frame.columns}
    converted = {}
    for name, rule in plan["columns"].items():
        if name in by_name:
            values = _convert(frame[by_name[name]], rule)
            if values is not None:
                converted[by_name[name]] = values
    if not converted:
        return frame
    out = frame.copy(deep=False)
    for column, values in converted.items():
        out[column] = values
    out.attrs = dict(frame.attrs)
    return out


def apply_plan_to_records(records: list[dict[str, Any]], plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`apply_plan` for rows that arrive one record at a time (a server's JSON, an export's runtime): the same
    cell functions, with no DataFrame whose column types would depend on the batch."""
    if not plan or not plan.get("columns"):
        return records
    rules = plan["columns"]
    out = []
    for record in records:
        changed = dict(record)
        for name, rule in rules.items():
            cell = changed.get(name)
            if name not in changed or _missing(cell) or not isinstance(cell, str):
                continue
            read, value = _read_cell(cell, rule)
            changed[name] = (float(value) if rule["as"] == "number" else value) if read else value
        out.append(changed)
    return out


def mask_personal_data(frame: pd.DataFrame) -> pd.DataFrame:
    """data.mask_pii: e-mail addresses, phone numbers, My Numbers, card numbers … in text cells replaced by
    <EMAIL>, <PHONE> … (privacy.mask), in training and in every prediction alike."""
    from .. import privacy

    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_datetime64_any_dtype(frame[c])]
    masked = privacy.mask_frame(frame, columns=text)
    masked.attrs = dict(frame.attrs)
    return masked
