"""The detection task's own sections of the HTML run report: metrics, PR curves, confusion matrix, gallery.

`sections` returns (title, HTML) pairs for `evaluation.report.write(sections=...)`. Figures go through the
report's own plotting helpers (inline base64 PNG, Japanese-capable fonts), so a detection report looks like
every other report. Everything here runs after training has finished: a section that cannot be drawn says so
instead of raising, because losing the whole report over one picture would be worse than a gap in it.
"""
from __future__ import annotations

import base64
import functools
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...evaluation import plots
from ...evaluation.report import _image, _table

GALLERY_SIDE = 256  # longer side of a gallery image in pixels: big enough to read boxes, small enough to embed
LABEL_FONT_SIZE = 12
LEGEND_CLASS_LIMIT = 20  # beyond this many curves a legend stops being readable
WORST_CLASSES_SHOWN = 10
CONFUSION_CLASS_LIMIT = 24  # a wider heatmap gets unreadable cells and a multi-megabyte PNG
MATCH_IOU = 0.5
TRUTH_COLOR = (0, 170, 0)
PREDICTION_COLOR = (230, 40, 0)
MISSING = "—"


def _number(value: Any) -> str:
    """A metric for a table cell; None/NaN (COCO's 'undefined', e.g. a class without ground truth) as a dash."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.3f}"


def _threshold(value: Any) -> str:
    """A confidence threshold as written in a config (0.25, not 0.250)."""
    return MISSING if value is None else f"{float(value):g}"


def _failed(what: str, error: Exception) -> str:
    reason = html.escape(f"{type(error).__name__}: {error}")
    return f'<p class="error">could not draw the {html.escape(what)}: {reason}</p>'


# --- 1. metric tables --------------------------------------------------------------------------------------


def metrics_tables(metrics: dict, class_names: list[str]) -> str:
    threshold = metrics.get("confidence_threshold")
    overall = pd.DataFrame({
        "metric": ["mAP50-95", "mAP50", "mAP75", "precision", "recall"],
        "value": [_number(metrics.get(key)) for key in ("mAP50-95", "mAP50", "mAP75", "precision", "recall")],
    })
    parts = [_table(overall),
             f"<p>Precision and recall are at IoU {MATCH_IOU} for detections scoring ≥ "
             f"{html.escape(_threshold(threshold))}; mAPs follow COCO (all scores, up to 100 detections per "
             "image).</p>"]
    names = list(class_names) or list(metrics.get("per_class_AP", {}))
    columns = {"class": [str(name) for name in names]}
    for column, key in (("AP50-95", "per_class_AP"), ("precision", "per_class_precision"),
                        ("recall", "per_class_recall"), ("boxes", "per_class_boxes")):
        if key in metrics:  # box counts are optional: only some callers know them
            columns[column] = [_number((metrics[key] or {}).get(str(name))) for name in names]
    if names:
        parts.append("<h3>Per class</h3>" + _table(pd.DataFrame(columns), max_rows=1000))
    return "".join(parts)


# --- 2. precision-recall curves ----------------------------------------------------------------------------


def curve_average_precision(curve: dict) -> float | None:
    """AP at the curve's IoU: the mean of COCO's interpolated precision over its 101 recall points
    (-1 marks points COCO left undefined)."""
    precision = np.asarray(curve.get("precision", []), dtype=float)
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


@plots._with_report_fonts
def precision_recall_plot(curves: dict[str, dict]) -> str:
    """One line per class; `curves` already holds only the classes to draw, legend labels included."""
    plt, (figure, axis) = plots._figure(7.5, 4.5)
    colors = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")
    for index, (label, curve) in enumerate(curves.items()):
        precision = np.asarray(curve["precision"], dtype=float)
        axis.plot(curve["recall"], np.where(precision > -1, precision, np.nan), label=label,
                  color=colors(index % colors.N), linewidth=1.5)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_title("Precision–recall at IoU 0.5")
    if curves:  # outside the axes, so it never hides the curves
        axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    return plots._encode(plt, figure)


def precision_recall_section(metrics: dict) -> str:
    curves = {name: curve for name, curve in (metrics.get("pr_curves") or {}).items() if curve is not None}
    if not curves:
        return "<p><em>No class has ground truth, so there are no precision–recall curves.</em></p>"
    scored = [(name, curve, curve_average_precision(curve)) for name, curve in curves.items()]
    note = ""
    if len(scored) > LEGEND_CLASS_LIMIT:
        # the weak classes are the ones worth looking at; missing AP sorts first (it is the least known)
        scored = sorted(scored, key=lambda item: -1.0 if item[2] is None else item[2])[:WORST_CLASSES_SHOWN]
        note = (f"<p>Showing the {WORST_CLASSES_SHOWN} classes with the lowest AP50 of {len(curves)} "
                f"(more curves would make the plot unreadable).</p>")
    drawn = {f"{name} (AP50 {_number(average)})": curve for name, curve, average in scored}
    return note + _image(precision_recall_plot(drawn), "precision-recall curves")


# --- 3. confusion matrix -----------------------------------------------------------------------------------


def _confusion_subset(labels: list[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray, str]:
    """At most CONFUSION_CLASS_LIMIT classes (plus background): those with the most errors, in class order."""
    class_count = len(labels) - 1
    if class_count <= CONFUSION_CLASS_LIMIT:
        return labels, matrix, ""
    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    kept = sorted(np.argsort(-errors[:class_count], kind="stable")[:CONFUSION_CLASS_LIMIT].tolist())
    kept.append(class_count)
    note = (f"<p>Showing the {CONFUSION_CLASS_LIMIT} classes with the most errors of {class_count}; "
            "counts involving the other classes are left out.</p>")
    return [labels[index] for index in kept], matrix[np.ix_(kept, kept)], note


def confusion_section(metrics: dict) -> str:
    matrix = np.asarray(metrics.get("confusion_matrix") or [], dtype=int)
    labels = [str(label) for label in metrics.get("confusion_labels") or []]
    if matrix.ndim != 2 or matrix.shape != (len(labels), len(labels)) or not labels:
        return "<p><em>No confusion matrix.</em></p>"
    labels, matrix, note = _confusion_subset(labels, matrix)
    threshold = _threshold(metrics.get("confidence_threshold"))
    explanation = (f"<p>Detections scoring ≥ {html.escape(threshold)}, matched at IoU {MATCH_IOU} regardless of "
                   "class. Row “background” = false detections (nothing was there); column “background” = "
                   "missed objects.</p>")
    return explanation + note + _image(plots.confusion_matrix(labels, matrix.tolist()), "detection confusion matrix")


# --- 4. gallery --------------------------------------------------------------------------------------------


@functools.cache
def _japanese_font_file() -> str | None:
    """The IPAexGothic .ttf that report figures use, so labels on images show Japanese class names too.
    `report_fonts` registers it with matplotlib; matplotlib then knows its path."""
    try:
        if plots.JAPANESE_FONT not in plots.report_fonts():
            return None
        from matplotlib import font_manager

        return font_manager.findfont(font_manager.FontProperties(family=plots.JAPANESE_FONT),
                                     fallback_to_default=False)
    except Exception:  # no matplotlib-fontja or an odd font cache: PIL's own font still draws Latin text
        return None


@functools.cache
def label_font(size: int = LABEL_FONT_SIZE):
    from PIL import ImageFont

    path = _japanese_font_file()
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed-size bitmap font
        return ImageFont.load_default()


def _draw_label(draw, position: tuple[float, float], text: str, color, image_size: tuple[int, int], above: bool):
    """A filled tag holding `text`, kept inside the image so labels at the border stay readable."""
    font = label_font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 4, bottom - top + 2
    x = min(max(0.0, position[0]), max(0.0, image_size[0] - width))
    y = position[1] - height if above else position[1]
    y = min(max(0.0, y), max(0.0, image_size[1] - height))
    draw.rectangle((x, y, x + width, y + height), fill=color)
    draw.text((x + 2 - left, y + 1 - top), text, fill=(255, 255, 255), font=font)


def draw_boxes(image, truth: list[dict], predicted: list[dict], scale: float):
    """Ground truth in green (class label under the box top), predictions in red with 'class score' above it."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for box in truth:
        x1, y1, x2, y2 = (float(value) * scale for value in box["box"])
        # wider than the prediction's outline, so a perfect match still shows a green rim around the red box
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=TRUTH_COLOR, width=3)
        _draw_label(draw, (x1, y1), str(box.get("class", "")), TRUTH_COLOR, image.size, above=False)
    for box in predicted:
        x1, y1, x2, y2 = (float(value) * scale for value in box["box"])
        draw.rectangle((x1, y1, x2, y2), outline=PREDICTION_COLOR, width=2)
        _draw_label(draw, (x1, y1), f"{box.get('class', '')} {float(box.get('score', 0.0)):.2f}",
                    PREDICTION_COLOR, image.size, above=True)
    return image


def _display_name(cell) -> tuple[str, str]:
    """(short caption name, full name for the tooltip) of a gallery image."""
    from ...data.images import describe_cell

    return (Path(cell).name if isinstance(cell, str) else "<in memory>"), describe_cell(cell, None)


def gallery_item(item: dict, confidence: float) -> str:
    """One captioned figure; an image that cannot be read or drawn becomes a caption naming it."""
    from ...data.images import open_image

    cell = item.get("image")
    try:
        short, full = _display_name(cell)
    except Exception:
        short = full = "<unknown image>"
    try:
        truth = list(item.get("truth") or [])
        predicted = [box for box in item.get("predicted") or [] if float(box.get("score", 0.0)) >= confidence]
        score = item.get("score")
        caption = f"{short} · score {_number(score)} · truth {len(truth)}, predicted {len(predicted)}"
    except Exception as error:  # malformed records: still name the image
        return (f"<figure><figcaption>unreadable: {html.escape(full)} ({html.escape(type(error).__name__)})"
                "</figcaption></figure>")
    try:
        image = open_image(cell, None).copy()  # copy: never draw on the caller's own PIL image
        scale = GALLERY_SIDE / max(image.size)
        # scale every image, small ones up too, so boxes and labels have the same size on screen
        image = image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))))
        draw_boxes(image, truth, predicted, scale)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
    except Exception as error:  # the run is finished: name what could not be shown instead of failing
        return (f'<figure style="display:inline-block;margin:4px;font-size:12px"><figcaption>unreadable: '
                f"{html.escape(full)} ({html.escape(str(error) or type(error).__name__)}) · "
                f"{html.escape(caption)}</figcaption></figure>")
    return (f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:12px;vertical-align:top">'
            f'<img alt="{html.escape(short)}" title="{html.escape(full)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def gallery_section(gallery: list[dict], confidence: float, shown: int) -> str:
    items = list(gallery or [])[:max(0, shown)]
    if not items:
        return "<p><em>No validation images.</em></p>"
    legend = (f"<p>The {len(items)} lowest-scoring of {len(gallery)} images (score = F1 at IoU {MATCH_IOU}). "
              f"Green: ground truth; red: predictions scoring ≥ {html.escape(_threshold(confidence))}.</p>")
    return legend + '<div class="gallery">' + "".join(gallery_item(item, confidence) for item in items) + "</div>"


# --- the report's entry points -----------------------------------------------------------------------------


def sections(metrics: dict, gallery: list[dict], class_names: list[str], shown: int = 12) -> list[tuple[str, str]]:
    """The detection sections of the run report, as (title, HTML) pairs in display order.
    `gallery` items are {"image", "truth", "predicted", "score"}, already sorted worst first."""
    confidence = float(metrics.get("confidence_threshold") or 0.0)
    builders = [
        ("Detection metrics", "metric tables", lambda: metrics_tables(metrics, class_names)),
        ("Precision–recall curves (IoU 0.5)", "precision–recall curves", lambda: precision_recall_section(metrics)),
        ("Detection confusion matrix", "confusion matrix", lambda: confusion_section(metrics)),
        ("Validation images, worst first", "gallery", lambda: gallery_section(gallery, confidence, shown)),
    ]
    result = []
    for title, what, build in builders:
        try:
            body = build()
        except Exception as error:  # one broken section must not take the finished run's report with it
            body = _failed(what, error)
        result.append((title, body))
    return result


def _iou(first: list[float], second: list[float]) -> float:
    """IoU of two exclusive-xyxy boxes (width = x2 - x1, as COCO and the metrics module measure them)."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    overlap = max(0.0, width) * max(0.0, height)
    union = ((first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1])
             - overlap)
    return overlap / union if union > 0 else 0.0


def image_quality(truth: list[dict], predicted: list[dict], confidence: float) -> float:
    """F1 at IoU 0.5 of one image, for sorting the gallery worst first (lower = worse).

    Predictions scoring >= `confidence` are matched greedily by descending score, each to the unmatched
    ground-truth box of the same class with the highest IoU >= 0.5 (COCO's matching rule). An image with
    neither truth nor predictions is perfect (1.0): nothing was there and nothing was claimed."""
    kept = sorted((box for box in predicted if float(box["score"]) >= confidence),
                  key=lambda box: -float(box["score"]))
    truth_boxes = [[float(value) for value in box["box"]] for box in truth]
    matched = [False] * len(truth)
    true_positives = 0
    for prediction in kept:
        box = [float(value) for value in prediction["box"]]
        best, best_overlap = -1, -1.0
        for index, candidate in enumerate(truth):
            if matched[index] or candidate["class"] != prediction["class"]:
                continue
            overlap = _iou(box, truth_boxes[index])
            if overlap >= MATCH_IOU and overlap > best_overlap:
                best, best_overlap = index, overlap
        if best >= 0:
            matched[best] = True
            true_positives += 1
    false_positives, false_negatives = len(kept) - true_positives, len(truth) - true_positives
    denominator = 2 * true_positives + false_positives + false_negatives
    return 1.0 if denominator == 0 else 2 * true_positives / denominator
