"""ResNet50 in plain torch, loading torchvision-format state dicts (``conv1.weight``, ``layer1.0...``).

Why: ResNet50 pooled features are the common baseline in image-retrieval and dataset papers; users
with torchvision (or converted Caffe/Keras) weights can reproduce them without torchvision, which
cannot be installed beside the pinned torch. No weights ship with photocorpus.

Attribute names and layout copy torchvision's ``resnet50`` (v1.5: stride on the 3x3 conv of each
bottleneck), so ``load_state_dict(strict=True)`` accepts its checkpoints unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RESNET50_LAYERS", "Bottleneck", "ResNet50", "load_resnet50"]

RESNET50_LAYERS = (3, 4, 6, 3)  # bottleneck blocks per stage
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, plus identity or projection shortcut."""

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_ch = width * EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet50 returning ``(pooled_features[N, 2048], logits[N, num_classes])`` in one pass.

    Expects torchvision's ImageNet normalisation (``input_mean``/``input_std``), 224x224 nominal.
    """

    output_names: tuple[str, ...] = ("features", "logits")
    input_size = 224
    input_mean = (0.485, 0.456, 0.406)
    input_std = (0.229, 0.224, 0.225)

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        stages = []
        for i, blocks in enumerate(RESNET50_LAYERS):
            width = 64 * 2**i
            stride = 1 if i == 0 else 2
            downsample = nn.Sequential(
                nn.Conv2d(in_ch, width * EXPANSION, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width * EXPANSION),
            )
            layer = [Bottleneck(in_ch, width, stride, downsample)]
            in_ch = width * EXPANSION
            layer += [Bottleneck(in_ch, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = x.mean(dim=(2, 3))
        return features, self.fc(features)


def load_resnet50(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ResNet50:
    """Build ResNet50 sized to the checkpoint's ``fc``, load it strictly, return it in eval mode."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
    with torch.device("meta"):  # skip random init of weights that are overwritten anyway
        model = ResNet50(num_classes=num_classes)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
