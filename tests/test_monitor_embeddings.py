"""`dojo monitor` on an image run: image columns are tested through the backbone's pooled features (MMD)."""
import numpy as np
import pytest
from PIL import Image

import modeldojo as dojo
from modeldojo.tasks.image import ImageTask


def write_folder(root, per_class, seed, invert=False):
    """Class folders of 24-px stripe images (as tests/test_image.py); invert=True: the same stripes as dark lines
    on bright noise, a change any camera swap or exposure fault could bring."""
    rng = np.random.default_rng(seed)
    for label in ("columns", "rows"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = rng.integers(0, 60, (24, 24)).astype(np.uint8)
            if label == "rows":
                image[::4, :] = 230
            else:
                image[:, ::4] = 230
            Image.fromarray(255 - image if invert else image).convert("RGB").save(root / label / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-monitor")
    folder = write_folder(root / "photos", per_class=40, seed=0)
    settings = {**ImageTask.example("binary")[2], "train.epochs": 2, "data.label_error_check": False}
    dojo.train(str(folder), runs_dir=str(root / "runs"), tracking=False, name="stripes", overrides=settings)
    return root


def test_image_embeddings_are_the_pooled_features_the_head_reads(image_run):
    import pandas as pd
    import torch

    model = dojo.Model.load(image_run / "runs" / "stripes" / "model")

    files = sorted(str(p) for p in (image_run / "photos" / "rows").iterdir())[:5]
    task = model._fitted()
    vectors = task.embeddings(pd.DataFrame({"image": files}))
    head = dict(task.model.named_modules())[task.model.head_names[0]]
    assert vectors.shape == (5, 16)  # the tiny ResNet's last stage width, pooled
    linear = head[-1] if isinstance(head, torch.nn.Sequential) else head
    logits = linear(torch.as_tensor(vectors, dtype=torch.float32)).detach().numpy()
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(probabilities, model.predict_proba(pd.DataFrame({"image": files})).to_numpy(), atol=1e-5)


def test_same_images_do_not_drift_and_inverted_ones_do(image_run):
    from modeldojo.monitoring.monitor import monitor

    runs = image_run / "runs"
    fresh = write_folder(image_run / "fresh", per_class=30, seed=1)  # the same process, other images
    quiet = monitor("stripes", str(fresh), runs_dir=runs)
    assert quiet["untested_columns"] == [] and quiet["embedding_drift"]["columns"] == ["image"]
    assert not quiet["embedding_drift"]["drifted"], quiet["embedding_drift"]
    inverted = write_folder(image_run / "inverted", per_class=30, seed=2, invert=True)
    loud = monitor("stripes", str(inverted), runs_dir=runs)
    assert loud["embedding_drift"]["drifted"] and loud["embedding_drift"]["p_value"] < 0.01
    assert loud["alert"]
    report = (runs / "stripes" / "monitoring").glob("*/report.html")
    assert any("Text and image drift" in path.read_text(encoding="utf-8") for path in report)
