"""``attention_out_bias``: a per-layer dimension added through the layer schema, end to end.

False drops the attention output projection's bias. Arch JSON, validation, space files, the
supernet, the extracted model, the cost model, the latency predictor and both ONNX graphs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_cost import MINILM, check_against_fvcore, random_arch

from bertnas.arch import ArchConfig, LayerConfig
from bertnas.cost import count_macs, count_params, layer_params
from bertnas.errors import BertnasError
from bertnas.hardware import load_predictor
from bertnas.model.compact import CompactBert, CompactConfig
from bertnas.space import load_space
from bertnas.space.spec import parse_space

SPACE = """
name: bias
depth:
  rule: per_layer
  always_keep: [0]
layer:
  heads: [1.0, 0.5]
  ffn_stack: [1, 2]
  bottleneck: [null, 0.5]
  retention: [1.0, 0.7]
  attention_out_bias: [true, false]
"""


def without_bias(arch: ArchConfig, every: int = 1) -> ArchConfig:
    """``arch`` with the bias dropped in every ``every``-th layer."""
    layers = [
        dataclasses.replace(layer, attention_out_bias=position % every != 0)
        for position, layer in enumerate(arch.layers)
    ]
    return arch.replace(layers=tuple(layers))


def inner_widths(arch: ArchConfig) -> list[int]:
    return [layer.inner_width(arch.hidden_size) for layer in arch.layers]


def test_json_writes_it_only_when_false_so_every_existing_hash_stays():
    layer = LayerConfig(0, 12, 32, 32, 1536)
    arch = ArchConfig(hidden_size=384, layers=(layer,))
    assert "attention_out_bias" not in arch.to_dict()["layers"][0]
    off = without_bias(arch)
    assert off.to_dict()["layers"][0]["attention_out_bias"] is False
    assert off.hash() != arch.hash()
    assert ArchConfig.from_json(off.to_json()) == off
    explicit = arch.to_dict()
    explicit["layers"][0]["attention_out_bias"] = True  # written out or left out: the same config
    assert ArchConfig.from_dict(explicit) == arch and ArchConfig.from_dict(explicit).hash() == arch.hash()
    with pytest.raises(BertnasError, match=r"layers\[0\]\.attention_out_bias=1 must be true or false"):
        ArchConfig(hidden_size=384, layers=(dataclasses.replace(layer, attention_out_bias=1),))
    off.check_fits(MINILM)  # any supernet runs it: it only leaves a parameter out


def test_a_space_file_lists_it_and_samples_both_values():
    space = parse_space(SPACE, "bias.yaml").bind(MINILM, "all-MiniLM-L6-v2")
    assert space.choices("attention_out_bias.0") == (False, True)  # cheaper first, the backbone's last
    archs = space.sample_many(40, seed=0)
    values = {layer.attention_out_bias for arch in archs for layer in arch.layers}
    assert values == {False, True}
    for arch in archs:
        assert space.from_values(space.to_values(arch)) == arch
    assert all(layer.attention_out_bias for layer in space.largest().layers)
    assert not any(layer.attention_out_bias for layer in space.smallest().layers)
    assert "attention_out_bias" in space.groups()
    # A space that does not list it keeps the backbone's bias, and so its configs and hashes.
    unified = load_space("unified").bind(MINILM, "all-MiniLM-L6-v2")
    assert all(layer.attention_out_bias for arch in unified.sample_many(20, seed=0) for layer in arch.layers)
    assert "attention_out_bias.0" not in {dim.name for dim in unified.dimensions}


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ("[true, 1]", "attention_out_bias[1]: 1 is not true or false"),
        ("[null]", "attention_out_bias[0]: null is only a choice for bottleneck"),
        ("[true, true]", "attention_out_bias[1]: True is listed twice"),
        ("{absolute: [true]}", "attention_out_bias has no {absolute: ...} form"),
    ],
)
def test_space_file_mistakes(written, fragment):
    with pytest.raises(BertnasError, match="bias.yaml:2: ") as caught:
        parse_space(f"layer:\n  attention_out_bias: {written}\n", "bias.yaml")
    assert fragment in str(caught.value)


def test_params_drop_by_the_width_and_macs_and_latency_stay():
    rng = np.random.default_rng(11)
    pixel4 = load_predictor("pixel4")
    onnxruntime = load_predictor("host-cpu-onnxruntime")
    torch.manual_seed(0)
    skipped: set[str] = set()
    for case in range(8):
        arch = random_arch(rng, MINILM)
        off = without_bias(arch, every=2 if case % 2 else 1)
        dropped = sum(
            w for w, layer in zip(inner_widths(arch), off.layers, strict=True) if not layer.attention_out_bias
        )
        model_on = CompactBert(CompactConfig(arch))
        model_off = CompactBert(CompactConfig(off)).eval()
        real_on = sum(p.numel() for p in model_on.parameters())
        real_off = sum(p.numel() for p in model_off.parameters())
        assert real_on - real_off == dropped and dropped > 0
        assert count_params(off) == real_off and count_params(arch) == real_on
        for layer_on, layer_off in zip(arch.layers, off.layers, strict=True):
            gap = layer_params(layer_on, arch.hidden_size) - layer_params(layer_off, arch.hidden_size)
            assert gap == (0 if layer_off.attention_out_bias else layer_on.inner_width(arch.hidden_size))
        assert count_macs(off, 64) == count_macs(arch, 64)
        check_against_fvcore(model_off, off, 64, skipped)  # the MACs fvcore traces in the real model
        # The kernel stays a linear of the same shape: the same price.
        assert pixel4.predict(off) == pixel4.predict(arch)
        assert onnxruntime.predict_many([off], 32)[0] == onnxruntime.predict_many([arch], 32)[0]


def test_supernet_slice_and_extracted_model_agree_without_the_bias(minilm_supernet, batch):
    from bertnas.export.plain_bert import plain_bert_reason

    space = parse_space(SPACE, "bias.yaml").bind(minilm_supernet.limits, "all-MiniLM-L6-v2")
    supernet = minilm_supernet
    try:
        archs = [arch for arch in space.sample_many(12, seed=3) if not all(x.attention_out_bias for x in arch.layers)]
        assert len(archs) >= 6
        for arch in archs:
            supernet.set_active_subnet(arch)
            compact = supernet.get_active_subnet()
            names = compact.state_dict().keys()
            for position, layer in enumerate(arch.layers):
                assert (f"layers.{position}.attention_out.bias" in names) == layer.attention_out_bias
            with torch.no_grad():
                expected = supernet(**batch)
                got = compact(**batch)
            assert torch.equal(expected.attention_mask, got.attention_mask), arch.to_json()
            assert float((expected.logits - got.logits).abs().max()) < 1e-5, arch.to_json()
            assert sum(p.numel() for p in compact.parameters()) == count_params(compact.arch)
        # The bias really is gone: the same subnet with it gives other logits.
        arch = without_bias(supernet.full_arch())
        assert plain_bert_reason(arch.replace(num_labels=2)) == "layer 0 has attention_out_bias=False (BERT: True)"
        supernet.set_active_subnet(arch)
        with torch.no_grad():
            off = supernet(**batch).logits
        supernet.set_active_subnet(supernet.full_arch())
        with torch.no_grad():
            on = supernet(**batch).logits
        assert float((on - off).abs().max()) > 1e-4
    finally:
        supernet.set_active_subnet(supernet.full_arch())


def test_onnx_export_and_the_latency_graph_run_without_the_bias(tmp_path):
    import onnxruntime as ort

    from bertnas.export.onnx import OnnxModel, export_onnx
    from bertnas.hardware.onnx_graph import arch_model, feeds_for

    layers = tuple(
        LayerConfig(i, 4, 8, 8, 64, ffn_stack=2 if i else 1, bottleneck=16 if i == 1 else None, retention=r)
        for i, r in enumerate((1.0, 0.7, 0.5))
    )
    arch = ArchConfig(hidden_size=32, layers=layers, vocab_size=30522, max_position_embeddings=128, num_labels=2)
    off = without_bias(arch, every=2)  # layers 0 and 2
    torch.manual_seed(0)
    model = CompactBert(CompactConfig(off)).eval()
    runner = OnnxModel(export_onnx(model, tmp_path / "model.onnx"))
    ids = torch.randint(1000, 2000, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits.numpy()
    assert np.abs(runner.logits(ids, mask) - expected).max() < 1e-4
    # The latency model's graph: one Add fewer for each layer without the bias, and it runs.
    graphs = {name: arch_model(a, 16) for name, a in (("on", arch), ("off", off))}
    adds = {name: sum(node.op_type == "Add" for node in g.graph.node) for name, g in graphs.items()}
    assert adds["on"] - adds["off"] == 2
    session = ort.InferenceSession(graphs["off"].SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.isfinite(session.run(None, feeds_for(graphs["off"]))[0]).all()


def test_an_exported_directory_without_the_bias_loads_in_transformers_without_bertnas(
    minilm_supernet, minilm_hf, tmp_path
):
    import json

    from conftest import SENTENCES
    from test_hf_native import LOAD
    from toys import run_without_bertnas

    from bertnas.export import extract_subnet

    _, tokenizer = minilm_hf
    arch = without_bias(minilm_supernet.full_arch().replace(layers=minilm_supernet.full_arch().layers[:3]), every=2)
    try:
        directory, compact = extract_subnet(minilm_supernet, arch, tmp_path / "subnet")
    finally:
        minilm_supernet.set_active_subnet(minilm_supernet.full_arch())
    compact.save_pretrained(directory, tokenizer=tokenizer)
    batch = dict(tokenizer(SENTENCES, return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = compact(**batch).logits.numpy()
    (tmp_path / "sentences.json").write_text(json.dumps(SENTENCES))
    done = run_without_bertnas(LOAD, str(tmp_path / "sentences.json"), str(directory), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])[str(directory)]
    assert np.abs(np.array(got["logits"]) - expected).max() < 1e-5
