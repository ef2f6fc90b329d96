"""The analytic cost model against real models: parameter counts and fvcore's MAC count."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from bertnas.arch import ArchConfig, ArchLimits, LayerConfig, full_arch
from bertnas.cost import cost, cost_table, count_macs, count_macs_batch, count_params, layer_params
from bertnas.errors import BertnasError
from bertnas.model.compact import CompactBert, CompactConfig

# The default backbone (all-MiniLM-L6-v2) with room for every unified-space dimension.
MINILM = ArchLimits(
    hidden_size=384, num_layers=6, num_heads=12, head_dim=32, ffn_dim=1536, max_ffn_stack=4, max_bottleneck=384
)
BERT_BASE = ArchLimits(hidden_size=768, num_layers=12, num_heads=12, head_dim=64, ffn_dim=3072)

# fvcore operators that are matrix products (one "flop" per multiply-accumulate).
MATMUL_OPS = {"linear", "matmul", "addmm", "mm", "bmm", "einsum"}
# Everything else this model's forward runs, and why it has no MACs: fvcore either counts
# it with a non-MAC convention (layer_norm: 5 per element) or cannot count it at all.
# Kept in sync with the module docstring of bertnas/cost.py and docs/cost-model.md.
EXCLUDED_COUNTED = {"layer_norm"}
EXCLUDED_UNSUPPORTED = {
    "aten::embedding",  # lookups
    "aten::add",
    "aten::mul",
    "aten::sub",  # residuals, NoNorm, score scaling, the additive mask
    "aten::softmax",
    "aten::gelu",
    "aten::tanh",  # activations (relu is in fvcore's ignore list)
    "aten::mean",
    "aten::sum",
    "aten::diagonal",
    "aten::fill_",  # token significance
    "aten::topk",
    "aten::sort",
    "aten::minimum",
    "aten::lt",  # token selection
}


def random_arch(rng: np.random.Generator, limits: ArchLimits) -> ArchConfig:
    """A random subnet over every dimension of ``limits`` (the search space's full range)."""
    hidden = int(rng.integers(16, limits.hidden_size + 1))
    depth = int(rng.integers(1, limits.num_layers + 1))
    kept = sorted(rng.choice(limits.num_layers, size=depth, replace=False).tolist())
    # Non-increasing retention; about half the layers keep everything, the rest drop tokens.
    retention = sorted((1.0 if rng.random() < 0.5 else float(rng.uniform(0.05, 1.0)) for _ in kept), reverse=True)
    layers = []
    for index, r in zip(kept, retention, strict=True):
        bottleneck = None
        if limits.max_bottleneck and rng.random() < 0.4:
            bottleneck = int(rng.integers(8, min(hidden, limits.max_bottleneck) + 1))
        layers.append(
            LayerConfig(
                index=index,
                heads=int(rng.integers(1, limits.num_heads + 1)),
                qk_dim=int(rng.integers(1, limits.head_dim + 1)),
                v_dim=int(rng.integers(1, limits.head_dim + 1)),
                ffn_dim=int(rng.integers(1, limits.ffn_dim + 1)),
                ffn_stack=int(rng.integers(1, limits.max_ffn_stack + 1)),
                bottleneck=bottleneck,
                retention=round(r, 4),
            )
        )
    return ArchConfig(
        hidden_size=hidden,
        layers=tuple(layers),
        hidden_act=str(rng.choice(["gelu", "relu"])),
        norm=str(rng.choice(["layernorm", "nonorm"])),
        num_labels=[None, 2, 3][int(rng.integers(3))],
        pooler=bool(rng.random() < 0.7),
    )


class _Traceable(nn.Module):
    """fvcore's jit tracer needs tensors out, not the ForwardOutput dataclass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        extras = [t for t in (out.pooler_output, out.logits) if t is not None]
        return (out.last_hidden_state, *extras)


def fvcore_counts(model: nn.Module, seq_len: int) -> tuple[dict[str, int], set[str]]:
    """fvcore's per-operator count (batch 1, all tokens real) and the operators it skipped."""
    input_ids = torch.randint(1000, 29000, (1, seq_len))
    analysis = FlopCountAnalysis(_Traceable(model).eval(), (input_ids, torch.ones_like(input_ids)))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad():
        by_operator = dict(analysis.by_operator())
    return by_operator, set(analysis.unsupported_ops())


def check_against_fvcore(model: nn.Module, arch: ArchConfig, seq_len: int, skipped: set[str]) -> None:
    by_operator, unsupported = fvcore_counts(model, seq_len)
    skipped.update(unsupported)
    unknown = set(by_operator) - MATMUL_OPS - EXCLUDED_COUNTED
    assert not unknown, f"fvcore counted operators the cost model does not classify: {unknown}"
    result = cost(arch, seq_len)
    fv_macs = sum(count for op, count in by_operator.items() if op in MATMUL_OPS)
    assert fv_macs == result.macs == count_macs(arch, seq_len), arch.to_json()
    # Stronger than the total: the attention core is exactly the two batched matmuls.
    assert by_operator.get("matmul", 0) == sum(layer.attention_core_macs for layer in result.layers), arch.to_json()


def test_fvcore_counts_one_flop_per_mac():
    linear = nn.Linear(7, 5)
    analysis = FlopCountAnalysis(linear, (torch.randn(3, 7),))
    assert analysis.total() == 3 * 7 * 5
    assert dict(analysis.by_operator()) == {"linear": 105}


def test_random_configs_match_compact_params_and_fvcore_macs():
    rng = np.random.default_rng(20240611)
    torch.manual_seed(0)
    skipped: set[str] = set()
    seen = {"bottleneck": 0, "retention": 0, "stack": 0, "nonorm": 0, "relu": 0}
    for case in range(50):
        arch = random_arch(rng, MINILM)
        seq_len = 128 if case == 0 else 64
        model = CompactBert(CompactConfig(arch=arch)).eval()
        assert count_params(arch) == sum(p.numel() for p in model.parameters()), arch.to_json()
        assert cost(arch, seq_len).params == count_params(arch)
        check_against_fvcore(model, arch, seq_len, skipped)
        seen["bottleneck"] += any(layer.bottleneck for layer in arch.layers)
        seen["retention"] += any(layer.retention < 1 for layer in arch.layers)
        seen["stack"] += any(layer.ffn_stack > 1 for layer in arch.layers)
        seen["nonorm"] += arch.norm == "nonorm"
        seen["relu"] += arch.hidden_act == "relu"
    assert min(seen.values()) >= 5, seen  # every dimension was really exercised
    assert skipped <= EXCLUDED_UNSUPPORTED, f"undocumented operators fvcore skipped: {skipped - EXCLUDED_UNSUPPORTED}"


def test_real_minilm_subnets_match_fvcore(minilm_supernet):
    """The real path: slice the MiniLM supernet, extract, count both the extract and the supernet."""
    rng = np.random.default_rng(99)
    skipped: set[str] = set()
    archs = [minilm_supernet.full_arch()] + [random_arch(rng, MINILM) for _ in range(4)]
    try:
        for arch in archs:
            minilm_supernet.set_active_subnet(arch)
            compact = minilm_supernet.get_active_subnet()
            completed = compact.arch  # vocabulary, pooler and classifier from the backbone
            assert count_params(completed) == sum(p.numel() for p in compact.parameters())
            check_against_fvcore(compact, completed, 64, skipped)
            # The supernet runs on slices: the same matrix products as its extract.
            check_against_fvcore(minilm_supernet, completed, 64, skipped)
    finally:
        minilm_supernet.set_active_subnet(minilm_supernet.full_arch())
    assert skipped <= EXCLUDED_UNSUPPORTED, skipped - EXCLUDED_UNSUPPORTED


def test_minilm_full_size():
    arch = full_arch(MINILM)
    # all-MiniLM-L6-v2 is a 22.7M-parameter BertModel (pooler included, no classifier).
    assert count_params(arch) == 22_713_216


def test_bert_base_params_match_transformers():
    from transformers import BertConfig, BertModel

    arch = full_arch(BERT_BASE)
    assert count_params(arch) == 109_482_240
    with torch.device("meta"):  # shapes only: no time spent initialising 110M weights
        model = BertModel(BertConfig())
    assert sum(p.numel() for p in model.parameters()) == 109_482_240


def test_bert_base_macs_by_hand():
    n, h, a, d, f, layers = 128, 768, 12, 64, 3072, 12
    per_layer = n * h * a * d * 4 + n * n * a * d * 2 + n * 2 * h * f
    assert per_layer == 931_135_488
    arch = full_arch(BERT_BASE)
    encoder = count_macs(arch, n) - h * h  # pooler: one token
    assert encoder == layers * per_layer == 11_173_625_856
    # DynaBERT reports 22.4 GFLOPs (= 2 * MACs) for (m_w, m_d) = (1, 1); matrix products alone give
    # 22.35, and all three published figures sit 0.24 % above ours: a counting detail, not a shape error.
    assert 2 * encoder / 1e9 == pytest.approx(22.4, rel=0.005)


def _dynabert(width: float, depth: float) -> ArchConfig:
    heads = round(12 * width)
    kept = [int(i / depth) for i in range(round(12 * depth))]
    layers = tuple(LayerConfig(index=i, heads=heads, qk_dim=64, v_dim=64, ffn_dim=int(3072 * heads / 12)) for i in kept)
    return ArchConfig(hidden_size=768, layers=layers, pooler=False)


@pytest.mark.parametrize(("width", "depth", "gflops"), [(1.0, 1.0, 22.4), (0.5, 1.0, 11.2), (0.25, 0.5, 2.8)])
def test_dynabert_published_flops(width, depth, gflops):
    arch = _dynabert(width, depth)
    assert 2 * count_macs(arch, 128) / 1e9 == pytest.approx(gflops, rel=0.005)
    if (width, depth) == (0.5, 1.0):
        # Width 0.5 halves every attention and FFN product exactly (hidden size untouched).
        assert 2 * count_macs(arch, 128) == count_macs(_dynabert(1.0, 1.0), 128)


@pytest.mark.parametrize(("hidden", "millions"), [(544, 77.4), (466, 66.3), (390, 55.5), (304, 43.2)])
def test_schubert_published_sizes(hidden, millions):
    """schuBERT's h-only models: 12 layers, 12 heads of 64, FFN 3072, pooler, smaller h."""
    limits = ArchLimits(hidden_size=hidden, num_layers=12, num_heads=12, head_dim=64, ffn_dim=3072)
    assert round(count_params(full_arch(limits)) / 1e6, 1) == millions


def test_schubert_layer_formula():
    h, a, k, v, f = 544, 12, 64, 64, 3072
    layer = LayerConfig(index=0, heads=a, qk_dim=k, v_dim=v, ffn_dim=f)
    assert (
        layer_params(layer, h)
        == 2 * (h * a * k + a * k) + (h * a * v + a * v) + (a * v * h + h) + (2 * h * f + f + h) + 4 * h
    )


def test_retention_shrinks_ffn_and_attention():
    arch = full_arch(MINILM)
    dropped = arch.replace(layers=tuple(dataclasses.replace(layer, retention=0.5) for layer in arch.layers))
    full, half = cost(arch, 64), cost(dropped, 64)
    assert [(lc.n_in, lc.n_out) for lc in half.layers] == [(64, 32)] + [(32, 32)] * 5
    # Layer 0 attends over all 64 tokens but runs its FFN on 32.
    assert half.layers[0].attention_core_macs == full.layers[0].attention_core_macs
    assert 2 * half.layers[0].ffn_macs == full.layers[0].ffn_macs
    assert 4 * half.layers[1].attention_core_macs == full.layers[1].attention_core_macs
    assert half.params == full.params


def test_batch_table_and_dict():
    rng = np.random.default_rng(5)
    archs = [random_arch(rng, MINILM) for _ in range(20)]
    batch = count_macs_batch(archs, 96)
    assert batch.dtype == np.int64
    assert batch.tolist() == [count_macs(arch, 96) for arch in archs]
    arch = archs[0]
    rows = cost_table(arch, 96)
    assert rows[0]["part"] == "embeddings" and rows[-1]["part"] == "total"
    assert rows[-1]["macs"] == count_macs(arch, 96) == sum(row["macs"] for row in rows[:-1])
    assert rows[-1]["params"] == count_params(arch) == sum(row["params"] for row in rows[:-1])
    data = cost(arch, 96).to_dict()
    assert data["macs"] == count_macs(arch, 96)
    assert len(data["layers"]) == arch.num_layers
    assert all(layer["macs"] > 0 for layer in data["layers"])


@pytest.mark.parametrize("seq_len", [0, -3, 513, 2.5, True])
def test_bad_seq_len(seq_len):
    arch = full_arch(MINILM)
    with pytest.raises(BertnasError, match="seq_len"):
        count_macs(arch, seq_len)
    with pytest.raises(BertnasError, match="seq_len"):
        cost(arch, seq_len)
