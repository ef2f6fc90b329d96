"""The model card (README.md) of one exported model, written from its manifest entry."""

from __future__ import annotations

import json
from typing import Any

from bertnas.backbones import HUB_CARDS

_GLUE_CONFIGS = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


def metadata_block(entry: dict[str, Any]) -> list[str]:
    """The Hugging Face model card metadata (YAML front matter): base model, license, task, data, metrics."""
    backbone = entry["arch"].get("backbone") or ""
    hub_name, license_name = HUB_CARDS.get(backbone, (backbone, None))
    task = str(entry["task"])
    glue_config = task.lower().replace("-", "")
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification"]
    lines.append(f"license: {json.dumps(license_name or 'other')}")
    if hub_name and "/" in hub_name:  # a hub id, never a local path
        lines.append(f"base_model: {json.dumps(hub_name)}")
    lines += ["tags:", "- bertnas", "- compressed-bert", "- text-classification"]
    dataset = None
    if glue_config in _GLUE_CONFIGS:
        dataset = {"name": f"GLUE {task}", "type": "nyu-mll/glue", "config": glue_config, "split": "validation"}
        lines += ["datasets:", "- nyu-mll/glue"]
    metric = entry["metric_name"]
    lines += [
        "model-index:",
        f"- name: {json.dumps(entry['name'])}",
        "  results:",
        "  - task:",
        "      type: text-classification",
        "      name: Text Classification",
        "    dataset:",
        f"      name: {json.dumps(dataset['name'] if dataset else task)}",
        f"      type: {json.dumps(dataset['type'] if dataset else task)}",
    ]
    if dataset:
        lines += [f"      config: {dataset['config']}", "      split: validation"]
    lines += [
        "    metrics:",
        f"    - type: {json.dumps(metric)}",
        f"      value: {float(entry['metric']):.6f}",
        f"      name: {json.dumps(f'dev {metric} (recomputed from this export)')}",
    ]
    for name, result in (entry.get("formats") or {}).items():
        if result.get("quantized") and "metric" in result:
            label = f"dev {metric} of {result['file']} ({name})"
            lines += [
                f"    - type: {json.dumps(metric)}",
                f"      value: {float(result['metric']):.6f}",
                f"      name: {json.dumps(label)}",
            ]
    lines += ["---", ""]
    return lines


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
        *metadata_block(entry),
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
        real = measured.get("real_sentences")
        if real:
            lines += [
                "",
                f"On {real['sentences']} real {real['split']} sentences, each run alone at its own length "
                f"(batch 1, no padding; mean {real['mean_length']:.1f} tokens), the search's statistic "
                f"`{real['statistic']}` of the per-sentence times:",
                "",
                "| | |",
                "|---|---|",
                f"| measured | {_ms(real['measured_ms'])} (at one machine speed: {_ms(real['steady_ms'])}) |",
                f"| predicted over the search split's lengths | {_ms(real.get('predicted_ms'))} |",
                f"| predicted over these sentences' lengths | {_ms(real.get('predicted_these_ms'))} |",
            ]
            if real.get("conformal_bound_ms") is not None:
                lines.append(f"| {real['confidence']:g} upper bound | {_ms(real['conformal_bound_ms'])} |")
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
            "transformers, without bertnas (the modeling code is in this directory):",
            "",
            "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
            "",
            f'model = AutoModelForSequenceClassification.from_pretrained("{name}", trust_remote_code=True)',
            f'tokenizer = AutoTokenizer.from_pretrained("{name}", trust_remote_code=True)',
            'batch = tokenizer(["a charming and often affecting journey"], return_tensors="pt", padding=True)',
            "logits = model(**batch).logits",
            f'classify = pipeline("text-classification", model="{name}", trust_remote_code=True)',
            "```",
            "",
            "bertnas (any format of this directory, weights through safetensors only):",
            "",
            "```python",
            "import bertnas",
            "",
            f'model, tokenizer = bertnas.load("{name}")',
            "```",
            "",
            f'or from the shell: `bertnas predict {name} --text "a charming and often affecting journey"`.',
            "",
        ]
    if entry.get("plain_bert"):
        lines += [
            f"`{entry['plain_bert']}/` holds the same model as a plain `BertForSequenceClassification` (every layer "
            "has the backbone's layout): it loads with no remote code, and with optimum's "
            f'`ORTModelForSequenceClassification.from_pretrained("{name}/{entry["plain_bert"]}")` (its `model.onnx`).',
            "",
        ]
    elif entry.get("plain_bert_reason"):
        lines += [f"No plain-BERT copy: {entry['plain_bert_reason']}.", ""]
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
            f'tokenizer = AutoTokenizer.from_pretrained("{name}", trust_remote_code=True)',
            'batch = tokenizer(["a charming and often affecting journey"], return_tensors="np", padding=True)',
            'feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}',
            'logits = session.run(["logits"], feeds)[0]',
            "```",
            "",
        ]
    if "model.tflite" in files:
        seq = (entry.get("formats") or {}).get("tflite", {}).get("latency", {})
        length = next(iter(seq.values()))["seq_len"] if seq else "the export's --seq-len"
        lines += [
            f"LiteRT / TFLite (Android, `ai-edge-litert` in Python): batch 1, {length} tokens, int32 inputs padded "
            "with the attention mask 0; token retention runs inside the graph:",
            "",
            "```python",
            "from ai_edge_litert.interpreter import Interpreter",
            "",
            f'runner = Interpreter(model_path="{name}/model.tflite", num_threads=4).get_signature_runner()',
            f'batch = tokenizer(["a charming journey"], return_tensors="np", padding="max_length", '
            f"max_length={length})",
            "logits = runner(**{k: batch[k].astype('int32') for k in ('input_ids', 'attention_mask', "
            "'token_type_ids')})['output_0']",
            "```",
            "",
        ]
    formats = entry.get("formats") or {}
    if formats:
        lines += [
            "## Files for deployment",
            "",
            f"Each file's dev {metric} is measured on the file itself; latency on the exporting machine, batch 1, "
            "every token real, median:",
            "",
            f"| file | size | dev {metric} | latency by threads | recommended |",
            "|---|---:|---:|---|---|",
        ]
        for fmt, result in formats.items():
            if "error" in result:
                lines.append(f"| {result['file']} ({fmt}) | - | - | - | no: {result['error']} |")
                continue
            timing = ", ".join(f"{t}: {_ms(v['median_ms'])}" for t, v in result["latency"].items())
            verdict = "yes" if result["recommended"] else f"no: {result['left_out']}"
            lines.append(
                f"| {result['file']} ({fmt}) | {result['bytes'] / 1e6:.2f} MB | {result['metric']:.4f} "
                f"| {timing} | {verdict} |"
            )
        lines.append("")
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
