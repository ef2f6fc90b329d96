"""The search's accuracy objective: the weight-shared metric of any subnet, cached so none runs twice.

:class:`SubnetEvaluator` holds one saved supernet and one split of its task (by default the
search split it held out of train; ``dev`` to report) and answers
:meth:`~SubnetEvaluator.evaluate` with a typed :class:`SubnetScore`, the one record of a
subnet's evaluation that the trials, the run directory, the reference points, the Ray
workers and ``bertnas eval`` all share. Results persist in a SQLite cache beside the
supernet (:mod:`bertnas.training.eval_cache`), keyed by the supernet's weights, the task,
the split, the subset and the architecture hash, so a search, its resume, another search on
the same supernet and every Ray worker evaluate a subnet once.

The checks and the identity of the scored data need no weights (:func:`check_supernet_task`,
:func:`evaluation_key`), so a search plans with them before anything is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertnas.arch import ArchConfig
from bertnas.cost import count_macs, count_params
from bertnas.data import compute_metrics, get_task, load_task, tokenize_split
from bertnas.data.glue import TaskInfo, TokenizedSplit
from bertnas.data.holdout import SEARCH
from bertnas.errors import BertnasError
from bertnas.search.results import PartialScore, SubnetScore
from bertnas.supernet.elastic import WEIGHTS_NAME, ElasticBert, SupernetConfig, supernet_fingerprint
from bertnas.training.eval_cache import EvalCache
from bertnas.training.evaluate import (
    BOUNDED_METRICS,
    baseline_metrics,
    evaluate_predictions,
    is_degenerate,
    optimistic_score,
    require_search_split,
    search_split_of,
    subset_of,
    take,
)

CACHE_NAME = "eval_cache.sqlite"


def check_supernet_task(supernet: SupernetConfig, directory: str | Path, info: TaskInfo) -> None:
    """Refuse to score a supernet on a task it was not trained for (its scores would mean nothing)."""
    trained_on = _task_name(supernet.task)
    if trained_on is not None and trained_on != info.name:
        raise BertnasError(
            f"the supernet in {directory} was trained on {trained_on}, not {info.name}: its scores there "
            f"would mean nothing; evaluate it on its own task (drop --task) or train one for {info.name}"
        )
    if supernet.num_labels != info.num_labels:
        raise BertnasError(
            f"the supernet in {directory} has {supernet.num_labels} outputs but task {info.name} "
            f"needs {info.num_labels}; evaluate it on the task it was trained for ({supernet.task})"
        )


def evaluation_key(
    directory: str | Path, info: TaskInfo, split: str, subset: int | None, glue_dir: str | None = None
) -> tuple[str, int]:
    """``(key, examples)`` of the data a supernet's subnets are scored on, read without tokenizing:
    the cache and a resumed study key on it (``search:<ids hash>:first<N>`` or ``dev:first<N>``)."""
    if split == SEARCH:
        record = require_search_split(directory, info)
        key, examples = f"{SEARCH}:{record['ids_sha256']}", int(record["examples"])
    else:
        key, examples = split, len(load_task(info, split, glue_dir))
    if subset is not None:
        examples = min(examples, subset)
    return f"{key}:first{examples}", examples


def scored_split(
    directory: str | Path, info: TaskInfo, split: str, subset: int | None, glue_dir: str | None = None
) -> TokenizedSplit:
    """The tokenized data a saved supernet's subnets are scored on (its own tokenizer, no weights)."""
    from transformers import AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(str(directory), config=BertConfig())
    return _split_data(directory, info, split, subset, glue_dir, tokenizer)[0]


def _split_data(
    directory: str | Path, info: TaskInfo, split: str, subset: int | None, glue_dir: str | None, tokenizer: Any
) -> tuple[TokenizedSplit, str]:
    if split == SEARCH:
        data, key = search_split_of(directory, info, tokenizer, glue_dir)
    else:
        data, key = tokenize_split(load_task(info, split, glue_dir), tokenizer), split
    data = subset_of(data, subset)
    return data, f"{key}:first{len(data)}"


def _task_name(task: str | None) -> str | None:
    """The name of the task a supernet records (None when it records none, or its data is gone)."""
    if task is None:
        return None
    try:
        return get_task(task).name
    except BertnasError:
        return None


@dataclass
class SubnetEvaluator:
    """Evaluates subnets of one saved supernet on one split of its task (by default the search
    split it held out of train; ``dev`` to report), with a persistent cache."""

    supernet: ElasticBert
    data: TokenizedSplit
    fingerprint: str
    cache: EvalCache | None
    subset: str
    batch_size: int = 64
    device: str = "cpu"
    directory: Path | None = None  # the supernet's directory
    _baseline: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        directory: str | Path,
        task: str | None = None,
        split: str = SEARCH,
        subset: int | None = None,
        glue_dir: str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        use_cache: bool = True,
    ) -> SubnetEvaluator:
        directory = Path(directory)
        if not (directory / WEIGHTS_NAME).is_file():
            raise BertnasError(
                f"{directory} is not a trained supernet directory (no {WEIGHTS_NAME}); "
                "train one with `bertnas supernet train --task TASK`"
            )
        supernet = ElasticBert.from_pretrained(directory).to(device)
        task = task or supernet.config.task
        if task is None:
            raise BertnasError(f"the supernet in {directory} records no task; pass --task")
        if supernet.tokenizer is None:
            raise BertnasError(f"the supernet in {directory} has no tokenizer files")
        info = get_task(task)
        check_supernet_task(supernet.config, directory, info)
        data, subset_key = _split_data(directory, info, split, subset, glue_dir, supernet.tokenizer)
        cache = EvalCache(directory / CACHE_NAME) if use_cache else None
        return cls(supernet, data, supernet_fingerprint(directory), cache, subset_key, batch_size, device, directory)

    def on_split(self, split: str, subset: int | None = None, glue_dir: str | None = None) -> SubnetEvaluator:
        """An evaluator of the same loaded supernet (and cache) on another split of its task."""
        data, subset_key = _split_data(self.directory, self.data.task, split, subset, glue_dir, self.supernet.tokenizer)
        return SubnetEvaluator(
            self.supernet, data, self.fingerprint, self.cache, subset_key, self.batch_size, self.device, self.directory
        )

    def baseline(self) -> dict[str, Any]:
        """The input-ignoring score on this evaluator's data (:func:`baseline_metrics`)."""
        if self._baseline is None:
            self._baseline = baseline_metrics(self.data)
        return self._baseline

    def evaluate(self, arch: ArchConfig) -> SubnetScore:
        """The metrics, MACs and params of ``arch`` (looked up when cached: ``cached`` says so)."""
        arch, key, cached = self._lookup(arch)
        if cached is not None:
            return cached
        start = time.perf_counter()
        metrics, predictions, _ = evaluate_predictions(self.supernet, self.data, self.batch_size, self.device)
        return self._store(arch, key, metrics, predictions, start)

    def evaluate_staged(
        self, arch: ArchConfig, fraction: float, could_reach: Callable[[float], bool]
    ) -> SubnetScore | PartialScore:
        """Multi-fidelity evaluation: score ``fraction`` of the examples (a fixed seeded draw) first,
        and finish only if ``could_reach(bound)``, where ``bound`` is the best final score still
        possible (every remaining example predicted right; exact for :data:`BOUNDED_METRICS`).

        Returns the full :class:`SubnetScore`, as :meth:`evaluate` does (cached the same way), or a
        :class:`PartialScore`. For other metrics it is :meth:`evaluate`.
        """
        main = self.data.task.main_metric
        if main not in BOUNDED_METRICS or not 0.0 < fraction < 1.0:
            return self.evaluate(arch)
        arch, key, cached = self._lookup(arch)
        if cached is not None:
            return cached
        start = time.perf_counter()
        order = np.random.default_rng(0).permutation(len(self.data))
        first = max(1, int(round(fraction * len(order))))
        if first >= len(order):
            return self.evaluate(arch)
        head, rest = take(self.data, order[:first]), take(self.data, order[first:])
        _, head_predictions, head_labels = evaluate_predictions(self.supernet, head, self.batch_size, self.device)
        optimistic = optimistic_score(self.data.task, head_predictions, head_labels, np.asarray(rest.labels))
        if not could_reach(float(optimistic)):
            partial = compute_metrics(self.data.task, head_predictions, head_labels)[main]
            return PartialScore(float(optimistic), float(partial), first / len(order), time.perf_counter() - start)
        _, rest_predictions, rest_labels = evaluate_predictions(self.supernet, rest, self.batch_size, self.device)
        predictions = np.concatenate([head_predictions, rest_predictions])
        labels = np.concatenate([head_labels, rest_labels])
        metrics = compute_metrics(self.data.task, predictions, labels)
        return self._store(arch, key, metrics, predictions, start)

    def _lookup(self, arch: ArchConfig) -> tuple[ArchConfig, tuple, SubnetScore | None]:
        """Activate ``arch``; ``(active arch, cache key, cached score or None)``. Entries from
        before the degenerate flag existed count as missing, so they are evaluated again."""
        self.supernet.set_active_subnet(arch)
        arch = self.supernet.get_active_arch()
        key = (self.fingerprint, self.data.task.name, self.data.split, arch.hash(), self.subset)
        cached = self.cache.get(*key) if self.cache is not None else None
        if cached is None or "degenerate" not in cached:
            return arch, key, None
        return arch, key, SubnetScore.from_record(cached, cached=True)

    def _store(
        self, arch: ArchConfig, key: tuple, metrics: dict[str, float], predictions: np.ndarray, start: float
    ) -> SubnetScore:
        task = self.data.task
        seq_len = min(128, arch.max_position_embeddings)
        score = SubnetScore(
            metric=metrics[task.main_metric],
            metrics=metrics,
            main_metric=task.main_metric,
            degenerate=is_degenerate(predictions, task.is_regression),
            macs=count_macs(arch, seq_len),
            macs_seq_len=seq_len,
            params=count_params(arch),
            arch_hash=arch.hash(),
            task=task.name,
            split=self.data.split,
            examples=len(self.data),
            seconds=time.perf_counter() - start,
        )
        if self.cache is not None:
            self.cache.put(*key, arch.to_json(), score.record())
        return score


__all__ = [
    "CACHE_NAME",
    "SubnetEvaluator",
    "check_supernet_task",
    "evaluation_key",
    "scored_split",
]
