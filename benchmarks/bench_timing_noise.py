"""How much a model's timing moves on this machine, alone and paired with an anchor (issue 17).

    python benchmarks/bench_timing_noise.py [--runtime onnxruntime] [--models 5] [--repeats 10] [--calls 11]

``--models`` random unified MiniLM subnets (the validation stream, seed 0) and the anchor (the
full MiniLM) are opened once. Then ``--repeats`` times, for each subnet in turn: ``--calls``
calls timed as ``bertnas.hardware.measure.time_paired`` times them (anchor, subnet, anchor, ...,
anchor). Each repeat gives two figures per subnet: its median time (what an unpaired
measurement keeps) and its median ratio to the anchor calls beside it (what a paired one keeps).
Per subnet, over the repeats: coefficient of variation and range (fastest to slowest, as a
share of the median) of each. Nothing is fitted; a timing, so never a test.

Writes ``benchmarks/results/timing_noise_<runtime>.json``; prints markdown.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import write_results

from bertnas.hardware.measure import Timing, anchor_arch, time_paired
from bertnas.hardware.runtimes import open_runtime
from bertnas.hardware.validate import VALIDATION_SEED, sample_subnets


def spread(values: list[float]) -> dict[str, float]:
    v = np.asarray(values)
    return {
        "median": round(float(np.median(v)), 5),
        "cv_pct": round(float(v.std() / v.mean() * 100), 2),
        "range_pct": round(float((v.max() - v.min()) / np.median(v) * 100), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calls", type=int, default=11)
    args = parser.parse_args()
    timing = Timing(warmup=3, min_repeats=args.calls, max_repeats=args.calls, min_seconds=0.0)
    archs = sample_subnets(args.models, VALIDATION_SEED)
    started = time.perf_counter()
    with open_runtime(args.runtime, args.threads, 1, 128) as runtime:
        prepared = [runtime.prepare(a) for a in [*archs, anchor_arch()]]
        try:
            runs = [p() for p in prepared]
            anchor = runs.pop()
            alone: list[list[float]] = [[] for _ in archs]
            ratio: list[list[float]] = [[] for _ in archs]
            for _ in range(args.repeats):
                for i, run in enumerate(runs):
                    paired = time_paired(run, anchor, timing)
                    alone[i].append(paired.ms)
                    ratio[i].append(paired.ratio)
        finally:
            for p in prepared:
                p.close()
    rows = [
        {"hash": a.hash(), "layers": len(a.layers), "alone_ms": spread(alone[i]), "paired_ratio": spread(ratio[i])}
        for i, a in enumerate(archs)
    ]
    results = {
        "runtime": args.runtime,
        "threads": args.threads,
        "repeats": args.repeats,
        "calls_per_repeat": args.calls,
        "seconds": round(time.perf_counter() - started, 1),
        "subnets": rows,
        "worst": {
            "alone_cv_pct": max(r["alone_ms"]["cv_pct"] for r in rows),
            "alone_range_pct": max(r["alone_ms"]["range_pct"] for r in rows),
            "paired_cv_pct": max(r["paired_ratio"]["cv_pct"] for r in rows),
            "paired_range_pct": max(r["paired_ratio"]["range_pct"] for r in rows),
        },
    }
    path = write_results(f"timing_noise_{args.runtime}", results)
    print(
        f"{args.runtime}, {args.threads} thread, {args.repeats} repeats of {args.calls} calls, {results['seconds']} s"
    )
    print("| subnet | layers | median time | CV | range | median ratio to anchor | CV | range |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        a, p = r["alone_ms"], r["paired_ratio"]
        print(
            f"| {r['hash'][:8]} | {r['layers']} | {a['median']:.3f} ms | {a['cv_pct']} % | {a['range_pct']} % | "
            f"{p['median']:.4f} | {p['cv_pct']} % | {p['range_pct']} % |"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
