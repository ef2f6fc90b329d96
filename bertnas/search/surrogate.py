"""A search that starts where the families are strong and screens offspring with an accuracy predictor.

``--sampler surrogate`` (:class:`SurrogateSampler`), an evolutionary multi-objective
search in three parts, as Once-for-All's accuracy predictor and DyNAS-T's LINAS do:

1. **First generation** (``population_size`` trials): the full model and DynaBERT's
   grid, then subnets drawn in turn from each family sub-space the search space contains
   (PoWER-BERT, schuBERT, MobileBERT, DynaBERT) and from the space itself, each checked
   against the budgets before it is proposed: a union search starts from the points each
   family alone would find, instead of from uniform draws that change every dimension at
   once.
2. **Offspring**: ``candidates`` children per trial from tournament-selected parents of
   the current non-dominated set: half by crossover and mutation over every dimension, half
   by a *family move*, a mutation along one family's own axes only (its dimension groups:
   retention alone for PoWER-BERT, depth, heads and FFN for DynaBERT, ...; or one group of
   the space), which is how each family's own search walks from a good point; plus fresh
   family draws for diversity. Children over every budget, and children already evaluated,
   are dropped *before* screening, so the screening never proposes a candidate over every
   budget.
3. **Screening**: an :class:`AccuracySurrogate` (extremely randomized trees on the
   space's encoding and the predicted latency, refit on every evaluated trial of the
   study) predicts each child's metric with an uncertainty; the child with the largest
   optimistic hypervolume improvement (mean + ``kappa`` x spread) over the current front
   is the one evaluated. With budget ``levels`` (latencies on the optimized device), every
   other offspring trial instead targets one level in turn: among the children under it,
   the one whose optimistic metric most exceeds the best subnet found under it (hypervolume
   improvement again when none does). Hypervolume alone favours the cheap end, where a point
   covers a wide latency strip; the levels give the expensive end, where a deployment team's
   budget usually sits, its share of the evaluations.

With a ``floor`` (the score of a model that ignores its input: the majority class, the mean
prediction), the search knows what a useless subnet scores: a trial whose predictions are
constant (``degenerate``) or that scores no better than the floor is never a parent nor a
front point, the predictor learns it at the floor, and improvement is measured above the
floor, as the benchmark's hypervolume is. On a small task, where much of the space
collapses to the majority class, the evaluations then go to subnets that learned something.

Every draw is seeded by ``(seed, trial number)`` and the state is the study itself, so a
resumed study continues the same search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from bertnas.arch import ArchConfig
from bertnas.search.pareto import front_mask, hypervolume
from bertnas.search.planned import PlannedSampler
from bertnas.space import SearchSpace
from bertnas.space.families import family_groups, family_spaces
from bertnas.space.space import dimension_group


class AccuracySurrogate:
    """Predicts a subnet's metric from its encoding and latency: mean and spread over trees."""

    def __init__(self, space: SearchSpace, seed: int = 0, trees: int = 64) -> None:
        self.space = space
        self.seed = seed
        self.trees = trees
        self._model: Any = None

    def features(self, archs: Sequence[ArchConfig], latency_ms: Sequence[float]) -> np.ndarray:
        encoded = np.stack([self.space.encode(arch) for arch in archs]) if archs else np.zeros((0, 0))
        return np.column_stack([encoded, np.log(np.maximum(np.asarray(latency_ms, dtype=float), 1e-6))])

    def fit(self, archs: Sequence[ArchConfig], latency_ms: Sequence[float], metric: Sequence[float]) -> None:
        from sklearn.ensemble import ExtraTreesRegressor

        self._model = ExtraTreesRegressor(
            n_estimators=self.trees, min_samples_leaf=2, max_features=0.5, random_state=self.seed, n_jobs=1
        )
        self._model.fit(self.features(archs, latency_ms), np.asarray(metric, dtype=float))

    def predict(self, archs: Sequence[ArchConfig], latency_ms: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, spread)`` of the predicted metric of each arch."""
        if self._model is None:
            raise RuntimeError("fit the surrogate first")
        x = self.features(archs, latency_ms)
        per_tree = np.stack([tree.predict(x) for tree in self._model.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)


@dataclass
class Population:
    """The evaluated trials a surrogate generation breeds from, on the maximized scale (``sign`` x metric)."""

    archs: list[ArchConfig]
    metric: np.ndarray  # sign x metric: larger is better
    latency: np.ndarray  # on the optimized device
    feasible: np.ndarray  # within at least one budget
    useful: np.ndarray  # feasible, and (with a floor) learned something: not degenerate, above the floor
    learned: np.ndarray  # what the predictor fits: the metric, a degenerate subnet's at most the floor
    floor: float | None  # sign x floor

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], sign: float, floor: float | None) -> Population:
        archs = [ArchConfig.from_json(t.user_attrs["config"]) for t in trials]
        metric = np.array([sign * t.values[0] for t in trials], dtype=float)
        latency = np.array([t.values[1] for t in trials], dtype=float)
        feasible = np.array([all(c <= 0 for c in t.constraints.values()) for t in trials], dtype=bool)
        if floor is None:
            return cls(archs, metric, latency, feasible, feasible.copy(), metric, None)
        floor = sign * floor
        degenerate = np.array([bool(t.user_attrs.get("degenerate", False)) for t in trials], dtype=bool)
        useful = feasible & ~degenerate & (metric > floor + 1e-12)
        learned = np.where(degenerate, np.minimum(metric, floor), metric)
        return cls(archs, metric, latency, feasible, useful, learned, floor)

    def parents(self) -> np.ndarray:
        """Indices to breed from: the useful points, else the feasible ones, else all."""
        for mask in (self.useful, self.feasible):
            if mask.any():
                return np.flatnonzero(mask)
        return np.arange(len(self.archs))


class SurrogateSampler(PlannedSampler):
    """Family-seeded, surrogate-screened evolution over a :class:`SearchSpace` (see the module docstring).

    ``latency(arch)`` gives the predicted latency on the optimized (first) device;
    ``feasible(arch)`` whether the arch meets at least one device's budget; ``references``
    the configs the first generation starts with; ``families`` bound sub-spaces of ``space``;
    ``floor`` the input-ignoring score (None: unknown).
    """

    def __init__(
        self,
        space: SearchSpace,
        latency: Callable[[ArchConfig], float],
        feasible: Callable[[ArchConfig], bool],
        references: Sequence[ArchConfig] = (),
        families: Sequence[SearchSpace] = (),
        population_size: int = 20,
        candidates: int = 256,
        kappa: float = 1.0,
        seed: int | None = None,
        floor: float | None = None,
        move_share: float = 0.45,
        levels: Sequence[float] = (),
    ) -> None:
        super().__init__(space, seed, feasible)
        self.latency = latency
        self.references = list(references)
        self.families = list(families)
        self.population_size = population_size
        self.candidates = candidates
        self.kappa = kappa
        self.floor = floor
        self.move_share = move_share  # share of the offspring made by family moves
        self.levels = sorted(float(level) for level in levels)  # budget levels, ms on the optimized device
        # Family moves: each family's groups, then each single group of the space, once each.
        moves = [family_groups(family) & set(space.groups()) for family in self.families]
        moves += [frozenset({group}) for group in space.groups()]
        self.moves = list(dict.fromkeys(move for move in moves if move))

    # ------------------------------------------------------------------ the plan of one trial
    def _plan(self, study: optuna.Study, number: int) -> dict[str, Any]:
        rng = np.random.default_rng([0 if self.seed is None else self.seed, number])
        trials = study.get_trials(deepcopy=False)
        seen = {t.user_attrs.get("arch_hash") for t in trials if t.number != number}
        evaluated = [
            t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and "config" in t.user_attrs
        ]
        if len(evaluated) < self.population_size:
            arch = self._first_generation(rng, seen, started=len([t for t in trials if t.number != number]))
        else:
            arch = self._offspring(study, evaluated, rng, seen, number)
        return {} if arch is None else self.space.to_values(arch)

    def _first_generation(self, rng: np.random.Generator, seen: set, started: int) -> ArchConfig | None:
        for arch in self.references:
            if arch.hash() not in seen and self.space.contains(arch) and self.feasible(arch):
                return arch
        sources = [*self.families, self.space]
        for attempt in range(200):
            source = sources[(started + attempt) % len(sources)]
            arch = self._in_space(source.sample(rng))
            if arch.hash() not in seen and self.feasible(arch):
                return arch
        return None  # nothing feasible found: the trial falls back to random suggestions

    def _in_space(self, arch: ArchConfig) -> ArchConfig:
        return self.space.from_values(self.space.to_values(arch))

    def _offspring(
        self, study: optuna.Study, evaluated: list[FrozenTrial], rng: np.random.Generator, seen: set, number: int
    ) -> ArchConfig | None:
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        population = Population.of(evaluated, 1.0 if maximize else -1.0, self.floor)
        archs, metric, latency, useful = population.archs, population.metric, population.latency, population.useful
        parents = population.parents()
        ranks = np.full(len(archs), len(archs))
        ranks[parents] = _pareto_ranks(metric[parents], latency[parents])

        children: dict[str, ArchConfig] = {}
        mutation = 1.0 / max(1, len(self.space.dimensions))
        for _ in range(self.candidates * 4):
            if len(children) >= self.candidates:
                break
            draw = rng.random()
            if self.families and draw < 0.1:
                child = self._in_space(self.families[int(rng.integers(len(self.families)))].sample(rng))
            elif self.moves and draw < 0.1 + self.move_share:
                child = self._family_move(archs[self._tournament(parents, ranks, rng)], rng)
            else:
                a = archs[self._tournament(parents, ranks, rng)]
                if rng.random() < 0.5:
                    a = self.space.crossover(a, archs[self._tournament(parents, ranks, rng)], rng)
                child = self.space.mutate(a, rng, prob=mutation * (1 + int(rng.integers(3))))
            key = child.hash()
            if key in seen or key in children or not self.feasible(child):
                continue
            children[key] = child
        if not children:
            return None
        pool = list(children.values())
        pool_latency = np.array([self.latency(arch) for arch in pool])
        surrogate = AccuracySurrogate(self.space, seed=int(rng.integers(2**31)))
        surrogate.fit(archs, latency, population.learned)
        mean, spread = surrogate.predict(pool, pool_latency)
        optimistic = mean + self.kappa * spread
        if useful.any():
            front = front_mask(metric[useful], latency[useful])
            front_metric, front_latency = metric[useful][front], latency[useful][front]
        else:
            front_metric, front_latency = metric[:0], latency[:0]
        gains = None
        if self.levels and number % 2:  # a level round: the levels in turn, every other trial
            level = self.levels[(number // 2) % len(self.levels)]
            gains = level_improvement(
                optimistic, pool_latency, metric[useful], latency[useful], level, population.floor
            )
        if gains is None:
            gains = improvement(optimistic, pool_latency, front_metric, front_latency, floor=population.floor)
        best = np.flatnonzero(gains >= gains.max() - 1e-12)
        return pool[int(best[int(rng.integers(len(best)))])]

    def _family_move(self, parent: ArchConfig, rng: np.random.Generator) -> ArchConfig:
        """``parent`` mutated along one move's dimension groups only (1-3 changes expected)."""
        groups = self.moves[int(rng.integers(len(self.moves)))]
        names = [dim.name for dim in self.space.dimensions if dimension_group(dim.name) in groups]
        prob = min(1.0, (1 + int(rng.integers(3))) / max(1, len(names)))
        return self.space.mutate(parent, rng, prob=prob, groups=groups)

    @staticmethod
    def _tournament(candidates: list[int], ranks: np.ndarray, rng: np.random.Generator) -> int:
        a, b = (candidates[int(i)] for i in rng.integers(len(candidates), size=2))
        return a if ranks[a] <= ranks[b] else b


def improvement(
    metric: np.ndarray,
    latency: np.ndarray,
    front_metric: np.ndarray,
    front_latency: np.ndarray,
    floor: float | None = None,
) -> np.ndarray:
    """For each candidate point, the hypervolume it would add to the front (metric maximized,
    latency minimized); a dominated candidate gets minus its distance to the front instead,
    so the least dominated one still wins when none improves it. With a ``floor`` the
    hypervolume is measured above it (a point at or below the floor adds nothing)."""
    metric = np.asarray(metric, dtype=float)
    if not len(front_metric):
        return metric if floor is None else metric - floor
    ref_metric = float(min(front_metric.min(), np.min(metric))) - 1e-3 if floor is None else float(floor)
    ref_latency = float(max(front_latency.max(), np.max(latency))) * 1.1 + 1e-9
    base = hypervolume(front_metric, front_latency, ref_metric, ref_latency)
    gains = np.empty(len(metric))
    for k, (m, lat) in enumerate(zip(metric, latency, strict=True)):
        gain = hypervolume(np.append(front_metric, m), np.append(front_latency, lat), ref_metric, ref_latency) - base
        if gain > 1e-12:
            gains[k] = gain
        else:
            reachable = front_metric[front_latency <= lat]
            best = float(reachable.max()) if len(reachable) else ref_metric
            gains[k] = -(best - m) if len(reachable) or floor is not None else 0.0
    return gains


def level_improvement(
    metric: np.ndarray,
    latency: np.ndarray,
    found_metric: np.ndarray,
    found_latency: np.ndarray,
    level: float,
    floor: float | None = None,
) -> np.ndarray | None:
    """For each candidate, how far its metric exceeds the best found metric at latency <= ``level``
    (the ``floor``, or nothing, when none was found there); ``-inf`` over the level. None when no
    candidate under the level improves on it (the caller falls back to hypervolume improvement)."""
    metric, latency = np.asarray(metric, dtype=float), np.asarray(latency, dtype=float)
    under = found_metric[found_latency <= level]
    best = float(under.max()) if len(under) else (float(floor) if floor is not None else -np.inf)
    gains = np.where(latency <= level, metric - best, -np.inf)
    return gains if gains.max() > 0 else None


def _pareto_ranks(metric: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank (0 = front) of each point (metric maximized, latency minimized)."""
    ranks = np.full(len(metric), -1)
    remaining = np.arange(len(metric))
    rank = 0
    while len(remaining):
        mask = front_mask(metric[remaining], latency[remaining])
        ranks[remaining[mask]] = rank
        remaining = remaining[~mask]
        rank += 1
    return ranks


# Budget levels of the surrogate's level rounds: 4x, 3x, 2x and 1.33x faster than the budget, and the budget.
LEVEL_FRACTIONS = (0.25, 0.33, 0.5, 0.75, 1.0)


def make_surrogate_sampler(
    space: SearchSpace,
    latency_ms: Callable[[ArchConfig], Mapping[str, float]],
    budgets: Mapping[str, float],
    references: Sequence[ArchConfig],
    population_size: int | None,
    seed: int,
    floor: float | None = None,
    level_fractions: Sequence[float] = (),
) -> SurrogateSampler:
    """The ``surrogate`` sampler of a search over ``space`` with these budgets (first device optimized);
    ``floor``: the input-ignoring score of the data it is scored on; ``level_fractions``: the budget
    levels, as fractions of the first device's budget (empty: hypervolume improvement only)."""
    first = next(iter(budgets))

    def feasible(arch: ArchConfig) -> bool:
        latency = latency_ms(arch)
        return any(latency[d] <= b for d, b in budgets.items())

    return SurrogateSampler(
        space,
        latency=lambda arch: float(latency_ms(arch)[first]),
        feasible=feasible,
        references=references,
        families=family_spaces(space),
        population_size=population_size or 20,
        seed=seed,
        floor=floor,
        levels=[fraction * budgets[first] for fraction in level_fractions],
    )
