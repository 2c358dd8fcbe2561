"""Causal-LM cross-entropy without the full [tokens, vocabulary] logits.

`model(..., labels=...)` computes logits at every position of the batch — batch × length × vocabulary floats
(4 × 256 × 49,152 × 4 bytes = 201 MB for SmolLM2), upcasts them to fp32 and keeps them, their log-softmax and
their gradient alive through backward — although an SFT batch is scored on its assistant tokens only. Here the
model runs with `logits_to_keep=1` (logits of the last position only: [batch, 1, vocabulary]) while a forward
hook on its decoder catches the last hidden states; only the positions whose (shifted) label is trained are
kept, and the output layer + cross-entropy run over those in chunks of `chunk_size` positions, each under
activation checkpointing: backward recomputes one chunk's logits at a time instead of keeping them all.

Going through the model's own forward (rather than calling its decoder directly) keeps what wrappers do there:
a ReftModel sets the positions it edits, DistributedDataParallel its gradient bookkeeping.

The result is the SUM of the per-token losses divided by `divisor`, which is exactly what transformers'
ForCausalLMLoss returns with `num_items_in_batch=divisor` (ChatTrainee passes its micro-batch's trained-token
count), so it drops in for `model(..., labels=labels, num_items_in_batch=divisor).loss`.

Covered: a Hugging Face *ForCausalLM whose forward takes `logits_to_keep` (a decoder from `get_decoder()`, then
a linear output layer; Gemma-2-style final logit soft-capping included), also inside PEFT adapter wrappers that
inject layers (LoRA and kin), a ReftModel, or DistributedDataParallel. Refused with a TypeError: prompt-learning
PEFT models (their virtual tokens shift the positions) and models that scale their logits (logit_scale etc.).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .template import IGNORE

SCALED_LOGITS = ("logit_scale", "logits_scaling", "output_multiplier", "lm_head_multiplier")


def chunked_causal_lm_loss(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                           labels: torch.Tensor, divisor: torch.Tensor | float, chunk_size: int = 1024,
                           **forward_kwargs) -> torch.Tensor:
    """Sum of the next-token cross-entropies at the positions whose shifted label is not IGNORE, / divisor.

    `labels` are aligned with `input_ids` (position t's logits predict labels[t + 1]), as for the HF loss.
    `forward_kwargs` go to the model's forward (e.g. a ReftModel's `prompt_lengths`). A batch without a trained
    token gives 0 (still attached to the graph, so backward() works), never NaN."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive; got {chunk_size}")
    language_model = causal_lm(model)
    decoder, head = language_model.get_decoder(), language_model.get_output_embeddings()
    if decoder is language_model or not isinstance(head, torch.nn.Linear):
        raise TypeError(f"chunked_causal_lm_loss: {type(language_model).__name__} is not a decoder followed by a "
                        "linear output layer")
    config = language_model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in SCALED_LOGITS:
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise TypeError(f"chunked_causal_lm_loss: {type(language_model).__name__} scales its logits ({name})")
    softcap = getattr(config, "final_logit_softcapping", None)

    caught: list[torch.Tensor] = []

    def catch(module, args, output):
        caught.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = decoder.register_forward_hook(catch)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1,
              **forward_kwargs)
    finally:
        handle.remove()
    hidden = caught[-1]
    if hidden.shape[:2] != input_ids.shape:
        raise TypeError(f"chunked_causal_lm_loss: hidden states {tuple(hidden.shape[:2])} do not line up with the "
                        f"input ids {tuple(input_ids.shape)}")
    targets = labels[:, 1:].to(hidden.device)
    keep = targets != IGNORE
    selected = hidden[:, :-1][keep]  # [trained tokens, hidden]: a gather; the other positions are never scored
    wanted = targets[keep]
    total = selected.sum() * 0.0  # 0 attached to the graph: backward() works on a batch with nothing to train
    for start in range(0, selected.shape[0], chunk_size):
        total = total + checkpoint(_chunk_loss, selected[start:start + chunk_size], wanted[start:start + chunk_size],
                                   head.weight, head.bias, softcap, use_reentrant=False)
    return total / divisor


def _chunk_loss(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                softcap: float | None) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()  # fp32 like ForCausalLMLoss, whatever autocast computed
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face causal LM inside `model` (itself, or inside PEFT / ReFT / DDP wrappers)."""
    from transformers import PreTrainedModel

    config = getattr(model, "active_peft_config", None)
    if getattr(config, "is_prompt_learning", False):
        raise TypeError("chunked_causal_lm_loss: prompt-learning PEFT adapters (prompt / prefix / p-tuning) add "
                        "virtual tokens, which shift the positions the labels refer to")
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.get_output_embeddings() is not None:
            return module
    raise TypeError(f"chunked_causal_lm_loss: no causal language model with an output layer in "
                    f"{type(model).__name__}")
