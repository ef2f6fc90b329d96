"""The main command on a fresh machine: fine-tune, train the supernet and search, from an empty cache.

    python benchmarks/bench_pipeline.py [--preset default] [--trials 100] [--csv] [--cache DIR]

Runs what ``bertnas search --task sst2 --device pixel4 --budget 60ms`` runs when nothing is
cached (``bertnas.pipeline.plan_search``, then each step, then the search), in this process,
with ``BERTNAS_CACHE`` pointed at an empty directory. Records the plan's estimates next to
each step's measured wall time, the teacher's and supernet's dev metrics, and the front's
best dev accuracy at <= 50 % and <= 33 % of the full model's predicted pixel4 latency,
against the full preset's teacher (89.45 % dev accuracy, benchmarks/results/training_sst2_full.json).
The search scores and picks on the supernet's held-out search split (a slice of train); the
best point at each share is the one the search split picks, and its figure is its dev
accuracy, which nothing selected on (``picked_at_share_of_full_latency`` keeps both). The
committed ``pipeline_sst2_default.json`` before this change picked on dev itself.

With ``--csv`` the same pipeline runs twice: on GLUE SST-2, and on SST-2's own train/dev
written out as CSV files with other column names (``review``, ``sentiment``) and string labels
(``negative``/``positive``), given as ``--task DIR --text-columns review --label-column
sentiment --max-length 64``; the script checks that both give the same teacher metric,
supernet metrics and front.

Writes benchmarks/results/pipeline_sst2_<preset>[_csv].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from common import full_pixel4_ms, host, teacher_metrics, write_results


def _write_sst2_csv(directory: Path, glue_dir: str | None) -> None:
    from bertnas.data import load_task

    directory.mkdir(parents=True, exist_ok=True)
    names = ("negative", "positive")
    for split in ("train", "dev"):
        data = load_task("sst2", split, glue_dir)
        with open(directory / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "review", "sentiment"])
            for i, example in enumerate(data.examples):
                writer.writerow([i, example.text_a, names[example.label]])


def run_pipeline(task: str, preset: str, trials: int, sampler: str, out: Path, glue_dir: str | None) -> dict:
    from bertnas.pipeline import plan_search
    from bertnas.search import SearchConfig, run_search

    config = SearchConfig(
        task=task,
        budgets_ms={"pixel4": 60.0},
        preset=preset,
        trials=trials,
        sampler=sampler,
        out=str(out),
        glue_dir=glue_dir,
    )
    start = time.perf_counter()
    plan = plan_search(config)
    steps = [{"step": "plan (probes)", "seconds": time.perf_counter() - start}]
    print("\n".join(plan.describe()), flush=True)
    for step in plan.steps[:-1]:
        began = time.perf_counter()
        step.action()
        steps.append({"step": step.name, "estimate_s": step.estimate_s, "seconds": time.perf_counter() - began})
    began = time.perf_counter()
    result = run_search(config, progress=True).to_json()
    steps.append({"step": "search", "estimate_s": plan.steps[-1].estimate_s, "seconds": time.perf_counter() - began})

    supernet_path = Path(config.supernet)
    supernet_metrics = json.loads((supernet_path / "metrics.json").read_text())
    teacher = teacher_metrics(supernet_path)
    full_ms = full_pixel4_ms(supernet_path)
    points = result["fronts"]["pixel4"]["points"]
    best, picked = {}, {}
    for share in (0.5, 1 / 3):
        # picked on the split the search scored (the held-out search split), reported on dev
        feasible = [p for p in points if p["latency_ms"] <= share * full_ms and not p.get("degenerate")]
        point = max(feasible, key=lambda p: (p["metric"], -p["latency_ms"]), default=None)
        best[f"{share:.2f}"] = None if point is None else point.get("dev_metric", point["metric"])
        picked[f"{share:.2f}"] = point
    return {
        "task": task,
        "steps": steps,
        "training_seconds": sum(s["seconds"] for s in steps if s["step"] not in ("search",)),
        "teacher": teacher["metrics"],
        "teacher_train_seconds": teacher["train_seconds"],
        "supernet": {name: scores for name, scores in supernet_metrics["subnets"].items()},
        "supernet_train_seconds": supernet_metrics["train_seconds"],
        "full_pixel4_ms": full_ms,
        "best_at_share_of_full_latency": best,  # dev metric of the point the search split picked
        "picked_at_share_of_full_latency": picked,
        "front": [
            {k: p[k] for k in ("trial", "metric", "dev_metric", "latency_ms", "degenerate") if k in p} for p in points
        ],
        "counts": result["counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--sampler", default="surrogate")
    parser.add_argument("--csv", action="store_true", help="also run on SST-2 written as CSV; compare")
    parser.add_argument("--cache", default=None, help="empty directory for BERTNAS_CACHE (default: a new temp dir)")
    parser.add_argument("--glue-dir", default=None)
    args = parser.parse_args()
    root = Path(args.cache or tempfile.mkdtemp(prefix="bertnas-fresh-"))
    os.environ["BERTNAS_CACHE"] = str(root / "cache")
    if (root / "cache").exists() and any((root / "cache").iterdir()):
        print(f"note: {root / 'cache'} is not empty; cached steps are skipped (a resumed run)")

    runs = {"glue": run_pipeline("sst2", args.preset, args.trials, args.sampler, root / "run-glue", args.glue_dir)}
    if args.csv:
        _write_sst2_csv(root / "sst2-csv", args.glue_dir)
        from bertnas.data import compose_task

        task = compose_task(str(root / "sst2-csv"), "review", "sentiment", None, 64)
        runs["csv"] = run_pipeline(task, args.preset, args.trials, args.sampler, root / "run-csv", args.glue_dir)
        glue, custom = runs["glue"], runs["csv"]

        def same(a: dict, b: dict) -> bool:  # the GLUE metrics; the custom task adds macro F1
            return all(b[key] == value for key, value in a.items())

        runs["csv_reproduces_glue"] = {
            "teacher": same(glue["teacher"], custom["teacher"]),
            "supernet": all(same(scores, custom["supernet"][name]) for name, scores in glue["supernet"].items()),
            "front": [(p["metric"], p["latency_ms"]) for p in glue["front"]]
            == [(p["metric"], p["latency_ms"]) for p in custom["front"]],
        }
        runs["csv"]["task"] = "SST-2 as CSV (review, sentiment; string labels; max_length 64)"
    for name, run in runs.items():
        if name == "csv_reproduces_glue":
            print(f"\nCSV reproduces GLUE: {run}")
            continue
        print(f"\n{name}: teacher {run['teacher']}, training {run['training_seconds'] / 60:.1f} min")
        for step in run["steps"]:
            estimate = f" (plan: {step['estimate_s'] / 60:.1f} min)" if step.get("estimate_s") else ""
            print(f"  {step['step']}: {step['seconds'] / 60:.1f} min{estimate}")
        print(f"  best at <=50% / <=33% of {run['full_pixel4_ms']:.1f} ms: {run['best_at_share_of_full_latency']}")
    suffix = "_csv" if args.csv else ""
    write_results(
        f"pipeline_sst2_{args.preset}{suffix}",
        {
            "preset": args.preset,
            "trials": args.trials,
            "sampler": args.sampler,
            "host": host(),
            "threads": torch.get_num_threads(),
            "full_preset_teacher_accuracy": 0.8945,
            "selection_split": "search",  # the front's metric; best_at_share_of_full_latency is dev
            "report_split": "dev",
            **runs,
        },
    )


if __name__ == "__main__":
    main()
