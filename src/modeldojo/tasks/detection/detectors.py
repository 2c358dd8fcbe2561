"""Which detector `model.name` means, and saving / loading one (safetensors + a JSON spec; no pickle).

- "auto" / "efficientnet-lite0": ImageNet EfficientNet-Lite0 features + FPN + FCOS head (network.py), offline.
- "tiny": a small random backbone with the same head, for tests and demos that must run in seconds.
- anything else: a Hugging Face object-detection checkpoint (RT-DETR …) by hub id or local folder (rtdetr.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import network

SPEC_FILE, WEIGHTS_FILE = "detector.json", "model.safetensors"
OWN = {"auto": network.EFFICIENTNET, network.EFFICIENTNET: network.EFFICIENTNET, "tiny": "tiny"}


def resolve(name: str) -> str:
    return OWN.get(name or "auto", name)


def build(name: str, classes: list[str], image_size: int, pretrained: bool = True) -> torch.nn.Module:
    name = resolve(name)
    if name == network.EFFICIENTNET:
        model = network.efficientnet_detector(len(classes), pretrained=pretrained)
    elif name == "tiny":
        model = network.tiny_detector(len(classes))
    else:
        from . import rtdetr

        model = rtdetr.build(name, classes, image_size)
    model.detector_name = name
    return model


def save(model: torch.nn.Module, folder: Path, classes: list[str], image_size: int) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    name = getattr(model, "detector_name", network.EFFICIENTNET)
    if name not in OWN.values():
        from . import rtdetr

        rtdetr.save(model, folder / "huggingface")
    else:
        save_file({key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()},
                  str(folder / WEIGHTS_FILE))
    (folder / SPEC_FILE).write_text(json.dumps({"name": name, "classes": classes, "image_size": image_size},
                                               indent=2, ensure_ascii=False), encoding="utf-8")


def load(folder: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    if spec["name"] not in OWN.values():
        from . import rtdetr

        model = rtdetr.load(folder / "huggingface")
    else:
        model = build(spec["name"], spec["classes"], spec["image_size"], pretrained=False)  # weights follow
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    model.detector_name = spec["name"]
    return model.eval()
