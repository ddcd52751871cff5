"""Which inference backend a featurize run gets: onnxruntime or torch, on a GPU or the CPU.

``auto`` prefers onnxruntime's CUDA provider, then torch on CUDA, then onnxruntime on the CPU (the
fastest CPU path: eager torch ran EfficientNet-Lite0 four to five times slower per image on the same
core, docs/benchmarks.md). The GPU checks are cheap first: importing torch only to ask whether CUDA is
there costs about a second, so a machine without an NVIDIA driver never pays it.
"""

from __future__ import annotations

from pathlib import Path

from photocorpus.features.model_registry import FeaturizeError

__all__ = ["choose_backend", "nvidia_gpu_present", "onnx_on_cpu", "torch_cuda_available"]


def nvidia_gpu_present() -> bool:
    """Cheap check before importing torch just to ask ``cuda.is_available()`` (about a second)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def torch_cuda_available() -> bool:
    """Whether torch can run on a CUDA device (False without asking torch when no NVIDIA GPU shows)."""
    if not nvidia_gpu_present():
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def choose_backend(requested: str) -> tuple[str, str]:
    """``(backend, torch device)``. auto: onnxruntime's CUDA provider, else torch CUDA, else ORT CPU."""
    if requested not in ("auto", "onnx", "torch"):
        raise FeaturizeError(f"unknown backend {requested!r}; use auto, onnx or torch")
    if requested == "onnx":
        return "onnx", "cpu"
    if requested == "torch":
        return "torch", "cuda" if torch_cuda_available() else "cpu"
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "onnx", "cpu"
    if torch_cuda_available():
        return "torch", "cuda"
    return "onnx", "cpu"


def onnx_on_cpu(requested: str) -> bool:
    """Whether ``requested`` resolves to onnxruntime on the CPU: the provider an ``OnnxRunner`` gets."""
    from photocorpus.backbones.onnx_runtime import default_providers

    chosen, _ = choose_backend(requested)
    return chosen == "onnx" and default_providers()[0] == "CPUExecutionProvider"
