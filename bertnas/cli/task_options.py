"""``--task`` and the options that describe a user's own data, shared by every command that takes a task."""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["task_spec"]


def task_spec(*args: Any) -> str:
    """:func:`bertnas.data.tasks.task_spec` (imported when a command runs: the data stack is heavy)."""
    from bertnas.data.tasks import task_spec as spec

    return spec(*args)


TASK_HELP = (
    "GLUE task (sst2, mrpc, ...), or your own data: a directory with train and dev files "
    "(CSV, TSV, JSONL, Parquet), a datasets.save_to_disk directory, or hf:NAME[:CONFIG]."
)
TEXT_COLUMNS_OPTION = typer.Option(
    None, "--text-columns", help="Your data: the text column, or two for sentence pairs (A or A,B); default detected."
)
LABEL_COLUMN_OPTION = typer.Option(None, "--label-column", help="Your data: the label column (default: label/labels).")
METRIC_OPTION = typer.Option(
    None,
    "--metric",
    help="Your data: the main metric; accuracy (default), f1 (macro), mcc; spearman (default) or pearson "
    "for float labels.",
)
MAX_LENGTH_OPTION = typer.Option(None, "--max-length", help="Your data: tokens per example (default 128).")
SEARCH_SPLIT_OPTION = typer.Option(
    "0.05",
    "--search-split",
    help="The slice of train held out for the search to score subnets on: a share (0.05, 5%; at least 500 and "
    "at most 5,000 examples), a count (800) or none.",
)
SPLIT_OPTION = typer.Option(
    "search",
    "--split",
    help="Where to score subnets: search (the slice of train the supernet held out; default) or dev "
    "(the report split: selecting on it flatters what is reported).",
)
