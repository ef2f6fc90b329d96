"""A compact model that is an ordinary BERT, written as a plain ``BertForSequenceClassification``.

A subnet whose layers all have the backbone's layout (every layer ``heads * head_dim ==
hidden``, one FFN width, no stacked FFNs, no bottleneck, no token retention, LayerNorm,
a pooler) needs no custom code at all: its tensors are renamed to transformers' BERT names
and it loads with ``AutoModelForSequenceClassification.from_pretrained(DIR)`` (no
``trust_remote_code``), ``pipeline(...)`` and optimum's ``ORTModelForSequenceClassification``
(``model.onnx`` beside ``config.json``). Fewer layers than the backbone are fine; fewer
heads per layer are not (transformers 5 has no per-layer head counts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bertnas import schema
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write, atomic_write_text
from bertnas.model.compact import CompactBert
from bertnas.model.params import hf_bert_names

PLAIN_DIR = "bert"


def plain_bert_reason(arch: ArchConfig) -> str | None:
    """None if ``arch`` is expressible as a plain BERT, else what stands in the way."""
    h = arch.hidden_size
    if not arch.num_labels:
        return "it has no classification head"
    if not arch.pooler:
        return "it has no pooler"
    if arch.norm != "layernorm":
        return f"its norm is {arch.norm}"
    heads = {layer.heads for layer in arch.layers}
    ffn = {layer.ffn_dim for layer in arch.layers}
    for layer in arch.layers:
        if layer.retention < 1.0:
            return f"layer {layer.index} drops tokens (retention {layer.retention:g})"
        if layer.bottleneck is not None:
            return f"layer {layer.index} has a bottleneck"
        if layer.ffn_stack != 1:
            return f"layer {layer.index} stacks {layer.ffn_stack} FFNs"
        if layer.qk_dim != layer.v_dim or layer.heads * layer.qk_dim != h:
            return (
                f"layer {layer.index} has {layer.heads} heads of {layer.qk_dim}/{layer.v_dim} (BERT: heads x dim = {h})"
            )
        for spec in schema.DIMENSIONS:  # any other dimension BERT has no room for: its default only
            value = getattr(layer, spec.name)
            if not spec.required and not schema.same_value(value, spec.default):
                return f"layer {layer.index} has {spec.name}={value!r} (BERT: {spec.default!r})"
    if len(heads) > 1:
        return f"its layers have different head counts {sorted(heads)}"
    if len(ffn) > 1:
        return f"its layers have different FFN widths {sorted(ffn)}"
    return None


def plain_bert_config(model: CompactBert) -> dict[str, Any]:
    arch = model.arch
    config = model.config
    return {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": arch.vocab_size,
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": len(arch.layers),
        "num_attention_heads": arch.layers[0].heads,
        "intermediate_size": arch.layers[0].ffn_dim,
        "hidden_act": arch.hidden_act,
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": arch.max_position_embeddings,
        "type_vocab_size": arch.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": config.pad_token_id,
        "id2label": {str(k): v for k, v in config.id2label.items()},
        "label2id": {v: int(k) for k, v in config.id2label.items()},
        "problem_type": "regression" if arch.num_labels == 1 else "single_label_classification",
        "bertnas_arch_hash": arch.hash(),
    }


def plain_bert_state(model: CompactBert) -> dict[str, torch.Tensor]:
    """The compact model's tensors under transformers' ``BertForSequenceClassification`` names."""
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    renamed = {}
    for ours, theirs in hf_bert_names(len(model.arch.layers)).items():
        renamed[theirs if theirs.startswith("classifier.") else f"bert.{theirs}"] = state.pop(ours)
    if state:
        raise RuntimeError(f"plain BERT conversion left tensors unnamed: {sorted(state)[:3]}")
    return renamed


def write_plain_bert(model: CompactBert, directory: Path, tokenizer: Any) -> Path:
    """Write ``directory`` (config.json, model.safetensors, tokenizer) as a plain BERT."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = plain_bert_state(model)
    atomic_write(directory / "model.safetensors", lambda path: save_file(state, path, metadata={"format": "pt"}))
    atomic_write_text(directory / "config.json", json.dumps(plain_bert_config(model), indent=2) + "\n")
    tokenizer.save_pretrained(str(directory))
    return directory
