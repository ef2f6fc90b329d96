"""GLUE metrics in plain numpy (no scikit-learn or scipy at run time).

Every metric here is higher-is-better. Per task (see :data:`bertnas.data.glue.TASKS`):
CoLA Matthews correlation (+ accuracy); SST-2, MNLI, QNLI, RTE, WNLI accuracy; MRPC and
QQP F1 of the positive class 1 (+ accuracy); STS-B Spearman (+ Pearson). The main metric
follows the BERT paper (Devlin et al., 2019, Table 1).

Degenerate inputs give 0.0 instead of NaN, so a search can always rank candidates:
Matthews correlation with constant predictions or constant labels (as scikit-learn),
Pearson/Spearman with a constant side (scipy would return NaN), F1 with no positive
prediction and no positive label (as scikit-learn's ``zero_division=0``). Non-finite
regression predictions (a diverged model) are the exception: they give NaN, so the
divergence is seen rather than scored as "no correlation".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bertnas.data.glue import TaskInfo
from bertnas.data.tasks import get_task
from bertnas.errors import BertnasError

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "f1": True,
    "macro_f1": True,
    "matthews_corr": True,
    "pearson": True,
    "spearman": True,
}


def _array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on GPU or requiring grad
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    predictions, labels = _array(predictions).reshape(-1), _array(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise BertnasError(f"{len(predictions)} predictions for {len(labels)} labels")
    if predictions.size == 0:
        raise BertnasError("cannot compute a metric on zero examples")
    return predictions, labels


def accuracy(predictions: Any, labels: Any) -> float:
    """Share of predictions equal to the label."""
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels))


def f1_binary(predictions: Any, labels: Any, positive: int = 1) -> float:
    """F1 of class ``positive``; 0.0 when there is neither a true nor a predicted positive."""
    predictions, labels = _pair(predictions, labels)
    predicted, actual = predictions == positive, labels == positive
    true_pos = int(np.sum(predicted & actual))
    denominator = int(np.sum(predicted)) + int(np.sum(actual))  # = 2 tp + fp + fn
    return 0.0 if denominator == 0 else 2.0 * true_pos / denominator


def macro_f1(predictions: Any, labels: Any) -> float:
    """Mean F1 over the classes present in labels or predictions (scikit-learn's ``average="macro"``)."""
    predictions, labels = _pair(predictions, labels)
    classes = np.unique(np.concatenate([labels, predictions]))
    return float(np.mean([f1_binary(predictions, labels, positive=c) for c in classes]))


def matthews_corr(predictions: Any, labels: Any) -> float:
    """Matthews correlation (multi-class form, as scikit-learn); 0.0 when either side is constant."""
    predictions, labels = _pair(predictions, labels)
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    count = len(labels)
    true_ids, pred_ids = encoded[:count], encoded[count:]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (true_ids, pred_ids), 1.0)
    true_sum, pred_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, samples = np.trace(confusion), confusion.sum()
    cov_true_pred = correct * samples - true_sum @ pred_sum
    cov_pred_pred = samples**2 - pred_sum @ pred_sum
    cov_true_true = samples**2 - true_sum @ true_sum
    if cov_pred_pred * cov_true_true == 0:
        return 0.0
    return float(cov_true_pred / np.sqrt(cov_true_true * cov_pred_pred))


def pearson(predictions: Any, labels: Any) -> float:
    """Pearson correlation; 0.0 when either side is constant, NaN for non-finite input."""
    x, y = (a.astype(np.float64) for a in _pair(predictions, labels))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    if denominator == 0:
        return 0.0
    return float(np.clip((x @ y) / denominator, -1.0, 1.0))


def rankdata(values: Any) -> np.ndarray:
    """Ranks starting at 1, ties sharing their average rank (scipy's ``method="average"``)."""
    values = _array(values).reshape(-1)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(starts) - 1
    bounds = np.concatenate([np.flatnonzero(starts), [len(values)]])
    average = (bounds[:-1] + bounds[1:] - 1) / 2.0 + 1.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = average[group]
    return ranks


def spearman(predictions: Any, labels: Any) -> float:
    """Spearman rank correlation (Pearson of average ranks); edge cases as :func:`pearson`."""
    x, y = (a.astype(np.float64) for a in _pair(predictions, labels))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    return pearson(rankdata(x), rankdata(y))


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "macro_f1": macro_f1,
    "matthews_corr": matthews_corr,
    "pearson": pearson,
    "spearman": spearman,
}


def main_metric(task: str | TaskInfo) -> str:
    """The metric that ranks models on ``task`` (all are higher-is-better)."""
    return get_task(task).main_metric


def higher_is_better(metric: str) -> bool:
    """True for every GLUE metric here; kept explicit so search code never has to assume it."""
    if metric not in HIGHER_IS_BETTER:
        raise BertnasError(f"unknown metric {metric!r}; known: {', '.join(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[metric]


def compute_metrics(task: str | TaskInfo, predictions: Any, labels: Any) -> dict[str, float]:
    """The task's metrics, main metric first.

    ``predictions`` are class ids, or logits of shape ``(n, num_labels)`` (argmax is
    taken); for STS-B, scores of shape ``(n,)`` or ``(n, 1)``. Arrays, lists and torch
    tensors are accepted.
    """
    info = get_task(task)
    predictions = _array(predictions)
    if info.is_regression:
        if predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
    elif predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    if predictions.ndim != 1:
        raise BertnasError(f"{info.name} predictions must have shape (n,) or (n, {info.num_labels})")
    return {metric: METRICS[metric](predictions, labels) for metric in info.metrics}
