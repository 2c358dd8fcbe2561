"""The text classifier: a pretrained encoder, a pooling of its token states, dropout and a linear head.

dojo builds this itself rather than using `AutoModelForSequenceClassification` because the pooling
must match how the checkpoint was trained: sentence-embedding models such as all-MiniLM-L6-v2 were
trained on the *mean* of their token states, and reading their untrained [CLS] pooler instead left
head-only fine-tuning at ≤0.69 accuracy on the reviews (docs/benchmarks.md). Pooling is read from a
sentence-transformers folder (`1_Pooling/config.json`) when there is one, else mean pooling.

Saved as: `model/` (the encoder, `save_pretrained`, safetensors) + `head.safetensors` (the head).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

HEAD_FILE = "head.safetensors"
ENCODER_FOLDER = "model"


def checkpoint_pooling(model_name: str) -> str:
    """'cls' or 'mean': what a sentence-transformers checkpoint was trained with; mean otherwise."""
    pooling_file = Path(model_name) / "1_Pooling" / "config.json"
    if pooling_file.is_file():
        settings = json.loads(pooling_file.read_text(encoding="utf-8"))
        if settings.get("pooling_mode_cls_token") and not settings.get("pooling_mode_mean_tokens"):
            return "cls"
    return "mean"


class EncoderClassifier(torch.nn.Module):
    """Token states → pooled vector → dropout → logits (one per class, or per label for multi-label)."""

    def __init__(self, encoder: torch.nn.Module, outputs: int, pooling: str, dropout: float) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # BERT's [CLS] pooler is unused here: no dead weights to train or ship
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, outputs)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


def attention_implementation() -> str:
    """Eager attention on CPU: the fused SDPA kernel's backward ran ~1.5x slower there (docs/training.md);
    on GPUs SDPA (flash / memory-efficient) is the fast path. Training and loading use the same one, so
    a reloaded model predicts bit-identically."""
    return "sdpa" if torch.cuda.is_available() else "eager"


def build(model_name: str, outputs: int, pooling: str, dropout: float, encoder_settings: dict) -> EncoderClassifier:
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(model_name, attn_implementation=attention_implementation(),
                                        **encoder_settings)
    return EncoderClassifier(encoder, outputs, pooling, dropout)


def save(model: EncoderClassifier, directory: Path) -> None:
    from safetensors.torch import save_file

    model.encoder.save_pretrained(directory / ENCODER_FOLDER, safe_serialization=True)
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, str(directory / HEAD_FILE))


def load(directory: Path, outputs: int, pooling: str) -> EncoderClassifier:
    from safetensors.torch import load_file
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(directory / ENCODER_FOLDER, attn_implementation=attention_implementation())
    model = EncoderClassifier(encoder, outputs, pooling, 0.0)
    model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
    return model.eval()
