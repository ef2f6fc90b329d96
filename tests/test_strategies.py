"""Training strategies (recipes, progressive shrinking, family sampling), the surrogate sampler,
multi-fidelity pruning and degenerate-subnet detection, on small real spaces and synthetic studies."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from bertnas.arch import ArchLimits
from bertnas.errors import BertnasError
from bertnas.hardware import load_predictor
from bertnas.search.objectives import Objectives
from bertnas.search.study import make_sampler
from bertnas.search.surrogate import AccuracySurrogate, improvement, make_surrogate_sampler
from bertnas.search.trial import reference_archs
from bertnas.space import load_space
from bertnas.space.families import family_spaces
from bertnas.space.space import DIMENSION_GROUPS, dimension_group
from bertnas.training.evaluate import is_degenerate
from bertnas.training.strategies import RECIPES, Recipe, Stage, get_recipe
from bertnas.training.strategies import make_sampler as make_subnet_sampler

MINILM = ArchLimits(
    hidden_size=384, num_layers=6, num_heads=12, head_dim=32, ffn_dim=1536, max_ffn_stack=4, max_bottleneck=384
)


@pytest.fixture(scope="module")
def unified():
    return load_space("unified").bind(MINILM, backbone="all-MiniLM-L6-v2")


# ---------------------------------------------------------------------- recipes and stages
def _groups_changed(space, arch):
    """The dimension groups in which ``arch`` differs from the backbone-like defaults."""
    values, full = space.to_values(arch), space.to_values(space.restrict(arch, frozenset()))
    return {dimension_group(name) for name in values if values[name] != full[name]}


def test_progressive_stages_release_groups_in_the_recorded_order(unified):
    recipe = get_recipe("progressive")
    sampler = make_subnet_sampler(unified, recipe, seed=0)
    total = 100
    allowed: set[str] = set()
    seen_by_stage = []
    for k, stage in enumerate(recipe.stages):
        allowed |= set(stage.release)
        end = recipe.stages[k + 1].start if k + 1 < len(recipe.stages) else 1.0
        changed: set[str] = set()
        for step in range(int(stage.start * total), int(end * total)):
            for arch in sampler.subnets(step, total):
                changed |= _groups_changed(unified, arch)
        assert changed <= allowed, f"stage {k} trained {changed - allowed} before their release"
        seen_by_stage.append(changed)
    # each stage really trains what it releases (the space has every group but width and
    # attention_out_bias, which no committed space lists)
    for k, stage in enumerate(recipe.stages):
        released = set(stage.release) - {"width", "attention_out_bias"}
        assert released <= seen_by_stage[k] | set().union(*seen_by_stage[:k])
    assert recipe.released(0, total) == frozenset(recipe.stages[0].release)
    assert recipe.released(total - 1, total) is None


def test_the_sandwich_is_reproducible_per_step_and_includes_the_families(unified):
    recipe = get_recipe("families")
    first = make_subnet_sampler(unified, recipe, seed=3)
    again = make_subnet_sampler(unified, recipe, seed=3)
    assert [a.hash() for a in first.subnets(17, 100)] == [a.hash() for a in again.subnets(17, 100)]
    families = family_spaces(unified)
    assert [f.name for f in families] == ["dynabert", "powerbert", "schubert", "mobilebert"]
    members = {f.name: 0 for f in families}
    for step in range(40):
        subnets = first.subnets(step, 100)
        assert subnets[0] == unified.largest() and subnets[1] == unified.smallest()
        for arch in subnets[2:]:
            assert unified.contains(arch)
            for family in families:
                members[family.name] += family.contains(arch)
    # every family is drawn (a uniform union draw almost never lies in PoWER-BERT's space)
    assert all(count >= 5 for count in members.values()), members


def test_recipes_validate_their_fields():
    for recipe in RECIPES.values():
        recipe.validate()
    with pytest.raises(BertnasError, match="unknown training recipe"):
        get_recipe("nope")
    with pytest.raises(BertnasError, match="unknown dimension group"):
        Recipe("x", "", stages=(Stage(0.0, ("heads", "colour")),)).validate()
    with pytest.raises(BertnasError, match="must begin at 0"):
        Recipe("x", "", stages=(Stage(0.3, ("heads",)),)).validate()
    assert set(DIMENSION_GROUPS) == {g for stage in get_recipe("progressive").stages for g in stage.release}


# ---------------------------------------------------------------------- surrogate sampler
def _synthetic_objective(space, predictor, budget):
    """A deterministic accuracy surface: better with more compute, with a family sweet spot."""

    def objective(trial):
        arch = space.suggest(trial)
        latency = float(predictor.predict(arch))
        trial.set_user_attr("config", arch.to_json())
        trial.set_user_attr("arch_hash", arch.hash())
        trial.set_constraint("latency_over_budget", latency / budget - 1.0)
        if latency > budget:
            raise optuna.TrialPruned()
        code = space.encode(arch)
        metric = 0.6 + 0.3 * float(np.mean(np.clip(code, 0, 1))) - 0.05 * float(np.std(code))
        return metric, latency

    return objective


def test_surrogate_sampler_never_proposes_over_every_budget_and_resumes(unified, tmp_path):
    predictor = load_predictor("pixel4")
    budget = float(predictor.predict(unified.full())) * 0.5
    objectives = Objectives.build("accuracy", {"pixel4": budget})

    def latencies(arch):
        return {"pixel4": float(predictor.predict(arch))}

    references = list(reference_archs(unified, unified.full()).values())

    def run(n_trials, storage, name):
        sampler = make_sampler(
            "surrogate", 0, unified, 8, latency_ms=latencies, budgets=objectives.budgets, references=references
        )
        study = optuna.create_study(
            storage=storage, study_name=name, directions=objectives.directions, sampler=sampler, load_if_exists=True
        )
        study.optimize(_synthetic_objective(unified, predictor, budget), n_trials=n_trials)
        return study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    whole = run(20, f"sqlite:///{tmp_path / 'a.db'}", "s")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in whole.trials), "a proposal was over budget"
    # the first generation starts with the references that fit the budget, then the families
    first = [t.user_attrs["arch_hash"] for t in whole.trials[:3]]
    fitting = [a.hash() for a in references if predictor.predict(a) <= budget]
    assert first[: min(3, len(fitting))] == fitting[:3]
    assert len({t.user_attrs["arch_hash"] for t in whole.trials}) == 20  # no config evaluated twice
    # interrupted after 12 trials and resumed: the same 20 configs
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    run(12, storage, "s")
    resumed = run(8, storage, "s")
    assert [t.user_attrs["arch_hash"] for t in resumed.trials] == [t.user_attrs["arch_hash"] for t in whole.trials]


def test_surrogate_learns_the_surface_and_improvement_prefers_the_front(unified):
    rng = np.random.default_rng(0)
    archs = [unified.sample(rng) for _ in range(120)]
    latency = np.array([float(np.sum(unified.encode(a) + 1)) for a in archs])
    truth = np.array([0.5 + 0.4 * float(np.mean(np.clip(unified.encode(a), 0, 1))) for a in archs])
    model = AccuracySurrogate(unified, seed=0)
    model.fit(archs[:80], latency[:80], truth[:80])
    mean, spread = model.predict(archs[80:], latency[80:])
    assert np.corrcoef(mean, truth[80:])[0, 1] > 0.8 and (spread >= 0).all()
    front_metric, front_latency = np.array([0.7, 0.8]), np.array([10.0, 20.0])
    gains = improvement(np.array([0.9, 0.75, 0.6]), np.array([15.0, 15.0, 30.0]), front_metric, front_latency)
    assert gains[0] > gains[1] > 0 > gains[2]


def test_family_moves_change_only_their_groups(unified):
    from bertnas.space.families import family_groups

    groups = {family.name: family_groups(family) for family in family_spaces(unified)}
    assert groups["powerbert"] == {"retention"}
    assert groups["dynabert"] == {"depth", "heads", "ffn_dim"}  # the width multiplier's per-layer dimensions
    rng = np.random.default_rng(3)
    full = unified.full()
    for move in (frozenset({"retention"}), groups["mobilebert"], frozenset({"hidden_size", "qk_dim"})):
        changed = set()
        for _ in range(30):
            changed |= _groups_changed(unified, unified.mutate(full, rng, prob=0.5, groups=move))
        assert changed and changed <= move
    with pytest.raises(BertnasError, match="unknown dimension group 'heads.1'"):
        unified.mutate(full, rng, groups={"heads.1"})


def test_improvement_is_measured_above_the_floor():
    front_metric, front_latency = np.array([0.82, 0.86]), np.array([10.0, 20.0])
    gains = improvement(
        np.array([0.85, 0.80, 0.79]), np.array([5.0, 5.0, 5.0]), front_metric, front_latency, floor=0.81
    )
    assert gains[0] > 0 >= gains[1] > gains[2]  # at or below the floor nothing is gained
    # with no useful point yet, the distance above the floor
    first = improvement(np.array([0.83, 0.80]), np.array([5.0, 5.0]), front_metric[:0], front_latency[:0], floor=0.81)
    assert first == pytest.approx([0.02, -0.01])


def test_a_level_round_targets_the_best_subnet_under_its_level():
    from bertnas.search.surrogate import level_improvement

    found_metric, found_latency = np.array([0.80, 0.86, 0.90]), np.array([10.0, 30.0, 60.0])
    # candidates: over the level, under it but worse than found there, under it and better
    gains = level_improvement(
        np.array([0.99, 0.85, 0.88]), np.array([50.0, 20.0, 25.0]), found_metric, found_latency, 45.0
    )
    assert gains[0] == -np.inf and gains[1] < 0 < gains[2]
    assert gains[2] == pytest.approx(0.02)  # above the best found under 45 ms (0.86), not the overall best
    # nothing found under the level yet: measured from the floor; no improvement: None (hypervolume instead)
    assert level_improvement(np.array([0.83]), np.array([5.0]), found_metric, found_latency, 8.0, floor=0.81)[0] == (
        pytest.approx(0.02)
    )
    assert level_improvement(np.array([0.84]), np.array([20.0]), found_metric, found_latency, 45.0) is None


def test_level_rounds_spend_evaluations_under_the_level(unified):
    """With a budget level at a quarter of the budget, the level rounds (every other offspring
    trial) land under it; hypervolume improvement alone sends most of them elsewhere."""
    predictor = load_predictor("pixel4")
    budget = float(predictor.predict(unified.full()))
    objectives = Objectives.build("accuracy", {"pixel4": budget})
    references = list(reference_archs(unified, unified.full()).values())
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def landed(level_fractions):
        sampler = make_surrogate_sampler(
            unified,
            lambda arch: {"pixel4": float(predictor.predict(arch))},
            objectives.budgets,
            references,
            population_size=8,
            seed=0,
            level_fractions=level_fractions,
        )
        study = optuna.create_study(directions=objectives.directions, sampler=sampler)
        study.optimize(_synthetic_objective(unified, predictor, budget), n_trials=30)
        rounds = [t for t in study.trials[8:] if t.number % 2]
        return sum(t.values[1] <= 0.25 * budget for t in rounds) / len(rounds), sampler

    with_levels, sampler = landed((0.25,))
    assert sampler.levels == pytest.approx([0.25 * budget])
    without, _ = landed(())
    assert with_levels >= 0.9 and without < 0.5, (with_levels, without)


def test_collapsed_subnets_are_neither_parents_nor_front_points(unified):
    """With the floor known, a trial whose predictions are constant, or that scores no better than
    the floor, is not bred from and counts at most the floor for the predictor."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    from bertnas.search.surrogate import Population

    rng = np.random.default_rng(5)
    archs = [unified.sample(rng) for _ in range(5)]
    # (metric, degenerate, within budget)
    rows = [(0.80, True, True), (0.00, True, True), (0.79, False, True), (0.84, False, True), (0.90, False, False)]
    trials = [
        create_trial(
            values=[metric, 10.0 + k],
            params={"x": 0},
            distributions={"x": CategoricalDistribution([0])},
            user_attrs={"config": arch.to_json(), "degenerate": degenerate},
            system_attrs={"constraints": [-1.0 if fits else 1.0]},
        )
        for k, ((metric, degenerate, fits), arch) in enumerate(zip(rows, archs, strict=True))
    ]
    aware = Population.of(trials, 1.0, floor=0.80)
    assert aware.useful.tolist() == [False, False, False, True, False]
    assert aware.parents().tolist() == [3]
    assert aware.learned.tolist() == [0.80, 0.00, 0.79, 0.84, 0.90]  # a constant minority class stays lower
    blind = Population.of(trials, 1.0, floor=None)
    assert blind.parents().tolist() == [0, 1, 2, 3]  # every feasible trial breeds without the floor


# ---------------------------------------------------------------------- degenerate subnets
def test_constant_predictions_are_degenerate():
    assert is_degenerate(np.array([1, 1, 1, 1]), is_regression=False)
    assert not is_degenerate(np.array([1, 0, 1, 1]), is_regression=False)
    assert is_degenerate(np.full(5, 2.5) + 1e-9 * np.arange(5), is_regression=True)
    assert not is_degenerate(np.array([2.5, 2.6, 2.4]), is_regression=True)


# ---------------------------------------------------------------------- multi-fidelity
@pytest.mark.parametrize("task", ["sst2", "mrpc"])  # accuracy and F1
def test_multi_fidelity_never_drops_a_candidate_that_could_reach_the_front(task):
    """A synthetic study: 60 candidates with known predictions on 200 examples arrive one by one;
    each is scored on 30 % first and pruned by the real pruner when its bound is dominated.
    Every pruned one must end below the front of the trials evaluated before it."""
    from bertnas.data import compute_metrics
    from bertnas.search.objectives import latency_column
    from bertnas.search.trial import BOUND_ATTR, FrontPruner
    from bertnas.training.evaluate import optimistic_score

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=200)
    head = rng.permutation(200)[:60]
    rest = np.setdiff1d(np.arange(200), head)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    pruner = FrontPruner("pixel4")
    pruned = 0
    for k in range(60):
        skill = rng.uniform(0.3, 1.0)
        predictions = np.where(rng.random(200) < skill, labels, 1 - labels)
        latency = float(rng.uniform(1, 10))
        final = compute_metrics(task, predictions, labels)[_main_metric(task)]
        bound = optimistic_score(task, predictions[head], labels[head], labels[rest])
        assert bound >= final - 1e-12  # the bound is a bound
        trial = study.ask()
        trial.set_user_attr(latency_column("pixel4"), latency)
        trial.set_user_attr(BOUND_ATTR, bound)
        if pruner.prune(study, trial):
            pruned += 1
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            reachable = [t.values[0] for t in done if t.values[1] <= latency]
            assert reachable and max(reachable) >= final, f"candidate {k} could have reached the front"
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [final, latency])
    assert pruned > 0  # the test exercises pruning at all


def _main_metric(task):
    from bertnas.data import get_task

    return get_task(task).main_metric
