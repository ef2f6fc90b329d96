"""Extraction: a subnet becomes a standalone model that computes exactly what the supernet did."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.export import extract_subnet
from bertnas.model import CompactBert
from bertnas.space import load_space

TOL = 1e-5


@pytest.fixture(scope="module")
def unified(minilm_supernet):
    return load_space("unified").bind(minilm_supernet.limits, backbone="all-MiniLM-L6-v2")


def test_fifty_random_unified_subnets_extract_exactly(minilm_supernet, unified, batch):
    """Supernet subnet == extracted compact model, on a padded batch, with retention."""
    supernet = minilm_supernet
    # Perturb the extra parameters so stacked FFNs and bottlenecks really compute something.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in supernet.layers:
            for extra in layer.extra_ffns:
                extra.down.weight.copy_(torch.randn(extra.down.weight.shape, generator=generator) * 0.02)
    try:
        archs = unified.sample_many(50, seed=1234)
        assert len({arch.hash() for arch in archs}) == 50
        for arch in archs:
            supernet.set_active_subnet(arch)
            compact = supernet.get_active_subnet()
            with torch.no_grad():
                expected = supernet(**batch)
                got = compact(**batch)
            assert torch.equal(expected.attention_mask, got.attention_mask), arch.to_json()
            assert float((expected.logits - got.logits).abs().max()) < TOL, arch.to_json()
            assert float((expected.last_hidden_state - got.last_hidden_state).abs().max()) < TOL
            # physically smaller: the compact model's parameters are exactly the subnet's
            from bertnas.cost import count_params

            assert sum(p.numel() for p in compact.parameters()) == count_params(compact.arch)
    finally:
        with torch.no_grad():
            for layer in supernet.layers:
                for extra in layer.extra_ffns:
                    extra.down.weight.zero_()
        supernet.set_active_subnet(supernet.full_arch())


def test_extracted_directory_loads_without_the_supernet(minilm_supernet, unified, batch, tmp_path):
    arch = unified.sample(np.random.default_rng(7))
    out, compact = extract_subnet(minilm_supernet, arch, tmp_path / "model")
    files = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "arch.json", "bertnas.json", "tokenizer_config.json"} <= files
    assert not [name for name in files if name.startswith(".")]
    loaded = CompactBert.from_pretrained(out)
    assert ArchConfig.load(out / "arch.json").hash() == compact.arch.hash()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, compact(**batch).logits)
    provenance = json.loads((out / "bertnas.json").read_text())
    assert provenance["arch_hash"] == compact.arch.hash()
    # the saved tokenizer is usable on its own
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer("hello")["input_ids"][0] == batch["input_ids"][0, 0]
    minilm_supernet.set_active_subnet(minilm_supernet.full_arch())


def test_extraction_refuses_to_overwrite_and_leaves_nothing_half_written(minilm_supernet, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(BertnasError, match="already exists"):
        extract_subnet(minilm_supernet, minilm_supernet.full_arch(), target)
    assert (target / "keep.txt").read_text() == "mine"

    class Boom(RuntimeError):
        pass

    original = CompactBert.save_pretrained

    def failing_save(self, directory, tokenizer=None):
        original(self, directory, tokenizer)
        raise Boom("disk full")

    CompactBert.save_pretrained = failing_save
    try:
        with pytest.raises(Boom):
            extract_subnet(minilm_supernet, minilm_supernet.full_arch(), tmp_path / "other")
    finally:
        CompactBert.save_pretrained = original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no partial directory left


def test_corrupt_compact_directory_gives_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BertnasError, match="not a bertnas compact model"):
        CompactBert.from_pretrained(tmp_path)
    with pytest.raises(BertnasError, match="config.json is missing"):
        CompactBert.from_pretrained(tmp_path / "nowhere")
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text((tmp_path / "config.json").read_text())
    with pytest.raises(BertnasError, match="not a bertnas compact model|model.safetensors is missing"):
        CompactBert.from_pretrained(weightless)
