"""EfficientNet-Lite0: loads the shipped checkpoint strictly and classifies real photos correctly."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from photocorpus import imagenet_labels as labels
from photocorpus.backbones import efficientnet_lite as eff
from photocorpus.image_preprocess import preprocess


@pytest.fixture(scope="module")
def model() -> eff.EfficientNetLite0:
    return eff.load_pretrained()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    arrays = [preprocess(Image.fromarray(getattr(skimage.data, n)())) for n in ("coffee", "chelsea")]
    return torch.from_numpy(np.stack(arrays))


def test_checkpoint_matches_architecture_exactly() -> None:
    state = torch.load(eff.weights_path(), map_location="cpu", weights_only=True)
    assert len(state) == 296
    model = eff.EfficientNetLite0()
    assert set(model.state_dict()) == set(state)
    for key, tensor in model.state_dict().items():
        assert tensor.shape == state[key].shape, key
    # depthwise kernel sizes and expand ratios read from the checkpoint agree with the stage table
    kernels = [state[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] for i in range(16)]
    assert kernels == [a.kernel for a in eff.BLOCK_ARGS for _ in range(a.repeats)]
    assert "_blocks.0._expand_conv.weight" not in state and "_blocks.1._expand_conv.weight" in state
    model.load_state_dict(state, strict=True)


def test_weights_sha256_is_the_file_hash() -> None:
    expected = hashlib.sha256(eff.weights_path().read_bytes()).hexdigest()
    assert eff.weights_sha256() == expected
    assert eff.weights_sha256(eff.weights_path()) == expected


def test_load_pretrained_is_in_eval_mode_with_tf_batchnorm(model: eff.EfficientNetLite0) -> None:
    assert not model.training
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 49 and all(m.eps == pytest.approx(1e-3) for m in bns)


def test_real_photos_are_classified(model: eff.EfficientNetLite0, photos: torch.Tensor) -> None:
    with torch.no_grad():
        features, logits = model(photos)
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)
    idx, probs = labels.topk(logits.numpy(), k=5)
    names = labels.imagenet_classes()
    assert idx[0, 0] == 967, [names[i] for i in idx[0]]  # coffee -> espresso
    assert probs[0, 0] > 0.5
    assert 281 <= idx[1, 0] <= 285, [names[i] for i in idx[1]]  # chelsea -> a domestic cat class
    assert set(idx[1, :3]) <= set(range(281, 286))


def test_logits_are_the_classifier_applied_to_returned_features(
    model: eff.EfficientNetLite0, photos: torch.Tensor
) -> None:
    with torch.no_grad():
        features, logits = model(photos)
        again = F.linear(features, model._fc.weight, model._fc.bias)
        alone = model(photos[1:])  # batch composition must not matter in eval mode
    torch.testing.assert_close(logits, again, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone[0], features[1:], rtol=1e-4, atol=1e-5)
    assert torch.all(features >= 0) and torch.all(features <= 6)  # pooled ReLU6 activations


@pytest.mark.parametrize(
    ("size", "kernel", "pads"),
    [
        (224, 3, (0, 1)),  # even input, stride 2: TF pads only right/bottom
        (28, 5, (1, 2)),
        (7, 3, (1, 1)),  # odd input: symmetric
        (15, 5, (2, 2)),
    ],
)
def test_same_padding_follows_tensorflow(size: int, kernel: int, pads: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = eff.Conv2dSame(2, 3, kernel, stride=2)
    x = torch.randn(1, 2, size, size)
    before, after = pads
    expected = F.conv2d(F.pad(x, [before, after, before, after]), conv.weight, stride=2)
    got = conv(x)
    assert got.shape[-1] == -(-size // 2)  # ceil(size / stride), as TF "SAME" promises
    torch.testing.assert_close(got, expected)


def test_stride_one_same_padding_keeps_size() -> None:
    conv = eff.Conv2dSame(2, 2, 5, stride=1, groups=2)
    x = torch.randn(1, 2, 14, 14)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, padding=2, groups=2))
