"""Instruction tuning of a causal LM through the shared training loop (training/loop.py).

`ChatTrainee` is the loop's Trainee over pre-encoded conversations (template.Encoded); `train_chat` takes a
model + tokenizer + conversations from template to merged weights: template, encoding, strategy, loop.

The loss is the mean over the step's *trained* (assistant) tokens, not over examples: a long answer weighs
as much per token as a short one, as in every SFT recipe. Each micro-batch's loss is its own token mean and
`weight` tells the loop how many tokens that is, so the loop's weighted sum is exactly the step's token mean
whatever the split (accumulation, or the OOM auto-split).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config import Config, TrainConfig
from ...errors import DataError
from ...events import STAGE, EventBus
from ...training.batches import length_grouped as length_grouped_batches  # as the text task batches
from . import template as chat

DEFAULT_STRATEGY = "lora"  # finetune.strategy "auto" for chat
EVALUATE_BATCH = 16
LOSS_CHUNK = 256  # positions per output-layer chunk: ~50 MB of SmolLM2 logits alive at a time
SHOWN = 5  # dropped rows named in a message


def trained_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Targets the model is scored on: labels shift left by one (position t predicts t+1), so label 0 never is."""
    return (labels[:, 1:] != chat.IGNORE).sum()


class ChatTrainee:
    """The shared loop's Trainee for a causal LM: length-grouped steps, token-mean loss, perplexity."""

    monitor = "loss"  # loop.fit treats names ending in "loss" as lower-is-better

    def __init__(self, model: torch.nn.Module, train: list[chat.Encoded], validation: list[chat.Encoded] | None,
                 config: TrainConfig, pad_id: int, *, prompt_lengths: bool = False) -> None:
        if not train:
            raise DataError("chat: no conversations left to train on")
        self.model, self.train, self.validation = model, train, validation or []
        self.config, self.pad_id = config, pad_id
        self.prompt_lengths = prompt_lengths  # ReFT edits the prompt's ends: it must know where each prompt ends
        self.lengths = np.array([len(row.input_ids) for row in train])
        self.tokens = np.array([sum(row.assistant_mask[1:]) for row in train])  # trained targets per example

    def step_batches(self, epoch: int) -> list[list[int]]:
        # Deterministic in (train.seed, epoch): a resumed run rebuilds exactly the batches it was in.
        size = self.config.batch_size * self.config.gradient_accumulation
        return length_grouped_batches(self.lengths, size, self.config.seed, epoch)

    def weight(self, indices: list[int]) -> int:
        """What this trainee's loss is a mean over: the examples' trained tokens (the loop weighs micro-batches)."""
        return int(self.tokens[indices].sum())

    def collate(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [self.train[i] for i in indices]
        batch = {k: v.to(device) for k, v in chat.collate(rows, self.pad_id).items()}
        if self.prompt_lengths:
            batch["prompt_lengths"] = torch.tensor([prompt_length(row) for row in rows], device=device)
        # The token mean of this micro-batch; no trained token gives loss 0, not NaN.
        batch["divisor"] = torch.tensor(max(float(trained_tokens(batch["labels"])), 1.0), device=device)
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # HF's causal-LM loss shifts the labels and skips IGNORE (-100); with num_items_in_batch it sums
        # instead of averaging, then divides by it (transformers.loss.loss_utils.ForCausalLMLoss).
        extra = {"prompt_lengths": batch["prompt_lengths"]} if "prompt_lengths" in batch else {}
        if "FSDP" not in type(model).__name__:
            # The same sum / divisor without the [tokens, vocabulary] logits (tasks/chat/loss.py; equal to the
            # HF loss to 1e-5 in tests). FSDP2 shards the output layer's weight, which the chunks read directly.
            from .loss import chunked_causal_lm_loss

            return chunked_causal_lm_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                          batch["divisor"], chunk_size=LOSS_CHUNK, **extra)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    num_items_in_batch=batch["divisor"], use_cache=False, **extra)
        return out.loss

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Token-weighted mean loss over the validation set (a short answer does not count as much as a long
        one), and its perplexity."""
        if not self.validation:
            return {}
        device, was_training = next(model.parameters()).device, model.training
        order = sorted(range(len(self.validation)), key=lambda i: len(self.validation[i].input_ids))
        total, count = 0.0, 0
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), EVALUATE_BATCH):
                    rows = [self.validation[i] for i in order[start:start + EVALUATE_BATCH]]
                    batch = {k: v.to(device) for k, v in chat.collate(rows, self.pad_id).items()}
                    one = torch.tensor(1.0, device=device)  # divide by 1: the loss sum of this batch
                    extra = {"prompt_lengths": [prompt_length(row) for row in rows]} if self.prompt_lengths else {}
                    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                labels=batch["labels"], num_items_in_batch=one, use_cache=False, **extra)
                    total += float(out.loss)
                    count += int(trained_tokens(batch["labels"]))
        finally:
            model.train(was_training)
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}


def prompt_length(row: chat.Encoded) -> int:
    """Tokens before the last assistant answer: what generation's prompt is (its generation header included),
    so ReFT edits the same positions in training as when it answers."""
    mask = row.assistant_mask
    starts = [i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1])]
    return starts[-1] if starts else len(mask)


@dataclass
class ChatTraining:
    model: torch.nn.Module          # what answers: plain weights (LoRA merged) or a ReftModel; CPU, eval mode
    template: chat.ChatTemplate
    loop: Any                       # training.loop.LoopResult
    info: dict[str, Any]            # strategy, trainable parameters, data counts, loop summary
    adapter: dict[str, Any] | None = None  # LoRA: {"state": adapter tensors, "config": peft LoraConfig}


def encode_all(tokenizer, conversations: list[list[dict]], setup: chat.ChatTemplate, max_length: int
               ) -> tuple[list[chat.Encoded], dict[str, list[int]]]:
    """Encoded rows, and the row numbers left out: `truncated` (an answer token lies beyond max_length:
    training on a cut answer would teach the model to stop without its end-of-turn token) and `unencodable`
    (template.encode's DataError, e.g. an answer whose leading whitespace fuses with the template)."""
    kept, dropped = [], {"truncated": [], "unencodable": []}
    for number, conversation in enumerate(conversations):
        try:
            row = chat.encode(tokenizer, conversation, setup.text, end_of_turn=setup.end_of_turn)
        except DataError:
            dropped["unencodable"].append(number)
            continue
        if len(row.input_ids) > max_length:
            if any(row.assistant_mask[max_length:]):
                dropped["truncated"].append(number)
                continue
            # Only untrained text (a trailing newline, a last user turn) is cut: keep the row.
            row = chat.Encoded(row.input_ids[:max_length], row.labels[:max_length],
                               row.assistant_mask[:max_length], truncated=True)
        kept.append(row)
    return kept, dropped


def _lora_settings(model: torch.nn.Module, settings):
    """Lora's default targets are every Linear outside `head_names`, which for a causal LM includes lm_head.
    An adapter there is wasted on a vocabulary-wide matrix and, where lm_head is tied to the token embeddings
    (SmolLM2), merging it would rewrite the input embeddings too; so the default here is every Linear but the
    output embedding. Explicit `finetune.lora_targets` are used as given."""
    if settings.lora_targets:
        return settings
    output = model.get_output_embeddings()
    targets = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and module is not output]
    return dataclasses.replace(settings, lora_targets=targets)


def train_chat(model, tokenizer, train_conversations: list[list[dict]],
               validation_conversations: list[list[dict]] | None, config: Config, events: EventBus,
               workdir: Path | None, *, template: str | None = None) -> ChatTraining:
    """Instruction-tune `model` on the conversations through the shared loop; checkpoints (and exact resume)
    under workdir/checkpoints when `workdir` is given. The strategy is `config.finetune.strategy` (apply
    DEFAULTS for the chat task's default, lora)."""
    from ...training import strategies
    from ...training.loop import fit

    torch.manual_seed(config.train.seed)  # adapter initialisation: same seed, same run
    setup = chat.ensure_template(tokenizer, template)
    if chat.fit_embeddings(model, tokenizer):
        events.emit(STAGE, name="template", detail=f"added {', '.join(setup.added_tokens)} to the vocabulary "
                    "(new embedding rows; they train only if the token embeddings do)")
    limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    max_length = config.model.max_length or min(limit, tokenizer.model_max_length or limit)
    train, dropped = encode_all(tokenizer, train_conversations, setup, max_length)
    validation, dropped_validation = encode_all(tokenizer, validation_conversations or [], setup, max_length)
    for split, rows in (("training", dropped), ("validation", dropped_validation)):
        for reason, numbers in rows.items():
            if numbers:
                events.emit(STAGE, name="data", detail=f"left out {len(numbers)} {split} conversation(s), {reason} "
                            f"(max length {max_length} tokens): rows {numbers[:SHOWN]}"
                            f"{' …' if len(numbers) > SHOWN else ''}")
    if not train:
        raise DataError(f"chat: none of the {len(train_conversations)} training conversations fits in "
                        f"{max_length} tokens with its answers whole; raise model.max_length")

    settings = config.finetune
    name = strategies.named(settings, DEFAULT_STRATEGY)
    if name == "qlora":  # LoRA on the 4-bit base the task loaded (task.require_qlora checked the GPU)
        name = "lora"
    if name == "lora":
        settings = _lora_settings(model, settings)
    if name == "reft":
        from .reft import ReftModel

        strategy = _Reft(settings)
        model = ReftModel(model, reft_settings(settings))
    else:
        strategy = strategies.STRATEGIES.get(name)(settings)
        model = strategy.prepare(model, [])  # no new head: the LM head is the pretrained one
    trainable = strategies.trainable_summary(model)
    events.emit(STAGE, name="strategy", detail=f"{strategy.name}: {trainable['trainable_parameters']:,} of "
                f"{trainable['total_parameters']:,} parameters train ({trainable['trainable_percent']}%)")

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else setup.end_of_turn
    trainee = ChatTrainee(model, train, validation, config.train, pad_id, prompt_lengths=name == "reft")
    checkpoint_dir = Path(workdir) / "checkpoints" if workdir else None
    result = fit(trainee, config.train, events, checkpoint_dir)
    adapter = None
    if hasattr(trainee.model, "peft_config"):  # kept before merging: the run stores the adapter, not a copy
        from peft import get_peft_model_state_dict

        adapter = {"state": {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(trainee.model).items()},
                   "config": trainee.model.peft_config["default"]}
    final = strategy.finalize(trainee.model).cpu().eval()
    info = {"strategy": strategy.name, **trainable, "max_length": max_length, "template": setup.source,
            "train_conversations": len(train), "validation_conversations": len(validation),
            "trained_tokens": int(trainee.tokens.sum()),
            "dropped": {split: {k: len(v) for k, v in rows.items()}
                        for split, rows in (("train", dropped), ("validation", dropped_validation))},
            **result.summary()}
    return ChatTraining(final, setup, result, info, adapter)


def reft_settings(settings):
    """finetune.reft_* → reft.ReftSettings."""
    from .reft import ReftSettings

    return ReftSettings(layers=list(settings.reft_layers) or "all", first_positions=settings.reft_first_positions,
                        last_positions=settings.reft_last_positions, rank=settings.reft_rank,
                        share_weights=settings.reft_share_weights)


class _Reft:
    """The strategy interface over a ReftModel (built above): nothing to merge, the interventions answer."""

    name = "reft"

    def __init__(self, settings) -> None:
        self.settings = settings

    def finalize(self, model):
        return model
