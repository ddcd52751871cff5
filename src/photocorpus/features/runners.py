"""The model, loaded and run on a batch: onnxruntime, torch or raw pixels behind one small interface.

:func:`make_runner` loads the model wherever inference happens (the driver, a local inference
worker, a Ray actor) and :func:`infer_batch` is the step every executor runs on a decoded batch, so
that all of them produce the same rows; :class:`Inferred` is what comes back to the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from photocorpus.features.backends import choose_backend
from photocorpus.features.decode import Decoded
from photocorpus.features.model_registry import ImageModelSpec
from photocorpus.features.pca import Pca
from photocorpus.features.weights import build_network, onnx_path

__all__ = [
    "CPU_INFER_CHUNK",
    "Inferred",
    "OnnxRunner",
    "RawPixelsRunner",
    "Runner",
    "TorchRunner",
    "infer_batch",
    "join_inferred",
    "make_runner",
]

# Images per onnxruntime call on the CPU. One image's activations stay in the caches, which makes
# EfficientNet-Lite0 about 12 % cheaper per image than batches of 32 (2 cores, one thread: 59 against
# 52 img/s; docs/benchmarks.md). On a GPU whole batches go in one call.
CPU_INFER_CHUNK = 1


class Runner(Protocol):
    """A loaded model: uint8 crops (or raw-pixel vectors) in, float32 outputs by output name out."""

    backend: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class OnnxRunner:
    """onnxruntime session (CUDA provider first when this onnxruntime build has it).

    With decode workers on the same cores, onnxruntime's idle threads must not spin-wait: spinning
    burns the CPU the workers need (on 2 cores: ~15 % more img/s and ~18 % less CPU per image).
    """

    def __init__(self, model_file: Path, threads: int, *, share_cores: bool) -> None:
        from photocorpus.backbones.onnx_runtime import OnnxImageModel

        config = {"session.intra_op.allow_spinning": "0"} if share_cores else None
        self.model = OnnxImageModel(model_file, num_threads=threads, session_config=config)
        self.backend = f"onnxruntime/{self.model.providers[0]}"
        on_cpu = self.model.providers[0] == "CPUExecutionProvider"
        self.chunk = CPU_INFER_CHUNK if on_cpu else 0

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self.chunk or len(batch) <= self.chunk:
            return self.model.run_all(batch)
        parts = [self.model.run_all(batch[i : i + self.chunk]) for i in range(0, len(batch), self.chunk)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class TorchRunner:
    """Eager torch, on CUDA when available: uint8 crops go to the device and are normalised there."""

    def __init__(self, model: Any, device: str, threads: int) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        else:
            # Full float32 on the GPU, so that features do not depend on the device: cuDNN's default
            # TF32 convolutions moved features by up to 0.03 and flipped 0.2 % of top-1 labels against
            # the CPU (H200, 1,500 photos). This small net stays decode-bound either way.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.torch = torch
        self.model = model
        self.device = device
        self.output_names: tuple[str, ...] = tuple(model.output_names)
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(model.input_mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(model.input_std, dtype=torch.float32, device=device).view(shape)
        self.backend = f"torch/{device}"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(self.mean).div_(self.std)
        with torch.inference_mode():
            outputs = self.model(x)
        return {name: out.float().cpu().numpy() for name, out in zip(self.output_names, outputs, strict=True)}


class RawPixelsRunner:
    """Identity on raw-pixel vectors, or their projection on a stored PCA basis."""

    backend = "numpy"

    def __init__(self, pca: Pca | None) -> None:
        self.pca = pca

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(batch, dtype=np.float32)
        return {"pixels": self.pca.transform(x) if self.pca else x}


def make_runner(
    spec: ImageModelSpec,
    weights: Path | None,
    backend: str,
    threads: int,
    *,
    share_cores: bool,
    pca: Pca | None = None,
) -> Runner:
    """The model, loaded: in the driver, in a local inference worker or once per Ray actor."""
    if spec.name == "raw-pixels":
        return RawPixelsRunner(pca)
    chosen, device = choose_backend(backend)
    if chosen == "onnx":
        return OnnxRunner(onnx_path(spec, weights), threads, share_cores=share_cores)
    return TorchRunner(build_network(spec, weights, device), device, threads)


@dataclass(slots=True)
class Inferred:
    """One batch after inference: model outputs of the decodable photos, and the failures."""

    ids: np.ndarray  # int64 ids of the rows of ``outputs``
    outputs: dict[str, np.ndarray] | None  # model output name -> (len(ids), D) float32
    failures: list[Decoded]
    size: int  # photos in the batch


def join_inferred(parts: list[Inferred]) -> Inferred:
    """One :class:`Inferred` for a batch whose shards ran separately (rows in shard order)."""
    if len(parts) == 1:
        return parts[0]
    with_rows = [p for p in parts if p.outputs is not None]
    outputs = (
        {name: np.concatenate([p.outputs[name] for p in with_rows]) for name in with_rows[0].outputs}  # type: ignore[index]
        if with_rows
        else None
    )
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return Inferred(ids, outputs, [f for p in parts for f in p.failures], sum(p.size for p in parts))


def infer_batch(runner: Runner, decoded: list[Decoded]) -> Inferred:
    """Run the model on the decodable photos of a batch: the step shared by every executor."""
    ok = [d for d in decoded if d.pixels is not None]
    failures = [d for d in decoded if d.pixels is None]
    ids = np.array([d.photo_id for d in ok], dtype=np.int64)
    outputs = runner.run(np.stack([d.pixels for d in ok])) if ok else None  # type: ignore[misc]
    return Inferred(ids, outputs, failures, len(decoded))
