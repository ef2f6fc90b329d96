"""A measured profile on this machine, its end-to-end corrections compared, and its guarantee (issue 17).

    python benchmarks/bench_profile_fit.py --runtime onnxruntime [--threads 1] [--grid default]
        [--calibration 100] [--samples 100] [--rounds 3] [--out PROFILE.yaml]

1. The kernel grid timed on ``--runtime`` (as ``bertnas profile measure``).
2. Three seeded sets of random unified MiniLM subnets timed end to end in ``--rounds``
   interleaved rounds: calibration (the corrections' seed stream), validation (seed 0, the
   stream ``bertnas profile validate`` uses) and held out (seed 2).
3. Five correction models fitted on the calibration set only: ``per layer`` (scale + per
   layer + per model: the committed profiles' form), ``per call`` (scale + per kernel call +
   per model), ``both``, ``per group`` (one scale per kernel group, ``KERNEL_GROUPS``, + per
   layer + per model: what ``bertnas profile measure`` fits now) and ``per group + per call``;
   for each, on the validation set: MAPE, share within +-10 %,
   Kendall tau, worst error. The one written to ``--out`` is chosen by its *calibration* fit
   (never by the validation figures it is reported with).
   Every set is timed beside the full MiniLM (the anchor, ``bertnas.hardware.measure.Measured``);
   the corrections are fitted at the calibration set's median anchor speed, and every set is
   reported twice: as measured, and at that speed (the machine's drift since taken out).
4. The written profile stores the validation residuals (as measured); at 0.9 / 0.95 / 0.99 the share of
   held-out subnets measured above the conformal bound (goal at 0.95: <= 5 %).

``--refit TAG`` times nothing: it fits step 3 again (and step 4) to the kernel tables and
subnet timings of the earlier run tagged TAG, whose results file keeps every subnet's timings.

5. With ``--run RUN`` (repeatable; ``--cost-only PROFILE`` skips steps 1-4 and reads a profile
   written by them): what the 0.95 guarantee costs on that search run's non-degenerate
   trials re-priced on the profile, at budgets of 33 / 50 / 75 % of the largest trial
   latency: hypervolume and best metric under B against under B / (1 + q).

Writes ``benchmarks/results/profile_fit_<runtime>.json`` (and the profile to ``--out``,
default ``benchmarks/results/host-cpu-<runtime>-here.yaml``), prints markdown.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import write_results

from bertnas.errors import BertnasError
from bertnas.hardware.conformal import Residuals, conformal_quantile, relative_residuals
from bertnas.hardware.measure import (
    GRIDS,
    Timing,
    anchor_arch,
    anchor_record,
    fit_corrections,
    measure_anchored,
    measure_profile,
)
from bertnas.hardware.predictor import LatencyPredictor
from bertnas.hardware.runtimes import open_runtime
from bertnas.hardware.validate import CALIBRATION_SEED, VALIDATION_SEED, metrics, sample_subnets

HELD_OUT_SEED = 2
VARIANTS = {
    "per layer": {"calls": False, "per_layer": True, "groups": False},
    "per call": {"calls": True, "per_layer": False, "groups": False},
    "both": {"calls": True, "per_layer": True, "groups": False},
    "per group": {"calls": False, "per_layer": True, "groups": True},
    "per group + per call": {"calls": True, "per_layer": True, "groups": True},
}


def results_name(runtime: str, tag: str | None) -> str:
    """The results file's stem: ``profile_fit_<runtime>[_<tag>]``."""
    return f"profile_fit_{runtime}" + (f"_{tag}" if tag else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", default="default", choices=sorted(GRIDS))
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100, help="validation and held-out subnets, each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--run", action="append", default=[], help="search run whose trials price the guarantee")
    parser.add_argument("--cost-only", default=None, help="a profile with residuals: only step 5")
    parser.add_argument(
        "--tag", default="", help="a variant: results profile_fit_<runtime>_TAG.json, profile ...-TAG.yaml"
    )
    parser.add_argument(
        "--refit",
        default=None,
        metavar="TAG",
        help="time nothing: fit the corrections again to the kernel tables and subnet timings of the earlier "
        "run tagged TAG (its results file keeps every subnet's timings)",
    )
    args = parser.parse_args()
    if args.cost_only:
        path = Path(__file__).parent / "results" / f"{results_name(args.runtime, args.tag)}.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        results["hypervolume_cost"] = guarantee_cost(Path(args.cost_only), args.run)
        results["hypervolume_cost_note"] = (
            "the runs' own metrics (their search split), trials re-priced on the profile; budget = a fraction of "
            "the largest trial latency; non-degenerate trials only"
        )
        path.write_text(json.dumps(results, indent=2) + "\n")
        for row in results["hypervolume_cost"]:
            print(row)
        return
    name = args.name or f"host-cpu-{args.runtime}-here"
    suffix = f"-{args.tag}" if args.tag else ""
    out = Path(args.out or Path(__file__).parent / "results" / f"{name}{suffix}.yaml")
    timing = Timing(rounds=args.rounds)

    anchor = anchor_arch()
    if args.refit is not None:
        profile, sets, timed, earlier = _earlier_run(args.runtime, args.refit)
        kernel_seconds, seconds = earlier["kernel_seconds"], earlier["end_to_end_seconds"]
        args.grid, args.rounds = earlier["grid"], earlier.get("rounds", args.rounds)
        args.calibration, args.samples = earlier["subnets"]["calibration"], earlier["subnets"]["validation"]
    else:
        started = time.perf_counter()
        profile = measure_profile(name, args.runtime, args.threads, grid=GRIDS[args.grid](128), timing=timing)
        kernel_seconds = time.perf_counter() - started
        runtime = open_runtime(args.runtime, args.threads, 1, 128)
        sets = {
            "calibration": sample_subnets(args.calibration, CALIBRATION_SEED),
            "validation": sample_subnets(args.samples, VALIDATION_SEED),
            "held_out": sample_subnets(args.samples, HELD_OUT_SEED),
        }
        timed, seconds = {}, {}
        for label, archs in sets.items():
            begun = time.perf_counter()
            timed[label] = measure_anchored(runtime, archs, anchor, timing, desc=f"{label} subnets")
            seconds[label] = round(time.perf_counter() - begun, 1)
    measured = {label: t.ms for label, t in timed.items()}
    # the corrections are fitted at the calibration set's median speed (as `profile measure` does);
    # every set is also reported at that speed: its error with the machine's drift since taken out
    speed = timed["calibration"].anchor_ms
    steady = {label: t.at_speed(speed) for label, t in timed.items()}
    # the machine's own noise: each set's timings against the same subnets at the set's median anchor
    # speed (their paired ratios times it); no profile can predict a timing closer than this
    noise_floor = {label: metrics(t.at_speed(t.anchor_ms), t.ms) for label, t in timed.items()}
    raw = LatencyPredictor(profile)
    terms = {label: raw.terms(archs) for label, archs in sets.items()}
    calibration_groups = raw.group_sums(sets["calibration"])

    results: dict = {
        **({"refit_of": f"{results_name(args.runtime, args.refit)}.json"} if args.refit is not None else {}),
        "runtime": args.runtime,
        "threads": args.threads,
        "grid": args.grid,
        "grid_points": GRIDS[args.grid](128).points(),
        "rounds": args.rounds,
        "kernel_seconds": round(kernel_seconds, 1),
        "end_to_end_seconds": seconds,
        "subnets": {label: len(archs) for label, archs in sets.items()},
        "anchor_ms": {
            label: {
                "median": round(t.anchor_ms, 4),
                "min": round(t.anchor_spread[0], 4),
                "max": round(t.anchor_spread[1], 4),
            }
            for label, t in timed.items()
        },
        "noise_floor": {
            label: {"mape_pct": m["mape_pct"], "within_10pct": m["within_10pct"]} for label, m in noise_floor.items()
        },
        "variants": {},
        # every subnet's time as measured and in anchor units (the sets are re-drawn from their seeds),
        # so another correction model can be fitted to this run without timing anything again
        "timings": {
            label: {
                "seed": seed,
                "ms": [round(float(v), 5) for v in t.ms],
                "anchor_units": [round(float(v), 6) for v in t.relative],
            }
            for (label, t), seed in zip(timed.items(), (CALIBRATION_SEED, VALIDATION_SEED, HELD_OUT_SEED), strict=True)
        },
    }
    fitted = {}
    for variant, options in VARIANTS.items():
        sums, layers, calls = terms["calibration"]
        corrections = fit_corrections(
            sums,
            layers,
            steady["calibration"],
            f"{args.calibration} random unified-space subnets of all-MiniLM-L6-v2, seed {CALIBRATION_SEED}",
            calls if options["calls"] else None,
            per_layer=options["per_layer"],
            groups=calibration_groups if options["groups"] else None,
        )
        predictor = LatencyPredictor(replace(profile, corrections=corrections))
        fitted[variant] = predictor
        calibration_fit = metrics(predictor.predict_many(sets["calibration"]), steady["calibration"])
        results["variants"][variant] = {
            "corrections": corrections.to_yaml(),
            "calibration_mape_pct": calibration_fit["mape_pct"],
            "validation": metrics(predictor.predict_many(sets["validation"]), measured["validation"]),
            "held_out": metrics(predictor.predict_many(sets["held_out"]), measured["held_out"]),
            "validation_drift_corrected": metrics(predictor.predict_many(sets["validation"]), steady["validation"]),
            "held_out_drift_corrected": metrics(predictor.predict_many(sets["held_out"]), steady["held_out"]),
        }
    chosen = min(results["variants"], key=lambda v: results["variants"][v]["calibration_mape_pct"])
    results["chosen_by_calibration_fit"] = chosen
    predictor = fitted[chosen]
    residuals = relative_residuals(predictor.predict_many(sets["validation"]), measured["validation"])
    fresh = relative_residuals(predictor.predict_many(sets["held_out"]), measured["held_out"])
    results["held_out_over_plain_prediction_pct"] = round(float(np.mean(fresh > 0)) * 100, 1)
    results["bounds"] = []
    for confidence in (0.9, 0.95, 0.99):
        try:
            q = conformal_quantile(residuals, confidence)
        except BertnasError as error:  # too few validation subnets for this level
            results["bounds"].append({"confidence": confidence, "error": str(error)})
            continue
        results["bounds"].append(
            {
                "confidence": confidence,
                "quantile": round(q, 4),
                "held_out_violation_pct": round(float(np.mean(fresh > q)) * 100, 1),
                "goal_pct": round((1 - confidence) * 100, 1),
            }
        )
    label = (
        f"{args.samples} random unified-space subnets of all-MiniLM-L6-v2, seed {VALIDATION_SEED}, {args.rounds} rounds"
    )
    evidence = {
        **profile.evidence,
        "anchor": anchor_record(anchor, timed["calibration"]),
        "validation": results["variants"][chosen]["validation"],
    }
    final = replace(
        predictor.profile, residuals=Residuals(tuple(float(v) for v in residuals), label), evidence=evidence
    )
    final.save(out)
    results["profile"] = str(out.relative_to(Path.cwd())) if out.is_relative_to(Path.cwd()) else out.name
    path = write_results(results_name(args.runtime, args.tag), results)
    _print(results)
    print(f"wrote {out} and {path}")


def _earlier_run(runtime: str, tag: str) -> tuple:
    """An earlier run's profile (its kernel tables), subnet sets and timings, as this script made them."""
    from bertnas.hardware import load_profile
    from bertnas.hardware.measure import Measured

    path = Path(__file__).parent / "results" / f"{results_name(runtime, tag)}.json"
    earlier = json.loads(path.read_text())
    if "timings" not in earlier:
        raise SystemExit(f"{path}: keeps no subnet timings (made before they were kept); measure again")
    profile = load_profile(Path.cwd() / earlier["profile"])
    sets, timed = {}, {}
    for label, entry in earlier["timings"].items():
        sets[label] = sample_subnets(len(entry["ms"]), entry["seed"])
        anchor = earlier["anchor_ms"][label]
        timed[label] = Measured(
            ms=np.asarray(entry["ms"]),
            relative=np.asarray(entry["anchor_units"]),
            anchor_ms=anchor["median"],
            anchor_spread=(anchor["min"], anchor["max"]),
        )
    return profile, sets, timed, earlier


def guarantee_cost(profile_path: Path, runs: list[str]) -> list[dict]:
    """Step 5: hypervolume and best metric under B and under B / (1 + q) at 0.95."""
    import os
    import shutil
    import tempfile

    from bertnas.hardware import load_profile

    profile = load_profile(profile_path)
    # with_device loads the profile by name: a directory holding this file alone under that name
    # (results/ holds several profiles named host-cpu-<runtime>-here)
    before = os.environ.get("BERTNAS_PROFILES_DIR")
    with tempfile.TemporaryDirectory(prefix="bertnas-profiles-") as registry:
        shutil.copyfile(profile_path, Path(registry) / f"{profile.name}.yaml")
        os.environ["BERTNAS_PROFILES_DIR"] = registry
        try:
            return _guarantee_rows(profile, runs)
        finally:
            if before is None:
                os.environ.pop("BERTNAS_PROFILES_DIR")
            else:
                os.environ["BERTNAS_PROFILES_DIR"] = before


def _guarantee_rows(profile, runs: list[str]) -> list[dict]:
    """:func:`guarantee_cost`'s rows, with ``profile`` loadable by its name."""
    from bertnas.search import SearchRun, hypervolume
    from bertnas.search.objectives import latency_column
    from bertnas.search.pareto import degenerate_mask

    q = conformal_quantile(profile.residuals.values, 0.95)
    rows = []
    for run_dir in runs:
        run = SearchRun.open(run_dir)
        trials = run.with_device(profile.name)
        trials = trials[(trials["state"] == "COMPLETE") & trials["metric"].notna()]
        trials = trials[~degenerate_mask(trials)]
        metric = trials["metric"].to_numpy(float)
        latency = trials[latency_column(profile.name)].to_numpy(float)
        floor = float((run.baseline or {}).get("score", 0.0))
        for fraction in (0.33, 0.5, 0.75):
            budget = fraction * float(latency.max())
            inside = latency <= budget / (1 + q)
            plain, kept = (
                hypervolume(metric, latency, floor, budget),
                hypervolume(metric[inside], latency[inside], floor, budget),
            )
            rows.append(
                {
                    "run": f"{Path(run_dir).parent.name}/{Path(run_dir).name}",
                    "budget_fraction": fraction,
                    "budget_ms": round(budget, 3),
                    "q_0.95": round(q, 4),
                    "hypervolume": round(plain, 4),
                    "hypervolume_guaranteed": round(kept, 4),
                    "cost_pct": round((1 - kept / plain) * 100, 2) if plain else None,
                    "best_metric": round(float(metric[latency <= budget].max()), 4),
                    "best_metric_guaranteed": round(float(metric[inside].max()), 4) if inside.any() else None,
                }
            )
    return rows


def _print(results: dict) -> None:
    print(
        f"{results['runtime']} ({results['threads']} thread), {results['grid']} grid of {results['grid_points']} "
        f"kernels in {results['kernel_seconds']} s; end to end {results['end_to_end_seconds']} s"
    )
    print(f"anchor (full MiniLM) ms per set: {results['anchor_ms']}")
    print(f"noise floor (timings against the same subnets at their set's median speed): {results['noise_floor']}")
    print(
        "| corrections | calibration fit MAPE | set | MAPE | within +-10 % | Kendall tau | worst | "
        "drift-corrected MAPE | within +-10 % | worst |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for variant, r in results["variants"].items():
        mark = " (chosen)" if variant == results["chosen_by_calibration_fit"] else ""
        for label in ("validation", "held_out"):
            v, d = r[label], r[f"{label}_drift_corrected"]
            print(
                f"| {variant}{mark} | {r['calibration_mape_pct']} % | {label} | {v['mape_pct']} % | "
                f"{v['within_10pct']} % | {v['kendall_tau']} | {v['max_abs_error_pct']} % | {d['mape_pct']} % | "
                f"{d['within_10pct']} % | {d['max_abs_error_pct']} % |"
            )
    print(f"held out over the plain prediction: {results['held_out_over_plain_prediction_pct']} %")
    for b in results["bounds"]:
        if "error" in b:
            print(f"- confidence {b['confidence']}: {b['error']}")
            continue
        print(
            f"- confidence {b['confidence']}: q {b['quantile']:+.4f}, held-out violations "
            f"{b['held_out_violation_pct']} % (goal <= {b['goal_pct']} %)"
        )


if __name__ == "__main__":
    main()
