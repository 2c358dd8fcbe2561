"""A tiny randomly initialised ResNet (two stages, widths 8 and 16) as a Hugging Face folder.

Used by the contract test and unit tests: trains in seconds, needs no download, and goes through the
same Hugging Face backbone path as a real checkpoint (config, preprocessor_config.json, safetensors).
"""
from __future__ import annotations

import json
from pathlib import Path


def build(folder: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          num_labels=2)
    ResNetForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 32},
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}), encoding="utf-8")
    return folder
