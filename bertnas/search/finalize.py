"""Writing a search's run directory from its study, once its trials have run (any backend).

In order: the reference points (the full model and DynaBERT's grid, scored like trials),
the input-ignoring baseline, the dev report (every front point and reference scored once on
dev, data the search did not select on), each device's front files, the trials table and
``run.json``; every file written atomically. Scoring goes through the trial loop
(:meth:`~bertnas.search.loop.TrialLoop.score`), so on Ray the workers score the references
and the dev report, and the driver loads no weights.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write_text
from bertnas.hashing import file_sha256
from bertnas.paths import portable
from bertnas.search.accuracy import evaluation_key
from bertnas.search.pareto import degenerate_mask, pareto_front
from bertnas.search.results import DeviceFront, SearchSummary
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
from bertnas.search.study import count_states
from bertnas.search.trial import PRUNED_FRONT, reference_points
from bertnas.training.common import versions

if TYPE_CHECKING:
    from bertnas.search.loop import TrialLoop


#: Status of a trial a killed session left running, closed by the next session (state FAIL).
INTERRUPTED = "interrupted"


def finalize(loop: TrialLoop, study: optuna.Study, wall_time_s: float | None = None) -> SearchSummary:
    """Write the run directory from the study (atomically, file by file) and return the summary."""
    plan = loop.plan
    config, run_dir, objectives = plan.config, plan.run_dir, plan.objectives
    trials = trials_frame(study, objectives.devices)
    references: list[dict[str, Any]] = []
    if config.references:
        archs = plan.references()
        scores = loop.score(list(archs.values()), config.split)
        references = reference_points(archs, scores, plan.predictors, plan.seq_len)
        atomic_write_text(run_dir / REFERENCES_JSON, json.dumps(references, indent=2) + "\n")
    baseline = loop.baseline()
    atomic_write_text(run_dir / BASELINE_JSON, json.dumps(baseline, indent=2) + "\n")
    report = report_on_dev(loop, trials, references)
    write_dev_metrics(run_dir, report)
    fronts = {}
    for device, budget in objectives.budgets.items():
        front = write_front_files(
            run_dir,
            trials,
            device,
            budget,
            objectives.metric.name,
            references,
            plan.predictors[device].profile.record(),
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
        "study": plan.study_name,
        "storage": config.storage,  # the user's URL; None: the run directory's own study.db
        # the default storage, relative to the run directory: a moved or copied run opens its own
        "storage_file": STUDY_DB if config.storage is None else None,
        "task": plan.identity["task"],
        "space": plan.space.name,
        "backbone": plan.identity["backbone"],
        "supernet": portable(plan.supernet_path, run_dir),  # checked against hashes.supernet_fingerprint
        "metric": objectives.metric.name,
        "budgets_ms": objectives.budgets,  # on the prediction scale (with --confidence: B / (1 + q))
        "conformal": plan.identity.get("conformal", {}),  # per device: requested budget, confidence, q
        "optimized": [o.column for o in objectives.optimized],
        "sampler": config.sampler,
        "seed": config.seed,
        "sessions": plan.identity.get("sessions", []),
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
        "evaluation": plan.identity["evaluation"],
        "split": config.split,
        "report": {"split": "dev", "examples": report["examples"], "points": len(report["points"])},
        "warnings": plan.identity.get("warnings", []),
        "baseline": baseline,
        "seq_len": plan.identity["seq_len"],
        "seq_len_override": config.seq_len,
        "length_distribution": plan.identity.get("length_distribution"),  # for --seq-len task:*
        "wall_time_s": round(wall, 2),
        "config": {k: v for k, v in asdict(config).items() if k != "command"},
        "versions": versions(),
        "hashes": {
            "supernet_fingerprint": plan.identity["supernet_fingerprint"],
            "space_spec_sha256": _file_sha256(plan.space.spec.source),
            "profiles": {d: p.profile.record() for d, p in plan.predictors.items()},
        },
        "fronts": {d: len(f) for d, f in fronts.items()},
    }
    write_run_json(run_dir, info)
    return summary(info, fronts, references)


def report_on_dev(loop: TrialLoop, trials: Any, references: list[dict[str, Any]]) -> dict[str, Any]:
    """The dev metric of every point on a front of any device (and of the references): evaluated
    once each, after the search, on data it did not select on (unless it searched on dev)."""
    plan = loop.plan
    configs: dict[str, str] = {}
    for device, budget in plan.objectives.budgets.items():
        front = pareto_front(trials, device, budget)
        configs.update(zip(front["arch_hash"], front["config"], strict=True))
    for point in references:
        configs.setdefault(ArchConfig.from_json(point["config"]).hash(), point["config"])
    scores = loop.score([ArchConfig.from_json(config) for config in configs.values()], "dev")
    points = {
        arch_hash: {"dev_metric": float(score.metric), "dev_metrics": score.metrics, "dev_degenerate": score.degenerate}
        for arch_hash, score in zip(configs, scores, strict=True)
    }
    config = plan.config
    subset = config.dev_subset if config.split == "dev" else None  # dev is then the scored split, cut the same way
    _, examples = evaluation_key(plan.supernet_path, plan.task, "dev", subset, config.glue_dir)
    return {"split": "dev", "selection_split": config.split, "examples": examples, "points": points}


def summary(info: dict[str, Any], fronts: dict[str, Any], references: list[dict[str, Any]]) -> SearchSummary:
    """The typed summary (``--json`` prints its :meth:`~SearchSummary.to_json`): counts and each device's front."""
    full = next((r for r in references if r["label"] == "full"), None)
    out = {}
    for device, front in fronts.items():
        reference = None if full is None else {"metric": full["metric"], "latency_ms": full["latency_ms"][device]}
        out[device] = DeviceFront(
            device=device,
            budget_ms=info["budgets_ms"].get(device),
            points=front_points(front),
            full_model=reference,
            conformal=(info.get("conformal") or {}).get(device),
        )
    return SearchSummary(
        study=info["study"],
        storage=info["storage"] or info.get("storage_file"),
        metric=info["metric"],
        baseline=info.get("baseline"),
        counts=info["counts"],
        wall_time_s=info["wall_time_s"],
        fronts=out,
    )


def _file_sha256(path: str | None) -> str | None:
    return file_sha256(path) if path and Path(path).is_file() else None
