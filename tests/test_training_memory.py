"""Memory levers of the shared loop: LoRA dropout recomputed in backward (numerically unchanged), and activation
checkpointing on request."""
from __future__ import annotations

import copy

import pytest
import torch

peft = pytest.importorskip("peft")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from modeldojo.training.dropout import use_fast_dropout
from modeldojo.training.recompute import enable_activation_checkpointing, recompute_adapter_dropout  # noqa: E402


def _adapted(base, recompute: bool):
    torch.manual_seed(1)
    model = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        r=4, lora_dropout=0.3, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    use_fast_dropout(model)
    replaced = recompute_adapter_dropout(model) if recompute else 0
    return model, replaced


def _step(model, ids):
    model.train()
    torch.manual_seed(5)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_recomputed_adapter_dropout_gives_the_same_loss_and_gradients_and_keeps_the_names():
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    ids = torch.randint(0, 300, (2, 16))
    kept, _ = _adapted(base, recompute=False)
    recomputed, replaced = _adapted(base, recompute=True)
    assert replaced == 6 and recompute_adapter_dropout(recomputed) == 0  # once only
    assert list(kept.state_dict()) == list(recomputed.state_dict())
    loss_kept, grads_kept = _step(kept, ids)
    loss_recomputed, grads_recomputed = _step(recomputed, ids)
    assert torch.equal(loss_kept, loss_recomputed)
    assert grads_kept.keys() == grads_recomputed.keys()
    for name in grads_kept:
        assert torch.equal(grads_kept[name], grads_recomputed[name]), name
    # Dropout is really applied in training (two draws differ) and not in eval (deterministic).
    recomputed.train()
    with torch.no_grad():
        assert not torch.equal(recomputed(input_ids=ids).logits, recomputed(input_ids=ids).logits)
    recomputed.eval()
    with torch.no_grad():
        assert torch.equal(recomputed(input_ids=ids).logits, kept.eval()(input_ids=ids).logits)


def test_recomputation_keeps_fewer_tensors_for_backward():
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    ids = torch.randint(0, 300, (2, 16))

    def saved_bytes(model) -> int:
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(input_ids=ids, labels=ids).loss.backward()
        return total

    kept, recomputed = _adapted(base, False)[0], _adapted(base, True)[0]
    assert saved_bytes(recomputed) < saved_bytes(kept)


def test_activation_checkpointing_keeps_gradients_and_refuses_models_without_a_switch():
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.0))
    ids = torch.randint(0, 300, (2, 16))
    plain, _ = _adapted(base, recompute=True)
    checkpointed, _ = _adapted(base, recompute=True)
    enable_activation_checkpointing(checkpointed)
    loss_plain, grads_plain = _step(plain, ids)
    loss_checkpointed, grads_checkpointed = _step(checkpointed, ids)
    assert torch.allclose(loss_plain, loss_checkpointed)
    for name in grads_plain:
        assert torch.allclose(grads_plain[name], grads_checkpointed[name], atol=1e-6), name
    from modeldojo.errors import ConfigError

    with pytest.raises(ConfigError, match="activation_checkpointing"):
        enable_activation_checkpointing(torch.nn.Linear(2, 2))
