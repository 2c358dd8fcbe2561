"""Export a detector to ONNX with its post-processing (thresholding, class-aware NMS, top-k) inside the graph,
and check the exported graph against ``network.decode`` detection by detection.

Graph inputs/outputs:
- input ``images``: (B, 3, S, S) float letterboxed RGB in [0, 1] (B is dynamic; S is fixed at export).
- outputs, one row per kept detection of the whole batch (a flat layout, like torchvision's batched outputs;
  it needs no padding value and an image with no detection simply contributes no rows):
  ``boxes`` (N, 4) float exclusive xyxy pixels of the letterboxed input, clipped to it; ``scores`` (N,);
  ``class_ids`` (N,) int64; ``batch_index`` (N,) int64 (which image of the batch). Rows are sorted by image,
  then by score, best first; at most ``max_detections`` rows per image. N may be 0.

How the graph reproduces ``decode`` (and where ONNX ``NonMaxSuppression`` differs from ``boxes.batched_nms``):
- Suppression rule: both suppress a box when its IoU with a better box of the same class is *strictly greater*
  than ``iou_threshold`` (kornia keeps ``iou <= threshold``; onnxruntime suppresses ``iou > threshold``), and
  both use the exclusive area ``(x2 - x1) * (y2 - y1)``. NonMaxSuppression is per class by definition, so the
  class-offset trick is not needed. The op's ``[y1, x1, y2, x2]`` layout is only a naming: it takes any
  diagonal corner pair and is invariant to swapping the axes, so our ``x1, y1, x2, y2`` boxes go in as they are.
- Score threshold: ``decode`` keeps ``score >= threshold``, while onnxruntime's op keeps ``score > threshold``.
  So the graph does the thresholding itself (scores failing it are replaced by -1) and gives the op a
  threshold of -0.5, which only drops those -1 entries: the ``>=`` rule is then the same on both sides.
- Candidate cap: ``decode`` sends only the best ``candidates_per_image`` (point, class) pairs to NMS; the graph
  keeps pairs scoring at least the k-th best score of their image (TopK), which is the same set unless scores
  tie exactly at the k-th place.
- Boxes are clipped to the image before NMS on both sides (``decode`` clips its candidates).
- Known remaining differences, all at measure zero for real predictions: exact score ties may be ordered
  differently (torch's sort vs onnxruntime's lower-index-first), IoU is float32 in onnxruntime vs float64 in
  ``batched_nms`` (an IoU within ~1e-7 of the threshold may decide differently), and two zero-area boxes (fully
  clipped away) give a NaN IoU that kornia treats as "suppress" while onnxruntime never suppresses an
  empty box.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import torch
from torch import nn

from ...export.onnx_format import OPSET
from .network import STRIDES, decode, dense_predictions

OUTPUT_NAMES = ("boxes", "scores", "class_ids", "batch_index")
INPUT_NAME = "images"


class _DensePredictions(nn.Module):
    """The detector followed by ``dense_predictions``: the part of the pipeline torch.onnx can trace."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dense_predictions(self.model(images), getattr(self.model, "strides", STRIDES))


def graph_builders(graph):
    """(constant(name, value, dtype), node(op, inputs, name, **attributes)) appending to `graph` under a "post_"
    prefix; each returns the name of what it added."""
    from onnx import helper, numpy_helper

    def constant(name: str, value, dtype) -> str:
        graph.initializer.append(numpy_helper.from_array(numpy.asarray(value, dtype=dtype), f"post_{name}"))
        return f"post_{name}"

    def node(op: str, inputs: list[str], name: str, **attributes) -> str:
        graph.node.append(helper.make_node(op, inputs, [f"post_{name}"], name=f"post_{name}", **attributes))
        return f"post_{name}"

    return constant, node


def set_detection_outputs(graph) -> None:
    """The graph's outputs: flat boxes (D×4), scores, class_ids and batch_index (D), every detector family alike."""
    from onnx import TensorProto, helper

    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"]),
        helper.make_tensor_value_info("class_ids", TensorProto.INT64, ["detections"]),
        helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["detections"]),
    ])


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _append_postprocessing(graph, dense_boxes: str, dense_scores: str, height: int, width: int,
                           num_points: int, num_classes: int, score_threshold: float, iou_threshold: float,
                           max_detections: int, candidates_per_image: int) -> None:
    """Append thresholding, NonMaxSuppression and the per-image top-k to ``graph`` (see the module docstring)."""
    from onnx import TensorProto, helper

    constant, node = graph_builders(graph)

    # Clip boxes to the letterboxed image, as decode does before its NMS.
    low = constant("box_low", [0.0, 0.0, 0.0, 0.0], numpy.float32)
    high = constant("box_high", [width, height, width, height], numpy.float32)
    boxes = node("Min", [node("Max", [dense_boxes, low], "boxes_low"), high], "boxes_clipped")

    # Score threshold and candidate cap as a mask on (B, P, C): keep score >= max(threshold, k-th best score).
    keep_count = min(candidates_per_image, num_points * num_classes)
    flat_scores = node("Reshape", [dense_scores, constant("flat_shape", [0, -1], numpy.int64)], "flat_scores")
    graph.node.append(helper.make_node("TopK", [flat_scores, constant("candidates", [keep_count], numpy.int64)],
                                       ["post_top_scores", "post_top_unused"], name="post_candidates", axis=1))
    kth_score = node("Slice", ["post_top_scores", constant("kth_start", [keep_count - 1], numpy.int64),
                               constant("kth_end", [keep_count], numpy.int64), constant("one_axis", [1], numpy.int64)],
                     "kth_score")
    cutoff = node("Max", [node("Unsqueeze", [kth_score, constant("axis_two", [2], numpy.int64)], "kth_score_3d"),
                          constant("score_threshold", score_threshold, numpy.float32)], "cutoff")
    passing = node("GreaterOrEqual", [dense_scores, cutoff], "passing")
    masked = node("Where", [passing, dense_scores, constant("failed_score", -1.0, numpy.float32)], "masked")
    class_scores = node("Transpose", [masked], "class_scores", perm=[0, 2, 1])  # (B, C, P) as the op wants

    # Per-class NMS; a per-class cap of max_detections loses nothing from the per-image top max_detections.
    selected = node("NonMaxSuppression", [boxes, class_scores, constant("max_per_class", [max_detections], numpy.int64),
                                          constant("iou_threshold", [iou_threshold], numpy.float32),
                                          constant("nms_score_threshold", [-0.5], numpy.float32)],
                    "selected", center_point_box=0)
    batch_index = node("Gather", [selected, constant("column_batch", 0, numpy.int64)], "selected_batch", axis=1)
    class_ids = node("Gather", [selected, constant("column_class", 1, numpy.int64)], "selected_class", axis=1)
    box_index = node("Gather", [selected, constant("columns_batch_box", [0, 2], numpy.int64)], "batch_box", axis=1)
    scores = node("GatherND", [class_scores, selected], "selected_scores")
    selected_boxes = node("GatherND", [boxes, box_index], "selected_boxes")

    # Sort by (image, score descending) with one float64 key: image * 2 + (1 - score), scores being in [0, 1];
    # float64 keeps score differences of 1e-8 distinct for any realistic batch size.
    key = node("Sub", [node("Add", [node("Mul", [node("Cast", [batch_index], "batch_double", to=TensorProto.DOUBLE),
                                                 constant("two", 2.0, numpy.float64)], "batch_twice"),
                                    constant("one", 1.0, numpy.float64)], "batch_key"),
                       node("Cast", [scores], "score_double", to=TensorProto.DOUBLE)], "sort_key")
    count = node("Shape", [key], "count")
    graph.node.append(helper.make_node("TopK", [key, count], ["post_sorted_keys", "post_order"], name="post_sort",
                                       axis=0, largest=0, sorted=1))
    sorted_batch = node("Gather", [batch_index, "post_order"], "sorted_batch")

    # Rank within the image = position in the sorted list - where that image's rows start; keep rank < cap.
    batch_size = node("Gather", [node("Shape", [dense_scores], "dense_shape"), constant("zero", 0, numpy.int64)],
                      "batch_size")
    image_range = node("Range", [constant("range_start", 0, numpy.int64), batch_size,
                                 constant("range_step", 1, numpy.int64)], "image_range")
    membership = node("Equal", [node("Unsqueeze", [sorted_batch, constant("axis_one", [1], numpy.int64)], "rows"),
                                node("Unsqueeze", [image_range, constant("axis_zero", [0], numpy.int64)], "cols")],
                      "membership")
    per_image = node("ReduceSum", [node("Cast", [membership], "membership_int", to=TensorProto.INT64),
                                   constant("reduce_axis", [0], numpy.int64)], "per_image", keepdims=0)
    starts = node("CumSum", [per_image, constant("cumsum_axis", 0, numpy.int64)], "starts", exclusive=1)
    total = node("Squeeze", [count, constant("squeeze_axis", [0], numpy.int64)], "total")
    positions = node("Range", [constant("position_start", 0, numpy.int64), total,
                               constant("position_step", 1, numpy.int64)], "positions")
    rank = node("Sub", [positions, node("Gather", [starts, sorted_batch], "row_start")], "rank")
    within_cap = node("Less", [rank, constant("max_detections", max_detections, numpy.int64)], "within_cap")
    final_order = node("Compress", ["post_order", within_cap], "final_order", axis=0)

    for output, source in zip(OUTPUT_NAMES, (selected_boxes, scores, class_ids, batch_index)):
        graph.node.append(helper.make_node("Gather", [source, final_order], [output], name=f"post_{output}", axis=0))
    set_detection_outputs(graph)


def export_dense(wrapper: nn.Module, path: Path, height: int, width: int, opset: int = OPSET):
    """Export `wrapper` (images → dense boxes (B, N, 4), dense scores (B, N, C)) with the project's exporter settings
    (TorchScript exporter, dynamo=False); return (the loaded ONNX proto, (N, C)) for the post-processing to extend."""
    import onnx

    example = torch.zeros(1, 3, height, width)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values taken from shapes
        torch.onnx.export(wrapper, (example,), str(path), input_names=[INPUT_NAME],
                          output_names=["dense_boxes", "dense_scores"],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, "dense_boxes": {0: "batch"},
                                        "dense_scores": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        count, classes = wrapper(example)[1].shape[1:]
    return onnx.load(str(path)), (int(count), int(classes))


def export_detector(model: nn.Module, path: str | Path, image_size: int | tuple[int, int],
                    score_threshold: float = 0.05, iou_threshold: float = 0.6, max_detections: int = 100,
                    opset: int = OPSET, candidates_per_image: int = 1000) -> Path:
    """Export ``model`` (a ``network.Detector``) with NMS to ``path``; the defaults are ``decode``'s.

    Uses the project's exporter settings (TorchScript exporter, ``dynamo=False``, opset 18; see
    ``export/onnx_format.py``) for the network, then appends the post-processing with ``onnx.helper``.
    The thresholds are baked into the graph and recorded in its metadata for ``parity``.
    """
    import onnx

    path = Path(path)
    height, width = _size(image_size)
    proto, (num_points, num_classes) = export_dense(_DensePredictions(model).eval(), path, height, width, opset)
    _append_postprocessing(proto.graph, "dense_boxes", "dense_scores", height, width, num_points,
                           num_classes, score_threshold, iou_threshold, max_detections, candidates_per_image)
    settings = {"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                "max_detections": max_detections, "candidates_per_image": candidates_per_image}
    for key, value in settings.items():
        proto.metadata_props.add(key=key, value=repr(value))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


@dataclass
class ParityReport:
    passed: bool
    worst_box_difference: float  # pixels, over matched detections
    worst_score_difference: float
    torch_counts: list[int]
    onnx_counts: list[int]
    problems: list[str] = field(default_factory=list)


def run_onnx(session, images: torch.Tensor) -> list[tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]]:
    """Run the exported graph; split its flat outputs into per-image (boxes, scores, class_ids)."""
    boxes, scores, class_ids, batch_index = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
    return [(boxes[batch_index == image], scores[batch_index == image], class_ids[batch_index == image])
            for image in range(images.shape[0])]


def match_detections(expected, actual, box_tolerance: float = 0.5, score_tolerance: float = 1e-4):
    """Compare two systems' per-image (boxes, scores, class_ids) numpy triples: (largest box difference, largest
    score difference, problems). Detections are matched greedily, best expected score first, to the unmatched
    actual detection of the same class with the closest box, so near-equal scores listed in a different order
    do not count as a mismatch; a different count or a class left unmatched is a problem."""
    worst_box, worst_score, problems = 0.0, 0.0, []
    for image, ((expected_boxes, expected_scores, expected_classes), (boxes, scores, class_ids)) in enumerate(
            zip(expected, actual)):
        if len(expected_scores) != len(scores):
            problems.append(f"image {image}: torch {len(expected_scores)} detections, onnx {len(scores)}")
            continue
        unmatched = list(range(len(scores)))
        for box, score, class_id in zip(expected_boxes, expected_scores, expected_classes):
            same_class = [index for index in unmatched if class_ids[index] == class_id]
            if not same_class:
                problems.append(f"image {image}: no onnx detection of class {class_id} left to match")
                break
            differences = [float(numpy.abs(numpy.asarray(boxes[index]) - box).max()) for index in same_class]
            best = same_class[int(numpy.argmin(differences))]
            unmatched.remove(best)
            worst_box = max(worst_box, min(differences))
            worst_score = max(worst_score, float(abs(float(scores[best]) - float(score))))
    if worst_box > box_tolerance:
        problems.append(f"box difference {worst_box:.4g} px > {box_tolerance}")
    if worst_score > score_tolerance:
        problems.append(f"score difference {worst_score:.3g} > {score_tolerance:g}")
    return worst_box, worst_score, problems


def parity(model: nn.Module, onnx_path: str | Path, images: torch.Tensor, score_threshold: float | None = None,
           iou_threshold: float | None = None, max_detections: int | None = None, box_tolerance: float = 0.5,
           score_tolerance: float = 1e-4, session=None) -> ParityReport:
    """Compare torch ``decode`` and onnxruntime on the same letterboxed ``images`` (B, 3, H, W), per image.

    Thresholds default to those baked into the graph (its metadata); pass them to check against other settings.
    Detections are matched greedily, best torch score first, to the unmatched ONNX detection of the same class
    with the closest box, so near-equal scores listed in a different order do not count as a mismatch.
    """
    import onnx

    if session is None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    baked = {item.key: ast.literal_eval(item.value) for item in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    settings = {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "max_detections": max_detections}
    settings = {key: baked[key] if value is None else value for key, value in settings.items()}
    model.eval()
    with torch.no_grad():
        expected = decode(model(images), tuple(images.shape[-2:]), strides=getattr(model, "strides", STRIDES),
                          candidates_per_image=baked.get("candidates_per_image", 1000), **settings)
    actual = run_onnx(session, images)
    worst_box, worst_score, problems = match_detections(
        [(d.boxes.numpy(), d.scores.numpy(), d.class_ids.numpy()) for d in expected], actual, box_tolerance,
        score_tolerance)
    return ParityReport(not problems, worst_box, worst_score, [len(d.scores) for d in expected],
                        [len(result[1]) for result in actual], problems)
