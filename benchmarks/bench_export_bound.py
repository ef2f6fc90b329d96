"""Exported models' measured latency against their guaranteed-budget bound (issue 17).

    python benchmarks/bench_export_bound.py RUN [--profile benchmarks/results/host-cpu-onnxruntime-here.yaml]
        [--confidence 0.95] [--fractions 0.2,0.3,0.4,0.5,0.6,0.75,0.9]

The user's path: a team measures its own ``host-cpu-onnxruntime`` profile on its machine
with validation residuals (``bertnas profile measure`` then ``profile validate
--save-residuals``), and ``bertnas export --confidence`` times every exported ONNX file
under that profile's settings beside the profile's conformal upper bound. Here that
profile is ``--profile`` (measured on this machine; the committed host profiles come from
another CPU), installed under the name ``host-cpu-onnxruntime`` in a temporary profile
registry (``BERTNAS_PROFILES_DIR``); for each budget (``--fractions`` of the largest
trial's latency re-priced on that profile) the best subnet whose bound meets it is
exported as ONNX (``--select best-under:B --confidence C``).

Reports per exported model: predicted, bound and measured (median of the export's timed
runs), and the share of models whose measured latency exceeds the bound (the guarantee
says at most 1 - confidence, over subnets drawn like the validation ones; a front is not
such a draw, so this is a check, not a coverage estimate). Writes
``benchmarks/results/export_bound_<parent>_<run>.json`` and prints markdown.
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

import yaml
from common import host, write_results

from bertnas.arch import ArchConfig
from bertnas.hardware import load_predictor
from bertnas.search import SearchRun

REPO = Path(__file__).resolve().parents[1]
NAME = "host-cpu-onnxruntime"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--profile", type=Path, default=REPO / "benchmarks/results/host-cpu-onnxruntime-here.yaml")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--fractions", default="0.2,0.3,0.4,0.5,0.6,0.75,0.9")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        registry = Path(scratch) / "profiles"
        shutil.copytree(REPO / "hardware_profiles", registry)
        data = yaml.safe_load(args.profile.read_text())
        if not data.get("residuals"):
            sys.exit(f"{args.profile}: no residuals; run `bertnas profile validate --save-residuals` first")
        data["name"] = NAME
        (registry / f"{NAME}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        env = {**os.environ, "BERTNAS_PROFILES_DIR": str(registry)}

        os.environ["BERTNAS_PROFILES_DIR"] = str(registry)
        predictor = load_predictor(NAME)
        run = SearchRun.open(args.run)
        done = run.trials[run.trials["state"] == "COMPLETE"]
        largest = max(predictor.predict(ArchConfig.from_json(c)) for c in done["config"])
        manifests = []
        started = time.perf_counter()
        for fraction in (float(f) for f in args.fractions.split(",")):
            budget = fraction * largest
            out = Path(scratch) / f"export-{fraction:g}"
            command = [
                sys.executable, "-m", "bertnas", "export", str(args.run), "--device", NAME,
                "--select", f"best-under:{budget:.4f}ms", "--format", "onnx",
                "--confidence", str(args.confidence), "--out", str(out),
            ]  # fmt: skip
            finished = subprocess.run(command, env=env, capture_output=True, text=True)
            if finished.returncode != 0:
                print(f"budget {budget:.3f} ms: {finished.stderr.strip()[-500:]}", file=sys.stderr)
                continue
            manifests.append((budget, json.loads((out / "manifest.json").read_text())))
        seconds = time.perf_counter() - started

    rows = []
    for budget, manifest in manifests:
        for entry in manifest["models"]:
            measured = entry.get("measured") or {}
            if "conformal_bound_ms" not in measured:
                continue
            rows.append(
                {
                    "budget_ms": budget,
                    "name": entry["name"],
                    "predicted_ms": measured["predicted_ms"],
                    "bound_ms": measured["conformal_bound_ms"],
                    "measured_ms": measured["median_ms"],
                    "over_bound": measured["median_ms"] > measured["conformal_bound_ms"],
                    "over_prediction": measured["median_ms"] > measured["predicted_ms"],
                    "over_budget": measured["median_ms"] > budget,
                }
            )
    results = {
        "run": args.run.name,
        "profile": str(args.profile.relative_to(REPO)) if args.profile.is_relative_to(REPO) else args.profile.name,
        "confidence": args.confidence,
        "host": host(),
        "export_seconds": round(seconds, 1),
        "models": rows,
        "over_bound": sum(r["over_bound"] for r in rows),
        "over_prediction": sum(r["over_prediction"] for r in rows),
        "over_budget": sum(r["over_budget"] for r in rows),
    }
    write_results(f"export_bound_{args.run.parent.name}_{args.run.name}", results)
    print(f"{len(rows)} exported models, confidence {args.confidence}; {seconds:.0f} s")
    print("| budget ms | model | predicted ms | bound ms | measured ms |\n|---:|---|---:|---:|---:|")
    for r in rows:
        flag = " (over the bound)" if r["over_bound"] else ""
        print(
            f"| {r['budget_ms']:.3f} | {r['name']} | {r['predicted_ms']:.3f} | {r['bound_ms']:.3f} "
            f"| {r['measured_ms']:.3f}{flag} |"
        )
    print(
        f"\nover the bound: {results['over_bound']} of {len(rows)}; over the plain prediction: "
        f"{results['over_prediction']}; over the budget: {results['over_budget']}"
    )


if __name__ == "__main__":
    main()
