"""A small object-detection dataset made from packaged data: defects on a textured surface.

Random crops of scikit-image's packaged textures (brick, grass, gravel: they ship inside the package, no
download) are resized, tinted to RGB and marked with 0–4 defects of three classes: "scratch" (thin, long,
slightly curved dark or bright lines), "spot" (soft-edged blobs or stains) and "hole" (dark pits with a darker
rim and a shadow). Each box is the exact bounding box of the pixels the defect changed; about a fifth of the
images hold no defect (background). Written as a YOLO folder (images/, labels/, data.yaml with names scratch,
spot, hole) plus a COCO json (coco.json) over the same images. Seeded: the same arguments give the same bytes.

    .venv/bin/python examples/detection_defects.py data/detection_defects --images 200 --size 256 --seed 0
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from modeldojo.tasks.detection.formats import DetectionDataset, DetectionImage, box_table
from modeldojo.tasks.detection.writers import write_coco, write_yolo

NAMES = ["scratch", "spot", "hole"]
TEXTURES = ["brick", "grass", "gravel"]  # the skimage.data textures stored in the wheel itself
FAINT = 0.12  # blend weight below this is dropped, so no box grows around a barely visible halo
SUPERSAMPLE = 4  # scratches are drawn this much larger and scaled down: anti-aliased, sub-pixel widths


def _surface(rng: np.random.Generator, textures: list[np.ndarray], size: int) -> np.ndarray:
    """A random crop of a random texture, turned and flipped, resized, with its brightness and tint varied."""
    texture = textures[int(rng.integers(len(textures)))]
    side = int(rng.integers(min(texture.shape) // 4, min(texture.shape) + 1))
    top, left = (int(rng.integers(0, extent - side + 1)) for extent in texture.shape)
    crop = np.rot90(texture[top:top + side, left:left + side], int(rng.integers(4)))
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    gray = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR))
    gray = (gray.astype(np.float32) - gray.mean()) * rng.uniform(0.7, 1.2) + rng.uniform(90, 170)
    tint = rng.uniform(0.85, 1.15, size=3)  # grey textures made RGB: colour is a cue a detector may not rely on
    return np.clip(gray[..., None] * tint, 0, 255).round().astype(np.uint8)


def _ellipse(size: int, centre, radii, angle: float):
    """Every pixel's normalised radius (1 on the rim) and angle around a rotated ellipse."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = xs - centre[0], ys - centre[1]
    along, across = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    return np.hypot(along / radii[0], across / radii[1]), np.arctan2(across / radii[1], along / radii[0])


def _scratch(rng, canvas, scale, light):
    """A quadratic Bézier curve, bent a little sideways, one to three pixels wide; darker or brighter."""
    size = canvas.shape[0]
    start, length, angle = rng.uniform(0, size, size=2), rng.uniform(0.2, 0.6) * size, rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    end = start + length * direction
    bend = (start + end) / 2 + np.array([-direction[1], direction[0]]) * length * rng.uniform(-0.2, 0.2)
    steps = np.linspace(0, 1, 32)[:, None]
    curve = (1 - steps) ** 2 * start + 2 * steps * (1 - steps) * bend + steps ** 2 * end
    mask = Image.new("L", (size * SUPERSAMPLE,) * 2)
    ImageDraw.Draw(mask).line([tuple(point) for point in curve * SUPERSAMPLE], fill=255, joint="curve",
                              width=max(1, round(rng.uniform(1, 3) * scale * SUPERSAMPLE)))
    alpha = np.asarray(mask.resize((size, size), Image.BOX)).astype(np.float32) / 255 * rng.uniform(0.6, 1)
    pixels = canvas.astype(np.float32)
    target = pixels * 0.2 if rng.random() < 0.5 else pixels + (255 - pixels) * 0.85
    return alpha, target


def _spot(rng, canvas, scale, light):
    """A lumpy ellipse fading out towards its edge: a stain, dark and brownish or pale."""
    size = canvas.shape[0]
    radius = max(2.0, rng.uniform(0.02, 0.08) * size)
    radii = (radius, radius * rng.uniform(0.6, 1))
    r, theta = _ellipse(size, rng.uniform(0, size, size=2), radii, rng.uniform(0, np.pi))
    phases = rng.uniform(0, 2 * np.pi, size=2)  # wobble the outline so stains are not perfect ellipses
    r = r / (1 + 0.12 * np.sin(3 * theta + phases[0]) + 0.06 * np.sin(5 * theta + phases[1]))
    alpha = np.clip((1 - r) / rng.uniform(0.25, 0.6), 0, 1) * rng.uniform(0.55, 0.9)
    colour = rng.uniform(20, 100, size=3) * [1.2, 1.0, 0.7] if rng.random() < 0.7 else rng.uniform(180, 245, 3)
    return alpha, np.broadcast_to(colour.astype(np.float32), canvas.shape)


def _hole(rng, canvas, scale, light):
    """A dark pit, darkest at its rim, casting a soft shadow away from the image's light."""
    size = canvas.shape[0]
    radius = max(2.0, rng.uniform(0.02, 0.06) * size)
    centre, radii, angle = rng.uniform(0, size, size=2), (radius, radius * rng.uniform(0.7, 1)), rng.uniform(0, np.pi)
    r, _ = _ellipse(size, centre, radii, angle)
    edge = np.clip((1 - r) * min(radii), 0, 1)  # one pixel of anti-aliasing on the pit's outline
    pit = (0.55 + 0.35 * np.clip((r - 0.55) / 0.45, 0, 1)) * edge
    away = centre - 0.35 * radius * np.array([np.cos(light), np.sin(light)])
    shadow, _ = _ellipse(size, away, (radii[0] * 1.25, radii[1] * 1.25), angle)
    alpha = np.maximum(pit, 0.45 * np.clip((1 - shadow) / 0.35, 0, 1))
    return alpha, np.zeros(canvas.shape, np.float32)  # blending towards black: alpha is how dark it gets


DRAW = [_scratch, _spot, _hole]  # indexed by class id


def _paste(canvas: np.ndarray, alpha: np.ndarray, target: np.ndarray):
    """The canvas with the defect blended in, and the box of the pixels that changed (None: nothing did)."""
    alpha = np.where(alpha < FAINT, 0, alpha)[..., None]
    pasted = np.clip(canvas * (1 - alpha) + target * alpha, 0, 255).round().astype(np.uint8)
    changed = (pasted != canvas).any(axis=2)  # after rounding: a box never holds only untouched pixels
    rows, columns = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    if not len(rows):
        return pasted, None
    return pasted, (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)


def _overlaps(box, boxes) -> bool:
    return any(box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]
               for other in boxes)


def generate(out_dir, images: int = 200, size: int = 256, seed: int = 0) -> Path:
    """Write the dataset to `out_dir` (created); returns it. Defect sizes scale with `size`."""
    from skimage import data

    out_dir, rng = Path(out_dir), np.random.default_rng(seed)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    textures = [getattr(data, name)() for name in TEXTURES]
    scale = size / 256
    entries, rows = [], []
    for index in range(images):
        canvas = _surface(rng, textures, size)
        light = rng.uniform(0, 2 * np.pi)  # one light per image: every hole's shadow falls the same way
        placed = []
        for _ in range(rng.integers(0, 5)):  # 0 defects: a background image, as real inspections mostly are
            class_id = int(rng.integers(len(NAMES)))
            for _attempt in range(20):  # no overlaps: every box holds exactly one defect
                pasted, box = _paste(canvas, *DRAW[class_id](rng, canvas, scale, light))
                if box is not None and not _overlaps(box, [p[1] for p in placed]):
                    break
            else:
                continue  # crowded surface: fewer defects, never an overlapping box
            # Later defects only change pixels outside this box, so it stays exact to the end.
            canvas = pasted
            placed.append((class_id, box))
        path = out_dir / "images" / f"{index:05d}.png"
        Image.fromarray(canvas).save(path)
        entries.append(DetectionImage(path, path.name, size, size, None, path))
        rows += [{"image": index, "class_id": label, "class_name": NAMES[label], "x_min": float(box[0]),
                  "y_min": float(box[1]), "x_max": float(box[2]), "y_max": float(box[3]), "source": "generated",
                  "line": number, "where": f"{path.name} defect {number}"}
                 for number, (label, box) in enumerate(placed, start=1)]
    dataset = DetectionDataset(out_dir, "yolo", NAMES, entries, box_table(rows))
    write_yolo(dataset, out_dir)  # images are already in place; labels (empty for background) and data.yaml
    write_coco(dataset, out_dir / "coco.json")
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    out_dir = generate(arguments.out_dir, arguments.images, arguments.size, arguments.seed)
    print(f"{out_dir}: {arguments.images} images {arguments.size}×{arguments.size}, YOLO (data.yaml) + coco.json")


if __name__ == "__main__":
    main()
