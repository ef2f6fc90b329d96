"""Is a search still the same search after a refactoring? Same trials, same wall time (issue 18).

    GLUE_DIR=/work/shared/data/glue python benchmarks/bench_same_search.py \\
        --before /path/to/old/checkout --after . --task mrpc --supernet DIR \\
        [--samplers nsga2,surrogate] [--trials 100] [--seed 0] [--device pixel4] [--threads 1]

Runs the same search (the unified space, budget = the full model's predicted latency on
``--device``, ``--trials`` accuracy evaluations, seed ``--seed``) with each of two source trees
(``PYTHONPATH`` set to it, in a fresh process), each on its own copy of the supernet without its
accuracy cache, so that both evaluate every subnet themselves and their wall times compare.
Then compares the trials one by one: number, state, architecture hash and metric (to 1e-9).
Writes ``benchmarks/results/same_search_<task>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_results

RUNNER = """
import json, sys, time
from bertnas.hardware import load_predictor
from bertnas.search import SearchConfig, SearchRun, run_search
from bertnas.supernet import ElasticBert
import torch
task, supernet, device, sampler, trials, seed, out, threads = sys.argv[1:9]
torch.set_num_threads(int(threads))
budget = float(load_predictor(device).predict(ElasticBert.from_pretrained(supernet).full_arch()))
config = SearchConfig(task=task, budgets_ms={device: budget}, space="unified", supernet=supernet,
                      trials=int(trials), sampler=sampler, seed=int(seed), out=out, references=False)
start = time.perf_counter()
run_search(config, progress=False)
wall = time.perf_counter() - start
frame = SearchRun.open(out).trials
rows = [[int(r.number), r.state, r.arch_hash, None if r.metric != r.metric else round(float(r.metric), 9)]
        for r in frame.itertuples()]
print(json.dumps({"wall_s": wall, "trials": rows}))
"""


def run(tree: Path, args: argparse.Namespace, sampler: str, scratch: Path, name: str) -> dict:
    supernet = scratch / f"supernet-{name}"
    shutil.copytree(args.supernet, supernet, ignore=shutil.ignore_patterns("eval_cache*"))
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-c", RUNNER, args.task, str(supernet), args.device, sampler, str(args.trials),
               str(args.seed), str(scratch / f"run-{name}-{sampler}"), str(args.threads)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=scratch, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} {sampler} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    shutil.rmtree(supernet)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the source tree before the change")
    parser.add_argument("--after", default=".", help="the source tree after it (default: this checkout)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--samplers", default="nsga2,surrogate")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="pixel4")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bertnas-same-search-"))
    results: dict = {"task": args.task, "trials": args.trials, "seed": args.seed, "device": args.device,
                     "threads": args.threads, "samplers": {}}  # fmt: skip
    for sampler in filter(None, args.samplers.split(",")):
        before = run(Path(args.before), args, sampler, scratch, "before")
        after = run(Path(args.after), args, sampler, scratch, "after")
        differing = [b for b, a in zip(before["trials"], after["trials"], strict=False) if b != a]
        entry = {
            "trials_before": len(before["trials"]),
            "trials_after": len(after["trials"]),
            "identical": before["trials"] == after["trials"],
            "differing_trials": len(differing) + abs(len(before["trials"]) - len(after["trials"])),
            "wall_s_before": round(before["wall_s"], 1),
            "wall_s_after": round(after["wall_s"], 1),
        }
        results["samplers"][sampler] = entry
        print(f"{sampler}: {'identical' if entry['identical'] else 'DIFFERENT'} trials; wall "
              f"{entry['wall_s_before']} s before, {entry['wall_s_after']} s after", flush=True)  # fmt: skip
        write_results(f"same_search_{args.task}", results)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
