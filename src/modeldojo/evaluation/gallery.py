"""Thumbnails of the worst-predicted images for the report's error analysis (image tasks)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

THUMBNAIL = 96


def worst_images(worst: pd.DataFrame, column: str, base: Path | None) -> str:
    """HTML: one captioned thumbnail per row of the error-analysis table (true, predicted, confidence)."""
    from ..data.images import describe_cell, open_image

    cells = []
    for _, row in worst.iterrows():
        try:
            image = open_image(row[column], base)
        except Exception:  # the gallery must not fail a finished run; name what could not be shown
            cells.append(f"<figure><figcaption>unreadable: {html.escape(describe_cell(row[column], base))}"
                         "</figcaption></figure>")
            continue
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode()
        confidence = row.get("probability_of_actual")
        caption = f"true {row['actual']} · predicted {row['predicted']}" + (
            f" · p(true) {confidence:.2f}" if confidence is not None else "")
        name = html.escape(describe_cell(row[column], base))
        cells.append(f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:12px">'
                     f'<img alt="{name}" title="{name}" src="data:image/png;base64,{data}" '
                     f'style="width:{THUMBNAIL}px;image-rendering:pixelated"><figcaption>{html.escape(caption)}'
                     f'</figcaption></figure>')
    return '<div class="gallery">' + "".join(cells) + "</div>"
