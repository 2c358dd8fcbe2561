"""Find and mask personal data (PII) in text, tables and JSON logs, offline, correct on Japanese text.

Pipeline: normalise → patterns → validators → overlap resolution → mask.

* Normalise: a copy of the text goes through NFKC one character at a time (full-width digits, ＠, （）, ideographic
  spaces become ASCII; dashes ー－‐–— between digits become "-"), each character remembering its original index:
  matches are found on the copy, the ORIGINAL is masked, and text outside a match is left exactly as it was.
* Patterns use explicit ASCII classes and lookarounds, never \\b or \\w: in Python those treat kana and kanji as
  word characters, so "連絡先はtaro@example.jpです" would have no boundary around the address.
* Validators: check digits (My Number, Luhn), card IIN prefixes, Japanese numbering-plan digit counts, E.164
  length, `ipaddress` for IPs. A pattern hit that fails its validator is not a finding.
* URL_CREDENTIALS masks only the `user:password` part of the URL; scheme, host and path stay readable.

Pseudonyms are HMAC-SHA256(key, kind + NUL + canonical value)[:8]; the canonical value ignores formatting (digits
only, +81 phones in 0-form, lower-case e-mail): "090-1234-5678" and "+81 90 1234 5678" share a pseudonym.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import privacy_names

# Highest priority first: an overlap is resolved in favour of the earlier kind, then the longer match. PERSON comes
# from an installed spaCy model only (privacy_names.py) and loses every overlap: the model calls some phones people.
KINDS = ("URL_CREDENTIALS", "EMAIL", "CREDIT_CARD", "MY_NUMBER", "PHONE", "IP_ADDRESS", "PERSON")
_PRIORITY = {kind: rank for rank, kind in enumerate(KINDS)}
PATTERN_KINDS = KINDS[:-1]  # what needs no model: cheap enough for every log line


@dataclass(frozen=True)
class Match:
    kind: str
    start: int  # position in the ORIGINAL string
    end: int
    text: str


# ---------------------------------------------------------------- normalisation with a position map

_DASHES = set("-‐‑‒–—―−ー－﹣ｰ")


def _normalise(text: str) -> tuple[str, list[int]]:
    """Return (normalised text, origin) where origin[j] is the original index of normalised character j."""
    if text.isascii():  # NFKC leaves ASCII alone: skip the per-character work for the common case
        return text, list(range(len(text)))
    characters: list[str] = []
    origin: list[int] = []
    for index, character in enumerate(text):
        # Character by character, not the whole string: NFKC may compose or expand (ｶﾞ → カ + ゙, ㌔ → キロ),
        # and per-character output is what lets every normalised position point back at one original one.
        pieces = unicodedata.normalize("NFKC", character)
        characters += pieces
        origin += [index] * len(pieces)
    # Dash look-alikes count as hyphens only between digits: "０９０ー１２３４" is a phone, "データ" stays data.
    for j in range(1, len(characters) - 1):
        if characters[j] in _DASHES and characters[j - 1].isdigit() and characters[j + 1].isdigit():
            characters[j] = "-"
    return "".join(characters), origin


def my_number_valid(digits: str) -> bool:
    """Japan's individual number: 12 digits, the last a check digit over the first 11 (official algorithm)."""
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        return False
    body = digits[:11]
    # P_n is the n-th digit counting from the right of the 11-digit body; Q_n = n + 1 (n ≤ 6) else n − 5.
    total = sum(int(body[11 - n]) * (n + 1 if n <= 6 else n - 5) for n in range(1, 12))
    return int(digits[11]) == (0 if total % 11 <= 1 else 11 - total % 11)


def luhn_valid(digits: str) -> bool:
    doubled = [int(character) * (2 if position % 2 else 1) for position, character in enumerate(reversed(digits))]
    return sum(value - 9 if value > 9 else value for value in doubled) % 10 == 0


def _card_brand_known(digits: str) -> bool:
    length, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return length in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16  # Mastercard
    if two in (34, 37):
        return length == 15  # Amex
    if 3528 <= four <= 3589:
        return 16 <= length <= 19  # JCB
    if two in (36, 38) or 300 <= int(digits[:3]) <= 305:
        return 14 <= length <= 19  # Diners
    if digits.startswith("6011") or two == 65:
        return 16 <= length <= 19  # Discover
    return False


def card_valid(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits.isdigit() and _card_brand_known(digits) and luhn_valid(digits)


# Japanese numbering plan: 11-digit numbers are mobile/IP/M2M (020, 050, 060, 070, 080, 090) or toll-free 0800;
# every other domestic number is 10 digits (fixed lines, 0120, 0570).
_ELEVEN_DIGIT_PREFIXES = ("020", "050", "060", "070", "080", "090", "0800")


def japanese_phone_valid(digits: str) -> bool:
    if len(digits) == 11:
        return digits.startswith(_ELEVEN_DIGIT_PREFIXES)
    ten_digits = len(digits) == 10 and digits[0] == "0" and digits[1] != "0"
    return ten_digits and not digits.startswith(_ELEVEN_DIGIT_PREFIXES[:6])


# ---------------------------------------------------------------- digit runs: PHONE, MY_NUMBER, CREDIT_CARD

# A run is digit groups joined by short separators; the kinds below try windows of whole groups, so a card
# followed by an unrelated number ("4111 1111 1111 1111 2025") is still found, and a window never cuts a group.
_RUN = re.compile(r"(?<![0-9])\+?\(?[0-9]+(?:(?:[-. ]|\) ?|\)-| ?\()[0-9]+)*")
_GROUP = re.compile(r"[0-9]+")
_PHONE_WORDS = ("tel", "fax", "phone", "mobile", "携帯")


def _windows(separators: list[str]) -> list[tuple[int, int]]:
    """(first, last) group windows, longest first, whose outer separators are spaces or the run's ends: dropping
    the "1-" of "1-090-1234-5678" must not leave a phone."""
    count = len(separators) + 1
    return [(first, last) for first in range(count) for last in range(min(count, first + 8) - 1, first - 1, -1)
            if (first == 0 or separators[first - 1] == " ") and (last == count - 1 or separators[last] == " ")]


def _phone_window_valid(norm: str, start: int, end: int, window: list[tuple[int, int]], plus: bool) -> bool:
    text = norm[start:end]
    if text.count("(") != text.count(")") or text.find(")") < text.find("("):
        return False
    digits = "".join(norm[a:b] for a, b in window)
    if plus:
        if not 10 <= len(digits) <= 15 or digits[0] == "0":  # E.164: country code never starts with 0
            return False
        # Japan: "+81 (0)3 …" and "+81 90 …" both mean the domestic 0-form
        return not digits.startswith("81") or japanese_phone_valid("0" + digits[2:].removeprefix("0"))
    # ASCII letters glued on the left make a bare number an id ("ORD09012345678"), unless they say "TEL".
    letter_before = start > 0 and norm[start - 1].isascii() and norm[start - 1].isalpha()
    if len(window) == 1 and letter_before and not norm[max(0, start - 6):start].lower().endswith(_PHONE_WORDS):
        return False
    if len(window) > 4 or not japanese_phone_valid(digits):
        return False
    first_group = window[0][1] - window[0][0]
    return len(window) == 1 or 2 <= first_group <= 5


# A bare 12-digit number passes the My Number check digit about 1 time in 11 (a bare 16-digit one starting with 4
# passes Luhn 1 in 10): when the text names it as some other identifier, it is that identifier.
_IDENTIFIER_WORDS = ("order", "invoice", "tracking", "注文", "伝票", "受付", "追跡", "請求", "口座", "会員")


def _card_shaped(lengths: list[int]) -> bool:
    return len(lengths) > 1 and 13 <= sum(lengths) <= 19 and lengths[0] == 4 and all(3 <= n <= 6 for n in lengths[1:])


def _named_as_identifier(norm: str, start: int) -> bool:
    before = norm[max(0, start - 14):start].lower()
    return any(word in before for word in _IDENTIFIER_WORDS)


def _digit_run_matches(norm: str, wanted: set[str]) -> list[tuple[str, int, int]]:
    found = []
    for run in _RUN.finditer(norm):
        if run.start() > 0 and norm[run.start() - 1] in ".,":
            continue  # a decimal or a thousands-separated amount, not the start of a number
        plus = run.group().startswith("+")
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
        for first, last in _windows([norm[groups[k][1]:groups[k + 1][0]] for k in range(len(groups) - 1)]):
            window = groups[first:last + 1]
            start, end = window[0][0], window[-1][1]
            inner = {norm[window[k][1]:window[k + 1][0]] for k in range(len(window) - 1)}
            digits = "".join(norm[a:b] for a, b in window)
            lengths = [b - a for a, b in window]
            plain = len(inner) <= 1 and inner <= {" ", "-"}  # cards and My Numbers use one separator style
            plain = plain and not (len(window) == 1 and _named_as_identifier(norm, start))
            # Part of a card-shaped run ("4111 1111 1111 1112", Luhn-invalid) is not a My Number or a shorter card.
            plain = plain and (len(window) == len(groups) or not _card_shaped([b - a for a, b in groups]))
            if "CREDIT_CARD" in wanted and plain and card_valid(digits) and (len(window) == 1 or _card_shaped(lengths)):
                found.append(("CREDIT_CARD", start, end))
            if "MY_NUMBER" in wanted and plain and lengths in ([12], [4, 4, 4]) and my_number_valid(digits):
                found.append(("MY_NUMBER", start, end))
            if "PHONE" in wanted:
                if first > 0 or not plus:
                    # "(03) 1234-5678": the opening parenthesis belongs to the number
                    if norm[start - 1:start] == "(" and norm[window[0][1]:window[0][1] + 1] == ")":
                        start -= 1
                    if _phone_window_valid(norm, start, end, window, plus=False):
                        found.append(("PHONE", start, end))
                elif _phone_window_valid(norm, run.start(), end, window, plus=True):
                    found.append(("PHONE", run.start(), end))
    return found


_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])(?P<local>[A-Za-z0-9._%+-]{1,64})@"
                    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![A-Za-z0-9-])")
# Credentials are ASCII up to the LAST "@" before the path: people do paste passwords with a raw "@" in them.
# The user may be empty ("redis://:secret@host").
_URL_CREDENTIALS = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://"
                              r"(?P<value>(?:(?![/?#@:])[!-~])*:(?:(?![/?#])[!-~])+)@(?=[A-Za-z0-9\[])")
# Not inside a longer dotted number: 1.2.3.4.5 is a version string, not an address.
_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])")
# "IP:2001:db8::1" may start after a label's colon, "std::vector" may not. Bounded repetitions, not nested
# stars, so a long hex or colon string cannot make the regex backtrack for ages.
_IPV6 = re.compile(r"(?:(?<![0-9A-Za-z:._])|(?<=[A-Za-z]:))(?:[0-9A-Fa-f]{0,4}:){2,7}"
                   r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4})(?![0-9A-Za-z_%:])")
_LAST_WORD = re.compile(r"(?:[A-Za-z]+\.?|バージョン)$")
_VERSION_WORDS = {"version", "ver", "ver.", "v", "v.", "バージョン", "firmware", "release", "build"}


def _is_ip(candidate: str) -> bool:
    try:
        return bool(ipaddress.ip_address(candidate))
    except ValueError:
        return False


def _pattern_matches(norm: str, wanted: set[str]) -> list[tuple[str, int, int]]:
    found = []
    if "EMAIL" in wanted:
        for m in _EMAIL.finditer(norm):
            local = m.group("local")
            if not (local.startswith(".") or local.endswith(".") or ".." in local):
                found.append(("EMAIL", m.start(), m.end()))
    if "URL_CREDENTIALS" in wanted:
        found += [("URL_CREDENTIALS", m.start("value"), m.end("value")) for m in _URL_CREDENTIALS.finditer(norm)]
    if "IP_ADDRESS" in wanted:
        for m in _IPV4.finditer(norm):
            word = _LAST_WORD.search(norm[max(0, m.start() - 12):m.start()].rstrip(" :"))
            if word and word.group().lower() in _VERSION_WORDS:
                continue  # "version 1.2.3.4" is well-formed IPv4 but is a version number
            if _is_ip(m.group()):
                found.append(("IP_ADDRESS", m.start(), m.end()))
        for m in _IPV6.finditer(norm):
            candidate = m.group().rstrip(".:")
            if sum(1 for part in candidate.split(":") if part) < 2:
                continue  # "::" or "::1" alone is too thin to be worth masking
            if _is_ip(candidate):
                found.append(("IP_ADDRESS", m.start(), m.start() + len(candidate)))
    return found


def _wanted(kinds: Iterable[str] | None) -> set[str]:
    if kinds is None:
        return set(KINDS)
    wanted = {kinds} if isinstance(kinds, str) else set(kinds)
    if unknown := wanted - set(KINDS):
        raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    return wanted


def find(text: str, kinds: Iterable[str] | None = None) -> list[Match]:
    """PII in `text`, positions in the original string, overlaps resolved by kind priority then length."""
    wanted = _wanted(kinds)
    norm, origin = _normalise(text)
    candidates = _pattern_matches(norm, wanted) + _digit_run_matches(norm, wanted)
    names = privacy_names.person_spans(text) if "PERSON" in wanted else []  # positions in the original text
    candidates.sort(key=lambda c: (_PRIORITY[c[0]], -(c[2] - c[1]), c[1]))
    kept: list[tuple[str, int, int]] = []
    for kind, start, end in candidates:
        if all(end <= other_start or start >= other_end for _, other_start, other_end in kept):
            kept.append((kind, start, end))
    matches = []
    for kind, start, end in sorted(kept, key=lambda c: c[1]):
        # end - 1 then + 1: a match that ends inside an expanded character (㌔ → キロ) covers all of it
        original_start, original_end = origin[start], origin[end - 1] + 1
        matches.append(Match(kind, original_start, original_end, text[original_start:original_end]))
    if names:  # a name that overlaps a pattern match keeps its parts outside it: none of it leaks
        taken = [(match.start, match.end) for match in matches]
        matches += [Match("PERSON", start, end, text[start:end])
                    for start, end in privacy_names.outside(text, names, taken)]
    return sorted(matches, key=lambda match: match.start)



def _canonical(kind: str, value: str) -> str:
    """The value the pseudonym hashes: formatting differences must not change the pseudonym."""
    norm, _ = _normalise(value)
    if kind in ("PHONE", "MY_NUMBER", "CREDIT_CARD"):
        digits = "".join(c for c in norm if c.isdigit())
        if kind == "PHONE" and norm.lstrip().startswith("+81"):
            digits = "0" + digits[2:].removeprefix("0")
        return digits
    if kind == "EMAIL":
        return norm.lower()
    if kind == "PERSON":
        return "".join(norm.split())  # 「山田 太郎」 and 「山田太郎」 are one person
    return str(ipaddress.ip_address(norm)) if kind == "IP_ADDRESS" else norm  # find() validated it already


def _placeholder(kind: str, value: str, mode: str, key: bytes | None) -> str:
    if mode == "redact":
        return f"<{kind}>"
    digest = hmac.new(key, f"{kind}\0{_canonical(kind, value)}".encode(), hashlib.sha256).hexdigest()
    return f"<{kind}:{digest[:8]}>"


def _check_mode(mode: str, key: bytes | None) -> None:
    if mode not in ("redact", "pseudonym"):
        raise ValueError(f"mode must be 'redact' or 'pseudonym', not {mode!r}")
    if mode == "pseudonym" and not (isinstance(key, (bytes, bytearray)) and key):
        raise ValueError("pseudonym mode needs a non-empty bytes key: unkeyed hashes of phone numbers are reversible")


def mask(text: str, mode: str = "redact", key: bytes | None = None, kinds: Iterable[str] | None = None) -> str:
    """`text` with each PII match replaced by <KIND> (redact) or <KIND:8 hex> (pseudonym, needs `key`)."""
    _check_mode(mode, key)
    pieces, position = [], 0
    for match in find(text, kinds):
        pieces += [text[position:match.start], _placeholder(match.kind, match.text, mode, key)]
        position = match.end
    pieces.append(text[position:])
    return "".join(pieces)


def _number_match(value: Any) -> Match | None:
    """The My Number or card that a whole number (int, numpy integer, integral float) is in full, else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None  # None, pd.NA, dates and other objects are returned unchanged by the callers
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer()):
        return None  # NaN, inf and fractions are never PII numbers
    digits = str(int(value))
    matches = find(digits, kinds=("MY_NUMBER", "CREDIT_CARD"))
    return matches[0] if len(matches) == 1 and matches[0].text == digits else None


def mask_value(value: Any, mode: str = "redact", key: bytes | None = None, kinds: Iterable[str] | None = None) -> Any:
    """Strings masked; a number that is itself a valid My Number or card becomes a masked string; rest unchanged."""
    _check_mode(mode, key)
    if isinstance(value, str):
        return mask(value, mode, key, kinds)
    match = _number_match(value)
    return value if match is None else _placeholder(match.kind, match.text, mode, key)


def mask_frame(frame: pd.DataFrame, columns: Iterable[str] | None = None, mode: str = "redact",
               key: bytes | None = None) -> pd.DataFrame:
    """A masked copy of `frame`; by default every column (numbers are masked only when they are PII-like)."""
    _check_mode(mode, key)
    result = frame.copy()
    for column in (list(frame.columns) if columns is None else list(columns)):
        series = result[column]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
            continue  # neither can hold PII text or a 12+ digit number
        masked = series.map(lambda value: mask_value(value, mode, key))
        if not masked.equals(series):
            result[column] = masked
    return result


def mask_json(obj: Any, mode: str = "redact", key: bytes | None = None, kinds: Iterable[str] | None = None) -> Any:
    """Mask every string and PII-like number in nested dicts/lists (request/response logs). Keys are kept."""
    _check_mode(mode, key)
    if isinstance(obj, dict):
        return {name: mask_json(item, mode, key, kinds) for name, item in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_json(item, mode, key, kinds) for item in obj]
    return mask_value(obj, mode, key, kinds)


NAME_SCAN_CELLS = 300  # per column: a name model takes ~14 ms a cell, patterns ~0.01 ms


def _cell_kinds(value: Any, names: bool = True) -> set[str]:
    matches = find(value, None if names else PATTERN_KINDS) if isinstance(value, str) else [_number_match(value)]
    return {match.kind for match in matches if match}


def scan_frame(frame: pd.DataFrame, sample_rows: int = 20000, seed: int = 0) -> list[dict]:
    """Which columns hold which PII kinds, on a seeded sample of rows; reports counts and row positions only,
    never the values, so the report itself is safe to log."""
    positions = np.arange(len(frame))
    if len(frame) > sample_rows:
        positions = np.sort(np.random.default_rng(seed).choice(len(frame), size=sample_rows, replace=False))
    report = []
    for column_index, column in enumerate(frame.columns):
        values = frame.iloc[positions, column_index]
        found = [(int(position), kinds) for number, (position, value) in enumerate(zip(positions, values))
                 if (kinds := _cell_kinds(value, names=number < NAME_SCAN_CELLS))]
        if found:
            counts = {kind: sum(kind in kinds for _, kinds in found) for kind in KINDS}
            report.append({"column": column, "kinds": {kind: n for kind, n in counts.items() if n}, "cells": len(found),
                           "rows_scanned": int(len(positions)), "examples": [position for position, _ in found[:5]]})
    return report


def entities(text: str) -> list[Match]:
    """Person names from an installed spaCy model (privacy_names.py); [] when there is none. Never downloads."""
    return [Match("PERSON", start, end, text[start:end]) for start, end in privacy_names.person_spans(text)]
