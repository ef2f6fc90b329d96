"""``bertnas finetune``, ``bertnas supernet train`` and ``bertnas eval``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bertnas.backbones import DEFAULT_BACKBONE
from bertnas.cli.main import app
from bertnas.cli.task_options import (
    LABEL_COLUMN_OPTION,
    MAX_LENGTH_OPTION,
    METRIC_OPTION,
    SEARCH_SPLIT_OPTION,
    SPLIT_OPTION,
    TASK_HELP,
    TEXT_COLUMNS_OPTION,
    task_spec,
)
from bertnas.training.presets import DEFAULT_PRESET, PRESET_HELP

supernet_app = typer.Typer(help="Train weight-sharing supernets.", no_args_is_help=True)
app.add_typer(supernet_app, name="supernet")


@app.command("finetune")
def finetune_command(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    text_columns: str | None = TEXT_COLUMNS_OPTION,
    label_column: str | None = LABEL_COLUMN_OPTION,
    metric: str | None = METRIC_OPTION,
    max_length: int | None = MAX_LENGTH_OPTION,
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help="Hugging Face BERT name or directory."),
    out: Path | None = typer.Option(None, "--out", help="Teacher directory (default: the bertnas cache)."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help=PRESET_HELP),
    epochs: float | None = typer.Option(None, "--epochs", help="Override the preset's epochs."),
    lr: float | None = typer.Option(None, "--lr", help="Override the preset's learning rate."),
    train_subset: int | None = typer.Option(None, "--train-subset", help="Use only the first N train examples."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override the preset's step cap."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
    search_split: str = SEARCH_SPLIT_OPTION,
    seed: int = typer.Option(42, "--seed"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)."),
    glue_dir: str | None = typer.Option(None, "--glue-dir", help="GLUE data in the original TSV layout."),
    force: bool = typer.Option(False, "--force", help="Replace an existing teacher (or unfinished run)."),
) -> None:
    """Fine-tune the backbone on a task: the teacher for supernet training (rerun to resume)."""
    from bertnas.data import get_task
    from bertnas.paths import teacher_dir
    from bertnas.training.finetune import PRESETS, FinetuneConfig, finetune
    from bertnas.training.presets import check_preset

    task = task_spec(task, text_columns, label_column, metric, max_length)
    values = dict(PRESETS[check_preset(preset)])
    overrides = (
        ("epochs", epochs),
        ("lr", lr),
        ("train_subset", train_subset),
        ("max_steps", max_steps),
        ("checkpoint_every", checkpoint_every),
    )
    for key, value in overrides:
        if value is not None:
            values[key] = value
    config = FinetuneConfig(
        task=task, backbone=backbone, seed=seed, device=device, glue_dir=glue_dir, search_split=search_split, **values
    )
    target = out or teacher_dir(backbone, get_task(task).name)
    result = finetune(config, target, force=force)
    typer.echo(f"teacher {target}: dev {result['main_metric']} = {result['score']:.4f} ({result['dev_examples']} ex.)")


@supernet_app.command("train")
def supernet_train_command(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    text_columns: str | None = TEXT_COLUMNS_OPTION,
    label_column: str | None = LABEL_COLUMN_OPTION,
    metric: str | None = METRIC_OPTION,
    max_length: int | None = MAX_LENGTH_OPTION,
    space: str = typer.Option("unified", "--space", help="Search space name or YAML file."),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="Your fine-tuned BERT classifier, a directory or hub id (default: the cached one for backbone + task).",
    ),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help="Backbone whose cached teacher to use."),
    out: Path | None = typer.Option(None, "--out", help="Supernet directory (default: the bertnas cache)."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help=PRESET_HELP),
    epochs: float | None = typer.Option(None, "--epochs"),
    lr: float | None = typer.Option(None, "--lr"),
    train_subset: int | None = typer.Option(None, "--train-subset"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override the preset's step cap."),
    recipe: str | None = typer.Option(
        None,
        "--recipe",
        help="Training recipe: sandwich, families, progressive, budget or budget-attention (docs/training.md; "
        "default: the preset's).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Examples per step (default 32); under torchrun, the global batch of all processes."
    ),
    random_subnets: int | None = typer.Option(None, "--random-subnets", help="Random subnets per step (sandwich)."),
    label_weight: float | None = typer.Option(None, "--label-weight", help="Weight of the task loss on the labels."),
    hidden_weight: float | None = typer.Option(
        None, "--hidden-weight", help="Weight of the hidden-state MSE to the teacher (default: the recipe's)."
    ),
    attention_weight: float | None = typer.Option(
        None, "--attention-weight", help="Weight of the attention-map transfer (default: the recipe's)."
    ),
    augment: float | None = typer.Option(
        None, "--augment", help="Input perturbation rate for distillation, 0-1 (default: the recipe's; 0: off)."
    ),
    distill_from: str | None = typer.Option(None, "--distill-from", help="teacher | largest"),
    stages: str | None = typer.Option(None, "--stages", help="joint | width-depth (DynaBERT's two stages)."),
    no_rewire: bool = typer.Option(False, "--no-rewire", help="Skip DynaBERT rewiring."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
    search_split: str = SEARCH_SPLIT_OPTION,
    seed: int = typer.Option(42, "--seed"),
    device: str | None = typer.Option(None, "--device"),
    glue_dir: str | None = typer.Option(None, "--glue-dir"),
) -> None:
    """Train a weight-sharing supernet from the teacher; rerun the same command to resume."""
    from bertnas.data import get_task
    from bertnas.errors import BertnasError
    from bertnas.paths import supernet_dir, teacher_dir
    from bertnas.supernet.backbone import check_teacher
    from bertnas.training.distributed import close
    from bertnas.training.presets import check_preset
    from bertnas.training.supernet_train import SupernetTrainer, config_from

    task = task_spec(task, text_columns, label_column, metric, max_length)
    info = get_task(task)
    teacher_path = teacher or str(teacher_dir(backbone, info.name))
    if teacher is None and not Path(teacher_path).is_dir():
        raise BertnasError(
            f"no teacher at {teacher_path}; fine-tune one first: bertnas finetune --task {task} "
            f"--backbone {backbone} (or pass --teacher DIR_OR_HUB_ID)"
        )
    config = config_from(
        task,
        teacher_path,
        check_preset(preset),
        epochs=epochs,
        lr=lr,
        train_subset=train_subset,
        max_steps=max_steps,
        recipe=recipe,
        batch_size=batch_size,
        random_subnets=random_subnets,
        label_weight=label_weight,
        hidden_weight=hidden_weight,
        attention_weight=attention_weight,
        augment=augment,
        distill_from=distill_from,
        stages=stages,
        rewire=False if no_rewire else None,
        checkpoint_every=checkpoint_every,
        search_split=search_split,
        seed=seed,
        device=device,
        glue_dir=glue_dir,
        space=space,
    )
    check_teacher(teacher_path, info.num_labels, info.labels, info.name)
    target = out or supernet_dir(teacher_path, info.name, space)
    trainer = SupernetTrainer(config, target)
    try:
        result = trainer.train()
    finally:
        close(trainer.world)
    if result is None:  # a torchrun process other than the first: process 0 reports
        return
    metric = result["main_metric"]
    summary = ", ".join(f"{name} {scores[metric]:.4f}" for name, scores in result["subnets"].items())
    typer.echo(f"supernet {target}: dev {metric}: teacher {result['teacher'][metric]:.4f}, {summary}")


@app.command("eval")
def eval_command(
    arch: Path = typer.Option(..., "--arch", help="Architecture config JSON."),
    supernet: Path = typer.Option(..., "--supernet", help="Trained supernet directory."),
    task: str | None = typer.Option(None, "--task", help="(default: the supernet's task) " + TASK_HELP),
    text_columns: str | None = TEXT_COLUMNS_OPTION,
    label_column: str | None = LABEL_COLUMN_OPTION,
    metric: str | None = METRIC_OPTION,
    max_length: int | None = MAX_LENGTH_OPTION,
    split: str = SPLIT_OPTION,
    subset: int | None = typer.Option(None, "--subset", help="Evaluate on the first N examples of the split only."),
    device: str | None = typer.Option(None, "--device"),
    glue_dir: str | None = typer.Option(None, "--glue-dir"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Evaluate even if the result is cached."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """A subnet's metric by weight sharing (on the search split by default), with its MACs and parameters (cached)."""
    from bertnas.arch import ArchConfig
    from bertnas.search.accuracy import SubnetEvaluator
    from bertnas.training.common import pick_device

    config = ArchConfig.load(arch)
    evaluator = SubnetEvaluator.open(
        supernet,
        task=task_spec(task, text_columns, label_column, metric, max_length) if task else None,
        split=split,
        subset=subset,
        glue_dir=glue_dir,
        device=str(pick_device(device)),
        use_cache=not no_cache,
    )
    score = evaluator.evaluate(config)
    if as_json:
        typer.echo(json.dumps(score.to_json()))
        return
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in score.metrics.items())
    typer.echo(
        f"{score.task} {score.split} ({score.examples} ex.): {metrics}; "
        f"{score.macs / 1e9:.3f} GMACs at {score.macs_seq_len} tokens, {score.params / 1e6:.2f}M params"
        + (" [cached]" if score.cached else "")
    )
