"""Exporting a tuned chat model: a merged safetensors folder, and a GGUF file for llama.cpp and its kin.

Each export is checked against the model it came from with `parity`: greedy-generate with the reference, then
teacher-force that same sequence through both models and compare their logits position by position. Teacher
forcing (rather than comparing two independent generations) means one early near-tie that flips a token does
not cascade into a whole different answer and fail an otherwise faithful export.

The GGUF is written the way llama.cpp's `convert_hf_to_gguf.py` writes a Llama — same tensor names, Q/K rows
permuted into llama.cpp's rotary layout, 1-D tensors always f32, a q8_0 tensor whose rows do not split into
32-value blocks falls back to f16 — so that both llama.cpp and transformers' GGUF reader (which un-permutes
Q/K; `LlamaTensorProcessor` in transformers' `modeling_gguf_pytorch_utils.py`) read it back as the same model.
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .template import ChatTemplate

GGUF_TYPES = ("f32", "f16", "q8_0")
AGREEMENT = 0.99  # parity's default minimum share of positions whose top-1 token agrees

# Largest |logit difference| allowed against the adapter + base model, and the agreement each export can
# promise. Measured on SmolLM2-135M-Instruct (base_model.default_model(), float32, CPU) with a fresh LoRA r=8
# on q/k/v/o/gate/up/down (init_lora_weights=False: B nonzero), 32 teacher-forced greedy tokens of 6-12
# held-out prompts (192-384 positions), two LoRA seeds; reproduce with
#   MODELDOJO_MEASURE_EXPORT=1 pytest -s tests/test_chat_export.py -k smollm2
#                       agreement     max |logit diff|
#   merged              1.0           1.1e-4 - 1.6e-4   (float32 rounding: x(W + BA) vs xW + xAB)
#   gguf f32            1.0           the same (0.0 against the merged folder: identical weights)
#   gguf f16            0.997 - 1.0   0.048 - 0.062
#   gguf q8_0           0.966 - 0.984 1.3 - 2.0   (the base model alone, no adapter: 0.971, 1.26)
#   adapter dropped     0.76 - 0.78   10.3 - 20.8
#   Q/K not permuted    0.28          41 - 42
# Limits are ~3x the largest measured difference (2.5x for q8_0), each far below the two breakages. q8_0 flips
# ~3% of near-tied top-1 tokens (reference margins 0.02-0.13) on this 135M model, with or without an adapter,
# so it cannot promise 0.99: pass MIN_AGREEMENT[format] to parity.
TOLERANCES: dict[str, float] = {"merged": 5e-4, "f32": 5e-4, "f16": 0.2, "q8_0": 5.0}
MIN_AGREEMENT: dict[str, float] = {"merged": AGREEMENT, "f32": AGREEMENT, "f16": AGREEMENT, "q8_0": 0.93}


def write_merged(model: Any, tokenizer: Any, template: ChatTemplate, folder: Path) -> None:
    """Save `model` (a peft model with a LoRA adapter, or a plain causal LM) with its adapter merged into the
    weights, plus its tokenizer and chat template, as a folder `from_pretrained` loads without peft.

    The merge runs on a deep copy: the caller's model stays the adapter+base reference `parity` compares with."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = copy.deepcopy(model)
    if hasattr(merged, "merge_and_unload"):  # a PeftModel; a plain model has nothing to merge
        merged = merged.merge_and_unload()
    save = merged.save_pretrained
    # safetensors is the default on transformers >= 4.35, and 5.x dropped the flag: pass it only where it exists.
    extra = {"safe_serialization": True} if "safe_serialization" in inspect.signature(save).parameters else {}
    save(folder, **extra)
    if not any(folder.glob("*.safetensors")):
        raise ConfigError(f"saving the merged model wrote no safetensors file into {folder}")
    words = copy.deepcopy(tokenizer)  # setting the template must not change the caller's tokenizer
    words.chat_template = template.text
    words.save_pretrained(folder)
    jinja = folder / "chat_template.jinja"
    if not jinja.is_file():  # transformers < 4.47 keeps it only inside tokenizer_config.json
        jinja.write_bytes(template.text.encode("utf-8"))  # bytes: no newline translation, no trailing newline
    from transformers import AutoTokenizer

    # A template that reloads differently would silently change every prompt the exported model sees.
    if AutoTokenizer.from_pretrained(folder).chat_template != template.text:
        raise ConfigError(f"the chat template saved in {folder} does not reload byte-identical")


def write_gguf(merged_folder: Path, out_file: Path, dtype: str = "f16") -> None:
    """Write the merged Llama-architecture model in `merged_folder` as one GGUF file: weights in `dtype`
    ("f32", "f16" or "q8_0"), the hyperparameters, the byte-level BPE tokenizer and the chat template."""
    import gguf
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    if dtype not in GGUF_TYPES:
        raise ConfigError(f"GGUF type must be one of {', '.join(GGUF_TYPES)}, got {dtype!r}")
    merged_folder, out_file = Path(merged_folder), Path(out_file)
    config = AutoConfig.from_pretrained(merged_folder)
    if config.model_type != "llama":
        raise ConfigError(f"GGUF export supports the Llama architecture only; this model is {config.model_type!r}")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    scaling = rope.get("rope_type", rope.get("type", "default"))
    if scaling != "default":
        # llama.cpp needs extra keys (and for llama3 a rope_freqs tensor) that transformers' reader ignores.
        raise ConfigError(f"GGUF export does not write rope scaling {scaling!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError("GGUF export does not write Llama bias tensors: transformers' GGUF reader drops them")
    tokenizer = AutoTokenizer.from_pretrained(merged_folder)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope_theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))

    partial = out_file.with_name(out_file.name + ".partial")  # renamed when complete: no half file looks done
    out_file.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(partial, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        writer.add_name(merged_folder.name)
        writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_rope_freq_base(float(rope_theta))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(head_dim)  # transformers reads this key back as head_dim
        if head_dim != config.hidden_size // heads:  # llama.cpp assumes hidden/heads unless told
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        _add_tokenizer(writer, tokenizer, config.vocab_size)
        for name, array in _gguf_tensors(merged_folder, config, heads, kv_heads):
            if array.ndim == 1 or dtype == "f32":  # norms stay f32 in every file type, as in llama.cpp
                writer.add_tensor(name, array.astype(np.float32))
            elif dtype == "f16" or array.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]:
                writer.add_tensor(name, array.astype(np.float16))  # llama.cpp's fallback for unblockable rows
            else:
                blocks = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(name, blocks, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out_file)


def load_gguf(gguf_file: Path) -> tuple[Any, Any]:
    """The model (float32, dequantized) and tokenizer transformers builds from a GGUF file alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file).resolve()
    if not gguf_file.is_file():
        raise ConfigError(f"no GGUF file at {gguf_file}")
    # AutoTokenizer prefers a tokenizer.json / tokenizer_config.json lying beside the GGUF (the merged folder's,
    # say) over the file's own vocabulary, which would make a round-trip check pass without reading the file.
    # So both load from an otherwise empty folder holding only a link to it.
    with tempfile.TemporaryDirectory(prefix="modeldojo-gguf-") as alone:
        link = Path(alone) / gguf_file.name
        try:
            link.symlink_to(gguf_file)
        except OSError:  # no symlinks (Windows without the privilege): a copy reads the same
            shutil.copyfile(gguf_file, link)
        tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=link.name)
        model = AutoModelForCausalLM.from_pretrained(alone, gguf_file=link.name, dtype=torch.float32)
    return model.eval(), tokenizer


def parity(reference: Any, candidate: Any, prompts: list[list[int]], new_tokens: int = 32, *,
           tolerance: float, min_agreement: float = AGREEMENT) -> dict[str, Any]:
    """Compare `candidate` with `reference` on held-out prompts (token ids).

    For each prompt the reference greedily generates exactly `new_tokens` tokens; the prompt plus those tokens
    is then run through both models, and the logits at the `new_tokens` positions that predicted them are
    compared: `agreement` is the share of positions whose argmax is the same, `max_logit_diff` the largest
    absolute difference of any logit. `passed` needs agreement >= min_agreement and max_logit_diff <= tolerance."""
    import torch
    from transformers import GenerationConfig

    if not prompts or new_tokens < 1:
        raise ConfigError("parity needs at least one prompt and new_tokens >= 1")
    # min == max new tokens: every prompt contributes the same positions, even where the model would stop.
    # Every field that changes decoding is set (transformers fills None ones from the checkpoint's defaults).
    greedy = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                              repetition_penalty=1.0, no_repeat_ngram_size=0, use_cache=True)
    agree = total = 0
    worst = 0.0
    modes = [(model, model.training) for model in (reference, candidate)]
    try:
        for model, _ in modes:
            model.eval()
        with torch.no_grad():
            for prompt in prompts:
                ids = torch.tensor([prompt], dtype=torch.long, device=reference.device)
                sequence = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                              generation_config=greedy)
                start = len(prompt) - 1  # the logit at position p predicts token p + 1
                expected = _logits(reference, sequence, len(prompt))[start:start + new_tokens]
                got = _logits(candidate, sequence, len(prompt))[start:start + new_tokens]
                agree += int((expected.argmax(-1) == got.argmax(-1)).sum())
                total += expected.shape[0]
                worst = max(worst, float((expected - got).abs().max()))
    finally:
        for model, training in modes:
            model.train(training)
    agreement = agree / total
    return {"agreement": agreement, "max_logit_diff": worst, "positions": total, "tolerance": tolerance,
            "min_agreement": min_agreement, "passed": agreement >= min_agreement and worst <= tolerance}


# -- helpers -----------------------------------------------------------------------------------------

def _logits(model: Any, sequence: Any, prompt_length: int) -> Any:
    """One row's logits, float32 on the CPU, so that models on different devices or dtypes compare."""
    extra = {}
    if "prompt_lengths" in inspect.signature(model.forward).parameters:
        # A ReFT model edits only the prompt's positions when it generates; told nothing, it would take the
        # whole teacher-forced row for the prompt and edit other positions than its generation did.
        extra["prompt_lengths"] = [prompt_length]
    out = model(input_ids=sequence.to(model.device), use_cache=False, **extra)
    return out.logits[0].float().cpu()


def _permute(weights: Any, heads: int) -> Any:
    """Q/K rows from transformers' rotary layout (each head's first half, then its second half) to llama.cpp's
    interleaved pairs: convert_hf_to_gguf's `LlamaModel.permute`, which transformers' reader undoes."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_tensors(folder: Path, config: Any, heads: int, kv_heads: int):
    """(GGUF name, float32 numpy array) for every weight of the safetensors checkpoint in `folder`."""
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"no safetensors checkpoint in {folder}: write it with write_merged first")
    weights: dict[str, Any] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as shard:
            weights.update({key: shard.get_tensor(key) for key in list(shard.keys())})
    embedding = weights.get("model.embed_tokens.weight")
    head = weights.get("lm_head.weight")
    # Tied embeddings (SmolLM2): llama.cpp writes no output.weight and reuses token_embd, and transformers'
    # reader sets tie_word_embeddings exactly when output.weight is absent. Writing both would untie them.
    if head is not None and embedding is not None and getattr(config, "tie_word_embeddings", False) \
            and head.shape == embedding.shape and bool((head == embedding).all()):
        weights.pop("lm_head.weight")
    for key, tensor in weights.items():
        if key.endswith("rotary_emb.inv_freq"):  # a buffer computed from the config, not a weight
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConfigError(f"no GGUF name for the Llama tensor {key!r}")
        array = tensor.float().numpy()
        if name.endswith("attn_q.weight"):
            array = _permute(array, heads)
        elif name.endswith("attn_k.weight"):
            array = _permute(array, kv_heads)
        yield name, array


def _add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """The tokenizer as llama.cpp's "gpt2" (byte-level BPE) vocabulary: tokens in their byte-level spelling,
    merges, token types (special added tokens are CONTROL so they are never split), and the special ids."""
    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE" or "ByteLevel" not in json.dumps(state.get("pre_tokenizer")):
        raise ConfigError("GGUF export writes byte-level BPE tokenizers only (tokenizer.ggml.model 'gpt2')")
    if len(tokenizer) > vocab_size:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} embeddings")
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):  # ids past the tokenizer (padded embeddings) get llama.cpp's [PAD] names
        tokens.append(by_id.get(index, f"[PAD{index}]"))
        types.append(gguf.TokenType.UNUSED if index not in by_id else gguf.TokenType.NORMAL if index not in added
                     else gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in state["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(state.get("pre_tokenizer")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for attribute, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                           ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        if getattr(tokenizer, attribute, None) is not None:
            add(getattr(tokenizer, attribute))
    # What encoding plain text really adds, rather than a config flag that may not be honoured.
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a")
    writer.add_add_bos_token(len(full) > len(plain) and full[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(full) > len(plain) and full[-1] == tokenizer.eos_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _pre_tokenizer(state: dict | None) -> str:
    """llama.cpp's name for how text is split before BPE (`tokenizer.ggml.pre`), which llama.cpp refuses to
    guess. Known layouts only: an unknown name would make llama.cpp refuse the file at load time."""
    if state and state["type"] == "ByteLevel" and state.get("use_regex", True):
        return "gpt-2"  # GPT-2's own split regex, as transformers' GPT2Tokenizer rebuilds it
    steps = state.get("pretokenizers", []) if state and state["type"] == "Sequence" else []
    kinds = [step["type"] for step in steps]
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"  # SmolLM's original tokenizer (transformers' GGUF reader rebuilds it without the digits)
    raise ConfigError(f"GGUF export does not know llama.cpp's name for the pre-tokenizer {json.dumps(state)[:200]}")
