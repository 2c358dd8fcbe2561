"""Fine-tuning strategies: which weights train. One entry each; adding one is one class + a decorator.

`prepare(model, head_names, settings)` returns the model to train (possibly wrapped, e.g. by PEFT);
`finalize(model)` returns a plain model for saving and inference (LoRA is merged into the weights,
so inference needs no peft).
"""
from __future__ import annotations

import warnings
from typing import ClassVar

import torch

from ..config import FinetuneConfig
from ..errors import ConfigError
from ..registry import Registry

STRATEGIES: Registry[type["Strategy"]] = Registry("fine-tuning strategy (finetune.strategy)")


def named(settings: FinetuneConfig, default: str) -> str:
    """finetune.strategy, "auto" read as the task's default (api.prepare fills it in; direct callers may not)."""
    return default if settings.strategy == "auto" else settings.strategy


def trainable_summary(model: torch.nn.Module) -> dict[str, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_percent": round(100.0 * trainable / max(1, total), 3)}


def _is_head(name: str, head_names: list[str]) -> bool:
    return any(name == head or name.startswith(head + ".") for head in head_names)


def layer_list(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer's stack of layers: the longest ModuleList of identical blocks."""
    best = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and \
                len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise ConfigError("finetune.strategy freeze: this model has no stack of layers to freeze")
    return best


class Strategy:
    name: ClassVar[str]

    def __init__(self, settings: FinetuneConfig) -> None:
        self.settings = settings

    def prepare(self, model: torch.nn.Module, head_names: list[str]) -> torch.nn.Module:
        raise NotImplementedError

    def finalize(self, model: torch.nn.Module) -> torch.nn.Module:
        return model


def _token_embeddings(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    getter = getattr(model, "get_input_embeddings", None)
    embeddings = getter() if getter is not None else None
    return list(embeddings.parameters()) if embeddings is not None else []


@STRATEGIES.register("full")
class Full(Strategy):
    """Every weight trains, but the token-embedding table only with `finetune.train_token_embeddings`."""

    name = "full"

    def prepare(self, model, head_names):
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        if not self.settings.train_token_embeddings:
            for parameter in _token_embeddings(model):
                parameter.requires_grad_(False)
        return model


@STRATEGIES.register("head")
class Head(Strategy):
    """Only the new task head trains: the usual choice for little data or little compute."""

    name = "head"

    def prepare(self, model, head_names):
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(_is_head(name, head_names))
        return model


@STRATEGIES.register("freeze")
class Freeze(Strategy):
    """Embeddings and the first `finetune.freeze_layers` layers frozen; the rest trains."""

    name = "freeze"

    def prepare(self, model, head_names):
        layers = layer_list(model)
        count = self.settings.freeze_layers
        if count > len(layers):
            raise ConfigError(f"finetune.freeze_layers: got {count}; this model has {len(layers)} layers")
        frozen = {id(p) for layer in list(layers)[:count] for p in layer.parameters()}
        for module_name, module in model.named_modules():
            if module_name.endswith("embeddings") and not _is_head(module_name, head_names):
                frozen |= {id(p) for p in module.parameters()}
        frozen |= {id(p) for p in _token_embeddings(model)}
        for stem in getattr(model, "stem_modules", lambda: [])():  # a CNN's first convolution + norm
            frozen |= {id(p) for p in stem.parameters()}
        if self.settings.train_token_embeddings:
            frozen -= {id(p) for p in _token_embeddings(model)}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) not in frozen)
        return model


@STRATEGIES.register("lora")
class Lora(Strategy):
    """PEFT LoRA adapters on the linear layers; the head trains fully; merged into the weights on save."""

    name = "lora"

    def prepare(self, model, head_names):
        from peft import LoraConfig, get_peft_model

        # Every linear layer (and non-grouped convolution, for CNNs) outside the head by full name; the head
        # trains fully (modules_to_save). Depthwise convolutions have too few weights per filter to adapt.
        # A language model's output layer is left out too, as PEFT's "all-linear" does: it is vocabulary-sized,
        # and where it shares its weight with the input embeddings (SmolLM2) merging an adapter into it would
        # rewrite the embeddings as well.
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        targets = self.settings.lora_targets or [
            name for name, module in model.named_modules()
            if (isinstance(module, torch.nn.Linear) or (isinstance(module, torch.nn.Conv2d) and module.groups == 1))
            and not _is_head(name, head_names) and module is not output]
        config = LoraConfig(r=self.settings.lora_rank, lora_alpha=self.settings.lora_alpha,
                            lora_dropout=self.settings.lora_dropout, target_modules=targets,
                            modules_to_save=list(head_names))
        with warnings.catch_warnings():  # PEFT reads transformers' deprecated `is_gradient_checkpointing` (v5)
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, config)

    def finalize(self, model):
        return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
