"""``bertnas search``, ``bertnas pareto`` and ``bertnas study run``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bertnas.backbones import DEFAULT_BACKBONE
from bertnas.cli.main import app
from bertnas.cli.task_options import (
    LABEL_COLUMN_OPTION,
    MAX_LENGTH_OPTION,
    METRIC_OPTION,
    SPLIT_OPTION,
    TASK_HELP,
    TEXT_COLUMNS_OPTION,
    task_spec,
)
from bertnas.training.presets import DEFAULT_PRESET, PRESET_HELP

if TYPE_CHECKING:
    from bertnas.search.results import FrontPoint

study_app = typer.Typer(help="Searches described by study files (studies/*.yaml).", no_args_is_help=True)
app.add_typer(study_app, name="study")


# Options shared by `bertnas search` and `bertnas study run`.
JSON_OPTION = typer.Option(False, "--json", help="Print the machine-readable summary.")
BACKEND_OPTION = typer.Option("local", "--backend", help="local | ray (trials on a Ray cluster).")
ADDRESS_OPTION = typer.Option(None, "--address", help="Ray cluster: auto or HOST:PORT (default: start Ray locally).")
WORKERS_OPTION = typer.Option(None, "--workers", help="Ray workers (default: 2 local, else cluster CPUs).")
GPUS_PER_TRIAL_OPTION = typer.Option(0.0, "--gpus-per-trial", help="GPUs each Ray worker holds.")
CONFIDENCE_OPTION = typer.Option(
    None,
    "--confidence",
    help="Guarantee budgets: a subnet counts as within budget when its conformal upper bound at this "
    "confidence is (0.95: over budget with probability <= 5 %; needs a measured profile with residuals).",
)


@app.command("search")
def search_command(
    device: list[str] = typer.Option(..., "--device", help="Hardware profile; repeat for one front per device."),
    budget: list[str] = typer.Option(
        ..., "--budget", help="Latency budget with unit (60ms, 0.06s); one for all devices or one per --device."
    ),
    task: str = typer.Option("sst2", "--task", help=TASK_HELP),
    text_columns: str | None = TEXT_COLUMNS_OPTION,
    label_column: str | None = LABEL_COLUMN_OPTION,
    metric: str | None = METRIC_OPTION,
    max_length: int | None = MAX_LENGTH_OPTION,
    space: str = typer.Option("unified", "--space", help="Search space name or YAML file."),
    supernet: str | None = typer.Option(
        None,
        "--supernet",
        help="Trained supernet directory (default: the cached one of the teacher for the task).",
    ),
    teacher: str | None = typer.Option(
        None, "--teacher", help="Your fine-tuned BERT classifier (directory or hub id); default: fine-tune one."
    ),
    train: bool = typer.Option(
        True, "--train/--no-train", help="Fine-tune the teacher and train the supernet first if they are missing."
    ),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="For what is trained: " + PRESET_HELP),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help="Backbone whose cached supernet to use."),
    trials: int = typer.Option(100, "--trials", help="Accuracy-evaluated trials to reach (a resume continues)."),
    sampler: str = typer.Option(
        "surrogate",
        "--sampler",
        help="surrogate (family-seeded, predictor-screened; docs/search.md) | nsga2 | tpe | random | evolution.",
    ),
    multi_fidelity: float | None = typer.Option(
        None,
        "--multi-fidelity",
        help="Score this share of the data first (e.g. 0.3); finish only subnets that could reach the front.",
    ),
    seed: int = typer.Option(0, "--seed"),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL (default: RUN/study.db)."),
    study: str | None = typer.Option(None, "--study", help="Study name (default: from task, space, budgets, seed)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: runs/STUDY)."),
    seq_len: str | None = typer.Option(
        None,
        "--seq-len",
        help="Tokens to price at: a count the profiles cover, or task:mean|p50|p90 (the task's real lengths).",
    ),
    confidence: float | None = CONFIDENCE_OPTION,
    split: str = SPLIT_OPTION,
    dev_subset: int | None = typer.Option(
        None, "--dev-subset", help="Score on the first N examples of --split only (faster, noisier)."
    ),
    population: int | None = typer.Option(None, "--population", help="NSGA-II / evolution population (20)."),
    references: bool = typer.Option(True, "--references/--no-references", help="Plot full model + DynaBERT grid."),
    seed_references: bool = typer.Option(
        False,
        "--seed-references/--no-seed-references",
        help="Start a new study from the full model and the DynaBERT grid (when the space holds them).",
    ),
    seed_from: list[str] | None = typer.Option(
        None,
        "--seed-from",
        help="Start a new study from an earlier run's Pareto front (repeatable; e.g. a sub-space search).",
    ),
    glue_dir: str | None = typer.Option(None, "--glue-dir", help="GLUE data in the original TSV layout."),
    eval_device: str = typer.Option("cpu", "--eval-device", help="Torch device for accuracy evaluation."),
    as_json: bool = JSON_OPTION,
    backend: str = BACKEND_OPTION,
    address: str | None = ADDRESS_OPTION,
    workers: int | None = WORKERS_OPTION,
    gpus_per_trial: float = GPUS_PER_TRIAL_OPTION,
) -> None:
    """Search subnets: maximize the task metric, minimize latency, under a budget per device."""
    from bertnas.search.budget import pair_budgets
    from bertnas.search.config import SearchConfig

    config = SearchConfig(
        task=task_spec(task, text_columns, label_column, metric, max_length),
        budgets_ms=pair_budgets(device, budget),
        space=space,
        backbone=backbone,
        supernet=supernet,
        teacher=teacher,
        train=train,
        preset=preset,
        trials=trials,
        sampler=sampler,
        seed=seed,
        storage=storage,
        study=study,
        out=str(out) if out else None,
        seq_len=seq_len,
        confidence=confidence,
        split=split,
        dev_subset=dev_subset,
        population=population,
        fidelity=multi_fidelity,
        references=references,
        seed_references=seed_references,
        seed_from=list(seed_from or []),
        glue_dir=glue_dir,
        eval_device=eval_device,
        command=["bertnas", *sys.argv[1:]],
    )
    _run(config, as_json, _backend(backend, address, workers, gpus_per_trial))


@study_app.command("run")
def study_run_command(
    file: Path = typer.Argument(..., help="Study file (studies/X.yaml)."),
    trials: int | None = typer.Option(None, "--trials", help="Override the file's trials."),
    storage: str | None = typer.Option(None, "--storage", help="Override the storage URL."),
    out: Path | None = typer.Option(None, "--out", help="Override the run directory."),
    supernet: str | None = typer.Option(None, "--supernet", help="Override the supernet directory."),
    glue_dir: str | None = typer.Option(None, "--glue-dir"),
    train: bool = typer.Option(
        True, "--train/--no-train", help="Fine-tune the teacher and train the supernet first if they are missing."
    ),
    as_json: bool = JSON_OPTION,
    backend: str = BACKEND_OPTION,
    address: str | None = ADDRESS_OPTION,
    workers: int | None = WORKERS_OPTION,
    gpus_per_trial: float = GPUS_PER_TRIAL_OPTION,
) -> None:
    """Run (or resume) the search a study file describes."""
    from bertnas.search.config import load_study_file

    config = load_study_file(file)
    config.train = train
    for key, value in (("trials", trials), ("storage", storage), ("supernet", supernet), ("glue_dir", glue_dir)):
        if value is not None:
            setattr(config, key, value)
    if out is not None:
        config.out = str(out)
    config.command = ["bertnas", *sys.argv[1:]]
    config.validate()
    _run(config, as_json, _backend(backend, address, workers, gpus_per_trial))


@app.command("pareto")
def pareto_command(
    run: Path = typer.Argument(..., help="Search run directory."),
    device: str = typer.Option(..., "--device", help="Device; one the search did not target is predicted."),
    budget: str | None = typer.Option(None, "--budget", help="Budget with unit (default: the search's)."),
    write: bool = typer.Option(True, "--write/--no-write", help="Rewrite RUN/pareto_DEVICE.csv/.json/.png."),
    as_json: bool = typer.Option(False, "--json", help="Print the front as JSON."),
    confidence: float | None = CONFIDENCE_OPTION,
) -> None:
    """Rebuild a device's front from the stored trials, without evaluating anything."""
    from bertnas.search.budget import parse_budget
    from bertnas.search.run import SearchRun, front_points

    search_run = SearchRun.open(run)
    requested = parse_budget(budget) if budget is not None else None
    budget_ms, conformal = search_run.guaranteed_budget(device, requested, confidence)
    front = search_run.write_front(device, budget_ms) if write else search_run.pareto(device, budget_ms)
    points = front_points(front)
    baseline = search_run.baseline
    if as_json:
        payload = {
            "device": device,
            "budget_ms": budget_ms,
            "baseline": baseline,
            "points": [point.summary(device) for point in points],
        }
        if conformal:
            payload["conformal"] = conformal
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(_front_table(device, budget_ms, search_run.metric_name, points, baseline=baseline, conformal=conformal))


def _backend(name: str, address: str | None, workers: int | None, gpus_per_trial: float) -> Any:
    """The backend's options (bertnas.search.backends); Ray flags without --backend ray are refused."""
    from bertnas.errors import BertnasError
    from bertnas.search.backends import BACKENDS, RayOptions

    if name not in BACKENDS:
        raise BertnasError(f"unknown backend {name!r}; choose {' or '.join(BACKENDS)}")
    if name == "ray":
        return RayOptions(address=address, workers=workers, gpus_per_trial=gpus_per_trial)
    if address is not None or workers is not None or gpus_per_trial:
        raise BertnasError("--address, --workers and --gpus-per-trial need --backend ray")
    return BACKENDS[name]()


def _run(config: Any, as_json: bool, backend: Any) -> None:
    from bertnas.search.request import check

    # Before any training (and before its heavy imports): what the backend cannot do and what needs
    # no supernet (devices, budgets, space, lengths) is refused first.
    backend.check(config)
    check(config)
    from bertnas.pipeline import plan_search
    from bertnas.search.loop import run_search

    plan = plan_search(config)
    if plan.needs_work:
        for line in plan.describe():
            typer.echo(line, err=as_json)
        plan.run()
    result = run_search(config, progress=not as_json, backend=backend)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    counts = result.counts
    typer.echo(
        f"study {result.study}: {counts['evaluated']} evaluated, {counts['rejected']} rejected before evaluation "
        f"(over every budget), {counts['failed']} failed; run directory {result.run_dir}"
    )
    for device, front in result.fronts.items():
        typer.echo("")
        typer.echo(
            _front_table(
                device,
                front.budget_ms,
                result.metric,
                front.points,
                front.full_model,
                result.baseline,
                front.conformal,
            )
        )


def _front_table(
    device: str,
    budget_ms: float | None,
    metric: str,
    points: list[FrontPoint],
    full: dict | None = None,
    baseline: dict | None = None,
    conformal: dict | None = None,
) -> str:
    budget = "no budget" if budget_ms is None else f"budget {budget_ms:g} ms"
    if conformal:
        budget = (
            f"budget {conformal['requested_budget_ms']:g} ms guaranteed at confidence {conformal['confidence']:g}: "
            f"predictions <= {budget_ms:.4g} ms, conformal quantile {conformal['quantile']:+.3f} "
            f"from {conformal['residuals']} residuals"
        )
    lines = [f"Pareto front on {device} ({budget}, {len(points)} points)"]
    header = f"{'trial':>6}  {metric:>10}  {'latency ms':>10}  {'MMACs':>9}  {'params M':>8}"
    lines += [header, "-" * len(header)]
    for p in points:
        flag = "  DEGENERATE: constant predictions" if p.degenerate else ""
        lines.append(
            f"{p.trial:>6}  {p.metric:>10.4f}  {p.latency_ms[device]:>10.2f}  {p.macs / 1e6:>9.1f}  "
            f"{p.params / 1e6:>8.2f}{flag}"
        )
    if full is not None:
        lines.append(f"{'full':>6}  {full['metric']:>10.4f}  {full['latency_ms']:>10.2f}  (reference: the backbone)")
    if baseline is not None:
        lines.append(f"{'floor':>6}  {baseline['score']:>10.4f}  {'':>10}  (reference: {baseline['kind']}, no model)")
        degenerate = sum(p.degenerate for p in points)
        if degenerate:
            lines.append(
                f"warning: {degenerate} of {len(points)} front points predict one constant output; "
                "they are not recommended (export needs --allow-degenerate)"
            )
    return "\n".join(lines)
