"""The layer schema (bertnas/schema.py) and the values it must never change."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertnas.arch import ArchConfig
from bertnas.backbones import backbone_limits
from bertnas.cost import cost, count_macs, count_params
from bertnas.hardware import load_predictor
from bertnas.space import load_space

REFERENCE_MODELS = Path(__file__).resolve().parents[1] / "hardware_profiles" / "reference_models"

# Computed before the schema existed (commit e45eebb): hash, parameters, MACs at 128 tokens, the
# pixel4 prediction (128 tokens), the host-cpu-onnxruntime prediction at 64 tokens (vectorised path)
# and the first layer's (attention projections, attention core, FFN, bottleneck) MACs at 64 tokens.
# Caches, studies and committed results key on the hashes; none of these may move.
FROZEN = {
    "bert-base": (
        "0824603ed2ae8133",
        109483778,
        11174217216,
        343.35098199999993,
        73.08674869916298,
        (150994944, 6291456, 301989888, 0),
    ),
    "mobilebert-layernorm-gelu": (
        "d8dc99d4ea99c538",
        33582594,
        2315518976,
        191.46481693333328,
        20.923394988882993,
        (4194304, 1048576, 33554432, 8388608),
    ),
    "mobilebert-tiny": (
        "eb364ab5538abb4b",
        27260418,
        1510212608,
        41.59045266666666,
        14.197186551978994,
        (4194304, 1048576, 16777216, 8388608),
    ),
    "mobilebert": (
        "d69e8564242e42e1",
        33582594,
        2315518976,
        59.24052093333334,
        19.228976287435,
        (4194304, 1048576, 33554432, 8388608),
    ),
    "unified-0": (
        "f120a65a0afa8922",
        19180008,
        315129312,
        21.644690712499997,
        3.408707349616339,
        (4423680, 1474560, 4718592, 3538944),
    ),
    "unified-1": (
        "b1de9985d2cbe8ee",
        11699676,
        391203268,
        26.283793790364587,
        3.83945822710697,
        (2359296, 393216, 51757056, 3045504),
    ),
    "unified-2": (
        "55305fafef16866a",
        9311184,
        190136736,
        14.89041939375,
        2.1928196033423752,
        (8257536, 1376256, 39813120, 0),
    ),
}


def frozen_archs() -> dict[str, ArchConfig]:
    archs = {path.stem: ArchConfig.load(path) for path in sorted(REFERENCE_MODELS.glob("*.json"))}
    space = load_space("unified").bind(backbone_limits("minilm"), "all-MiniLM-L6-v2")
    for i, arch in enumerate(space.sample_many(3, seed=0)):
        archs[f"unified-{i}"] = arch
    return archs


def test_hashes_costs_and_predictions_are_frozen():
    archs = frozen_archs()
    assert set(archs) == set(FROZEN)
    pixel4, onnxruntime = load_predictor("pixel4"), load_predictor("host-cpu-onnxruntime")
    for name, arch in archs.items():
        digest, params, macs, pixel4_ms, onnxruntime_ms, first_layer = FROZEN[name]
        assert arch.hash() == digest, name
        assert count_params(arch) == params, name
        assert count_macs(arch, 128) == macs, name
        layer = cost(arch, 64).layers[0]
        assert (layer.attention_proj_macs, layer.attention_core_macs, layer.ffn_macs, layer.bottleneck_macs) == (
            first_layer
        ), name
        assert pixel4.predict(arch) == pytest.approx(pixel4_ms, rel=1e-12), name
        assert float(onnxruntime.predict_many([arch], 64)[0]) == pytest.approx(onnxruntime_ms, rel=1e-12), name


# ---------------------------------------------------------------------- fields
def test_layer_config_is_the_schema_fields():
    import dataclasses

    from bertnas import schema
    from bertnas.arch import LayerConfig

    assert tuple(f.name for f in dataclasses.fields(LayerConfig)) == schema.FIELD_NAMES
    schema.check_layer_class(LayerConfig)

    @dataclasses.dataclass(frozen=True)
    class Stale:  # a copy that missed a field, or got a default wrong
        index: int
        heads: int
        qk_dim: int
        v_dim: int
        ffn_dim: int
        ffn_stack: int = 2

    with pytest.raises(TypeError, match="do not match"):
        schema.check_layer_class(Stale)


def test_same_value_keeps_none_booleans_and_numbers_apart():
    import numpy as np

    from bertnas.schema import same_value

    assert same_value(1, 1.0) and same_value(None, None) and same_value(True, np.bool_(True))
    assert not same_value(True, 1) and not same_value(0, False) and not same_value(None, 0)
    assert not same_value(0.5, "0.5")


# ---------------------------------------------------------------------- the op list
def random_archs(count: int, seed: int) -> list[ArchConfig]:
    """Random configs over every dimension (both norms, both activations, bottlenecks, stacks,
    retention: the cost model's own test), a third of the layers without the attention output bias."""
    import dataclasses

    import numpy as np
    from test_cost import MINILM, random_arch

    rng = np.random.default_rng(seed)
    archs = []
    for _ in range(count):
        arch = random_arch(rng, MINILM)
        layers = [dataclasses.replace(x, attention_out_bias=bool(rng.random() >= 1 / 3)) for x in arch.layers]
        archs.append(arch.replace(layers=tuple(layers)))
    return archs


def test_ops_have_known_families_unique_names_and_honest_macs():
    from bertnas import schema
    from bertnas.hardware.kernels import FAMILIES, MATMUL_FAMILIES, work

    for arch in random_archs(20, seed=1):
        h = arch.hidden_size
        for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(64), strict=True):
            ops = schema.layer_ops(schema.layer_inputs(layer, h, n_in, n_out, arch.norm, arch.hidden_act))
            assert len({op.name for op in ops}) == len(ops)
            for op in ops:
                assert op.family in FAMILIES, op
                assert len(op.shape) == len(FAMILIES[op.family]), op
                # MACs are the family's own work for matrix products, nothing else counts.
                expected = work(op.family, op.shape) if op.family in MATMUL_FAMILIES else 0
                assert op.macs == expected, op
                assert (op.part is not None) == (op.macs != 0) and op.part in (None, *schema.MAC_PARTS), op


def test_vectorised_calls_equal_each_layers_reference_calls():
    from collections import Counter

    import numpy as np

    from bertnas.hardware.kernels import LayerTable, layer_calls, layer_reference_calls

    archs = random_archs(30, seed=2)
    table = LayerTable.from_archs(archs, 64)
    calls = layer_calls(table)
    row = 0
    for arch in archs:
        for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(64), strict=True):
            vectorised = Counter()
            for family, shape, count, mask in calls:
                if mask[row]:
                    vectorised[(family, tuple(int(x[row]) for x in shape))] += int(count[row])
            reference = Counter()
            listed = layer_reference_calls(layer, arch.hidden_size, n_in, n_out, arch.norm, arch.hidden_act)
            for family, shape, count in listed:
                reference[(family, shape)] += count
            assert vectorised == reference, arch.to_json()
            assert (int(table.n_in[row]), int(table.n_out[row])) == (n_in, n_out)
            row += 1
    assert row == len(table.n_in)
    assert np.all(table.h == np.repeat([a.hidden_size for a in archs], [len(a.layers) for a in archs]))


class _Recorder:
    """Records, in order, the calls of functional.py that the op list names: linear (with its
    shape and whether it has a bias), the two attention matmuls, softmax, layer_norm, gelu/relu,
    topk (token selection) and the gathers of hidden states."""

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode

        recorder = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                recorder.see(getattr(func, "__name__", ""), args, kwargs or {})
                return func(*args, **(kwargs or {}))

        self.mode = Mode
        self.calls: list[tuple] = []

    def see(self, name: str, args: tuple, kwargs: dict) -> None:
        if name == "linear":
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            self.calls.append(("linear", x.shape[-2], weight.shape[1], weight.shape[0], bias is not None))
        elif name == "matmul":
            a, b = args
            self.calls.append(("matmul", a.shape[2], a.shape[1], a.shape[3], b.shape[3]))
        elif name == "softmax":
            self.calls.append(("softmax", args[0].shape[2], args[0].shape[1]))
        elif name in ("layer_norm", "gelu", "relu"):
            self.calls.append((name, args[0].shape[-2], args[0].shape[-1]))
        elif name == "topk":
            self.calls.append(("topk", args[0].shape[1]))
        elif name == "gather" and args[0].dim() == 3:
            self.calls.append(("gather", args[2].shape[1], args[0].shape[2]))


def expected_calls(op) -> list[tuple]:
    """What functional.py's recorded calls look like for one schema op (empty: not recorded)."""
    family, shape = op.family, op.shape
    if family == "linear":
        return [("linear", *shape, bool(op.bias))]
    if family == "attn_scores":
        n, a, k = shape
        return [("matmul", n, a, k, n)]
    if family == "attn_context":
        n, a, v = shape
        return [("matmul", n, a, n, v)]
    if family == "softmax":
        return [("softmax", *shape)]
    if family == "layernorm":
        return [("layer_norm", *shape)]
    if family in ("gelu", "relu"):
        return [(family, *shape)]
    if family == "token_select":
        return [("topk", shape[0])]
    if family == "gather":
        return [("gather", *shape)]
    return []  # add, nonorm: elementwise tensor arithmetic, not told apart from the rest


def test_op_list_is_what_functional_runs_in_order(monkeypatch):
    """The schema against the hand-written reference: every layer of 25 random CompactBerts makes
    exactly the schema's calls (in its run order, stacked FFNs unrolled) with the schema's shapes."""
    import torch

    from bertnas import schema
    from bertnas.model import functional
    from bertnas.model.compact import CompactBert, CompactConfig

    recorder = _Recorder()
    per_layer: list[list[tuple]] = []
    original = functional.layer_forward

    def recorded(*args, **kwargs):
        recorder.calls = []
        with recorder.mode():
            result = original(*args, **kwargs)
        per_layer.append(recorder.calls)
        return result

    monkeypatch.setattr(functional, "layer_forward", recorded)
    torch.manual_seed(0)
    seen = set()
    for arch in random_archs(25, seed=3):
        per_layer.clear()
        model = CompactBert(CompactConfig(arch=arch)).eval()
        ids = torch.randint(1000, 29000, (1, 48))
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        assert len(per_layer) == len(arch.layers)
        for layer, (n_in, n_out), observed in zip(arch.layers, arch.token_counts(48), per_layer, strict=True):
            inputs = schema.layer_inputs(layer, arch.hidden_size, n_in, n_out, arch.norm, arch.hidden_act)
            ops = schema.run_order(schema.active_ops(inputs))
            assert observed == [call for op in ops for call in expected_calls(op)], (arch.to_json(), layer)
            seen.update(op.name for op in ops)
    assert seen == {op.name for op in schema.layer_ops(inputs)}  # every op was exercised


def test_onnx_graph_builds_every_op_and_runs():
    import numpy as np
    import onnxruntime as ort

    from bertnas import schema
    from bertnas.hardware.onnx_graph import _Layer, arch_model, feeds_for

    inputs = schema.layer_inputs(schema_layer(), 64, 16, 16, "layernorm", "gelu")
    assert all(callable(getattr(_Layer, op.name, None)) for op in schema.layer_ops(inputs))
    for arch in random_archs(4, seed=4):
        model = arch_model(arch, 16)
        linears = 0
        for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(16), strict=True):
            layer_inputs = schema.layer_inputs(layer, arch.hidden_size, n_in, n_out, arch.norm, arch.hidden_act)
            linears += sum(op.count for op in schema.active_ops(layer_inputs) if op.family == "linear")
        head = int(arch.pooler) + int(bool(arch.pooler or arch.num_labels))
        matmuls = sum(node.op_type == "MatMul" for node in model.graph.node)
        assert matmuls == linears + 2 * len(arch.layers) + head  # each linear, Q K^T and probs V
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, feeds_for(model))
        assert np.isfinite(out).all()


def schema_layer():
    from bertnas.arch import LayerConfig

    return LayerConfig(0, 4, 16, 16, 64, ffn_stack=2, bottleneck=32, retention=0.5)


def test_exported_models_layer_spec_has_the_schema_dimensions():
    # model/hf.py ships inside exported directories and cannot import the schema: its copy of the
    # layer fields is held to it here.
    from bertnas import schema
    from bertnas.model.hf import LayerSpec

    schema.check_layer_class(LayerSpec)


def test_compiled_formulas_are_the_op_lists_sums():
    """The plain-Python forms (cost model, predictor) against the op list evaluated directly."""
    from bertnas import schema

    for arch in random_archs(40, seed=5):
        h = arch.hidden_size
        for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(64), strict=True):
            inputs = schema.layer_inputs(layer, h, n_in, n_out, arch.norm, arch.hidden_act)
            ops = schema.active_ops(inputs)
            assert schema.layer_calls(layer, h, n_in, n_out, arch.norm, arch.hidden_act) == [
                (op.family, op.shape, op.count) for op in ops
            ]
            assert schema.layer_params(layer, h) == sum(op.count * op.params for op in ops)
            assert schema.layer_macs(layer, h, n_in, n_out) == sum(op.count * op.macs for op in ops)
            parts = {part: sum(op.count * op.macs for op in ops if op.part == part) for part in schema.MAC_PARTS}
            assert schema.layer_mac_parts(layer, h, n_in, n_out) == tuple(parts.values())
