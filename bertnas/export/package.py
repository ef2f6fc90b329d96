"""Exporting selected subnets as self-contained deployment directories.

``export_models`` writes, under ``out``::

    out/
      manifest.json, manifest.csv      every exported model: metric, size, latencies, files
      <name>/                          one per subnet
        config.json, model.safetensors, tokenizer files, arch.json, bertnas.json
        model.onnx                     dynamic batch and length, retention inside the graph
        README.md                      the model card

Each model is checked before it is written: compact PyTorch, supernet subnet and ONNX
logits agree within :data:`PARITY_TOLERANCE` on real dev sentences, and the dev metric
recomputed from the exported weights (and from the ONNX graph) equals the one the search
reported; anything else stops the export with an error. The whole tree is built in a
hidden scratch directory and renamed into place at the end (``manifest.json`` included),
so an interrupted export leaves nothing that looks complete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_directory, atomic_write_text
from bertnas.cost import count_macs, count_params
from bertnas.errors import BertnasError
from bertnas.export.card import render_card
from bertnas.export.extract import extract_subnet
from bertnas.export.onnx import ONNX_NAME, OnnxModel, export_onnx
from bertnas.locks import exclusive
from bertnas.model.compact import CONFIG_NAME, CompactBert, config_json
from bertnas.paths import portable

FORMATS = ("hf", "onnx")
PARITY_TOLERANCE = 1e-4
#: The latency profile measured on this kind of machine with onnxruntime.
MEASURE_PROFILE = "host-cpu-onnxruntime"
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"


@dataclass
class Candidate:
    """One subnet to export, with what the search reported about it."""

    name: str  # directory name under ``out``
    arch: ArchConfig
    metric: float | None  # the dev metric reported for these weights (None: nothing to check against)
    trial: int | None = None
    search_metric: float | None = None  # what the search scored it (on its split), for the manifest
    # A fine-tuned compact model directory (bertnas finetune-subnets) to ship instead of the
    # supernet's shared weights; ``metric`` is then its dev metric.
    weights: Path | None = None


@dataclass
class ExportOptions:
    task: str
    formats: tuple[str, ...] = FORMATS
    dev_subset: int | None = None  # the first N dev examples, as the search evaluated them
    glue_dir: str | None = None
    batch_size: int = 64  # the search's evaluation batch size: same padding, same logits
    parity_examples: int = 16
    warmup: int = 10
    repeats: int = 50
    threads: int | None = None  # onnxruntime intra-op threads for the measurement (None: its default)
    seq_len: int = 128  # MACs (the search's), and timing when no measurement profile gives its own
    predict_seq_len: int | None = None  # the search's --seq-len for the predictions (None: each profile's own)
    source: dict[str, Any] = field(default_factory=dict)  # run directory, study, device, budget

    def validate(self) -> None:
        unknown = [name for name in self.formats if name not in FORMATS]
        if unknown or not self.formats:
            raise BertnasError(f"--format {','.join(self.formats)!r}: choose one or both of {', '.join(FORMATS)}")
        if self.repeats < 1 or self.warmup < 0:
            raise BertnasError("timing needs at least one repeat and a non-negative warm-up count")


def export_models(
    supernet_dir: str | Path,
    candidates: Sequence[Candidate],
    out: str | Path,
    options: ExportOptions,
    predictors: Mapping[str, Any],
    force: bool = False,
) -> dict[str, Any]:
    """Export ``candidates`` from the supernet in ``supernet_dir`` into ``out``; return the manifest.

    ``predictors`` maps device names to latency predictors (``.predict(arch)`` in ms,
    ``.profile.provenance``); the one for :data:`MEASURE_PROFILE` is loaded if missing.
    """
    from bertnas.data import get_task, load_task, tokenize_split
    from bertnas.supernet.elastic import ElasticBert
    from bertnas.training.evaluate import subset_of, supernet_fingerprint

    options.validate()
    out = Path(out)
    if out.exists() and not force:  # before loading anything
        raise BertnasError(f"{out} already exists; choose another --out or pass --force to replace it")
    if not candidates:
        raise BertnasError("nothing to export: the selection is empty")
    names = [candidate.name for candidate in candidates]
    if len(set(names)) != len(names):
        raise BertnasError(f"two selected models share a directory name: {sorted(names)}")

    task = get_task(options.task)
    supernet = ElasticBert.from_pretrained(supernet_dir).eval()
    if supernet.tokenizer is None:
        raise BertnasError(f"the supernet in {supernet_dir} has no tokenizer files to ship with the models")
    data = subset_of(tokenize_split(load_task(task, "dev", options.glue_dir), supernet.tokenizer), options.dev_subset)
    measure = _measure_predictor(predictors) if "onnx" in options.formats else None
    timing_seq_len = int(measure.profile.seq_len) if measure is not None else options.seq_len
    if options.threads is None and measure is not None:  # time under the profile's own settings
        options = replace(options, threads=int(measure.profile.threads))
    labels = list(task.labels)
    source = {
        **options.source,
        "supernet": portable(supernet_dir, out),  # relative to the export (or cache:...)
        "supernet_fingerprint": supernet_fingerprint(supernet_dir),
    }

    entries = []
    with exclusive(out, "export directory"), atomic_directory(out, force=force) as scratch:
        for candidate in tqdm(candidates, desc="export", unit="model"):
            entry = _export_one(
                candidate, supernet, data, scratch, options, predictors, measure, timing_seq_len, labels
            )
            entry["source"] = source
            entry["files"] = sorted(p.name for p in (scratch / candidate.name).iterdir()) + ["README.md"]
            (scratch / candidate.name / "README.md").write_text(render_card(entry))
            entry["files"] = _file_digests(scratch / candidate.name)
            entries.append(entry)
            killpoints.reached("model-exported")
        manifest = {
            "task": task.name,
            "metric": task.main_metric,
            "formats": list(options.formats),
            "source": source,
            "models": entries,
        }
        (scratch / MANIFEST_CSV).write_text(_manifest_csv(entries))
        (scratch / MANIFEST_JSON).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _measure_predictor(predictors: Mapping[str, Any]) -> Any | None:
    if MEASURE_PROFILE in predictors:
        return predictors[MEASURE_PROFILE]
    try:
        from bertnas.hardware import load_predictor

        return load_predictor(MEASURE_PROFILE)
    except (ImportError, BertnasError):
        return None  # the measurement is still taken; the card says there is no prediction to compare


def _export_one(
    candidate: Candidate,
    supernet: Any,
    data: Any,
    scratch: Path,
    options: ExportOptions,
    predictors: Mapping[str, Any],
    measure: Any | None,
    timing_seq_len: int,
    labels: list[str],
) -> dict[str, Any]:
    from bertnas import __version__
    from bertnas.data import compute_metrics, make_dataloader
    from bertnas.training.evaluate import evaluate_model

    directory = scratch / candidate.name
    if candidate.weights is None:
        _, compact = extract_subnet(supernet, candidate.arch, directory)
        source_model, source_name = None, "supernet subnet"
    else:
        supernet.set_active_subnet(candidate.arch)  # the architecture extraction would give it
        expected = supernet.get_active_arch().hash()
        compact, source_model = _copy_finetuned(candidate, expected, supernet.tokenizer, directory), None
        source_name = "fine-tuned model"
    arch = compact.arch
    # The task's own label names and name, whatever the backbone's config called them.
    compact.config.task = data.task.name
    if labels:
        compact.config.id2label = dict(enumerate(labels))
        compact.config.label2id = {label: index for index, label in enumerate(labels)}
    atomic_write_text(directory / CONFIG_NAME, config_json(compact.config))

    parity: dict[str, Any] = {"examples": 0, "tolerance": PARITY_TOLERANCE}
    batch = _parity_batch(data, options.parity_examples, supernet.tokenizer.pad_token_id or 0)
    parity["examples"] = int(batch["input_ids"].shape[0])
    with torch.inference_mode():
        if candidate.weights is None:
            supernet.set_active_subnet(arch)
            reference = supernet(**batch).logits.numpy()
        else:  # the shipped files, read back, against the fine-tuned model they were copied from
            source_model = CompactBert.from_pretrained(candidate.weights)
            reference = source_model(**batch).logits.numpy()
            compact = CompactBert.from_pretrained(directory)
        mine = compact(**batch).logits.numpy()
    key = "supernet" if candidate.weights is None else "finetuned"
    parity[f"compact_vs_{key}"] = _check_close(mine, reference, candidate.name, "compact PyTorch", source_name)
    if "hf" not in options.formats:
        (directory / "model.safetensors").unlink()  # config and tokenizer stay: the ONNX model needs them

    main = data.task.main_metric
    metrics = evaluate_model(compact, data, options.batch_size)
    _check_metric(metrics[main], candidate, main, "the exported PyTorch weights")
    entry: dict[str, Any] = {
        "name": candidate.name,
        "trial": candidate.trial,
        "arch_hash": arch.hash(),
        "task": data.task.name,
        "labels": labels,
        "metric_name": main,
        "weights": "supernet" if candidate.weights is None else "finetuned",
        "metric_reported": candidate.metric,
        "search_metric": candidate.search_metric,
        "metric": metrics[main],
        "metrics": metrics,
        "dev_examples": len(data),
        "params": count_params(arch),
        "macs": count_macs(arch, options.seq_len),
        "macs_seq_len": options.seq_len,
        "predicted_ms": {
            device: {
                "ms": float(predictor.predict(arch, options.predict_seq_len)),
                "provenance": _provenance(predictor),
            }
            for device, predictor in predictors.items()
        },
        "bertnas_version": __version__,
        "arch": arch.to_dict(),
    }

    if "onnx" in options.formats:
        export_onnx(compact, directory / ONNX_NAME)
        runner = OnnxModel(directory / ONNX_NAME, threads=options.threads)
        onnx_logits = runner.logits(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        parity["onnx_vs_compact"] = _check_close(onnx_logits, mine, candidate.name, "ONNX", "compact PyTorch")
        parity[f"onnx_vs_{key}"] = _check_close(onnx_logits, reference, candidate.name, "ONNX", source_name)
        # The ONNX graph's own dev metric, on the same batches the search used.
        all_logits, all_labels = [], []
        for dev_batch in make_dataloader(data, options.batch_size, shuffle=False, bucket=True):
            all_labels.append(dev_batch.pop("labels").numpy())
            all_logits.append(runner.logits(**dev_batch))
        logits, gold = np.concatenate(all_logits), np.concatenate(all_labels)
        predictions = logits.squeeze(-1) if data.task.is_regression else logits.argmax(axis=-1)
        onnx_metric = compute_metrics(data.task, predictions, gold)[main]
        _check_metric(onnx_metric, candidate, main, "the ONNX model")
        entry["metric_onnx"] = onnx_metric
        timing = runner.time_ms(timing_seq_len, batch_size=1, warmup=options.warmup, repeats=options.repeats)
        entry["measured"] = {
            **timing,
            "profile": MEASURE_PROFILE,
            "predicted_ms": float(measure.predict(arch)) if measure is not None else None,
            "provenance": _provenance(measure) if measure is not None else None,
            "threads": options.threads,
            "machine": _machine(),
            "note": _measure_note(measure),
        }
    entry["parity"] = parity
    return entry


def _parity_batch(data: Any, count: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The first ``count`` dev examples as one padded batch (real sentences, different lengths)."""
    from bertnas.data.batching import collate

    features = [data[index] for index in range(min(count, len(data)))]
    batch = collate(features, pad_token_id=pad_id)
    batch.pop("labels", None)
    return batch


def _check_close(got: np.ndarray, expected: np.ndarray, name: str, what: str, against: str) -> float:
    difference = float(np.abs(got - expected).max())
    if not difference <= PARITY_TOLERANCE:  # also catches NaN
        raise BertnasError(
            f"{name}: {what} logits differ from the {against}'s by {difference:.2e} "
            f"(tolerance {PARITY_TOLERANCE:g}); the export is not faithful, nothing was written"
        )
    return difference


def _copy_finetuned(candidate: Candidate, expected_hash: str, tokenizer: Any, directory: Path) -> CompactBert:
    """Copy a fine-tuned compact model (finetune-subnets) into ``directory``, as extraction would write it."""
    from bertnas import __version__

    assert candidate.weights is not None
    model = CompactBert.from_pretrained(candidate.weights)
    if model.arch.hash() != expected_hash:
        raise BertnasError(
            f"{candidate.weights} holds another architecture than trial {candidate.trial} "
            f"({model.arch.hash()} vs {expected_hash}); rerun `bertnas finetune-subnets`"
        )
    model.save_pretrained(directory, tokenizer=tokenizer)
    model.arch.save(directory / "arch.json")
    provenance = {
        "weights": "finetuned",
        "finetuned_from": candidate.weights.name,
        "arch_hash": model.arch.hash(),
        "params": sum(p.numel() for p in model.parameters()),
        "versions": {"bertnas": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    (directory / "bertnas.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return model


def _check_metric(value: float, candidate: Candidate, metric: str, what: str) -> None:
    if candidate.metric is None:
        return
    if abs(value - candidate.metric) > 1e-9:
        raise BertnasError(
            f"{candidate.name}: dev {metric} of {what} is {value:.6f} but "
            f"{'the search' if candidate.weights is None else 'finetune-subnets'} reported "
            f"{candidate.metric:.6f}; the weights or the dev data changed since then "
            "(check --supernet and GLUE_DIR), nothing was written"
        )


def _provenance(predictor: Any) -> str | None:
    """How the predictor's profile knows its latencies: ``measured (onnxruntime, 2 threads, fp32, 2026-11-23)``."""
    profile = getattr(predictor, "profile", None)
    provenance = getattr(profile, "provenance", None)
    if provenance is None:
        return None
    details = [
        str(getattr(profile, "runtime", "") or ""),
        f"{profile.threads} threads" if getattr(profile, "threads", None) else "",
        str(getattr(profile, "precision", "") or ""),
        f"seq {profile.seq_len}" if getattr(profile, "seq_len", None) else "",
        str(getattr(profile, "date", "") or ""),
    ]
    details = [detail for detail in details if detail]
    return f"{provenance} ({', '.join(details)})" if details else str(provenance)


def _measure_note(measure: Any | None) -> str | None:
    """Why the measured-vs-predicted comparison may not mean what it seems, or None."""
    if measure is None:
        return f"no {MEASURE_PROFILE} profile is installed to compare with"
    from bertnas.hardware.measure import host_description

    profiled = str((getattr(getattr(measure, "profile", None), "host", None) or {}).get("cpu") or "")
    here = host_description()["cpu"]
    if profiled and profiled != here:
        # A measured profile describes one CPU; another CPU model makes the ratio a machine comparison.
        return (
            f"{MEASURE_PROFILE} was measured on {profiled}, this machine is {here}: re-measure it here "
            f"(bertnas profile measure --runtime onnxruntime --name {MEASURE_PROFILE} --force) to compare"
        )
    return None


def _machine() -> str:
    import onnxruntime

    return (
        f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} logical CPUs, "
        f"onnxruntime {onnxruntime.__version__}"
    )


def _file_digests(directory: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(directory.iterdir()):
        if path.is_file():
            digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _manifest_csv(entries: list[dict[str, Any]]) -> str:
    devices = list(dict.fromkeys(device for entry in entries for device in entry["predicted_ms"]))
    columns = ["name", "trial", "arch_hash", "metric_name", "metric", "metric_reported", "params", "macs"]
    columns += ["macs_seq_len", *(f"predicted_ms.{device}" for device in devices)]
    columns += ["measured_ms", "measured_profile", "measured_profile_predicted_ms"]
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        measured = entry.get("measured") or {}
        row = {name: entry.get(name) for name in columns[:9]}
        for device in devices:
            prediction = entry["predicted_ms"].get(device)
            row[f"predicted_ms.{device}"] = prediction["ms"] if prediction else None
        row["measured_ms"] = measured.get("median_ms")
        row["measured_profile"] = measured.get("profile")
        row["measured_profile_predicted_ms"] = measured.get("predicted_ms")
        writer.writerow(row)
    return stream.getvalue()
