"""Deployable file formats on a tiny unified model: every family at once, real converters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bertnas.arch import ArchConfig, LayerConfig
from bertnas.errors import BertnasError
from bertnas.export.formats import FORMATS, TfliteModel
from bertnas.model.compact import CompactBert, CompactConfig


@pytest.fixture(scope="module")
def unified_tiny():
    """Retention in both layers, stacked FFNs in one, a bottleneck in the other; non-trivial weights."""
    torch.manual_seed(0)
    layers = [
        LayerConfig(index=0, heads=2, qk_dim=16, v_dim=8, ffn_dim=64, ffn_stack=2, retention=0.7),
        LayerConfig(index=1, heads=2, qk_dim=8, v_dim=8, ffn_dim=48, bottleneck=16, retention=0.4),
    ]
    arch = ArchConfig(hidden_size=32, layers=layers, vocab_size=100, max_position_embeddings=64, num_labels=2)
    model = CompactBert(CompactConfig(arch)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    return model


def test_every_format_computes_the_compact_model(unified_tiny, tmp_path):
    ids = torch.randint(1, 100, (4, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    types = torch.zeros_like(ids)
    with torch.no_grad():
        reference = unified_tiny(ids, mask, types).logits.numpy()
    sizes = {}
    for name, fmt in FORMATS.items():
        path = fmt.write(unified_tiny, tmp_path, 32)
        got = fmt.runner(path, threads=1).logits(ids, mask, types)
        difference = float(np.abs(got - reference).max())
        sizes[name] = path.stat().st_size
        if fmt.quantized:  # int8 weights: close, not equal
            assert difference < 0.2, (name, difference)
        else:
            assert difference < 1e-4, (name, difference)
    assert sizes["onnx-int8"] < sizes["onnx"] and sizes["tflite-int8"] < sizes["tflite"]
    assert not unified_tiny.static_tokens  # conversion leaves the model as it found it
    runner = TfliteModel(tmp_path / "model.tflite")
    assert runner.seq_len == 32
    with pytest.raises(BertnasError, match="takes at most 32 tokens"):
        runner.logits(torch.ones(1, 40, dtype=torch.long))


def test_a_runtime_that_lacks_an_op_names_it(tmp_path):
    """LiteRT has no general sort: a graph that sorts converts, and loading it says which op is missing."""
    import litert_torch

    class Sorts(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sort(dim=1).values

    litert_torch.convert(Sorts().eval(), (torch.randn(1, 8),)).export(str(tmp_path / "sorts.tflite"))
    with pytest.raises(BertnasError, match="LiteRT cannot load it at op STABLEHLO_SORT"):
        TfliteModel(tmp_path / "sorts.tflite")
