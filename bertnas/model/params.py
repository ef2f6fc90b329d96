"""Parameter containers shared by the supernet and the compact model.

The supernet holds these at the backbone's full size (plus the extra stacked FFNs and
bottleneck projections it adds); a compact model holds them at exactly a subnet's size.
Same module tree, same parameter names: an extracted model's state dict is the
supernet's sliced tensors under the same names.
"""

from __future__ import annotations

import torch
from torch import nn

from bertnas.model.functional import Affine, EmbeddingWeights, FFNWeights, LayerWeights


class NormParams(nn.Module):
    """Weight and bias of a LayerNorm (or MobileBERT NoNorm)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def affine(self) -> Affine:
        return self.weight, self.bias


def _affine(linear: nn.Linear) -> Affine:
    return linear.weight, linear.bias


class FFNParams(nn.Module):
    def __init__(self, width: int, ffn_dim: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, ffn_dim)
        self.down = nn.Linear(ffn_dim, width)

    def weights(self) -> FFNWeights:
        return FFNWeights(_affine(self.up), _affine(self.down))


class LayerParams(nn.Module):
    """One encoder layer.

    ``width`` is the inner width the attention and FFNs run at (a compact model's
    bottleneck, else the hidden size); ``bottleneck`` is the width of the bottleneck
    projections (0: none). In a compact model the two agree; the supernet runs at full
    width and keeps bottleneck projections of the largest bottleneck its space allows.
    """

    def __init__(
        self,
        hidden_size: int,
        width: int,
        qk_size: int,
        v_size: int,
        ffn_dim: int,
        extra_ffns: int = 0,
        bottleneck: int = 0,
        attention_out_bias: bool = True,
    ) -> None:
        super().__init__()
        self.query = nn.Linear(width, qk_size)
        self.key = nn.Linear(width, qk_size)
        self.value = nn.Linear(width, v_size)
        self.attention_out = nn.Linear(v_size, width, bias=attention_out_bias)
        self.attention_norm = NormParams(width)
        self.extra_ffns = nn.ModuleList(FFNParams(width, ffn_dim) for _ in range(extra_ffns))
        self.ffn = FFNParams(width, ffn_dim)
        self.ffn_norm = NormParams(width)
        if bottleneck:
            self.bottleneck_in = nn.Linear(hidden_size, bottleneck)
            self.bottleneck_out = nn.Linear(bottleneck, hidden_size)
            self.bottleneck_norm = NormParams(hidden_size)

    @property
    def has_bottleneck(self) -> bool:
        return hasattr(self, "bottleneck_in")

    def weights(self, extra_ffns: int | None = None) -> LayerWeights:
        """This layer's tensors as they are (a compact model's layer)."""
        extras = self.extra_ffns if extra_ffns is None else self.extra_ffns[:extra_ffns]
        weights = LayerWeights(
            query=_affine(self.query),
            key=_affine(self.key),
            value=_affine(self.value),
            attention_out=_affine(self.attention_out),
            attention_norm=self.attention_norm.affine(),
            extra_ffns=[ffn.weights() for ffn in extras],
            ffn=self.ffn.weights(),
            ffn_norm=self.ffn_norm.affine(),
        )
        if self.has_bottleneck:
            weights.bottleneck_in = _affine(self.bottleneck_in)
            weights.bottleneck_out = _affine(self.bottleneck_out)
            weights.bottleneck_norm = self.bottleneck_norm.affine()
        return weights


class EmbeddingParams(nn.Module):
    def __init__(self, vocab_size: int, max_positions: int, type_vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.word = nn.Parameter(torch.zeros(vocab_size, hidden_size))
        self.position = nn.Parameter(torch.zeros(max_positions, hidden_size))
        self.token_type = nn.Parameter(torch.zeros(type_vocab_size, hidden_size))
        self.norm = NormParams(hidden_size)

    def weights(self) -> EmbeddingWeights:
        return EmbeddingWeights(self.word, self.position, self.token_type, self.norm.affine())


def layer_state_dict(prefix: str, weights: LayerWeights) -> dict[str, torch.Tensor]:
    """Name every tensor of ``weights`` as :class:`LayerParams` names its parameters."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, affine: Affine | None) -> None:
        if affine is not None:
            state[f"{prefix}{name}.weight"] = affine[0]
            if affine[1] is not None:  # a projection without bias (attention_out_bias false)
                state[f"{prefix}{name}.bias"] = affine[1]

    put("query", weights.query)
    put("key", weights.key)
    put("value", weights.value)
    put("attention_out", weights.attention_out)
    put("attention_norm", weights.attention_norm)
    for k, extra in enumerate(weights.extra_ffns):
        put(f"extra_ffns.{k}.up", extra.up)
        put(f"extra_ffns.{k}.down", extra.down)
    put("ffn.up", weights.ffn.up)
    put("ffn.down", weights.ffn.down)
    put("ffn_norm", weights.ffn_norm)
    put("bottleneck_in", weights.bottleneck_in)
    put("bottleneck_out", weights.bottleneck_out)
    put("bottleneck_norm", weights.bottleneck_norm)
    return state


#: Our names of a layer's parameter modules -> transformers' ``BertLayer`` names.
_HF_LAYER_NAMES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_out": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "ffn.up": "intermediate.dense",
    "ffn.down": "output.dense",
    "ffn_norm": "output.LayerNorm",
}


def hf_bert_names(num_layers: int, pooler: bool = True, classifier: bool = True) -> dict[str, str]:
    """Our parameter names -> a ``transformers`` BERT's, for the backbone's own tensors (no stacked FFNs
    or bottlenecks): the encoder's and the pooler's relative to ``BertModel`` (``bert.`` dropped),
    the classifier's as ``BertForSequenceClassification`` names it."""
    names = {
        "embeddings.word": "embeddings.word_embeddings.weight",
        "embeddings.position": "embeddings.position_embeddings.weight",
        "embeddings.token_type": "embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    for i in range(num_layers):
        for ours, theirs in _HF_LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{kind}"] = f"encoder.layer.{i}.{theirs}.{kind}"
    for kind in ("weight", "bias"):
        if pooler:
            names[f"pooler.{kind}"] = f"pooler.dense.{kind}"
        if classifier:
            names[f"classifier.{kind}"] = f"classifier.{kind}"
    return names
