"""Setting a search up: a cheap plan first, the expensive load only where evaluation happens.

:func:`plan` resolves a :class:`~bertnas.search.config.SearchConfig` into a
:class:`SearchPlan` and checks everything a user can get wrong, reading no weights: the
task and its data's identity, the supernet (its ``config.json`` only), the space bound to
the supernet's limits, one latency predictor per device, the budgets (each checked against
the space's smallest subnet), the objectives, the run directory and its study name, and the
identity a resumed study must match. Every mistake is a one-line error before a tensor is
loaded. :meth:`SearchPlan.load` then opens the weight-shared evaluator where trials are
scored: in this process for the local backend, in each worker for Ray.

A plan never trains anything: the CLI composes the pipeline (:mod:`bertnas.pipeline` trains
what is missing, then the search runs on the plan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertnas.arch import ArchConfig
from bertnas.data.glue import TaskInfo
from bertnas.errors import BertnasError
from bertnas.hardware.lengths import LengthDistribution, is_task_statistic, priced
from bertnas.search.accuracy import SubnetEvaluator, check_supernet_task, evaluation_key, scored_split
from bertnas.search.budget import format_ms
from bertnas.search.config import SearchConfig
from bertnas.search.objectives import Objectives
from bertnas.search.request import check
from bertnas.search.run import RUN_JSON, STUDY_DB, SearchRun
from bertnas.search.study import sqlite_url
from bertnas.search.trial import TrialEvaluator, reference_archs
from bertnas.space import SearchSpace
from bertnas.supernet.elastic import WEIGHTS_NAME, SupernetConfig, supernet_fingerprint
from bertnas.training.locate import find_supernet, search_teacher


@dataclass
class SearchPlan:
    """A checked search, before any weights are loaded (see the module docstring)."""

    config: SearchConfig
    task: TaskInfo
    supernet_path: Path
    supernet: SupernetConfig  # the supernet's config.json: its limits, backbone, task
    space: SearchSpace  # bound to the supernet's limits
    predictors: dict[str, Any]  # device -> latency predictor (priced at the task's lengths for task:*)
    objectives: Objectives  # budgets on the prediction scale (with --confidence: B / (1 + q))
    seq_len: int | None  # the token count every profile prices at; None: each profile's own
    run_dir: Path
    storage_url: str
    study_name: str
    identity: dict[str, Any]  # what a resumed study must match, plus the run record's context
    trials: TrialEvaluator = field(init=False)  # the cheap half of a trial: suggest, price, reject, record

    def __post_init__(self) -> None:
        self.trials = TrialEvaluator(self.space, self.predictors, self.objectives, self.seq_len)

    def load(self, split: str | None = None) -> SubnetEvaluator:
        """The weight-shared evaluator on the scored split (or ``split``): the expensive part."""
        config = self.config
        return SubnetEvaluator.open(
            self.supernet_path,
            task=self.task.ref,
            split=split or config.split,
            subset=config.dev_subset if split in (None, config.split) else None,
            glue_dir=config.glue_dir,
            device=config.eval_device,
        )

    def full_arch(self) -> ArchConfig:
        """The backbone itself, as the supernet runs it."""
        return self.supernet.full_arch()

    def references(self) -> dict[str, ArchConfig]:
        """The plot's reference points: the full model and DynaBERT's grid, by label."""
        return reference_archs(self.space, self.full_arch())


def plan(config: SearchConfig) -> SearchPlan:
    """Check the request without loading weights; every mistake is a one-line error."""
    request = check(config)
    task, spec, predictors, price_len = request.task, request.spec, request.predictors, request.seq_len
    budgets, conformal = request.budgets, request.conformal
    by_lengths = is_task_statistic(config.seq_len)
    supernet_path = _supernet_path(config, task.name)
    supernet = SupernetConfig.load(supernet_path)
    check_supernet_task(supernet, supernet_path, task)
    evaluation, _ = evaluation_key(supernet_path, task, config.split, config.dev_subset, config.glue_dir)
    lengths = None
    if by_lengths:  # the scored split's real token counts; each profile must cover them
        data = scored_split(supernet_path, task, config.split, config.dev_subset, config.glue_dir)
        lengths = LengthDistribution.of([len(ids) for ids in data.input_ids], f"{task.name} {data.split} split")
        predictors = {d: priced(p, config.seq_len, lengths)[0] for d, p in predictors.items()}
    space = spec.bind(supernet.limits, backbone=supernet.backbone)
    needed = space.supernet_limits()
    if needed.max_ffn_stack > supernet.max_ffn_stack or needed.max_bottleneck > supernet.max_bottleneck:
        raise BertnasError(
            f"the supernet at {supernet_path} has no room for space {space.name!r} (it needs {needed.max_ffn_stack} "
            f"stacked FFNs and bottlenecks up to {needed.max_bottleneck}); use a supernet trained on the unified space"
        )
    _check_feasible(config, space, predictors, price_len, budgets, conformal)
    objectives = Objectives.build(task.main_metric, budgets)
    run_dir = config.run_dir()
    study_name = config.study or config.default_study_name()
    _check_run_dir(run_dir, study_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    identity: dict[str, Any] = {
        "task": task.name,
        "space": space.name,
        "backbone": supernet.backbone,
        "supernet_fingerprint": supernet_fingerprint(supernet_path),
        "evaluation": evaluation,
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
    return SearchPlan(
        config=config,
        task=task,
        supernet_path=supernet_path,
        supernet=supernet,
        space=space,
        predictors=predictors,
        objectives=objectives,
        seq_len=price_len,
        run_dir=run_dir,
        storage_url=config.storage or sqlite_url(run_dir / STUDY_DB),
        study_name=study_name,
        identity=identity,
    )


def _check_feasible(
    config: SearchConfig,
    space: SearchSpace,
    predictors: dict[str, Any],
    price_len: int | None,
    budgets: dict[str, float],
    conformal: dict[str, Any],
) -> None:
    """Refuse a budget under the space's smallest subnet on its device (nothing could ever fit)."""
    smallest = space.smallest()
    for device, budget in budgets.items():
        lowest = float(predictors[device].predict(smallest, price_len))
        if lowest <= budget:
            continue
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


__all__ = ["SearchPlan", "plan"]
