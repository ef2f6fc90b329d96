"""Evaluating a model on a task's split, and the held-out search split the trainings keep.

The weight-shared evaluation of subnets that the search scores with (``SubnetEvaluator``)
is :mod:`bertnas.search.accuracy`; this module holds what training and it share: predictions
and metrics of a model on a tokenized split, the degenerate-prediction test, the
input-ignoring baseline, and the search split's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertnas.data import compute_metrics, get_task, load_task, make_dataloader, tokenize_split
from bertnas.data.glue import TaskInfo, TokenizedSplit
from bertnas.data.holdout import SEARCH, Holdout, SearchSplitSpec, check_record, make_holdout
from bertnas.data.tasks import data_identity
from bertnas.errors import BertnasError
from bertnas.readers import read_json

#: The file a trained model directory keeps its held-out search split's record in.
SEARCH_SPLIT_JSON = "search_split.json"


def predict(model: nn.Module, loader: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over ``loader`` (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    with torch.inference_mode():
        for batch in loader:
            labels = batch.pop("labels")
            batch = {key: value.to(device) for key, value in batch.items()}
            all_logits.append(model(**batch).logits.float().cpu())
            all_labels.append(labels)
    model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate_model(model: nn.Module, data: TokenizedSplit, batch_size: int = 64, device: str = "cpu") -> dict:
    """The task's official metrics of ``model`` on ``data`` (length-sorted batches)."""
    return evaluate_predictions(model, data, batch_size, device)[0]


def evaluate_predictions(
    model: nn.Module, data: TokenizedSplit, batch_size: int = 64, device: str = "cpu"
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """``(metrics, predictions, labels)``: class ids (or regression scores) and their labels, in the
    loader's (length-sorted) order."""
    loader = make_dataloader(data, batch_size, shuffle=False, bucket=True)
    logits, labels = predict(model, loader, device)
    predictions = logits.squeeze(-1) if data.task.is_regression else logits.argmax(dim=-1)
    metrics = compute_metrics(data.task, predictions.numpy(), labels.numpy())
    return metrics, predictions.numpy(), labels.numpy()


#: Metrics for which "every remaining example predicted right" bounds the final score from
#: above: accuracy, and F1 (it grows with true positives and shrinks with FP and FN).
BOUNDED_METRICS = ("accuracy", "f1", "macro_f1")


def optimistic_score(
    task: str | TaskInfo, head_predictions: np.ndarray, head_labels: np.ndarray, rest_labels: np.ndarray
) -> float:
    """The task's main metric if every example not scored yet (labels ``rest_labels``) were
    predicted right: an upper bound of the final score for :data:`BOUNDED_METRICS`."""
    metrics = compute_metrics(
        task, np.concatenate([head_predictions, rest_labels]), np.concatenate([head_labels, rest_labels])
    )
    return float(metrics[get_task(task).main_metric])


def take(data: TokenizedSplit, indices: np.ndarray, split: str | None = None) -> TokenizedSplit:
    """The examples of ``data`` at ``indices``, in that order (named ``split`` when given)."""
    picked = [int(i) for i in indices]
    return TokenizedSplit(
        data.task,
        split or data.split,
        [data.input_ids[i] for i in picked],
        [data.token_type_ids[i] for i in picked],
        data.labels[torch.tensor(picked, dtype=torch.long)] if data.labels is not None else None,
        data.max_length,
    )


def is_degenerate(predictions: np.ndarray, is_regression: bool) -> bool:
    """Whether a model's predictions on a split are constant: one class for every example, or
    (regression) scores whose spread is below 1e-6 of their scale. Such a subnet has learned
    nothing of the input, whatever its metric says (on a skewed split a majority-class
    predictor scores well)."""
    predictions = np.asarray(predictions)
    if predictions.size < 2:
        return False
    if not is_regression:
        return bool((predictions == predictions.flat[0]).all())
    scale = max(1.0, float(np.abs(predictions).max()))
    return float(np.std(predictions)) <= 1e-6 * scale


def baseline_metrics(data: TokenizedSplit) -> dict[str, Any]:
    """What a model that ignores its input scores on ``data``: always the most frequent label
    (classification) or always the mean label (regression; correlations of a constant are
    undefined and counted as 0). The floor every front and summary is read against."""
    labels = np.asarray(data.labels)
    if data.task.is_regression:
        constant = np.full(len(labels), float(labels.mean()))
        kind = "mean prediction"
    else:
        values, counts = np.unique(labels, return_counts=True)
        constant = np.full(len(labels), int(values[int(counts.argmax())]))
        kind = "majority class"
    with np.errstate(all="ignore"):
        metrics = compute_metrics(data.task, constant, labels)
    metrics = {name: (0.0 if value != value else float(value)) for name, value in metrics.items()}
    return {"kind": kind, "metrics": metrics, "score": metrics[data.task.main_metric], "examples": len(labels)}


def subset_of(data: TokenizedSplit, size: int | None) -> TokenizedSplit:
    """The first ``size`` examples (a fixed, reproducible dev subset); all when None."""
    if size is None or size >= len(data):
        return data
    return TokenizedSplit(
        data.task,
        data.split,
        data.input_ids[:size],
        data.token_type_ids[:size],
        data.labels[:size] if data.labels is not None else None,
        data.max_length,
    )


@dataclass
class TrainDev:
    """A task's tokenized train and dev splits (each cut to its subset), the held-out search
    split (:mod:`bertnas.data.holdout`; None when none is held out) and the record of their data."""

    train: TokenizedSplit
    dev: TokenizedSplit
    data: dict[str, Any]  # bertnas.data.tasks.data_identity of the splits as loaded, plus the search split
    search: TokenizedSplit | None = None
    holdout: Holdout | None = None
    train_ids: np.ndarray | None = None  # positions in the loaded train split of the examples trained on


def load_train_dev(
    info: TaskInfo,
    tokenizer: Any,
    glue_dir: str | None = None,
    max_length: int | None = None,
    train_subset: int | None = None,
    dev_subset: int | None = None,
    search_split: SearchSplitSpec | str | None = "none",
) -> TrainDev:
    """Load, tokenize (cached) and cut the splits a training run needs, reading each once.

    With a ``search_split``, its slice of train is taken out first (and returned as ``search``);
    ``train_subset`` then cuts what remains.
    """
    splits = {name: load_task(info, name, glue_dir) for name in ("train", "dev")}
    train = tokenize_split(splits["train"], tokenizer, max_length)
    data = data_identity(info, splits)
    search = holdout = None
    ids = np.arange(len(train))
    spec = SearchSplitSpec.parse(search_split)
    if spec.enabled:
        holdout = search_holdout(train, spec, splits["train"].fingerprint)
        search = take(train, holdout.indices, SEARCH)
        ids = holdout.rest
        train = take(train, ids)
        data["search_split"] = holdout.record
    train = subset_of(train, train_subset)
    dev = subset_of(tokenize_split(splits["dev"], tokenizer, max_length), dev_subset)
    return TrainDev(train, dev, data, search, holdout, ids[: len(train)])


def search_holdout(train: TokenizedSplit, spec: SearchSplitSpec, fingerprint: str) -> Holdout:
    """The search split of a tokenized train split (:func:`bertnas.data.holdout.make_holdout`)."""
    if train.labels is None:
        raise BertnasError(f"the train split of {train.task.name} has no labels to hold a search split out of")
    return make_holdout(train.labels.numpy(), spec, fingerprint, train.task.is_regression)


def read_search_split(directory: str | Path) -> dict[str, Any] | None:
    """The search-split record a trained supernet or teacher keeps (None if it held none out)."""
    path = Path(directory) / SEARCH_SPLIT_JSON
    if not path.is_file():
        return None
    record = read_json(path, "search-split record")
    if not isinstance(record, dict) or "spec" not in record or "ids_sha256" not in record:
        raise BertnasError(f"{path}: not a search-split record (no spec or ids_sha256); retrain, or pass --split dev")
    return record


def require_search_split(directory: str | Path, info: TaskInfo) -> dict[str, Any]:
    """The search-split record of the model in ``directory``, or the one-line error saying how to get one."""
    record = read_search_split(directory)
    if record is None:
        raise BertnasError(
            f"the model in {directory} records no search split (trained before held-out search splits, or with "
            f"--search-split none): retrain it with `bertnas supernet train --task {info.ref}` (it holds 5 % of "
            "train out), or pass --split dev to score on dev (selection and report then share that data)"
        )
    return record


def search_split_of(
    directory: str | Path, info: TaskInfo, tokenizer: Any, glue_dir: str | None = None
) -> tuple[TokenizedSplit, str]:
    """The search split the model in ``directory`` held out of ``info``'s train split, recomputed
    from its record and checked against it; ``(split, cache key)``."""
    record = require_search_split(directory, info)
    loaded = load_task(info, "train", glue_dir)
    train = tokenize_split(loaded, tokenizer)
    holdout = search_holdout(train, SearchSplitSpec.from_dict(record["spec"]), loaded.fingerprint)
    check_record(record, holdout, f"the model in {directory}")
    return take(train, holdout.indices, SEARCH), f"{SEARCH}:{record['ids_sha256']}"
