"""ONNX export cache and onnxruntime inference vs eager torch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import skimage.data
import torch
from PIL import Image

from photocorpus.backbones import efficientnet_lite as eff
from photocorpus.backbones import onnx_runtime as ox
from photocorpus.image_preprocess import normalize, preprocess, resize_center_crop


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One export per test session, in a private cache folder (never the user's real cache)."""
    root = tmp_path_factory.mktemp("photocorpus-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOCORPUS_CACHE_DIR", str(root))
        ox.ensure_efficientnet_lite0_onnx()
        yield root


@pytest.fixture(scope="module")
def onnx_model(onnx_cache: Path) -> ox.OnnxImageModel:
    return ox.OnnxImageModel.efficientnet_lite0(num_threads=2)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """uint8 224x224 centre crops of real photos, NHWC."""
    names = ("coffee", "chelsea", "astronaut", "rocket")
    return np.stack(
        [np.asarray(resize_center_crop(Image.fromarray(getattr(skimage.data, n)()))) for n in names]
    )


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(tmp_path / "pc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ox.cache_dir() == tmp_path / "pc" / "onnx"
    monkeypatch.delenv("PHOTOCORPUS_CACHE_DIR")
    assert ox.cache_dir() == tmp_path / "xdg" / "photocorpus" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ox.cache_dir() == tmp_path / "home" / ".cache" / "photocorpus" / "onnx"


def test_export_is_cached_under_weights_hash(onnx_cache: Path) -> None:
    digest = hashlib.sha256(eff.weights_path().read_bytes()).hexdigest()
    path = ox.ensure_efficientnet_lite0_onnx()
    assert path.parent == onnx_cache / "onnx"
    assert digest in path.name and f"v{ox.CODE_VERSION}" in path.name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    mtime = path.stat().st_mtime_ns

    def must_not_build(_: Path) -> torch.nn.Module:
        raise AssertionError("a cached export must not be rebuilt")

    assert ox.ensure_onnx("efficientnet_lite0", eff.weights_path(), must_not_build) == path
    assert path.stat().st_mtime_ns == mtime


def test_onnx_matches_eager_torch_on_real_photos(onnx_model: ox.OnnxImageModel, crops: np.ndarray) -> None:
    x = normalize(crops)
    features, logits = onnx_model.run(x)
    with torch.no_grad():
        ref_features, ref_logits = eff.load_pretrained()(torch.from_numpy(x))
    assert features.dtype == logits.dtype == np.float32
    assert features.shape == (4, 1280) and logits.shape == (4, 1000)
    for got, ref in ((features, ref_features.numpy()), (logits, ref_logits.numpy())):
        assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    np.testing.assert_array_equal(logits.argmax(1), ref_logits.numpy().argmax(1))
    assert logits[0].argmax() == 967  # coffee -> espresso through the ONNX path too


def test_uint8_and_float_inputs_agree(onnx_model: ox.OnnxImageModel, crops: np.ndarray) -> None:
    f_float, l_float = onnx_model.run(normalize(crops))
    f_nhwc, l_nhwc = onnx_model.run(crops)
    f_nchw, _ = onnx_model.run(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(f_nhwc, f_float, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l_nhwc, l_float, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_nchw, f_float, rtol=1e-5, atol=1e-5)
    single_f, _ = onnx_model.run(crops[1])
    np.testing.assert_allclose(single_f[0], f_float[1], rtol=1e-4, atol=1e-5)
    from_path_like = preprocess(Image.fromarray(skimage.data.coffee()))
    np.testing.assert_allclose(onnx_model.run(from_path_like)[1][0], l_float[0], rtol=1e-4, atol=1e-4)


def test_dynamic_batch_axis(onnx_model: ox.OnnxImageModel, crops: np.ndarray) -> None:
    x = normalize(crops)
    big = np.concatenate([x, x[:3]])
    features, logits = onnx_model.run(big)
    assert features.shape == (7, 1280) and logits.shape == (7, 1000)
    np.testing.assert_allclose(features[4:], features[:3], rtol=1e-4, atol=1e-5)
    empty_f, empty_l = onnx_model.run(x[:0])
    assert empty_f.shape == (0, 1280) and empty_l.shape == (0, 1000)


def test_rejects_wrong_shapes_and_dtypes(onnx_model: ox.OnnxImageModel) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, 224, 224\)"):
        onnx_model.run(np.zeros((1, 3, 256, 256), np.float32))
    with pytest.raises(ValueError):
        onnx_model.run(np.zeros((1, 224, 224, 3), np.float32))  # floats must already be NCHW
    with pytest.raises(TypeError, match="dtype"):
        onnx_model.run(np.zeros((1, 3, 224, 224), np.int32))


def test_session_threads_and_providers(onnx_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ox.OnnxImageModel(ox.ensure_efficientnet_lite0_onnx(), num_threads=1)
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert model.providers[-1] == "CPUExecutionProvider"
    assert ox.default_num_threads() >= 1
    assert ox.OnnxImageModel(ox.ensure_efficientnet_lite0_onnx()).num_threads == ox.default_num_threads()
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider", "CUDAExecutionProvider"]
    )
    assert ox.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


class _Tiny(torch.nn.Module):
    """Three outputs and torchvision-style normalisation, to exercise the generic export path."""

    output_names = ("a", "features", "logits")
    input_size = 32
    input_mean = (0.485, 0.456, 0.406)
    input_std = (0.229, 0.224, 0.225)

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.conv(x)
        pooled = a.mean(dim=(2, 3))
        return a, pooled, self.fc(pooled)


def test_generic_export_keeps_output_names_and_normalisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    tiny = _Tiny().eval()
    weights = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), weights)
    path = ox.ensure_onnx("tiny", weights, lambda _: tiny)
    model = ox.OnnxImageModel(path, num_threads=1)
    assert model.output_names == ["a", "features", "logits"]
    assert model.input_size == 32 and model.input_std == _Tiny.input_std

    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    features, logits = model.run(pixels)  # uint8 is normalised with the model's own statistics
    with torch.no_grad():
        _, ref_features, ref_logits = tiny(
            torch.from_numpy(normalize(pixels, _Tiny.input_mean, _Tiny.input_std))
        )
    np.testing.assert_allclose(features, ref_features.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=1e-5, atol=1e-5)
    assert model.run_all(pixels)["a"].shape == (2, 4, 30, 30)

    weights.write_bytes(weights.read_bytes() + b"\0")  # different weights -> different cache entry
    assert ox.ensure_onnx("tiny", weights, lambda _: tiny) != path


class _Broken(_Tiny):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise RuntimeError("boom")


def test_failed_export_leaves_no_partial_files(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "broken.onnx"
    with pytest.raises(RuntimeError, match="boom"):
        ox.export_onnx(_Broken(), dest, output_names=_Broken.output_names, input_size=32)
    assert list(dest.parent.iterdir()) == []


def test_cached_export_runs_without_importing_torch(onnx_cache: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from photocorpus.backbones.onnx_runtime import OnnxImageModel\n"
        "m = OnnxImageModel.efficientnet_lite0(num_threads=1)\n"
        "f, l = m.run(np.zeros((1, 224, 224, 3), np.uint8))\n"
        "assert f.shape == (1, 1280) and l.shape == (1, 1000)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PHOTOCORPUS_CACHE_DIR": str(onnx_cache)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_tf_same_pads_are_folded_into_the_convolutions(onnx_cache: Path, tmp_path: Path) -> None:
    """The cached export has no Pad node left (each stride-2 TF-SAME pad became the conv's asymmetric
    ``pads``), and it computes exactly what the unfolded graph torch exported computes."""
    import onnx

    folded = onnx.load(str(ox.ensure_efficientnet_lite0_onnx()))
    ops = [n.op_type for n in folded.graph.node]
    assert "Pad" not in ops and ops.count("Conv") == 49
    asymmetric = [
        list(a.ints)
        for n in folded.graph.node
        if n.op_type == "Conv"
        for a in n.attribute
        if a.name == "pads" and list(a.ints[:2]) != list(a.ints[2:])
    ]
    assert len(asymmetric) == 5 and all(p[2] - p[0] == 1 for p in asymmetric)  # the extra pixel bottom/right

    raw = tmp_path / "raw.onnx"  # torch's own export, before folding
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            eff.load_pretrained().eval(),
            (torch.zeros(1, 3, 224, 224),),
            str(raw),
            input_names=[ox.INPUT_NAME],
            opset_version=ox.OPSET,
            dynamo=False,
        )
    assert "Pad" in [n.op_type for n in onnx.load(str(raw)).graph.node]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    run = {}
    for name, proto in (("raw", str(raw)), ("folded", folded.SerializeToString())):
        session = onnxruntime.InferenceSession(proto, providers=["CPUExecutionProvider"])
        run[name] = session.run(None, {ox.INPUT_NAME: x})
    for a, b in zip(run["raw"], run["folded"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
