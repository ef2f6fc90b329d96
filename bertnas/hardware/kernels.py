"""The building blocks of the unified space and the shapes an architecture runs them at.

A subnet's forward pass (``bertnas/model/functional.py``) is a fixed sequence of a few
kinds of kernel. Each *family* below names one kind and its shape axes; a hardware
profile stores one latency table (or an analytic cost) per family, and the predictor
prices a config by listing every kernel call with its shape and summing.

Per kept layer, with ``h`` the residual width, ``w`` the inner width (bottleneck or
``h``), ``a`` heads, ``k``/``v`` head dims, ``f`` FFN width, ``s`` stacked FFNs, ``n_in``
tokens entering and ``n_out`` tokens kept after attention (retention)::

    bottleneck in    linear(n_in, h, w)                       (bottleneck only)
    Q, K, V          linear(n_in, w, a*k) x2, linear(n_in, w, a*v)
    scores           attn_scores(n_in, a, k)                  Q K^T and the 1/sqrt(k) scale
    softmax          softmax(n_in, a)                         mask add + softmax over a x n x n
    context          attn_context(n_in, a, v)                 probs V, heads merged back
    attention out    linear(n_in, a*v, w), add(n_in, w), norm(n_in, w)
    extraction       token_select(n_in, a), gather(n_out, w)  (+ gather(n_out, h) with a bottleneck)
    FFNs (s of them) linear(n_out, w, f), act(n_out, f), linear(n_out, f, w), add(n_out, w)
    FFN norm         norm(n_out, w)
    bottleneck out   linear(n_out, w, h), add(n_out, h), norm(n_out, h)   (bottleneck only)

Once per model: ``embedding(n, h)`` (three lookups, their sum and the LayerNorm) and
``classifier(h)`` (pooler + tanh + a 2-way linear on [CLS]). ``norm`` is the
``layernorm`` or ``nonorm`` family and ``act`` the ``gelu`` or ``relu`` family, as the
config says.

Everything works on :class:`LayerTable`, column arrays of many layers of many configs,
so that 100k configs are priced with a few numpy operations.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from bertnas.arch import RETENTION_SCALE, ArchConfig, LayerConfig

# family -> its shape axes, in table order
FAMILIES: dict[str, tuple[str, ...]] = {
    "linear": ("tokens", "in", "out"),
    "attn_scores": ("tokens", "heads", "head_dim"),
    "attn_context": ("tokens", "heads", "head_dim"),
    "softmax": ("tokens", "heads"),
    "add": ("tokens", "width"),
    "layernorm": ("tokens", "width"),
    "nonorm": ("tokens", "width"),
    "gelu": ("tokens", "width"),
    "relu": ("tokens", "width"),
    "token_select": ("tokens", "heads"),
    "gather": ("tokens", "width"),
    "embedding": ("tokens", "width"),
    "classifier": ("width",),
}

MATMUL_FAMILIES = ("linear", "attn_scores", "attn_context", "classifier")


def work(family: str, shape: Sequence[np.ndarray]) -> np.ndarray:
    """The family's natural unit of work: MACs for products, elements otherwise.

    Analytic (calibrated) profiles price a call as ``overhead + per_unit * work``.
    Columns (arrays) or one call's plain numbers.
    """
    s = [x if isinstance(x, (int, float)) else np.asarray(x, dtype=np.float64) for x in shape]
    if family == "linear":
        return s[0] * s[1] * s[2]
    if family in ("attn_scores", "attn_context"):
        return s[0] * s[0] * s[1] * s[2]
    if family in ("softmax", "token_select"):
        return s[0] * s[0] * s[1]
    if family == "classifier":
        return s[0] * s[0] + 2 * s[0]
    return s[0] * s[1]


@dataclass(frozen=True)
class LayerTable:
    """Column arrays describing many layers (of many configs) and their configs.

    Layer columns (one entry per kept layer): ``config`` (which config), ``h``, ``w``,
    ``a``, ``k``, ``v``, ``f``, ``s``, ``bottleneck`` (bool), ``n_in``, ``n_out``.
    Config columns (one entry per config): ``hidden``, ``layers``, ``gelu``, ``layernorm``,
    ``classifier`` (pooler + head present), ``head_only`` (head without pooler),
    ``labels``.
    """

    seq_len: int
    config: np.ndarray
    h: np.ndarray
    w: np.ndarray
    a: np.ndarray
    k: np.ndarray
    v: np.ndarray
    f: np.ndarray
    s: np.ndarray
    bottleneck: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    hidden: np.ndarray
    num_layers: np.ndarray
    gelu: np.ndarray
    layernorm: np.ndarray
    pooler: np.ndarray
    labels: np.ndarray

    @property
    def num_configs(self) -> int:
        return len(self.hidden)

    @classmethod
    def from_archs(cls, archs: Sequence[ArchConfig], seq_len: int) -> LayerTable:
        """Build the table; C-level iteration only (no per-layer Python code)."""
        archs = list(archs)
        layer_lists = list(map(operator.attrgetter("layers"), archs))
        counts = np.fromiter(map(len, layer_lists), dtype=np.int64, count=len(archs))
        layers = list(chain.from_iterable(layer_lists))
        total = len(layers)
        # One pass over the layers for every numeric field (the slow part is Python attribute access).
        fields = operator.attrgetter("heads", "qk_dim", "v_dim", "ffn_dim", "ffn_stack", "retention")
        numeric = np.fromiter(chain.from_iterable(map(fields, layers)), np.float64, count=6 * total).reshape(total, 6)
        a, k, v, f, s = (numeric[:, i].astype(np.int64) for i in range(5))
        retention = numeric[:, 5]
        bottleneck_raw = np.array(list(map(operator.attrgetter("bottleneck"), layers)), dtype=np.float64)
        has_bottleneck = ~np.isnan(bottleneck_raw) if total else np.zeros(0, dtype=bool)

        def config_column(name: str, dtype: type = np.int64) -> np.ndarray:
            return np.fromiter(map(operator.attrgetter(name), archs), dtype=dtype, count=len(archs))

        config = np.repeat(np.arange(len(archs)), counts)
        hidden = config_column("hidden_size")
        h = hidden[config]
        # kept_tokens() vectorised; retention is validated non-increasing, so a layer's kept
        # count is its own kept_tokens and the next layer's input.
        units = np.rint(retention * RETENTION_SCALE).astype(np.int64)
        kept = np.clip((units * seq_len + RETENTION_SCALE - 1) // RETENTION_SCALE, 1, seq_len)
        n_out = np.where(retention >= 1.0, seq_len, kept).astype(np.int64)
        n_in = np.empty_like(n_out)
        if total:
            n_in[1:] = n_out[:-1]
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            n_in[starts] = seq_len
        n_out = np.minimum(n_out, n_in)
        labels = np.fromiter((c or 0 for c in map(operator.attrgetter("num_labels"), archs)), np.int64, len(archs))
        return cls(
            seq_len=seq_len,
            config=config,
            h=h,
            w=np.where(has_bottleneck, np.nan_to_num(bottleneck_raw).astype(np.int64), h),
            a=a,
            k=k,
            v=v,
            f=f,
            s=s,
            bottleneck=has_bottleneck,
            n_in=n_in,
            n_out=n_out,
            hidden=hidden,
            num_layers=counts,
            gelu=config_column("hidden_act", object) == "gelu",
            layernorm=config_column("norm", object) == "layernorm",
            pooler=config_column("pooler", bool),
            labels=labels,
        )


def layer_calls(table: LayerTable) -> list[tuple[str, tuple[np.ndarray, ...], np.ndarray, np.ndarray]]:
    """Kernel calls of every layer: ``(family, shape columns, count per layer, mask)``.

    ``mask`` selects the layers that make the call; ``count`` multiplies it (stacked FFNs).
    The norm and activation family depend on the config, so both variants are listed,
    each masked to the configs that use it.
    """
    t = table
    one = np.ones_like(t.n_in)
    every = np.ones(len(t.n_in), dtype=bool)
    b = t.bottleneck
    ln = t.layernorm[t.config]
    ge = t.gelu[t.config]
    extracted = t.n_out < t.n_in
    calls = [
        ("linear", (t.n_in, t.h, t.w), one, b),
        ("linear", (t.n_in, t.w, t.a * t.k), 2 * one, every),
        ("linear", (t.n_in, t.w, t.a * t.v), one, every),
        ("attn_scores", (t.n_in, t.a, t.k), one, every),
        ("softmax", (t.n_in, t.a), one, every),
        ("attn_context", (t.n_in, t.a, t.v), one, every),
        ("linear", (t.n_in, t.a * t.v, t.w), one, every),
        ("add", (t.n_in, t.w), one, every),
        ("token_select", (t.n_in, t.a), one, extracted),
        ("gather", (t.n_out, t.w), one, extracted),
        ("gather", (t.n_out, t.h), one, extracted & b),
        ("linear", (t.n_out, t.w, t.f), t.s, every),
        ("linear", (t.n_out, t.f, t.w), t.s, every),
        ("add", (t.n_out, t.w), t.s, every),
        ("linear", (t.n_out, t.w, t.h), one, b),
        ("add", (t.n_out, t.h), one, b),
    ]
    for family, mask in (("layernorm", ln), ("nonorm", ~ln)):
        calls += [
            (family, (t.n_in, t.w), one, mask),  # attention norm
            (family, (t.n_out, t.w), one, mask),  # FFN norm
            (family, (t.n_out, t.h), one, mask & b),  # bottleneck norm
        ]
    for family, mask in (("gelu", ge), ("relu", ~ge)):
        calls.append((family, (t.n_out, t.f), t.s, mask))
    return calls


def config_calls(table: LayerTable) -> list[tuple[str, tuple[np.ndarray, ...], np.ndarray, np.ndarray]]:
    """Kernel calls made once per config (embeddings, head), in :func:`layer_calls`' format."""
    t = table
    n = np.full_like(t.hidden, t.seq_len)
    one = np.ones_like(t.hidden)
    head_only = ~t.pooler & (t.labels > 0)
    return [
        ("embedding", (n, t.hidden), one, np.ones(len(t.hidden), dtype=bool)),
        ("classifier", (t.hidden,), one, t.pooler),
        ("linear", (one, t.hidden, np.maximum(t.labels, 1)), one, head_only),
    ]


def call_counts(table: LayerTable) -> np.ndarray:
    """Kernel calls per config (embedding, head and every layer's), from :func:`layer_calls`."""
    per_layer = np.zeros(len(table.config), dtype=np.int64)
    for _, _, count, mask in layer_calls(table):
        per_layer += np.where(mask, count, 0)
    total = np.bincount(table.config, weights=per_layer, minlength=table.num_configs).astype(np.int64)
    for _, _, count, mask in config_calls(table):
        total += np.where(mask, count, 0)
    return total


def reference_calls(arch: ArchConfig, seq_len: int) -> list[tuple[str, tuple[int, ...], int]]:
    """The kernel calls of one config, spelled out in plain Python (for tests and docs).

    This is the readable version of :func:`layer_calls`; tests check that both agree.
    """
    h = arch.hidden_size
    calls: list[tuple[str, tuple[int, ...], int]] = [("embedding", (seq_len, h), 1)]
    for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(seq_len), strict=True):
        calls += layer_reference_calls(layer, h, n_in, n_out, arch.norm, arch.hidden_act)
    return calls + head_reference_calls(arch)


def head_reference_calls(arch: ArchConfig) -> list[tuple[str, tuple[int, ...], int]]:
    """The classifier head's kernel calls (pooler + tanh + linear, or the linear alone)."""
    h = arch.hidden_size
    if arch.pooler:
        return [("classifier", (h,), 1)]
    if arch.num_labels:
        return [("linear", (1, h, arch.num_labels), 1)]
    return []


def layer_reference_calls(
    layer: LayerConfig, h: int, n_in: int, n_out: int, norm: str, act: str
) -> list[tuple[str, tuple[int, ...], int]]:
    """The kernel calls of one layer: ``(family, shape, count)`` in plain Python."""
    w, a, k, v, f, s = layer.inner_width(h), layer.heads, layer.qk_dim, layer.v_dim, layer.ffn_dim, layer.ffn_stack
    calls: list[tuple[str, tuple[int, ...], int]] = []
    if layer.bottleneck is not None:
        calls.append(("linear", (n_in, h, w), 1))
    calls += [
        ("linear", (n_in, w, a * k), 2),
        ("linear", (n_in, w, a * v), 1),
        ("attn_scores", (n_in, a, k), 1),
        ("softmax", (n_in, a), 1),
        ("attn_context", (n_in, a, v), 1),
        ("linear", (n_in, a * v, w), 1),
        ("add", (n_in, w), 1),
        (norm, (n_in, w), 1),
    ]
    if n_out < n_in:
        calls += [("token_select", (n_in, a), 1), ("gather", (n_out, w), 1)]
        if layer.bottleneck is not None:
            calls.append(("gather", (n_out, h), 1))
    calls += [
        ("linear", (n_out, w, f), s),
        (act, (n_out, f), s),
        ("linear", (n_out, f, w), s),
        ("add", (n_out, w), s),
        (norm, (n_out, w), 1),
    ]
    if layer.bottleneck is not None:
        calls += [("linear", (n_out, w, h), 1), ("add", (n_out, h), 1), (norm, (n_out, h), 1)]
    return calls


__all__ = [
    "FAMILIES",
    "MATMUL_FAMILIES",
    "LayerTable",
    "call_counts",
    "config_calls",
    "head_reference_calls",
    "layer_calls",
    "layer_reference_calls",
    "reference_calls",
    "work",
]
