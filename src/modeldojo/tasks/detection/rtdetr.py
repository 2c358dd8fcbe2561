"""Hugging Face DETR-family detectors (RT-DETR first) behind the detection task's interface.

The second detector family, beside the FCOS ``network.Detector``: checkpoints load by hub id or local folder
through ``AutoModelForObjectDetection``; ``build`` replaces the class head for the user's classes.

Which families work here (transformers 5, no torchvision and no timm in the environment):
- RT-DETR (``rt_detr``, ``rt_detr_v2``): native ResNet backbone (``RTDetrResNet``), no timm; the model needs no
  torchvision. Only its *fast* image processor imports torchvision, and this module never uses an image
  processor: it reads ``preprocessor_config.json`` as plain json. Tested here with a tiny random config.
- YOLOS: a plain ViT, no timm; should work (untested).
- DETR and conditional DETR: their published checkpoints (``facebook/detr-resnet-50``,
  ``microsoft/conditional-detr-resnet-50``) use a timm backbone, which is not installed; only checkpoints saved
  with ``use_timm_backbone=False`` (e.g. DETR's ``no_timm`` revision) load. Untested.
The training loss is transformers' own (Hungarian matcher, which needs scipy).

Conventions, as in ``network.py``: ``forward`` takes letterboxed RGB in ``[0, 1]`` and normalises inside (so an
exported graph needs no preprocessing); boxes are exclusive ``xyxy`` pixels of the letterboxed input
(``boxes.py``). RT-DETR's processor does *not* normalise (``do_normalize: false``), DETR's and YOLOS's use the
ImageNet mean and std; the checkpoint's ``preprocessor_config.json`` decides when there is one.

Post-processing mirrors ``RTDetrImageProcessor.post_process_object_detection`` in pure torch: sigmoid scores,
top-k over (query, class) pairs with k = number of queries, no NMS (the set prediction has no duplicates to
suppress). Differences, on purpose: scores are kept when ``>= score_threshold`` (the project's rule, as in
``network.decode``; HF keeps ``>``), k is capped at ``max_detections``, and boxes are clipped to the image.
Softmax families (DETR, YOLOS: one extra "no object" logit) keep each query's best class only, as HF does.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy
import torch
from torch import nn

from ...export.onnx_format import OPSET
from .network import Detections
from .onnx_export import (OUTPUT_NAMES, ParityReport, export_dense, graph_builders, match_detections, run_onnx,
                          set_detection_outputs)

SETTINGS_FILE = "modeldojo_detector.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The modules whose shape depends on the number of classes, i.e. those re-initialised for new classes.
# RT-DETR's denoising embedding has one row per class (+1 padding row) and its encoder scores proposals per class.
HEAD_MODULES = {
    "rt_detr": ("model.denoising_class_embed", "model.enc_score_head", "model.decoder.class_embed"),
    "rt_detr_v2": ("model.denoising_class_embed", "model.enc_score_head", "model.decoder.class_embed",
                   "class_embed"),
    "detr": ("class_labels_classifier",),
    "conditional_detr": ("class_labels_classifier",),
    "yolos": ("class_labels_classifier",),
}
# A CNN backbone's first convolution block (RT-DETR, DETR) or a ViT's patch projection (YOLOS).
STEM_SUFFIXES = ("backbone.model.embedder", "patch_embeddings")


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


class HuggingFaceDetector(nn.Module):
    """An ``AutoModelForObjectDetection`` taking letterboxed pixels in [0, 1]; see the module docstring."""

    uses_nms = False  # set prediction: one query per object, top-k without NMS


    def __init__(self, net: nn.Module, image_size: int | tuple[int, int], head_names: list[str] | None = None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.net = net
        self.num_classes = int(net.config.num_labels)
        self.image_size = _size(image_size)
        modules = dict(net.named_modules())
        names = head_names if head_names is not None else HEAD_MODULES.get(net.config.model_type, ())
        self.head_names = [f"net.{name}" for name in names if name in modules]
        # None means "no normalisation" (RT-DETR); kept as (0, 1) buffers so forward has one code path.
        self.normalisation = None if mean is None else (tuple(mean), tuple(std))
        self.register_buffer("mean", torch.tensor(mean or (0.0, 0.0, 0.0)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or (1.0, 1.0, 1.0)).view(1, 3, 1, 1), persistent=False)

    def export_onnx(self, path, image_size, score_threshold: float, iou_threshold: float, max_detections: int):
        return export_onnx(self, path, image_size, score_threshold=score_threshold, max_detections=max_detections)

    def stem_modules(self) -> list[nn.Module]:
        return [module for name, module in self.named_modules() if name.endswith(STEM_SUFFIXES)][:1]

    def forward(self, pixels: torch.Tensor):
        """(N, 3, H, W) letterboxed RGB in [0, 1] -> the HF output (``logits`` (N, Q, C), ``pred_boxes``)."""
        return self.net(pixel_values=(pixels - self.mean) / self.std)

    def compute_loss(self, pixels: torch.Tensor, boxes_list: list[torch.Tensor],
                     classes_list: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """transformers' own set loss; it needs the pixels, not outputs: RT-DETR adds denoising queries built
        from the labels to the decoder input in training mode."""
        height, width = pixels.shape[-2:]
        scale = pixels.new_tensor([width, height, width, height])
        labels = []
        for boxes, classes in zip(boxes_list, classes_list):
            # Normalised cxcywh, clamped to the image: predictions are sigmoids, so they cannot leave [0, 1].
            x1, y1, x2, y2 = (boxes.to(pixels).reshape(-1, 4) / scale).clamp(0.0, 1.0).unbind(-1)
            labels.append({"class_labels": classes.to(device=pixels.device, dtype=torch.int64).reshape(-1),
                           "boxes": torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)})
        outputs = self.net(pixel_values=(pixels - self.mean) / self.std, labels=labels)
        parts = {name: value.detach() for name, value in (outputs.loss_dict or {}).items()}
        return {"loss": outputs.loss, **parts}

    def detect(self, pixels_or_outputs, image_size: int | tuple[int, int], score_threshold: float = 0.05,
               max_detections: int = 100) -> list[Detections]:
        """Pixels (run without gradients, in the current train/eval mode) or outputs -> per-image detections."""
        outputs = pixels_or_outputs
        if isinstance(pixels_or_outputs, torch.Tensor):
            with torch.no_grad():
                outputs = self(pixels_or_outputs)
        boxes, scores = dense_predictions(outputs, image_size, self.num_classes)
        return select_detections(boxes, scores, score_threshold, max_detections)


def dense_predictions(outputs, image_size: int | tuple[int, int],
                      num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All queries' boxes (N, Q, 4) exclusive xyxy pixels, clipped, and per-class scores (N, Q, C) in [0, 1].

    Fixed shapes only: this is the part an ONNX export traces.
    """
    height, width = _size(image_size)
    logits = outputs.logits
    center_x, center_y, box_width, box_height = outputs.pred_boxes.unbind(-1)
    boxes = torch.stack(((center_x - box_width / 2).clamp(0.0, 1.0) * width,
                         (center_y - box_height / 2).clamp(0.0, 1.0) * height,
                         (center_x + box_width / 2).clamp(0.0, 1.0) * width,
                         (center_y + box_height / 2).clamp(0.0, 1.0) * height), dim=-1)
    if logits.shape[-1] == num_classes + 1:
        # Softmax families: drop "no object" and keep only each query's best class (HF's max over classes).
        probabilities = logits.softmax(-1)[..., :-1]
        best = probabilities.max(-1, keepdim=True).values
        return boxes, torch.where(probabilities >= best, probabilities, torch.zeros_like(probabilities))
    return boxes, torch.sigmoid(logits)


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float,
                      max_detections: int) -> list[Detections]:
    """Top-k (query, class) pairs per image, k = min(queries, max_detections), then the score threshold."""
    num_queries, num_classes = scores.shape[1:]
    keep_count = min(num_queries, max_detections)
    results = []
    for image_boxes, image_scores in zip(boxes, scores):
        top_scores, top_indices = image_scores.reshape(-1).topk(keep_count)
        passing = top_scores >= score_threshold
        top_scores, top_indices = top_scores[passing], top_indices[passing]
        query_indices = torch.div(top_indices, num_classes, rounding_mode="floor")
        results.append(Detections(image_boxes[query_indices], top_scores, top_indices % num_classes))
    return results


# --- building, saving, loading ---------------------------------------------------------------------------


def _processor_settings(name_or_folder: str | Path) -> dict | None:
    """The checkpoint's preprocessor_config.json as plain json (the RT-DETR fast processor imports torchvision)."""
    folder = Path(name_or_folder)
    if folder.is_dir():
        path = folder / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(name_or_folder), "preprocessor_config.json")).read_text())
    except Exception:  # offline, no such file, or a gated repo: fall back to the family's default below
        return None


def _normalisation(name_or_folder: str | Path, model_type: str) -> tuple[tuple | None, tuple | None]:
    settings = _processor_settings(name_or_folder)
    if settings is None:
        return (None, None) if model_type.startswith("rt_detr") else (IMAGENET_MEAN, IMAGENET_STD)
    if not settings.get("do_normalize", True):
        return None, None
    return tuple(settings.get("image_mean", IMAGENET_MEAN)), tuple(settings.get("image_std", IMAGENET_STD))


def _label_maps(class_names: list[str]) -> dict:
    return {"num_labels": len(class_names), "id2label": dict(enumerate(class_names)),
            "label2id": {name: index for index, name in enumerate(class_names)}}


def build(name_or_folder: str | Path, class_names: list[str], image_size: int | tuple[int, int]) -> HuggingFaceDetector:
    """A pretrained checkpoint (hub id or folder) with a new, randomly initialised class head for ``class_names``."""
    from transformers import AutoModelForObjectDetection

    net, loading = AutoModelForObjectDetection.from_pretrained(
        str(name_or_folder), ignore_mismatched_sizes=True, output_loading_info=True, **_label_maps(class_names))
    head_names = HEAD_MODULES.get(net.config.model_type)
    if head_names is None:  # an unlisted family: the head is whatever did not load (a name, or (name, shapes))
        keys = [key if isinstance(key, str) else key[0]
                for key in [*loading.get("missing_keys", ()), *loading.get("mismatched_keys", ())]]
        head_names = sorted({key.rsplit(".", 1)[0] for key in keys})
    mean, std = _normalisation(name_or_folder, net.config.model_type)
    return HuggingFaceDetector(net, image_size, list(head_names), mean, std)


def tiny(class_names: list[str], image_size: int | tuple[int, int] = 64) -> HuggingFaceDetector:
    """A tiny random RT-DETR (native ResNet backbone, 1 decoder layer, 10 queries) for tests; no download."""
    from transformers import AutoModelForObjectDetection, RTDetrConfig, RTDetrResNetConfig

    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_indices=[2, 3, 4])
    config = RTDetrConfig(backbone_config=backbone, encoder_in_channels=[16, 24, 32], encoder_hidden_dim=16,
                          encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16,
                          decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32, decoder_layers=1,
                          decoder_attention_heads=2, decoder_n_points=2, num_queries=10, num_denoising=10,
                          **_label_maps(class_names))
    net = AutoModelForObjectDetection.from_config(config)
    return HuggingFaceDetector(net, image_size)


def save(model: HuggingFaceDetector, folder: str | Path) -> Path:
    """config.json + model.safetensors (transformers' format, no pickle) + our settings as json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.net.save_pretrained(str(folder), safe_serialization=True)
    mean, std = model.normalisation or (None, None)
    settings = {"image_size": list(model.image_size), "mean": mean, "std": std,
                "head_names": [name.removeprefix("net.") for name in model.head_names]}
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return folder


def load(folder: str | Path) -> HuggingFaceDetector:
    from transformers import AutoModelForObjectDetection

    folder = Path(folder)
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    net = AutoModelForObjectDetection.from_pretrained(str(folder), local_files_only=True)
    return HuggingFaceDetector(net.eval(), tuple(settings["image_size"]), settings["head_names"],
                               settings["mean"], settings["std"])


# --- ONNX ------------------------------------------------------------------------------------------------


class _DensePredictions(nn.Module):
    """The detector followed by ``dense_predictions``: plain tensors out, so torch.onnx can trace it."""

    def __init__(self, model: HuggingFaceDetector, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.model, self.size = model, image_size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dense_predictions(self.model(images), self.size, self.model.num_classes)


def _append_top_k(graph, dense_boxes: str, dense_scores: str, num_queries: int, num_classes: int,
                  score_threshold: float, max_detections: int) -> None:
    """Append ``select_detections`` to ``graph``: TopK over (query, class) per image, gather, threshold, flatten."""
    from onnx import helper

    constant, node = graph_builders(graph)

    keep_count = min(num_queries, max_detections)
    flat_scores = node("Reshape", [dense_scores, constant("flat_shape", [0, -1], numpy.int64)], "flat_scores")
    graph.node.append(helper.make_node("TopK", [flat_scores, constant("keep_count", [keep_count], numpy.int64)],
                                       ["post_top_scores", "post_top_indices"], name="post_top_k", axis=1,
                                       largest=1, sorted=1))
    # Integer Div truncates, which is floor division for these non-negative indices.
    query_indices = node("Div", ["post_top_indices", constant("num_classes", num_classes, numpy.int64)], "queries")
    class_ids = node("Mod", ["post_top_indices", constant("modulus", num_classes, numpy.int64)], "classes")
    queries_3d = node("Unsqueeze", [query_indices, constant("axis_two", [2], numpy.int64)], "queries_3d")
    top_boxes = node("GatherND", [dense_boxes, queries_3d], "top_boxes", batch_dims=1)  # (B, k, 4)
    batch_size = node("Gather", [node("Shape", [dense_scores], "dense_shape"), constant("zero", 0, numpy.int64)],
                      "batch_size")
    image_range = node("Range", [constant("range_start", 0, numpy.int64), batch_size,
                                 constant("range_step", 1, numpy.int64)], "image_range")
    batch_index = node("Expand", [node("Unsqueeze", [image_range, constant("axis_one", [1], numpy.int64)], "images_2d"),
                                  node("Shape", ["post_top_indices"], "top_shape")], "batch_grid")

    # Row-major flattening keeps rows sorted by image, then by score (TopK sorted them within each image).
    flat = constant("flat", [-1], numpy.int64)
    columns = {"boxes": node("Reshape", [top_boxes, constant("box_rows", [-1, 4], numpy.int64)], "flat_boxes"),
               "scores": node("Reshape", ["post_top_scores", flat], "flat_top_scores"),
               "class_ids": node("Reshape", [class_ids, flat], "flat_classes"),
               "batch_index": node("Reshape", [batch_index, flat], "flat_batch")}
    passing = node("GreaterOrEqual", [columns["scores"], constant("score_threshold", score_threshold, numpy.float32)],
                   "passing")
    for output in OUTPUT_NAMES:
        graph.node.append(helper.make_node("Compress", [columns[output], passing], [output], name=f"post_{output}",
                                           axis=0))
    set_detection_outputs(graph)


def export_onnx(model: HuggingFaceDetector, path: str | Path, image_size: int | tuple[int, int],
                score_threshold: float = 0.05, max_detections: int = 100, opset: int = OPSET) -> Path:
    """The same graph interface as ``onnx_export.export_detector`` (input ``images``; flat ``boxes``, ``scores``,
    ``class_ids``, ``batch_index``), with ``select_detections`` inside; settings go to the metadata."""
    import onnx

    path = Path(path)
    size = _size(image_size)
    proto, (num_queries, num_classes) = export_dense(_DensePredictions(model, size).eval(), path, *size, opset)
    _append_top_k(proto.graph, "dense_boxes", "dense_scores", num_queries, num_classes, score_threshold,
                  max_detections)
    for key, value in {"score_threshold": score_threshold, "max_detections": max_detections}.items():
        proto.metadata_props.add(key=key, value=repr(value))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def parity(model: HuggingFaceDetector, onnx_path: str | Path, images: torch.Tensor,
           score_threshold: float | None = None, max_detections: int | None = None, box_tolerance: float = 0.5,
           score_tolerance: float = 1e-4, session=None) -> ParityReport:
    """Compare ``model.detect`` with onnxruntime on the same letterboxed ``images``, per image (thresholds
    default to those baked into the graph). Detections are matched greedily, best torch score first, to the
    unmatched ONNX detection of the same class with the closest box, as ``onnx_export.parity`` does."""
    import onnx

    if session is None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    baked = {item.key: ast.literal_eval(item.value)
             for item in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    settings = {"score_threshold": score_threshold, "max_detections": max_detections}
    settings = {key: baked[key] if value is None else value for key, value in settings.items()}
    model.eval()
    expected = model.detect(images, tuple(images.shape[-2:]), **settings)
    actual = run_onnx(session, images)
    worst_box, worst_score, problems = match_detections(
        [(d.boxes.numpy(), d.scores.numpy(), d.class_ids.numpy()) for d in expected], actual, box_tolerance,
        score_tolerance)
    return ParityReport(not problems, worst_box, worst_score, [len(d.scores) for d in expected],
                        [len(result[1]) for result in actual], problems)
