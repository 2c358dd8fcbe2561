"""The image task's wire format: the shared image cells of `modeldojo.tasks.image_codec` (base64 / data: URL /
BYTES tensor / multipart upload, with decompression-bomb limits), answered as a classifier (label /
probabilities). Re-exported here so `modeldojo.tasks.image.codec.ImageCodec` and its helpers keep their names."""
from __future__ import annotations

from ..image_codec import (IMAGE_FORMATS, MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS, _EXAMPLE_PNG, ImageCodec,
                           decode_image, decode_image_bytes)

__all__ = ["IMAGE_FORMATS", "MAX_IMAGE_PIXELS", "MAX_REQUEST_PIXELS", "ImageCodec", "decode_image",
           "decode_image_bytes"]
