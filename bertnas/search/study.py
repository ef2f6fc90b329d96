"""Creating and resuming the Optuna study behind a search, choosing its sampler, and counting its trials."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.search.evolution import EvolutionSampler
from bertnas.search.objectives import Objectives
from bertnas.search.planned import ScreenedRandomSampler
from bertnas.search.surrogate import make_surrogate_sampler
from bertnas.search.trial import FRACTION_ATTR, PRUNED_FRONT, STATUS_ATTR
from bertnas.space import SearchSpace

SAMPLERS = ("nsga2", "tpe", "random", "evolution", "surrogate")
#: Study user attributes that must match when a study is resumed.
IDENTITY_KEYS = ("task", "space", "backbone", "supernet_fingerprint", "evaluation", "objectives", "seq_len")


def make_sampler(
    name: str,
    seed: int,
    space: SearchSpace,
    population_size: int | None = None,
    latency_ms: Callable[[ArchConfig], Mapping[str, float]] | None = None,
    budgets: Mapping[str, float] | None = None,
    references: Sequence[ArchConfig] = (),
    floor: float | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler ``name``; NSGA-II, TPE and evolution honour the trials' constraint (``trial.set_constraint``).

    ``surrogate`` (bertnas.search.surrogate) also needs ``latency_ms`` (arch -> latency per
    device), the ``budgets`` and the ``references`` its first generation starts from (and, where
    known, the ``floor``: the input-ignoring score of the data trials are scored on). Given
    those, ``random`` and ``evolution`` draw only configs that meet a budget (screened in
    memory, :mod:`bertnas.search.planned`); NSGA-II and TPE learn from rejected trials instead.
    """
    feasible = None
    if latency_ms is not None and budgets is not None:

        def feasible(arch: ArchConfig) -> bool:
            latency = latency_ms(arch)
            return any(latency[d] <= b for d, b in budgets.items())

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size or 20)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "random":
        if feasible is not None:
            return ScreenedRandomSampler(space, seed=seed, feasible=feasible)
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "evolution":
        return EvolutionSampler(space, population_size=population_size or 20, seed=seed, feasible=feasible)
    if name == "surrogate":
        if latency_ms is None or budgets is None:
            raise BertnasError("the surrogate sampler needs the latency predictors and budgets of the search")
        return make_surrogate_sampler(space, latency_ms, budgets, references, population_size, seed, floor)
    raise BertnasError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def open_storage(url: str, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``, or a one-line error saying why it cannot be opened.

    ``must_exist``: reading a finished run; a missing SQLite file is an error, never a new empty
    database."""
    if must_exist and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise BertnasError(f"the study storage {url.removeprefix('sqlite:///')} does not exist")
    if url.startswith("sqlite:///"):
        target = Path(url.removeprefix("sqlite:///"))
        if target.is_dir():
            raise BertnasError(f"cannot open storage {url}: {target} is a directory; give a database file")
        if not target.parent.is_dir():
            raise BertnasError(f"cannot open storage {url}: directory {target.parent} does not exist")
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; they work
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Heartbeats let a later session mark a trial left RUNNING by a killed process as FAIL.
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=120)
        if url.startswith("sqlite:"):
            _wal_commits(storage.engine)
        return storage
    except Exception as error:  # SQLAlchemy raises many types; the user only needs the first line
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BertnasError(f"cannot open storage {url}: {first}") from None


def _wal_commits(engine: Any) -> None:
    """SQLite in write-ahead-log mode with ``synchronous=NORMAL`` on every connection: a commit
    appends to the log without an fsync (a trial's dozens of small writes cost ~3x less), a
    killed process still loses no committed trial, and a power cut can lose the last commits but
    never corrupts the database. Readers no longer wait for a writer (two searches on one study)."""
    from sqlalchemy import event

    def configure(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", configure)
    engine.dispose()  # connections opened while Optuna set up its tables get the pragmas too


def open_study(
    storage: optuna.storages.BaseStorage | str,
    name: str,
    objectives: Objectives,
    sampler: optuna.samplers.BaseSampler,
    identity: dict[str, Any],
) -> tuple[optuna.Study, bool]:
    """Create study ``name`` or load it to resume; ``(study, resumed)``.

    A resumed study must be the same search: same task, space, supernet, objectives and
    budgets (its ``identity``); otherwise the error names the difference.
    """
    optuna.logging.set_verbosity(logging.WARNING)
    if isinstance(storage, str):
        storage = open_storage(storage)
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    resumed = name in existing
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        directions=objectives.directions,
        load_if_exists=True,
    )
    if resumed:
        recorded = study.user_attrs.get("identity", {})
        for key in IDENTITY_KEYS:
            if key in recorded and recorded[key] != identity.get(key):
                raise BertnasError(
                    f"study {name!r} in this storage was run with {key}={recorded[key]!r}, not {identity.get(key)!r}; "
                    "resume it with the same settings or pass another --study"
                )
        if [d.name.lower() for d in study.directions] != objectives.directions:
            raise BertnasError(f"study {name!r} has other objectives; pass another --study")
    else:
        study.set_user_attr("identity", identity)
    return study, resumed


def count_states(study: optuna.Study) -> dict[str, int]:
    counts = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts


def evaluation_units(study: optuna.Study) -> int:
    """Accuracy evaluations spent: evaluated trials, plus the shares of the evaluation data that
    multi-fidelity stops scored (rounded down), so ``--trials`` bounds the work either way."""
    complete, partial = 0, 0.0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if trial.state == TrialState.COMPLETE:
            complete += 1
        elif trial.user_attrs.get(STATUS_ATTR) == PRUNED_FRONT:
            partial += float(trial.user_attrs.get(FRACTION_ATTR, 0.0))
    return complete + int(partial)


def existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    """How many trials study ``name`` already holds (0 for a new study)."""
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == name:
            return summary.n_trials
    return 0
