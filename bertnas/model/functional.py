"""The math of a (compressed) BERT forward pass, written once.

Both the elastic supernet and the standalone compact model run *this* code; they differ
only in where the weights come from (slices of the full-size tensors vs. tensors that
already have the subnet's shape). That is what makes an extracted model compute exactly
what the supernet computed for the same subnet.

One layer, with ``h`` the residual width and ``w`` the inner width (the bottleneck if the
layer has one, else ``h``)::

    u = x                                  (no bottleneck)
    u = W_in x + b_in                      (bottleneck: h -> w)
    u = Norm(u + Attention(u))             attention on n_in tokens
    keep the most significant tokens of u (and of x)   -> n_out tokens  (retention < 1)
    u = u + FFN_k(u)  for each extra stacked FFN k     (no norm: zero-initialised = identity)
    u = Norm(u + FFN(u))                   the backbone's FFN
    x = u                                  (no bottleneck)
    x = Norm(x + W_out u + b_out)          (bottleneck: w -> h, residual over the whole block)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from bertnas.model.retention import gather_tokens, kept_counts, select_tokens, token_significance
from bertnas.retention_rule import kept_tokens

# This module, retention.py, params.py, hf.py and bertnas/retention_rule.py are copied into
# every exported Hugging Face model directory (bertnas/export/hf.py): they import nothing
# else from bertnas.


class LayerShape(Protocol):
    """What the forward pass reads of a layer's shape (:class:`bertnas.arch.LayerConfig` has it)."""

    heads: int
    qk_dim: int
    v_dim: int
    retention: float


Affine = tuple[torch.Tensor, torch.Tensor]  # (weight, bias)


@dataclass
class FFNWeights:
    up: Affine  # (ffn_dim, width), (ffn_dim,)
    down: Affine  # (width, ffn_dim), (width,)


@dataclass
class LayerWeights:
    """Tensors of one layer, already in the subnet's shapes."""

    query: Affine  # (heads*qk_dim, width)
    key: Affine
    value: Affine  # (heads*v_dim, width)
    attention_out: Affine  # (width, heads*v_dim); bias None where the layer has none (attention_out_bias)
    attention_norm: Affine
    extra_ffns: list[FFNWeights]  # stacked FFNs before the backbone's own
    ffn: FFNWeights
    ffn_norm: Affine
    bottleneck_in: Affine | None = None  # (width, hidden)
    bottleneck_out: Affine | None = None  # (hidden, width)
    bottleneck_norm: Affine | None = None


@dataclass
class EmbeddingWeights:
    word: torch.Tensor  # (vocab, hidden)
    position: torch.Tensor  # (max_positions, hidden)
    token_type: torch.Tensor  # (type_vocab, hidden)
    norm: Affine


@dataclass
class RunOptions:
    """Everything a forward pass needs besides weights and shapes."""

    hidden_act: str = "gelu"
    norm: str = "layernorm"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    training: bool = False
    # Fixed-shape graphs (TFLite) cannot size a tensor from the data: token selection then
    # keeps as many slots as an input of the full sequence length would, the extra slots
    # masked, which leaves the logits unchanged.
    static_tokens: bool = False


@dataclass
class ForwardOutput:
    """What :func:`bert_forward` returns (named apart from transformers' ``BertOutput``, which is
    the FFN's output sub-module there)."""

    last_hidden_state: torch.Tensor  # (batch, kept tokens, hidden)
    attention_mask: torch.Tensor  # (batch, kept tokens) bool: real tokens after retention
    pooler_output: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: list[torch.Tensor] = field(default_factory=list)  # embeddings + each layer
    hidden_masks: list[torch.Tensor] = field(default_factory=list)  # the mask of each hidden state
    # output_attentions: each layer's attention map averaged over its heads, (batch, tokens in, tokens in)
    attentions: list[torch.Tensor] = field(default_factory=list)


def _norm(x: torch.Tensor, weights: Affine, options: RunOptions) -> torch.Tensor:
    weight, bias = weights
    if options.norm == "nonorm":  # MobileBERT's NoNorm: an elementwise affine map
        return x * weight + bias
    return F.layer_norm(x, (x.shape[-1],), weight, bias, options.layer_norm_eps)


def _activation(x: torch.Tensor, options: RunOptions) -> torch.Tensor:
    return F.gelu(x) if options.hidden_act == "gelu" else F.relu(x)


def _dropout(x: torch.Tensor, p: float, options: RunOptions) -> torch.Tensor:
    return F.dropout(x, p, training=True) if options.training and p > 0 else x


def _ffn(x: torch.Tensor, weights: FFNWeights, options: RunOptions) -> torch.Tensor:
    hidden = _activation(F.linear(x, *weights.up), options)
    return _dropout(F.linear(hidden, *weights.down), options.hidden_dropout, options)


def attention(
    x: torch.Tensor,
    additive_mask: torch.Tensor,
    weights: LayerWeights,
    shape: LayerShape,
    options: RunOptions,
    head_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head self-attention; returns (output before residual, attention probs)."""
    batch, tokens, _ = x.shape
    heads = shape.heads
    query = F.linear(x, *weights.query).view(batch, tokens, heads, shape.qk_dim).transpose(1, 2)
    key = F.linear(x, *weights.key).view(batch, tokens, heads, shape.qk_dim).transpose(1, 2)
    value = F.linear(x, *weights.value).view(batch, tokens, heads, shape.v_dim).transpose(1, 2)
    scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(shape.qk_dim))
    probs = torch.softmax(scores + additive_mask, dim=-1)
    context = torch.matmul(_dropout(probs, options.attention_dropout, options), value)
    if head_mask is not None:  # used by rewiring to measure each head's importance
        context = context * head_mask.view(1, heads, 1, 1)
    context = context.transpose(1, 2).reshape(batch, tokens, heads * shape.v_dim)
    return F.linear(context, *weights.attention_out), probs


def layer_forward(
    x: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
    weights: LayerWeights,
    shape: LayerShape,
    options: RunOptions,
    head_mask: torch.Tensor | None = None,
    attentions: list[torch.Tensor] | None = None,
    seq_len: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One encoder layer; returns the new hidden states and their padding mask (and appends
    its head-averaged attention map to ``attentions`` when given). ``seq_len`` is the
    input's padded length, which sizes the kept tokens under ``static_tokens``."""
    additive_mask = (~mask).to(x.dtype).mul(torch.finfo(x.dtype).min)[:, None, None, :]
    inner = F.linear(x, *weights.bottleneck_in) if weights.bottleneck_in is not None else x
    attended, probs = attention(inner, additive_mask, weights, shape, options, head_mask)
    if attentions is not None:
        attentions.append(probs.mean(dim=1))  # (batch, tokens, tokens): comparable across head counts
    inner = _norm(inner + _dropout(attended, options.hidden_dropout, options), weights.attention_norm, options)

    if shape.retention < 1.0:
        counts = kept_counts(shape.retention, lengths, mask.sum(dim=1))
        # The skip is a data-dependent branch; an exported graph (ONNX) always selects, which
        # gives the same logits: when nothing is dropped only masked padding slots go.
        if options.static_tokens:  # (batch, tokens) -> (batch, kept_tokens(r, full length)) slots
            width = min(kept_tokens(shape.retention, seq_len), mask.shape[1])
            index, mask = select_tokens(token_significance(probs, mask), mask, counts, width)
            inner = gather_tokens(inner, index)
            if weights.bottleneck_in is not None:
                x = gather_tokens(x, index)
        elif torch.compiler.is_exporting() or bool((counts < mask.sum(dim=1)).any()):
            index, mask = select_tokens(token_significance(probs, mask), mask, counts)
            inner = gather_tokens(inner, index)
            if weights.bottleneck_in is not None:
                x = gather_tokens(x, index)  # the residual stream is carried past attention too

    for extra in weights.extra_ffns:
        inner = inner + _ffn(inner, extra, options)
    inner = _norm(inner + _ffn(inner, weights.ffn, options), weights.ffn_norm, options)

    if weights.bottleneck_out is None:
        return inner, mask
    assert weights.bottleneck_norm is not None
    projected = _dropout(F.linear(inner, *weights.bottleneck_out), options.hidden_dropout, options)
    return _norm(x + projected, weights.bottleneck_norm, options), mask


def embed(
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    weights: EmbeddingWeights,
    options: RunOptions,
) -> torch.Tensor:
    tokens = input_ids.shape[1]
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    positions = torch.arange(tokens, device=input_ids.device)
    x = (
        F.embedding(input_ids, weights.word)
        + F.embedding(token_type_ids, weights.token_type)
        + F.embedding(positions, weights.position).unsqueeze(0)
    )
    # Embeddings always use LayerNorm (the backbone's); `norm` applies to the encoder layers.
    x = F.layer_norm(x, (x.shape[-1],), *weights.norm, options.layer_norm_eps)
    return _dropout(x, options.hidden_dropout, options)


def bert_forward(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    embeddings: EmbeddingWeights,
    layers: Sequence[tuple[LayerShape, LayerWeights]],
    pooler: Affine | None,
    classifier: Affine | None,
    options: RunOptions,
    head_mask: Sequence[torch.Tensor] | None = None,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
) -> ForwardOutput:
    """The whole model: embeddings, encoder layers (with retention), pooler, classifier."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    x = embed(input_ids, token_type_ids, embeddings, options)
    hidden_states, hidden_masks = ([x], [mask]) if output_hidden_states else ([], [])
    attentions: list[torch.Tensor] | None = [] if output_attentions else None
    for position, (shape, weights) in enumerate(layers):
        layer_head_mask = head_mask[position] if head_mask is not None else None
        x, mask = layer_forward(
            x, mask, lengths, weights, shape, options, layer_head_mask, attentions, seq_len=input_ids.shape[1]
        )
        if output_hidden_states:
            hidden_states.append(x)
            hidden_masks.append(mask)
    output = ForwardOutput(
        last_hidden_state=x,
        attention_mask=mask,
        hidden_states=hidden_states,
        hidden_masks=hidden_masks,
        attentions=attentions or [],
    )
    if pooler is not None:
        # [CLS] is never dropped and order is kept, so position 0 is still [CLS].
        output.pooler_output = torch.tanh(F.linear(x[:, 0], *pooler))
        if classifier is not None:
            pooled = _dropout(output.pooler_output, options.hidden_dropout, options)
            output.logits = F.linear(pooled, *classifier)
    elif classifier is not None:
        output.logits = F.linear(x[:, 0], *classifier)
    return output
