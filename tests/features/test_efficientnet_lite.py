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


def test_lite0_keeps_the_unscaled_b0_table_and_224_input() -> None:
    # Lite0's network (and so its features and every cached set) must not change with the generalisation
    assert eff.stage_table(1.0, 1.0) == eff.BLOCK_ARGS
    assert eff.EfficientNetLite0().input_size == 224
    assert eff.build("efficientnet-lite0").stages == eff.BLOCK_ARGS


@pytest.mark.parametrize(
    ("name", "blocks", "last_ch", "stage_outs"),
    [
        ("efficientnet-lite1", 21, 320, [16, 24, 40, 80, 112, 192, 320]),
        ("efficientnet-lite2", 21, 352, [16, 24, 48, 88, 120, 208, 352]),
    ],
)
def test_scaled_lite_matches_its_checkpoint_and_loads_strictly(
    name: str, blocks: int, last_ch: int, stage_outs: list[int]
) -> None:
    """Compound scaling (round_filters, ceil repeats, fixed stem/head/first/last stage) reproduces the
    shipped state dicts' every key and shape, so ``strict=True`` holds."""
    state = torch.load(eff.weights_path(name), map_location="cpu", weights_only=True)
    model = eff.build(name)
    assert [a.out_ch for a in model.stages] == stage_outs
    assert sum(a.repeats for a in model.stages) == blocks
    assert set(model.state_dict()) == set(state)
    for key, tensor in model.state_dict().items():
        assert tensor.shape == state[key].shape, key
    assert state["_conv_stem.weight"].shape[0] == 32
    assert state["_conv_head.weight"].shape[:2] == (1280, last_ch)
    kernels = [state[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] for i in range(blocks)]
    assert kernels == [a.kernel for a in model.stages for _ in range(a.repeats)]
    loaded = eff.load_pretrained(name=name)  # strict=True inside
    assert not loaded.training
    torch.testing.assert_close(loaded._fc.weight, state["_fc.weight"])


@pytest.mark.parametrize(("name", "size"), [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_scaled_lite_sees_espresso_in_torch_and_onnx(
    name: str, size: int, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from photocorpus.backbones import onnx_runtime as ox
    from photocorpus.image_preprocess import resize_center_crop, resize_size_for

    model = eff.load_pretrained(name=name)
    assert model.input_size == size
    crop = np.asarray(resize_center_crop(Image.fromarray(skimage.data.coffee()), resize_size_for(size), size))
    assert crop.shape == (size, size, 3)
    x = torch.from_numpy(preprocess(Image.fromarray(skimage.data.coffee()), resize_size_for(size), size))
    with torch.no_grad():
        features, logits = model(x[None])
    assert features.shape == (1, 1280) and logits.shape == (1, 1000)
    espresso = labels.imagenet_classes().index("espresso")
    idx, _ = labels.topk(logits.numpy(), k=5)
    assert espresso in idx[0]

    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(tmp_path))
    path = ox.ensure_efficientnet_lite_onnx(name)
    assert name.replace("-", "_") in path.name  # the variants never share a cached export
    runner = ox.OnnxImageModel(path, num_threads=1)
    assert runner.input_size == size
    onnx_features, onnx_logits = runner.run(crop[None])
    onnx_idx, _ = labels.topk(onnx_logits, k=5)
    assert espresso in onnx_idx[0]
    np.testing.assert_allclose(onnx_features, features.numpy(), atol=2e-3)
