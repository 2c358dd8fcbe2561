"""EfficientNet-Lite's convolutions in a form PEFT's LoRA can adapt; shared by the image and detection tasks."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional


class SamePaddingConv2d(nn.Conv2d):
    """TensorFlow-style "same" padding computed from each input, with nn.Conv2d's own constructor.

    EfficientNet-Lite's convolutions pad asymmetrically for stride 2 (TF "same"); its package does it with a class
    whose constructor takes an image size, which PEFT's LoRA cannot build adapter convolutions from (it calls
    ``type(conv)(in, r, kernel, stride, padding)``). This class takes that call, and its adapters pad the same way
    as the convolution they adapt, so their outputs line up. For input sides that are multiples of 32 the result
    equals the package's 224-px static padding bit for bit.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        height, width = features.shape[-2:]
        kernel_height, kernel_width = self.weight.shape[-2:]
        pad_height = max((math.ceil(height / self.stride[0]) - 1) * self.stride[0] +
                         (kernel_height - 1) * self.dilation[0] + 1 - height, 0)
        pad_width = max((math.ceil(width / self.stride[1]) - 1) * self.stride[1] +
                        (kernel_width - 1) * self.dilation[1] + 1 - width, 0)
        if pad_height or pad_width:
            features = functional.pad(features, [pad_width // 2, pad_width - pad_width // 2,
                                                 pad_height // 2, pad_height - pad_height // 2])
        return functional.conv2d(features, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def use_same_padding_convs(net: nn.Module) -> None:
    """Swap the package's padding convolutions for SamePaddingConv2d (same weights, same state-dict keys)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and type(child).__name__.endswith("SamePadding"):
                conv = SamePaddingConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, 0,
                                         child.dilation, child.groups, child.bias is not None)
                conv.load_state_dict(child.state_dict())
                setattr(parent, name, conv)
