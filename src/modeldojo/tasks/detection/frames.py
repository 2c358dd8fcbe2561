"""The detection task's rows: one per image, `image` (a path, array or PIL image) and `boxes` (the target).

`boxes` is a JSON list of {"class": name, "box": [x_min, y_min, x_max, y_max]} in the image's own pixels
(exclusive edges, see boxes.py), so every shared piece — splits, runs, the Python API with a DataFrame — handles
a detection dataset as a table. A dataset read from a YOLO / COCO / VOC layout (formats.py) keeps what the checks
need beside it: the image sizes, label files, each box's file and line (`box_sources`), the class list and the
reader's problems (frame.attrs["detection"]). `dataset_of` rebuilds the DetectionDataset from these rows, so the
checks see the same thing whether the rows came from a folder or a DataFrame.

Letterboxing is done with PIL here — in training, predict and the ONNX export's runtime alike — so the three
feed the network the same pixels and parity is measured on the model alone.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .formats import DetectionDataset, DetectionImage, box_table, detect_layout, read_dataset

IMAGE, BOXES, SOURCES = "image", "boxes", "box_sources"
PAD_VALUE = 114  # grey padding (YOLO's): looks like neither black objects nor white background
ROUND_BOX, ROUND_SCORE = 1, 4  # decimals in the boxes users read (0.1 px); raw values stay in notes for parity


# --- reading -----------------------------------------------------------------------------------------------

def claims(path: Path) -> bool:
    """A detection layout (cheap: names and small sniffs only, never a full parse)."""
    try:
        return detect_layout(path) is not None
    except OSError:
        return False


def read_frame(path: Path) -> pd.DataFrame:
    """A YOLO folder (or its data.yaml), COCO json or VOC folder → one row per image."""
    return frame_of(read_dataset(path))


def frame_of(dataset: DetectionDataset) -> pd.DataFrame:
    by_image: dict[int, list[dict]] = {index: [] for index in range(len(dataset.images))}
    sources: dict[int, list[str]] = {index: [] for index in range(len(dataset.images))}
    for row in dataset.boxes.itertuples():
        by_image[row.image].append({"class": row.class_name, "box": [row.x_min, row.y_min, row.x_max, row.y_max]})
        sources[row.image].append(row.where)
    frame = pd.DataFrame({
        IMAGE: [str(Path(image.path).resolve()) for image in dataset.images],
        BOXES: [json.dumps(by_image[index], ensure_ascii=False) for index in range(len(dataset.images))],
        "width": [image.width for image in dataset.images], "height": [image.height for image in dataset.images],
        "split": [image.split for image in dataset.images],
        "label_file": [str(image.label_file) if image.label_file else None for image in dataset.images],
        SOURCES: [json.dumps(sources[index], ensure_ascii=False) for index in range(len(dataset.images))]})
    frame.attrs = {"source": str(dataset.root), "detection": {"layout": dataset.layout, "names": list(dataset.names),
                                                               "problems": list(dataset.problems)}}
    return frame


def parse_boxes(cell: Any, where: str) -> list[dict]:
    """A `boxes` cell (JSON text or a list) → [{"class", "box"}]; ValueError naming `where`."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: boxes must be a JSON list of {{\"class\", \"box\"}} ({error})") from None
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return []
    if not isinstance(cell, list):
        raise ValueError(f"{where}: boxes must be a list of {{\"class\", \"box\": [x_min, y_min, x_max, y_max]}}")
    out = []
    for number, item in enumerate(cell):
        box = item.get("box") if isinstance(item, dict) else None
        if not isinstance(box, (list, tuple)) or len(box) != 4 or "class" not in item:
            raise ValueError(f"{where}: box {number}: expected {{\"class\": name, \"box\": [x_min, y_min, x_max, "
                             f"y_max]}}, got {str(item)[:80]}")
        try:
            corners = [float(value) for value in box]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: box {number}: coordinates must be numbers, got {box}") from None
        out.append({"class": str(item["class"]), "box": corners})
    return out


def looks_like_boxes(series: pd.Series) -> bool:
    """A column whose first non-empty cells parse as box lists (a DataFrame given to the Python API)."""
    cells = [cell for cell in series.head(20) if cell is not None and not (isinstance(cell, float) and math.isnan(cell))]
    try:
        return bool(cells) and all(isinstance(parse_boxes(cell, "?"), list) for cell in cells) and \
            any(parse_boxes(cell, "?") for cell in cells)
    except ValueError:
        return False


def class_names(frame: pd.DataFrame, target: str) -> list[str]:
    """The layout's class list (ids in order), else every class seen, sorted."""
    names = (frame.attrs.get("detection") or {}).get("names")
    if names:
        return list(names)
    seen = {box["class"] for row, cell in enumerate(frame[target]) for box in parse_boxes(cell, f"row {row}")}
    return sorted(seen)


def dataset_of(frame: pd.DataFrame, target: str, names: list[str]) -> DetectionDataset:
    """The DetectionDataset of rows (for box_checks): sizes read from headers where the rows have none."""
    from ...data.images import base_folder, describe_cell, open_image

    facts = frame.attrs.get("detection") or {}
    dataset = DetectionDataset(Path(frame.attrs.get("source", ".")), facts.get("layout", "table"), list(names), [],
                               box_table([]), list(facts.get("problems", [])))
    base, index_of, rows = base_folder(frame), {name: i for i, name in enumerate(names)}, []
    for position, record in enumerate(frame.to_dict("records")):
        cell = record[IMAGE]
        where = describe_cell(cell, base) if isinstance(cell, str) else f"row {position}"
        width, height = record.get("width"), record.get("height")
        if not _present(width) or not _present(height):
            try:
                width, height = open_image(cell, base).size
            except Exception as error:  # noqa: BLE001 - every unreadable image is one located error
                dataset.problem("unreadable_image", "error", f"{where}: cannot read the image ({error})", where)
                width = height = None
        label = record.get("label_file")
        has_labels = _present(label) or ("label_file" not in record and _present(record.get(target)))
        dataset.images.append(DetectionImage(Path(where), where, _whole(width), _whole(height), record.get("split"),
                                             Path(label) if _present(label) else (Path(where) if has_labels else None)))
        try:
            boxes = parse_boxes(record.get(target), f"{where} ({target})")
        except ValueError as error:
            dataset.problem("malformed_boxes", "error", str(error), where)
            continue
        places = json.loads(record[SOURCES]) if _present(record.get(SOURCES)) else []
        for number, box in enumerate(boxes):
            place = places[number] if number < len(places) else f"{where} box {number + 1}"
            if box["class"] not in index_of:
                dataset.problem("unknown_class", "error", f"{place}: class {box['class']!r} is not one of the "
                                f"{len(names)} classes", where)
                continue
            rows.append({"image": len(dataset.images) - 1, "class_id": index_of[box["class"]],
                         "class_name": box["class"], "x_min": box["box"][0], "y_min": box["box"][1],
                         "x_max": box["box"][2], "y_max": box["box"][3], "source": place.rsplit(":", 1)[0],
                         "line": place.rsplit(":", 1)[-1] if ":" in place else None, "where": place})
    dataset.boxes = box_table(rows)
    return dataset


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _whole(value: Any) -> int | None:
    return int(value) if _present(value) else None


# --- pixels ------------------------------------------------------------------------------------------------

def letterboxed(image, size: int):
    """PIL image → (size × size × 3 uint8 array, boxes.Letterbox): aspect kept, centred on grey."""
    from PIL import Image

    from .boxes import letterbox_geometry

    image = image.convert("RGB")
    geometry = letterbox_geometry(image.height, image.width, size)
    width, height = round(image.width * geometry.scale_x), round(image.height * geometry.scale_y)
    canvas = Image.new("RGB", (size, size), (PAD_VALUE,) * 3)
    canvas.paste(image.resize((width, height), Image.BILINEAR), (geometry.pad_left, geometry.pad_top))
    return np.asarray(canvas), geometry


def to_letterbox(boxes: np.ndarray, geometry) -> np.ndarray:
    scale = np.array([geometry.scale_x, geometry.scale_y] * 2)
    return boxes * scale + np.array([geometry.pad_left, geometry.pad_top] * 2)


def from_letterbox(boxes: np.ndarray, geometry) -> np.ndarray:
    """Letterboxed-input pixels → the original image's, clipped to it (numpy: the export's runtime has no torch)."""
    scale = np.array([geometry.scale_x, geometry.scale_y] * 2)
    original = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - np.array([geometry.pad_left, geometry.pad_top] * 2)) / scale
    limits = [geometry.original_width, geometry.original_height] * 2
    return np.clip(original, 0, limits)


def detections_json(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, names: list[str],
                    threshold: float) -> str:
    """One image's detections at or above `threshold`, best first, rounded for people to read."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return json.dumps([{"class": names[int(class_ids[i])], "score": round(float(scores[i]), ROUND_SCORE),
                        "box": [round(float(v), ROUND_BOX) for v in boxes[i]]}
                       for i in order if scores[i] >= threshold], ensure_ascii=False)


def predict_images(frame: pd.DataFrame, column: str, size: int, detect, classes: list[str], threshold: float,
                   batch_size: int = 16):
    """The one prediction path of a run's model and of its export: letterbox the rows' images in batches, call
    `detect(images)` (N×3×size×size float32 in [0, 1] → per image (boxes, scores, class ids) in letterboxed pixels),
    map the boxes back to each image. A Prediction: JSON boxes at or above `threshold` as values, every box as
    arrays in notes["detections"]."""
    from ...data.images import base_folder, describe_cell, open_image
    from ...errors import DataError
    from ..base import Prediction

    if column not in frame.columns:
        raise DataError(f"missing image column {column!r}")
    cells, base = frame[column].tolist(), base_folder(frame)
    values, raw = [], []
    for start in range(0, len(cells), batch_size):
        batch, geometries = [], []
        for cell in cells[start:start + batch_size]:
            try:
                pixels, geometry = letterboxed(open_image(cell, base), size)
            except Exception as error:
                raise DataError(f"{describe_cell(cell, base)}: cannot read the image ({error})") from None
            batch.append(pixels)
            geometries.append(geometry)
        images = np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2), dtype=np.float32) / 255
        for (boxes, scores, class_ids), geometry in zip(detect(images), geometries):
            boxes = from_letterbox(boxes, geometry)
            raw.append({"boxes": boxes, "scores": scores, "class_ids": class_ids,
                        "width": geometry.original_width, "height": geometry.original_height})
            values.append(detections_json(boxes, scores, class_ids, classes, threshold))
    return Prediction(np.array(values, dtype=object), classes=list(classes),
                      notes={"detections": raw, "confidence_threshold": threshold})


def choose_size(sides: list[int]) -> int:
    """The letterbox side when model.image_size is 0: the median longer side rounded up to 32, in 160..640."""
    if not sides:
        return 320
    return int(min(640, max(160, math.ceil(float(np.median(sides)) / 32) * 32)))
