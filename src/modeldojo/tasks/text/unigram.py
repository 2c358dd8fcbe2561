"""Writing a SentencePiece-Unigram vocabulary (XLM-RoBERTa's) as a Hugging Face tokenizer folder.

The vocabulary arrives as pieces + scores + a per-code-point normalisation table (what XLM-R's "Precompiled"
normaliser does to each single character: NFKC, plus dropping control characters and turning odd spaces
into a space). The `tokenizers` library can only run a Precompiled normaliser from SentencePiece's binary
trie, which we do not have; NFKC reproduces the table for all but a few dozen code points, so the normaliser
written here is NFKC wrapped in exactly the corrections the table calls for, computed from the table itself:
characters it removes, characters it turns into a space, and characters it keeps although NFKC would change
them (for XLM-R: the fullwidth tilde `～` common in Japanese, and U+1F23B). Those last ones are parked on
private-use code points while NFKC runs and put back afterwards.

Pre-tokenisation is WhitespaceSplit + Metaspace (`▁`, prepended to every word), as transformers builds
XLM-R's tokenizer; post-processing wraps a text as `<s> … </s>`.

The tokenizer class is the generic `PreTrainedTokenizerFast` (transformers' TokenizersBackend), not
`XLMRobertaTokenizer`: transformers 5 rebuilds an XLMRobertaTokenizer from the bare vocabulary and would drop
this normaliser."""
from __future__ import annotations

import json
from pathlib import Path

PARKED_BASE = 0xF0000  # Supplementary Private Use Area-A: NFKC leaves it alone and real text never uses it
TABLE_LIMIT = 0x30000  # the table covers code points below this (planes 0–2)
SPECIAL_NAMES = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
                 "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}


def corrections(table: dict[int, str]) -> dict[str, list[int]]:
    """How the table differs from plain NFKC, per single code point: {'removed', 'spaced', 'kept', 'other'}.
    'other' (a different replacement altogether) is empty for XLM-R; it is applied before NFKC."""
    from tokenizers import normalizers

    nfkc = normalizers.NFKC()
    found: dict[str, list[int]] = {"removed": [], "spaced": [], "kept": [], "other": []}
    for code in range(TABLE_LIMIT):
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters
            continue
        character = chr(code)
        wanted = table.get(code, character)
        if wanted == nfkc.normalize_str(character):
            continue
        key = "removed" if wanted == "" else "spaced" if wanted == " " else "kept" if wanted == character else "other"
        found[key].append(code)
    return found


def _character_class(codes: list[int]) -> str:
    escaped = "".join("\\" + chr(c) if chr(c) in "\\]^-[" else chr(c) for c in codes)
    return f"[{escaped}]"


def normalizer(table: dict[int, str]):
    """A `tokenizers` normaliser equal to the per-code-point `table` on every single character it covers."""
    from tokenizers import Regex, normalizers

    found = corrections(table)
    steps = []
    if found["removed"]:
        steps.append(normalizers.Replace(Regex(_character_class(found["removed"])), ""))
    if found["spaced"]:
        steps.append(normalizers.Replace(Regex(_character_class(found["spaced"])), " "))
    steps += [normalizers.Replace(chr(code), table[code]) for code in found["other"]]
    steps += [normalizers.Replace(chr(code), chr(PARKED_BASE + index)) for index, code in enumerate(found["kept"])]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(chr(PARKED_BASE + index), chr(code)) for index, code in enumerate(found["kept"])]
    return normalizers.Sequence(steps)


def build(pieces: list[str], scores: list[float], unknown_id: int, table: dict[int, str]):
    """The `tokenizers.Tokenizer`: Unigram over (piece, score), the table's normaliser, Metaspace words."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(list(zip(pieces, (float(s) for s in scores))), unk_id=unknown_id,
                                  byte_fallback=False))
    tokenizer.normalizer = normalizer(table)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    index = {piece: position for position, piece in enumerate(pieces)}
    specials = sorted(set(SPECIAL_NAMES.values()), key=index.__getitem__)
    # Special tokens are matched before the model sees the text, so "</s>" joining two columns stays one token.
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    bos, eos = SPECIAL_NAMES["bos_token"], SPECIAL_NAMES["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, index[bos]), (eos, index[eos])])
    return tokenizer


def write(folder: Path, pieces: list[str], scores: list[float], unknown_id: int, table: dict[int, str],
          max_length: int) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json: `AutoTokenizer.from_pretrained(folder)`."""
    missing = [token for token in SPECIAL_NAMES.values() if token not in pieces]
    if missing:
        raise ValueError(f"the vocabulary lacks the special token(s) {missing}")
    folder.mkdir(parents=True, exist_ok=True)
    build(pieces, scores, unknown_id, table).save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
                # XLM-R has a single segment type: no token_type_ids in the encodings
                "model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": False,
                **SPECIAL_NAMES}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_NAMES, indent=2), encoding="utf-8")
