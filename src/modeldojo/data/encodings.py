"""Text-encoding detection for CSV/TSV/JSONL files (`data.encoding: auto`, the default).

The order goes from proof to guess, so that a guess is only made when nothing certain applies:
  1. a BOM decides: UTF-8 BOM → utf-8-sig; UTF-16/32 BOM → utf-16/utf-32 (Excel's "Unicode text").
  2. strict UTF-8: multi-byte UTF-8 is self-checking, so text in another encoding almost never passes.
  3. strict cp932 (Excel on Japanese Windows; a superset of shift_jis with ①, ㈱, ～, 髙) and strict euc_jp.
     Python's cp932 maps the stray bytes 0x80, 0xA0, 0xFD-0xFF instead of failing, so a candidate must also
     *look* Japanese (score > 0). When both pass, the higher score wins; ties go to `prefer` (the encoding a
     run was trained with) or else cp932; a warning names the alternative.
  4. charset-normalizer, limited to Western code pages (cp1252, ISO-8859-15): it rejects text full of
     control characters, so garbage still fails. A guess, hence a warning.
latin-1 is never chosen: it decodes any bytes, so a wrong choice would load garbled text without a word.
"""
from __future__ import annotations

import re

from ..errors import DataError

BOMS = [(b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")]  # utf-32 first: its LE BOM starts with utf-16's
JAPANESE_CODECS = ("cp932", "euc_jp")
WESTERN_CODECS = ["cp1252", "iso8859_15"]
_ALIASES = {"shift_jis": "cp932", "sjis": "cp932", "windows_31j": "cp932", "ms932": "cp932", "eucjp": "euc_jp",
            "windows_1252": "cp1252", "latin_9": "iso8859_15", "iso_8859_15": "iso8859_15"}

# "Looks Japanese": evidence per byte. A kana, kanji, CJK punctuation, full-width or enclosed character (①, ㈱)
# takes 2 bytes in both codecs and counts 1. A half-width katakana takes 1 byte and counts 1/4: it is rare in
# real data but is what EUC-JP kana become when misread as cp932 (あ → ､｢), so it must not outweigh them.
# Characters no text holds (private use, controls, U+FFFD) are what a wrong codec produces: -2 each. So is a
# lone Japanese character followed by Latin letters: an accented letter of cp1252 text misread as cp932 takes
# the next letter as its second byte (Orléans → Orl + one kanji + ns): -2 as well (+1 - 3).
_JAPANESE_CHARS = "\u3000-\u30ff\u3200-\u33ff\u4e00-\u9fff\uf900-\ufaff\uff01-\uff60\uffe0-\uffe6\u2460-\u24ff"
_JAPANESE = re.compile(f"[{_JAPANESE_CHARS}]")
_HALF_WIDTH_KANA = re.compile("[\uff61-\uff9f]")
_LONE_BEFORE_LATIN = re.compile(f"(?<![{_JAPANESE_CHARS}\uff61-\uff9f])[{_JAPANESE_CHARS}](?=[A-Za-z])")
_IMPOSSIBLE = re.compile("[\ue000-\uf8ff\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def normalize(codec: str) -> str:
    name = codec.strip().lower().replace("-", "_")
    return _ALIASES.get(name, name)


def japanese_score(text: str) -> float:
    return (len(_JAPANESE.findall(text)) + 0.25 * len(_HALF_WIDTH_KANA.findall(text))
            - 2 * len(_IMPOSSIBLE.findall(text)) - 3 * len(_LONE_BEFORE_LATIN.findall(text)))


def detect(raw: bytes, name: str, prefer: str | None = None) -> tuple[str, str | None]:
    """(codec, warning or None) for the bytes of file `name`; DataError when no candidate fits.

    `prefer`: the encoding detected when the run was trained. It breaks cp932/euc_jp ties and, when the file
    is not UTF-8 or Japanese, is tried before guessing. It never overrides a BOM, UTF-8 or a clear score.
    """
    for bom, codec in BOMS:
        if raw.startswith(bom):
            return codec, None
    try:
        raw.decode("utf-8")
        return "utf-8", None
    except UnicodeDecodeError as error:
        utf8_error = error
    prefer = normalize(prefer) if prefer else None

    scores = {}
    for codec in JAPANESE_CODECS:
        try:
            scores[codec] = japanese_score(raw.decode(codec))
        except UnicodeDecodeError:
            continue
    scores = {codec: score for codec, score in scores.items() if score > 0}
    if len(scores) == 1:
        return next(iter(scores)), None
    if scores:
        first = prefer if prefer in scores else "cp932"
        best = max(scores, key=lambda codec: (scores[codec], codec == first))
        other = next(codec for codec in scores if codec != best)
        why = "looks less like Japanese text" if scores[other] < scores[best] else \
            "looks as Japanese; " + (f"the run used {best}" if best == prefer else "cp932 wins ties")
        return best, (f"{name}: read as {best}, but it is also valid {other} (which {why}); if the text looks "
                      f"garbled, pass --encoding {other}")

    if prefer and prefer not in JAPANESE_CODECS and not prefer.startswith("utf"):
        try:  # the run's own (Western) encoding beats a fresh guess
            raw.decode(prefer)
            return prefer, None
        except (UnicodeDecodeError, LookupError):
            pass
    from charset_normalizer import from_bytes

    match = from_bytes(raw, cp_isolation=WESTERN_CODECS).best()
    if match is not None:
        codec = normalize(match.encoding)
        return codec, (f"{name}: not UTF-8 or Japanese; guessed {codec} (Western European). If accented "
                       "letters look wrong, pass the real encoding with --encoding")
    raise DataError(
        f"{name}: cannot tell the text encoding: {where(raw, utf8_error)} are not valid UTF-8, and the file is "
        f"neither valid Japanese text (cp932, euc_jp) nor Western text (cp1252, iso8859_15). "
        f"Pass the file's real encoding with --encoding (e.g. gb18030, cp949, cp1251). Last resort: "
        f"--encoding latin-1 cannot fail, because it accepts any bytes, so a wrong choice loads garbled text "
        f"silently.")


def where(raw: bytes, error: UnicodeDecodeError) -> str:
    """'byte offset N (line L, column C): bytes xx yy' for a decoding error."""
    offset = error.start
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"byte offset {offset} (line {line}, column {column}): bytes {raw[error.start:error.end].hex(' ')}"
