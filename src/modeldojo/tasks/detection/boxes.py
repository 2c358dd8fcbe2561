"""Box geometry for the detection task: conversions, IoU, class-aware NMS, letterbox and box-aware augmentation.

Convention used everywhere in this module (and by COCO): boxes are **exclusive, continuous pixel-edge
coordinates**. Pixel ``i`` covers ``[i, i + 1)``, a box ``(x1, y1, x2, y2)`` has width ``x2 - x1`` and the
whole image is ``(0, 0, width, height)``.

kornia is used where it already has the operation:
- ``kornia.geometry.bbox.nms`` — it uses the same exclusive ``xyxy`` convention, so it is called directly.
- ``kornia.augmentation.AugmentationSequential`` with ``data_keys=["input", "bbox_xyxy"]`` and
  ``kornia.augmentation.RandomMosaic`` — they move boxes with the image. kornia's geometric matrices act on
  pixel *centres* (pixel ``i`` sits at coordinate ``i``; a horizontal flip is ``x -> width - 1 - x``), so a box
  given in edge coordinates comes back one pixel off (``[10, 50)`` flipped in a 200-wide image returns
  ``[149, 189]`` instead of ``[150, 190]``). We therefore shift boxes by half a pixel into kornia's centre frame
  and back (``_to_kornia_frame`` / ``_from_kornia_frame``), which is exact for flips and for every affine map
  kornia builds from centre coordinates (resize, crop).

Box conversions are written in plain torch: kornia's ``Boxes`` class stores *inclusive* boxes
(``width = x2 - x1 + 1``), which would add and remove one pixel on every conversion (kornia #4008, #4061).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


# --- conversions -----------------------------------------------------------------------------------------


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (x1, y1, width, height); the COCO json format."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    x, y, width, height = boxes.unbind(-1)
    return torch.stack((x, y, x + width, y + height), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (centre x, centre y, width, height); the YOLO label format."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    centre_x, centre_y, width, height = boxes.unbind(-1)
    return torch.stack(
        (centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2), dim=-1
    )


def convert_boxes(boxes: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """Convert between ``xyxy``, ``xywh`` and ``cxcywh`` (always through ``xyxy``, the internal format)."""
    for name in (source, target):
        if name not in BOX_FORMATS:
            raise ValueError(f"unknown box format {name!r}; expected one of {BOX_FORMATS}")
    if source == target:
        return boxes.clone()
    to_xyxy = {"xyxy": torch.clone, "xywh": xywh_to_xyxy, "cxcywh": cxcywh_to_xyxy}
    from_xyxy = {"xyxy": torch.clone, "xywh": xyxy_to_xywh, "cxcywh": xyxy_to_cxcywh}
    return from_xyxy[target](to_xyxy[source](boxes))


def normalize_boxes(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Pixels -> fractions of the image size. Works for all three formats: x-like columns are 0 and 2."""
    scale = boxes.new_tensor([width, height, width, height])
    return boxes / scale


def denormalize_boxes(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Fractions of the image size -> pixels (inverse of ``normalize_boxes``)."""
    scale = boxes.new_tensor([width, height, width, height])
    return boxes * scale


def clip_boxes(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Clamp ``xyxy`` boxes to the image ``[0, width] x [0, height]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        (x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)), dim=-1
    )


# --- overlap ---------------------------------------------------------------------------------------------


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``xyxy`` boxes; degenerate (inverted) boxes count as 0 rather than negative."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``xyxy`` boxes: (N, 4) x (M, 4) -> (N, M). Two empty boxes have IoU 0, not NaN."""
    area_a = box_area(boxes_a)
    area_b = box_area(boxes_b)
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> torch.Tensor:
    """Class-aware NMS: a box only suppresses boxes of its own class. Returns kept indices, best score first.

    Uses the per-class offset trick with ``kornia.geometry.bbox.nms``: every class's boxes are shifted by
    ``class_id * (largest coordinate + 1)`` so boxes of different classes can never overlap, and one NMS call
    handles all classes (kornia's nms loops in Python once per kept box, so one call beats a loop over classes
    that each pays the call overhead). The shift is done in float64: in float32 an offset of ~1e6 would round
    coordinates by ~0.06 px and could move an IoU across the threshold; float64 keeps it exact to ~1e-10.
    A box is suppressed when its IoU with a better box is *greater than* ``iou_threshold`` (torchvision's rule).
    """
    from kornia.geometry.bbox import nms

    candidates = torch.arange(boxes.shape[0], device=boxes.device)
    if score_threshold is not None:
        candidates = candidates[scores[candidates] >= score_threshold]
    if candidates.numel() == 0:
        return candidates
    # A zero-area box overlaps nothing, but kornia's IoU is 0/0 = NaN there and NaN fails its "keep" test, so such
    # a box would suppress every later box of any class. It is kept aside and never suppresses or is suppressed,
    # as ONNX Runtime's NonMaxSuppression (the export) treats it.
    flat = (boxes[candidates, 2] <= boxes[candidates, 0]) | (boxes[candidates, 3] <= boxes[candidates, 1])
    solid, flat_candidates = candidates[~flat], candidates[flat]
    kept = solid[:0]
    if solid.numel():
        chosen_boxes = boxes[solid].to(torch.float64)
        coordinate_span = chosen_boxes.abs().max() + 1
        offsets = class_ids[solid].to(torch.float64) * coordinate_span
        kept = solid[nms(chosen_boxes + offsets[:, None], scores[solid].to(torch.float64), iou_threshold)]
    if flat_candidates.numel():
        kept = torch.cat([kept, flat_candidates])
        kept = kept[torch.sort(-scores[kept].to(torch.float64), stable=True).indices]
    if max_detections is not None:
        kept = kept[:max_detections]
    return kept


# --- letterbox -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """How an image was letterboxed: enough to map boxes both ways exactly.

    ``scale_x``/``scale_y`` are the *realised* scales (resized size / original size after rounding to whole
    pixels); they differ from the nominal ``min(target / side)`` by under one pixel, and using them is what makes
    ``boxes_from_letterbox`` the exact inverse of ``boxes_to_letterbox``.
    """

    scale_x: float
    scale_y: float
    pad_left: int
    pad_top: int
    original_width: int
    original_height: int
    output_width: int
    output_height: int


def letterbox_geometry(original_height: int, original_width: int, size: int | tuple[int, int]) -> Letterbox:
    """Compute the letterbox of an image of this size into ``size`` (square int, or ``(height, width)``)."""
    output_height, output_width = (size, size) if isinstance(size, int) else size
    scale = min(output_height / original_height, output_width / original_width)
    resized_width = max(1, min(output_width, round(original_width * scale)))
    resized_height = max(1, min(output_height, round(original_height * scale)))
    return Letterbox(
        scale_x=resized_width / original_width,
        scale_y=resized_height / original_height,
        pad_left=(output_width - resized_width) // 2,
        pad_top=(output_height - resized_height) // 2,
        original_width=original_width,
        original_height=original_height,
        output_width=output_width,
        output_height=output_height,
    )


def letterbox(
    image: torch.Tensor, size: int | tuple[int, int], pad_value: float = 114 / 255
) -> tuple[torch.Tensor, Letterbox]:
    """Resize ``image`` ((C, H, W) or (B, C, H, W), float) keeping its aspect ratio, then pad to ``size``.

    Padding is centred (grey 114/255 by default, the YOLO convention, so padding looks like neither black
    objects nor white background). Returns the padded image and the ``Letterbox`` needed to map boxes.
    """
    batched = image.ndim == 4
    images = image if batched else image[None]
    geometry = letterbox_geometry(images.shape[-2], images.shape[-1], size)
    resized_height = round(geometry.original_height * geometry.scale_y)
    resized_width = round(geometry.original_width * geometry.scale_x)
    resized = torch.nn.functional.interpolate(
        images.float(),
        size=(resized_height, resized_width),
        mode="bilinear",
        align_corners=False,
        # antialias avoids aliasing when shrinking large photos; it is a no-op cost when enlarging
        antialias=resized_height < geometry.original_height,
    )
    output = images.new_full((images.shape[0], images.shape[1], geometry.output_height, geometry.output_width),
                             pad_value, dtype=resized.dtype)
    output[..., geometry.pad_top:geometry.pad_top + resized_height,
           geometry.pad_left:geometry.pad_left + resized_width] = resized
    return (output if batched else output[0]), geometry


def boxes_to_letterbox(boxes: torch.Tensor, geometry: Letterbox) -> torch.Tensor:
    """Map ``xyxy`` boxes from original-image pixels into the letterboxed image."""
    scale = boxes.new_tensor([geometry.scale_x, geometry.scale_y, geometry.scale_x, geometry.scale_y])
    shift = boxes.new_tensor([geometry.pad_left, geometry.pad_top, geometry.pad_left, geometry.pad_top])
    return boxes * scale + shift


def boxes_from_letterbox(boxes: torch.Tensor, geometry: Letterbox, clip: bool = True) -> torch.Tensor:
    """Map ``xyxy`` boxes predicted on the letterboxed image back to original-image pixels.

    Exact inverse of ``boxes_to_letterbox`` (up to floating error); ``clip`` clamps predictions that reach into
    the padding back onto the original image.
    """
    scale = boxes.new_tensor([geometry.scale_x, geometry.scale_y, geometry.scale_x, geometry.scale_y])
    shift = boxes.new_tensor([geometry.pad_left, geometry.pad_top, geometry.pad_left, geometry.pad_top])
    original = (boxes - shift) / scale
    return clip_boxes(original, geometry.original_width, geometry.original_height) if clip else original


# --- box-aware augmentation ------------------------------------------------------------------------------


def _to_kornia_frame(boxes: torch.Tensor) -> torch.Tensor:
    # edge coordinates -> kornia's pixel-centre coordinates (see the module docstring)
    return boxes - 0.5


def _from_kornia_frame(boxes: torch.Tensor) -> torch.Tensor:
    return boxes + 0.5


def _pad_box_lists(boxes: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged per-image boxes into (B, N, 4) plus a validity mask; kornia wants one tensor.

    Padding slots hold a 1x1 box (not zeros) so no transform divides by a zero size; the mask, not the
    coordinates, decides what is real.
    """
    count = max(1, max((len(image_boxes) for image_boxes in boxes), default=0))
    padded = torch.zeros(len(boxes), count, 4, device=device)
    padded[..., 2:] = 1.0
    valid = torch.zeros(len(boxes), count, dtype=torch.bool, device=device)
    for index, image_boxes in enumerate(boxes):
        padded[index, : len(image_boxes)] = image_boxes.to(device, torch.float32)
        valid[index, : len(image_boxes)] = True
    return padded, valid


class BoxAugmentation:
    """Random mosaic (optional), colour jitter, horizontal flip and scale-crop that keep boxes on their objects.

    Call with images (B, C, H, W) float in [0, 1] (same size: letterbox first), a list of (N_i, 4) ``xyxy`` pixel
    boxes and a list of (N_i,) class ids. Returns images of ``output_size`` and the surviving boxes/class ids:
    boxes are clipped to the image, and dropped when narrower or shorter than ``minimum_box_size`` pixels
    (that covers boxes that left the image: they clip to zero width).
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        flip_probability: float = 0.5,
        scale_range: tuple[float, float] | None = (0.5, 1.0),
        colour_jitter: float = 0.2,
        mosaic_probability: float = 0.0,
        minimum_box_size: float = 2.0,
    ) -> None:
        import kornia.augmentation as augmentation

        # An int is a square; ``scale_range`` is the crop's area fraction (None: no scale-cropping); flip, colour
        # and mosaic are off at probability or strength 0.
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.minimum_box_size = minimum_box_size
        stages = []
        if colour_jitter > 0:
            # hue moves colours much further per unit than brightness/contrast/saturation, hence a quarter
            strength = colour_jitter
            stages.append(augmentation.ColorJitter(strength, strength, strength, strength / 4, p=0.8))
        if flip_probability > 0:
            stages.append(augmentation.RandomHorizontalFlip(p=flip_probability))
        if scale_range is not None:
            # RandomResizedCrop both zooms (scale) and crops, and always lands on output_size
            stages.append(augmentation.RandomResizedCrop(self.output_size, scale=scale_range, ratio=(3 / 4, 4 / 3)))
        else:
            # no random scale: a plain resize still guarantees output_size (identity when sizes already match)
            stages.append(augmentation.Resize(self.output_size))
        self.pipeline = augmentation.AugmentationSequential(*stages, data_keys=["input", "bbox_xyxy"])
        self.mosaic = (
            augmentation.RandomMosaic(self.output_size, p=mosaic_probability, data_keys=["input", "bbox_xyxy"])
            if mosaic_probability > 0
            else None
        )

    def _apply_mosaic(self, images, boxes, valid, class_ids):
        """Run kornia's mosaic and rebuild which class each output box belongs to.

        kornia returns the tiles' boxes concatenated tile by tile (tile t holds the boxes of image
        ``permutation[b, t]``) but carries no labels, so we read the permutation it drew from ``_params``.
        An image the mosaic skipped (probability) keeps its own boxes first, followed by padding.
        """
        count = boxes.shape[1]
        mixed_images, mixed_boxes = self.mosaic(images, _to_kornia_frame(boxes))
        permutation = self.mosaic._params["permutation"]
        applied = self.mosaic._params["batch_prob"] > 0.5
        tiles = permutation.shape[1]
        mixed_valid = torch.zeros(mixed_boxes.shape[:2], dtype=torch.bool, device=valid.device)
        mixed_class_ids = torch.zeros(mixed_boxes.shape[:2], dtype=class_ids.dtype, device=valid.device)
        for image_index in range(images.shape[0]):
            if bool(applied[image_index]):
                for tile in range(tiles):
                    source = int(permutation[image_index, tile])
                    slots = slice(tile * count, (tile + 1) * count)
                    mixed_valid[image_index, slots] = valid[source]
                    mixed_class_ids[image_index, slots] = class_ids[source]
            else:
                mixed_valid[image_index, :count] = valid[image_index]
                mixed_class_ids[image_index, :count] = class_ids[image_index]
        return mixed_images, _from_kornia_frame(mixed_boxes), mixed_valid, mixed_class_ids

    def __call__(
        self, images: torch.Tensor, boxes: list[torch.Tensor], class_ids: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        padded_boxes, valid = _pad_box_lists(boxes, images.device)
        padded_class_ids = torch.zeros(valid.shape, dtype=torch.long, device=images.device)
        for index, image_class_ids in enumerate(class_ids):
            padded_class_ids[index, : len(image_class_ids)] = torch.as_tensor(
                image_class_ids, dtype=torch.long, device=images.device)
        images = images.float()
        if self.mosaic is not None:
            images, padded_boxes, valid, padded_class_ids = self._apply_mosaic(
                images, padded_boxes, valid, padded_class_ids
            )
        output_images, moved_boxes = self.pipeline(images, _to_kornia_frame(padded_boxes))
        moved_boxes = _from_kornia_frame(moved_boxes)
        height, width = output_images.shape[-2:]
        moved_boxes = clip_boxes(moved_boxes, width, height)
        large_enough = ((moved_boxes[..., 2] - moved_boxes[..., 0]) >= self.minimum_box_size) & (
            (moved_boxes[..., 3] - moved_boxes[..., 1]) >= self.minimum_box_size
        )
        keep = valid & large_enough
        kept_boxes = [moved_boxes[index][keep[index]] for index in range(keep.shape[0])]
        kept_class_ids = [padded_class_ids[index][keep[index]] for index in range(keep.shape[0])]
        return output_images.clamp(0, 1), kept_boxes, kept_class_ids
