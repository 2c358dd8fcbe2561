"""The Hugging Face detector family (RT-DETR) with a tiny random config: no download, no torchvision."""

import copy
import sys
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("scipy")  # transformers' Hungarian matcher

from modeldojo.tasks.detection import rtdetr  # noqa: E402
from modeldojo.tasks.detection.boxes import box_iou  # noqa: E402

IMAGE_SIZE = 64
CLASS_NAMES = ["red", "blue"]
# Two coloured rectangles on grey, in exclusive xyxy pixels: red [6, 34) x [8, 30), blue [30, 58) x [36, 60).
TRUE_BOXES = torch.tensor([[6.0, 8.0, 34.0, 30.0], [30.0, 36.0, 58.0, 60.0]])
TRUE_CLASSES = torch.tensor([0, 1])
STEPS = 150


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def training_image() -> torch.Tensor:
    image = torch.full((1, 3, IMAGE_SIZE, IMAGE_SIZE), 0.45)
    image[0, :, 8:30, 6:34] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    image[0, :, 36:60, 30:58] = torch.tensor([0.1, 0.2, 0.9])[:, None, None]
    return image


@pytest.fixture(scope="module")
def trained():
    """The tiny model overfitted on one image (~3 s): it gives confident, distinct scores for the ONNX tests."""
    torch.manual_seed(0)
    model = rtdetr.tiny(CLASS_NAMES, IMAGE_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    image, losses = training_image(), []
    model.train()
    for _ in range(STEPS):
        loss = model.compute_loss(image, [TRUE_BOXES], [TRUE_CLASSES])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return SimpleNamespace(model=model.eval(), losses=losses)


def make_session(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_tiny_model_builds_offline_without_torchvision():
    model = rtdetr.tiny(CLASS_NAMES, IMAGE_SIZE)
    assert model.num_classes == 2
    assert model.net.config.id2label == {0: "red", 1: "blue"}
    assert model.head_names == ["net.model.denoising_class_embed", "net.model.enc_score_head",
                                "net.model.decoder.class_embed"]
    modules = dict(model.named_modules())
    assert all(name in modules for name in model.head_names)
    assert [type(stem).__name__ for stem in model.stem_modules()] == ["RTDetrResNetEmbeddings"]
    assert model.normalisation is None  # RT-DETR's processor does not normalise
    assert "torchvision" not in sys.modules and "timm" not in sys.modules


def test_forward_and_loss_are_finite_and_give_gradients():
    torch.manual_seed(0)
    model = rtdetr.tiny(CLASS_NAMES, IMAGE_SIZE).train()
    pixels = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = model(pixels)
    assert outputs.logits.shape == (2, 10, 2) and outputs.pred_boxes.shape == (2, 10, 4)
    # The second image has no boxes: only the classification terms see it.
    losses = model.compute_loss(pixels, [TRUE_BOXES[:1], torch.zeros(0, 4)],
                                [TRUE_CLASSES[:1], torch.zeros(0, dtype=torch.int64)])
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    parameters = dict(model.named_parameters())
    for name in ("net.model.decoder.class_embed.0.weight", "net.model.enc_score_head.weight",
                 "net.model.encoder.lateral_convs.0.conv.weight"):
        assert parameters[name].grad is not None and parameters[name].grad.abs().sum() > 0, name


def test_dense_predictions_convert_boxes_and_keep_the_best_softmax_class():
    # Normalised cxcywh -> exclusive xyxy pixels of a 32 x 64 (height x width) input, clipped to it.
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]]])  # one extra "no object" logit: softmax family
    pred_boxes = torch.tensor([[[0.5, 0.5, 0.25, 0.5], [0.9, 0.5, 0.5, 0.5]]])
    boxes, scores = rtdetr.dense_predictions(SimpleNamespace(logits=logits, pred_boxes=pred_boxes), (32, 64), 2)
    assert torch.allclose(boxes[0], torch.tensor([[24.0, 8.0, 40.0, 24.0], [41.6, 8.0, 64.0, 24.0]]))
    probabilities = logits.softmax(-1)[..., :-1]
    assert torch.allclose(scores[0, 0], torch.stack([probabilities[0, 0, 0], torch.tensor(0.0)]))
    assert torch.allclose(scores[0, 1], torch.stack([torch.tensor(0.0), probabilities[0, 1, 1]]))
    # Sigmoid family (RT-DETR): every (query, class) pair is a candidate, threshold >=, capped, best first.
    _, sigmoid_scores = rtdetr.dense_predictions(SimpleNamespace(logits=logits[..., :2], pred_boxes=pred_boxes),
                                                 (32, 64), 2)
    detections = rtdetr.select_detections(boxes, sigmoid_scores, score_threshold=0.5, max_detections=2)[0]
    assert torch.equal(detections.class_ids, torch.tensor([0, 1]))
    assert torch.allclose(detections.scores, torch.sigmoid(torch.tensor([2.0, 1.0])))
    assert torch.allclose(detections.boxes, boxes[0])


def test_overfitting_one_image_finds_its_boxes(trained):
    assert sum(trained.losses[-10:]) < 0.6 * sum(trained.losses[:10])
    detections = trained.model.detect(training_image(), IMAGE_SIZE)[0]
    assert torch.all(detections.scores[:-1] >= detections.scores[1:])  # best first
    for true_box, true_class in zip(TRUE_BOXES, TRUE_CLASSES):
        of_class = detections.class_ids == true_class
        assert of_class.any()
        best_box = detections.boxes[of_class][:1]  # the class's highest-scoring detection
        assert box_iou(best_box, true_box[None]).item() > 0.5


def test_save_and_load_give_identical_outputs(trained, tmp_path):
    folder = rtdetr.save(trained.model, tmp_path / "detector")
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model.safetensors",
                                                             rtdetr.SETTINGS_FILE]
    loaded = rtdetr.load(folder)
    assert loaded.head_names == trained.model.head_names and loaded.image_size == trained.model.image_size
    pixels = torch.cat([training_image(), torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)])
    with torch.no_grad():
        expected, actual = trained.model(pixels), loaded(pixels)
    assert torch.equal(expected.logits, actual.logits)
    assert torch.equal(expected.pred_boxes, actual.pred_boxes)


def parity_images() -> torch.Tensor:
    noise = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    return torch.cat([training_image(), noise, training_image().flip(-1)])


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path_factory.mktemp("onnx") / "detector.onnx"
    rtdetr.export_onnx(trained.model, path, IMAGE_SIZE, score_threshold=0.05, max_detections=100)
    return path


def test_onnx_export_matches_torch_detection_by_detection(trained, exported):
    images = parity_images()  # a batch of 4 through a graph exported with batch 1: the batch axis is dynamic
    report = rtdetr.parity(trained.model, exported, images, session=make_session(exported))
    assert report.passed, report.problems
    assert all(count > 0 for count in report.torch_counts)
    assert report.worst_box_difference < 0.01 and report.worst_score_difference < 1e-5


def test_perturbed_weights_fail_parity(trained, exported):
    perturbed = copy.deepcopy(trained.model)
    with torch.no_grad():
        perturbed.net.model.decoder.bbox_embed[0].layers[-1].bias.add_(0.3)  # moves every box
    report = rtdetr.parity(perturbed, exported, parity_images(), session=make_session(exported))
    assert not report.passed
    assert report.worst_box_difference > 1.0


def test_build_from_a_folder_replaces_only_the_class_head(tmp_path):
    """``build``'s path for a downloaded checkpoint, offline: a saved folder with two classes -> three classes."""
    torch.manual_seed(0)
    source = rtdetr.tiny(CLASS_NAMES, IMAGE_SIZE)
    folder = rtdetr.save(source, tmp_path / "checkpoint")
    (folder / "preprocessor_config.json").write_text(
        '{"do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}')
    model = rtdetr.build(folder, ["cat", "dog", "bird"], IMAGE_SIZE)
    assert model.num_classes == 3 and model.net.config.id2label == {0: "cat", 1: "dog", 2: "bird"}
    assert model.normalisation == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    new, old = dict(model.named_parameters()), dict(source.named_parameters())
    assert new["net.model.decoder.class_embed.0.weight"].shape[0] == 3
    assert new["net.model.denoising_class_embed.weight"].shape[0] == 4  # one row per class + padding
    assert torch.equal(new["net.model.encoder.lateral_convs.0.conv.weight"],
                       old["net.model.encoder.lateral_convs.0.conv.weight"])
    assert model(torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)).logits.shape == (1, 10, 3)
