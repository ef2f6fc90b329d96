"""One trial: suggest a subnet, predict its latency on every device, reject it or evaluate it.

The order matters: latency predictions cost microseconds, an accuracy evaluation costs
seconds, so a subnet over every device's budget is rejected (trial state PRUNED, its
latencies recorded) before any accuracy evaluation. What a trial records (user
attributes) is everything later commands need: the metric, the latency per device,
MACs, params and the config JSON, so fronts for other budgets are rebuilt from storage.

:class:`TrialEvaluator` holds no Optuna state between trials, so any backend (the local
loop, Ray workers) can call it: ``values = trial_evaluator(trial)``, raising
:class:`optuna.TrialPruned` for a rejected subnet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import optuna

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.search.budget import format_ms
from bertnas.search.objectives import CONSTRAINT_NAME, Objectives, latency_column
from bertnas.space import SearchSpace, load_space

#: Trial user attribute names.
STATUS_ATTR = "status"
CONFIG_ATTR = "config"
REJECTED = "rejected: over every latency budget"
EVALUATED = "evaluated"
PRUNED_FRONT = "pruned: could not reach the front"
#: Multi-fidelity trial attributes: best final metric still possible, partial metric, share evaluated.
BOUND_ATTR = "metric_bound"
PARTIAL_ATTR = "metric_partial"
FRACTION_ATTR = "eval_fraction"


class LatencyPredictor(Protocol):
    def predict(self, arch: ArchConfig, seq_len: int | None = None) -> float: ...

    def predict_many(self, archs: list[ArchConfig], seq_len: int | None = None) -> np.ndarray: ...


class AccuracyEvaluator(Protocol):
    def evaluate(self, arch: ArchConfig) -> dict[str, Any]: ...


@dataclass
class Candidate:
    """A suggested subnet with its predicted latencies."""

    arch: ArchConfig
    latency_ms: dict[str, float]
    deployable_on: list[str]


def measurement(result: dict[str, Any]) -> dict[str, Any]:
    """The trial record of a :meth:`SubnetEvaluator.evaluate` result: metric, MACs, params, cache hit."""
    return {
        "metric": float(result["score"]),
        "metrics": dict(result["metrics"]),
        "macs": int(result["macs"]),
        "params": int(result["params"]),
        "cached": bool(result.get("cached", False)),
        "degenerate": bool(result.get("degenerate", False)),
    }


class FrontPruner(optuna.pruners.BasePruner):
    """Multi-fidelity pruning for a (metric, latency) study: prune a trial whose best still
    possible metric (user attribute ``metric_bound``) is weakly dominated by an evaluated,
    feasible trial, i.e. one at most as slow with at least that metric. With an exact bound
    (accuracy, F1) a pruned trial could never have joined the front."""

    def __init__(self, device: str) -> None:
        self.column = latency_column(device)

    def prune(self, study: optuna.Study, trial: Any) -> bool:
        bound = trial.user_attrs.get(BOUND_ATTR)
        latency = trial.user_attrs.get(self.column)
        if bound is None or latency is None:
            return False
        for done in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if not all(c <= 0 for c in done.constraints.values()):
                continue
            if done.values[0] >= bound and done.values[1] <= latency:
                return True
        return False


class TrialEvaluator:
    """Turns an Optuna trial into objective values: suggest, predict, reject or evaluate, record.

    With ``fidelity`` (a fraction in (0, 1)), a deployable subnet is first scored on that
    share of the evaluation data and finished only if it could still reach the front
    (:class:`FrontPruner`); otherwise the trial is PRUNED with status :data:`PRUNED_FRONT`.
    """

    def __init__(
        self,
        space: SearchSpace,
        accuracy: AccuracyEvaluator,
        predictors: Mapping[str, LatencyPredictor],
        objectives: Objectives,
        seq_len: int | None = None,
        fidelity: float | None = None,
    ) -> None:
        missing = [d for d in objectives.devices if d not in predictors]
        if missing:
            raise BertnasError(f"no latency predictor for device {missing[0]!r}")
        self.space = space
        self.accuracy = accuracy
        self.predictors = dict(predictors)
        self.objectives = objectives
        self.seq_len = seq_len  # None: each profile's own sequence length
        self.fidelity = fidelity
        self.pruner = FrontPruner(objectives.devices[0])

    def latencies(self, arch: ArchConfig) -> dict[str, float]:
        """Predicted latency in ms of ``arch`` on every device."""
        return {d: float(self.predictors[d].predict(arch, self.seq_len)) for d in self.objectives.devices}

    def propose(self, trial: optuna.trial.BaseTrial) -> Candidate:
        """The trial's subnet and where it can be deployed (no accuracy evaluation)."""
        arch = self.space.suggest(trial)
        latency = self.latencies(arch)
        return Candidate(arch, latency, self.objectives.deployable_on(latency))

    def measure(self, candidate: Candidate) -> dict[str, Any]:
        """Accuracy (cached weight-shared evaluation), MACs, params of a deployable candidate."""
        return measurement(self.accuracy.evaluate(candidate.arch))

    def begin(self, trial: optuna.Trial) -> Candidate:
        """Propose and record the trial's subnet and latencies; raises :class:`optuna.TrialPruned` when rejected."""
        candidate = self.propose(trial)
        trial.set_user_attr(CONFIG_ATTR, candidate.arch.to_json())
        trial.set_user_attr("arch_hash", candidate.arch.hash())
        for device, value in candidate.latency_ms.items():
            trial.set_user_attr(latency_column(device), value)
        trial.set_constraint(CONSTRAINT_NAME, self.objectives.constraint(candidate.latency_ms))
        if not candidate.deployable_on:
            trial.set_user_attr(STATUS_ATTR, REJECTED)
            over = ", ".join(f"{d} {format_ms(v)}" for d, v in candidate.latency_ms.items())
            raise optuna.TrialPruned(f"{REJECTED} ({over})")
        return candidate

    def finish(self, trial: optuna.Trial, candidate: Candidate, record: dict[str, Any]) -> list[float]:
        """Record a :meth:`measure` result (computed here or on a remote worker); the objective values."""
        for key in ("metric", "metrics", "macs", "params", "cached", "degenerate"):
            trial.set_user_attr(key, record[key])
        trial.set_user_attr(STATUS_ATTR, EVALUATED)
        return self.objectives.values(record["metric"], candidate.latency_ms)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        """Objective values for ``trial``; raises :class:`optuna.TrialPruned` when rejected."""
        candidate = self.begin(trial)
        if self.fidelity is None:
            record = self.measure(candidate)
            killpoints.reached("trial-evaluated")
            return self.finish(trial, candidate, record)

        def could_reach(bound: float) -> bool:
            trial.set_user_attr(BOUND_ATTR, bound)
            return not self.pruner.prune(trial.study, trial)

        result = self.accuracy.evaluate_staged(candidate.arch, self.fidelity, could_reach)
        if result.get("pruned"):
            trial.set_user_attr(PARTIAL_ATTR, result["partial_score"])
            trial.set_user_attr(FRACTION_ATTR, result["fraction"])
            trial.set_user_attr(STATUS_ATTR, PRUNED_FRONT)
            raise optuna.TrialPruned(f"{PRUNED_FRONT} (at most {result['bound']:.4f})")
        return self.finish(trial, candidate, measurement(result))


def reference_archs(space: SearchSpace, full: ArchConfig) -> dict[str, ArchConfig]:
    """The plot's reference points: the full model and DynaBERT's width x depth grid."""
    grid = load_space("dynabert").bind(space.limits, backbone=space.backbone)
    points = {"full": full}
    for arch in grid.enumerate(limit=100):
        values = grid.to_values(arch)
        label = f"dynabert w{values.get('width', 1.0)} d{values.get('depth', 1.0)}"
        points[label] = arch
    return points


def reference_points(
    archs: Mapping[str, ArchConfig],
    accuracy: AccuracyEvaluator,
    predictors: Mapping[str, LatencyPredictor],
    seq_len: int | None = None,
) -> list[dict[str, Any]]:
    """Metric (cached evaluation) and latency on every device of each reference config."""
    points = []
    for label, arch in archs.items():
        result = accuracy.evaluate(arch)
        points.append(
            {
                "label": label,
                "metric": float(result["score"]),
                "degenerate": bool(result.get("degenerate", False)),
                "macs": int(result["macs"]),
                "params": int(result["params"]),
                "config": arch.to_json(),
                "latency_ms": {d: float(p.predict(arch, seq_len)) for d, p in predictors.items()},
            }
        )
    return points
