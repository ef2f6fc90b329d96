"""``bertnas export``: selected subnets of a search run as deployable model directories."""

from __future__ import annotations

from pathlib import Path

import typer

from bertnas.cli.main import app


@app.command("export")
def export_command(
    run: Path = typer.Argument(..., help="Search run directory (written by `bertnas search`)."),
    device: str = typer.Option(..., "--device", help="Hardware profile whose front or latency selects the models."),
    select: str = typer.Option("pareto", "--select", help="pareto, trial:N, or best-under:40ms."),
    formats: str = typer.Option(
        "hf,onnx",
        "--format",
        help="Comma-separated: hf (safetensors + modeling code; plus a plain BERT where the subnet is one), onnx, "
        "tflite (LiteRT, fixed --seq-len, batch 1).",
    ),
    quantize: str | None = typer.Option(
        None, "--quantize", help="int8: also write dynamic-range int8 ONNX/TFLite files, each measured on dev."
    ),
    max_int8_drop: float = typer.Option(
        1.0, "--max-int8-drop", help="Points of dev metric an int8 file may lose and still be recommended."
    ),
    seq_len: int = typer.Option(128, "--seq-len", help="The TFLite graph's fixed sequence length (and its timing)."),
    out: Path = typer.Option(..., "--out", help="Export directory (one sub-directory per model, plus manifests)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists (only once the new export is done)."),
    supernet: Path | None = typer.Option(None, "--supernet", help="Supernet directory (default: the run's)."),
    glue_dir: str | None = typer.Option(None, "--glue-dir", help="GLUE data (default: the run's, else GLUE_DIR)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed onnxruntime runs before measuring."),
    repeats: int = typer.Option(50, "--repeats", help="Timed onnxruntime runs (the median is reported)."),
    real_sentences: int = typer.Option(
        100,
        "--real-sentences",
        help="For a --seq-len task:* search: also time each ONNX file on this many dev sentences, one at a time at "
        "its own length, and report the search's statistic of those times beside its price (0: skip).",
    ),
    allow_degenerate: bool = typer.Option(
        False, "--allow-degenerate", help="Also export subnets whose predictions are constant (normally left out)."
    ),
    confidence: float | None = typer.Option(
        None,
        "--confidence",
        help="Select under guaranteed budgets: a model qualifies when its conformal upper bound at this confidence "
        "meets the budget (pareto, best-under; needs a measured profile with residuals).",
    ),
    weights: str = typer.Option(
        "auto",
        "--weights",
        help="finetuned (RUN/finetuned, from `bertnas finetune-subnets`), supernet (the shared weights), or auto: "
        "fine-tuned where they exist.",
    ),
) -> None:
    """Export the selected subnets of RUN: weights, config, tokenizer, model.onnx, model card, manifest."""
    from bertnas.errors import BertnasError
    from bertnas.export.package import MEASURE_PROFILE, ExportOptions, export_models
    from bertnas.export.selection import select_candidates, with_finetuned_weights
    from bertnas.search.run import SearchRun

    if out.exists() and not force:  # refuse before loading anything
        raise BertnasError(f"{out} already exists; choose another --out or pass --force to replace it")
    format_list = tuple(part.strip() for part in formats.split(",") if part.strip())
    search = SearchRun.open(run)
    info = search.info
    if weights not in ("auto", "finetuned", "supernet"):
        raise BertnasError(f"--weights {weights!r}: choose finetuned, supernet or auto")
    candidates = select_candidates(search, device, select, allow_degenerate=allow_degenerate, confidence=confidence)
    candidates = [with_finetuned_weights(search, candidate, weights) for candidate in candidates]
    supernet_dir = search.supernet_dir(supernet)

    devices = list(dict.fromkeys([*search.devices, device]))
    predictors, predict_seq_len = {}, None
    for name in devices:  # priced as the search priced them (its --seq-len, or the task's lengths)
        predictors[name], predict_seq_len = search.predictor(name)
    config = info.get("config") or {}
    statistic = _task_statistic(info)
    from bertnas.paths import portable

    options = ExportOptions(
        task=info["task"],
        formats=format_list,
        dev_subset=config.get("dev_subset") if search.split == "dev" else None,  # the report: all of dev
        glue_dir=glue_dir or config.get("glue_dir"),
        warmup=warmup,
        repeats=repeats,
        seq_len=_run_seq_len(info, device),
        predict_seq_len=predict_seq_len,
        timing_seq_len=_task_length(info),
        length_statistic=statistic,
        length_distribution=info.get("length_distribution") if statistic else None,
        real_sentences=real_sentences,
        tflite_seq_len=seq_len,
        quantize=quantize,
        max_int8_drop=max_int8_drop / 100.0,
        confidence=confidence,
        source={
            "run": portable(run, out),  # relative to the export directory
            "study": info.get("study"),
            "device": device,
            "budget_ms": search.budgets_ms.get(device),
            "select": select,
            **({"confidence": confidence} if confidence is not None else {}),
        },
    )
    manifest = export_models(supernet_dir, candidates, out, options, predictors, force=force)

    metric = manifest["metric"]
    typer.echo(f"wrote {len(manifest['models'])} model(s) to {out}")
    header = f"{'model':<12} {metric:>8} {'params':>8} {'MACs':>8} {device + ' ms':>12} {'measured ms':>12}"
    typer.echo(header)
    for entry in manifest["models"]:
        measured = entry.get("measured") or {}
        predicted = entry["predicted_ms"][device]["ms"]
        shown = f"{measured['median_ms']:.2f}" if measured else "-"
        typer.echo(
            f"{entry['name']:<12} {entry['metric']:>8.4f} {entry['params'] / 1e6:>7.2f}M {entry['macs'] / 1e6:>7.0f}M "
            f"{predicted:>12.2f} {shown:>12}"
        )
    _echo_real_sentences(manifest)
    _echo_formats(manifest)
    if manifest["models"] and "measured" in manifest["models"][0]:
        first = manifest["models"][0]["measured"]
        if first["predicted_ms"] is None:
            typer.echo(
                f"note: no {MEASURE_PROFILE} profile installed; measured latencies have no prediction beside them"
            )
        else:
            profile = first["profile"]
            typer.echo(f"measured with onnxruntime on this machine; predictions of profile {profile} in manifest.csv")
            if first.get("note"):
                typer.echo(f"note: {first['note']}", err=True)


def _run_seq_len(info: dict, device: str) -> int:
    """The sequence length the search priced ``device`` at (run.json: one per device)."""
    task_length = _task_length(info)
    if task_length is not None:
        return task_length
    seq_len = info.get("seq_len")
    if isinstance(seq_len, dict):
        seq_len = seq_len.get(device) or next(iter(seq_len.values()), None)
    return int(seq_len or 128)


def _task_statistic(info: dict) -> str | None:
    """``mean``, ``p50`` or ``p90`` for a ``--seq-len task:*`` search, else None."""
    from bertnas.hardware.lengths import is_task_statistic

    override = info.get("seq_len_override")
    return override.removeprefix("task:") if is_task_statistic(override) else None


def _task_length(info: dict) -> int | None:
    """For a ``--seq-len task:*`` search, the task's representative length (mean, p50 or p90)."""
    from bertnas.hardware.lengths import LengthDistribution

    statistic, distribution = _task_statistic(info), info.get("length_distribution")
    if statistic is None or not distribution:
        return None
    return LengthDistribution.from_dict(distribution).length(statistic)


def _echo_real_sentences(manifest: dict) -> None:
    """For a task:* search: each model's statistic over real dev sentences, measured and predicted."""
    rows = [(entry["name"], (entry.get("measured") or {}).get("real_sentences")) for entry in manifest["models"]]
    rows = [(name, real) for name, real in rows if real]
    if not rows:
        return
    first = rows[0][1]
    typer.echo(
        f"{first['statistic']} over {first['sentences']} {first['split']} sentences, each alone at its own length:"
    )
    typer.echo(f"{'model':<12} {'measured ms':>12} {'steady ms':>10} {'predicted ms':>13} {'bound ms':>9}")
    for name, real in rows:
        predicted, bound = real.get("predicted_ms"), real.get("conformal_bound_ms")
        typer.echo(
            f"{name:<12} {real['measured_ms']:>12.2f} {real['steady_ms']:>10.2f} "
            f"{'-' if predicted is None else f'{predicted:.2f}':>13} {'-' if bound is None else f'{bound:.2f}':>9}"
        )


def _echo_formats(manifest: dict) -> None:
    """One line per deployable file: size, dev metric, latency at 1 thread, and whether it is recommended."""
    rows = [(entry["name"], name, result) for entry in manifest["models"] for name, result in entry["formats"].items()]
    if not rows:
        return
    typer.echo(f"{'model':<12} {'file':<18} {'MB':>7} {manifest['metric']:>8} {'1-thread ms':>12}  recommended")
    for model, _, result in rows:
        if "error" in result:
            typer.echo(f"{model:<12} {result['file']:<18} {'-':>7} {'-':>8} {'-':>12}  no: {result['error']}")
            continue
        one = (result["latency"].get("1") or next(iter(result["latency"].values())))["median_ms"]
        verdict = "yes" if result["recommended"] else f"no: {result['left_out']}"
        typer.echo(
            f"{model:<12} {result['file']:<18} {result['bytes'] / 1e6:>7.2f} {result['metric']:>8.4f} {one:>12.2f}  "
            f"{verdict}"
        )
