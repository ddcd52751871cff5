"""Fine-tune the last blocks of EfficientNet-Lite0 together with a classifier head.

Why only the last blocks: on a CPU, back-propagating through the whole network over a corpus is
impractical, and the last blocks are where ImageNet-specific features live. The frozen trunk (stem
and all but the last ``blocks`` MBConv blocks) is run once per photo; its activations (7 × 7 maps,
float16) are kept in memory, and the tail (last blocks, 1×1 head conv, BN, pooling) plus the head
train on them for many epochs at the cost of the tail alone. Batch-norm statistics stay frozen:
with small weak-label sets, re-estimated statistics hurt more than they help.

A saved fine-tuned classifier stores the tail and head weights; the trunk is the packaged
checkpoint, whose sha256 is recorded and checked on load. Predicting needs the image files (the
stored features are those of the original network).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from photocorpus.corpus_files import ImageLocation, image_input
from photocorpus.learn.dataset import LearnError
from photocorpus.learn.heads import FeatureHead

if TYPE_CHECKING:
    from photocorpus.backbones.efficientnet_lite import EfficientNetLite0
    from photocorpus.interrupt import StopFlag

MAX_BLOCKS = 5  # the last five blocks all work on 7 × 7 maps (and 112 / 192 channels in)
TAIL_LR_SCALE = 0.1


def load_base() -> tuple[EfficientNetLite0, str]:
    """The packaged ImageNet EfficientNet-Lite0 and its weights' sha256."""
    from photocorpus.backbones.efficientnet_lite import load_pretrained, weights_sha256

    return load_pretrained(), weights_sha256()


class TailNet(nn.Module):
    """The last ``blocks`` blocks of a base network, its head conv/BN/pool, then a classifier head."""

    def __init__(self, base: EfficientNetLite0, blocks: int, head: FeatureHead) -> None:
        super().__init__()
        if not 1 <= blocks <= MAX_BLOCKS:
            raise LearnError(f"finetune_blocks must be between 1 and {MAX_BLOCKS}, got {blocks}")
        self.n_blocks = blocks
        self.blocks = nn.ModuleList(list(base._blocks)[-blocks:])
        self.conv_head = base._conv_head
        self.bn_head = base._bn1
        self.head = head

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return F.relu6(self.bn_head(self.conv_head(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x.float()))

    def train(self, mode: bool = True) -> TailNet:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()  # frozen statistics (see the module docstring)
        return self


def trunk(base: EfficientNetLite0, blocks: int, x: torch.Tensor) -> torch.Tensor:
    """Stem and the frozen blocks: the tail's input."""
    x = F.relu6(base._bn0(base._conv_stem(x)))
    for block in list(base._blocks)[:-blocks]:
        x = block(x)
    return x


def trunk_activations(
    base: EfficientNetLite0,
    blocks: int,
    paths: Sequence[Path | ImageLocation],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """float16 tail inputs of the readable images, a mask of which were read, and errors by position."""
    from photocorpus.image_preprocess import preprocess_batch

    base.eval()
    parts: list[np.ndarray] = []
    ok = np.zeros(len(paths), dtype=bool)
    errors: dict[int, str] = {}
    for start in range(0, len(paths), batch_size):
        chunk = [image_input(p) for p in paths[start : start + batch_size]]  # local: the path itself
        batch = preprocess_batch(chunk)
        for pos, message in batch.errors.items():
            errors[start + pos] = message
        if len(batch.pixels):
            with torch.inference_mode():
                acts = trunk(base, blocks, torch.from_numpy(batch.pixels))
            parts.append(acts.numpy().astype(np.float16))
            ok[[start + i for i in batch.indices]] = True
        if progress is not None:
            progress(len(chunk))
        if stop:
            raise LearnError("interrupted while reading images; nothing was saved")
    if not parts:
        return np.zeros((0, 1, 1, 1), np.float16), ok, errors
    return np.concatenate(parts), ok, errors


def pooled_features(tail: TailNet, acts: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The tail's pooled 1280-d features (before the head), e.g. to fit the head's standardiser."""
    tail.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(acts), batch_size):
            outs.append(tail.pooled(torch.from_numpy(acts[start : start + batch_size]).float()).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1280), np.float32)


def param_groups(tail: TailNet, learning_rate: float) -> list[dict[str, Any]]:
    """The tail learns ten times slower than the head: it starts from good ImageNet weights."""
    tail_params = [p for name, p in tail.named_parameters() if not name.startswith("head.")]
    return [
        {"params": tail_params, "lr": learning_rate * TAIL_LR_SCALE},
        {"params": list(tail.head.parameters()), "lr": learning_rate},
    ]


class FinetunedNet:
    """A reloaded fine-tuned classifier: logits for image files (trunk -> tail -> head)."""

    def __init__(self, info: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        base, digest = load_base()
        expected = info["finetune"]["weights_sha256"]
        if digest != expected:
            raise LearnError(
                "the packaged EfficientNet-Lite0 weights changed since this classifier was fine-tuned; "
                "train it again"
            )
        self.blocks = int(info["finetune"]["blocks"])
        self.base = base
        self.tail = TailNet(base, self.blocks, FeatureHead.from_spec(info["head"]))
        self.tail.load_state_dict(state, strict=True)
        self.tail.eval()

    def logits_for_files(
        self, paths: Sequence[Path | ImageLocation]
    ) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        acts, ok, errors = trunk_activations(self.base, self.blocks, paths)
        from photocorpus.learn.heads import predict_batched

        return predict_batched(self.tail, acts, batch_size=256), ok, errors
