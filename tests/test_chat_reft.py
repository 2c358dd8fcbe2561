"""LoReFT on the tiny Llama: only the interventions train, R stays orthonormal (under weight decay too), edits
land only on the prompt's first/last k positions (either padding side), training steers a frozen base,
save → load is bit-exact with no pickle, generation edits the prefill only, shared vs per-layer counts."""
import copy
import json

import pytest
import torch

from modeldojo.errors import ConfigError
from modeldojo.tasks.chat import reft, tiny

QUESTIONS = ["Where is my order?", "How do I change my password?"]
ANSWERS = ["The order ships tomorrow.", "Open the settings page to update the password."]
PER_INTERVENTION = 4 * 32 * 2 + 4  # rank 4, hidden 32: R and W (4 x 32 each) + b


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("chat") / "tiny-llama")


@pytest.fixture(scope="module")
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def prompt(tokenizer, question):
    return tokenizer(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
                     add_special_tokens=False).input_ids


def batch(tokenizer, questions, answers):
    """Right-padded prompt + answer rows, labels -100 on the prompt and the padding."""
    rows = [(prompt(tokenizer, q), tokenizer(a + "<|im_end|>", add_special_tokens=False).input_ids)
            for q, a in zip(questions, answers)]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, (p, a) in enumerate(rows):
        ids[i, :len(p) + len(a)] = torch.tensor(p + a)
        mask[i, :len(p) + len(a)] = 1
        labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
    return ids, mask, labels, [len(p) for p, _ in rows]


@pytest.fixture(scope="module")
def base(folder, tokenizer):
    """A base that has learnt the answers SWAPPED (40 full fine-tuning steps): a random init cannot be steered
    (its head's std-0.02 weights cap logits near ±0.6 after the final norm), and a base that knows the wrong
    mapping makes the frozen-base test meaningful — ReFT must re-route the prompt's representation."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask, labels, _ = batch(tokenizer, QUESTIONS, ANSWERS[::-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(base, tokenizer):
    torch.manual_seed(0)
    model = reft.ReftModel(copy.deepcopy(base), reft.ReftSettings(first_positions=4, last_positions=4, rank=4))
    start = {k: i.rotate.weight.detach().clone() for k, i in model.interventions.items()}
    ids, mask, labels, lengths = batch(tokenizer, QUESTIONS, ANSWERS)
    # weight decay 0.01 on matrices as training/optim.py does: the trap torch's Householder map falls into
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2, weight_decay=0.01)
    losses = []
    for _ in range(30):
        loss = model(ids, mask, labels=labels, prompt_lengths=lengths).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), losses, start


def test_only_the_interventions_train(base):
    model = reft.ReftModel(copy.deepcopy(base), reft.ReftSettings())
    summary = reft.trainable_summary(model)
    assert summary["trainable_parameters"] == 2 * PER_INTERVENTION  # one per layer, 2 layers
    assert summary["total_parameters"] == 2 * PER_INTERVENTION + sum(p.numel() for p in base.parameters())
    assert all(name.startswith("interventions.") for name, p in model.named_parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in model.base.parameters())
    shared = reft.ReftModel(copy.deepcopy(base), reft.ReftSettings(share_weights=True))
    assert reft.trainable_summary(shared)["trainable_parameters"] == PER_INTERVENTION
    one_layer = reft.ReftModel(copy.deepcopy(base), reft.ReftSettings(layers=[-1], rank=2))
    assert list(one_layer.interventions) == ["layer1"] and one_layer.layer_ids == [1]
    assert reft.trainable_summary(one_layer)["trainable_parameters"] == 2 * 32 * 2 + 2


def test_training_steers_the_frozen_base_and_keeps_r_orthonormal(trained, base):
    model, losses, start = trained
    assert losses[-1] < 0.5 * losses[0], losses
    for name, parameter in model.base.state_dict().items():
        assert torch.equal(parameter, base.state_dict()[name])  # the base did not move
    for key, intervention in model.interventions.items():
        rotation = intervention.rotate.weight.detach()
        assert not torch.allclose(rotation, start[key], atol=1e-4)  # R trained...
        assert torch.allclose(rotation @ rotation.T, torch.eye(4), atol=1e-5)  # ...and stayed orthonormal


def test_the_mask_covers_the_prompt_ends_on_either_padding_side():
    right = torch.tensor([[1] * 10 + [0, 0], [1] * 12])
    mask = reft.intervention_mask(right, [8, 3], first=2, last=2)
    assert mask[0].nonzero().flatten().tolist() == [0, 1, 6, 7]
    assert mask[1].nonzero().flatten().tolist() == [0, 1, 2]  # a short prompt: every token, once
    left = torch.tensor([[0, 0] + [1] * 10])
    assert reft.intervention_mask(left, [8], 2, 2)[0].nonzero().flatten().tolist() == [2, 3, 8, 9]
    assert reft.intervention_mask(left, None, 0, 3)[0].nonzero().flatten().tolist() == [9, 10, 11]


def test_edits_land_only_on_the_chosen_positions(base, tokenizer):
    model = reft.ReftModel(copy.deepcopy(base), reft.ReftSettings(first_positions=0, last_positions=3))
    ids, mask, labels, lengths = batch(tokenizer, QUESTIONS, ANSWERS)
    expected = reft.intervention_mask(mask, lengths, 0, 3)
    seen = {}
    layer = reft.layer_list(model.base)[0]
    before = layer.register_forward_hook(lambda m, a, out: seen.__setitem__("raw", out.clone()), prepend=True)
    after = layer.register_forward_hook(lambda m, a, out: seen.__setitem__("edited", out.clone()))
    with torch.no_grad():
        logits = model(ids, mask, prompt_lengths=lengths).logits
        plain = base(input_ids=ids, attention_mask=mask).logits
    before.remove()
    after.remove()
    changed = (seen["raw"] != seen["edited"]).any(dim=-1)
    assert torch.equal(changed, expected)
    for row, length in enumerate(lengths):  # causal: everything before the first edit is the base's own
        assert torch.equal(logits[row, :length - 3], plain[row, :length - 3])
        assert not torch.allclose(logits[row, length - 3:], plain[row, length - 3:])


def test_save_then_load_gives_identical_logits(trained, base, tokenizer, tmp_path):
    model = trained[0]
    reft.save(model, tmp_path / "reft")
    assert sorted(p.name for p in (tmp_path / "reft").iterdir()) == ["interventions.safetensors", "reft.json"]
    record = json.loads((tmp_path / "reft" / "reft.json").read_text())
    assert record["hidden_size"] == 32 and record["settings"]["rank"] == 4 and record["interventions"] == [
        "layer0", "layer1"]
    loaded = reft.load(copy.deepcopy(base), tmp_path / "reft")
    ids, mask, _, lengths = batch(tokenizer, QUESTIONS, ANSWERS)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask, prompt_lengths=lengths).logits,
                           model(ids, mask, prompt_lengths=lengths).logits)
    record["hidden_size"] = 64
    (tmp_path / "reft" / "reft.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="hidden size 64"):
        reft.load(copy.deepcopy(base), tmp_path / "reft")


def greedy_without_cache(model, ids, steps, eos):
    """Reference decoding: the whole sequence re-run each step, the prompt (only) edited every time."""
    ids = torch.tensor([ids])
    length = ids.shape[1]
    for _ in range(steps):
        with torch.no_grad():
            token = model(ids, torch.ones_like(ids), prompt_lengths=[length]).logits[0, -1].argmax()
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
        if token.item() == eos:
            break
    return ids[0, length:].tolist()


def test_generate_edits_the_prefill_only_and_differs_from_the_base(trained, base, tokenizer):
    model = trained[0]
    prompts = [prompt(tokenizer, q) for q in QUESTIONS]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # left padding, as for generation
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    calls = []
    handles = [i.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[1]))
               for i in model.interventions.values()]
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": pad}
    edited = model.generate(ids, attention_mask=mask, **kwargs)[:, width:]
    for handle in handles:
        handle.remove()
    assert calls == [width, width]  # each layer's intervention ran once: the prefill, not the decoding steps
    plain = base.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, width:]
    assert not torch.equal(edited, plain)
    for row, answer in enumerate(ANSWERS):  # the base answers swapped; the edited prompt starts the right one
        assert edited[row, 0].item() == tokenizer(answer, add_special_tokens=False).input_ids[0]
        assert plain[row, 0].item() != edited[row, 0].item()
    for row, p in enumerate(prompts):  # the cached, batched, left-padded run matches the reference decoding
        reference = greedy_without_cache(model, p, 12, tokenizer.eos_token_id)
        assert edited[row, :len(reference)].tolist() == reference
    assert model._mask is None  # nothing left armed for a later direct call of the base


def test_gradient_checkpointing_and_a_bf16_base(folder, tokenizer):
    """Checkpointing re-runs the layers (hooks included) in backward: the positions must still be set then.
    A bf16 base keeps fp32 interventions, and the gradients reach them."""
    from transformers import AutoModelForCausalLM

    ids, mask, labels, lengths = batch(tokenizer, QUESTIONS, ANSWERS)
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = reft.ReftModel(AutoModelForCausalLM.from_pretrained(folder), reft.ReftSettings()).train()
        if checkpointing:
            from modeldojo.training.recompute import enable_activation_checkpointing

            enable_activation_checkpointing(model)  # train.activation_checkpointing: finds the wrapped base
            assert model.base.is_gradient_checkpointing
        model(ids, mask, labels=labels, prompt_lengths=lengths).loss.backward()
        gradients.append([p.grad for p in model.interventions.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*gradients))
    half = reft.ReftModel(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16), reft.ReftSettings())
    output = half(ids, mask, labels=labels, prompt_lengths=lengths)
    output.loss.backward()
    assert output.logits.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 and p.grad is not None for p in half.interventions.parameters())


@pytest.mark.parametrize("settings", [dict(layers=[]), dict(layers="some"), dict(layers=[True]),
                                      dict(first_positions=0, last_positions=0), dict(first_positions=-1),
                                      dict(rank=0), dict(dropout=1.0)])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ConfigError):
        reft.ReftSettings(**settings)


def test_bad_layers_and_rank_are_refused_for_the_model(base):
    with pytest.raises(ConfigError, match="out of range"):
        reft.ReftModel(copy.deepcopy(base), reft.ReftSettings(layers=[2]))
    with pytest.raises(ConfigError, match="hidden size"):
        reft.ReftModel(copy.deepcopy(base), reft.ReftSettings(rank=33))
