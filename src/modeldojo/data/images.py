"""Images as table rows: a folder per class, or a column of paths / arrays / PIL images.

A folder `photos/` holding `photos/cat/*.jpg`, `photos/dog/*.png` reads as a table with columns
`image` (the file path relative to the folder, e.g. `cat/1.jpg`) and `label` (the folder name), so images go
through the same checks, splits, runs and reports as every other task. In a CSV/JSONL, an image column holds
paths relative to that file (or absolute). In Python, cells may also be numpy arrays (H×W or H×W×C, uint8 or
0–1 floats) or PIL images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
IMAGE_COLUMN, LABEL_COLUMN = "image", "label"


def is_image_folder(path: Path) -> bool:
    """A folder whose sub-folders (the classes) hold images."""
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def read_folder(path: Path) -> pd.DataFrame:
    """`path/<class>/<image>` → rows (image path, label); sorted, so the order never depends on the disk."""
    rows, empty = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            empty.append(folder.name)
        # Relative to `path`, as `base_folder` resolves them: `photos/cat/1.jpg` would be joined twice.
        rows += [{IMAGE_COLUMN: f.relative_to(path).as_posix(), LABEL_COLUMN: folder.name} for f in files]
    if empty:
        raise DataError(f"{path}: class folder(s) with no images: {', '.join(map(repr, empty))} (image files end "
                        f"in {', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder")
    if not rows:
        raise DataError(f"{path}: no images found in its sub-folders (expected {path}/<class>/<image>)")
    frame = pd.DataFrame(rows)
    frame.attrs["source"] = str(path)
    frame.attrs["default_target"] = LABEL_COLUMN  # class folders: the folder names are the labels
    return frame


def read_images(path: Path) -> pd.DataFrame | None:
    """A folder holding image files itself → rows with their paths (relative to it, sorted); None if it has none."""
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        return None
    frame = pd.DataFrame({IMAGE_COLUMN: [f.name for f in files]})
    frame.attrs["source"] = str(path)
    return frame


def looks_like_image_cell(value) -> bool:
    if isinstance(value, str):
        return Path(value).suffix.lower() in IMAGE_SUFFIXES
    if isinstance(value, np.ndarray):
        return value.ndim in (2, 3)
    return type(value).__module__.startswith("PIL.")


def image_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Columns whose (first 200 present) cells are mostly image paths, arrays or PIL images."""
    found = []
    for column in frame.columns:
        values = frame[column]
        if column in exclude or not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        sample = frame[column].dropna().head(200)
        if len(sample) and np.mean([looks_like_image_cell(v) for v in sample]) >= 0.9:
            found.append(column)
    return found


def base_folder(frame: pd.DataFrame) -> Path | None:
    """Relative paths in a file's image column are relative to that file's folder."""
    source = frame.attrs.get("source")
    if not source or source.startswith("<"):
        return None
    path = Path(source)
    return path if path.is_dir() else path.parent


def resolve(cell: str, base: Path | None) -> Path:
    """A path cell as a file path: relative paths start at the data file's folder."""
    path = Path(cell)
    return path if path.is_absolute() or base is None else base / path


def load_image(cell, base: Path | None):
    """One cell → a decoded PIL image in its own mode (see `open_image` for RGB). Raises ValueError."""
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off file is an error to report, not grey pixels
    if isinstance(cell, np.ndarray):
        array = cell
        if array.dtype != np.uint8:
            array = np.clip(array * (255.0 if array.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)  # channels-first → channels-last
        return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)
    if isinstance(cell, str):
        path = resolve(cell, base)
        if not path.is_file():
            raise ValueError("file not found")
        with Image.open(path) as opened:
            opened.load()  # decode now: truncated or corrupt files fail here, not mid-training
            return opened.copy()
    if type(cell).__module__.startswith("PIL."):
        return cell
    raise ValueError(f"not an image path, array or PIL image: {type(cell).__name__}")


def to_rgb(image):
    """Grayscale, palette, RGBA and CMYK → RGB; transparent pixels become white, not black."""
    from PIL import Image

    if image.mode == "RGBA" or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def open_image(cell, base: Path | None):
    """One cell → an RGB PIL image. Raises ValueError."""
    return to_rgb(load_image(cell, base))


def shorter_side(cell, base: Path | None) -> int:
    """The shorter side in pixels, from a file's header only (no decoding)."""
    from PIL import Image

    if isinstance(cell, np.ndarray):
        shape = cell.shape if cell.ndim == 2 or cell.shape[-1] in (1, 3, 4) else cell.shape[1:]
        return int(min(shape[:2]))
    if isinstance(cell, str):
        with Image.open(resolve(cell, base)) as image:
            return min(image.size)
    return min(cell.size)


def describe_cell(cell, base: Path | None) -> str:
    return str(resolve(cell, base)) if isinstance(cell, str) else f"<{type(cell).__name__}>"


def to_square(image, side: int) -> np.ndarray:
    """Shorter side → `side` (bicubic), centre crop to side × side, as a 3×side×side uint8 array (the image
    task's decoding, here without torch so an exported model's runtime can share it)."""
    from PIL import Image

    width, height = image.size
    scale = side / min(width, height)
    resized = image.resize((max(side, round(width * scale)), max(side, round(height * scale))), Image.BICUBIC)
    left, top = (resized.size[0] - side) // 2, (resized.size[1] - side) // 2
    return np.asarray(resized.crop((left, top, left + side, top + side)), dtype=np.uint8).transpose(2, 0, 1)
