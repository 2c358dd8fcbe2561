"""Detection datasets in three on-disk layouts, read into (and written from) one in-memory form.

Layouts:
- **yolo**: `images/…` beside `labels/….txt` (one `class cx cy w h` line per box, normalised to 0–1), and a
  `data.yaml` whose `names` is a list or an `{id: name}` mapping; `images/train`, `train/images` … sub-folders
  mark splits. The label of `images/x/a.png` is `labels/x/a.txt` (the last `images` folder becomes `labels`).
- **coco**: one json with `images` (`file_name` relative to the json's folder, or under `images/` there),
  `annotations` (`bbox` = [x, y, w, h] in pixels) and `categories`.
- **voc**: one Pascal VOC xml per image (`Annotations/…/a.xml`, image in `JPEGImages/…/`), `object/name` and
  `object/bndbox`. Coordinates are taken as written (no 1-based shift), as most converters do. VOC files carry
  no class list: a `classes.txt` in the folder (written by `write_voc`) gives the id order, else names sort.

Reading is tolerant: a line or annotation that cannot be used becomes a *problem* naming its file and line
(or annotation id / xml object) and is left out of the box table, so `box_checks` reports every one of them
rather than the reader stopping at the first. Image sizes come from the file header (PIL opens lazily and never
decodes pixels here).
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from PIL import Image

from ...data.images import IMAGE_SUFFIXES

LAYOUTS = ("yolo", "coco", "voc")
SPLITS = {"train", "val", "valid", "validation", "test"}
BOX_COLUMNS = ["image", "class_id", "class_name", "x_min", "y_min", "x_max", "y_max", "source", "line", "where"]


@dataclass
class DetectionImage:
    path: Path
    key: str  # path inside the layout's image folder (e.g. "train/a.png"): the same image in every layout
    width: int | None
    height: int | None
    split: str | None = None
    label_file: Path | None = None  # yolo / voc: the file holding its boxes; None = no labels (background)


@dataclass
class DetectionDataset:
    root: Path
    layout: str
    names: list[str]  # class id → name
    images: list[DetectionImage]
    boxes: pd.DataFrame  # BOX_COLUMNS; pixels, x_max/y_max exclusive edges; `image` indexes `images`
    problems: list[dict[str, Any]] = field(default_factory=list)  # {code, severity, message, file, line, …}

    def problem(self, code: str, severity: str, message: str, file, line=None, **details) -> None:
        self.problems.append({"code": code, "severity": severity, "message": message,
                              "file": str(file) if file is not None else None, "line": line, **details})


# --- layout detection --------------------------------------------------------------------------------------

def _is_coco_json(path: Path) -> bool:
    try:  # a substring sniff first: parsing a large annotation file only to reject it would be slow
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return '"annotations"' in text and '"images"' in text


def _is_voc_xml(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"<annotation" in handle.read(2048)
    except OSError:
        return False


def _names_yaml(folder: Path) -> Path | None:
    for candidate in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        try:
            content = yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(content, dict) and "names" in content:
            return candidate
    return None


def detect_layout(path) -> str | None:
    """"yolo", "coco", "voc", or None. A folder holding several layouts (the digits example writes YOLO and a
    COCO json side by side) is read as YOLO first, then COCO, then VOC: pass the json or an xml to choose."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json" and _is_coco_json(path):
            return "coco"
        if suffix == ".xml" and _is_voc_xml(path):
            return "voc"
        if suffix in {".yaml", ".yml"} and _names_yaml(path.parent) is not None:
            return "yolo"
        return None
    if not path.is_dir():
        return None
    if _names_yaml(path) is not None or any(p.suffix == ".txt" for p in _under(path, "labels")):
        return "yolo"
    if _coco_files(path):
        return "coco"
    if _voc_files(path):
        return "voc"
    return None


def _under(root: Path, folder_name: str) -> list[Path]:
    """Files below any folder called `folder_name` (at most two levels down, for train/labels layouts)."""
    folders = [root / folder_name] + [child / folder_name for child in sorted(root.iterdir()) if child.is_dir()]
    return sorted(f for folder in folders if folder.is_dir() for f in folder.rglob("*") if f.is_file())


def _coco_files(folder: Path) -> list[Path]:
    candidates = sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    return [c for c in candidates if _is_coco_json(c)]


def _voc_files(folder: Path) -> list[Path]:
    candidates = [f for f in _under(folder, "Annotations") if f.suffix.lower() == ".xml"]
    return candidates or [f for f in sorted(folder.glob("*.xml")) if _is_voc_xml(f)]


# --- reading -----------------------------------------------------------------------------------------------

def read_dataset(path, layout: str | None = None, names: list[str] | None = None) -> DetectionDataset:
    """Any of the three layouts (detected unless given). `names` fixes the class list for VOC, whose files
    carry no list of their own (otherwise: every name seen, sorted) and overrides a YOLO yaml's."""
    path = Path(path)
    layout = layout or detect_layout(path)
    if layout not in LAYOUTS:
        raise ValueError(f"{path}: not a detection dataset (expected a YOLO folder with images/ labels/ and "
                         f"data.yaml, a COCO json, or Pascal VOC xml files)")
    return {"yolo": _read_yolo, "coco": _read_coco, "voc": _read_voc}[layout](path, names)


def image_size(path: Path, dataset: DetectionDataset) -> tuple[int | None, int | None]:
    try:
        with Image.open(path) as image:  # reads the header only; pixels are decoded on first access
            return image.size
    except (OSError, ValueError) as error:
        dataset.problem("unreadable_image", "error", f"{path}: cannot read the image ({error})", path)
        return None, None


def _split_of(parts: tuple[str, ...]) -> str | None:
    return next((part for part in parts if part in SPLITS), None)


def box_table(rows: list[dict]) -> pd.DataFrame:
    """The box table (BOX_COLUMNS) from row dicts, with its dtypes fixed even when empty."""
    frame = pd.DataFrame(rows, columns=BOX_COLUMNS)
    return frame.astype({"image": int, "class_id": int, "x_min": float, "y_min": float,
                         "x_max": float, "y_max": float})


def _box(image: int, class_id: int, names: list[str], corners, source: Path, line, where: str) -> dict:
    return {"image": image, "class_id": class_id, "class_name": names[class_id], "x_min": corners[0],
            "y_min": corners[1], "x_max": corners[2], "y_max": corners[3], "source": str(source),
            "line": line, "where": where}


def _yolo_names(root: Path, dataset: DetectionDataset) -> list[str] | None:
    names_file = _names_yaml(root)
    if names_file is None:
        return None
    names = yaml.safe_load(names_file.read_text(encoding="utf-8"))["names"]
    if isinstance(names, dict):  # {0: person, 1: car}: ids must be 0..n-1, or class ids would shift
        ids = sorted(int(key) for key in names)
        if ids != list(range(len(ids))):
            dataset.problem("names_not_contiguous", "error", f"{names_file}: `names` ids must be 0..{len(ids) - 1}"
                            f" without gaps (got {ids})", names_file)
        return [str(names[key]) for key in sorted(names, key=int)]
    return [str(name) for name in names]


def _read_yolo(path: Path, names: list[str] | None) -> DetectionDataset:
    root = path.parent if path.is_file() else path
    dataset = DetectionDataset(root, "yolo", [], [], box_table([]))
    dataset.names = names or _yolo_names(root, dataset) or []
    image_files = [f for f in _under(root, "images") if f.suffix.lower() in IMAGE_SUFFIXES]
    label_files = {f for f in _under(root, "labels") if f.suffix == ".txt"}
    used_labels, rows, highest_id = set(), [], -1
    for index, image_path in enumerate(image_files):
        parts = image_path.relative_to(root).parts
        cut = len(parts) - 1 - parts[::-1].index("images")  # the last `images` folder
        label = root.joinpath(*parts[:cut], "labels", *parts[cut + 1:]).with_suffix(".txt")
        width, height = image_size(image_path, dataset)
        exists = label in label_files
        dataset.images.append(DetectionImage(image_path, "/".join(parts[:cut] + parts[cut + 1:]), width, height,
                                             _split_of(parts), label if exists else None))
        if exists:
            used_labels.add(label)
            for row in _yolo_lines(label, index, dataset, width, height):
                highest_id = max(highest_id, row["class_id"])
                rows.append(row)
    for label in sorted(label_files - used_labels):
        dataset.problem("label_without_image", "error", f"{label}: label file with no image (expected "
                        f"{label.stem}.<{'|'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))}> in the matching "
                        f"images folder)", label)
    if not dataset.names and highest_id >= 0:  # no data.yaml: the ids are all we know
        dataset.problem("no_class_names", "warning", f"{root}: no data.yaml with `names`; classes are named by "
                        f"their ids 0..{highest_id}", root)
        dataset.names = [str(i) for i in range(highest_id + 1)]
    for row in rows:
        row["class_name"] = dataset.names[row["class_id"]] if row["class_id"] < len(dataset.names) else None
    dataset.boxes = box_table(rows)
    return _known_classes(dataset)


def _yolo_lines(label: Path, index: int, dataset: DetectionDataset, width, height):
    for number, text in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = text.split()
        if not fields or fields[0].startswith("#"):
            continue  # blank lines and comments carry no box
        where = f"{label}:{number}"
        if len(fields) != 5:
            dataset.problem("malformed_line", "error", f"{where}: expected 5 fields `class cx cy w h`, found "
                            f"{len(fields)} ({text.strip()[:60]!r})", label, number)
            continue
        try:
            values = [float(value) for value in fields]
        except ValueError:
            dataset.problem("malformed_line", "error", f"{where}: not a number in {text.strip()[:60]!r}",
                            label, number)
            continue
        if not all(math.isfinite(v) for v in values) or values[0] != int(values[0]):
            dataset.problem("malformed_line", "error", f"{where}: class must be a whole number and coordinates "
                            f"finite ({text.strip()[:60]!r})", label, number)
            continue
        class_id, (cx, cy, w, h) = int(values[0]), values[1:]
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):  # pixels written where fractions belong
            dataset.problem("not_normalised", "error", f"{where}: YOLO coordinates must be fractions of the image "
                            f"size in 0–1, found {fields[1:]} (pixel values? divide by the image width/height)",
                            label, number)
            continue
        if width is None:
            continue  # unreadable image: already reported, and its boxes cannot be placed
        corners = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        yield {**_box(index, 0, ["?"], corners, label, number, where), "class_id": class_id}


def _known_classes(dataset: DetectionDataset) -> DetectionDataset:
    """Boxes whose class id has no name become problems (and leave the table): training needs a class."""
    boxes = dataset.boxes
    unknown = (boxes["class_id"] < 0) | (boxes["class_id"] >= len(dataset.names))
    for row in boxes[unknown].itertuples():
        dataset.problem("unknown_class", "error", f"{row.where}: class id {row.class_id} is not in the "
                        f"{len(dataset.names)} class names (0..{len(dataset.names) - 1})", row.source, row.line,
                        class_id=int(row.class_id))
    dataset.boxes = boxes[~unknown].reset_index(drop=True)
    return dataset


def _read_coco(path: Path, names: list[str] | None) -> DetectionDataset:
    if path.is_dir():
        found = _coco_files(path)
        if len(found) != 1:
            raise ValueError(f"{path}: expected one COCO json, found {len(found)} ({[f.name for f in found]}); "
                             f"pass the json file itself")
        path = found[0]
    content = json.loads(path.read_text(encoding="utf-8"))
    folder = path.parent
    categories = sorted(content.get("categories", []), key=lambda c: c["id"])
    # COCO category ids are arbitrary (1-based, with gaps): class ids are their rank.
    class_of = {category["id"]: rank for rank, category in enumerate(categories)}
    dataset = DetectionDataset(folder, "coco", names or [str(c["name"]) for c in categories], [], box_table([]))
    index_of, referenced = {}, set()
    for entry in sorted(content.get("images", []), key=lambda e: str(e.get("file_name"))):
        file_name = str(entry.get("file_name"))
        candidates = [folder / file_name, folder / "images" / file_name]
        image_path = next((c for c in candidates if c.is_file()), candidates[0])
        key = file_name[len("images/"):] if file_name.startswith("images/") else file_name
        if not image_path.is_file():
            dataset.problem("missing_image", "error", f"{path} (image id {entry.get('id')}): image file "
                            f"{file_name!r} not found next to the json or in its images/ folder", path,
                            image_id=entry.get("id"))
            width, height = entry.get("width"), entry.get("height")
        else:
            width, height = image_size(image_path, dataset)
            if width is not None and (entry.get("width"), entry.get("height")) not in {(width, height), (None, None)}:
                dataset.problem("size_mismatch", "warning", f"{path} (image id {entry.get('id')}): the json says "
                                f"{entry.get('width')}×{entry.get('height')}, {image_path.name} is {width}×{height}; "
                                f"boxes are placed in the file's size", path, image_id=entry.get("id"))
        index_of[entry.get("id")] = len(dataset.images)
        dataset.images.append(DetectionImage(image_path, key, width, height, _split_of(Path(file_name).parts)))
    rows = []
    for annotation in content.get("annotations", []):
        identifier = annotation.get("id")
        where = f"{path} (annotation id {identifier})"
        if annotation.get("image_id") not in index_of:
            dataset.problem("label_without_image", "error", f"{where}: image_id {annotation.get('image_id')} "
                            f"is not in `images`", path, identifier)
            continue
        if annotation.get("iscrowd"):  # a region of many objects, not one box: detectors skip these too
            dataset.problem("crowd_annotation", "info", f"{where}: iscrowd=1, left out", path, identifier)
            continue
        if annotation.get("category_id") not in class_of:
            dataset.problem("unknown_class", "error", f"{where}: category_id {annotation.get('category_id')} is "
                            f"not in `categories`", path, identifier, class_id=annotation.get("category_id"))
            continue
        bbox = annotation.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4 or
                not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            dataset.problem("malformed_line", "error", f"{where}: bbox must be 4 numbers [x, y, w, h], found "
                            f"{bbox!r}", path, identifier)
            continue
        x, y, w, h = bbox
        image = index_of[annotation["image_id"]]
        dataset.images[image].label_file = path
        rows.append(_box(image, class_of[annotation["category_id"]], dataset.names, (x, y, x + w, y + h),
                         path, identifier, where))
        referenced.add(image)
    for position, image in enumerate(dataset.images):
        if position not in referenced:
            image.label_file = None  # no annotations: a background image, as for YOLO without a label file
    dataset.boxes = box_table(rows)
    return dataset


def _read_voc(path: Path, names: list[str] | None) -> DetectionDataset:
    files = [path] if path.is_file() else _voc_files(path)
    root = path.parent if path.is_file() else path
    dataset = DetectionDataset(root, "voc", [], [], box_table([]))
    parsed = []
    for xml_file in files:
        try:
            parsed.append((xml_file, ElementTree.parse(xml_file).getroot()))
        except ElementTree.ParseError as error:
            dataset.problem("malformed_line", "error", f"{xml_file}:{error.position[0]}: not valid xml ({error})",
                            xml_file, error.position[0])
    seen = sorted({(obj.findtext("name") or "").strip() for _, tree in parsed for obj in tree.iter("object")})
    listed = root / "classes.txt"  # written by write_voc, so class ids keep their order on a round trip
    if not names and listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset.names = list(names) if names else [name for name in seen if name]
    class_of, rows = {name: i for i, name in enumerate(dataset.names)}, []
    for xml_file, tree in parsed:
        file_name = (tree.findtext("filename") or "").strip()
        annotations = next((p for p in xml_file.parents if p.name == "Annotations"), None)
        sub = xml_file.parent.relative_to(annotations) if annotations else Path()
        base = annotations.parent if annotations else xml_file.parent
        candidates = [base / "JPEGImages" / sub / file_name, xml_file.parent / file_name,
                      base / "images" / sub / file_name]
        image_path = next((c for c in candidates if file_name and c.is_file()), None)
        if image_path is None:
            dataset.problem("label_without_image", "error", f"{xml_file}: its image {file_name!r} is not in "
                            f"JPEGImages/{sub.as_posix()}, beside the xml, or in images/", xml_file)
            continue
        index = len(dataset.images)
        width, height = image_size(image_path, dataset)
        key = (sub / file_name).as_posix()
        dataset.images.append(DetectionImage(image_path, key, width, height, _split_of(sub.parts), xml_file))
        for number, obj in enumerate(tree.iter("object"), start=1):
            where, name = f"{xml_file} (object {number})", (obj.findtext("name") or "").strip()
            if name not in class_of:
                dataset.problem("unknown_class", "error", f"{where}: class name {name!r} is not in the class "
                                f"list {dataset.names}", xml_file, number, class_name=name)
                continue
            try:
                box = obj.find("bndbox")
                corners = [float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]
                assert all(math.isfinite(v) for v in corners)
            except (AttributeError, TypeError, ValueError, AssertionError):
                dataset.problem("malformed_line", "error", f"{where}: bndbox needs numeric xmin, ymin, xmax, ymax",
                                xml_file, number)
                continue
            rows.append(_box(index, class_of[name], dataset.names, corners, xml_file, number, where))
    dataset.boxes = box_table(rows)  # xml files come sorted, so the image order never depends on the disk
    return dataset


# --- writing -----------------------------------------------------------------------------------------------
# Each writer copies the images into its own layout (under the image's `key`), so the written folder stands
# alone, and writes only the boxes in the table: problems found on reading are not carried over.
