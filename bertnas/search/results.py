"""Typed results, from the evaluator to the run directory, the CLI tables and the export manifest.

:class:`SubnetScore` is one subnet's weight-shared evaluation (the evaluator returns it, a
trial records it, a Ray worker sends it back, the reference points and the dev report are
made of it); :class:`PartialScore` a multi-fidelity evaluation stopped early;
:class:`FrontPoint` one point of a device's front (``pareto_<device>.json``, the summary
``--json`` prints, the CLI front table, the export's candidates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bertnas.search.pareto import is_flagged


@dataclass(frozen=True)
class SubnetScore:
    """One subnet's weight-shared evaluation on one split of its task."""

    metric: float  # the task's main metric (``main_metric``)
    metrics: dict[str, float]  # every metric of the task, the main one included
    main_metric: str
    degenerate: bool  # the predictions are constant: one class, or one regression value
    macs: int  # matrix-product MACs at ``macs_seq_len`` tokens (bertnas.cost)
    macs_seq_len: int
    params: int
    arch_hash: str
    task: str
    split: str
    examples: int
    seconds: float  # the evaluation's wall time (the first one's, for a cached score)
    cached: bool = False  # looked up in the cache, not computed now

    def record(self) -> dict[str, Any]:
        """The cache's JSON record (``score`` names the main metric there, as it always has)."""
        return {
            "task": self.task,
            "split": self.split,
            "examples": self.examples,
            "metrics": dict(self.metrics),
            "main_metric": self.main_metric,
            "score": self.metric,
            "degenerate": self.degenerate,
            "macs": self.macs,
            "macs_seq_len": self.macs_seq_len,
            "params": self.params,
            "arch_hash": self.arch_hash,
            "seconds": self.seconds,
        }

    def to_json(self) -> dict[str, Any]:
        """What ``bertnas eval --json`` prints: the record and whether it was cached."""
        return {**self.record(), "cached": self.cached}

    @classmethod
    def from_record(cls, data: dict[str, Any], cached: bool = False) -> SubnetScore:
        return cls(
            metric=float(data["score"]),
            metrics=dict(data["metrics"]),
            main_metric=data["main_metric"],
            degenerate=bool(data["degenerate"]),
            macs=int(data["macs"]),
            macs_seq_len=int(data["macs_seq_len"]),
            params=int(data["params"]),
            arch_hash=data["arch_hash"],
            task=data["task"],
            split=data["split"],
            examples=int(data["examples"]),
            seconds=float(data["seconds"]),
            cached=cached,
        )


@dataclass(frozen=True)
class PartialScore:
    """A multi-fidelity evaluation stopped early: the subnet could not reach the front."""

    bound: float  # the best final metric still possible (every remaining example right)
    partial_metric: float  # the main metric on the share scored
    fraction: float  # the share of the examples scored
    seconds: float


@dataclass(frozen=True)
class FrontPoint:
    """One point of a device's front: a trial's subnet, its scores and its predicted latencies."""

    trial: int
    metric: float  # on the split the search scored and selected on
    dev_metric: float | None  # on dev, evaluated once after the search (None: not reported there)
    degenerate: bool  # constant predictions: never recommended
    latency_ms: dict[str, float | None]  # predicted, per device the trials table holds
    macs: int | None
    params: int | None
    arch_hash: str
    config: dict[str, Any]  # the subnet's ArchConfig JSON

    @classmethod
    def from_row(cls, row: Any) -> FrontPoint:
        """From a row of a front (:func:`bertnas.search.pareto.pareto_front`, with ``dev_metric``)."""
        return cls(
            trial=int(row["number"]),
            metric=float(row["metric"]),
            dev_metric=_float(row["dev_metric"]) if "dev_metric" in row else None,
            degenerate=is_flagged(row.get("degenerate")),
            latency_ms={
                c.removeprefix("latency_ms."): _float(row[c]) for c in row.index if c.startswith("latency_ms.")
            },
            macs=_int(row["macs"]),
            params=_int(row["params"]),
            arch_hash=row["arch_hash"],
            config=json.loads(row["config"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The point as ``pareto_<device>.json`` lists it."""
        return {
            "trial": self.trial,
            "metric": self.metric,
            "dev_metric": self.dev_metric,
            "degenerate": self.degenerate,
            "latency_ms": dict(self.latency_ms),
            "macs": self.macs,
            "params": self.params,
            "arch_hash": self.arch_hash,
            "config": self.config,
        }

    def summary(self, device: str) -> dict[str, Any]:
        """The point as the ``--json`` summaries list it: the latency on ``device`` only, no config."""
        return {
            "trial": self.trial,
            "metric": self.metric,
            "dev_metric": self.dev_metric,
            "degenerate": self.degenerate,
            "latency_ms": float(self.latency_ms[device]),
            "macs": int(self.macs),
            "params": int(self.params),
        }


@dataclass
class DeviceFront:
    """A device's front in a search's summary, with the references it is read against."""

    device: str
    budget_ms: float | None
    points: list[FrontPoint]
    full_model: dict[str, float] | None = None  # the backbone's metric and latency on the device
    conformal: dict[str, Any] | None = None  # the guarantee behind the budget (--confidence)

    def to_json(self) -> dict[str, Any]:
        return {
            "budget_ms": self.budget_ms,
            "points": [point.summary(self.device) for point in self.points],
            "full_model": self.full_model,
            "conformal": self.conformal,
        }


@dataclass
class SearchSummary:
    """What a search returns (and ``bertnas search --json`` prints): counts and each device's front."""

    study: str
    storage: str | None
    metric: str
    baseline: dict[str, Any] | None
    counts: dict[str, int]
    wall_time_s: float
    fronts: dict[str, DeviceFront]
    run_dir: str | None = None
    backend: dict[str, Any] | None = None  # the Ray session (workers, address, startup), if any

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_dir": self.run_dir,
            "study": self.study,
            "storage": self.storage,
            "metric": self.metric,
            "baseline": self.baseline,
            "counts": self.counts,
            "wall_time_s": self.wall_time_s,
            "fronts": {device: front.to_json() for device, front in self.fronts.items()},
        }
        if self.backend is not None:
            out["backend"] = self.backend
        return out


def _float(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def _int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)
