"""Memory for compute in backward: tensors the step would keep are recomputed instead.

Two levels. LoRA adapters always recompute their input dropout (exact, nearly free). Whole layers recompute
their activations when `train.activation_checkpointing` is on: the peak falls to roughly one layer's
activations plus the layer inputs, at the cost of a second forward pass (docs/benchmarks.md has both).
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError


def recompute_adapter_dropout(model: torch.nn.Module) -> int:
    """Make every LoRA adapter recompute its input dropout in backward instead of keeping it; returns how many.

    PEFT computes `lora_B(lora_A(dropout(x)))`: autograd then keeps, per adapted layer, the dropout mask and the
    dropped copy of `x` (lora_A's input), two activation-sized fp32 tensors beside the `x` the frozen layer
    already keeps. On SmolLM2 (7 adapted projections per block) they were 0.77 of 1.35 GB of saved tensors at
    4 x 170 tokens (docs/benchmarks.md). Here `lora_A(dropout(x))` runs under non-reentrant activation
    checkpointing: only `x` is kept (the tensor the frozen layer keeps anyway) and backward redraws the same mask
    from the restored RNG state, so masks, gradients and resumed runs are unchanged; the recomputation is one
    rank-r projection. Parameter names are unchanged (the adapter's `forward` is replaced on the instance).
    """
    replaced = 0
    for module in model.modules():
        adapters, dropouts = getattr(module, "lora_A", None), getattr(module, "lora_dropout", None)
        if not isinstance(adapters, torch.nn.ModuleDict) or not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for key, dropout in list(dropouts.items()):
            if isinstance(dropout, torch.nn.Identity) or key not in adapters or getattr(dropout, "p", 0.0) == 0.0:
                continue
            adapter = adapters[key]

            def forward(x, _project=adapter.forward, _dropout=dropout, _adapter=adapter):
                if not _adapter.training:  # the dropout module is no longer a child: train()/eval() reach _adapter
                    return _project(x)
                if not torch.is_grad_enabled():
                    return _project(_dropout(x))
                return checkpoint(lambda tensor: _project(_dropout(tensor)), x, use_reentrant=False)

            adapter.forward = forward
            dropout.train(True)
            dropouts[key] = _KeptDropout(dropout)
            replaced += 1
    return replaced


class _KeptDropout(torch.nn.Identity):
    """Stands in PEFT's dropout slot once the adapter applies the dropout itself; keeps `p` for reading."""

    def __init__(self, dropout: torch.nn.Module) -> None:
        super().__init__()
        self.p = getattr(dropout, "p", 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}, applied inside lora_A (recomputed in backward)"


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Per-layer activation checkpointing through the model's own switch (transformers models, PEFT-wrapped
    ones included), non-reentrant: no input needs `requires_grad`, and frozen layers and adapters work."""
    # The model itself (a transformers or PEFT model) or the first module inside a wrapper (ReFT's) with a switch.
    owner = next((module for module in model.modules() if hasattr(module, "gradient_checkpointing_enable")), None)
    switch = getattr(owner, "gradient_checkpointing_enable", None)
    if switch is None or not getattr(owner, "supports_gradient_checkpointing", True):
        raise ConfigError(f"train.activation_checkpointing: {type(model).__name__} has no per-layer "
                          "checkpointing switch (transformers models do); set it to false")
    switch(gradient_checkpointing_kwargs={"use_reentrant": False})
