"""pixel4 from a real TFLite cost surface (issue 17): the scaled-LiteRT-table profile against the
analytic (MAC-count) one it replaces.

    python benchmarks/bench_pixel4_tables.py [--samples 100] [--seed 7]

1. **Fit**: both profiles are rebuilt from their calibration specs
   (``hardware_profiles/reference_models/pixel4.yaml``, ``pixel4-analytic.yaml``) and their
   predictions of the four published Pixel 4 latencies (MobileBERT paper) are listed.
2. **Held-out ranking**: ``--samples`` random unified-space subnets of each backbone
   (all-MiniLM-L6-v2 and BERT-base, seed ``--seed``), priced by both: Kendall tau and
   Spearman rho between the two rankings, the share of subnet pairs whose order flips, how
   many of the 10 fastest agree, and the ratio new/old. No phone timing exists here, so this
   measures how much the ranking the search acts on changes, not which profile is right.
3. **Where they differ**: the price of single-dimension changes of the full model (retention,
   heads, FFN width, hidden size, bottleneck) under each profile, relative to the full model,
   and the priced cost of 32-token against 128-token inputs (the analytic profile cannot
   price other lengths).

Nothing is timed, so the figures do not depend on the machine. Writes
``benchmarks/results/pixel4_tables.json`` and prints markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import write_results
from scipy.stats import kendalltau, spearmanr

from bertnas.arch import LayerConfig
from bertnas.backbones import backbone_limits
from bertnas.hardware.calibrate import calibrate
from bertnas.hardware.predictor import LatencyPredictor
from bertnas.space import load_space

REFERENCE = Path(__file__).resolve().parents[1] / "hardware_profiles" / "reference_models"
BACKBONES = ("all-MiniLM-L6-v2", "bert-base-uncased")


def _with(arch, **changes):
    return arch.replace(layers=tuple(LayerConfig(**{**layer.__dict__, **changes}) for layer in arch.layers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    new = calibrate(REFERENCE / "pixel4.yaml")
    old = calibrate(REFERENCE / "pixel4-analytic.yaml")
    results: dict = {
        "samples": args.samples,
        "seed": args.seed,
        "fit": {
            "pixel4 (scaled LiteRT tables)": new.evidence["published"],
            "pixel4-analytic (MAC count)": old.evidence["published"],
        },
        "coefficients": {
            "pixel4": new.evidence["fitted_coefficients"],
            "pixel4-analytic": old.evidence["fitted_coefficients"],
        },
        "ranking": {},
        "dimensions": {},
    }
    p_new, p_old = LatencyPredictor(new), LatencyPredictor(old)
    for backbone in BACKBONES:
        space = load_space("unified").bind(backbone_limits(backbone), backbone=backbone)
        archs = space.sample_many(args.samples, seed=args.seed)
        a, b = p_new.predict_many(archs), p_old.predict_many(archs)
        tau, rho = kendalltau(a, b)[0], spearmanr(a, b)[0]
        i, j = np.triu_indices(len(archs), 1)
        flips = float(np.mean(np.sign(a[i] - a[j]) != np.sign(b[i] - b[j])))
        top = len(set(np.argsort(a)[:10]) & set(np.argsort(b)[:10]))
        ratio = a / b
        results["ranking"][backbone] = {
            "kendall_tau": round(float(tau), 4),
            "spearman_rho": round(float(rho), 4),
            "pairs_flipped": round(flips, 4),
            "fastest_10_shared": top,
            "ratio_new_over_old": {
                "median": round(float(np.median(ratio)), 3),
                "min": round(float(ratio.min()), 3),
                "max": round(float(ratio.max()), 3),
            },
            "ms_new": {"min": round(float(a.min()), 2), "max": round(float(a.max()), 2)},
            "ms_old": {"min": round(float(b.min()), 2), "max": round(float(b.max()), 2)},
        }
        full = space.full()
        base_new, base_old = p_new.predict(full), p_old.predict(full)
        layer = full.layers[0]
        changes = {
            "retention 0.5 in every layer": _with(full, retention=0.5),
            "half the heads": _with(full, heads=max(1, layer.heads // 2)),
            "half the FFN": _with(full, ffn_dim=layer.ffn_dim // 2),
            "half the qk dim": _with(full, qk_dim=max(1, layer.qk_dim // 2)),
            "half the hidden size": full.replace(hidden_size=full.hidden_size // 2),
            "bottleneck of a quarter of the hidden size": _with(full, bottleneck=full.hidden_size // 4),
            "half the layers": full.replace(layers=full.layers[: len(full.layers) // 2]),
        }
        rows = {}
        for label, arch in changes.items():
            try:
                arch.validate()
            except Exception as error:  # a change the space's rules refuse (e.g. a bottleneck rule)
                rows[label] = {"skipped": str(error)}
                continue
            rows[label] = {
                "pixel4": round(p_new.predict(arch) / base_new, 3),
                "pixel4-analytic": round(p_old.predict(arch) / base_old, 3),
            }
        rows["32 tokens instead of 128"] = {
            "pixel4": round(p_new.predict(full, 32) / base_new, 3),
            "pixel4-analytic": None,
        }
        results["dimensions"][backbone] = {
            "full_ms": {"pixel4": round(base_new, 2), "pixel4-analytic": round(base_old, 2)},
            "relative": rows,
        }

    write_results("pixel4_tables", results)
    print("| published model | published ms | pixel4 (scaled tables) | pixel4-analytic |\n|---|---:|---:|---:|")
    for row_new, row_old in zip(new.evidence["published"], old.evidence["published"], strict=True):
        print(
            f"| {row_new['model']} | {row_new['published_ms']} "
            f"| {row_new['predicted_ms']} ({row_new['error_pct']:+.1f} %) "
            f"| {row_old['predicted_ms']} ({row_old['error_pct']:+.1f} %) |"
        )
    print("\n| backbone | Kendall tau | Spearman rho | pairs flipped | fastest 10 shared | new/old median (min-max) |")
    print("|---|---:|---:|---:|---:|---:|")
    for backbone, r in results["ranking"].items():
        q = r["ratio_new_over_old"]
        print(
            f"| {backbone} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} | {100 * r['pairs_flipped']:.1f} % "
            f"| {r['fastest_10_shared']} | {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) |"
        )
    for backbone, d in results["dimensions"].items():
        print(
            f"\n{backbone}: full model {d['full_ms']['pixel4']} ms (pixel4) / "
            f"{d['full_ms']['pixel4-analytic']} ms (analytic)"
        )
        print("| change of the full model | pixel4 | pixel4-analytic |\n|---|---:|---:|")
        for label, row in d["relative"].items():
            if "skipped" in row:
                continue
            old_value = "-" if row["pixel4-analytic"] is None else f"{row['pixel4-analytic']:.3f}"
            print(f"| {label} | {row['pixel4']:.3f} | {old_value} |")


if __name__ == "__main__":
    main()
