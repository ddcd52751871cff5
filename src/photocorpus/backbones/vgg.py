"""VGG19 in plain torch, loading torchvision-format state dicts (``features.0.weight`` ...).

Why: the MIRFLICKR-1M and many older photo-aesthetics papers use VGG fc6/fc7 activations
("fc1"/"fc2" here) as image descriptors; users who hold such weights can reproduce those features
without installing torchvision, which cannot live beside the pinned torch. No weights ship with
photocorpus (no run-time downloads), so the model is only as pretrained as the file you load.

The module layout copies torchvision's ``vgg19`` exactly (same ``nn.Sequential`` indices), which is
what makes ``load_state_dict(strict=True)`` work on its checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG19", "VGG19_CFG", "VGGOutput", "load_vgg19"]

# Channels per conv layer, "M" = 2x2 max-pool (torchvision's configuration "E").
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip


class VGGOutput(NamedTuple):
    fc1: torch.Tensor  # (N, 4096), after ReLU (a.k.a. fc6)
    fc2: torch.Tensor  # (N, 4096), after ReLU (a.k.a. fc7, the classic "deep feature")
    logits: torch.Tensor  # (N, num_classes) (a.k.a. fc8)


class VGG19(nn.Module):
    """VGG19 (no batch norm) returning ``VGGOutput(fc1, fc2, logits)`` from one pass.

    fc2 is taken after its ReLU, matching features extracted from Caffe's in-place ``relu7`` blob
    (e.g. the MIRFLICKR-1M fc7 release). Expects torchvision's ImageNet normalisation
    (``input_mean``/``input_std``) at 224x224; other sizes work via the adaptive 7x7 pool.
    """

    output_names: tuple[str, ...] = ("fc1", "fc2", "logits")
    input_size = 224
    input_mean = (0.485, 0.456, 0.406)
    input_std = (0.229, 0.224, 0.225)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        # Same indices as torchvision: 0 fc6, 3 fc7, 6 fc8 (ReLU/Dropout in between hold no weights).
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> VGGOutput:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        fc1 = F.relu(self.classifier[0](x))
        fc2 = F.relu(self.classifier[3](self.classifier[2](fc1)))
        logits = self.classifier[6](self.classifier[5](fc2))
        return VGGOutput(fc1, fc2, logits)


def load_vgg19(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> VGG19:
    """Build VGG19 sized to the checkpoint's classifier, load it strictly, return it in eval mode."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    num_classes = int(state["classifier.6.weight"].shape[0]) if "classifier.6.weight" in state else 1000
    with torch.device("meta"):  # skip random init of weights that are overwritten anyway
        model = VGG19(num_classes=num_classes)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
