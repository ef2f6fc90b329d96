"""Analytic cost model: parameters and multiply-accumulates (MACs) of a subnet.

Everything here is computed from an :class:`~bertnas.arch.ArchConfig` alone, with no
weights and no torch, in microseconds; search loops call it millions of times.

A layer's parameters and MACs are the sums over its operations as the layer schema lists
them (:func:`bertnas.schema.layer_ops`: each op's parameters and MACs per call, times its
count), compiled once into plain Python expressions. Written out, they come to:

Parameters (exactly ``sum(p.numel() for p in CompactBert(CompactConfig(arch)).parameters())``),
with ``h`` the hidden size and, per layer, ``w`` its inner width (the bottleneck if it has
one, else ``h``), ``a`` heads, ``k`` query/key dim, ``v`` value dim, ``f`` FFN dim,
``s`` stacked FFNs::

    embeddings   (vocab + positions + token types) * h + 2h        (LayerNorm: 2h)
    Q, K         2 * (w*a*k + a*k)
    V            w*a*v + a*v
    attn out     a*v*w + w
    attn norm    2w
    FFNs         s * (2*w*f + f + w)
    FFN norm     2w
    bottleneck   h*w + w + w*h + h + 2h          (in, out, norm over h; only with a bottleneck)
    pooler       h*h + h                         (if arch.pooler)
    classifier   h*C + C                         (if arch.num_labels = C)

For a plain layer (``w = h``) this is schuBERT's formula; BERT-base gives 109,482,240.

MACs at batch 1 with ``n`` real tokens; per layer ``n_in`` tokens enter and ``n_out`` are
kept after its attention (:meth:`ArchConfig.token_counts`, PoWER-BERT extraction)::

    Q/K/V projections   n_in * w * a * (2k + v)
    attention core      n_in^2 * a * (k + v)          (Q K^T and probs V)
    attention out       n_in * a * v * w
    FFNs                n_out * s * 2 * w * f
    bottleneck          n_in * h * w  +  n_out * w * h
    pooler              h * h                         (the [CLS] token only)
    classifier          h * C

Only matrix products are counted, one MAC per multiply-add; bias additions ride along
with their product and are not counted separately. Deliberately excluded (zero MACs),
because they are not matrix products: they are elementwise, reductions or memory
movement, whose cost depends on the hardware more than on their arithmetic (pricing
them is the latency predictors' job). In fvcore's terms:

- LayerNorm (after the embeddings and in every layer): fvcore counts ``layer_norm`` at 5
  flops per element; we leave it out;
- embedding lookups and their sum (``aten::embedding``, ``aten::add``);
- NoNorm ``x * gamma + beta``, residual additions, the ``1/sqrt(k)`` score scaling and
  the additive mask (``aten::mul``, ``aten::add``, ``aten::sub``);
- softmax, GELU, the pooler's tanh (``aten::softmax``, ``aten::gelu``, ``aten::tanh``;
  ReLU is on fvcore's ignore list);
- token significance (``aten::mean``, ``aten::sum``, ``aten::diagonal``, ``aten::fill_``)
  and selection (``aten::topk``, ``aten::sort``, ``aten::minimum``,
  ``aten::lt``; ``gather``, ``masked_fill`` and views are on fvcore's ignore list);
- dropout (off at inference).

``tests/test_cost.py`` checks both formulas against ``CompactBert``'s parameter count and
against fvcore's jit-traced count restricted to its matrix-product operators
(``linear`` and ``matmul`` for this model; ``addmm``, ``mm``, ``bmm`` and ``einsum`` are
accepted too), on 50 random configs over every dimension plus real MiniLM subnets; it
fails if fvcore reports an operator missing from the list above. See docs/cost-model.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from bertnas import schema
from bertnas.arch import ArchConfig, LayerConfig, kept_tokens
from bertnas.errors import BertnasError

__all__ = [
    "Cost",
    "LayerCost",
    "cost",
    "cost_table",
    "count_macs",
    "count_macs_batch",
    "count_params",
    "embedding_params",
    "layer_params",
]


@dataclass(frozen=True)
class LayerCost:
    """Cost of one kept layer at a given sequence length."""

    index: int  # backbone layer index
    n_in: int  # tokens entering the layer (attention runs on these)
    n_out: int  # tokens kept after attention (the FFNs run on these)
    attention_proj_macs: int  # Q, K, V and the attention output projection
    attention_core_macs: int  # Q K^T and probs V
    ffn_macs: int  # all stacked FFNs
    bottleneck_macs: int  # bottleneck in + out projections (0 without a bottleneck)
    params: int

    @property
    def macs(self) -> int:
        return self.attention_proj_macs + self.attention_core_macs + self.ffn_macs + self.bottleneck_macs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "macs": self.macs}


if [f.name for f in fields(LayerCost)][3:-1] != [f"{part}_macs" for part in schema.MAC_PARTS]:
    raise TypeError("LayerCost's MAC fields must be bertnas.schema.MAC_PARTS, in order")


@dataclass(frozen=True)
class Cost:
    """Parameters and MACs of a whole subnet, with the per-layer breakdown."""

    seq_len: int
    params: int
    macs: int
    embedding_params: int
    head_params: int  # pooler + classifier
    head_macs: int  # pooler + classifier
    layers: tuple[LayerCost, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "params": self.params,
            "macs": self.macs,
            "embedding_params": self.embedding_params,
            "head_params": self.head_params,
            "head_macs": self.head_macs,
            "layers": [layer.to_dict() for layer in self.layers],
        }


# ---------------------------------------------------------------------- parameters
def embedding_params(arch: ArchConfig) -> int:
    """Word + position + token-type tables and the embedding LayerNorm."""
    h = arch.hidden_size
    return (arch.vocab_size + arch.max_position_embeddings + arch.type_vocab_size) * h + 2 * h


def layer_params(layer: LayerConfig, hidden_size: int) -> int:
    """Parameters of one layer: the sum of its ops' parameters (:func:`bertnas.schema.layer_ops`)."""
    return schema.layer_params(layer, hidden_size)


def _head_params(arch: ArchConfig) -> int:
    h = arch.hidden_size
    params = h * h + h if arch.pooler else 0
    if arch.num_labels:
        params += h * arch.num_labels + arch.num_labels
    return params


def _head_macs(arch: ArchConfig) -> int:
    # Pooler and classifier see one token ([CLS]) whatever the sequence length.
    h = arch.hidden_size
    return (h * h if arch.pooler else 0) + (h * arch.num_labels if arch.num_labels else 0)


def count_params(arch: ArchConfig) -> int:
    """Total parameters of the subnet as a standalone :class:`~bertnas.model.CompactBert`."""
    h = arch.hidden_size
    return embedding_params(arch) + sum(layer_params(layer, h) for layer in arch.layers) + _head_params(arch)


# ---------------------------------------------------------------------- MACs
def _check_seq_len(arch: ArchConfig, seq_len: int) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)):
        raise BertnasError(f"seq_len={seq_len!r} must be an integer")
    if not 1 <= seq_len <= arch.max_position_embeddings:
        raise BertnasError(
            f"seq_len={seq_len} must be between 1 and the model's max_position_embeddings "
            f"{arch.max_position_embeddings}"
        )


def count_macs(arch: ArchConfig, seq_len: int) -> int:
    """Matrix-product MACs of one forward pass: batch 1, ``seq_len`` real tokens.

    The hot path of search: one plain loop, no allocations beyond ints.
    """
    _check_seq_len(arch, seq_len)
    h = arch.hidden_size
    total = _head_macs(arch)
    n_in = seq_len
    layer_macs = schema.layer_macs  # the op list's MACs, compiled to one plain expression
    for layer in arch.layers:
        # Same rule as ArchConfig.token_counts, inlined to avoid building a list.
        n_out = min(n_in, kept_tokens(layer.retention, seq_len))
        total += layer_macs(layer, h, n_in, n_out)
        n_in = n_out
    return total


def count_macs_batch(archs: Iterable[ArchConfig], seq_len: int) -> np.ndarray:
    """:func:`count_macs` of many configs as an int64 array (same order)."""
    return np.fromiter((count_macs(arch, seq_len) for arch in archs), dtype=np.int64)


def cost(arch: ArchConfig, seq_len: int) -> Cost:
    """Parameters and MACs with the per-layer breakdown (batch 1, all tokens real)."""
    _check_seq_len(arch, seq_len)
    h = arch.hidden_size
    layers = []
    for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(seq_len), strict=True):
        # The MAC fields of LayerCost are the schema's MAC_PARTS, in order (checked below the class).
        parts = schema.layer_mac_parts(layer, h, n_in, n_out)
        layers.append(LayerCost(layer.index, n_in, n_out, *parts, params=layer_params(layer, h)))
    embed, head_params, head_macs = embedding_params(arch), _head_params(arch), _head_macs(arch)
    return Cost(
        seq_len=seq_len,
        params=embed + sum(layer.params for layer in layers) + head_params,
        macs=head_macs + sum(layer.macs for layer in layers),
        embedding_params=embed,
        head_params=head_params,
        head_macs=head_macs,
        layers=tuple(layers),
    )


def cost_table(arch: ArchConfig, seq_len: int) -> list[dict[str, Any]]:
    """Rows for printing: embeddings, one per layer, the head, and the total.

    Each row has ``part``, ``n_in``, ``n_out``, ``attn_proj``, ``attn_core``, ``ffn``,
    ``bottleneck``, ``macs`` and ``params`` (ints; ``None`` where a column does not apply).
    """
    result = cost(arch, seq_len)
    empty = {"attn_proj": None, "attn_core": None, "ffn": None, "bottleneck": None}
    rows: list[dict[str, Any]] = [
        {"part": "embeddings", "n_in": None, "n_out": seq_len, **empty, "macs": 0, "params": result.embedding_params},
    ]
    for layer in result.layers:
        rows.append(
            {
                "part": f"layer {layer.index}",
                "n_in": layer.n_in,
                "n_out": layer.n_out,
                "attn_proj": layer.attention_proj_macs,
                "attn_core": layer.attention_core_macs,
                "ffn": layer.ffn_macs,
                "bottleneck": layer.bottleneck_macs,
                "macs": layer.macs,
                "params": layer.params,
            }
        )
    if arch.pooler or arch.num_labels:
        rows.append(
            {"part": "head", "n_in": 1, "n_out": 1, **empty, "macs": result.head_macs, "params": result.head_params}
        )
    rows.append(
        {
            "part": "total",
            "n_in": seq_len,
            "n_out": result.layers[-1].n_out,
            **empty,
            "macs": result.macs,
            "params": result.params,
        }
    )
    return rows
