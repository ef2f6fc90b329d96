"""Regularized evolution (Real et al., AAAI 2019) as an Optuna sampler, multi-objective.

The population is the last ``population_size`` completed, feasible trials (age-based
removal: the oldest leaves first). A new trial's config is the mutated winner of a
tournament among ``sample_size`` random members, optionally crossed over with a second
winner first. With two objectives the tournament picks a random member of the sample's
non-dominated set. Mutation and crossover are the space's own
(:meth:`~bertnas.space.SearchSpace.mutate`, :meth:`~bertnas.space.SearchSpace.crossover`),
which keep inactive dimensions, so a dropped layer can come back with its old shape.

All state lives in the study, so a resumed study continues the same evolution. The
first ``population_size`` trials are random.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from bertnas.arch import ArchConfig
from bertnas.search.planned import SCREEN_DRAWS, PlannedSampler
from bertnas.space import SearchSpace


class EvolutionSampler(PlannedSampler):
    """Regularized evolution over a :class:`SearchSpace`; use with ``space.suggest(trial)``."""

    def __init__(
        self,
        space: SearchSpace,
        population_size: int = 20,
        sample_size: int = 5,
        crossover_prob: float = 0.5,
        seed: int | None = None,
        feasible: Callable[[ArchConfig], bool] | None = None,
    ) -> None:
        super().__init__(space, seed, feasible)
        self.population_size = population_size
        self.sample_size = sample_size
        self.crossover_prob = crossover_prob

    def _plan(self, study: optuna.Study, number: int) -> dict[str, Any]:
        """The child's full value dict, or {} (random) while the population is filling."""
        population = self._population(study)
        if len(population) < self.population_size:
            return {}
        # Seeded per trial number, so a resumed study makes the same choices.
        rng = np.random.default_rng(None if self.seed is None else (self.seed, number))
        child = self._child(population, study.directions, rng)
        # a child over every budget is bred again in memory (microseconds), not rejected as a trial
        for _ in range(SCREEN_DRAWS if self.feasible is not None else 0):
            if self.feasible(child):
                break
            child = self._child(population, study.directions, rng)
        return self.space.to_values(child)

    def _child(
        self, population: list[FrozenTrial], directions: list[StudyDirection], rng: np.random.Generator
    ) -> ArchConfig:
        parent = self._tournament(population, directions, rng)
        arch = self.space.from_values(parent.params)
        if rng.random() < self.crossover_prob:
            other = self._tournament(population, directions, rng)
            arch = self.space.crossover(arch, self.space.from_values(other.params), rng)
        child = self.space.mutate(arch, rng, prob=1.0 / max(1, len(self.space.dimensions)))
        for _ in range(10):  # a mutation that changed nothing would re-evaluate the parent
            if child != arch:
                break
            child = self.space.mutate(arch, rng, prob=1.0 / max(1, len(self.space.dimensions)))
        return child

    def _population(self, study: optuna.Study) -> list[FrozenTrial]:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        feasible = [t for t in done if all(c <= 0 for c in t.constraints.values())]
        feasible.sort(key=lambda t: t.number)
        return feasible[-self.population_size :]

    def _tournament(
        self, population: list[FrozenTrial], directions: list[StudyDirection], rng: np.random.Generator
    ) -> FrozenTrial:
        picks = rng.choice(len(population), size=min(self.sample_size, len(population)), replace=False)
        sample = [population[int(i)] for i in picks]
        signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions]
        costs = [[s * v for s, v in zip(signs, t.values, strict=True)] for t in sample]
        front = [
            t
            for t, c in zip(sample, costs, strict=True)
            if not any(all(o <= m for o, m in zip(other, c, strict=True)) and other != c for other in costs)
        ]
        return front[int(rng.integers(len(front)))]
