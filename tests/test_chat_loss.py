"""The chunked causal-LM loss equals transformers' loss (num_items_in_batch semantics) and its gradients, on
the tiny Llama: full fine-tuning, a LoRA adapter, a ReFT model, several chunks, and a batch with no trained
token."""
import pytest
import torch

from modeldojo.tasks.chat import template as chat
from modeldojo.tasks.chat import tiny
from modeldojo.tasks.chat.loss import chunked_causal_lm_loss
from modeldojo.tasks.chat.trainee import trained_tokens

CONVERSATIONS = [
    [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "The order ships tomorrow."}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "How do I change my password?"},
     {"role": "assistant", "content": "Open the settings page to update the password."},
     {"role": "user", "content": "And the invoice?"}, {"role": "assistant", "content": "Your invoice is ready."}],
    [{"role": "user", "content": "コーヒーはどこですか？"}, {"role": "assistant", "content": "コーヒーは明日届きます。"}],
]
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("chat-loss") / "tiny-llama")


def load(folder, lora=False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight.mul_(10)  # logits at a pretrained model's scale, not ±0.6
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"]))
        with torch.no_grad():  # B starts at zero: give it values so the adapter's gradients flow everywhere
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.05)
    return model.train(), AutoTokenizer.from_pretrained(folder)


def batch(tokenizer, conversations=CONVERSATIONS):
    setup = chat.ensure_template(tokenizer)
    rows = [chat.encode(tokenizer, c, setup.text, end_of_turn=setup.end_of_turn) for c in conversations]
    encoded = chat.collate(rows, tokenizer.pad_token_id)
    assert (encoded["attention_mask"] == 0).any()  # rows of different lengths: padding is exercised
    return encoded


def loss_and_gradients(model, compute):
    model.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()
                           if p.requires_grad and p.grad is not None}


def reference(model, encoded, divisor, **extra):
    return model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], labels=encoded["labels"],
                 num_items_in_batch=divisor, use_cache=False, **extra).loss


def assert_same(model, encoded, divisor, chunk_size, **extra):
    expected, expected_grads = loss_and_gradients(model, lambda: reference(model, encoded, divisor, **extra))
    got, grads = loss_and_gradients(model, lambda: chunked_causal_lm_loss(
        model, encoded["input_ids"], encoded["attention_mask"], encoded["labels"], divisor, chunk_size=chunk_size,
        **extra))
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert grads.keys() == expected_grads.keys() and grads
    for name, gradient in expected_grads.items():
        torch.testing.assert_close(grads[name], gradient, **TOLERANCE, msg=lambda m: f"{name}: {m}")
    return grads


@pytest.mark.parametrize("chunk_size", [1024, 7])  # one chunk; several, the last one partial
def test_full_model_loss_and_gradients_match_transformers(folder, chunk_size):
    model, tokenizer = load(folder)
    torch.manual_seed(1)
    model.model.layers[0].mlp.down_proj.weight.data.normal_(0, 0.1)  # not only the init's values
    encoded = batch(tokenizer)
    divisor = torch.tensor(float(trained_tokens(encoded["labels"])))
    assert divisor > 2 * 7  # several chunks of 7 really happen
    grads = assert_same(model, encoded, divisor, chunk_size)
    assert "lm_head.weight" in grads and "model.embed_tokens.weight" in grads  # the head's gradient flows too


def test_divisor_is_a_plain_divisor(folder):
    model, tokenizer = load(folder)
    encoded = batch(tokenizer)
    args = encoded["input_ids"], encoded["attention_mask"], encoded["labels"]
    total = chunked_causal_lm_loss(model, *args, torch.tensor(1.0))
    torch.testing.assert_close(total, reference(model, encoded, torch.tensor(1.0)), **TOLERANCE)
    torch.testing.assert_close(chunked_causal_lm_loss(model, *args, 8.0), total / 8, **TOLERANCE)


def test_lora_model_loss_and_gradients_match_transformers(folder):
    model, tokenizer = load(folder, lora=True)
    encoded = batch(tokenizer)
    divisor = torch.tensor(float(trained_tokens(encoded["labels"])))
    grads = assert_same(model, encoded, divisor, chunk_size=5)
    assert grads and all("lora_" in name for name in grads)  # only the adapters train
    assert all(g.abs().sum() > 0 for g in grads.values())


def test_reft_model_loss_and_gradients_match_its_own_loss(folder):
    from modeldojo.tasks.chat.reft import ReftModel, ReftSettings

    base, tokenizer = load(folder)
    torch.manual_seed(2)
    model = ReftModel(base, ReftSettings(rank=2, first_positions=2, last_positions=2)).train()
    encoded = batch(tokenizer)
    divisor = torch.tensor(float(trained_tokens(encoded["labels"])))
    prompt_lengths = torch.tensor([6, 30, 8])  # where each row's edited prompt ends
    grads = assert_same(model, encoded, divisor, chunk_size=9, prompt_lengths=prompt_lengths)
    assert grads and all(name.startswith("interventions.") for name in grads)
    assert all(g.abs().sum() > 0 for g in grads.values())


def test_no_trained_token_gives_zero_and_backward_works(folder):
    model, tokenizer = load(folder, lora=True)
    encoded = batch(tokenizer)
    encoded["labels"][:] = chat.IGNORE
    divisor = torch.tensor(max(float(trained_tokens(encoded["labels"])), 1.0))  # as ChatTrainee.collate
    loss = chunked_causal_lm_loss(model, encoded["input_ids"], encoded["attention_mask"], encoded["labels"], divisor)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    assert loss.requires_grad
    loss.backward()
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or (torch.isfinite(g).all() and not g.any()) for g in gradients)
    torch.testing.assert_close(loss.detach(), reference(model, encoded, divisor).detach())


def test_prompt_learning_adapters_are_refused(folder):
    from peft import PromptTuningConfig, get_peft_model

    model, tokenizer = load(folder)
    model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    encoded = batch(tokenizer)
    with pytest.raises(TypeError, match="prompt-learning"):
        chunked_causal_lm_loss(model, encoded["input_ids"], encoded["attention_mask"], encoded["labels"], 1.0)
