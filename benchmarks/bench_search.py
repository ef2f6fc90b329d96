"""Search quality at an equal number of accuracy evaluations (SST-2, MiniLM supernet, Pixel 4).

    GLUE_DIR=/work/shared/data/glue python benchmarks/bench_search.py [--evaluations 100]
        [--supernet DIR] [--teacher DIR] [--device pixel4] [--threads 2] [--runs DIR]

Nine searches on the same trained supernet, each stopped at the same number of
accuracy-evaluated trials (suggestions rejected for being over budget do not count):

1. the unified space with NSGA-II (the default search),
2. the unified space with random search,
3. to 5. the DynaBERT-, PoWER-BERT- and schuBERT-only spaces with NSGA-II,
6. the unified space with NSGA-II started from the full model and the DynaBERT grid
   (``--seed-references``),
7. the same with half the full latency as its budget,
8. the same started from the fronts of searches 3 to 5 as well (``--seed-from``),
9. the PoWER-BERT-only space with NSGA-II and the budget at half the full latency.

Figures: the hypervolume of each front (dev accuracy vs. predicted latency on the
device) against the fixed reference point (accuracy 0.5 = chance on SST-2, latency =
the full model's predicted latency), reported raw (accuracy x ms) and as a fraction of
the box ``(1 - 0.5) x full latency``; each search's best subnet at no more than 50 %
of the full model's latency and its accuracy loss against the fine-tuned teacher (goal:
at most 1 point); each search's wall time on ``--threads`` cores and how many of its
evaluations were fresh (the others came from the shared evaluation cache).

The budget of searches 1 to 6 is the full model's latency, so the whole trade-off is
searched; searches 7 to 9 (``@50%``) have half of it as their budget, the way a user
looking for the 50 % point would search (their hypervolume covers only that half). Writes
benchmarks/results/search_sst2.json after every search and prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from common import write_results

from bertnas.hardware import load_predictor
from bertnas.paths import supernet_dir, teacher_dir
from bertnas.search import SearchConfig, SearchRun, hypervolume, run_search
from bertnas.search.objectives import latency_column
from bertnas.supernet import ElasticBert

SEARCHES = [
    ("unified", "nsga2"),
    ("unified", "random"),
    ("dynabert", "nsga2"),
    ("powerbert", "nsga2"),
    ("schubert", "nsga2"),
    # the unified search started from the full model and DynaBERT's grid (--seed-references)
    ("unified", "nsga2+references"),
    # ... with the budget at half the full model's latency: how a user would search for the 50 % point
    ("unified", "nsga2+references@50%"),
    # ... started from the references and the fronts of searches 3 to 5 as well (--seed-from)
    ("unified", "nsga2+fronts@50%"),
    # the best family alone with the budget at half the full latency
    ("powerbert", "nsga2@50%"),
]
SUB_SPACES = ("dynabert", "powerbert", "schubert")
REF_METRIC = 0.5  # chance accuracy on SST-2 (balanced binary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=100, help="Accuracy-evaluated trials per search.")
    parser.add_argument("--supernet", default=None, help="default: the full-preset SST-2 supernet of --teacher")
    parser.add_argument("--teacher", default=str(teacher_dir("all-MiniLM-L6-v2", "sst2")))
    parser.add_argument("--device", default="pixel4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/bench_search", help="Where the run directories go.")
    parser.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR"))
    parser.add_argument(
        "--only", default=None, help="Run these searches (e.g. unified/nsga2+references) and keep the others' results."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher = json.loads((Path(args.teacher) / "metrics.json").read_text())
    if args.supernet is None:
        args.supernet = str(supernet_dir(args.teacher, "sst2", "unified-full"))
    supernet = ElasticBert.from_pretrained(args.supernet)
    predictor = load_predictor(args.device)
    full = supernet.full_arch()
    full_ms = float(predictor.predict(full))
    column = latency_column(args.device)
    results: dict = {
        "task": "sst2",
        "device": args.device,
        "supernet": args.supernet,
        "evaluations": args.evaluations,
        "threads": args.threads,
        "teacher_accuracy": teacher["score"],
        "full_latency_ms": full_ms,
        "reference_point": {"accuracy": REF_METRIC, "latency_ms": full_ms},
        "searches": [],
    }
    selected = SEARCHES
    if args.only:
        wanted = set(args.only.split(","))
        selected = [(space, sampler) for space, sampler in SEARCHES if f"{space}/{sampler}" in wanted]
        previous = Path(__file__).parent / "results" / "search_sst2.json"
        if previous.is_file():
            kept = json.loads(previous.read_text())["searches"]
            results["searches"] = [s for s in kept if f"{s['space']}/{s['sampler']}" not in wanted]
    for space, label in selected:
        sampler, _, percent = label.partition("@")
        budget_ms = full_ms * (float(percent.rstrip("%")) / 100 if percent else 1.0)
        sampler, _, seeds = sampler.partition("+")
        slug = label.replace("+", "-").replace("@", "-at-").replace("%", "pct")
        out = Path(args.runs) / f"{space}-{slug}-{args.evaluations}-seed{args.seed}"
        fronts = [str(Path(args.runs) / f"{s}-nsga2-{args.evaluations}-seed{args.seed}") for s in SUB_SPACES]
        config = SearchConfig(
            task="sst2",
            budgets_ms={args.device: budget_ms},
            space=space,
            supernet=args.supernet,
            trials=args.evaluations,
            sampler=sampler,
            seed_references=seeds in ("references", "fronts"),
            seed_from=fronts if seeds == "fronts" else [],
            seed=args.seed,
            out=str(out),
            references=(space, label) == SEARCHES[0],
            glue_dir=args.glue_dir,
            command=["benchmarks/bench_search.py"],
        )
        start = time.perf_counter()
        summary = run_search(config, progress=True)
        wall = time.perf_counter() - start
        run = SearchRun.open(out)
        trials = run.trials
        done = trials[trials["state"] == "COMPLETE"]
        front = run.pareto(args.device, full_ms)
        volume = hypervolume(done["metric"].to_numpy(float), done[column].to_numpy(float), REF_METRIC, full_ms)
        entry = {
            "space": space,
            "sampler": label,
            "budget_ms": budget_ms,
            "run_dir": str(out),
            "evaluated": int(len(done)),
            "fresh_evaluations": int((done["cached"] == False).sum()),  # noqa: E712 (pandas)
            "rejected": int((trials["state"] == "PRUNED").sum()),
            "distinct_configs": int(done["arch_hash"].nunique()),
            "hypervolume": volume,
            "hypervolume_fraction": volume / ((1 - REF_METRIC) * full_ms),
            "front_size": int(len(front)),
            "wall_time_s": round(wall, 1),
            "study_wall_time_s": summary["wall_time_s"],
        }
        half = front[front[column] <= 0.5 * full_ms]
        if not half.empty:
            best = half.loc[half["metric"].idxmax()]
            entry["best_at_half_latency"] = {
                "trial": int(best["number"]),
                "accuracy": float(best["metric"]),
                "latency_ms": float(best[column]),
                "latency_fraction": float(best[column]) / full_ms,
                "macs": int(best["macs"]),
                "params": int(best["params"]),
                "loss_vs_teacher_points": 100 * (teacher["score"] - float(best["metric"])),
                "config": json.loads(best["config"]),
            }
        results["searches"].append(entry)
        path = write_results("search_sst2", results)
        print(f"{space}/{label}: hypervolume {volume:.3f} in {wall:.0f}s -> {path}", flush=True)
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = [
        f"SST-2, MiniLM supernet, {results['evaluations']} accuracy evaluations per search, {results['device']} "
        f"(full model {results['full_latency_ms']:.1f} ms; teacher {100 * results['teacher_accuracy']:.2f} %; "
        f"reference point: accuracy {REF_METRIC}, {results['full_latency_ms']:.1f} ms)",
        "",
        "| space | sampler | hypervolume (acc x ms) | fraction of box | front | fresh evals | rejected | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["searches"]:
        lines.append(
            f"| {s['space']} | {s['sampler']} | {s['hypervolume']:.2f} | {s['hypervolume_fraction']:.4f} | "
            f"{s['front_size']} | {s['fresh_evaluations']} | {s['rejected']} | {s['wall_time_s']:.0f} s |"
        )
    lines.append("")
    for s in results["searches"]:
        best = s.get("best_at_half_latency")
        if best is None:
            lines.append(f"- {s['space']}/{s['sampler']}: no front point at <= 50 % of the full latency")
            continue
        lines.append(
            f"- {s['space']}/{s['sampler']}: best at <= 50 % latency: trial {best['trial']}, accuracy "
            f"{100 * best['accuracy']:.2f} % at {best['latency_ms']:.1f} ms ({100 * best['latency_fraction']:.0f} %), "
            f"{best['macs'] / 1e6:.0f} MMACs, {best['params'] / 1e6:.1f} M params; loss vs. teacher "
            f"{best['loss_vs_teacher_points']:.2f} points"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
