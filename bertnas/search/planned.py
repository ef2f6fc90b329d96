"""The base of samplers that plan a trial's whole config at once (evolution, surrogate).

Optuna asks a sampler one parameter at a time, in the order the define-by-run
:meth:`~bertnas.space.SearchSpace.suggest` asks for them. A planned sampler decides the
trial's full value dict on the first question (:meth:`_plan`) and answers every later
question from it; a parameter the plan does not cover (an empty plan: "random") is
drawn by Optuna's random sampler. Subclasses implement :meth:`_plan` only.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from bertnas.space import SearchSpace


class PlannedSampler(BaseSampler):
    """A sampler whose :meth:`_plan` returns the trial's value dict (``{}``: random)."""

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self.space = space
        self.seed = seed
        self._random = RandomSampler(seed=seed)
        self._plans: dict[int, dict[str, Any]] = {}

    @abstractmethod
    def _plan(self, study: optuna.Study, number: int) -> dict[str, Any]:
        """The full value dict of trial ``number`` (``space.to_values`` of its config), or {}."""

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        plan = self._plans.get(trial.number)
        if plan is None:
            plan = self._plans[trial.number] = self._plan(study, trial.number)
        value = plan.get(param_name)
        if isinstance(param_distribution, CategoricalDistribution) and value in param_distribution.choices:
            return value
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._plans.pop(trial.number, None)
