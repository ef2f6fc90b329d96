"""The base of samplers that plan a trial's whole config at once (evolution, surrogate).

Optuna asks a sampler one parameter at a time, in the order the define-by-run
:meth:`~bertnas.space.SearchSpace.suggest` asks for them. A planned sampler decides the
trial's full value dict on the first question (:meth:`_plan`) and answers every later
question from it; a parameter the plan does not cover (an empty plan: "random") is
drawn by Optuna's random sampler. Subclasses implement :meth:`_plan` only.

With ``feasible`` (arch -> whether it meets at least one budget), an empty plan is
filled in memory by random configs drawn until one is feasible: a config over every
budget then costs one latency prediction (tens of microseconds) instead of a rejected
trial in the study storage (tens of milliseconds of SQLite writes). Samplers that plan
themselves (evolution, surrogate) screen their own children the same way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from bertnas.arch import ArchConfig
from bertnas.space import SearchSpace

#: Random configs drawn in memory for one trial before it is left to be rejected.
SCREEN_DRAWS = 2000


class PlannedSampler(BaseSampler):
    """A sampler whose :meth:`_plan` returns the trial's value dict (``{}``: random)."""

    def __init__(
        self, space: SearchSpace, seed: int | None = None, feasible: Callable[[ArchConfig], bool] | None = None
    ) -> None:
        self.space = space
        self.seed = seed
        self.feasible = feasible
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
            plan = self._plans[trial.number] = self._screened(self._plan(study, trial.number), trial.number)
        value = plan.get(param_name)
        if isinstance(param_distribution, CategoricalDistribution) and value in param_distribution.choices:
            return value
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def _screened(self, plan: dict[str, Any], number: int) -> dict[str, Any]:
        """``plan``, or for an empty (random) plan a random feasible config's values, drawn in memory
        (seeded by trial number); ``{}`` when none of :data:`SCREEN_DRAWS` draws is feasible."""
        if plan or self.feasible is None:
            return plan
        rng = np.random.default_rng([0 if self.seed is None else self.seed, number, 1])
        for _ in range(SCREEN_DRAWS):
            arch = self.space.sample(rng)
            if self.feasible(arch):
                return self.space.to_values(arch)
        return {}

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._plans.pop(trial.number, None)


class ScreenedRandomSampler(PlannedSampler):
    """Random search over the configs that meet at least one budget: each trial a uniform
    random config (per dimension, as :meth:`SearchSpace.sample`) drawn until ``feasible``."""

    def _plan(self, study: optuna.Study, number: int) -> dict[str, Any]:
        return {}
