"""LoReFT (Wu et al. 2024, "ReFT: Representation Finetuning for Language Models"), implemented natively.

Why native: pyreft pins transformers 4.45 and saves pickles; the method itself is a few lines. The base model
stays frozen; small interventions edit the residual stream (a decoder layer's output) of chosen layers at
chosen token positions — the first k and last k tokens of each example's PROMPT, as pyreft's "f{k}+l{k}".
Answer tokens are never edited: they only see the edited prompt through attention, so generation edits the
prompt in the prefill pass and leaves the decoding steps alone, exactly as training saw it.

Weights are saved as safetensors (`interventions.safetensors`) plus `reft.json`; nothing is pickled.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize

from ...errors import ConfigError
# trainable_summary is re-exported: `trainable_summary(reft_model)` counts the interventions as trainable
from ...training.strategies import layer_list, trainable_summary  # noqa: F401

WEIGHTS, SETTINGS = "interventions.safetensors", "reft.json"
FORMAT = "modeldojo-loreft/1"


class OrthonormalRows(torch.nn.Module):
    """Parametrization: weight = the rows of `original` orthonormalised (QR, signs fixed so it is unique).

    Not torch's `parametrizations.orthogonal`: for a wide matrix it defaults to Householder reflectors whose
    signs sit on the diagonal of `original`, read through `.int()` with zero gradient, so decoupled weight decay
    (ours defaults to 0.01 on matrices) pulls them below 1 and R collapses to zeros after one AdamW step.
    Its other maps take a hidden x hidden matrix exponential / solve each forward (28 s / 1.6 s per
    intervention at hidden 2048 on CPU) where QR of the hidden x rank matrix takes ~1 ms. QR is scale
    invariant, so weight decay only rescales `original`; R's rows stay orthonormal to rounding."""

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        q, r = torch.linalg.qr(original.T)  # reduced: q is hidden x rank with orthonormal columns
        signs = torch.where(r.diagonal() < 0, -1.0, 1.0).to(q.dtype)
        return (q * signs).T

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight  # an orthonormal weight is its own preimage (to rounding)


class LoreftIntervention(torch.nn.Module):
    """Φ(h) = h + Rᵀ(W h + b − R h): replaces h's coordinates in the r-dim subspace spanned by R's rows with
    learnt ones (W h + b) and leaves the orthogonal complement untouched. R must keep orthonormal rows for that
    reading to hold, hence the orthogonal parametrization rather than a penalty."""

    def __init__(self, hidden_size: int, rank: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 < rank <= hidden_size:
            raise ConfigError(f"reft rank: got {rank}; it must be between 1 and the hidden size {hidden_size}")
        # fp32 whatever the base dtype: QR is unreliable in half precision (pyreft needs fp32 too).
        rotate = torch.nn.Linear(hidden_size, rank, bias=False, dtype=torch.float32)
        torch.nn.init.orthogonal_(rotate.weight)  # pyreft's initialisation
        parametrize.register_parametrization(rotate, "weight", OrthonormalRows())  # R: rank × hidden
        self.rotate = rotate
        self.learned = torch.nn.Linear(hidden_size, rank, dtype=torch.float32)  # W and b
        # Dropout on the edit only (pyreft drops out the whole output, residual included, which would zero
        # parts of the base model's own hidden state in training).
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(self.learned.weight.dtype)
        rotation = self.rotate.weight  # materialise the parametrization once per call
        edit = (self.learned(x) - x @ rotation.T) @ rotation
        # Add the edit in the base's dtype, so coordinates outside the subspace stay bit-identical.
        return hidden + self.dropout(edit).to(hidden.dtype)


@dataclass
class ReftSettings:
    layers: str | list[int] = "all"  # "all", or decoder-layer indices (negative counts from the end)
    first_positions: int = 4  # the prompt's first k tokens
    last_positions: int = 4  # the prompt's last k tokens
    rank: int = 4
    share_weights: bool = False  # one intervention for every chosen layer, or one per layer
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.layers != "all" and (isinstance(self.layers, (str, bool)) or not isinstance(self.layers, Sequence)
                                     or not self.layers
                                     or not all(isinstance(i, int) and not isinstance(i, bool) for i in self.layers)):
            raise ConfigError(f"reft layers: got {self.layers!r}; use \"all\" or a non-empty list of layer indices")
        if min(self.first_positions, self.last_positions) < 0 or self.first_positions + self.last_positions == 0:
            raise ConfigError("reft positions: first_positions and last_positions must be >= 0, not both 0")
        if self.rank < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"reft: rank must be >= 1 (got {self.rank}), dropout in [0, 1) (got {self.dropout})")

    def layer_indices(self, count: int) -> list[int]:
        if self.layers == "all":
            return list(range(count))
        bad = [i for i in self.layers if not -count <= i < count]
        if bad:
            raise ConfigError(f"reft layers: {bad} out of range; this model has {count} layers")
        return sorted({i % count for i in self.layers})


def intervention_mask(attention_mask: torch.Tensor, prompt_lengths, first: int, last: int) -> torch.Tensor:
    """[batch, seq] True where the prompt's first `first` and last `last` tokens sit.

    Positions count from each row's first real token, so left padding (the usual for batched generation) and
    right padding (the usual for training) both work; without `prompt_lengths` the whole unpadded row is the
    prompt. A prompt shorter than first + last is edited on every token, once (pyreft instead trims both
    counts to half the prompt, skipping the middle token of odd prompts)."""
    real = attention_mask.bool()
    start = real.int().argmax(dim=1, keepdim=True)  # first real token (0 for right padding)
    lengths = real.sum(dim=1) if prompt_lengths is None else torch.as_tensor(prompt_lengths)
    lengths = lengths.to(attention_mask.device).reshape(-1, 1)
    if lengths.shape[0] != real.shape[0]:
        raise ConfigError(f"reft: {lengths.shape[0]} prompt lengths for a batch of {real.shape[0]}")
    offset = torch.arange(real.shape[1], device=real.device).unsqueeze(0) - start
    in_prompt = (offset >= 0) & (offset < lengths)
    return real & in_prompt & ((offset < first) | (offset >= lengths - last))


class ReftModel(torch.nn.Module):
    """A frozen causal LM with LoReFT interventions hooked onto the outputs of chosen decoder layers."""

    def __init__(self, base: torch.nn.Module, settings: ReftSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ReftSettings()
        self.base = base.requires_grad_(False)
        layers = layer_list(base)
        self.layer_ids = self.settings.layer_indices(len(layers))
        self.hidden_size = int(base.config.hidden_size)
        keys = ["shared"] if self.settings.share_weights else [f"layer{i}" for i in self.layer_ids]
        device = next(base.parameters()).device
        self.interventions = torch.nn.ModuleDict(
            {key: LoreftIntervention(self.hidden_size, self.settings.rank, self.settings.dropout) for key in keys}
        ).to(device)
        self._mask: torch.Tensor | None = None  # the positions to edit in the current pass; None: edit nothing
        self._handles = [layers[i].register_forward_hook(self._hook("shared" if self.settings.share_weights
                                                                    else f"layer{i}")) for i in self.layer_ids]

    def _hook(self, key: str):
        def hook(module, args, output):
            mask = self._mask
            if mask is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[0] != mask.shape[0] and hidden.shape[0] % mask.shape[0] == 0:
                # beam search / num_return_sequences expand each row in place (repeat_interleave)
                mask = mask.repeat_interleave(hidden.shape[0] // mask.shape[0], dim=0)
            if tuple(hidden.shape[:2]) != tuple(mask.shape):
                # Never guess: a pass of another shape (chunked prefill, a direct call of the base) is refused.
                raise RuntimeError(f"reft: hidden states {tuple(hidden.shape[:2])} do not match the positions "
                                   f"set for this pass {tuple(mask.shape)}")
            edited = torch.where(mask.unsqueeze(-1), self.interventions[key](hidden), hidden)
            return (edited, *output[1:]) if isinstance(output, tuple) else edited
        return hook

    def forward(self, input_ids, attention_mask=None, labels=None, prompt_lengths=None, **kwargs):
        """The base model's output (with loss when `labels` are given). `prompt_lengths`: each row's prompt
        token count (from its first real token); None means the whole row is prompt."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self._mask = intervention_mask(attention_mask, prompt_lengths, self.settings.first_positions,
                                       self.settings.last_positions)
        try:
            return self.base(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        finally:
            # Gradient checkpointing re-runs the layers (hooks included) in backward, so the positions must
            # outlive this call then; otherwise clear them, so a later direct call of the base is not edited.
            checkpointing = getattr(self.base, "is_activation_checkpointing", None)  # transformers 5 (4.x: the
            if checkpointing is None:                                              # older name, read only then)
                checkpointing = getattr(self.base, "is_gradient_checkpointing", False)
            if not checkpointing:
                self._mask = None

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, **kwargs):
        """The base model's `generate`, with the prompt (the whole unpadded input) edited in the prefill pass
        only; the decoding steps (one new token each, over the KV cache) are beyond the prompt, so not edited."""
        if kwargs.get("past_key_values") is not None or kwargs.get("prefill_chunk_size"):
            raise ConfigError("reft generate: a past cache or chunked prefill would skip the prompt's edits")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self._mask = intervention_mask(attention_mask, None, self.settings.first_positions,
                                       self.settings.last_positions)

        def prefill_done(module, args, output):  # the first forward of the base is the prefill
            self._mask = None

        handle = self.base.register_forward_hook(prefill_done)
        try:
            return self.base.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            handle.remove()
            self._mask = None

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def remove_hooks(self) -> None:
        """Detach from the base model (which is then the plain, unedited model again)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def save(model: ReftModel, folder) -> Path:
    """`interventions.safetensors` + `reft.json`. Per intervention: R (materialised, orthonormal: what a reader
    wants), its raw parametrization tensor `R_original` (restores R bit-exactly; QR of R itself is exact only to
    rounding), W and b. Plain names, not the module's `parametrizations.weight.original` state-dict keys."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, intervention in model.interventions.items():
        tensors.update({f"{key}.R": intervention.rotate.weight, f"{key}.W": intervention.learned.weight,
                        f"{key}.b": intervention.learned.bias,
                        f"{key}.R_original": intervention.rotate.parametrizations.weight.original})
    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()},
              str(folder / WEIGHTS), metadata={"format": FORMAT})
    config = model.base.config
    record = {"format": FORMAT, "settings": asdict(model.settings), "hidden_size": model.hidden_size,
              "num_layers": len(layer_list(model.base)), "interventions": list(model.interventions),
              "base_model": getattr(config, "_name_or_path", "") or getattr(config, "name_or_path", "")}
    (folder / SETTINGS).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder


def load(base_model: torch.nn.Module, folder) -> ReftModel:
    """A ReftModel on `base_model` (the same base the interventions were trained on: only the hidden size
    and layer count can be checked; the recorded `base_model` name is informative)."""
    folder = Path(folder)
    record = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
    if record.get("format") != FORMAT:
        raise ConfigError(f"{folder / SETTINGS}: not a {FORMAT} file (format {record.get('format')!r})")
    layers = len(layer_list(base_model))
    if (int(base_model.config.hidden_size), layers) != (record["hidden_size"], record["num_layers"]):
        raise ConfigError(f"reft load: interventions are for hidden size {record['hidden_size']} and "
                          f"{record['num_layers']} layers; the base model has {base_model.config.hidden_size} "
                          f"and {layers}")
    model = ReftModel(base_model, ReftSettings(**record["settings"]))
    tensors = load_file(str(folder / WEIGHTS))
    with torch.no_grad():
        for key, intervention in model.interventions.items():
            intervention.learned.weight.copy_(tensors[f"{key}.W"])
            intervention.learned.bias.copy_(tensors[f"{key}.b"])
            # R_original when present (exact); else R, which the parametrization accepts as its own preimage
            raw = tensors.get(f"{key}.R_original", tensors[f"{key}.R"])
            intervention.rotate.parametrizations.weight.original.copy_(raw)
    return model
