"""Label checks for detection datasets, before any compute, in the project's CheckReport shape.

Every finding names the file and line (YOLO txt line, COCO annotation id, VOC xml object) in its message and in
its details (`file`, `line`). Nothing is skipped silently: past `SHOWN` findings of one code, one more finding
says how many were left unlisted.

Severity policy — "error" stops training (as in data/checks.py), so it is kept for labels that cannot be
trained on or whose meaning is unknown:
- error: malformed lines (field count, non-numbers), YOLO values outside 0–1 (pixels written where fractions
  belong: every box would be wrong), zero- or negative-area boxes, boxes wholly outside their image, unknown
  class ids / names, label files (or COCO annotations, VOC xml) without an image, unreadable images, no boxes.
- warning: boxes that stick out of the image by more than `CLIP_TOLERANCE` pixels but overlap it — clipping to
  the image keeps the object, so training clips them and goes on; duplicate images (same bytes: they leak
  between training and validation); a class with no boxes; class imbalance above data/checks' threshold; many
  tiny boxes.
- info: images without labels (trained on as background: no objects), crowd annotations left out, the class
  balance and the box-size distribution.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ...data.checks import IMBALANCE_WARNING, CheckReport
from .formats import DetectionDataset, read_dataset

SHOWN = 50  # findings of one code listed one by one; the rest are counted in one more finding
CLIP_TOLERANCE = 1.0  # pixels: rounding and VOC's 1-based edges stay quiet
# COCO's area thresholds (32², 96²), plus "tiny" below 16²: a few pixels at a typical input size.
SIZE_BINS = {"tiny": 16 ** 2, "small": 32 ** 2, "medium": 96 ** 2}
TINY_SHARE_WARNING = 0.05


def check_folder(path, layout: str | None = None, names: list[str] | None = None):
    """Read and check a dataset: (dataset, report)."""
    dataset = read_dataset(path, layout, names)
    return dataset, check_dataset(dataset)


def check_dataset(dataset: DetectionDataset) -> CheckReport:
    report = CheckReport(str(dataset.root), len(dataset.images), len(dataset.names), None, "detection")
    listed = _Lister(report)
    for problem in dataset.problems:  # what the reader could not use, already located
        details = {k: v for k, v in problem.items() if k not in {"code", "severity", "message"}}
        listed.add(problem["code"], problem["severity"], problem["message"], **details)
    _box_geometry(dataset, listed)
    listed.finish()
    _background(dataset, report)
    _duplicates(dataset, report)
    _class_balance(dataset, report)
    _box_sizes(dataset, report)
    return report


class _Lister:
    """Adds findings one by one up to SHOWN per code, then counts the rest into one closing finding each."""

    def __init__(self, report: CheckReport):
        self.report, self.counts, self.severity = report, defaultdict(int), {}

    def add(self, code: str, severity: str, message: str, **details) -> None:
        self.counts[code] += 1
        self.severity[code] = max(self.severity.get(code, "info"), severity, key=_rank)
        if self.counts[code] <= SHOWN:
            self.report.add(code, severity, message, None, **details)

    def finish(self) -> None:
        for code, count in self.counts.items():
            if count > SHOWN:
                self.report.add(code, self.severity[code], f"… and {count - SHOWN} more `{code}` findings like "
                                f"the {SHOWN} above ({count} in all)", None, count=count, more=count - SHOWN)


def _rank(severity: str) -> int:
    return {"info": 0, "warning": 1, "error": 2}.get(severity, 0)


def _box_geometry(dataset: DetectionDataset, listed: _Lister) -> None:
    boxes = dataset.boxes
    if boxes.empty:
        return
    widths = np.array([image.width or np.nan for image in dataset.images], dtype=float)[boxes["image"]]
    heights = np.array([image.height or np.nan for image in dataset.images], dtype=float)[boxes["image"]]
    x_min, y_min, x_max, y_max = (boxes[c].to_numpy() for c in ("x_min", "y_min", "x_max", "y_max"))
    degenerate = (x_max <= x_min) | (y_max <= y_min)
    # Overlap with the image after clipping; NaN sizes (unreadable images, already errors) compare False.
    overlap_w = np.minimum(x_max, widths) - np.maximum(x_min, 0)
    overlap_h = np.minimum(y_max, heights) - np.maximum(y_min, 0)
    outside = ~degenerate & ((overlap_w <= 0) | (overlap_h <= 0))
    beyond = np.maximum.reduce([-x_min, -y_min, x_max - widths, y_max - heights])
    clipped = ~degenerate & ~outside & (beyond > CLIP_TOLERANCE)
    for position, row in enumerate(boxes.itertuples()):
        location = {"file": row.source, "line": row.line, "image": str(dataset.images[row.image].path)}
        corners = f"({row.x_min:g}, {row.y_min:g}, {row.x_max:g}, {row.y_max:g})"
        size = f"{widths[position]:g}×{heights[position]:g}"
        if degenerate[position]:
            listed.add("box_degenerate", "error", f"{row.where}: box {corners} has zero or negative area "
                       f"(x_max must exceed x_min and y_max y_min)", **location)
        elif outside[position]:
            listed.add("box_outside_image", "error", f"{row.where}: box {corners} lies wholly outside its "
                       f"{size} image", **location)
        elif clipped[position]:
            listed.add("box_clipped", "warning", f"{row.where}: box {corners} sticks out of its {size} image by "
                       f"{beyond[position]:.1f} px; training clips it to the image", **location)


def _background(dataset: DetectionDataset, report: CheckReport) -> None:
    unlabelled = [image for image in dataset.images if image.label_file is None]
    if unlabelled:
        shown = ", ".join(str(image.path) for image in unlabelled[:5])
        more = f" and {len(unlabelled) - 5} more" if len(unlabelled) > 5 else ""
        report.add("background_images", "info", f"{len(unlabelled)} image(s) have no labels and are trained on as "
                   f"background (no objects): {shown}{more}", None, count=len(unlabelled),
                   files=[str(image.path) for image in unlabelled])


def _duplicates(dataset: DetectionDataset, report: CheckReport) -> None:
    by_digest = defaultdict(list)
    for image in dataset.images:
        try:
            by_digest[hashlib.sha1(Path(image.path).read_bytes()).hexdigest()].append(str(image.path))
        except OSError:
            continue  # a missing or unreadable file is already an error from the reader
    groups = [files for files in by_digest.values() if len(files) > 1]
    for files in groups[:SHOWN]:
        report.add("duplicate_images", "warning", f"identical image files (same bytes): {', '.join(files)}; "
                   f"copies can land in both training and validation", None, files=files)
    if len(groups) > SHOWN:
        report.add("duplicate_images", "warning", f"… and {len(groups) - SHOWN} more groups of identical images",
                   None, count=len(groups))


def _class_balance(dataset: DetectionDataset, report: CheckReport) -> None:
    if not dataset.boxes.empty:
        counts = dataset.boxes["class_id"].value_counts()
    else:
        counts = {}
    report.class_counts = {name: int(counts.get(i, 0)) for i, name in enumerate(dataset.names)}
    if not dataset.boxes.shape[0]:
        report.add("no_boxes", "error", f"{dataset.root}: no usable boxes in {len(dataset.images)} image(s)")
        return
    report.add("class_balance", "info", "boxes per class: " + ", ".join(
        f"{name} {count}" for name, count in report.class_counts.items()), None, counts=report.class_counts)
    empty = [name for name, count in report.class_counts.items() if count == 0]
    if empty:
        report.add("class_without_boxes", "warning", f"class(es) {empty} have no boxes: the model cannot learn "
                   f"them", None, classes=empty)
    present = [count for count in report.class_counts.values() if count]
    if len(present) > 1 and max(present) / min(present) > IMBALANCE_WARNING:
        report.add("class_imbalance", "warning", f"the most common class has {max(present) / min(present):.1f}× "
                   f"the boxes of the rarest ({max(present)} vs {min(present)})", None,
                   ratio=max(present) / min(present))


def _box_sizes(dataset: DetectionDataset, report: CheckReport) -> None:
    boxes = dataset.boxes
    if boxes.empty:
        return
    area = ((boxes["x_max"] - boxes["x_min"]).clip(lower=0) * (boxes["y_max"] - boxes["y_min"]).clip(lower=0))
    edges = [-np.inf, *SIZE_BINS.values(), np.inf]
    bins = np.digitize(area.to_numpy(), edges[1:-1], right=False)  # area == 32² counts as medium, as in COCO
    labels = [*SIZE_BINS, "large"]
    counts = {label: int((bins == i).sum()) for i, label in enumerate(labels)}
    report.add("box_sizes", "info", "box sizes (area in px; tiny < 16², small < 32², medium < 96², large): "
               + ", ".join(f"{label} {count}" for label, count in counts.items()), None, counts=counts)
    if counts["tiny"] / len(boxes) >= TINY_SHARE_WARNING:
        report.add("tiny_boxes", "warning", f"{counts['tiny']} of {len(boxes)} boxes are smaller than 16×16 px; "
                   f"keep the input size high enough for them", None, count=counts["tiny"])
