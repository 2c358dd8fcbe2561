"""Chat export (tasks/chat/export.py) on the tiny Llama: the merged folder equals adapter + base, the chat template
survives byte-identical, GGUF f32/f16/q8_0 files reload through transformers and pass parity, their tokenizer
gives the same prompt ids, q8_0 falls back to f16 for rows that do not split into 32-value blocks, tied embeddings
and grouped KV heads round-trip, and broken exports (no Q/K permutation, a zeroed layer, a dropped adapter) fail."""
import copy
import os
import shutil
import time

import numpy as np
import pytest
import torch

from modeldojo.errors import ConfigError
from modeldojo.tasks.chat import export, tiny
from modeldojo.tasks.chat import template as chat

gguf = pytest.importorskip("gguf")
peft = pytest.importorskip("peft")

# A trailing newline and non-ASCII text: a template that a strip() or an encoding slip anywhere would change.
TEMPLATE = chat.CHATML + "{#- ノート: café -#}\n"
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HELD_OUT = [
    [{"role": "user", "content": "Where is my coffee?"}],
    [{"role": "user", "content": "チケットはどこですか？"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Can you help with the invoice?"}],
]
CONVERSATIONS = HELD_OUT + [
    [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "A user typing <|im_end|> and <|im_start|>system gets plain text."}],
    [{"role": "user", "content": "  leading spaces, digits 12345 and\n\n\nblank lines"}],
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Width-32 matmuls gain nothing from a second thread, and on a busy 2-core box the threads' handshakes made
    a parity check ~10x slower (0.6 s -> 8 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """The tiny Llama after 20 AdamW steps (a random one is all near-ties: any rounding flips its argmax), with a
    fresh LoRA whose B is nonzero (init_lora_weights=False), so that merging changes every projection."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("chat-export")
    folder = tiny.build(root / "tiny-llama", TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    setup = chat.ensure_template(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(folder)
    texts = tiny.sentences()[:200:3]
    rows = [chat.encode(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], setup.text,
                        end_of_turn=setup.end_of_turn) for q, a in zip(texts[::2], texts[1::2])]
    batch = chat.collate(rows, tokenizer.pad_token_id)
    batch["labels"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], chat.IGNORE)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(base.parameters(), lr=1e-2)
    for _ in range(20):
        loss = base(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    base.eval()
    torch.manual_seed(1)
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=PROJECTIONS, init_lora_weights=False))
    model.eval()
    export.write_merged(model, tokenizer, setup, root / "merged")
    merged = AutoModelForCausalLM.from_pretrained(root / "merged").eval()
    prompts = [chat.prompt_ids(tokenizer, conversation, setup.text) for conversation in HELD_OUT]
    return {"root": root, "model": model, "tokenizer": tokenizer, "setup": setup, "merged": merged,
            "prompts": prompts}


@pytest.fixture(scope="module")
def ggufs(subject):
    """Each GGUF type written from the merged folder, in a folder of its own, and reloaded from the file alone."""
    out = {}
    for dtype in export.GGUF_TYPES:
        path = subject["root"] / f"gguf-{dtype}" / "model.gguf"
        export.write_gguf(subject["root"] / "merged", path, dtype)
        out[dtype] = (path, *export.load_gguf(path))
    return out


def test_merged_folder_equals_adapter_plus_base_and_leaves_the_adapter_model_alone(subject):
    model, merged = subject["model"], subject["merged"]
    result = export.parity(model, merged, subject["prompts"], tolerance=export.TOLERANCES["merged"])
    assert result["passed"] and result["agreement"] == 1.0 and result["positions"] == 3 * 32
    assert not (subject["root"] / "merged" / "adapter_config.json").exists()  # a plain model, no peft needed
    # The caller's model still carries its unmerged adapter, and the merge really changed the weights.
    assert any("lora_B" in name for name, _ in model.named_parameters())
    base_q = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base_q)


def test_chat_template_is_byte_identical_in_the_merged_folder_and_the_gguf(subject, ggufs):
    from transformers import AutoTokenizer

    folder = subject["root"] / "merged"
    assert AutoTokenizer.from_pretrained(folder).chat_template == TEMPLATE
    assert (folder / "chat_template.jinja").read_bytes() == TEMPLATE.encode("utf-8")
    for path, _, tokenizer in ggufs.values():
        field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
        assert bytes(field.parts[field.data[0]]) == TEMPLATE.encode("utf-8")
        assert tokenizer.chat_template == TEMPLATE


def test_gguf_metadata_names_llama_hyperparameters_and_the_tokenizer(subject, ggufs):
    config = subject["merged"].config
    reader = gguf.GGUFReader(ggufs["f16"][0])
    value = {key: field.contents() for key, field in reader.fields.items()}
    assert value["general.architecture"] == "llama"
    assert (value["llama.context_length"], value["llama.embedding_length"], value["llama.block_count"],
            value["llama.feed_forward_length"], value["llama.attention.head_count"],
            value["llama.attention.head_count_kv"], value["llama.vocab_size"], value["llama.rope.dimension_count"]) \
        == (512, 32, 2, 64, 2, 2, config.vocab_size, 16)
    assert value["llama.rope.freq_base"] == pytest.approx(config.rope_parameters["rope_theta"])
    assert value["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config.rms_norm_eps)
    tokenizer = subject["tokenizer"]
    assert value["tokenizer.ggml.model"] == "gpt2" and value["tokenizer.ggml.pre"] == "gpt-2"
    types = value["tokenizer.ggml.token_type"]
    for token in chat.CHATML_TOKENS:  # control tokens: llama.cpp never splits them, transformers adds them whole
        assert types[tokenizer.convert_tokens_to_ids(token)] == gguf.TokenType.CONTROL
    assert value["tokenizer.ggml.eos_token_id"] == value["tokenizer.ggml.padding_token_id"] == tokenizer.eos_token_id
    assert value["tokenizer.ggml.add_bos_token"] is False and value["tokenizer.ggml.add_eos_token"] is False
    names = {tensor.name for tensor in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight", "blk.1.attn_q.weight",
            "blk.1.ffn_down.weight"} <= names  # untied: the tiny model has its own lm_head


@pytest.mark.parametrize("dtype", export.GGUF_TYPES)
def test_gguf_reloads_through_transformers_and_passes_parity(subject, ggufs, dtype):
    _, model, _ = ggufs[dtype]
    result = export.parity(subject["merged"], model, subject["prompts"], tolerance=export.TOLERANCES[dtype],
                           min_agreement=export.MIN_AGREEMENT[dtype])
    assert result["passed"] and result["agreement"] == 1.0, result  # the trained tiny model has no near-ties
    if dtype == "f32":
        assert result["max_logit_diff"] == 0.0  # the same float32 weights, so the same logits


def test_q8_0_weights_are_the_merged_weights_block_quantized(subject, ggufs):
    _, model, _ = ggufs["q8_0"]
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name in ["q_proj", "k_proj"]:  # permuted before quantizing, un-permuted after: rows move whole
        expected = subject["merged"].model.layers[1].self_attn.get_submodule(name).weight.detach().numpy()
        expected = gguf.quants.dequantize(gguf.quants.quantize(expected, q8), q8)
        assert np.array_equal(model.model.layers[1].self_attn.get_submodule(name).weight.detach().numpy(), expected)
    assert torch.equal(model.model.norm.weight, subject["merged"].model.norm.weight)  # 1-D stays f32


def test_load_gguf_reads_the_file_not_a_tokenizer_beside_it(subject, ggufs, tmp_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(ggufs["f16"][0], path)
    decoy = copy.deepcopy(subject["tokenizer"])
    decoy.chat_template = "{{ 'decoy' }}"
    decoy.save_pretrained(tmp_path)  # transformers would prefer these files to the GGUF's own vocabulary
    assert export.load_gguf(path)[1].chat_template == TEMPLATE


def test_gguf_tokenizer_gives_the_same_prompt_ids(subject, ggufs):
    tokenizer, text = subject["tokenizer"], subject["setup"].text
    for _, _, loaded in ggufs.values():
        for conversation in CONVERSATIONS:
            assert chat.prompt_ids(loaded, conversation, text) == chat.prompt_ids(tokenizer, conversation, text)


def test_broken_exports_fail_parity(subject, monkeypatch):
    from transformers import AutoModelForCausalLM

    merged, prompts = subject["merged"], subject["prompts"]
    check = {"new_tokens": 8, "tolerance": export.TOLERANCES["f32"]}  # gross failures: a few positions show them
    with monkeypatch.context() as patch:  # Q/K left in transformers' layout: llama.cpp would rotate wrong pairs
        patch.setattr(export, "_permute", lambda weights, heads: weights)
        path = subject["root"] / "broken" / "model.gguf"
        export.write_gguf(subject["root"] / "merged", path, "f32")
    unpermuted, _ = export.load_gguf(path)
    assert not export.parity(merged, unpermuted, prompts, **check)["passed"]
    zeroed = copy.deepcopy(merged)
    with torch.no_grad():
        zeroed.model.layers[1].mlp.down_proj.weight.zero_()
    assert not export.parity(merged, zeroed, prompts, **check)["passed"]
    without_adapter = AutoModelForCausalLM.from_pretrained(subject["root"] / "tiny-llama").eval()
    assert not export.parity(subject["model"], without_adapter, prompts, **check)["passed"]


def test_tied_embeddings_grouped_heads_and_unblockable_rows(subject, tmp_path):
    """SmolLM2's shape in miniature: tied embeddings (no output.weight) and fewer KV heads than query heads
    (K is permuted by its own head count); an FFN width of 48 gives down_proj rows q8_0 cannot block (f16)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = subject["tokenizer"]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=48, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    export.write_merged(model, tokenizer, subject["setup"], tmp_path / "merged")
    for dtype in ("f32", "q8_0"):
        export.write_gguf(tmp_path / "merged", tmp_path / dtype / "model.gguf", dtype)
    types = {tensor.name: tensor.tensor_type for tensor in gguf.GGUFReader(tmp_path / "q8_0" / "model.gguf").tensors}
    assert "output.weight" not in types
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.F16  # rows of 48: llama.cpp's fallback
    assert types["blk.0.ffn_up.weight"] == types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    for dtype in ("f32", "q8_0"):
        loaded, _ = export.load_gguf(tmp_path / dtype / "model.gguf")
        assert loaded.config.tie_word_embeddings and loaded.config.num_key_value_heads == 2
        assert torch.equal(loaded.lm_head.weight, loaded.model.embed_tokens.weight)
        result = export.parity(model, loaded, subject["prompts"], new_tokens=8, tolerance=export.TOLERANCES[dtype])
        # The random model is all near-ties, so only f32 (exactly the same weights) can promise full agreement.
        assert result["max_logit_diff"] <= export.TOLERANCES[dtype]
        if dtype == "f32":
            assert result["passed"] and result["max_logit_diff"] == 0.0


def test_refusals(subject, tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConfigError, match="gpt2"):
        export.write_gguf(tmp_path / "gpt2", tmp_path / "out.gguf")
    with pytest.raises(ConfigError, match="q4_0"):
        export.write_gguf(subject["root"] / "merged", tmp_path / "out.gguf", "q4_0")
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.skipif(not os.environ.get("MODELDOJO_MEASURE_EXPORT"), reason="the measurement behind TOLERANCES (minutes "
                    "on 2 cores): MODELDOJO_MEASURE_EXPORT=1 pytest -s tests/test_chat_export.py -k smollm2")
def test_measure_smollm2_tolerances(tmp_path):
    """SmolLM2-135M-Instruct with a fresh nonzero LoRA: every export against adapter + base, as `dojo export`
    checks it, plus the two breakages the limits must catch. Prints the table quoted at export.TOLERANCES."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeldojo.tasks.chat import base_model

    folder = base_model.default_model()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    setup = chat.ensure_template(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(0)
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=PROJECTIONS, init_lora_weights=False))
    questions = [
        "What is the capital of France?", "Write a haiku about the sea.", "Give me three tips for better sleep.",
        "Translate 'good morning' into Spanish and French.", "Explain photosynthesis in one paragraph.",
        "What are the primary colors?", "Suggest a name for a bakery.", "How many legs does a spider have?",
        "Summarize the plot of Romeo and Juliet.", "What is 12 times 7?", "List four planets of the solar system.",
        "Why is the sky blue?",
    ]
    prompts = [chat.prompt_ids(tokenizer, [{"role": "user", "content": q}], setup.text) for q in questions]

    def show(label, candidate, seconds=0.0, limit=None):
        result = export.parity(model, candidate, prompts, tolerance=limit or 0.0)
        print(f"{label:>16}: agreement {result['agreement']:.4f}  max |logit diff| {result['max_logit_diff']:.3g}  "
              f"({result['positions']} positions)  written in {seconds:.1f} s", flush=True)
        return result

    start = time.perf_counter()
    export.write_merged(model, tokenizer, setup, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    results = {"merged": show("merged", merged, time.perf_counter() - start, export.TOLERANCES["merged"])}
    del merged
    for dtype in export.GGUF_TYPES:
        start = time.perf_counter()
        export.write_gguf(tmp_path / "merged", tmp_path / dtype / "model.gguf", dtype)
        seconds = time.perf_counter() - start
        results[dtype] = show(f"gguf {dtype}", export.load_gguf(tmp_path / dtype / "model.gguf")[0], seconds,
                              export.TOLERANCES[dtype])
    broken = {"no adapter": show("no adapter", base_model_again := AutoModelForCausalLM.from_pretrained(folder))}
    del base_model_again
    original = export._permute
    export._permute = lambda weights, heads: weights
    try:
        export.write_gguf(tmp_path / "merged", tmp_path / "unpermuted.gguf", "f32")
    finally:
        export._permute = original
    broken["Q/K unpermuted"] = show("Q/K unpermuted", export.load_gguf(tmp_path / "unpermuted.gguf")[0])
    for name, result in results.items():
        assert result["max_logit_diff"] <= export.TOLERANCES[name], name
        assert result["agreement"] >= export.MIN_AGREEMENT[name], name
    for result in broken.values():
        assert result["max_logit_diff"] > max(export.TOLERANCES.values())
