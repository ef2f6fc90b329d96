"""Ray backend throughput: trials per minute with 1 vs. 2 Ray workers, and the per-trial overhead against local.

    GLUE_DIR=/work/shared/data/glue python benchmarks/bench_ray.py [--trials 24] [--dev-subset 256]
        [--supernet DIR] [--device pixel4]

The same small study (SST-2, unified space, NSGA-II, seed 0, budget = the full model's
latency so every suggestion is evaluated) runs four times on the trained MiniLM supernet:

1. local backend, torch on 1 thread,
2. local backend, torch on 2 threads (the default on this machine),
3. Ray, embedded, 1 worker (Ray gives each 1-CPU actor 1 torch thread),
4. Ray, embedded, 2 workers.

Every run gets a fresh accuracy cache (the supernet's files are linked into a temporary
directory), so every trial is a real evaluation. Reported per run: the search loop's
wall time (run.json; for Ray it includes starting the actors and loading the supernet
in each), the end-to-end wall time (for Ray, also starting Ray), trials per minute over
the loop, and for Ray the overhead per trial against the local run with the same number
of torch threads per evaluation. Writes benchmarks/results/ray.json and prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from common import write_results

from bertnas.hardware import load_predictor
from bertnas.paths import supernet_dir, teacher_dir
from bertnas.search import SearchConfig, run_search
from bertnas.search.ray_backend import RayOptions, run_search_ray
from bertnas.supernet import ElasticBert

CACHE_FILES = ("eval_cache.sqlite", "eval_cache.sqlite-wal", "eval_cache.sqlite-shm")


def _fresh_supernet(source: Path, root: Path) -> Path:
    """``source``'s files linked into a new directory: same weights, an empty accuracy cache."""
    target = root / "supernet"
    target.mkdir()
    for item in source.iterdir():
        if item.name not in CACHE_FILES:
            (target / item.name).symlink_to(item.resolve())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--dev-subset", type=int, default=256, help="Evaluate on the first N dev examples.")
    parser.add_argument("--supernet", default=None, help="Default: the full-preset MiniLM SST-2 supernet.")
    parser.add_argument("--device", default="pixel4")
    args = parser.parse_args()

    teacher = str(teacher_dir("all-MiniLM-L6-v2", "sst2"))
    candidates = [supernet_dir(teacher, "sst2", name) for name in ("unified-full", "unified")]
    supernet = Path(args.supernet) if args.supernet else next((c for c in candidates if c.is_dir()), candidates[0])
    if not (supernet / "model.safetensors").is_file():
        raise SystemExit(f"no trained supernet at {supernet}; train one (`bertnas supernet train --task sst2`)")
    limits_arch = ElasticBert.from_pretrained(supernet).full_arch()
    budget = float(load_predictor(args.device).predict(limits_arch)) * 1.001  # the whole trade-off is feasible
    runs = [
        ("local, 1 thread", "local", 1, None),
        ("local, 2 threads", "local", 2, None),
        ("ray, 1 worker", "ray", 1, 1),
        ("ray, 2 workers", "ray", 2, 2),
    ]
    results = []
    for label, backend, threads, workers in runs:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            root = Path(tmp)
            config = SearchConfig(
                task="sst2",
                budgets_ms={args.device: budget},
                supernet=str(_fresh_supernet(supernet, root)),
                trials=args.trials,
                seed=0,
                dev_subset=args.dev_subset,
                references=False,
                out=str(root / "run"),
                glue_dir=os.environ.get("GLUE_DIR"),
            )
            torch.set_num_threads(threads)
            start = time.perf_counter()
            if backend == "local":
                result = run_search(config, progress=False).to_json()
            else:
                result = run_search_ray(config, RayOptions(workers=workers), progress=False).to_json()
            end_to_end = time.perf_counter() - start
            info = json.loads((root / "run" / "run.json").read_text())
        loop = float(info["wall_time_s"])
        startup = float(info["sessions"][-1].get("worker_startup_s", 0.0))
        evaluated = result["counts"]["evaluated"]
        row = {
            "run": label,
            "backend": backend,
            "torch_threads_per_evaluation": threads if backend == "local" else 1,
            "workers": workers,
            "evaluated": evaluated,
            "rejected": result["counts"]["rejected"],
            "loop_wall_s": round(loop, 2),
            "end_to_end_wall_s": round(end_to_end, 2),
            "trials_per_minute": round(evaluated / loop * 60, 2),
            "worker_startup_s": round(startup, 2),
            "steady_trials_per_minute": round(evaluated / (loop - startup) * 60, 2),
        }
        results.append(row)
        print(json.dumps(row))
    local1 = next(r for r in results if r["run"] == "local, 1 thread")
    for row in results:
        if row["backend"] == "ray":
            # Worker-seconds per trial beyond a local evaluation on the same 1 thread, after the workers started.
            steady = row["loop_wall_s"] - row["worker_startup_s"]
            row["overhead_per_trial_s_vs_local_1_thread"] = round(
                (steady * row["workers"] - local1["loop_wall_s"]) / row["evaluated"], 3
            )
    ray1 = next(r for r in results if r["run"] == "ray, 1 worker")
    ray2 = next(r for r in results if r["run"] == "ray, 2 workers")
    payload = {
        "study": {
            "task": "sst2",
            "space": "unified",
            "sampler": "nsga2",
            "trials": args.trials,
            "dev_subset": args.dev_subset,
            "device": args.device,
            "budget_ms": budget,
            "supernet": str(supernet),
        },
        "runs": results,
        "speedup_2_vs_1_workers": round(ray2["trials_per_minute"] / ray1["trials_per_minute"], 2),
        "steady_speedup_2_vs_1_workers": round(ray2["steady_trials_per_minute"] / ray1["steady_trials_per_minute"], 2),
        "training_running": not Path("/tmp/bn-logs/TRAINING_DONE").exists(),
    }
    path = write_results("ray", payload)
    print(f"\nwrote {path}\n")
    print(
        "| run | end-to-end (s) | loop (s) | worker startup (s) | trials/min | steady trials/min "
        "| overhead/trial vs local 1 thread (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in results:
        overhead = row.get("overhead_per_trial_s_vs_local_1_thread", "")
        print(
            f"| {row['run']} | {row['end_to_end_wall_s']} | {row['loop_wall_s']} | {row['worker_startup_s']} | "
            f"{row['trials_per_minute']} | {row['steady_trials_per_minute']} | {overhead} |"
        )
    print(
        f"\n2 vs 1 Ray workers: x{payload['speedup_2_vs_1_workers']} over the loop, "
        f"x{payload['steady_speedup_2_vs_1_workers']} after startup"
    )


if __name__ == "__main__":
    main()
