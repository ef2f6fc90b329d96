"""Running a search's trials: one :class:`TrialLoop` interface, the local backend, and the entry point.

:func:`run_search` is the whole search, read top-down::

    with the run directory's lock:
        plan = setup.plan(config)            # cheap: every check, no weights (bertnas.search.setup)
        loop = backend.make_loop(plan)       # LocalTrialLoop here, RayTrialLoop on a cluster
        summary = loop.run()                 # below

and :meth:`TrialLoop.run` is the same for every backend::

    open()                                   # the backend loads the evaluator / starts its workers
    study = open the Optuna study            # resume or create; close trials a killed session left
                                             # running; seed it; record this session
    run_trials(study)                        # the backend: until `trials` evaluations, each told
                                             # trial passing through after_trial() (stop rule,
                                             # give-up rule, progress)
    finalize(...)                            # the run directory (bertnas.search.finalize)

A backend implements :meth:`~TrialLoop.open`, :meth:`~TrialLoop.close`,
:meth:`~TrialLoop.baseline`, :meth:`~TrialLoop.score` (single subnets: the reference
points, the dev report) and :meth:`~TrialLoop.run_trials`, and brings an options class with
``check(config)`` and ``make_loop(plan, progress, on_trial)`` (:class:`LocalOptions`,
:class:`bertnas.search.ray_backend.RayOptions`).
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.locks import exclusive
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.search.backends import Backend, LocalOptions, OnTrial
from bertnas.search.budget import format_ms
from bertnas.search.config import SearchConfig
from bertnas.search.finalize import INTERRUPTED, finalize
from bertnas.search.objectives import Objectives, latency_column
from bertnas.search.planned import SCREEN_DRAWS, PlannedSampler
from bertnas.search.results import PartialScore, SearchSummary, SubnetScore
from bertnas.search.run import RUN_JSON, SearchRun, trials_frame, write_trials
from bertnas.search.setup import SearchPlan, plan
from bertnas.search.study import count_states, evaluation_units, existing_trials, make_sampler, open_storage, open_study
from bertnas.search.trial import (
    BOUND_ATTR,
    PRUNED_FRONT,
    STATUS_ATTR,
    FrontPruner,
    TrialEvaluator,
)

#: Give up when this many trials in a row were rejected (the budget is too tight for the sampler).
MAX_REJECTIONS_IN_A_ROW = 2000
#: The same for a sampler that screens its suggestions in memory: each rejected trial already
#: stands for ``SCREEN_DRAWS`` infeasible draws.
MAX_SCREENED_REJECTIONS_IN_A_ROW = 5
#: Study user attribute listing every session that worked on the study (killed ones included).
SESSIONS_ATTR = "sessions"
#: Rewrite trials.csv/.parquet every this many evaluated trials while the search runs.
TABLE_EVERY = 10


class TrialLoop(ABC):
    """How one search's trials run; see the module docstring for what the base shares."""

    #: The session record's ``backend`` (absent for the local backend, as before backends existed).
    backend: str | None = None

    def __init__(self, plan: SearchPlan, progress: bool = True, on_trial: OnTrial | None = None) -> None:
        self.plan = plan
        self.config = plan.config
        self.progress = progress
        self.on_trial = on_trial  # a hook (tests, monitoring): each told trial
        self.rejected_in_a_row = 0
        self._bar: Any = None
        self._last_table = 0
        self._limit = MAX_REJECTIONS_IN_A_ROW
        self._sampler: optuna.samplers.BaseSampler | None = None

    # ------------------------------------------------------------------ what a backend implements
    @abstractmethod
    def open(self) -> dict[str, Any]:
        """Get ready to evaluate (load the evaluator, start workers); the session record's extra fields."""

    def close(self) -> None:  # noqa: B027 (a backend that holds nothing need not override it)
        """Release what :meth:`open` took (always called)."""

    @abstractmethod
    def baseline(self) -> dict[str, Any]:
        """The input-ignoring score of the split trials are scored on (:func:`baseline_metrics`)."""

    @abstractmethod
    def score(self, archs: Sequence[ArchConfig], split: str) -> list[SubnetScore]:
        """The weight-shared scores of ``archs`` on ``split`` (cached; the scored split's subset applies
        when ``split`` is the search's own)."""

    @abstractmethod
    def run_trials(self, study: optuna.Study) -> None:
        """Run trials until :meth:`after_trial` says the search is done; it raises when it gives up."""

    # ------------------------------------------------------------------ shared
    def run(self) -> SearchSummary:
        """Open, run the trials, write the run directory; the summary."""
        try:
            extra = self.open()
            study = self._open_study(extra)
            start = time.perf_counter()
            done = evaluation_units(study)
            if done < self.config.trials:
                self._bar = tqdm(
                    total=self.config.trials,
                    initial=done,
                    desc=self.description(),
                    unit="trial",
                    disable=not self.progress,
                )
                self._last_table = done
                try:
                    self.run_trials(study)
                finally:
                    self._bar.close()
            summary = finalize(self, study, wall_time_s=time.perf_counter() - start)
            if self.backend is not None:
                summary.backend = {"name": self.backend, **self.plan.identity["sessions"][-1]}
            return summary
        finally:
            self.close()

    def description(self) -> str:
        return f"search {self.plan.study_name}"

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, notify: bool = True) -> bool:
        """Count and show a told trial; True once the study holds ``trials`` evaluations. Raises the
        too-tight error after :func:`rejection_limit` rejections in a row (the study is kept).
        ``notify``: call the ``on_trial`` hook now (a backend may call it later itself)."""
        # A multi-fidelity stop is no budget rejection: it counts as the share of an evaluation it cost.
        fidelity_stop = trial.user_attrs.get(STATUS_ATTR) == PRUNED_FRONT
        if trial.state == TrialState.PRUNED and not fidelity_stop:
            self.rejected_in_a_row += 1
            if self.rejected_in_a_row >= self._limit:
                raise too_tight(self.config, self._sampler)
            return False
        if not fidelity_stop:
            self.rejected_in_a_row = 0
        complete = self._report(study)
        if notify and self.on_trial is not None:
            self.on_trial(study, trial)
        return complete >= self.config.trials

    def _report(self, study: optuna.Study) -> int:
        """Advance the bar to the evaluated count, show the best feasible point, and rewrite
        trials.csv every ``TABLE_EVERY`` evaluations; the evaluated count."""
        counts = count_states(study)
        complete = evaluation_units(study)
        if self._bar is not None:
            self._bar.update(complete - self._bar.n)
            best = best_feasible(study, self.plan.objectives)
            postfix = {"rejected": counts["PRUNED"]}
            if best is not None:
                postfix["best"] = f"{best[0]:.4f}@{format_ms(best[1])}"
            self._bar.set_postfix(postfix, refresh=True)
        if complete - self._last_table >= TABLE_EVERY:
            write_trials(self.plan.run_dir, trials_frame(study, self.plan.objectives.devices))
            self._last_table = complete
        return complete

    def _open_study(self, extra: dict[str, Any]) -> optuna.Study:
        """Create or resume the study; close trials a killed session left running; seed a new one;
        record this session."""
        plan, config = self.plan, self.config
        storage = open_storage(plan.storage_url)
        before = existing_trials(storage, plan.study_name)
        # A resumed study gets a new sampler seed, so its random draws do not repeat the first session's.
        sampler_seed = config.seed + before
        self._sampler = search_sampler(plan, sampler_seed, self.baseline() if config.sampler == "surrogate" else None)
        self._limit = rejection_limit(self._sampler)
        study, resumed = open_study(storage, plan.study_name, plan.objectives, self._sampler, plan.identity)
        close_interrupted(study, plan)
        if not resumed and (config.seed_references or config.seed_from):
            seed_study(study, plan)
        entry = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trials_before": before, "sampler_seed": sampler_seed}
        if self.backend is not None:
            entry["backend"] = self.backend
        start_session(study, plan, {**entry, **extra})
        return study


# ---------------------------------------------------------------------- the local backend
class LocalTrialLoop(TrialLoop):
    """Trials in this process, through Optuna's ``study.optimize``; the evaluator loaded once."""

    evaluator: SubnetEvaluator

    def open(self) -> dict[str, Any]:
        self.evaluator = self.plan.load()
        self._on_split: dict[str, SubnetEvaluator] = {self.config.split: self.evaluator}
        return {}

    def baseline(self) -> dict[str, Any]:
        return self.evaluator.baseline()

    def score(self, archs: Sequence[ArchConfig], split: str) -> list[SubnetScore]:
        if split not in self._on_split:
            self._on_split[split] = self.evaluator.on_split(split, glue_dir=self.config.glue_dir)
        evaluator = self._on_split[split]
        return [evaluator.evaluate(arch) for arch in archs]

    def run_trials(self, study: optuna.Study) -> None:
        objective = LocalObjective(self.plan.trials, self.evaluator, self.config.fidelity)

        def callback(study: optuna.Study, trial: FrozenTrial) -> None:
            if self.after_trial(study, trial):
                study.stop()

        study.optimize(objective, n_trials=None, callbacks=[callback], gc_after_trial=False)


class LocalObjective:
    """The local backend's Optuna objective: a trial's cheap steps around this process's evaluator.

    With ``fidelity`` (a fraction in (0, 1)), a deployable subnet is first scored on that share
    of the evaluation data and finished only if it could still reach the front
    (:class:`~bertnas.search.trial.FrontPruner`); otherwise the trial is PRUNED with status
    :data:`~bertnas.search.trial.PRUNED_FRONT`.
    """

    def __init__(self, trials: TrialEvaluator, evaluator: SubnetEvaluator, fidelity: float | None = None) -> None:
        self.trials = trials
        self.evaluator = evaluator
        self.fidelity = fidelity
        self.pruner = FrontPruner(trials.objectives.devices[0])

    def __call__(self, trial: optuna.Trial) -> list[float]:
        proposal = self.trials.begin(trial)
        if self.fidelity is None:
            score = self.evaluator.evaluate(proposal.arch)
            killpoints.reached("trial-evaluated")
            return self.trials.finish(trial, proposal, score)

        def could_reach(bound: float) -> bool:
            trial.set_user_attr(BOUND_ATTR, bound)
            return not self.pruner.prune(trial.study, trial)

        result = self.evaluator.evaluate_staged(proposal.arch, self.fidelity, could_reach)
        if isinstance(result, PartialScore):
            raise self.trials.stop(trial, result)
        return self.trials.finish(trial, proposal, result)


# ---------------------------------------------------------------------- the entry point
def run_search(
    config: SearchConfig, progress: bool = True, backend: Backend | None = None, on_trial: OnTrial | None = None
) -> SearchSummary:
    """Plan, run the trials on ``backend`` (:class:`LocalOptions` when None, or
    :class:`~bertnas.search.ray_backend.RayOptions`), write the run directory; the summary."""
    backend = backend or LocalOptions()
    backend.check(config)
    with exclusive(config.run_dir(), "run directory"):
        search_plan = plan(config)
        summary = backend.make_loop(search_plan, progress, on_trial).run()
    summary.run_dir = str(search_plan.run_dir)
    return summary


# ---------------------------------------------------------------------- study helpers (every backend)
def search_sampler(plan: SearchPlan, sampler_seed: int, baseline: dict[str, Any] | None) -> optuna.samplers.BaseSampler:
    """The search's sampler. The surrogate sampler seeds each trial by (seed, trial number) and
    keeps its state in the study, so it keeps the search's own seed when a study is resumed; it
    is told the input-ignoring score of the split trials are scored on (its floor)."""
    config = plan.config
    surrogate = config.sampler == "surrogate"
    references = plan.references().values() if surrogate else ()
    return make_sampler(
        config.sampler,
        config.seed if surrogate else sampler_seed,
        plan.space,
        config.population,
        latency_ms=plan.trials.latencies,
        budgets=plan.objectives.budgets,
        references=list(references),
        floor=float(baseline["score"]) if surrogate and baseline is not None else None,
    )


def rejection_limit(sampler: optuna.samplers.BaseSampler) -> int:
    """Rejected trials in a row after which the search gives up (:func:`too_tight`)."""
    screens = isinstance(sampler, PlannedSampler) and sampler.feasible is not None
    return MAX_SCREENED_REJECTIONS_IN_A_ROW if screens else MAX_REJECTIONS_IN_A_ROW


def too_tight(config: SearchConfig, sampler: optuna.samplers.BaseSampler) -> BertnasError:
    """The error of a search whose sampler keeps suggesting subnets over every budget."""
    draws = rejection_limit(sampler) * (SCREEN_DRAWS if rejection_limit(sampler) != MAX_REJECTIONS_IN_A_ROW else 1)
    return BertnasError(
        f"{draws} suggestions in a row were over every budget; the budgets "
        f"{', '.join(f'{d} {format_ms(b)}' for d, b in config.budgets_ms.items())} are too tight for sampler "
        f"{config.sampler!r}; raise them or try --sampler evolution (the study so far is kept; rerun to resume)"
    )


def best_feasible(study: optuna.Study, objectives: Objectives) -> tuple[float, float] | None:
    """(metric, latency) of the best evaluated trial within the first device's budget."""
    device = objectives.devices[0]
    budget = objectives.budgets[device]
    best = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        latency = trial.user_attrs.get(latency_column(device))
        if latency is not None and latency <= budget and (best is None or trial.values[0] > best[0]):
            best = (trial.values[0], latency)
    return best


def close_interrupted(study: optuna.Study, plan: SearchPlan) -> int:
    """Mark FAIL the trials a killed session left RUNNING; how many.

    Only with the run directory's own storage: this process holds the directory's lock
    (:mod:`bertnas.locks`), so no other process can be running them. A shared storage
    (``--storage``, several machines) is left to Optuna's heartbeats instead.
    """
    if plan.config.storage is not None:
        return 0
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, STATUS_ATTR, f"{INTERRUPTED}: its process died")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        closed += 1
    if closed:
        print(f"closed {closed} trial(s) a killed session left running", file=sys.stderr)
    return closed


def seed_study(study: optuna.Study, plan: SearchPlan) -> int:
    """Enqueue a new study's first trials; how many.

    With ``seed_references``: the full model and DynaBERT's grid (the unified space
    contains them, so the search can only improve on DynaBERT's front). With
    ``seed_from``: the Pareto front, on this search's first device and budget, of each
    earlier run (e.g. the PoWER-BERT-only search: its retention-only points are hard for
    a search over every dimension to find). Configs the space does not contain are
    skipped; over-budget ones are rejected like any other candidate.
    """
    config, space = plan.config, plan.space
    archs: list[ArchConfig] = []
    if config.seed_references:
        archs += plan.references().values()
    device = config.devices[0]
    for path in config.seed_from:
        front = SearchRun.open(path).pareto(device, plan.objectives.budgets[device])
        archs += [ArchConfig.from_json(text) for text in front["config"] if isinstance(text, str)]
    queued = outside = 0
    for arch in archs:
        if queued >= config.trials:
            break  # never more queued trials than the study will run
        if space.contains(arch):
            study.enqueue_trial(space.to_values(arch), skip_if_exists=True)
            queued += 1
        else:
            outside += 1
    if outside:
        print(f"seeding: {outside} of {len(archs)} configs are outside space {space.name!r}; skipped", file=sys.stderr)
    return queued


def start_session(study: optuna.Study, plan: SearchPlan, entry: dict[str, Any]) -> None:
    """Record this session in the study itself, so a session killed before it wrote run.json is
    still listed there later, and in the plan's identity (run.json's ``sessions``)."""
    recorded = study.user_attrs.get(SESSIONS_ATTR)
    if recorded is None:  # a study from before sessions were kept in it: run.json's list
        previous = SearchRun.open(plan.run_dir).info if (plan.run_dir / RUN_JSON).is_file() else {}
        recorded = previous.get("sessions", [])
    plan.identity["sessions"] = [*recorded, entry]
    study.set_user_attr(SESSIONS_ATTR, plan.identity["sessions"])


__all__ = ["LocalTrialLoop", "TrialLoop", "run_search"]
