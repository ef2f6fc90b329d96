"""GLUE metrics: checked against scikit-learn and scipy on random data, plus edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bertnas.data import TASKS, compute_metrics, higher_is_better, main_metric
from bertnas.data.metrics import accuracy, f1_binary, matthews_corr, pearson, rankdata, spearman
from bertnas.errors import BertnasError


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    size = int(rng.integers(20, 500))
    labels = rng.integers(0, 2, size)
    predictions = np.where(rng.random(size) < 0.7, labels, 1 - labels)  # correlated, like a real model
    assert accuracy(predictions, labels) == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    assert f1_binary(predictions, labels) == pytest.approx(sklearn_metrics.f1_score(labels, predictions))
    assert matthews_corr(predictions, labels) == pytest.approx(sklearn_metrics.matthews_corrcoef(labels, predictions))
    three_labels, three_preds = rng.integers(0, 3, size), rng.integers(0, 3, size)
    assert matthews_corr(three_preds, three_labels) == pytest.approx(
        sklearn_metrics.matthews_corrcoef(three_labels, three_preds)
    )


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy(seed):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 5, 300)
    predictions = labels + rng.normal(0, 1.5, 300)
    assert pearson(predictions, labels) == pytest.approx(stats.pearsonr(predictions, labels)[0])
    assert spearman(predictions, labels) == pytest.approx(stats.spearmanr(predictions, labels)[0])
    # Many ties (STS-B scores come in steps of 0.2): average ranks must match scipy's.
    tied_labels = np.round(labels * 5) / 5
    tied_preds = np.round(predictions)
    assert spearman(tied_preds, tied_labels) == pytest.approx(stats.spearmanr(tied_preds, tied_labels)[0])
    np.testing.assert_allclose(rankdata(tied_preds), stats.rankdata(tied_preds))


def test_degenerate_inputs_give_zero_not_nan():
    labels = np.array([0, 1, 1, 0, 1])
    assert matthews_corr(np.ones(5, dtype=int), labels) == 0.0
    assert matthews_corr(np.zeros(5, dtype=int), np.zeros(5, dtype=int)) == 0.0
    assert f1_binary(np.zeros(5, dtype=int), np.zeros(5, dtype=int)) == 0.0
    assert pearson(np.full(5, 2.5), np.arange(5.0)) == 0.0
    assert spearman(np.arange(5.0), np.full(5, 1.0)) == 0.0
    assert pearson(np.arange(5.0), np.arange(5.0) * 2 + 1) == pytest.approx(1.0)
    assert math.isnan(pearson(np.array([1.0, math.nan, 2.0]), np.arange(3.0)))
    assert math.isnan(spearman(np.array([1.0, math.inf, 2.0]), np.arange(3.0)))


def test_bad_shapes_are_user_errors():
    with pytest.raises(BertnasError, match="3 predictions for 2 labels"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(BertnasError, match="zero examples"):
        accuracy([], [])
    with pytest.raises(BertnasError, match=r"shape \(n,\) or \(n, 1\)"):
        compute_metrics("stsb", np.zeros((4, 2)), np.zeros(4))


def test_compute_metrics_per_task():
    logits = torch.tensor([[2.0, -1.0], [0.1, 0.3], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 0])
    result = compute_metrics("MRPC", logits, labels)
    assert list(result) == ["f1", "accuracy"]
    assert result["accuracy"] == 0.75 and result["f1"] == pytest.approx(2 / 3)
    assert list(compute_metrics("cola", [0, 1, 1, 0], [0, 1, 0, 0])) == ["matthews_corr", "accuracy"]
    scores = compute_metrics("sts-b", torch.tensor([[0.5], [2.0], [4.5]]), [1.0, 2.0, 5.0])
    assert list(scores) == ["spearman", "pearson"] and scores["spearman"] == pytest.approx(1.0)
    assert compute_metrics("mnli-mm", np.eye(3), [0, 1, 2]) == {"accuracy": 1.0}
    for name, info in TASKS.items():
        assert main_metric(name) == info.main_metric and higher_is_better(info.main_metric)
    assert main_metric("SST-2") == "accuracy" and main_metric("stsb") == "spearman"
    with pytest.raises(BertnasError, match="unknown metric"):
        higher_is_better("loss")
