"""Small torch heads on frozen image features, and the one training loop they all use.

Why heads on frozen features: a pass of EfficientNet-Lite0 over a corpus is the expensive part and
the featurize stage already stored it; a linear or one-hidden-layer head trains in seconds on a CPU
and is what the linear-probe literature (and the paper's frozen-CNN variant) measures. The feature
standardisation is part of the module (buffers), so a saved head carries everything it needs.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from photocorpus.interrupt import StopFlag

HEAD_KINDS = ("linear", "mlp")


class FeatureHead(nn.Module):
    """``standardise -> linear`` or ``standardise -> linear -> GELU -> dropout -> linear``."""

    def __init__(
        self, in_dim: int, out_dim: int, kind: str = "linear", hidden: int = 1024, dropout: float = 0.2
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head must be one of {HEAD_KINDS}, not {kind!r}")
        self.spec = {"kind": kind, "in_dim": in_dim, "out_dim": out_dim, "hidden": hidden, "dropout": dropout}
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("inv_std", torch.ones(in_dim))
        self.net: nn.Module
        if kind == "linear":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
            )

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureHead:
        return cls(
            int(spec["in_dim"]),
            int(spec["out_dim"]),
            str(spec["kind"]),
            int(spec.get("hidden", 1024)),
            float(spec.get("dropout", 0.2)),
        )

    def fit_standardiser(self, x: np.ndarray) -> None:
        """Per-dimension mean and 1/std of the training features (constant dims keep scale 1)."""
        x64 = np.asarray(x, dtype=np.float64)
        std = x64.std(axis=0)
        self.mean.copy_(torch.from_numpy(x64.mean(axis=0)).float())
        self.inv_std.copy_(torch.from_numpy(np.where(std > 1e-6, 1.0 / np.maximum(std, 1e-6), 1.0)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) * self.inv_std)


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 200
    patience: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class FitResult:
    best_epoch: int = 0
    epochs_run: int = 0
    best_val_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def summary(self, masks: dict[str, np.ndarray]) -> dict[str, Any]:
        """The training part of a model's saved metrics (every model kind reports the same keys)."""
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "best_val_loss": self.best_val_loss,
            "train_seconds": round(self.seconds, 2),
            "interrupted": self.interrupted,
            "photos": {s: int(m.sum()) for s, m in masks.items()},
        }


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def predict_batched(module: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Run ``module`` in eval mode over ``x`` in batches; float32 numpy out."""
    module.eval()
    outs: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
            outs.append(module(xb).numpy())
    if not outs:
        spec = getattr(module, "spec", None) or getattr(getattr(module, "head", None), "spec", {})
        return np.zeros((0, int(spec.get("out_dim", 0))), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)


def _mean_loss(module: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    module.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            total += float(loss_fn(module(xb), yb)) * len(xb)
            count += len(xb)
    return total / max(count, 1)


def fit(
    module: nn.Module,
    loss_fn: LossFn,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: FitSettings,
    *,
    params: list[Any] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    stop: StopFlag | None = None,
) -> FitResult:
    """AdamW on shuffled mini-batches; keep the weights of the epoch with the lowest val loss.

    Stops after ``patience`` epochs without improvement, at ``epochs``, or between epochs when
    ``stop`` is set (the best weights so far are kept, so an interrupted run still yields a model).
    Seeded: same data and settings give the same weights.
    """
    started = time.perf_counter()
    result = FitResult()
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y_train))
    xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
    yv = torch.from_numpy(np.ascontiguousarray(y_val))
    # params: parameters, or AdamW parameter groups (dicts with their own lr)
    trainable = params if params is not None else [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    best_state = copy.deepcopy(module.state_dict())
    since_best = 0
    for epoch in range(1, settings.epochs + 1):
        module.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # a batch of one breaks batch statistics (and InfoNCE) for nothing
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(module(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        train_loss = total / max(len(order), 1)
        val_loss = _mean_loss(module, loss_fn, xv, yv, settings.batch_size)
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        result.epochs_run = epoch
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if val_loss < result.best_val_loss - 1e-6:
            result.best_val_loss, result.best_epoch, since_best = val_loss, epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            since_best += 1
        if since_best >= settings.patience:
            break
        if stop:
            result.interrupted = True
            break
    module.load_state_dict(best_state)
    module.eval()
    result.seconds = time.perf_counter() - started
    return result
