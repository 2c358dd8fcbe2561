"""Images on the wire, shared by every task that takes them (image classification, detection): an image arrives
as base64 (or a data: URL) in JSON, as the raw file bytes in a binary BYTES tensor, or as a multipart upload; it
is decoded here, fully, so a broken file is the client's 4xx.

Decompression bombs: a few-kB PNG can declare a 40,000² canvas. Sizes are read from the header and refused
before decoding: per image, and per request (256 images × the per-image limit would still exhaust memory).

`ImageCodec` answers as the base Codec does (label / probabilities); a task whose answers differ (detection's
boxes) subclasses it and overrides the answer methods only."""
from __future__ import annotations

import base64
import binascii
import io
from typing import Any, ClassVar

from .codec import Codec, _shown

MAX_IMAGE_PIXELS = 25_000_000
MAX_REQUEST_PIXELS = 100_000_000
IMAGE_FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"]  # never EPS (Ghostscript) or other plugins


class ImageCodec(Codec):
    heavy: ClassVar[bool] = True
    max_body_bytes: ClassVar[int | None] = 16 << 20  # a few photos as base64
    uploads: ClassVar[bool] = True
    strings: ClassVar[bool] = True

    def form_fields(self) -> list[dict[str, Any]]:
        return [{"name": column, "widget": "image"} for column in self.features]

    def cell(self, column: str, value: Any, where: str, budget: dict[str, int]) -> Any:
        if isinstance(value, bytes):
            image = decode_image_bytes(value, where)
        elif isinstance(value, str):
            image = decode_image(value, where)
        else:
            raise ValueError(f"{where}: expected a base64-encoded image, got {_shown(value)}")
        budget["pixels"] = budget.get("pixels", 0) + image.width * image.height
        if budget["pixels"] > MAX_REQUEST_PIXELS:
            raise ValueError(f"{where}: the request's images hold over {MAX_REQUEST_PIXELS:,} pixels; send fewer "
                             "or smaller images per request")
        return image

    def cell_schema(self, column: str) -> dict[str, Any]:
        return {"type": "string", "contentEncoding": "base64",
                "description": f"{', '.join(IMAGE_FORMATS)} file as base64, or a data: URL"}

    def cell_example(self, column: str) -> Any:
        return _EXAMPLE_PNG

    def tensor_datatypes(self, column: str) -> tuple[str, ...]:
        return ("BYTES",)  # JSON: base64 strings; binary tensors: the file's own bytes

    def example_records(self, rows: int) -> list[dict[str, Any]]:
        from PIL import Image

        return [{self.features[0]: Image.new("RGB", (64, 64), (127, 127, 127))} for _ in range(rows)]

    def upload_records(self, blobs: list[tuple[bytes, str]]) -> list[dict[str, Any]]:
        budget = {"pixels": 0}
        return [{self.features[0]: self.cell(self.features[0], data, where, budget)} for data, where in blobs]

    def item_example(self) -> Any:
        return _EXAMPLE_PNG


def decode_image(text: str, where: str):
    """base64 (or a data: URL) → RGB PIL image."""
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{where}: not valid base64 ({error})") from None
    return decode_image_bytes(data, where)


def decode_image_bytes(data: bytes, where: str):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:  # from the header, nothing decoded yet
                raise ValueError(f"{image.width}×{image.height} pixels, over the limit of {MAX_IMAGE_PIXELS:,}")
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError) as error:
        raise ValueError(f"{where}: not an image we take ({error})") from None


# A 1×1 grey PNG: the OpenAPI example.
_EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNoaGgAAAMEAYFL09IQAAAAAElFTkSuQmCC")
