"""Guaranteed budgets (issue 17): does a 0.95 conformal bound hold on fresh measured subnets?

    python benchmarks/bench_conformal.py [--device host-cpu-onnxruntime] [--samples 100]
        [--rounds 3] [--run RUN_DIR ...]

1. **Residuals**: ``--samples`` random unified MiniLM subnets (validation seed stream 0, never
   the calibration stream the corrections were fitted on) measured end to end on this machine
   with the profile's runtime, threads, batch and length, exactly as
   ``bertnas profile validate --save-residuals`` does; relative residuals measured/predicted - 1.
2. **Held out**: ``--samples`` further subnets (seed 2), measured the same way. For each
   confidence, the share of held-out subnets whose measured latency exceeds the conformal bound
   ``predicted * (1 + q)`` (goal at 0.95: <= 5 %), and the same share for the plain prediction.
3. **What the guarantee costs**: for each ``--run`` (a search run directory), its evaluated
   trials re-priced on the device, the hypervolume of the front under the budget B (the largest
   re-priced trial latency) against the front under B / (1 + q) (same reference point:
   the run's input-ignoring baseline score and B). Metrics are the run's own (its search split).

Nothing is written to the profile: residuals describe the machine they were measured on (the
committed host profiles were measured on another CPU). Writes
``benchmarks/results/conformal_<device>.json`` and prints markdown.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import write_results

from bertnas.hardware import load_profile
from bertnas.hardware.conformal import conformal_quantile, relative_residuals
from bertnas.hardware.measure import Timing
from bertnas.hardware.validate import VALIDATION_SEED, validate
from bertnas.search import SearchRun, hypervolume
from bertnas.search.objectives import latency_column

CONFIDENCES = (0.8, 0.9, 0.95, 0.99)
HELD_OUT_SEED = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="host-cpu-onnxruntime")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", action="append", default=[], help="search run directory (repeatable)")
    args = parser.parse_args()

    profile = load_profile(args.device)
    timing = Timing(rounds=args.rounds)
    results: dict = {"device": args.device, "profile_host": dict(profile.host), "samples": args.samples}
    started = time.perf_counter()
    calibration = validate(profile, args.samples, seed=VALIDATION_SEED, timing=timing)
    held_out = validate(profile, args.samples, seed=HELD_OUT_SEED, timing=timing)
    results["measure_seconds"] = round(time.perf_counter() - started, 1)
    residuals = _residuals(calibration)
    fresh = _residuals(held_out)
    results["calibration"] = {k: v for k, v in calibration.items() if k != "points"}
    results["held_out"] = {k: v for k, v in held_out.items() if k != "points"}
    results["plain_prediction_violation_pct"] = round(float(np.mean(fresh > 0)) * 100, 1)
    results["bounds"] = []
    for confidence in CONFIDENCES:
        try:
            q = conformal_quantile(residuals, confidence)
        except Exception as error:  # too few residuals for this level
            results["bounds"].append({"confidence": confidence, "error": str(error)})
            continue
        results["bounds"].append(
            {
                "confidence": confidence,
                "quantile": round(q, 4),
                "violation_pct": round(float(np.mean(fresh > q)) * 100, 1),
                "goal_pct": round((1 - confidence) * 100, 1),
            }
        )
    results["hypervolume_cost"] = [_cost(Path(run), args.device, residuals) for run in args.run]
    path = write_results(f"conformal_{args.device}", results)
    _print(results)
    print(f"wrote {path}")


def _residuals(result: dict) -> np.ndarray:
    points = result["points"]
    return relative_residuals([p["predicted_ms"] for p in points], [p["measured_ms"] for p in points])


def _cost(directory: Path, device: str, residuals: np.ndarray) -> dict:
    run = SearchRun.open(directory)
    trials = run.with_device(device)
    done = trials[(trials["state"] == "COMPLETE") & trials["metric"].notna()]
    metric, latency = done["metric"].to_numpy(float), done[latency_column(device)].to_numpy(float)
    budget = float(latency.max()) * (1 + 1e-9)
    floor = float((run.baseline or {}).get("score", 0.0))
    plain = hypervolume(metric, latency, floor, budget)
    out = {"run": directory.name, "split": run.split, "budget_ms": round(budget, 3), "hypervolume": round(plain, 4)}
    for confidence in (0.9, 0.95):
        q = conformal_quantile(residuals, confidence)
        inside = latency <= budget / (1 + q)
        guaranteed = hypervolume(metric[inside], latency[inside], floor, budget)
        out[f"hypervolume_at_{confidence:g}"] = round(guaranteed, 4)
        out[f"cost_pct_at_{confidence:g}"] = round((1 - guaranteed / plain) * 100, 2) if plain else None
    return out


def _print(results: dict) -> None:
    cal, held = results["calibration"], results["held_out"]
    print(
        f"{results['device']} on this machine, {results['samples']} + {results['samples']} subnets "
        f"({results['measure_seconds']} s): calibration MAPE {cal['mape_pct']} %, held-out MAPE {held['mape_pct']} %, "
        f"held-out over the plain prediction {results['plain_prediction_violation_pct']} %"
    )
    print("| confidence | conformal q | held-out violations | goal |")
    print("|---:|---:|---:|---:|")
    for b in results["bounds"]:
        if "error" in b:
            print(f"| {b['confidence']} | - | {b['error']} | |")
        else:
            print(f"| {b['confidence']} | {b['quantile']:+.4f} | {b['violation_pct']} % | <= {b['goal_pct']} % |")
    for c in results["hypervolume_cost"]:
        print(
            f"- {c['run']} ({c['split']} split): hypervolume {c['hypervolume']} -> {c['hypervolume_at_0.95']} "
            f"at 0.95 ({c['cost_pct_at_0.95']} % less), {c['hypervolume_at_0.9']} at 0.9"
        )


if __name__ == "__main__":
    main()
