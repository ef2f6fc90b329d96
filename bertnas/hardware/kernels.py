"""The building blocks of the unified space and the shapes an architecture runs them at.

A subnet's forward pass (``bertnas/model/functional.py``) is a fixed sequence of a few
kinds of kernel. Each *family* below names one kind and its shape axes; a hardware
profile stores one latency table (or an analytic cost) per family, and the predictor
prices a config by listing every kernel call with its shape and summing.

A layer's calls are its operations as the layer schema lists them
(:func:`bertnas.schema.layer_ops`), one path for both uses: :func:`layer_reference_calls`
evaluates the list on one layer's plain numbers, :func:`layer_calls` on numpy columns of
many layers of many configs (so that 100k configs are priced with a few numpy
operations). Per kept layer, with ``h`` the residual width, ``w`` the inner width
(bottleneck or ``h``), ``a`` heads, ``k``/``v`` head dims, ``f`` FFN width, ``s`` stacked
FFNs, ``n_in`` tokens entering and ``n_out`` tokens kept after attention (retention),
that list reads::

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
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from bertnas import schema
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

# The families grouped by how a runtime's whole graph treats them, for the corrections'
# per-group scales (:class:`bertnas.hardware.profile.Corrections`): a graph runtime fuses
# elementwise operators into their neighbours (onnxruntime: bias + GELU, add + LayerNorm;
# XNNPACK likewise), so a kernel timed alone prices them at far more than they add to a
# model, while a matrix product costs more inside a model than in a loop that finds its
# weights in cache.
KERNEL_GROUPS: dict[str, tuple[str, ...]] = {
    "matmul": ("linear", "attn_scores", "attn_context"),
    "elementwise": ("softmax", "add", "layernorm", "nonorm", "gelu", "relu"),
    "selection": ("token_select", "gather"),
    "model": ("embedding", "classifier"),
}
GROUP_OF: dict[str, str] = {family: group for group, families in KERNEL_GROUPS.items() for family in families}
assert set(GROUP_OF) == set(FAMILIES), "every kernel family belongs to exactly one group"


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

    Layer columns (one entry per kept layer): ``config`` (which config), ``h``, ``n_in``,
    ``n_out`` and ``dimensions`` (one column per schema dimension by name, as
    :func:`bertnas.schema.layer_columns` reads them). Config columns (one entry per
    config): ``hidden``, ``num_layers``, ``gelu``, ``layernorm``, ``pooler``, ``labels``.
    """

    seq_len: int
    config: np.ndarray
    h: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    dimensions: dict[str, np.ndarray]
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
        dimensions = schema.layer_columns(layers)
        retention = dimensions["retention"]

        def config_column(name: str, dtype: type = np.int64) -> np.ndarray:
            return np.fromiter(map(operator.attrgetter(name), archs), dtype=dtype, count=len(archs))

        config = np.repeat(np.arange(len(archs)), counts)
        hidden = config_column("hidden_size")
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
            h=hidden[config],
            n_in=n_in,
            n_out=n_out,
            dimensions=dimensions,
            hidden=hidden,
            num_layers=counts,
            gelu=config_column("hidden_act", object) == "gelu",
            layernorm=config_column("norm", object) == "layernorm",
            pooler=config_column("pooler", bool),
            labels=labels,
        )

    def inputs(self) -> tuple:
        """The layers as :data:`bertnas.schema.LayerInputs` of columns; norm and activation as
        :class:`~bertnas.schema.Choice` of the two families, masked to the configs using each."""
        layernorm, gelu = self.layernorm[self.config], self.gelu[self.config]
        return schema.LayerInputs(
            h=self.h,
            n_in=self.n_in,
            n_out=self.n_out,
            norm=schema.Choice((("layernorm", layernorm), ("nonorm", ~layernorm))),
            act=schema.Choice((("gelu", gelu), ("relu", ~gelu))),
            **self.dimensions,
        )


def layer_calls(table: LayerTable) -> list[tuple[str, tuple[np.ndarray, ...], np.ndarray, np.ndarray]]:
    """Kernel calls of every layer: ``(family, shape columns, count per layer, mask)``.

    The schema's ops (:func:`bertnas.schema.layer_ops`) over the table's columns. ``mask``
    selects the layers that make the call; ``count`` multiplies it (stacked FFNs). The norm
    and activation family depend on the config, so both variants are listed, each masked to
    the configs that use it.
    """
    size = len(table.n_in)
    every = np.ones(size, dtype=bool)
    calls = []
    for op in schema.layer_ops(table.inputs()):
        shape = tuple(np.broadcast_to(np.asarray(x, dtype=np.int64), size) for x in op.shape)
        count = np.broadcast_to(np.asarray(op.count, dtype=np.int64), size)
        when = every if op.when is True else np.asarray(op.when, dtype=bool)
        options = op.family.options if isinstance(op.family, schema.Choice) else ((op.family, every),)
        for family, mask in options:
            calls.append((family, shape, count, when & mask))
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
    """The kernel calls of one config in plain Python: the embedding, every layer's
    (:func:`layer_reference_calls`, what :meth:`LatencyPredictor.predict` prices) and the head's."""
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
    """The kernel calls of one layer: ``(family, shape, count)`` in plain Python.

    The schema's ops (:func:`bertnas.schema.layer_ops`) on this layer's numbers, those it makes,
    through their compiled form (:func:`bertnas.schema.layer_calls`: the predictor prices every
    new layer this way).
    """
    return schema.layer_calls(layer, h, n_in, n_out, norm, act)


__all__ = [
    "FAMILIES",
    "GROUP_OF",
    "KERNEL_GROUPS",
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
