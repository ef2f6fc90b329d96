"""Does the union pay off? Unified search from scratch vs. each family alone, per task (issue 12).

    GLUE_DIR=/work/shared/data/glue python benchmarks/bench_union.py --task mrpc \\
        --supernet ~/.cache/bertnas/supernets/mrpc-families [--evaluations 100] [--device pixel4]
        [--searches unified/surrogate,unified/nsga2,dynabert/nsga2,...] [--seeds 0,1,2] [--threads 2]

For one task and one trained supernet (the same for every row):

1. **Searches**, each stopped at ``--evaluations`` accuracy-evaluated trials, budget = the
   full model's predicted latency on ``--device`` (the whole trade-off): the unified space
   from scratch (no ``--seed-references``, no ``--seed-from``) with the ``surrogate``
   sampler (its first generation is the full model, DynaBERT's grid and family draws; its
   offspring are screened by the accuracy predictor) and with plain NSGA-II, against the
   DynaBERT-, PoWER-BERT-, schuBERT- and MobileBERT-only searches with NSGA-II. Per
   search: the best metric at <= 25, 33, 50 and 75 % of the full latency, the hypervolume
   against (the input-ignoring baseline score, the full latency), how many trials were
   degenerate, wall time.
2. **Random unified subnets**: the weight-shared metric of 20 seeded random subnets of the
   unified space: mean, min, max, how many score the majority-class (mean-prediction)
   baseline or have constant predictions.
3. **DynaBERT grid**: the 12 width x depth points, how many are within 3 points of the teacher.

A search label is ``SPACE/SAMPLER[:VARIANT][@SEED]``: ``@SEED`` runs it with another seed (the
default is ``--seed``), and a ``surrogate`` variant switches one of its levers off for the
ablation: ``:no-floor`` (not told the input-ignoring score: collapsed subnets breed and count
on the front), ``:no-moves`` (no family moves: every child by crossover and mutation over
all dimensions), ``:neither``; ``:levels`` switches the budget-level rounds on (every other
offspring targets 25/33/50/75/100 % of the budget in turn). ``--seeds 0,1,2`` runs every label at each of those seeds.

Every search selects on the supernet's search split (the slice of train held out from
teacher and supernet training), and every table figure is on that split, the teacher's
included; the best points of each search are also evaluated once on the dev split
(``dev_metric``), which nothing here selects on. Writes
``benchmarks/results/union_<task>_<supernet dir name>.json`` after every part and prints markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import supernet_teacher, write_results

from bertnas.arch import ArchConfig
from bertnas.hardware import load_predictor
from bertnas.search import SearchConfig, SearchRun, hypervolume, run_search
from bertnas.search import study as study_module
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.search.objectives import latency_column
from bertnas.search.pareto import degenerate_mask
from bertnas.search.surrogate import LEVEL_FRACTIONS
from bertnas.search.trial import reference_archs
from bertnas.space import load_space

SEARCHES = (
    "unified/surrogate",
    "unified/nsga2",
    "dynabert/nsga2",
    "powerbert/nsga2",
    "schubert/nsga2",
    "mobilebert/nsga2",
)
FRACTIONS = (0.25, 0.33, 0.5, 0.75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--device", default="pixel4")
    parser.add_argument("--searches", default=",".join(SEARCHES))
    parser.add_argument("--random", type=int, default=20, help="Random unified subnets to evaluate.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="", help="Run every search at each of these seeds (e.g. 0,1,2).")
    parser.add_argument("--runs", default="runs/bench_union")
    parser.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR"))
    parser.add_argument("--tag", default="", help="Suffix of the results file name (e.g. the profile's version).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    supernet_dir = Path(args.supernet).expanduser()
    metrics = json.loads((supernet_dir / "metrics.json").read_text())
    training = json.loads((supernet_dir / "training.json").read_text())
    main_metric = metrics["main_metric"]
    evaluator = SubnetEvaluator.open(supernet_dir, task=args.task, glue_dir=args.glue_dir)
    dev_evaluator = SubnetEvaluator.open(supernet_dir, task=args.task, split="dev", glue_dir=args.glue_dir)
    teacher = teacher_score(supernet_dir, evaluator, main_metric)
    baseline = evaluator.baseline()
    predictor = load_predictor(args.device)
    full = evaluator.supernet.full_arch()
    full_ms = float(predictor.predict(full))
    column = latency_column(args.device)
    name = f"union_{args.task}_{supernet_dir.name}" + (f"_{args.tag}" if args.tag else "")
    results: dict = {
        "task": args.task,
        "metric": main_metric,
        "split": "search",
        "search_examples": len(evaluator.data),
        "teacher_dev": float(metrics["teacher"][main_metric]),
        "device": args.device,
        "supernet": supernet_dir.name,
        "recipe": training.get("recipe", {"name": "sandwich (before recipes)"}),
        "supernet_train_seconds": metrics.get("train_seconds"),
        "teacher": teacher,
        "baseline": baseline,
        "full_latency_ms": full_ms,
        "evaluations": args.evaluations,
        "threads": args.threads,
        "searches": [],
    }

    # 2. random unified subnets and 3. the DynaBERT grid (weight-shared, cached)
    space = load_space("unified").bind(evaluator.supernet.limits, backbone=evaluator.supernet.config.backbone)
    scores, flags = [], []
    for arch in space.sample_many(args.random, seed=args.seed):
        result = evaluator.evaluate(arch)
        scores.append(float(result.metric))
        flags.append(bool(result.degenerate))
    scores_np = np.array(scores)
    results["random_unified"] = {
        "n": len(scores),
        "mean": float(scores_np.mean()),
        "min": float(scores_np.min()),
        "max": float(scores_np.max()),
        "at_baseline": int(np.sum(np.abs(scores_np - baseline["score"]) < 1e-9)),
        "degenerate": int(sum(flags)),
        "halfway_target": (baseline["score"] + teacher) / 2,
    }
    grid = {}
    for label, arch in reference_archs(space, full).items():
        if label != "full":
            grid[label] = float(evaluator.evaluate(arch).metric)
    results["dynabert_grid"] = {
        "points": grid,
        "within_3_points": int(sum(teacher - v <= 0.03 for v in grid.values())),
        "of": len(grid),
    }
    write_results(name, results)

    # 1. the searches
    labels = [label for label in args.searches.split(",") if label]  # --searches "": only parts 2 and 3
    if args.seeds:
        labels = [f"{label}@{seed}" for seed in args.seeds.split(",") for label in labels]
    for label in labels:
        name_part, _, seed_part = label.partition("@")
        seed = int(seed_part) if seed_part else args.seed
        space_name, sampler_part = name_part.split("/")
        sampler, _, variant = sampler_part.partition(":")
        run_name = f"{space_name}-{sampler}{'-' + variant if variant else ''}-{args.evaluations}"
        run_name += f"-seed{seed}" if seed_part else ""
        out = Path(args.runs) / args.task / supernet_dir.name / run_name
        config = SearchConfig(
            task=args.task,
            budgets_ms={args.device: full_ms},
            space=space_name,
            supernet=str(supernet_dir),
            trials=args.evaluations,
            sampler=sampler,
            seed=seed,
            out=str(out),
            references=False,
            glue_dir=args.glue_dir,
            command=["benchmarks/bench_union.py"],
        )
        start = time.perf_counter()
        with surrogate_variant(variant):
            run_search(config, progress=True)
        wall = time.perf_counter() - start
        run = SearchRun.open(out)
        trials = run.trials
        done = trials[trials["state"] == "COMPLETE"]
        metric, latency = done["metric"].to_numpy(float), done[column].to_numpy(float)
        entry = {
            "search": label,
            "seed": seed,
            "evaluated": int(len(done)),
            "fresh_evaluations": int((done["cached"] == False).sum()),  # noqa: E712 (pandas)
            "degenerate": int(degenerate_mask(done).sum()),
            "hypervolume": hypervolume(metric, latency, baseline["score"], full_ms),
            "wall_time_s": round(wall, 1),
            "best_at": {},
        }
        for fraction in FRACTIONS:
            fits = (latency <= fraction * full_ms) & ~degenerate_mask(done).to_numpy()
            if fits.any():
                k = int(np.argmax(np.where(fits, metric, -np.inf)))
                entry["best_at"][f"{fraction:g}"] = {
                    "metric": float(metric[k]),
                    "latency_ms": float(latency[k]),
                    "loss_vs_teacher_points": 100 * (teacher - float(metric[k])),
                    "trial": int(done.iloc[k]["number"]),
                    "dev_metric": dev_metric(run, done.iloc[k], dev_evaluator),
                }
        results["searches"].append(entry)
        write_results(name, results)
        print(f"{label}: hypervolume {entry['hypervolume']:.3f} in {wall:.0f}s", flush=True)
    print(markdown(results))


VARIANTS = {"": {}, "no-floor": {"floor": None}, "no-moves": {"move_share": 0.0}}
VARIANTS["neither"] = {**VARIANTS["no-floor"], **VARIANTS["no-moves"]}
# Switched on rather than off: budget-level rounds (make_surrogate_sampler's level_fractions).
LEVELS = {"levels": LEVEL_FRACTIONS}


@contextlib.contextmanager
def surrogate_variant(variant: str):
    """The surrogate sampler with one of its levers switched off (the ablation), for one search."""
    if variant not in VARIANTS and variant not in LEVELS:
        known = [v for v in [*VARIANTS, *LEVELS] if v]
        raise SystemExit(f"unknown surrogate variant {variant!r}; choose one of {', '.join(known)}")
    original = study_module.make_surrogate_sampler

    def patched(*args, **kwargs):
        if variant in LEVELS:
            kwargs["level_fractions"] = LEVELS[variant]
        sampler = original(*args, **kwargs)
        for name, value in VARIANTS.get(variant, {}).items():
            setattr(sampler, name, value)
        return sampler

    study_module.make_surrogate_sampler = patched
    try:
        yield
    finally:
        study_module.make_surrogate_sampler = original


def dev_metric(run: SearchRun, row, dev_evaluator: SubnetEvaluator) -> float:
    """A trial's dev metric: the search's own dev report (front points), else evaluated here."""
    known = run.dev_metric(row["arch_hash"])
    if known is not None:
        return float(known)
    return float(dev_evaluator.evaluate(ArchConfig.from_json(row["config"])).metric)


def teacher_score(supernet_dir: Path, evaluator: SubnetEvaluator, main_metric: str) -> float:
    """The teacher's metric on the evaluator's split (the search split), from the teacher the
    supernet's run.json names; the supernet's full model when that teacher cannot be loaded."""
    from bertnas.supernet.elastic import ElasticBert
    from bertnas.training.evaluate import evaluate_model

    teacher = str(supernet_teacher(supernet_dir))
    try:
        model = ElasticBert.from_backbone(teacher, task=evaluator.supernet.config.task).get_active_subnet().eval()
    except Exception as error:  # noqa: BLE001 (a benchmark: say it and go on with the stand-in)
        print(f"teacher {teacher} not loadable ({error}); using the supernet's full model", flush=True)
        evaluator.supernet.set_active_subnet(evaluator.supernet.full_arch())
        model = evaluator.supernet
    return float(evaluate_model(model, evaluator.data)[main_metric])


def markdown(results: dict) -> str:
    metric, teacher, base = results["metric"], results["teacher"], results["baseline"]
    lines = [
        f"{results['task']} ({metric}, search split of {results.get('search_examples')} examples), "
        f"supernet {results['supernet']} (recipe "
        f"{results['recipe'].get('name')}), {results['evaluations']} evaluations per search, {results['device']} "
        f"(full model {results['full_latency_ms']:.1f} ms); teacher {100 * teacher:.2f}, "
        f"{base['kind']} baseline {100 * base['score']:.2f}",
        "",
        "| search | " + " | ".join(f"best <= {int(100 * f)} %" for f in FRACTIONS) + " | hypervolume | degenerate |",
        "|---|" + "---:|" * (len(FRACTIONS) + 2),
    ]
    for s in results["searches"]:
        cells = []
        for fraction in FRACTIONS:
            best = s["best_at"].get(f"{fraction:g}")
            cells.append("-" if best is None else f"{100 * best['metric']:.2f}")
        lines.append(f"| {s['search']} | " + " | ".join(cells) + f" | {s['hypervolume']:.3f} | {s['degenerate']} |")
    r, g = results["random_unified"], results["dynabert_grid"]
    lines += [
        "",
        f"- {r['n']} random unified subnets: mean {100 * r['mean']:.2f} (min {100 * r['min']:.2f}, max "
        f"{100 * r['max']:.2f}); {r['at_baseline']} at the baseline score, {r['degenerate']} degenerate; "
        f"halfway target {100 * r['halfway_target']:.2f}",
        f"- DynaBERT grid: {g['within_3_points']} of {g['of']} within 3 points of the teacher",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
