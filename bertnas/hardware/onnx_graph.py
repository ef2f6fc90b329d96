"""ONNX graphs of single kernels and of whole subnets, op for op as in functional.py.

The onnxruntime profile times these graphs: each kernel family of
:mod:`bertnas.hardware.kernels` as a tiny model, and, for validation, a subnet as one
model built from its :class:`~bertnas.arch.ArchConfig` with random weights. Both use
the same builders, so a kernel is exactly the subgraph it stands for in the model.
Building a graph takes milliseconds (a ``torch.onnx`` export of a subnet takes
seconds), which keeps measuring and validating within minutes.

The ops follow what ``torch.onnx`` emits for ``bertnas/model/functional.py``: linear as
``MatMul`` + ``Add`` (weights as initializers, so onnxruntime can pre-pack them),
``LayerNormalization``, GELU as the ``Erf`` formula (onnxruntime fuses it), attention
with ``Reshape``/``Transpose``/``MatMul``/``Softmax``, token extraction with
``ReduceMean``/``ReduceSum``/``TopK``/``GatherElements``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bertnas import schema
from bertnas.arch import ArchConfig, kept_tokens

OPSET = 17
_FLOAT = TensorProto.FLOAT
_INT64 = TensorProto.INT64


class GraphBuilder:
    """Accumulates nodes and initializers; every helper returns its output's name."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.rng = np.random.default_rng(seed)
        self._count = 0
        self._constants: dict[tuple, str] = {}

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def input(self, name: str, shape: tuple[int, ...], dtype: int = _FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def init(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, values: list[int] | np.ndarray, dtype: type = np.int64) -> str:
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.init(array, "c")
        return self._constants[key]

    def weight(self, *shape: int, scale: float = 0.02) -> str:
        return self.init((self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        output = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def op2(self, op_type: str, inputs: list[str], **attrs: object) -> tuple[str, str]:
        outputs = [self._name(op_type.lower()), self._name(op_type.lower())]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, **attrs))
        return outputs[0], outputs[1]

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "bertnas",
            self.inputs,
            [helper.make_tensor_value_info(name, _FLOAT, None) for name in outputs],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bertnas")
        model.ir_version = 8
        # Fill in the outputs' shapes (a valid model names them; ONNX infers them from the ops).
        return onnx.shape_inference.infer_shapes(model)

    # ---------------------------------------------------------------- building blocks
    def linear(self, x: str, n_in: int, n_out: int, bias: bool = True) -> str:
        product = self.op("MatMul", [x, self.weight(n_in, n_out)])
        return self.op("Add", [product, self.weight(n_out)]) if bias else product

    def norm(self, x: str, width: int, kind: str) -> str:
        gamma = self.init(np.ones(width, dtype=np.float32))
        beta = self.init(np.zeros(width, dtype=np.float32))
        if kind == "nonorm":
            return self.op("Add", [self.op("Mul", [x, gamma]), beta])
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-12)

    def activation(self, x: str, kind: str) -> str:
        if kind == "relu":
            return self.op("Relu", [x])
        half = self.const(np.array(0.5, dtype=np.float32), np.float32)
        one = self.const(np.array(1.0, dtype=np.float32), np.float32)
        root = self.const(np.array(math.sqrt(2.0), dtype=np.float32), np.float32)
        erf = self.op("Erf", [self.op("Div", [x, root])])
        return self.op("Mul", [self.op("Mul", [x, half]), self.op("Add", [erf, one])])

    def split_heads(self, x: str, batch: int, tokens: int, heads: int, dim: int, perm: list[int]) -> str:
        shaped = self.op("Reshape", [x, self.const([batch, tokens, heads, dim])])
        return self.op("Transpose", [shaped], perm=perm)

    def scores(self, q: str, k: str, batch: int, tokens: int, heads: int, dim: int) -> str:
        query = self.split_heads(q, batch, tokens, heads, dim, [0, 2, 1, 3])
        key_t = self.split_heads(k, batch, tokens, heads, dim, [0, 2, 3, 1])
        scale = self.const(np.array(1.0 / math.sqrt(dim), dtype=np.float32), np.float32)
        return self.op("Mul", [self.op("MatMul", [query, key_t]), scale])

    def softmax(self, scores: str, additive_mask: str) -> str:
        return self.op("Softmax", [self.op("Add", [scores, additive_mask])], axis=-1)

    def context(self, probs: str, v: str, batch: int, tokens: int, heads: int, dim: int) -> str:
        value = self.split_heads(v, batch, tokens, heads, dim, [0, 2, 1, 3])
        merged = self.op("Transpose", [self.op("MatMul", [probs, value])], perm=[0, 2, 1, 3])
        return self.op("Reshape", [merged, self.const([batch, tokens, heads * dim])])

    def select(self, probs: str, tokens: int, kept: int) -> str:
        """Indices (batch, kept) of the most significant tokens, in original order ([CLS] first)."""
        mean = self.op("ReduceMean", [probs], axes=[1], keepdims=0)  # (B, q, k)
        received = self.op("ReduceSum", [mean, self.const([1])], keepdims=0)
        eye = self.init(np.eye(tokens, dtype=np.float32), "eye")
        self_attention = self.op("ReduceSum", [self.op("Mul", [mean, eye]), self.const([2])], keepdims=0)
        cls_bonus = np.zeros(tokens, dtype=np.float32)
        cls_bonus[0] = np.float32(1e9)  # [CLS] is always kept
        significance = self.op("Add", [self.op("Sub", [received, self_attention]), self.init(cls_bonus, "cls")])
        _, top = self.op2("TopK", [significance, self.const([kept])], axis=1, largest=1, sorted=1)
        ordered, _ = self.op2("TopK", [top, self.const([kept])], axis=1, largest=0, sorted=1)
        return ordered

    def gather(self, hidden: str, index: str, batch: int, kept: int, width: int) -> str:
        expanded = self.op(
            "Expand", [self.op("Unsqueeze", [index, self.const([-1])]), self.const([batch, kept, width])]
        )
        return self.op("GatherElements", [hidden, expanded], axis=1)

    def embedding(self, ids: str, types: str, tokens: int, hidden: int, vocab: int = 30522) -> str:
        word = self.op("Gather", [self.weight(vocab, hidden), ids])
        token_type = self.op("Gather", [self.weight(2, hidden), types])
        positions = self.op("Gather", [self.weight(512, hidden), self.const(list(range(tokens)))])
        summed = self.op("Add", [self.op("Add", [word, token_type]), positions])
        return self.norm(summed, hidden, "layernorm")

    def head(self, x: str, hidden: int, labels: int, pooler: bool) -> str:
        cls = self.op("Gather", [x, self.const(0)], axis=1)
        if pooler:
            cls = self.op("Tanh", [self.linear(cls, hidden, hidden)])
        return self.linear(cls, hidden, labels)


def _ids(builder: GraphBuilder, batch: int, tokens: int) -> tuple[str, str, str]:
    ids = builder.input("input_ids", (batch, tokens), _INT64)
    types = builder.input("token_type_ids", (batch, tokens), _INT64)
    mask = builder.input("attention_mask", (batch, tokens), _INT64)
    return ids, types, mask


def feeds_for(model: onnx.ModelProto, seed: int = 0, vocab_size: int = 30522) -> dict[str, np.ndarray]:
    """Random inputs of the right shapes and types for ``model``."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == _INT64:
            if value.name == "input_ids":
                feeds[value.name] = rng.integers(1, vocab_size, size=shape, dtype=np.int64)
            elif value.name == "attention_mask":
                feeds[value.name] = np.ones(shape, dtype=np.int64)
            elif value.name == "index":
                tokens = shape[-1]
                feeds[value.name] = (
                    np.sort(rng.permutation(max(tokens * 2, 2))[:tokens]).reshape(shape).astype(np.int64)
                )
            else:
                feeds[value.name] = np.zeros(shape, dtype=np.int64)
        else:
            array = rng.standard_normal(shape).astype(np.float32)
            if value.name == "probs":
                array = np.abs(array) / np.abs(array).sum(axis=-1, keepdims=True)
            feeds[value.name] = array
    return feeds


def kernel_model(family: str, shape: tuple[int, ...], batch: int = 1, seq_len: int = 128) -> onnx.ModelProto:
    """One call of ``family`` at ``shape`` as an ONNX model (inputs: activations; weights: initializers)."""
    b = GraphBuilder()
    if family == "linear":
        m, k, n = shape
        out = b.linear(b.input("x", (batch, m, k)), k, n)
    elif family == "attn_scores":
        t, a, d = shape
        out = b.scores(b.input("q", (batch, t, a * d)), b.input("k", (batch, t, a * d)), batch, t, a, d)
    elif family == "softmax":
        t, a = shape
        out = b.softmax(b.input("scores", (batch, a, t, t)), b.input("mask", (batch, 1, 1, t)))
    elif family == "attn_context":
        t, a, d = shape
        out = b.context(b.input("probs", (batch, a, t, t)), b.input("v", (batch, t, a * d)), batch, t, a, d)
    elif family == "add":
        t, w = shape
        out = b.op("Add", [b.input("x", (batch, t, w)), b.input("y", (batch, t, w))])
    elif family in ("layernorm", "nonorm"):
        t, w = shape
        out = b.norm(b.input("x", (batch, t, w)), w, family)
    elif family in ("gelu", "relu"):
        t, w = shape
        out = b.activation(b.input("x", (batch, t, w)), family)
    elif family == "token_select":
        t, a = shape
        kept = kept_tokens(0.8, t)
        out = b.op("Cast", [b.select(b.input("probs", (batch, a, t, t)), t, kept)], to=_FLOAT)
    elif family == "gather":
        t, w = shape
        source = max(t * 2, 2)
        index = b.input("index", (batch, t), _INT64)
        out = b.gather(b.input("x", (batch, source, w)), index, batch, t, w)
    elif family == "embedding":
        t, h = shape
        ids, types, _ = _ids(b, batch, t)
        out = b.embedding(ids, types, t, h)
    elif family == "classifier":
        (h,) = shape
        out = b.head(b.input("x", (batch, seq_len, h)), h, 2, pooler=True)
    else:
        raise ValueError(f"unknown kernel family {family!r}")
    return b.model([out])


class _Layer:
    """One encoder layer's dataflow: a method per op of :func:`bertnas.schema.layer_ops`, named
    like it. ``x`` is the residual stream (width h), ``u`` the inner stream (width w; the same
    tensor as ``x`` until a bottleneck projects it), ``t`` a sub-layer's output before its residual."""

    def __init__(self, b: GraphBuilder, x: str, additive: str, d: tuple, batch: int) -> None:
        self.b, self.d, self.batch, self.additive = b, d, batch, additive
        self.x = self.u = self.t = x
        self.q = self.k = self.v = self.probs = self.index = ""

    def run(self, ops: list[schema.Op]) -> str:
        for op in schema.run_order(ops):
            builder = getattr(self, op.name, None)
            if builder is None:
                raise NotImplementedError(f"onnx_graph has no builder for the schema's op {op.name!r}")
            builder(op)
        return self.x if self.d.bottleneck else self.u  # without a bottleneck u is the layer's output

    def _linear(self, x: str, op: schema.Op) -> str:
        _, n_in, n_out = op.shape
        return self.b.linear(x, n_in, n_out, bias=op.bias)

    def bottleneck_in(self, op: schema.Op) -> None:
        self.u = self._linear(self.x, op)

    def query(self, op: schema.Op) -> None:
        self.q = self._linear(self.u, op)

    def key(self, op: schema.Op) -> None:
        self.k = self._linear(self.u, op)

    def value(self, op: schema.Op) -> None:
        self.v = self._linear(self.u, op)

    def scores(self, op: schema.Op) -> None:
        tokens, heads, dim = op.shape
        self.t = self.b.scores(self.q, self.k, self.batch, tokens, heads, dim)

    def softmax(self, op: schema.Op) -> None:
        self.probs = self.b.softmax(self.t, self.additive)

    def context(self, op: schema.Op) -> None:
        tokens, heads, dim = op.shape
        self.t = self.b.context(self.probs, self.v, self.batch, tokens, heads, dim)

    def attention_out(self, op: schema.Op) -> None:
        self.t = self._linear(self.t, op)

    def attention_residual(self, op: schema.Op) -> None:
        self.t = self.b.op("Add", [self.u, self.t])

    def attention_norm(self, op: schema.Op) -> None:
        self.u = self.b.norm(self.t, op.shape[1], op.family)

    def select(self, op: schema.Op) -> None:
        self.index = self.b.select(self.probs, op.shape[0], self.d.n_out)

    def gather(self, op: schema.Op) -> None:
        tokens, width = op.shape
        self.u = self.b.gather(self.u, self.index, self.batch, tokens, width)

    def gather_residual(self, op: schema.Op) -> None:
        tokens, width = op.shape
        self.x = self.b.gather(self.x, self.index, self.batch, tokens, width)

    def ffn_up(self, op: schema.Op) -> None:
        self.t = self._linear(self.u, op)

    def ffn_act(self, op: schema.Op) -> None:
        self.t = self.b.activation(self.t, op.family)

    def ffn_down(self, op: schema.Op) -> None:
        self.t = self._linear(self.t, op)

    def ffn_residual(self, op: schema.Op) -> None:
        self.u = self.b.op("Add", [self.u, self.t])

    def ffn_norm(self, op: schema.Op) -> None:
        self.u = self.b.norm(self.u, op.shape[1], op.family)

    def bottleneck_out(self, op: schema.Op) -> None:
        self.t = self._linear(self.u, op)

    def bottleneck_residual(self, op: schema.Op) -> None:
        self.t = self.b.op("Add", [self.x, self.t])

    def bottleneck_norm(self, op: schema.Op) -> None:
        self.x = self.b.norm(self.t, op.shape[1], op.family)


def arch_model(arch: ArchConfig, seq_len: int, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """The whole subnet (random weights) at ``seq_len`` real tokens, as one ONNX model: each
    layer the schema's ops (:func:`bertnas.schema.layer_ops`) in order, built by :class:`_Layer`."""
    b = GraphBuilder(seed)
    ids, types, mask = _ids(b, batch, seq_len)
    h = arch.hidden_size
    x = b.embedding(ids, types, seq_len, h, arch.vocab_size)
    minimum = np.float32(np.finfo(np.float32).min)
    for layer, (n_in, n_out) in zip(arch.layers, arch.token_counts(seq_len), strict=True):
        # The additive mask is rebuilt per layer, as in functional.layer_forward.
        current_mask = mask if n_in == seq_len else b.op("Slice", [mask, b.const([0]), b.const([n_in]), b.const([1])])
        inverted = b.op(
            "Sub", [b.const(np.array(1.0, np.float32), np.float32), b.op("Cast", [current_mask], to=_FLOAT)]
        )
        additive = b.op("Unsqueeze", [b.op("Mul", [inverted, b.const(np.array(minimum), np.float32)]), b.const([1, 2])])
        inputs = schema.layer_inputs(layer, h, n_in, n_out, arch.norm, arch.hidden_act)
        x = _Layer(b, x, additive, inputs, batch).run(schema.active_ops(inputs))
    if arch.pooler or arch.num_labels:
        x = b.head(x, h, arch.num_labels or 2, arch.pooler)
    return b.model([x])


__all__ = ["GraphBuilder", "arch_model", "feeds_for", "kernel_model"]
