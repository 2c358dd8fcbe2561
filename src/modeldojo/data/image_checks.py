"""Checks for image columns, run with the other data checks before any training compute.

Every image is opened and decoded once: unreadable, truncated or missing files are listed by path and
row (training stops, or with `data.skip_bad_images` those rows are left out); modes other than RGB are
counted (they are converted); images under 32 pixels on a side are flagged; pixel-identical images are
flagged, as copies landing in both train and test inflate test scores.
"""
from __future__ import annotations

import hashlib
from collections import Counter
import pandas as pd

from .images import base_folder, describe_cell, load_image, to_rgb
from .readers import row_location

TINY_SIDE = 32
SHOWN = 10


def check_images(frame: pd.DataFrame, column: str, report, skip_bad: bool) -> list[int]:
    """Add findings to `report`; return the row positions to leave out (only when `skip_bad`)."""
    base = base_folder(frame)
    bad, tiny, modes, seen = [], [], Counter(), {}
    duplicates = 0
    for position, cell in enumerate(frame[column].tolist()):
        if cell is None or (isinstance(cell, float) and cell != cell):
            bad.append((position, "no image (empty cell)"))
            continue
        try:
            image = load_image(cell, base)  # decoded once: mode, size and pixel digest from the same read
            to_rgb(image)  # the conversion training will do must work too
            modes[image.mode] += 1
            digest = hashlib.sha1(image.tobytes()).hexdigest()
        except Exception as error:  # PIL raises many types for corrupt files: report them all the same way
            bad.append((position, f"{describe_cell(cell, base)}: {error}"))
            continue
        if min(image.size) < TINY_SIDE:
            tiny.append(position)
        if digest in seen:
            duplicates += 1
        else:
            seen[digest] = position
    if bad:
        listed = "; ".join(f"{row_location(frame, p)}: {why}" for p, why in bad[:SHOWN])
        more = f" (and {len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
        if skip_bad:
            report.add("bad_images", "warning", f"{len(bad)} unreadable or missing image(s) left out "
                       f"(data.skip_bad_images): {listed}{more}", column, count=len(bad))
        else:
            report.add("bad_images", "error", f"{report.source}: {len(bad)} unreadable or missing image(s) in column "
                       f"{column!r}: {listed}{more}. Fix or remove them, or set data.skip_bad_images: true to "
                       "leave them out", column, count=len(bad))
    converted = {mode: count for mode, count in modes.items() if mode != "RGB"}
    if converted:
        report.add("image_modes", "info", "images converted to RGB: " + ", ".join(
            f"{count} {mode}" for mode, count in sorted(converted.items())), column, modes=dict(modes))
    if tiny:
        report.add("tiny_images", "warning", f"{len(tiny)} image(s) smaller than {TINY_SIDE} px on a side (first at "
                   f"{row_location(frame, tiny[0])}); they are upscaled and carry little detail", column,
                   count=len(tiny))
    if duplicates:
        report.add("duplicate_images", "warning", f"{duplicates} image(s) are pixel-identical copies of another; "
                   "copies split across train and test inflate test scores", column, count=duplicates)
    return [p for p, _ in bad] if skip_bad else []
