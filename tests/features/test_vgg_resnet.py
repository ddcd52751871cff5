"""VGG19 / ResNet50: strict loading of torchvision-format checkpoints and correct output wiring.

No pretrained weights exist offline, so the checkpoints are random tensors saved under the standard
torchvision parameter names, which are listed here independently of the model code.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from photocorpus.backbones.resnet import load_resnet50
from photocorpus.backbones.vgg import load_vgg19

# torchvision vgg19: (index in `features`, in_channels, out_channels) of each 3x3 conv.
VGG19_CONVS = [
    (0, 3, 64), (2, 64, 64),
    (5, 64, 128), (7, 128, 128),
    (10, 128, 256), (12, 256, 256), (14, 256, 256), (16, 256, 256),
    (19, 256, 512), (21, 512, 512), (23, 512, 512), (25, 512, 512),
    (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512),
]  # fmt: skip
VGG19_POOL_AFTER = {2, 7, 16, 25, 34}  # max-pool follows these conv indices
VGG19_FCS = [(0, 25088, 4096), (3, 4096, 4096), (6, 4096, 1000)]


def vgg19_spec() -> dict[str, tuple[int, ...]]:
    spec: dict[str, tuple[int, ...]] = {}
    for idx, cin, cout in VGG19_CONVS:
        spec[f"features.{idx}.weight"] = (cout, cin, 3, 3)
        spec[f"features.{idx}.bias"] = (cout,)
    for idx, fin, fout in VGG19_FCS:
        spec[f"classifier.{idx}.weight"] = (fout, fin)
        spec[f"classifier.{idx}.bias"] = (fout,)
    return spec


def _bn_spec(prefix: str, ch: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (ch,),
        f"{prefix}.bias": (ch,),
        f"{prefix}.running_mean": (ch,),
        f"{prefix}.running_var": (ch,),
        f"{prefix}.num_batches_tracked": (),
    }


def resnet50_spec(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    spec: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_bn_spec("bn1", 64)}
    cin = 64
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            spec[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            spec.update(_bn_spec(f"{p}.bn1", width))
            spec[f"{p}.conv2.weight"] = (width, width, 3, 3)
            spec.update(_bn_spec(f"{p}.bn2", width))
            spec[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            spec.update(_bn_spec(f"{p}.bn3", width * 4))
            if b == 0:
                spec[f"{p}.downsample.0.weight"] = (width * 4, cin, 1, 1)
                spec.update(_bn_spec(f"{p}.downsample.1", width * 4))
            cin = width * 4
    spec["fc.weight"] = (num_classes, 2048)
    spec["fc.bias"] = (num_classes,)
    return spec


def random_state(spec: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """He-scaled random weights and plausible BN statistics, so activations stay O(1) through depth."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in spec.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", ".bias")) or (
            len(shape) == 1 and "bn" not in key and "downsample" not in key
        ):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:  # BN gamma
            state[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
        else:
            bound = math.sqrt(6.0 / math.prod(shape[1:]))  # He-uniform; uniform_ is much faster than randn
            state[key] = torch.empty(shape).uniform_(-bound, bound, generator=g)
    return state


def test_parameter_counts_match_torchvision() -> None:
    # Published torchvision parameter counts (num_batches_tracked excluded).
    def count(spec: dict[str, tuple[int, ...]]) -> int:
        return sum(
            math.prod(s)
            for k, s in spec.items()
            if not k.endswith(("running_mean", "running_var", "tracked"))
        )

    assert count(vgg19_spec()) == 143_667_240
    assert count(resnet50_spec()) == 25_557_032


@pytest.fixture(scope="module")
def vgg_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state(vgg19_spec(), seed=1)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path, state


def vgg19_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    for idx, _, _ in VGG19_CONVS:
        x = F.relu(F.conv2d(x, state[f"features.{idx}.weight"], state[f"features.{idx}.bias"], padding=1))
        if idx in VGG19_POOL_AFTER:
            x = F.max_pool2d(x, 2, 2)
    x = F.adaptive_avg_pool2d(x, (7, 7)).flatten(1)
    fc1 = F.relu(F.linear(x, state["classifier.0.weight"], state["classifier.0.bias"]))
    fc2 = F.relu(F.linear(fc1, state["classifier.3.weight"], state["classifier.3.bias"]))
    logits = F.linear(fc2, state["classifier.6.weight"], state["classifier.6.bias"])
    return fc1, fc2, logits


def test_vgg19_loads_torchvision_keys_and_wires_fc_layers(
    vgg_checkpoint: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, state = vgg_checkpoint
    model = load_vgg19(path)
    assert not model.training
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == vgg19_spec()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
        ref = vgg19_reference(state, x)
    assert out.fc1.shape == (2, 4096) and out.fc2.shape == (2, 4096) and out.logits.shape == (2, 1000)
    for got, expected in zip(out, ref, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert out.fc2.abs().sum() > 0 and out.fc1.min() >= 0 and out.fc2.min() >= 0
    assert model.output_names == ("fc1", "fc2", "logits")


def test_vgg19_refuses_incomplete_checkpoints(tmp_path: Path) -> None:
    # only the classifier: a small file, and every conv key missing
    state = {k: torch.zeros(s) for k, s in vgg19_spec().items() if k.startswith("classifier.6")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*features\.0\.weight"):
        load_vgg19(tmp_path / "partial.pth")


def resnet50_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        mean, var = state[f"{p}.running_mean"], state[f"{p}.running_var"]
        return F.batch_norm(t, mean, var, state[f"{p}.weight"], state[f"{p}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, blocks in enumerate([3, 4, 6, 3], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            stride = 2 if (b == 0 and stage > 1) else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, state[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            if b == 0:
                x = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + x)
    pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return pooled, F.linear(pooled, state["fc.weight"], state["fc.bias"])


@pytest.mark.parametrize("num_classes", [1000, 10])
def test_resnet50_loads_torchvision_keys_and_matches_reference(tmp_path: Path, num_classes: int) -> None:
    spec = resnet50_spec(num_classes)
    state = random_state(spec, seed=num_classes)
    torch.save(state, tmp_path / "resnet50.pth")
    model = load_resnet50(tmp_path / "resnet50.pth")
    assert not model.training
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == spec
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features, logits = model(x)
        ref_features, ref_logits = resnet50_reference(state, x)
    assert features.shape == (2, 2048) and logits.shape == (2, num_classes)
    torch.testing.assert_close(features, ref_features, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_resnet50_refuses_foreign_checkpoints(tmp_path: Path) -> None:
    """Mis-shaped or unknown tensors (another architecture) must fail loudly, not half-load."""
    state = random_state(resnet50_spec(), seed=3)
    bad_shape = {**state, "layer1.0.conv2.weight": torch.zeros(64, 64, 1, 1)}
    torch.save(bad_shape, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match=r"size mismatch for layer1\.0\.conv2\.weight"):
        load_resnet50(tmp_path / "bad.pth")
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*layer5"):
        load_resnet50(tmp_path / "extra.pth")
