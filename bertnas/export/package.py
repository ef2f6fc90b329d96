"""Exporting selected subnets as self-contained deployment directories.

``export_models`` writes, under ``out``::

    out/
      manifest.json, manifest.csv      every exported model: metric, size, latencies, files
      <name>/                          one per subnet
        config.json, model.safetensors, tokenizer files, arch.json, bertnas.json
        modeling_bertnas.py, ...       the modeling code: loads in transformers without bertnas
        model.onnx                     dynamic batch and length, retention inside the graph
        model.tflite                   LiteRT, fixed length (--seq-len), batch 1, retention inside
        model.int8.onnx, model.int8.tflite   dynamic-range int8 (--quantize int8)
        bert/                          a plain BertForSequenceClassification, where the subnet is one
        README.md                      the model card (with the Hugging Face metadata block)

Each model is checked before it is written: compact PyTorch, supernet subnet and ONNX
logits agree within :data:`PARITY_TOLERANCE` (of their scale) on real dev sentences, and
the dev metric recomputed from the exported weights (and from the ONNX and TFLite files)
equals the one the search reported (to :data:`METRIC_TOLERANCE`); anything else stops the
export with an error. An int8 file's dev
metric is measured on the file itself; one that drops more than ``max_int8_drop`` is
reported and left out of the manifest's ``recommended`` list. A converter that fails
(TFLite on an operator it lacks) is recorded in the manifest and the other formats kept. The whole tree is built in a
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
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bertnas import __version__, killpoints
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_directory, atomic_write_text
from bertnas.cost import count_macs, count_params
from bertnas.data import compute_metrics, get_task, load_task, make_dataloader, tokenize_split
from bertnas.data.batching import collate
from bertnas.errors import BertnasError
from bertnas.export.card import render_card
from bertnas.export.extract import extract_subnet
from bertnas.export.formats import FORMATS as FILE_FORMATS
from bertnas.export.formats import INT8, ConversionError
from bertnas.export.onnx import ONNX_NAME, OnnxModel, export_onnx
from bertnas.export.plain_bert import PLAIN_DIR, plain_bert_reason, write_plain_bert
from bertnas.hardware import load_predictor
from bertnas.hardware.conformal import conformal_quantile
from bertnas.hardware.lengths import LengthDistribution, LengthPricedPredictor, reduce_prices
from bertnas.hardware.measure import host_description
from bertnas.locks import exclusive
from bertnas.model.bundle import SOURCES
from bertnas.model.compact import CONFIG_NAME, WEIGHTS_NAME, CompactBert, config_json
from bertnas.paths import portable
from bertnas.supernet.elastic import ElasticBert, supernet_fingerprint
from bertnas.training.evaluate import evaluate_model, subset_of

FORMATS = ("hf", "onnx", "tflite")
QUANTIZE = ("int8",)
# Logits agree to this, relative to their scale (max(1, largest |logit|)): float32 sums in
# another order (a sliced supernet vs contiguous tensors, ONNX's kernels) differ by ~1e-5 of it.
PARITY_TOLERANCE = 1e-4
# A recomputed metric equals the reported one to this (0.01 points): a correlation of float32
# predictions moves by ~1e-6 when two near-tied predictions swap; changed weights or data move
# it by far more.
METRIC_TOLERANCE = 1e-4
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
    tflite_seq_len: int = 128  # the TFLite graph's fixed length (batch 1)
    # --seq-len task:* searches: time (and predict) the ONNX file at the task's representative
    # length instead of the measurement profile's own (None: the profile's)
    timing_seq_len: int | None = None
    # --seq-len task:* searches: the statistic ("mean", "p50", "p90") and the search split's
    # length histogram (run.json); each ONNX file is then also timed on ``real_sentences`` dev
    # sentences, one at a time at its own length, against the price of that statistic.
    length_statistic: str | None = None
    length_distribution: dict[str, Any] | None = None
    real_sentences: int = 100
    quantize: str | None = None  # "int8": dynamic-range int8 beside each fp32 file
    max_int8_drop: float = 0.01  # in metric units (0.01 = 1 point): worse int8 files are not recommended
    format_threads: tuple[int, ...] = (1, 4)  # thread counts each file is timed at
    source: dict[str, Any] = field(default_factory=dict)  # run directory, study, device, budget
    # With a confidence, each measured latency is reported beside the measurement profile's
    # conformal upper bound (when that profile stores validation residuals).
    confidence: float | None = None

    def validate(self) -> None:
        unknown = [name for name in self.formats if name not in FORMATS]
        if unknown or not self.formats:
            raise BertnasError(f"--format {','.join(self.formats)!r}: choose one or more of {', '.join(FORMATS)}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise BertnasError(f"--quantize {self.quantize!r}: the one quantization offered is int8")
        if self.quantize and not {"onnx", "tflite"} & set(self.formats):
            raise BertnasError("--quantize int8 quantizes ONNX or TFLite files: add onnx or tflite to --format")
        if not 0 <= self.max_int8_drop <= 1:
            raise BertnasError(f"--max-int8-drop {self.max_int8_drop * 100:g}: give points between 0 and 100")
        if self.tflite_seq_len < 2:
            raise BertnasError(f"--seq-len {self.tflite_seq_len}: at least 2 ([CLS] and [SEP])")
        if self.real_sentences < 0:
            raise BertnasError(f"--real-sentences {self.real_sentences}: give 0 (none) or more")
        if self.length_statistic is not None and self.length_distribution is None:
            raise BertnasError(f"task:{self.length_statistic} export: no length distribution was recorded for the run")
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

    options.validate()
    out = Path(out)
    if out.exists() and not force:  # before loading anything
        raise BertnasError(f"{out} already exists; choose another --out or pass --force to replace it")
    if not candidates:
        raise BertnasError("nothing to export: the selection is empty")
    names = [candidate.name for candidate in candidates]
    if len(set(names)) != len(names):
        raise BertnasError(f"two selected models share a directory name: {sorted(names)}")

    for name in file_formats(options):
        missing = FILE_FORMATS[name].available()
        if missing:
            raise BertnasError(f"--format {name.split('-')[0]}: {missing}")
    task = get_task(options.task)
    supernet = ElasticBert.from_pretrained(supernet_dir).eval()
    if supernet.tokenizer is None:
        raise BertnasError(f"the supernet in {supernet_dir} has no tokenizer files to ship with the models")
    data = subset_of(tokenize_split(load_task(task, "dev", options.glue_dir), supernet.tokenizer), options.dev_subset)
    longest = max((len(data[index]["input_ids"]) for index in range(len(data))), default=0)
    if "tflite" in options.formats and longest > options.tflite_seq_len:
        raise BertnasError(
            f"--seq-len {options.tflite_seq_len} is shorter than the longest dev example ({longest} tokens, "
            f"max_length {data.max_length}); the TFLite model could not take the sentences the search scored: "
            f"pass --seq-len {data.max_length}"
        )
    measure = _measure_predictor(predictors) if "onnx" in options.formats else None
    measure = getattr(measure, "predictor", measure)  # a length-distribution predictor: one length here
    timing_seq_len = options.timing_seq_len or (
        int(measure.profile.seq_len) if measure is not None else options.seq_len
    )
    if options.threads is None and measure is not None:  # time under the profile's own settings
        options = replace(options, threads=int(measure.profile.threads))
    labels = list(task.labels)
    source = {
        **options.source,
        "supernet": portable(supernet_dir, out),  # relative to the export (or cache:...)
        "supernet_fingerprint": supernet_fingerprint(supernet_dir),
    }

    entries = []
    with (
        exclusive(out, "export directory"),
        atomic_directory(out, force=force) as scratch,
        tempfile.TemporaryDirectory(prefix="bertnas-reference-") as reference_dir,
    ):
        reference = None
        if "onnx" in options.formats and options.length_statistic is not None and options.real_sentences:
            reference = _Reference.build(supernet, Path(reference_dir), options.threads, timing_seq_len)
        for candidate in tqdm(candidates, desc="export", unit="model"):
            entry = _export_one(
                candidate, supernet, data, scratch, options, predictors, measure, timing_seq_len, labels, reference
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
            "quantize": options.quantize,
            "max_int8_drop": options.max_int8_drop,
            "source": source,
            "recommended": _recommended(entries, options),
            "models": entries,
        }
        (scratch / MANIFEST_CSV).write_text(_manifest_csv(entries))
        (scratch / MANIFEST_JSON).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass
class _Reference:
    """The model every exported file's real-sentence calls are timed beside: the supernet's full
    shape (the backbone's), as ONNX, on ``seq_len`` tokens. One model for the whole export, and its
    median time in the first model's timing (``ms``), put every model's per-sentence times at one
    speed of the machine, so that models timed minutes apart compare with each other and with a
    profile. (Each model as its own anchor could not see a slow spell that lasted its whole
    timing: on a shared VM, three of 20 subnets looked 28-44 % under-priced, partly from such a
    spell; a slowdown inside the export process that this anchor does not share remains, see
    README, issue 17.)"""

    runner: OnnxModel
    arch_hash: str
    seq_len: int
    ms: float | None = None

    @classmethod
    def build(cls, supernet: ElasticBert, directory: Path, threads: int | None, seq_len: int) -> _Reference:
        full = supernet.full_arch()
        supernet.set_active_subnet(full)
        path = export_onnx(supernet.get_active_subnet().eval(), directory / ONNX_NAME)
        return cls(OnnxModel(path, threads=threads), full.hash(), seq_len)


def _measure_predictor(predictors: Mapping[str, Any]) -> Any | None:
    if MEASURE_PROFILE in predictors:
        return predictors[MEASURE_PROFILE]
    try:
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
    anchor: _Reference | None = None,
) -> dict[str, Any]:

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
    if "hf" not in options.formats:  # config and tokenizer stay: the other files need them
        for name in [WEIGHTS_NAME, *SOURCES]:
            (directory / name).unlink()
    elif plain_bert_reason(arch) is None:
        write_plain_bert(compact, directory / PLAIN_DIR, supernet.tokenizer)
        parity["plain_bert_vs_compact"] = _check_close(
            _plain_bert_logits(directory / PLAIN_DIR, batch), mine, candidate.name, "plain BERT", "compact PyTorch"
        )

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
        "plain_bert": PLAIN_DIR if (directory / PLAIN_DIR).is_dir() else None,
        "plain_bert_reason": None if (directory / PLAIN_DIR).is_dir() else plain_bert_reason(arch),
    }

    if "onnx" in options.formats:
        export_onnx(compact, directory / ONNX_NAME)
        runner = OnnxModel(directory / ONNX_NAME, threads=options.threads)
        onnx_logits = runner.logits(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        parity["onnx_vs_compact"] = _check_close(onnx_logits, mine, candidate.name, "ONNX", "compact PyTorch")
        parity[f"onnx_vs_{key}"] = _check_close(onnx_logits, reference, candidate.name, "ONNX", source_name)
        # The ONNX graph's own dev metric, on the same batches the search used.
        onnx_metric = _file_metric(runner, data, options.batch_size)
        if (directory / PLAIN_DIR).is_dir():  # optimum's layout: model.onnx beside config.json
            shutil.copyfile(directory / ONNX_NAME, directory / PLAIN_DIR / ONNX_NAME)
        _check_metric(onnx_metric, candidate, main, "the ONNX model")
        entry["metric_onnx"] = onnx_metric
        timing = runner.time_ms(timing_seq_len, batch_size=1, warmup=options.warmup, repeats=options.repeats)
        entry["measured"] = {
            **timing,
            "profile": MEASURE_PROFILE,
            "predicted_ms": float(measure.predict(arch, options.timing_seq_len)) if measure is not None else None,
            "provenance": _provenance(measure) if measure is not None else None,
            "threads": options.threads,
            "machine": _machine(),
            "note": _measure_note(measure),
            **_conformal_bound(measure, arch, options.confidence, options.timing_seq_len),
        }
        if options.length_statistic is not None and options.real_sentences:
            entry["measured"]["real_sentences"] = _time_real_sentences(runner, data, arch, measure, options, anchor)
    entry["formats"] = _deployment_files(compact, directory, data, batch, mine, candidate, options, entry, parity)
    entry["parity"] = parity
    return entry


def _time_real_sentences(
    runner: OnnxModel, data: Any, arch: ArchConfig, measure: Any | None, options: ExportOptions, reference: _Reference
) -> dict[str, Any]:
    """The ONNX file on real dev sentences, each alone at its own length, against the ``task:*`` price.

    ``options.real_sentences`` dev examples, evenly spaced over the split (dev: data the search
    never selected on), timed by :meth:`OnnxModel.time_sentences`; the statistic of the search
    (mean, p50 or p90 over sentences) is taken of the per-sentence times and set beside the
    measurement profile's price of it: over the search split's lengths (what the search priced)
    and over these sentences' own lengths (the same sentences: the predictor's error alone).
    """
    statistic = options.length_statistic
    assert statistic is not None and options.length_distribution is not None and reference is not None
    count = min(options.real_sentences, len(data))
    indices = sorted({int(i) for i in np.linspace(0, len(data) - 1, count).round()})
    timed = runner.time_sentences(
        [data[index] for index in indices], reference.seq_len, reference=reference.runner, reference_ms=reference.ms
    )
    if reference.ms is None:  # the first model fixes the speed every later one is put at
        reference.ms = timed["anchor_ms"]
    ones = np.ones(len(indices))
    record: dict[str, Any] = {
        "split": "dev",
        "sentences": len(indices),
        "statistic": f"task:{statistic}",
        "mean_length": float(np.mean(timed["lengths"])),
        "measured_ms": float(reduce_prices(np.asarray(timed["ms"])[:, None], ones, statistic)[0]),
        "steady_ms": float(reduce_prices(np.asarray(timed["steady_ms"])[:, None], ones, statistic)[0]),
        "anchor": {
            "model": "the supernet's full shape (the backbone's), ONNX, beside every call",
            "arch_hash": reference.arch_hash,
            "seq_len": reference.seq_len,
            "ms": timed["anchor_ms"],  # its median in this model's timing
            "steady_at_ms": reference.ms,  # the speed steady_ms is put at: its median in the first model's
        },
        "rounds": timed["rounds"],
    }
    if measure is not None:  # a plain predictor: export_models unwraps a length-distribution one
        searched = LengthPricedPredictor(measure, LengthDistribution.from_dict(options.length_distribution), statistic)
        these = LengthPricedPredictor(
            measure, LengthDistribution.of(timed["lengths"], "dev sentences timed"), statistic
        )
        record["predicted_ms"] = float(searched.predict(arch))  # the search split's lengths
        record["predicted_these_ms"] = float(these.predict(arch))  # the timed sentences' lengths
        record.update(_conformal_bound(searched, arch, options.confidence, None))
    record["per_sentence"] = {
        "lengths": timed["lengths"],
        "ms": timed["ms"],
        "steady_ms": timed["steady_ms"],
        "anchor_ratio": timed["ratio"],
    }
    return record


def _conformal_bound(measure: Any, arch: ArchConfig, confidence: float | None, seq_len: int | None) -> dict[str, Any]:
    """The measurement profile's conformal upper bound at ``confidence``, where it stores residuals."""
    residuals = getattr(getattr(measure, "profile", None), "residuals", None)
    if confidence is None or residuals is None:
        return {}

    try:
        q = conformal_quantile(residuals.values, confidence)
    except BertnasError as error:
        return {"conformal_note": str(error)}
    return {"confidence": confidence, "conformal_bound_ms": float(measure.predict(arch, seq_len)) * (1.0 + q)}


def file_formats(options: ExportOptions) -> list[str]:
    """The file formats to write, each quantized one after its fp32 base."""
    names = []
    for family in ("onnx", "tflite"):
        if family in options.formats:
            names.append(family)
            if options.quantize == "int8":
                names.append(INT8[family])
    return names


def _deployment_files(
    compact: CompactBert,
    directory: Path,
    data: Any,
    batch: dict[str, torch.Tensor],
    mine: np.ndarray,
    candidate: Candidate,
    options: ExportOptions,
    entry: dict[str, Any],
    parity: dict[str, Any],
) -> dict[str, Any]:
    """Write, check and time every deployable file; a converter failure is recorded, not fatal."""
    main = data.task.main_metric
    results: dict[str, Any] = {}
    for name in file_formats(options):
        fmt = FILE_FORMATS[name]
        if fmt.base is not None and "error" in results.get(fmt.base, {}):
            results[name] = {"file": fmt.file, "error": f"not written: {fmt.base} failed"}
            continue
        started = time.perf_counter()
        try:
            path = directory / fmt.file if name == "onnx" else fmt.write(compact, directory, options.tflite_seq_len)
        except ConversionError as error:
            tqdm.write(f"warning: {candidate.name}: {name} not written: {error}; the other formats are kept")
            results[name] = {"file": fmt.file, "error": str(error)}
            continue
        try:
            runner = fmt.runner(path, threads=options.threads)
        except BertnasError as error:  # written but its runtime cannot load it (an op it lacks)
            if name == "onnx":
                raise
            path.unlink(missing_ok=True)
            tqdm.write(f"warning: {candidate.name}: {name} not kept: {error}; the other formats are kept")
            results[name] = {"file": fmt.file, "error": str(error)}
            continue
        if name == "onnx":
            metric = entry["metric_onnx"]
        else:
            if not fmt.quantized:  # fp32: as faithful as the ONNX graph
                logits = runner.logits(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                parity[f"{name}_vs_compact"] = _check_close(logits, mine, candidate.name, name, "compact PyTorch")
            # int8 activations are quantized per call with one scale per tensor, so padding other
            # sentences into a batch changes the result: measure as deployed, one sentence a call.
            metric = _file_metric(runner, data, 1 if fmt.quantized else options.batch_size)
            if not fmt.quantized:
                _check_metric(metric, candidate, main, f"the {name} model")
        seconds = time.perf_counter() - started
        result: dict[str, Any] = {
            "file": fmt.file,
            "bytes": path.stat().st_size,
            "metric": metric,
            "quantized": "int8-dynamic" if fmt.quantized else None,
            "write_s": seconds,
            "latency": {
                str(threads): fmt.runner(path, threads=threads).time_ms(
                    options.tflite_seq_len, batch_size=1, warmup=options.warmup, repeats=options.repeats
                )
                for threads in options.format_threads
            },
        }
        if fmt.quantized:
            drop = entry["metric"] - metric
            result["metric_drop"] = drop
            result["recommended"] = drop <= options.max_int8_drop + 1e-12
            if not result["recommended"]:
                result["left_out"] = (
                    f"dev {main} drops {drop * 100:.2f} points from fp32 (more than --max-int8-drop "
                    f"{options.max_int8_drop * 100:g})"
                )
                tqdm.write(
                    f"warning: {candidate.name}: {fmt.file} left out of the recommended set: {result['left_out']}"
                )
        else:
            result["recommended"] = True
        results[name] = result
    return results


def _file_metric(runner: Any, data: Any, batch_size: int) -> float:
    """The task's main metric of a deployable file, on the dev batches the search used."""

    all_logits, all_labels = [], []
    for dev_batch in make_dataloader(data, batch_size, shuffle=False, bucket=True):
        all_labels.append(dev_batch.pop("labels").numpy())
        all_logits.append(runner.logits(**dev_batch))
    logits, gold = np.concatenate(all_logits), np.concatenate(all_labels)
    predictions = logits.squeeze(-1) if data.task.is_regression else logits.argmax(axis=-1)
    return float(compute_metrics(data.task, predictions, gold)[data.task.main_metric])


def _plain_bert_logits(directory: Path, batch: dict[str, torch.Tensor]) -> np.ndarray:
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(directory), use_safetensors=True).eval()
    with torch.inference_mode():
        return model(**batch).logits.numpy()


def _recommended(entries: list[dict[str, Any]], options: ExportOptions) -> list[str]:
    """What to ship: every model directory and file that passed its checks (int8 within the drop)."""
    chosen = []
    for entry in entries:
        if "hf" in options.formats:
            chosen.append(entry["name"])
            if entry.get("plain_bert"):
                chosen.append(f"{entry['name']}/{entry['plain_bert']}")
        for result in entry.get("formats", {}).values():
            if result.get("recommended"):
                chosen.append(f"{entry['name']}/{result['file']}")
    return chosen


def _parity_batch(data: Any, count: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The first ``count`` dev examples as one padded batch (real sentences, different lengths)."""

    features = [data[index] for index in range(min(count, len(data)))]
    batch = collate(features, pad_token_id=pad_id)
    batch.pop("labels", None)
    return batch


def _check_close(got: np.ndarray, expected: np.ndarray, name: str, what: str, against: str) -> float:
    difference = float(np.abs(got - expected).max())
    tolerance = PARITY_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    if not difference <= tolerance:  # also catches NaN
        raise BertnasError(
            f"{name}: {what} logits differ from the {against}'s by {difference:.2e} "
            f"(tolerance {tolerance:.2g}); the export is not faithful, nothing was written"
        )
    return difference


def _copy_finetuned(candidate: Candidate, expected_hash: str, tokenizer: Any, directory: Path) -> CompactBert:
    """Copy a fine-tuned compact model (finetune-subnets) into ``directory``, as extraction would write it."""

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
    if not abs(value - candidate.metric) <= METRIC_TOLERANCE:
        raise BertnasError(
            f"{candidate.name}: dev {metric} of {what} is {value:.6f} but "
            f"{'the search' if candidate.weights is None else 'finetune-subnets'} reported "
            f"{candidate.metric:.6f}; the weights or the dev data changed since then "
            "(check --supernet and GLUE_DIR), nothing was written"
        )


def _provenance(predictor: Any) -> str | None:
    """How the predictor's profile knows its latencies (:meth:`HardwareProfile.describe`), if it has one."""
    profile = getattr(predictor, "profile", None)
    return None if profile is None else profile.describe()


def _measure_note(measure: Any | None) -> str | None:
    """Why the measured-vs-predicted comparison may not mean what it seems, or None."""
    if measure is None:
        return f"no {MEASURE_PROFILE} profile is installed to compare with"

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
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digests[path.relative_to(directory).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _manifest_csv(entries: list[dict[str, Any]]) -> str:
    devices = list(dict.fromkeys(device for entry in entries for device in entry["predicted_ms"]))
    columns = ["name", "trial", "arch_hash", "metric_name", "metric", "metric_reported", "params", "macs"]
    columns += ["macs_seq_len", *(f"predicted_ms.{device}" for device in devices)]
    columns += ["measured_ms", "measured_profile", "measured_profile_predicted_ms"]
    columns += ["real_sentences_statistic", "real_sentences_measured_ms", "real_sentences_predicted_ms"]
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
        real = measured.get("real_sentences") or {}
        row["real_sentences_statistic"] = real.get("statistic")
        row["real_sentences_measured_ms"] = real.get("measured_ms")
        row["real_sentences_predicted_ms"] = real.get("predicted_ms")
        writer.writerow(row)
    return stream.getvalue()
