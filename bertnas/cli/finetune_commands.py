"""``bertnas finetune-subnets`` and ``bertnas trust``: the chosen subnets trained as themselves."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bertnas.cli.main import app

RUN_ARGUMENT = typer.Argument(..., help="Search run directory (written by `bertnas search`).")
DEVICE_OPTION = typer.Option(..., "--device", help="Hardware profile whose front or latency selects the subnets.")
EPOCHS_OPTION = typer.Option(1.0, "--epochs", help="Epochs over train (minus the search split) per subnet.")
MAX_STEPS_OPTION = typer.Option(None, "--max-steps", help="Stop each subnet after this many steps.")
LR_OPTION = typer.Option(5e-5, "--lr", help="Learning rate.")
BATCH_OPTION = typer.Option(32, "--batch-size")
HIDDEN_OPTION = typer.Option(1.0, "--hidden-weight", help="Hidden-state transfer weight (0: logits only).")
ATTENTION_OPTION = typer.Option(1.0, "--attention-weight", help="Attention-map transfer weight (0: off).")
TRAIN_SUBSET_OPTION = typer.Option(None, "--train-subset", help="Train on the first N train examples only.")
SEED_OPTION = typer.Option(42, "--seed")
STOP_ON_OPTION = typer.Option(
    "metric",
    "--stop-on",
    help="Early stopping keeps the weights with the best search-split metric, or with the lowest "
    "search-split distillation loss (loss: for a student already within the split's noise of the teacher).",
)
TRAIN_DEVICE_OPTION = typer.Option(
    None, "--train-device", help="Torch device to train on: cpu, cuda, cuda:1 ... (default: cuda if present)."
)
SUPERNET_OPTION = typer.Option(None, "--supernet", help="Supernet directory (default: the run's).")
GLUE_DIR_OPTION = typer.Option(None, "--glue-dir", help="GLUE data (default: the run's, else GLUE_DIR).")
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object.")


def _config(
    run, epochs, max_steps, lr, batch_size, hidden_weight, attention_weight, train_subset, seed, device, glue, stop_on
):
    from bertnas.training.subnet_finetune import SubnetFinetuneConfig

    config = SubnetFinetuneConfig(
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        batch_size=batch_size,
        hidden_weight=hidden_weight,
        attention_weight=attention_weight,
        train_subset=train_subset,
        seed=seed,
        stop_on=stop_on,
        device=device,
        glue_dir=glue or (run.info.get("config") or {}).get("glue_dir"),
    )
    config.validate()
    return config


@app.command("finetune-subnets")
def finetune_subnets_command(
    run: Path = RUN_ARGUMENT,
    device: str = DEVICE_OPTION,
    select: list[str] | None = typer.Option(
        None, "--select", help="pareto (default), trial:N or best-under:40ms; repeat to fine-tune several."
    ),
    allow_degenerate: bool = typer.Option(
        False, "--allow-degenerate", help="Also fine-tune subnets whose weight-shared predictions are constant."
    ),
    epochs: float = EPOCHS_OPTION,
    max_steps: int | None = MAX_STEPS_OPTION,
    lr: float = LR_OPTION,
    batch_size: int = BATCH_OPTION,
    hidden_weight: float = HIDDEN_OPTION,
    attention_weight: float = ATTENTION_OPTION,
    train_subset: int | None = TRAIN_SUBSET_OPTION,
    seed: int = SEED_OPTION,
    stop_on: str = STOP_ON_OPTION,
    train_device: str | None = TRAIN_DEVICE_OPTION,
    supernet: Path | None = SUPERNET_OPTION,
    glue_dir: str | None = GLUE_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Fine-tune the selected subnets of RUN as standalone models, distilled from the teacher (resumable)."""
    from bertnas.export.selection import select_candidates
    from bertnas.search.run import SearchRun
    from bertnas.training.subnet_finetune import FINETUNED_CSV, Selected, finetune_run

    search = SearchRun.open(run)
    config = _config(
        search, epochs, max_steps, lr, batch_size, hidden_weight, attention_weight, train_subset, seed,
        train_device, glue_dir, stop_on,
    )  # fmt: skip
    chosen: dict[int, Selected] = {}
    for selection in select or ["pareto"]:
        for candidate in select_candidates(search, device, selection, allow_degenerate=allow_degenerate):
            assert candidate.trial is not None
            chosen.setdefault(candidate.trial, Selected(candidate.trial, candidate.arch))
    supernet_dir = search.supernet_dir(supernet)
    results = finetune_run(search, list(chosen.values()), config, supernet_dir)
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run), "models": results}))
        return
    metric = results[0]["main_metric"] if results else "metric"
    typer.echo(f"fine-tuned {len(results)} subnet(s) of {run}; {metric} (search split / dev):")
    typer.echo(f"{'trial':>6} {'shared':>15} {'fine-tuned':>15} {'steps':>6} {'seconds':>8}")
    for result in results:
        shared, tuned = result["weight_shared"], result["finetuned"]
        typer.echo(
            f"{result['trial']:>6} {shared['search_metric']:>7.4f}/{shared['dev_metric']:.4f} "
            f"{tuned['search_metric']:>7.4f}/{tuned['dev_metric']:.4f} {tuned['steps']:>6} "
            f"{tuned['train_seconds']:>8.1f}"
        )
    typer.echo(f"table: {run / FINETUNED_CSV}; `bertnas export {run} --device {device}` ships these weights")


@app.command("trust")
def trust_command(
    run: Path = RUN_ARGUMENT,
    device: str = DEVICE_OPTION,
    n: int = typer.Option(12, "--n", help="Subnets to fine-tune, spread over the trials."),
    epochs: float = EPOCHS_OPTION,
    max_steps: int | None = MAX_STEPS_OPTION,
    lr: float = LR_OPTION,
    batch_size: int = BATCH_OPTION,
    hidden_weight: float = HIDDEN_OPTION,
    attention_weight: float = ATTENTION_OPTION,
    train_subset: int | None = TRAIN_SUBSET_OPTION,
    seed: int = SEED_OPTION,
    stop_on: str = STOP_ON_OPTION,
    train_device: str | None = TRAIN_DEVICE_OPTION,
    supernet: Path | None = SUPERNET_OPTION,
    glue_dir: str | None = GLUE_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Does the supernet's ranking predict the fine-tuned one? Kendall tau, gains, front kept (trust.json, .png)."""
    from bertnas.search.run import SearchRun
    from bertnas.trust import TRUST_JSON, TRUST_PNG, trust_report

    search = SearchRun.open(run)
    config = _config(
        search, epochs, max_steps, lr, batch_size, hidden_weight, attention_weight, train_subset, seed,
        train_device, glue_dir, stop_on,
    )  # fmt: skip
    report = trust_report(search, device, n, config, search.supernet_dir(supernet))
    if as_json:
        typer.echo(json.dumps(report))
        return
    tau, rho, gain = report["kendall_tau"], report["spearman_rho"], report["gain"]
    typer.echo(
        f"{report['k']} subnets, dev split: Kendall tau {_shown(tau)}, Spearman rho {_shown(rho)}; fine-tuning gain "
        f"{gain['mean']:+.4f} +- {gain['std']:.4f} (range {gain['min']:+.4f} .. {gain['max']:+.4f}); "
        f"{report['front']['kept']} of {report['front']['of']} weight-shared front points stay on the fine-tuned front"
    )
    typer.echo(f"wrote {run / TRUST_JSON} and {run / TRUST_PNG}")


def _shown(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
