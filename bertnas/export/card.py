"""The model card (README.md) of one exported model, written from its manifest entry."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _layer_rows(arch: dict[str, Any]) -> list[str]:
    rows = [
        "| layer | heads | qk/v dim | FFN dim | FFN stack | bottleneck | retention |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for layer in arch["layers"]:
        rows.append(
            f"| {layer['index']} | {layer['heads']} | {layer['qk_dim']}/{layer['v_dim']} | {layer['ffn_dim']} "
            f"| {layer['ffn_stack']} | {layer['bottleneck'] or '-'} | {layer['retention']:g} |"
        )
    return rows


def render_card(entry: dict[str, Any]) -> str:
    """Markdown for ``entry`` (one model of ``manifest.json``)."""
    arch = entry["arch"]
    name = entry["name"]
    metric = entry["metric_name"]
    lines = [
        f"# {name}: compressed {arch.get('backbone') or 'BERT'} for {entry['task']}",
        "",
        f"Found by `bertnas search` ({entry['source'].get('study', 'no study recorded')}"
        + (f", trial {entry['trial']}" if entry.get("trial") is not None else "")
        + f"); architecture hash `{entry['arch_hash']}`. Exported with bertnas {entry['bertnas_version']}.",
        "",
        "## Quality and size",
        "",
        "| | |",
        "|---|---|",
        f"| weights | {_weights(entry)} |",
        f"| search-split {metric} (the search's score, shared weights) | {_number(entry.get('search_metric'))} |",
        f"| dev {metric} (as reported for these weights) | {_number(entry.get('metric_reported'))} |",
        f"| dev {metric} (recomputed from this export, {entry['dev_examples']} examples) | {entry['metric']:.4f} |",
        f"| parameters | {entry['params'] / 1e6:.2f} M |",
        f"| MACs at sequence length {entry['macs_seq_len']} | {entry['macs'] / 1e6:.1f} M |",
        f"| layers / hidden size | {len(arch['layers'])} / {arch['hidden_size']} |",
        "",
        "## Latency",
        "",
        "Predicted by bertnas' latency profiles (batch 1, every token real):",
        "",
        "| device | predicted | profile provenance |",
        "|---|---:|---|",
    ]
    for device, info in entry["predicted_ms"].items():
        lines.append(f"| {device} | {_ms(info['ms'])} | {info.get('provenance') or 'n/a'} |")
    measured = entry.get("measured")
    if measured:
        lines += [
            "",
            f"Measured on the exporting machine with onnxruntime (CPU, batch {measured['batch_size']}, "
            f"{measured['seq_len']} tokens, warm-up {measured['warmup']}, median of {measured['repeats']} runs):",
            "",
            "| | |",
            "|---|---|",
            f"| measured | {_ms(measured['median_ms'])} "
            f"(p10 {_ms(measured['p10_ms'])}, p90 {_ms(measured['p90_ms'])}) |",
            f"| predicted by profile `{measured['profile']}` | {_ms(measured.get('predicted_ms'))} |",
            f"| machine | {measured['machine']} |",
        ]
        if measured.get("note"):
            lines.append(f"| note | {measured['note']} |")
    parity = entry["parity"]
    lines += [
        "",
        "## Parity",
        "",
        f"On {parity['examples']} real dev sentences (one padded batch), the largest absolute logit difference: "
        + (
            f"compact PyTorch vs. supernet subnet {parity['compact_vs_supernet']:.2e}"
            if "compact_vs_supernet" in parity
            else f"compact PyTorch (the shipped files, read back) vs. fine-tuned model "
            f"{parity['compact_vs_finetuned']:.2e}"
        )
        + (f", ONNX vs. compact PyTorch {parity['onnx_vs_compact']:.2e}" if "onnx_vs_compact" in parity else "")
        + f" (tolerance {parity['tolerance']:g}).",
        "",
        "## Architecture",
        "",
        f"Activation {arch['hidden_act']}, norm {arch['norm']}. Retention is the share of each input's real tokens "
        "still present after that layer's attention (PoWER-BERT; [CLS] always kept).",
        "",
        *_layer_rows(arch),
        "",
        "## Use",
        "",
    ]
    files = entry["files"]
    if "model.safetensors" in files:
        lines += [
            "PyTorch (needs `bertnas`, not the supernet):",
            "",
            "```python",
            "from transformers import AutoTokenizer",
            "from bertnas.model import CompactBert",
            "",
            f'model = CompactBert.from_pretrained("{name}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
            'batch = tokenizer(["a charming and often affecting journey"], return_tensors="pt", padding=True)',
            "logits = model(**batch).logits",
            "```",
            "",
        ]
    if "model.onnx" in files:
        lines += [
            "onnxruntime (needs only `onnxruntime`, `numpy` and a tokenizer; batch and sequence length are dynamic, "
            "token retention runs inside the graph from the attention mask):",
            "",
            "```python",
            "import numpy as np, onnxruntime as ort",
            "from transformers import AutoTokenizer",
            "",
            f'session = ort.InferenceSession("{name}/model.onnx", providers=["CPUExecutionProvider"])',
            f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
            'batch = tokenizer(["a charming and often affecting journey"], return_tensors="np", padding=True)',
            'feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}',
            'logits = session.run(["logits"], feeds)[0]',
            "```",
            "",
        ]
    labels = entry.get("labels")
    if labels:
        lines += [f"Labels: {', '.join(f'{i} = {label}' for i, label in enumerate(labels))}.", ""]
    lines += ["## Files", "", *(f"- `{file}`" for file in sorted(files)), ""]
    return "\n".join(lines)


def _weights(entry: dict[str, Any]) -> str:
    if entry.get("weights") == "finetuned":
        return "fine-tuned as a standalone model, distilled from the teacher (`bertnas finetune-subnets`)"
    return "the supernet's shared weights, sliced (not trained further)"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
