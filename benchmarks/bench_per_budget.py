"""Issue 14's per-budget lever: one search at a share of the full model's latency, its pick fine-tuned.

    python benchmarks/bench_per_budget.py --supernet S --cache C --share 25 [--trials 100] [--seed 0]
                                          [--epochs 2] [--stop-on metric|loss] [--out RUN] [--tag NAME]

How the product is used for one budget: ``bertnas search --task sst2 --supernet S --device
pixel4 --budget X --trials N --seed K`` with X = ``--share`` % of the full model's predicted
pixel4 latency (every evaluation under X, scored on the search split), then ``bertnas
finetune-subnets RUN --device pixel4 --select best-under:X --epochs E --stop-on ...``: the
best search-split subnet under X, fine-tuned with distillation from the teacher. Its dev
accuracy, which neither the search nor early stopping looked at, is set against the
teacher's. Resumable: a rerun with a larger ``--trials`` continues the same study (seeded,
in ``--out``), a finished fine-tuning is not trained again. Writes
benchmarks/results/per_budget_sst2_<share>pct[_<tag>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from common import full_pixel4_ms, teacher_metrics, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", required=True, help="the supernet (trained with a search split)")
    parser.add_argument("--cache", required=True, help="BERTNAS_CACHE (the teacher the supernet names)")
    parser.add_argument("--share", type=float, required=True, help="budget, % of the full model's pixel4 latency")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--stop-on", default="metric", choices=["metric", "loss"])
    parser.add_argument("--out", default=None, help="the search run (default: CACHE/../search-<budget>)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--glue-dir", default=None)
    args = parser.parse_args()
    os.environ["BERTNAS_CACHE"] = str(Path(args.cache))

    from bertnas.export.selection import select_candidates
    from bertnas.search import SearchConfig, SearchRun, run_search
    from bertnas.search.objectives import latency_column
    from bertnas.training.subnet_finetune import Selected, SubnetFinetuneConfig, finetune_run

    supernet = Path(args.supernet)
    full_ms = full_pixel4_ms(supernet)
    budget = round(args.share / 100 * full_ms, 2)
    out = Path(args.out or Path(args.cache).parent / f"search-{budget:.2f}ms")
    config = SearchConfig(
        task="sst2",
        budgets_ms={"pixel4": budget},
        supernet=str(supernet),
        trials=args.trials,
        seed=args.seed,
        out=str(out),
        glue_dir=args.glue_dir,
    )
    began = time.perf_counter()
    run_search(config, progress=True)
    search_seconds = time.perf_counter() - began

    run = SearchRun.open(out)
    trials = run.trials
    complete = trials[trials["state"] == "COMPLETE"]
    (pick,) = select_candidates(run, "pixel4", f"best-under:{budget}ms")
    finetune = SubnetFinetuneConfig(epochs=args.epochs, glue_dir=args.glue_dir, stop_on=args.stop_on)
    began = time.perf_counter()
    (result,) = finetune_run(run, [Selected(pick.trial, pick.arch)], finetune, supernet)
    finetune_seconds = time.perf_counter() - began
    teacher_dev = teacher_metrics(supernet)["score"]
    column = latency_column("pixel4")
    tuned = result["finetuned"]
    row = trials.set_index("number").loc[pick.trial]
    results = {
        "what": "issue 14 per-budget lever: a search under one budget, its best search-split pick fine-tuned",
        "command": " ".join(["python benchmarks/bench_per_budget.py", *_shown_args(args)]),
        "threads": torch.get_num_threads(),
        "splits": {"search": "5 % of SST-2 train held out: trials, the pick, early stopping", "dev": "reported only"},
        "full_pixel4_ms": full_ms,
        "share_percent": args.share,
        "budget_ms": budget,
        "study": run.info.get("study"),
        "trials": args.trials,
        "seed": args.seed,
        "evaluated": len(complete),
        "evaluated_under_budget": int((complete[column] <= budget).sum()),
        "search_seconds_this_call": round(search_seconds, 1),
        "teacher_dev_accuracy": teacher_dev,
        "pick": {
            "trial": pick.trial,
            "arch_hash": pick.arch.hash(),
            "latency_ms": float(row[column]),
            "search_split_metric": float(row["metric"]),
        },
        "finetune": {"epochs": args.epochs, "stop_on": args.stop_on, "seconds_this_call": round(finetune_seconds, 1)},
        "weight_shared": result["weight_shared"],
        "finetuned": {
            key: tuned[key] for key in ("steps", "best_step", "search_metric", "dev_metric", "train_seconds")
        },
        "finetuned_history": tuned["history"],
        "below_teacher_points": round(100 * (teacher_dev - tuned["dev_metric"]), 2),
    }
    name = f"per_budget_sst2_{args.share:g}pct" + (f"_{args.tag}" if args.tag else "")
    write_results(name, results)
    print(json.dumps({key: results[key] for key in ("budget_ms", "pick", "finetuned", "below_teacher_points")}))


def _shown_args(args: argparse.Namespace) -> list[str]:
    """The command line with this machine's directories replaced by their roles."""
    shown = ["--supernet S", "--cache C", f"--share {args.share:g}", f"--trials {args.trials}", f"--seed {args.seed}"]
    shown += [f"--epochs {args.epochs:g}", f"--stop-on {args.stop_on}"] + (["--out RUN"] if args.out else [])
    return shown + ([f"--tag {args.tag}"] if args.tag else [])


if __name__ == "__main__":
    main()
