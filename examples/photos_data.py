"""A small photo dataset in the folder-per-class layout, from the sample photos scikit-image ships:
data/photos/<class>/<n>.jpg — 4 classes (cat, coffee, astronaut, rocket), 16 random crops of each photo.

    .venv/bin/python examples/photos_data.py && .venv/bin/dojo train data/photos --epochs 3

It shows the layout and the zero-config path (folder → image task, folder names → labels,
EfficientNet-Lite0); with one source photo per class it is a demo, not a benchmark.
"""
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = {"cat": data.chelsea, "coffee": data.coffee, "astronaut": data.astronaut, "rocket": data.rocket}

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for label, load in PHOTOS.items():
        photo = Image.fromarray(load())
        folder = ROOT / "data" / "photos" / label
        folder.mkdir(parents=True, exist_ok=True)
        width, height = photo.size
        for index in range(16):  # crops of 50-90 % of the shorter side, some mirrored
            side = int(min(width, height) * rng.uniform(0.5, 0.9))
            left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            crop = photo.crop((left, top, left + side, top + side))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(folder / f"{index:02d}.jpg", quality=90)
    print(f"{ROOT / 'data' / 'photos'}: {len(PHOTOS)} classes × 16 images")
