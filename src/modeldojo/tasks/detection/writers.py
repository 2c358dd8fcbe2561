"""Writing a detection dataset (formats.DetectionDataset) in each layout: YOLO txt + data.yaml, COCO json, Pascal
VOC xml. Boxes are pixel corners with exclusive x_max / y_max, as the readers give them, so layouts round-trip."""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pandas as pd
import yaml

from .formats import DetectionDataset


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.exists() and os.path.samefile(source, target)):
        shutil.copyfile(source, target)


def _boxes_by_image(dataset: DetectionDataset) -> dict[int, pd.DataFrame]:
    return {int(image): group for image, group in dataset.boxes.groupby("image", sort=True)}


def write_yolo(dataset: DetectionDataset, out_dir) -> Path:
    out_dir, grouped = Path(out_dir), _boxes_by_image(dataset)
    for index, image in enumerate(dataset.images):
        _copy(image.path, out_dir / "images" / image.key)
        boxes = grouped.get(index)
        if boxes is None and image.label_file is None:
            continue  # stays a background image without a label file, as it came
        lines = []
        for box in (boxes.itertuples() if boxes is not None else []):
            width, height = image.width, image.height
            lines.append(f"{box.class_id} {(box.x_min + box.x_max) / 2 / width:.6f} "
                         f"{(box.y_min + box.y_max) / 2 / height:.6f} {(box.x_max - box.x_min) / width:.6f} "
                         f"{(box.y_max - box.y_min) / height:.6f}")
        label = (out_dir / "labels" / image.key).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    splits = sorted({image.split for image in dataset.images if image.split})
    folder = {split: f"images/{split}" for split in splits}
    content = {"path": ".", "train": folder.get("train", "images"),
               "val": folder.get("val", folder.get("valid", folder.get("train", "images"))),
               "names": dict(enumerate(dataset.names))}
    if "test" in folder:
        content["test"] = folder["test"]
    (out_dir / "data.yaml").write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True), "utf-8")
    return out_dir


def write_coco(dataset: DetectionDataset, json_path) -> Path:
    json_path = Path(json_path)
    images, annotations = [], []
    for index, image in enumerate(dataset.images):
        _copy(image.path, json_path.parent / "images" / image.key)
        images.append({"id": index + 1, "file_name": f"images/{image.key}", "width": image.width,
                       "height": image.height})
    for number, box in enumerate(dataset.boxes.itertuples(), start=1):
        width, height = box.x_max - box.x_min, box.y_max - box.y_min
        annotations.append({"id": number, "image_id": int(box.image) + 1, "category_id": int(box.class_id) + 1,
                            "bbox": [round(box.x_min, 4), round(box.y_min, 4), round(width, 4), round(height, 4)],
                            "area": round(width * height, 4), "iscrowd": 0})
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(dataset.names)]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}),
                         encoding="utf-8")
    return json_path


def write_voc(dataset: DetectionDataset, out_dir) -> Path:
    out_dir, grouped = Path(out_dir), _boxes_by_image(dataset)
    for index, image in enumerate(dataset.images):
        _copy(image.path, out_dir / "JPEGImages" / image.key)
        tree = ElementTree.Element("annotation")
        ElementTree.SubElement(tree, "filename").text = Path(image.key).name
        size = ElementTree.SubElement(tree, "size")
        for tag, value in (("width", image.width), ("height", image.height), ("depth", 3)):
            ElementTree.SubElement(size, tag).text = str(value)
        boxes = grouped.get(index)
        for box in (boxes.itertuples() if boxes is not None else []):
            obj = ElementTree.SubElement(tree, "object")
            ElementTree.SubElement(obj, "name").text = box.class_name
            bndbox = ElementTree.SubElement(obj, "bndbox")
            for tag in ("x_min", "y_min", "x_max", "y_max"):
                ElementTree.SubElement(bndbox, tag.replace("_", "")).text = f"{getattr(box, tag):.4f}"
        xml_file = (out_dir / "Annotations" / image.key).with_suffix(".xml")
        xml_file.parent.mkdir(parents=True, exist_ok=True)
        ElementTree.indent(tree)
        ElementTree.ElementTree(tree).write(xml_file, encoding="utf-8")
    (out_dir / "classes.txt").write_text("".join(name + "\n" for name in dataset.names), encoding="utf-8")
    return out_dir
