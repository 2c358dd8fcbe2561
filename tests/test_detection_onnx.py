"""ONNX export of the detector with NMS in the graph: parity with ``decode`` box by box, and a negative control."""

import math

import pytest
import torch

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from modeldojo.tasks.detection.network import dense_predictions, tiny_detector  # noqa: E402
from modeldojo.tasks.detection.onnx_export import export_detector, parity  # noqa: E402

IMAGE_SIZE = 96
IOU_THRESHOLD = 0.5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_session(path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def confident_detector():
    """A seeded tiny detector whose head gives varied, confident scores and box sizes (no training needed).

    The default head init (std 0.01 weights, 1 % prior bias) makes every score ~0.1 with tiny spread; larger
    output weights spread scores and boxes so that NMS has real work and near-ties are unlikely.
    """
    torch.manual_seed(0)
    model = tiny_detector(num_classes=3)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.class_logits.weight, std=0.05)
        torch.nn.init.constant_(model.head.class_logits.bias, -1.0)
        torch.nn.init.normal_(model.head.box_regression.weight, std=0.02)
        torch.nn.init.normal_(model.head.centerness.weight, std=0.05)
    return model.eval()


def make_images():
    generator = torch.Generator().manual_seed(1)
    grey = torch.full((1, 3, IMAGE_SIZE, IMAGE_SIZE), 0.45)
    noisy = torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    rectangles = grey.repeat(2, 1, 1, 1)
    rectangles[0, :, 10:50, 20:70] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    rectangles[1, :, 40:90, 5:45] = torch.tensor([0.1, 0.2, 0.9])[:, None, None]
    return torch.cat([grey, noisy, rectangles])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = confident_detector()
        images = make_images()
        with torch.no_grad():
            best = dense_predictions(model(images))[1].flatten(1).max(dim=1).values
        # Threshold halfway between the two lowest per-image best scores: the weakest image has no detection
        # (the zero-row case), every other image has some. The gap dwarfs torch/onnxruntime float noise (~1e-6).
        lowest, second = best.sort().values[:2].tolist()
        assert second - lowest > 1e-3, best
        threshold = (lowest + second) / 2
        empty_image = int(best.argmin())
        path = export_detector(model, tmp_path_factory.mktemp("onnx") / "detector.onnx", IMAGE_SIZE,
                               score_threshold=threshold, iou_threshold=IOU_THRESHOLD, max_detections=20)
    finally:
        torch.set_num_threads(threads)
    return model, images, path, empty_image


def test_graph_contains_nms_and_loads(exported):
    _, _, path, _ = exported
    proto = onnx.load(str(path))
    assert "NonMaxSuppression" in {node.op_type for node in proto.graph.node}
    session = make_session(path)
    assert [output.name for output in session.get_outputs()] == ["boxes", "scores", "class_ids", "batch_index"]


def test_parity_per_image_and_batched(exported):
    model, images, path, empty_image = exported
    session = make_session(path)
    report = parity(model, path, images, session=session)
    assert report.passed, report
    assert report.torch_counts[empty_image] == 0 and report.onnx_counts[empty_image] == 0  # zero rows, no crash
    assert sum(count > 0 for count in report.torch_counts) == images.shape[0] - 1, report
    assert max(report.torch_counts) > 1  # NMS had overlapping candidates to choose between
    for image in range(images.shape[0]):  # batch of one, including the empty image on its own
        single = parity(model, path, images[image:image + 1], session=session)
        assert single.passed, (image, single)


def test_rows_capped_and_sorted(exported):
    _, images, path, _ = exported
    boxes, scores, class_ids, batch_index = make_session(path).run(None, {"images": images.numpy()})
    assert boxes.shape == (len(scores), 4) and class_ids.dtype.name == "int64" and batch_index.dtype.name == "int64"
    for image in range(images.shape[0]):
        image_scores = scores[batch_index == image]
        assert len(image_scores) <= 20
        assert (image_scores[:-1] >= image_scores[1:]).all()
    assert (batch_index[:-1] <= batch_index[1:]).all()


def test_negative_controls_fail(exported):
    model, images, path, _ = exported
    session = make_session(path)
    # Decoding with another IoU threshold than the one baked into the graph changes what NMS keeps.
    assert not parity(model, path, images, iou_threshold=0.1, session=session).passed
    # A perturbed weight changes the boxes and scores the graph was exported from.
    perturbed = confident_detector()
    with torch.no_grad():
        perturbed.head.box_regression.bias += 0.05
        perturbed.head.class_logits.bias += 0.05
    report = parity(perturbed, path, images, session=session)
    assert not report.passed
    assert report.worst_box_difference > 0.5 or report.torch_counts != report.onnx_counts
    assert not math.isnan(report.worst_score_difference)


def test_detection_and_candidate_caps_match_decode(exported, tmp_path):
    model, images, path, _ = exported
    baked = {item.key: item.value for item in onnx.load(str(path)).metadata_props}
    threshold = float(baked["score_threshold"])
    # Few rows per image (top-k after NMS) and few candidates before NMS (decode's candidates_per_image).
    capped = export_detector(model, tmp_path / "capped.onnx", IMAGE_SIZE, score_threshold=threshold,
                             iou_threshold=IOU_THRESHOLD, max_detections=2, candidates_per_image=4)
    report = parity(model, capped, images, session=make_session(capped))
    assert report.passed, report
    assert max(report.onnx_counts) == 2
