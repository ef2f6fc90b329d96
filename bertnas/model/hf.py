"""The compact model as a Hugging Face ``PreTrainedModel``, loadable without bertnas.

Every exported model directory carries this file (as ``modeling_bertnas.py``) beside
``functional.py``, ``params.py``, ``retention.py`` and ``retention_rule.py``, and its
``config.json`` names them in ``auto_map``; so, with transformers and torch only::

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)
    classify = pipeline("text-classification", model=DIR, trust_remote_code=True)

This module imports nothing from bertnas but those four files (``bertnas/export/hf.py``
rewrites the imports to relative ones when it copies them); :class:`bertnas.model.CompactBert`
is this class plus bertnas' own safe loading and its :class:`~bertnas.arch.ArchConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from bertnas.model.functional import RunOptions, bert_forward
from bertnas.model.params import EmbeddingParams, LayerParams

MODEL_TYPE = "bertnas-compact"


@dataclass(frozen=True)
class LayerSpec:
    """One layer's shape, as ``config.arch["layers"]`` stores it."""

    heads: int
    qk_dim: int
    v_dim: int
    ffn_dim: int
    ffn_stack: int = 1
    bottleneck: int | None = None
    retention: float = 1.0
    attention_out_bias: bool = True


class CompactBertConfig(PretrainedConfig):
    """Configuration of a compact BERT: a subnet whose every layer has its own shape.

    Args:
        arch: the architecture, as ``bertnas.arch.ArchConfig.to_dict()`` writes it:
            ``hidden_size``; ``layers``, one dict per kept layer with ``heads``,
            ``qk_dim`` / ``v_dim`` (per-head query-key and value widths), ``ffn_dim``,
            ``ffn_stack`` (FFNs in a row, MobileBERT), ``bottleneck`` (inner width or
            null), ``retention`` (share of the input's real tokens kept after the
            layer's attention, PoWER-BERT) and ``attention_out_bias`` (absent: true;
            false: the attention output projection has no bias); ``hidden_act`` (gelu / relu); ``norm``
            (layernorm / nonorm); ``vocab_size``, ``max_position_embeddings``,
            ``type_vocab_size``; ``num_labels``; ``pooler``; ``backbone``.
        arch_hash: bertnas' hash of ``arch`` (its identity in searches and manifests).
        layer_norm_eps: epsilon of every LayerNorm.
        hidden_dropout: dropout on embeddings, sub-layer outputs and the pooled output
            (training only).
        attention_dropout: dropout on attention probabilities (training only).
        task: the task the head was trained for (a GLUE name or a user task's name).
        bertnas_version: the bertnas version that wrote the model.
        extra: free-form metadata (not used by the forward pass).

    ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``,
    ``vocab_size``, ``max_position_embeddings`` and ``type_vocab_size`` mirror ``arch``
    (the largest layer where layers differ) for tools that read the usual BERT fields.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        arch: dict[str, Any] | None = None,
        arch_hash: str | None = None,
        layer_norm_eps: float = 1e-12,
        hidden_dropout: float = 0.1,
        attention_dropout: float = 0.1,
        pad_token_id: int = 0,
        task: str | None = None,
        bertnas_version: str | None = None,
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.arch = arch or {"hidden_size": 0, "layers": []}
        self.arch_hash = arch_hash
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.pad_token_id = pad_token_id
        self.task = task
        self.bertnas_version = bertnas_version
        self.extra = dict(extra or {})
        layers = self.arch.get("layers") or []
        self.hidden_size = int(self.arch.get("hidden_size") or 0)
        self.num_hidden_layers = len(layers)
        self.num_attention_heads = max((int(layer["heads"]) for layer in layers), default=0)
        self.intermediate_size = max((int(layer["ffn_dim"]) for layer in layers), default=0)
        self.vocab_size = int(self.arch.get("vocab_size", 30522))
        self.max_position_embeddings = int(self.arch.get("max_position_embeddings", 512))
        self.type_vocab_size = int(self.arch.get("type_vocab_size", 2))
        if self.arch.get("num_labels") and "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["num_labels"] = int(self.arch["num_labels"])
        super().__init__(**kwargs)

    @property
    def layer_specs(self) -> tuple[LayerSpec, ...]:
        keys = LayerSpec.__dataclass_fields__
        return tuple(LayerSpec(**{k: v for k, v in layer.items() if k in keys}) for layer in self.arch["layers"])


@dataclass
class CompactBertOutput(ModelOutput):
    """What the compact model returns (tuples hold one entry per layer, embeddings first)."""

    loss: torch.Tensor | None = None  # given labels: cross-entropy, or MSE for one output
    logits: torch.Tensor | None = None  # (batch, num_labels)
    last_hidden_state: torch.Tensor | None = None  # (batch, kept tokens, hidden)
    attention_mask: torch.Tensor | None = None  # (batch, kept tokens) bool: real tokens after retention
    pooler_output: torch.Tensor | None = None  # (batch, hidden)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # output_hidden_states: embeddings + each layer
    hidden_masks: tuple[torch.Tensor, ...] | None = None  # the padding mask of each hidden state
    attentions: tuple[torch.Tensor, ...] | None = None  # output_attentions: head-averaged maps per layer


class CompactBertPreTrainedModel(PreTrainedModel):
    config_class = CompactBertConfig
    base_model_prefix = "compact"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:  # for weights a checkpoint lacks
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.data.zero_()


class CompactBertForSequenceClassification(CompactBertPreTrainedModel):
    """A BERT whose every layer may have its own shape, bottleneck and token retention.

    Parameter names: ``embeddings.{word,position,token_type,norm.*}``,
    ``layers.N.{query,key,value,attention_out,attention_norm,extra_ffns.K.{up,down},ffn.{up,down},
    ffn_norm,bottleneck_in,bottleneck_out,bottleneck_norm}``, ``pooler``, ``classifier``.
    """

    def __init__(self, config: CompactBertConfig) -> None:
        super().__init__(config)
        arch = config.arch
        hidden = int(arch["hidden_size"])
        self.specs = config.layer_specs
        self.embeddings = EmbeddingParams(
            config.vocab_size, config.max_position_embeddings, config.type_vocab_size, hidden
        )
        self.layers = nn.ModuleList(
            LayerParams(
                hidden_size=hidden,
                width=spec.bottleneck or hidden,
                qk_size=spec.heads * spec.qk_dim,
                v_size=spec.heads * spec.v_dim,
                ffn_dim=spec.ffn_dim,
                extra_ffns=spec.ffn_stack - 1,
                bottleneck=spec.bottleneck or 0,
                attention_out_bias=spec.attention_out_bias,
            )
            for spec in self.specs
        )
        self.pooler = nn.Linear(hidden, hidden) if arch.get("pooler", True) else None
        labels = arch.get("num_labels")
        self.classifier = nn.Linear(hidden, int(labels)) if labels else None
        # Fixed-shape graphs (TFLite) set this: see RunOptions.static_tokens.
        self.static_tokens = False
        self.post_init()

    def run_options(self) -> RunOptions:
        return RunOptions(
            hidden_act=self.config.arch.get("hidden_act", "gelu"),
            norm=self.config.arch.get("norm", "layernorm"),
            layer_norm_eps=self.config.layer_norm_eps,
            hidden_dropout=self.config.hidden_dropout,
            attention_dropout=self.config.attention_dropout,
            training=self.training,
            static_tokens=self.static_tokens,
        )

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq) token ids
        attention_mask: torch.Tensor | None = None,  # (batch, seq) 1 for real tokens
        token_type_ids: torch.Tensor | None = None,  # (batch, seq) segment ids
        labels: torch.Tensor | None = None,  # (batch,) class ids, or (batch,) floats for regression
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        return_dict: bool | None = None,
        **_: Any,  # what pipelines and trainers pass besides (position_ids, ...): unused
    ) -> CompactBertOutput:
        out = bert_forward(
            input_ids,
            attention_mask,
            token_type_ids,
            self.embeddings.weights(),
            [(spec, params.weights()) for spec, params in zip(self.specs, self.layers, strict=True)],
            (self.pooler.weight, self.pooler.bias) if self.pooler is not None else None,
            (self.classifier.weight, self.classifier.bias) if self.classifier is not None else None,
            self.run_options(),
            output_hidden_states=bool(output_hidden_states),
            output_attentions=bool(output_attentions),
        )
        loss = None
        if labels is not None and out.logits is not None:
            if out.logits.shape[-1] == 1:
                loss = F.mse_loss(out.logits.squeeze(-1), labels.to(out.logits.dtype))
            else:
                loss = F.cross_entropy(out.logits, labels.long())
        return CompactBertOutput(
            loss=loss,
            logits=out.logits,
            last_hidden_state=out.last_hidden_state,
            attention_mask=out.attention_mask,
            pooler_output=out.pooler_output,
            hidden_states=tuple(out.hidden_states) if output_hidden_states else None,
            hidden_masks=tuple(out.hidden_masks) if output_hidden_states else None,
            attentions=tuple(out.attentions) if output_attentions else None,
        )


#: ``config.json``'s ``auto_map``: every Auto class the directory answers to.
AUTO_MAP = {
    "AutoConfig": "modeling_bertnas.CompactBertConfig",
    "AutoModel": "modeling_bertnas.CompactBertForSequenceClassification",
    "AutoModelForSequenceClassification": "modeling_bertnas.CompactBertForSequenceClassification",
}
