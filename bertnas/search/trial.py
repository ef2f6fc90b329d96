"""One trial: suggest a subnet, predict its latency on every device, reject it or record its score.

The order matters: latency predictions cost microseconds, an accuracy evaluation costs
seconds, so a subnet over every device's budget is rejected (trial state PRUNED, its
latencies recorded) before any accuracy evaluation. What a trial records (user
attributes) is everything later commands need: the metric, the latency per device,
MACs, params and the config JSON, so fronts for other budgets are rebuilt from storage.

:class:`TrialEvaluator` is the cheap half of a trial and holds no Optuna state between
trials: :meth:`~TrialEvaluator.begin` proposes and records a subnet (raising
:class:`optuna.TrialPruned` for a rejected one), :meth:`~TrialEvaluator.finish` records the
:class:`~bertnas.search.accuracy.SubnetScore` that a backend computed for it, in this
process or on a Ray worker (:mod:`bertnas.search.loop`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import optuna

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.search.budget import format_ms
from bertnas.search.objectives import CONSTRAINT_NAME, Objectives, latency_column
from bertnas.search.results import PartialScore, SubnetScore
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


@dataclass
class Proposal:
    """A suggested subnet with its predicted latencies, and where it meets the budget."""

    arch: ArchConfig
    latency_ms: dict[str, float]
    deployable_on: list[str]


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
    """The cheap half of a trial: suggest, predict, reject or record (see the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        predictors: Mapping[str, LatencyPredictor],
        objectives: Objectives,
        seq_len: int | None = None,
    ) -> None:
        missing = [d for d in objectives.devices if d not in predictors]
        if missing:
            raise BertnasError(f"no latency predictor for device {missing[0]!r}")
        self.space = space
        self.predictors = dict(predictors)
        self.objectives = objectives
        self.seq_len = seq_len  # None: each profile's own sequence length

    def latencies(self, arch: ArchConfig) -> dict[str, float]:
        """Predicted latency in ms of ``arch`` on every device."""
        return {d: float(self.predictors[d].predict(arch, self.seq_len)) for d in self.objectives.devices}

    def propose(self, trial: optuna.trial.BaseTrial) -> Proposal:
        """The trial's subnet and where it can be deployed (no accuracy evaluation)."""
        arch = self.space.suggest(trial)
        latency = self.latencies(arch)
        return Proposal(arch, latency, self.objectives.deployable_on(latency))

    def begin(self, trial: optuna.Trial) -> Proposal:
        """Propose and record the trial's subnet and latencies; raises :class:`optuna.TrialPruned` when rejected."""
        proposal = self.propose(trial)
        trial.set_user_attr(CONFIG_ATTR, proposal.arch.to_json())
        trial.set_user_attr("arch_hash", proposal.arch.hash())
        for device, value in proposal.latency_ms.items():
            trial.set_user_attr(latency_column(device), value)
        trial.set_constraint(CONSTRAINT_NAME, self.objectives.constraint(proposal.latency_ms))
        if not proposal.deployable_on:
            trial.set_user_attr(STATUS_ATTR, REJECTED)
            over = ", ".join(f"{d} {format_ms(v)}" for d, v in proposal.latency_ms.items())
            raise optuna.TrialPruned(f"{REJECTED} ({over})")
        return proposal

    def finish(self, trial: optuna.Trial, proposal: Proposal, score: SubnetScore) -> list[float]:
        """Record the score of the trial's subnet (computed here or on a remote worker); the objective values."""
        for key, value in trial_record(score).items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(STATUS_ATTR, EVALUATED)
        return self.objectives.values(score.metric, proposal.latency_ms)

    def stop(self, trial: optuna.Trial, partial: PartialScore) -> optuna.TrialPruned:
        """Record a multi-fidelity stop; the exception that ends the trial (PRUNED, status :data:`PRUNED_FRONT`)."""
        trial.set_user_attr(PARTIAL_ATTR, partial.partial_metric)
        trial.set_user_attr(FRACTION_ATTR, partial.fraction)
        trial.set_user_attr(STATUS_ATTR, PRUNED_FRONT)
        return optuna.TrialPruned(f"{PRUNED_FRONT} (at most {partial.bound:.4f})")


def trial_record(score: SubnetScore) -> dict[str, Any]:
    """The user attributes a trial keeps of its subnet's score."""
    return {
        "metric": float(score.metric),
        "metrics": dict(score.metrics),
        "macs": int(score.macs),
        "params": int(score.params),
        "cached": bool(score.cached),
        "degenerate": bool(score.degenerate),
    }


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
    scores: Sequence[SubnetScore],
    predictors: Mapping[str, LatencyPredictor],
    seq_len: int | None = None,
) -> list[dict[str, Any]]:
    """The ``references.json`` record of each reference config: its score and latency on every device."""
    points = []
    for (label, arch), score in zip(archs.items(), scores, strict=True):
        points.append(
            {
                "label": label,
                "metric": float(score.metric),
                "degenerate": bool(score.degenerate),
                "macs": int(score.macs),
                "params": int(score.params),
                "config": arch.to_json(),
                "latency_ms": {d: float(p.predict(arch, seq_len)) for d, p in predictors.items()},
            }
        )
    return points
