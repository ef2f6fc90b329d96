"""Exported models timed on real sentences against their ``--seq-len task:*`` price (issue 17).

    python benchmarks/bench_real_lengths.py [--task sst2] [--subnets 20] [--sentences 200]
        [--statistic mean] [--profile hardware_profiles/host-cpu-onnxruntime.yaml ...] [--seed 3]

A ``--seq-len task:mean`` search prices each subnet over the task's token-length histogram;
``bertnas export`` then times each ONNX file on real dev sentences, one at a time at its
own length (batch 1, no padding, retention inside the graph), and sets the statistic of
those times beside the price (``manifest.json``: ``measured.real_sentences``). This script
runs that export path (:func:`bertnas.export.package.export_models`, the code the CLI
calls after selecting) on ``--subnets`` random unified-space subnets of the MiniLM
backbone (weights straight from the backbone: latency does not depend on training), with
the task's train-split length histogram standing in for the search split's (the search
split is carved from train), and reports, per measurement profile:

- **the predictor on real lengths**: the statistic of the per-sentence prices of the timed
  sentences against the statistic of their measured times: as measured; at one speed of the
  machine (each call paired with a call of one anchor shared by every model, see
  ``OnnxModel.time_sentences``); and at the profile's calibration speed (the anchor's ratio
  to the profile's own anchor, the same model at 128 tokens, timed paired once, times that
  anchor's time in the profile); MAPE, share within +-10 %, Kendall tau, worst;
- **the search's price**: over the train-split histogram, against the same measurement
  (what a user's budget was checked with, on other sentences of the same task);
- **one length is not the distribution**: the ONNX file timed at the statistic's one
  representative length (what ``export`` timed before) against the real-sentence figure,
  and the 128-token price against it.

Writes ``benchmarks/results/real_lengths_<task>_<statistic>.json``; prints markdown. Time it
alone: the figures are wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_results
from scipy.stats import kendalltau

from bertnas.data import load_task, tokenize_split
from bertnas.export.onnx import ONNX_NAME, OnnxModel
from bertnas.export.package import MEASURE_PROFILE, Candidate, ExportOptions, _Reference, export_models
from bertnas.hardware import load_predictor
from bertnas.hardware.lengths import LengthDistribution, LengthPricedPredictor, reduce_prices
from bertnas.hardware.measure import Timing, time_paired
from bertnas.hardware.validate import _stored_anchor
from bertnas.space import load_space
from bertnas.supernet import ElasticBert

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "all-MiniLM-L6-v2"


def errors(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Relative errors of ``predicted`` against ``measured``: MAPE, share within +-10 %, tau, worst, mean."""
    relative = (predicted - measured) / measured
    return {
        "mape": float(np.mean(np.abs(relative)) * 100),
        "within_10": float(np.mean(np.abs(relative) <= 0.10) * 100),
        "kendall_tau": float(kendalltau(measured, predicted).statistic) if len(measured) > 1 else float("nan"),
        "worst": float(np.max(np.abs(relative)) * 100),
        "mean_error": float(np.mean(relative) * 100),
    }


def predictor_anchor(predictor: object, arch_hash: str) -> float | None:
    """The profile's anchor time (ms, at its calibration) when its anchor is the export's reference model."""
    stored = _stored_anchor(predictor.profile)  # what profile validate reads, checked the same way
    return stored[1] if stored is not None and stored[0].hash() == arch_hash else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--subnets", type=int, default=20)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--statistic", default="mean", choices=["mean", "p50", "p90"])
    parser.add_argument(
        "--profile", type=Path, nargs="+", default=[REPO / "hardware_profiles/host-cpu-onnxruntime.yaml"]
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    started = time.perf_counter()
    supernet = ElasticBert.from_backbone(BACKBONE, num_labels=2)
    space = load_space("unified").bind(supernet.limits, backbone=BACKBONE)
    supernet = ElasticBert.from_backbone(
        BACKBONE, num_labels=2, max_ffn_stack=space.max_ffn_stack, max_bottleneck=space.max_bottleneck
    )
    train = tokenize_split(load_task(args.task, "train", args.glue_dir), supernet.tokenizer)
    histogram = LengthDistribution.of(
        [len(train[index]["input_ids"]) for index in range(len(train))],
        f"{args.task} train (the search split's source)",
    )
    archs = space.sample_many(args.subnets, args.seed)
    candidates = [Candidate(name=f"subnet-{index:02d}", arch=arch, metric=None) for index, arch in enumerate(archs)]
    profiles = {path.stem: load_predictor(path) for path in args.profile}
    first = next(iter(profiles.values()))
    options = ExportOptions(
        task=args.task,
        formats=("onnx",),
        glue_dir=args.glue_dir,
        warmup=5,
        repeats=20,
        threads=int(first.profile.threads),
        timing_seq_len=histogram.length(args.statistic),
        length_statistic=args.statistic,
        length_distribution=histogram.to_dict(),
        real_sentences=args.sentences,
    )
    with tempfile.TemporaryDirectory() as scratch:
        supernet_dir = Path(scratch) / "supernet"
        supernet.save_pretrained(supernet_dir)
        export_started = time.perf_counter()
        manifest = export_models(supernet_dir, candidates, Path(scratch) / "export", options, {MEASURE_PROFILE: first})
        export_seconds = time.perf_counter() - export_started
        # each exported file at the profiles' own length too: is it the graph or the length?
        at_profile_length = {
            entry["name"]: OnnxModel(
                Path(scratch) / "export" / entry["name"] / ONNX_NAME, threads=options.threads
            ).time_ms(int(first.profile.seq_len), warmup=5, repeats=20)["median_ms"]
            for entry in manifest["models"]
        }
        # The export's anchor (the backbone's full shape at the representative length) against
        # the profiles' anchor (the same model at their 128 tokens): one ratio, paired, converts
        # the export's steady times to each profile's calibration speed.
        reference = _Reference.build(supernet, Path(scratch) / "reference", options.threads, options.timing_seq_len)
        at_profile = reference.runner._random_feed(int(first.profile.seq_len), 1)
        at_export = reference.runner._random_feed(options.timing_seq_len, 1)
        session = reference.runner.session
        reference_ratio = time_paired(
            lambda: session.run(None, at_profile), lambda: session.run(None, at_export), Timing(rounds=1)
        ).ratio

    rows = []
    for entry, arch in zip(manifest["models"], archs, strict=True):
        real = entry["measured"]["real_sentences"]
        lengths = np.asarray(real["per_sentence"]["lengths"])
        ratios = np.asarray(real["per_sentence"]["anchor_ratio"])  # each sentence's, to the shared anchor
        row = {
            "name": entry["name"],
            "arch_hash": entry["arch_hash"],
            "measured_ms": real["measured_ms"],
            "steady_ms": real["steady_ms"],
            "one_length_ms": entry["measured"]["median_ms"],
            "one_length": entry["measured"]["seq_len"],
            "profile_length_ms": at_profile_length[entry["name"]],
            "per_sentence": real["per_sentence"],
            "anchor_ratio": float(reduce_prices(ratios[:, None], np.ones(len(lengths)), args.statistic)[0]),
            "predicted": {},
        }
        timed = LengthDistribution.of(lengths.tolist(), "dev sentences timed")
        for name, predictor in profiles.items():
            row["predicted"][name] = {
                "these_sentences_ms": LengthPricedPredictor(predictor, timed, args.statistic).predict(arch),
                "search_split_ms": LengthPricedPredictor(predictor, histogram, args.statistic).predict(arch),
                "at_128_ms": float(predictor.predict(arch, int(predictor.profile.seq_len))),
            }
        rows.append(row)

    measured = np.asarray([row["measured_ms"] for row in rows])
    steady = np.asarray([row["steady_ms"] for row in rows])
    one_length = np.asarray([row["one_length_ms"] for row in rows])
    profile_length = np.asarray([row["profile_length_ms"] for row in rows])
    summary = {
        "one_length_timing_vs_real_sentences": errors(steady, one_length),
    }
    for name in profiles:
        these = np.asarray([row["predicted"][name]["these_sentences_ms"] for row in rows])
        searched = np.asarray([row["predicted"][name]["search_split_ms"] for row in rows])
        at_128 = np.asarray([row["predicted"][name]["at_128_ms"] for row in rows])
        anchor = predictor_anchor(profiles[name], reference.arch_hash)
        at_calibration = (
            None if anchor is None else np.asarray([row["anchor_ratio"] for row in rows]) * anchor / reference_ratio
        )
        summary[name] = {
            "these_sentences_vs_calibration_speed": None if at_calibration is None else errors(at_calibration, these),
            "these_sentences_vs_steady": errors(steady, these),
            "these_sentences_vs_measured": errors(measured, these),
            "search_split_vs_steady": errors(steady, searched),
            "price_at_128_over_real": float(np.mean(at_128 / steady)),
            "at_128_vs_exported_file_at_128": errors(profile_length, at_128),
        }
    dev_lengths = np.asarray(rows[0]["per_sentence"]["lengths"])
    payload = {
        "task": args.task,
        "statistic": f"task:{args.statistic}",
        "subnets": args.subnets,
        "seed": args.seed,
        "sentences": len(dev_lengths),
        "sentence_split": "dev",
        "dev_mean_length": float(dev_lengths.mean()),
        "search_split_stand_in": histogram.source,
        "search_split_mean_length": float(np.average(histogram.lengths, weights=histogram.counts)),
        "representative_length": options.timing_seq_len,
        "threads": options.threads,
        "profiles": {
            name: str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
            for name, path in zip(profiles, args.profile, strict=True)
        },
        "reference_ratio_profile_length_over_representative": reference_ratio,
        "export_seconds": export_seconds,
        "seconds": time.perf_counter() - started,
        "summary": summary,
        "rows": rows,
    }
    suffix = f"_{args.tag}" if args.tag else ""
    path = write_results(f"real_lengths_{args.task}_{args.statistic}{suffix}", payload)
    print(f"wrote {path}")
    print(
        f"\n{args.subnets} random unified {BACKBONE} subnets, {len(dev_lengths)} {args.task} dev sentences "
        f"(mean {dev_lengths.mean():.1f} tokens), task:{args.statistic}, {options.threads} thread(s); "
        f"export {export_seconds:.0f} s\n"
    )
    print("| prediction | against | MAPE | within +-10 % | tau | worst | mean error |")
    print("|---|---|---:|---:|---:|---:|---:|")

    def line(label: str, against: str, result: dict[str, float]) -> None:
        print(
            f"| {label} | {against} | {result['mape']:.2f} % | {result['within_10']:.0f} % | "
            f"{result['kendall_tau']:.2f} | {result['worst']:.1f} % | {result['mean_error']:+.2f} % |"
        )

    for name in profiles:
        if summary[name]["these_sentences_vs_calibration_speed"] is not None:
            line(
                f"{name}, over the timed sentences' lengths",
                "at the profile's calibration speed",
                summary[name]["these_sentences_vs_calibration_speed"],
            )
        line(
            f"{name}, over the timed sentences' lengths",
            "at one machine speed",
            summary[name]["these_sentences_vs_steady"],
        )
        line(f"{name}, over the timed sentences' lengths", "as measured", summary[name]["these_sentences_vs_measured"])
        line(f"{name}, over the train-split histogram", "at one machine speed", summary[name]["search_split_vs_steady"])
        line(
            f"{name}, at 128 tokens",
            "the exported file at 128 tokens, as measured",
            summary[name]["at_128_vs_exported_file_at_128"],
        )
        print(
            f"<!-- {name}: 128-token price / real-sentence {args.statistic}: "
            f"{summary[name]['price_at_128_over_real']:.2f} x -->"
        )
    line(
        f"the ONNX file timed at {options.timing_seq_len} tokens",
        "at one machine speed",
        summary["one_length_timing_vs_real_sentences"],
    )


if __name__ == "__main__":
    main()
