"""Training loss of the FCOS-style detector in ``network.py``: target assignment, focal, GIoU and centerness.

Assignment (FCOS with centre sampling), per image, vectorised over (points x boxes):
- each box belongs to one pyramid level, chosen by its size: half its longer side in ``[0, 64)`` -> stride 8,
  ``[64, 128)`` -> stride 16, ``[128, inf)`` -> stride 32 (FCOS's ranges, written as ``[4, 8) x stride``);
- on that level, a point is positive for the box when it lies inside the box and within ``radius`` strides
  of the box centre (centre sampling: points near the border see mostly background and make poor
  positives, which matters most when there are few images to learn from);
- the point nearest the box centre on its level is always positive, so a box smaller than a stride still
  gets a positive (otherwise it would silently be learnt as background);
- a point claimed by several boxes takes the smallest one (FCOS's rule: the large box has other points).

Losses: sigmoid focal loss over all points and classes (normalised by the number of positives); GIoU loss
between decoded and true boxes on positives, weighted by the centerness target so that near-centre points
dominate (FCOS v2); binary cross-entropy for centerness on positives. kornia 0.9 has focal losses but no
GIoU loss, and its focal loss normalises differently, so the few lines are written here in torch.

Images without boxes are fine: all their points are background and only the focal loss sees them.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from .network import STRIDES, LevelOutput, all_points, distances_to_boxes, flatten_outputs


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Elementwise focal loss (Lin et al. 2017): down-weights the many easy background points."""
    probabilities = torch.sigmoid(logits)
    cross_entropy = functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    probability_of_truth = probabilities * targets + (1 - probabilities) * (1 - targets)
    alpha_weight = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_weight * cross_entropy * (1 - probability_of_truth) ** gamma


def generalized_iou_loss(predicted: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - GIoU`` of matched ``xyxy`` boxes, (N, 4) x (N, 4) -> (N,).

    GIoU (Rezatofighi et al. 2019) still has a gradient when the boxes do not overlap, which plain IoU lacks.
    """
    predicted_area = (predicted[:, 2] - predicted[:, 0]).clamp(min=0) * (predicted[:, 3] - predicted[:, 1]).clamp(min=0)
    target_area = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    top_left = torch.maximum(predicted[:, :2], target[:, :2])
    bottom_right = torch.minimum(predicted[:, 2:], target[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = predicted_area + target_area - intersection
    iou = intersection / (union + eps)
    enclosing_size = (torch.maximum(predicted[:, 2:], target[:, 2:]) - torch.minimum(predicted[:, :2], target[:, :2]))
    enclosing_area = enclosing_size.clamp(min=0).prod(dim=-1)
    return 1 - (iou - (enclosing_area - union) / (enclosing_area + eps))


def level_bounds(point_strides: torch.Tensor, strides=STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's range of box half-sides, ``[4, 8) x stride``, open-ended at the first and last level."""
    lower = torch.where(point_strides == strides[0], torch.zeros_like(point_strides), 4 * point_strides)
    upper = torch.where(point_strides == strides[-1], torch.full_like(point_strides, float("inf")),
                        8 * point_strides)
    return lower, upper


def assign_targets(points: torch.Tensor, point_strides: torch.Tensor, gt_boxes: torch.Tensor,
                   gt_classes: torch.Tensor, num_classes: int, radius: float = 1.5, strides=STRIDES):
    """One image's targets: (P, classes) one-hot, (P, 4) matched box, (P,) centerness, (P,) positive mask."""
    point_count = points.shape[0]
    class_targets = points.new_zeros(point_count, num_classes)
    box_targets = points.new_zeros(point_count, 4)
    centerness_targets = points.new_zeros(point_count)
    if gt_boxes.shape[0] == 0:
        return class_targets, box_targets, centerness_targets, torch.zeros_like(centerness_targets, dtype=torch.bool)
    gt_boxes = gt_boxes.to(points.dtype)
    x, y = points[:, 0:1], points[:, 1:2]  # (P, 1) each, broadcast against (N,) boxes
    distances = torch.stack((x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x, gt_boxes[:, 3] - y), dim=-1)
    inside_box = distances.min(dim=-1).values > 0  # (P, N)
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (N, 2)
    offset = (points[:, None, :] - centre[None]).abs()  # (P, N, 2)
    inside_centre = (offset < radius * point_strides[:, None, None]).all(dim=-1)
    half_side = (gt_boxes[:, 2:] - gt_boxes[:, :2]).max(dim=-1).values / 2  # (N,)
    lower, upper = level_bounds(point_strides, strides)
    on_level = (half_side[None] >= lower[:, None]) & (half_side[None] < upper[:, None])  # (P, N)
    positive = inside_box & inside_centre & on_level
    # The point nearest each box centre on the box's level is always positive (small boxes, see docstring).
    centre_distance = torch.where(on_level, offset.square().sum(dim=-1), torch.full_like(offset[..., 0], float("inf")))
    nearest = centre_distance.argmin(dim=0)  # (N,)
    positive[nearest, torch.arange(gt_boxes.shape[0], device=points.device)] = True
    # Ambiguous points take the smallest box.
    areas = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))[None].expand(point_count, -1)
    areas = torch.where(positive, areas, torch.full_like(areas, float("inf")))
    smallest_area, matched = areas.min(dim=1)
    is_positive = torch.isfinite(smallest_area)
    matched_distances = distances[torch.arange(point_count, device=points.device), matched]  # (P, 4)
    left_right, top_bottom = matched_distances[:, 0::2], matched_distances[:, 1::2]
    centerness = torch.sqrt(
        (left_right.min(dim=-1).values / left_right.max(dim=-1).values.clamp(min=1e-6)).clamp(min=0)
        * (top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values.clamp(min=1e-6)).clamp(min=0))
    # A forced point outside a tiny box has negative distances; it is still that box's best point, so it
    # gets full centerness rather than 0 (which would hide the box at decode time).
    inside_matched = matched_distances.min(dim=-1).values > 0
    centerness = torch.where(inside_matched, centerness, torch.ones_like(centerness))
    class_targets[is_positive, gt_classes.to(points.device).long()[matched[is_positive]]] = 1.0
    box_targets[is_positive] = gt_boxes[matched[is_positive]]
    centerness_targets = torch.where(is_positive, centerness, centerness_targets)
    return class_targets, box_targets, centerness_targets, is_positive


class DetectionLoss:
    """``loss(outputs, boxes, classes) -> dict`` with ``loss`` (the sum to minimise) and its three parts.

    ``boxes``: one (N_i, 4) tensor per image, exclusive xyxy pixels of the letterboxed input;
    ``classes``: one (N_i,) integer tensor per image. Empty tensors mean background-only images.
    """

    def __init__(self, num_classes: int, strides=STRIDES, radius: float = 1.5, box_weight: float = 1.0,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> None:
        self.num_classes, self.strides, self.radius = num_classes, tuple(strides), radius
        self.box_weight, self.focal_alpha, self.focal_gamma = box_weight, focal_alpha, focal_gamma

    def __call__(self, outputs: list[LevelOutput], boxes: list[torch.Tensor],
                 classes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        points, point_strides = all_points(outputs, self.strides)
        class_logits, regression, centerness_logits = flatten_outputs(outputs)
        targets = [assign_targets(points, point_strides, image_boxes.to(points.device), image_classes,
                                  self.num_classes, self.radius, self.strides)
                   for image_boxes, image_classes in zip(boxes, classes)]
        class_targets, box_targets, centerness_targets, positive = (torch.stack(parts) for parts in zip(*targets))
        # Normalise by positives (at least 1: a batch of background-only images still has a finite loss).
        positives = positive.sum().clamp(min=1).to(class_logits.dtype)
        class_loss = sigmoid_focal_loss(class_logits, class_targets, self.focal_alpha,
                                        self.focal_gamma).sum() / positives
        if positive.any():
            predicted_boxes = distances_to_boxes(points, regression, point_strides)[positive]
            weights = centerness_targets[positive]
            box_loss = (generalized_iou_loss(predicted_boxes, box_targets[positive]) * weights).sum() \
                / weights.sum().clamp(min=1e-6)
            centerness_loss = functional.binary_cross_entropy_with_logits(
                centerness_logits[positive], centerness_targets[positive])
        else:
            # Keep the graph connected (zero gradients) so optimisers and DDP see every parameter used.
            box_loss = regression.sum() * 0.0
            centerness_loss = centerness_logits.sum() * 0.0
        total = class_loss + self.box_weight * box_loss + centerness_loss
        return {"loss": total, "class_loss": class_loss.detach(), "box_loss": box_loss.detach(),
                "centerness_loss": centerness_loss.detach()}
