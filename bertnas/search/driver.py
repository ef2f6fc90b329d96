"""Running a search with the local backend, and what every backend shares.

:func:`prepare` resolves a :class:`~bertnas.search.config.SearchConfig` into a
:class:`SearchContext` (space bound to the supernet, evaluator, one latency predictor
per device, objectives, the trial evaluator, run directory and storage), checking
everything a user can get wrong before any trial runs. :func:`run_local` runs trials in
this process until the study holds ``trials`` evaluated ones; :func:`finalize` writes
the run directory from the study. Another backend (Ray) reuses ``prepare`` and
``finalize`` and only replaces the trial loop.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write_text
from bertnas.errors import BertnasError
from bertnas.hardware.conformal import effective_budgets
from bertnas.hardware.lengths import LengthDistribution, is_task_statistic, priced
from bertnas.locks import exclusive
from bertnas.paths import portable
from bertnas.search.budget import format_ms
from bertnas.search.config import SearchConfig
from bertnas.search.evaluate import (
    FRACTION_ATTR,
    PRUNED_FRONT,
    STATUS_ATTR,
    TrialEvaluator,
    reference_archs,
    reference_points,
)
from bertnas.search.objectives import Objectives, latency_column
from bertnas.search.pareto import degenerate_mask
from bertnas.search.planned import SCREEN_DRAWS, PlannedSampler
from bertnas.search.run import (
    BASELINE_JSON,
    REFERENCES_JSON,
    RUN_JSON,
    STUDY_DB,
    SearchRun,
    front_points,
    trials_frame,
    write_dev_metrics,
    write_front_files,
    write_run_json,
    write_trials,
)
from bertnas.search.study import make_sampler, open_storage, open_study, sqlite_url
from bertnas.space import SearchSpace

#: Status of a trial a killed session left running, closed by the next session (state FAIL).
INTERRUPTED = "interrupted"
#: Give up when this many trials in a row were rejected (the budget is too tight for the sampler).
MAX_REJECTIONS_IN_A_ROW = 2000
#: The same for a sampler that screens its suggestions in memory: each rejected trial already
#: stands for ``SCREEN_DRAWS`` infeasible draws.
MAX_SCREENED_REJECTIONS_IN_A_ROW = 5
#: Study user attribute listing every session that worked on the study (killed ones included).
SESSIONS_ATTR = "sessions"
#: Rewrite trials.csv/.parquet every this many evaluated trials while the search runs.
TABLE_EVERY = 10


@dataclass
class SearchContext:
    """Everything a backend needs to run trials of one search and write its run directory."""

    config: SearchConfig
    space: SearchSpace
    evaluator: Any  # SubnetEvaluator
    predictors: dict[str, Any]
    objectives: Objectives
    trial_evaluator: TrialEvaluator
    run_dir: Path
    storage_url: str
    study_name: str
    supernet_path: Path
    identity: dict[str, Any]


def prepare(config: SearchConfig) -> SearchContext:
    """Check the request and load what the trials need; every mistake is a one-line error."""
    from bertnas.data import get_task
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.training.evaluate import SubnetEvaluator

    config.validate()
    task = get_task(config.task)
    spec = load_space(config.space)
    predictors = {device: load_predictor(device) for device in config.devices}
    by_lengths = is_task_statistic(config.seq_len)  # --seq-len task:mean|p50|p90
    price_len = None if by_lengths else config.seq_len
    if price_len is not None:
        for predictor in predictors.values():
            predictor.profile.check_request(seq_len=price_len)  # the profile says why it cannot
    # --confidence: each budget on the prediction scale, B / (1 + conformal quantile)
    budgets, conformal = effective_budgets(
        config.budgets_ms, {d: p.profile for d, p in predictors.items()}, config.confidence
    )
    supernet_path = _supernet_path(config, task.name)
    evaluator = SubnetEvaluator.open(
        supernet_path,
        task=task.ref,
        split=config.split,
        subset=config.dev_subset,
        glue_dir=config.glue_dir,
        device=config.eval_device,
    )
    lengths = None
    if by_lengths:  # the scored split's real token counts; each profile must cover them
        lengths = LengthDistribution.of(
            [len(ids) for ids in evaluator.data.input_ids], f"{task.name} {evaluator.data.split} split"
        )
        predictors = {d: priced(p, config.seq_len, lengths)[0] for d, p in predictors.items()}
    supernet = evaluator.supernet
    space = spec.bind(supernet.limits, backbone=supernet.config.backbone)
    if space.max_ffn_stack > supernet.limits.max_ffn_stack or space.max_bottleneck > supernet.limits.max_bottleneck:
        raise BertnasError(
            f"the supernet at {supernet_path} has no room for space {space.name!r} (it needs {space.max_ffn_stack} "
            f"stacked FFNs and bottlenecks up to {space.max_bottleneck}); use a supernet trained on the unified space"
        )
    smallest = space.smallest()
    for device, budget in budgets.items():
        lowest = float(predictors[device].predict(smallest, price_len))
        if lowest > budget:
            if device in conformal:
                needed = config.budgets_ms[device] * lowest / budget
                raise BertnasError(
                    f"budget {format_ms(config.budgets_ms[device])} on {device} is infeasible at confidence "
                    f"{config.confidence:g}: the smallest subnet of space {space.name!r} is predicted at "
                    f"{format_ms(lowest)} there, bounded at {format_ms(needed)}; give a budget of at least "
                    f"{format_ms(needed)} or lower --confidence"
                )
            raise BertnasError(
                f"budget {format_ms(budget)} on {device} is infeasible: the smallest subnet of space "
                f"{space.name!r} is predicted at {format_ms(lowest)} there; give a budget of at least "
                f"{format_ms(lowest)}"
            )
    objectives = Objectives.build(task.main_metric, budgets)
    run_dir = config.run_dir()
    study_name = config.study or config.default_study_name()
    _check_run_dir(run_dir, study_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage_url = config.storage or sqlite_url(run_dir / STUDY_DB)
    identity = {
        "task": task.name,
        "space": space.name,
        "backbone": supernet.config.backbone,
        "supernet_fingerprint": evaluator.fingerprint,
        "evaluation": evaluator.subset,
        "objectives": objectives.to_dict(),
        "seq_len": {d: config.seq_len or p.profile.seq_len for d, p in predictors.items()},
    }
    if conformal:
        identity["conformal"] = conformal
    if lengths is not None:
        identity["length_distribution"] = lengths.to_dict()
    if config.split == "dev":
        identity["warnings"] = [
            "trials are scored on the dev split and the front is reported on it: selection and report share data, "
            "which flatters every figure (score on the held-out search split instead)"
        ]
    trial_evaluator = TrialEvaluator(space, evaluator, predictors, objectives, price_len, config.fidelity)
    return SearchContext(
        config,
        space,
        evaluator,
        predictors,
        objectives,
        trial_evaluator,
        run_dir,
        storage_url,
        study_name,
        supernet_path,
        identity,
    )


def _check_run_dir(run_dir: Path, study_name: str) -> None:
    """Refuse a run directory that holds another study: its files would be overwritten and the
    two studies' sessions mixed (the same study resumes)."""
    if not (run_dir / RUN_JSON).is_file():
        return
    try:
        recorded = SearchRun.open(run_dir).info.get("study")
    except BertnasError:
        return  # a damaged run.json: the search rewrites it
    if recorded and recorded != study_name:
        raise BertnasError(
            f"{run_dir} holds study {recorded!r}, not {study_name!r}; give this search another --out, or pass "
            f"--study {recorded} to resume that one"
        )


def _supernet_path(config: SearchConfig, task: str) -> Path:
    """The supernet to search: ``--supernet``, else the cached one of the teacher (:mod:`bertnas.pipeline`
    trains what is missing before the search starts)."""
    from bertnas.supernet.elastic import WEIGHTS_NAME
    from bertnas.training.locate import find_supernet, search_teacher

    if config.supernet:
        path = Path(config.supernet)
        if not (path / WEIGHTS_NAME).is_file():
            raise BertnasError(f"--supernet {path} is not a trained supernet directory (no {WEIGHTS_NAME})")
        return path
    teacher = search_teacher(config.teacher, config.backbone, task)
    found = find_supernet(teacher, task, config.space) if teacher is not None else None
    if found is None:
        raise BertnasError(
            f"no trained supernet for task {task} (teacher: {teacher or 'none yet'}); run the search without "
            f"--no-train to fine-tune and train what is missing, train one with `bertnas supernet train --task "
            f"{config.task}`, or give --supernet DIR"
        )
    return found


def context_sampler(context: SearchContext, sampler_seed: int) -> optuna.samplers.BaseSampler:
    """The search's sampler. The surrogate sampler seeds each trial by (seed, trial number) and
    keeps its state in the study, so it keeps the search's own seed when a study is resumed; it
    is told the input-ignoring score of the split trials are scored on (its floor)."""
    config = context.config
    surrogate = config.sampler == "surrogate"
    references = reference_archs(context.space, context.space.full()).values() if surrogate else ()
    return make_sampler(
        config.sampler,
        config.seed if surrogate else sampler_seed,
        context.space,
        config.population,
        latency_ms=context.trial_evaluator.latencies,
        budgets=context.objectives.budgets,
        references=list(references),
        floor=float(context.evaluator.baseline()["score"]) if surrogate else None,
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


def close_interrupted(study: optuna.Study, context: SearchContext) -> int:
    """Mark FAIL the trials a killed session left RUNNING; how many.

    Only with the run directory's own storage: this process holds the directory's lock
    (:mod:`bertnas.locks`), so no other process can be running them. A shared storage
    (``--storage``, several machines) is left to Optuna's heartbeats instead.
    """
    if context.config.storage is not None:
        return 0
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, STATUS_ATTR, f"{INTERRUPTED}: its process died")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        closed += 1
    if closed:
        print(f"closed {closed} trial(s) a killed session left running", file=sys.stderr)
    return closed


def seed_study(study: optuna.Study, context: SearchContext) -> int:
    """Enqueue a new study's first trials; how many.

    With ``seed_references``: the full model and DynaBERT's grid (the unified space
    contains them, so the search can only improve on DynaBERT's front). With
    ``seed_from``: the Pareto front, on this search's first device and budget, of each
    earlier run (e.g. the PoWER-BERT-only search: its retention-only points are hard for
    a search over every dimension to find). Configs the space does not contain are
    skipped; over-budget ones are rejected like any other candidate.
    """
    config, space = context.config, context.space
    archs: list[ArchConfig] = []
    if config.seed_references:
        archs += reference_archs(space, context.evaluator.supernet.full_arch()).values()
    device = config.devices[0]
    for path in config.seed_from:
        front = SearchRun.open(path).pareto(device, context.objectives.budgets[device])
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


def start_session(study: optuna.Study, context: SearchContext, entry: dict[str, Any]) -> None:
    """Record this session in the study itself, so a session killed before it wrote run.json is
    still listed there later, and in ``context`` (run.json's ``sessions``)."""
    recorded = study.user_attrs.get(SESSIONS_ATTR)
    if recorded is None:  # a study from before sessions were kept in it: run.json's list
        previous = SearchRun.open(context.run_dir).info if (context.run_dir / RUN_JSON).is_file() else {}
        recorded = previous.get("sessions", [])
    context.identity["sessions"] = [*recorded, entry]
    save_sessions(study, context)


def save_sessions(study: optuna.Study, context: SearchContext) -> None:
    study.set_user_attr(SESSIONS_ATTR, context.identity["sessions"])


def run_local(context: SearchContext, progress: bool = True) -> optuna.Study:
    """Run trials in this process until the study holds ``config.trials`` evaluated ones."""
    config = context.config
    storage = open_storage(context.storage_url)
    before = _existing_trials(storage, context.study_name)
    # A resumed study gets a new sampler seed, so its random draws do not repeat the first session's.
    sampler_seed = config.seed + before
    sampler = context_sampler(context, sampler_seed)
    study, resumed = open_study(storage, context.study_name, context.objectives, sampler, context.identity)
    close_interrupted(study, context)
    if not resumed and (config.seed_references or config.seed_from):
        seed_study(study, context)
    start_session(
        study,
        context,
        {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trials_before": before, "sampler_seed": sampler_seed},
    )
    done = evaluation_units(study)
    if done >= config.trials:
        return study
    bar = tqdm(
        total=config.trials, initial=done, desc=f"search {context.study_name}", unit="trial", disable=not progress
    )
    state = {"rejected_in_a_row": 0, "gave_up": False, "last_table": done}
    limit = rejection_limit(sampler)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # A multi-fidelity stop is no budget rejection: it counts as the share of an evaluation it cost.
        fidelity_stop = trial.user_attrs.get(STATUS_ATTR) == PRUNED_FRONT
        if trial.state == TrialState.PRUNED and not fidelity_stop:
            state["rejected_in_a_row"] += 1
            if state["rejected_in_a_row"] >= limit:
                state["gave_up"] = True
                study.stop()
            return
        if not fidelity_stop:
            state["rejected_in_a_row"] = 0
        complete, state["last_table"] = report_progress(bar, study, context, state["last_table"])
        if complete >= config.trials:
            study.stop()

    try:
        study.optimize(context.trial_evaluator, n_trials=None, callbacks=[callback], gc_after_trial=False)
    finally:
        bar.close()
    if state["gave_up"]:
        raise too_tight(config, sampler)
    return study


def report_progress(bar: Any, study: optuna.Study, context: SearchContext, last_table: int) -> tuple[int, int]:
    """After told trials: advance ``bar`` to the evaluated count, show the best feasible point, and
    rewrite trials.csv every ``TABLE_EVERY`` evaluations; ``(evaluated, evaluated at the last table)``."""
    counts = count_states(study)
    complete = evaluation_units(study)
    bar.update(complete - bar.n)
    best = best_feasible(study, context.objectives)
    postfix = {"rejected": counts["PRUNED"]}
    if best is not None:
        postfix["best"] = f"{best[0]:.4f}@{format_ms(best[1])}"
    bar.set_postfix(postfix, refresh=True)
    if complete - last_table >= TABLE_EVERY:
        write_trials(context.run_dir, trials_frame(study, context.objectives.devices))
        last_table = complete
    return complete, last_table


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == name:
            return summary.n_trials
    return 0


def finalize(context: SearchContext, study: optuna.Study, wall_time_s: float | None = None) -> dict[str, Any]:
    """Write the run directory from the study (atomically, file by file) and return the summary."""
    import json

    config, run_dir, objectives = context.config, context.run_dir, context.objectives
    trials = trials_frame(study, objectives.devices)
    references: list[dict[str, Any]] = []
    if config.references:
        archs = reference_archs(context.space, context.evaluator.supernet.full_arch())
        references = reference_points(archs, context.evaluator, context.predictors, context.trial_evaluator.seq_len)
        atomic_write_text(run_dir / REFERENCES_JSON, json.dumps(references, indent=2) + "\n")
    baseline = context.evaluator.baseline()
    atomic_write_text(run_dir / BASELINE_JSON, json.dumps(baseline, indent=2) + "\n")
    report = report_on_dev(context, trials, references)
    write_dev_metrics(run_dir, report)
    fronts = {}
    for device, budget in objectives.budgets.items():
        provenance = _provenance(context.predictors[device])
        front = write_front_files(
            run_dir,
            trials,
            device,
            budget,
            objectives.metric.name,
            references,
            provenance,
            baseline=baseline,
            dev=report,
        )
        fronts[device] = front
        killpoints.reached("front-written")
    write_trials(run_dir, trials)
    counts = count_states(study)
    fidelity_stops = int((trials["status"] == PRUNED_FRONT).sum())
    interrupted = int(trials["status"].astype(str).str.startswith(INTERRUPTED).sum())
    previous = SearchRun.open(run_dir).info if (run_dir / RUN_JSON).is_file() else {}
    wall = previous.get("wall_time_s", 0.0) + (wall_time_s or 0.0)
    info = {
        "command": config.command or sys.argv,
        "study": context.study_name,
        "storage": context.config.storage,  # the user's URL; None: the run directory's own study.db
        # the default storage, relative to the run directory: a moved or copied run opens its own
        "storage_file": STUDY_DB if context.config.storage is None else None,
        "task": context.identity["task"],
        "space": context.space.name,
        "backbone": context.identity["backbone"],
        "supernet": portable(context.supernet_path, run_dir),  # checked against hashes.supernet_fingerprint
        "metric": objectives.metric.name,
        "budgets_ms": objectives.budgets,  # on the prediction scale (with --confidence: B / (1 + q))
        "conformal": context.identity.get("conformal", {}),  # per device: requested budget, confidence, q
        "optimized": [o.column for o in objectives.optimized],
        "sampler": config.sampler,
        "seed": config.seed,
        "sessions": context.identity.get("sessions", []),
        "trials_requested": config.trials,
        "counts": {
            "evaluated": counts["COMPLETE"],
            "rejected": counts["PRUNED"] - fidelity_stops,
            "pruned_multi_fidelity": fidelity_stops,
            "failed": counts["FAIL"] - interrupted,
            "running_or_interrupted": counts["RUNNING"] + interrupted,
            "distinct_configs_evaluated": int(trials.loc[trials["state"] == "COMPLETE", "arch_hash"].nunique()),
            "degenerate": int(degenerate_mask(trials).sum()),
        },
        "evaluation": context.identity["evaluation"],
        "split": config.split,
        "report": {"split": "dev", "examples": report["examples"], "points": len(report["points"])},
        "warnings": context.identity.get("warnings", []),
        "baseline": baseline,
        "seq_len": context.identity["seq_len"],
        "seq_len_override": config.seq_len,
        "length_distribution": context.identity.get("length_distribution"),  # for --seq-len task:*
        "wall_time_s": round(wall, 2),
        "config": {k: v for k, v in asdict(config).items() if k != "command"},
        "versions": _versions(),
        "hashes": {
            "supernet_fingerprint": context.evaluator.fingerprint,
            "space_spec_sha256": _file_sha256(context.space.spec.source),
            "profiles": {d: _provenance(p) for d, p in context.predictors.items()},
        },
        "fronts": {d: len(f) for d, f in fronts.items()},
    }
    write_run_json(run_dir, info)
    return summary(info, fronts, objectives, references)


def report_on_dev(context: SearchContext, trials: Any, references: list[dict[str, Any]]) -> dict[str, Any]:
    """The dev metric of every point on a front of any device (and of the references): evaluated
    once each, after the search, on data it did not select on (unless it searched on dev)."""
    from bertnas.search.pareto import pareto_front

    evaluator = context.evaluator
    if context.config.split != "dev":
        evaluator = evaluator.on_split("dev", glue_dir=context.config.glue_dir)
    configs: dict[str, str] = {}
    for device, budget in context.objectives.budgets.items():
        front = pareto_front(trials, device, budget)
        configs.update(zip(front["arch_hash"], front["config"], strict=True))
    for point in references:
        configs.setdefault(ArchConfig.from_json(point["config"]).hash(), point["config"])
    points = {}
    for arch_hash, config in configs.items():
        result = evaluator.evaluate(ArchConfig.from_json(config))
        points[arch_hash] = {
            "dev_metric": float(result["score"]),
            "dev_metrics": result["metrics"],
            "dev_degenerate": bool(result["degenerate"]),
        }
    return {
        "split": evaluator.data.split,
        "selection_split": context.config.split,
        "examples": len(evaluator.data),
        "points": points,
    }


def summary(
    info: dict[str, Any], fronts: dict[str, Any], objectives: Objectives, references: list[dict[str, Any]]
) -> dict[str, Any]:
    """The machine-readable summary (``--json``): counts and each device's front."""
    out: dict[str, Any] = {
        "run_dir": None,
        "study": info["study"],
        "storage": info["storage"] or info.get("storage_file"),
        "metric": info["metric"],
        "baseline": info.get("baseline"),
        "counts": info["counts"],
        "wall_time_s": info["wall_time_s"],
        "fronts": {},
    }
    full = next((r for r in references if r["label"] == "full"), None)
    for device, front in fronts.items():
        points = front_points(front, device)
        reference = None if full is None else {"metric": full["metric"], "latency_ms": full["latency_ms"][device]}
        out["fronts"][device] = {
            "budget_ms": objectives.budgets.get(device),
            "points": points,
            "full_model": reference,
            "conformal": (info.get("conformal") or {}).get(device),
        }
    return out


def run_search(config: SearchConfig, progress: bool = True) -> dict[str, Any]:
    """Prepare, run the local trial loop, write the run directory; the summary."""
    with exclusive(config.run_dir(), "run directory"):
        context = prepare(config)
        start = time.perf_counter()
        study = run_local(context, progress=progress)
        result = finalize(context, study, wall_time_s=time.perf_counter() - start)
    result["run_dir"] = str(context.run_dir)
    return result


def _provenance(predictor: Any) -> Any:
    profile = predictor.profile
    return {
        "name": profile.name,
        "device": profile.device,
        "runtime": profile.runtime,
        "seq_len": profile.seq_len,
        "provenance": profile.provenance,
        "file_sha256": _file_sha256(profile.source),
    }


def _file_sha256(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    from bertnas.training.common import versions

    return versions()
