"""The chat trainee on the shared loop, on the tiny Llama: LoRA and full fine-tuning learn, the loss is the
mean over exactly the assistant tokens (whatever the micro-batch split), and a crashed run resumes bitwise."""
import itertools

import pytest
import torch

from modeldojo.config import Config
from modeldojo.events import PROGRESS, EventBus
from modeldojo.tasks.chat import template as chat
from modeldojo.tasks.chat import tiny
from modeldojo.tasks.chat.trainee import ChatTrainee, encode_all, train_chat

THINGS = ["order", "invoice", "password", "delivery", "refund", "account", "coffee", "ticket"]
QA = [("Where is my {}?", "The {} ships tomorrow."), ("How do I change my {}?", "Open the settings page to "
      "update the {}."), ("What is the {} status?", "Your {} is ready."), ("Can you help with the {}?",
      "Please contact support about the {}.")]
# Same question, same answer pattern: the tiny model can learn it in a few dozen steps.
PAIRS = [([{"role": "user", "content": q.format(t)}, {"role": "assistant", "content": a.format(t)}], (n + m) % 4)
         for (n, (q, a)), (m, t) in itertools.product(enumerate(QA), enumerate(THINGS))]
# Validation: every question pattern and every thing, in combinations training never shows.
TRAIN, VALIDATION = [c for c, part in PAIRS if part][:20], [c for c, part in PAIRS if not part]
TRAIN_SETTINGS = {"train.epochs": 6, "train.batch_size": 4, "train.learning_rate": 0.01, "train.precision": "fp32",
                  "train.warmup": 0.0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("chat") / "tiny-llama")


def load(folder):
    """The tiny model with its output layer at a pretrained model's scale. Initialised at std 0.02, lm_head
    after the (unit) final norm caps logits near ±0.6: LoRA, which trains neither, could barely move the loss
    (measured: 6.36 -> 5.99 nats), whatever the data."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight.mul_(10)
    return model, AutoTokenizer.from_pretrained(folder)


def validation_loss(model, tokenizer):
    setup = chat.ensure_template(tokenizer)
    rows, _ = encode_all(tokenizer, VALIDATION, setup, 512)
    return ChatTrainee(model, rows, rows, Config().train, tokenizer.pad_token_id).evaluate(model)["loss"]


def run(folder, overrides, workdir=None, events=None):
    model, tokenizer = load(folder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = Config().with_overrides({**TRAIN_SETTINGS, **overrides})
    trained = train_chat(model, tokenizer, TRAIN, VALIDATION, config, events or EventBus(), workdir)
    return trained, before, tokenizer


def test_lora_trains_only_adapters_and_lowers_validation_loss(folder):
    model, tokenizer = load(folder)
    start = validation_loss(model, tokenizer)
    trained, before, tokenizer = run(folder, {"finetune.strategy": "lora"})
    info = trained.info
    assert info["strategy"] == "lora" and info["train_conversations"] == 20 and info["validation_conversations"] == 8
    # Rank 8 on every Linear but lm_head: 2 layers x (4 attention 32x32 + gate/up 32->64 + down 64->32).
    assert info["trainable_parameters"] == 2 * (4 * 8 * (32 + 32) + 3 * 8 * (32 + 64))
    end = validation_loss(trained.model, tokenizer)
    assert end < 0.8 * start, (start, end)
    after = trained.model.state_dict()
    assert after.keys() == before.keys()  # merged: a plain Llama again
    adapted = {k for k in before if k.endswith("proj.weight")}
    assert all(not torch.equal(before[k], after[k]) for k in adapted)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in adapted)  # lm_head, norms, embeddings


def test_full_fine_tuning_lowers_validation_loss(folder):
    model, tokenizer = load(folder)
    start = validation_loss(model, tokenizer)
    trained, before, tokenizer = run(folder, {"finetune.strategy": "full", "train.learning_rate": 0.003})
    assert trained.info["strategy"] == "full"
    assert validation_loss(trained.model, tokenizer) < 0.8 * start
    after = trained.model.state_dict()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])  # frozen by default
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])


def test_loss_is_the_mean_over_exactly_the_assistant_tokens(folder):
    model, tokenizer = load(folder)
    setup = chat.ensure_template(tokenizer)
    multi = [TRAIN[0] + TRAIN[5], [{"role": "system", "content": "You are a helpful assistant."}] + TRAIN[1]]
    rows, _ = encode_all(tokenizer, multi + TRAIN[2:6], setup, 512)
    trainee = ChatTrainee(model, rows, None, Config().with_overrides({"train.batch_size": 6}).train,
                          tokenizer.pad_token_id)
    (step,) = trainee.step_batches(0)
    batch = trainee.collate(step, torch.device("cpu"))
    assert len({len(rows[i].input_ids) for i in step}) > 1  # padding present, and pad == eos is not masked
    with torch.no_grad():
        loss = trainee.loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        terms = []
        for row, index in enumerate(step):
            encoded = rows[index]
            for t in range(1, len(encoded.input_ids)):
                if encoded.assistant_mask[t]:  # answer tokens and their <|im_end|>, nothing else
                    terms.append(-torch.log_softmax(logits[row, t - 1], -1)[encoded.input_ids[t]])
        assert len(terms) == sum(sum(rows[i].assistant_mask) for i in step)
        closing = [t for i in step for t, on in enumerate(rows[i].assistant_mask)
                   if on and rows[i].input_ids[t] == setup.end_of_turn]
        answers = sum(m["role"] == "assistant" for c in multi + TRAIN[2:6] for m in c)
        assert len(closing) == answers == 7  # one trained <|im_end|> per answer, though it is also the pad id
        torch.testing.assert_close(loss, torch.stack(terms).mean())
        # The loop's micro-batches (weighted by trainee.weight: their trained tokens) add up to the same token mean.
        halves = [step[:2], step[2:]]
        split = sum(trainee.loss(model, trainee.collate(h, torch.device("cpu"))) * trainee.weight(h)
                    / trainee.weight(step) for h in halves)
        torch.testing.assert_close(split, loss)


def test_crash_then_resume_gives_bitwise_identical_weights(folder, tmp_path):
    overrides = {"finetune.strategy": "lora", "train.epochs": 3, "train.checkpoint_every": 3,
                 "train.eval_every": 4, "train.batch_size": 2, "train.gradient_accumulation": 2}
    straight, _, _ = run(folder, overrides, tmp_path / "straight")

    def crash(completed, **_):
        if completed == 8:  # after the checkpoint at step 6, mid second epoch (5 steps per epoch)
            raise KeyboardInterrupt

    events = EventBus()
    events.subscribe(PROGRESS, crash)
    with pytest.raises(KeyboardInterrupt):
        run(folder, overrides, tmp_path / "crashed", events)
    resumed, _, _ = run(folder, overrides, tmp_path / "crashed")
    assert resumed.loop.resumed_from == 6 and resumed.loop.steps == straight.loop.steps == 15
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert resumed.info["history"] == straight.info["history"]


def test_rows_whose_answer_would_be_cut_are_left_out(folder):
    _, tokenizer = load(folder)
    setup = chat.ensure_template(tokenizer)
    size = len(chat.encode(tokenizer, TRAIN[0], setup.text).input_ids)  # ... <|im_end|> "\n" (untrained)
    kept, dropped = encode_all(tokenizer, [TRAIN[0]], setup, size - 1)
    assert dropped == {"truncated": [], "unencodable": []} and kept[0].truncated and len(kept[0].input_ids) == size - 1
    kept, dropped = encode_all(tokenizer, [TRAIN[0], [{"role": "user", "content": "Hi"},
                                                      {"role": "assistant", "content": "\n\nHello"}]], setup, size - 2)
    assert kept == [] and dropped == {"truncated": [0], "unencodable": [1]}


def test_default_lora_targets_leave_a_language_models_output_layer_alone(tmp_path):
    """PEFT's "all-linear" rule: no adapter on lm_head (tied to the input embeddings in SmolLM2)."""
    from transformers import AutoModelForCausalLM

    from modeldojo.config import FinetuneConfig
    from modeldojo.tasks.chat import tiny
    from modeldojo.training.strategies import STRATEGIES

    model = AutoModelForCausalLM.from_pretrained(tiny.build(tmp_path / "tiny"))
    prepared = STRATEGIES.get("lora")(FinetuneConfig()).prepare(model, [])
    adapted = {name.split(".lora_A")[0] for name, _ in prepared.named_parameters() if ".lora_A" in name}
    assert adapted and not any(name.endswith("lm_head") for name in adapted)
    assert any(name.endswith("q_proj") for name in adapted)
