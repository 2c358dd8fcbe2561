"""Decoding, caching, augmentation and normalisation of image batches (kornia, no torchvision).

Images are decoded once (PIL), resized so the shorter side is `stored` pixels and centre-cropped to a
square, and kept as uint8 in memory when they fit in `data.image_cache_mb` — an epoch then costs no
decoding. Augmentation runs on whole batches on the training device, drawing from torch's generator,
so seeded runs repeat and a resumed run replays the same augmentations.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ...data.images import describe_cell, open_image, to_square  # noqa: F401 — to_square used here and by importers

CROP_HEADROOM = 1.15  # stored side / input side when augmenting: room for random crops


def choose_size(native: int, sides: list[int]) -> int:
    """The backbone's own size, lowered for small images: 3× their median side, a multiple of 32, ≥ 96.

    Small images gain from upscaling well beyond their own size: MNIST's 28-px digits, 50 per class,
    EfficientNet-Lite0 full fine-tune: 0.941 test accuracy at 64 px, 0.978 at 96, 0.977 at 128.
    """
    if not sides:
        return native
    wanted = max(96, int(math.ceil(3 * float(np.median(sides)) / 32) * 32))
    return min(native, wanted)


class ImageStore:
    """uint8 batches of one split's images, from memory or decoded on demand."""

    def __init__(self, cells: list, base: Path | None, stored: int, cache_mb: int) -> None:
        self.cells, self.base, self.stored = cells, base, stored
        self.cache: torch.Tensor | None = None
        if len(cells) * 3 * stored * stored <= cache_mb * 2 ** 20:
            self.cache = torch.from_numpy(np.stack([self._decode(i) for i in range(len(cells))])) \
                if cells else torch.zeros((0, 3, stored, stored), dtype=torch.uint8)

    def _decode(self, index: int) -> np.ndarray:
        try:
            return to_square(open_image(self.cells[index], self.base), self.stored)
        except Exception as error:  # checked before training; this guards files changed since
            raise ValueError(f"{describe_cell(self.cells[index], self.base)}: {error}") from error

    def __len__(self) -> int:
        return len(self.cells)

    def batch(self, indices) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[torch.as_tensor(indices, dtype=torch.long)]
        return torch.from_numpy(np.stack([self._decode(i) for i in indices]))


def augmenter(preset: str, size: int, flip: bool):
    """A kornia pipeline for training batches (float, 0-1, N×3×H×W) → N×3×size×size; None for 'none'."""
    if preset == "none":
        return None
    import kornia.augmentation as K

    steps = [K.RandomResizedCrop((size, size), scale=(0.7, 1.0) if preset == "light" else (0.35, 1.0))]
    if flip:
        steps.append(K.RandomHorizontalFlip())
    if preset == "light":
        steps.append(K.ColorJitter(0.2, 0.2, 0.2, 0.02, p=0.5))
    else:
        from kornia.augmentation.auto import RandAugment

        steps += [RandAugment(n=2, m=9), K.RandomErasing(p=0.25)]
    return K.AugmentationSequential(*steps)


def centre(batch: torch.Tensor, size: int) -> torch.Tensor:
    offset = (batch.shape[-1] - size) // 2
    return batch[..., offset:offset + size, offset:offset + size]


def normalise(batch: torch.Tensor, mean, std) -> torch.Tensor:
    mean_t = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t
