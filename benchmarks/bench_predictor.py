"""Speed of the latency predictor: one config, and 100k configs as a batch.

    python benchmarks/bench_predictor.py [--device pixel4 --device host-cpu-onnxruntime] [--configs 100000]

Configs are random samples of the unified space on BERT-base (12 layers, every
dimension). Goals (issue #4): one config < 50 us, 100k configs < 1 s as a batch.
Single configs go through ``predict`` (plain Python): ``first_config_ms`` is a fresh
predictor's first call (tables prepared), ``single_cold_us`` the mean over the next
2,000 configs, each new (its layers never priced), ``single_new_after_2000_us`` 2,000
further new configs (kernel calls priced before are reused, as in a running search),
``single_warm_us`` a repeat of configs already priced (per-layer costs cached).
Writes benchmarks/results/predictor.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import median_seconds, write_results

from bertnas.backbones import backbone_limits
from bertnas.hardware import load_predictor
from bertnas.space import load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", action="append", help="profile (repeatable)")
    parser.add_argument("--configs", type=int, default=100_000)
    parser.add_argument("--backbone", default="bert-base-uncased")
    args = parser.parse_args()

    space = load_space("unified").bind(backbone_limits(args.backbone), args.backbone)
    started = time.perf_counter()
    archs = space.sample_many(args.configs, seed=0)
    sampling = time.perf_counter() - started
    layers = float(np.mean([a.num_layers for a in archs]))

    results = []
    for device in args.device or ["pixel4", "host-cpu-onnxruntime"]:
        predictor = load_predictor(device)
        batch_seconds = median_seconds(lambda d=device: load_predictor(d).predict_many(archs), warmup=1, repeats=5)

        cold = load_predictor(device)
        t0 = time.perf_counter()
        cold.predict(archs[0])
        first_config = time.perf_counter() - t0
        sample, later = archs[1:2001], archs[2001:4001]
        t0 = time.perf_counter()
        for arch in sample:
            cold.predict(arch)
        single_cold = (time.perf_counter() - t0) / len(sample)
        t0 = time.perf_counter()
        for arch in sample:
            cold.predict(arch)
        single_warm = (time.perf_counter() - t0) / len(sample)
        t0 = time.perf_counter()
        for arch in later:
            cold.predict(arch)
        single_new = (time.perf_counter() - t0) / len(later)
        assert np.allclose(predictor.predict_many(sample), [cold.predict(a) for a in sample], rtol=1e-9)

        payload = {
            "device": device,
            "backbone": args.backbone,
            "configs": args.configs,
            "mean_layers": round(layers, 2),
            "batch_seconds": round(batch_seconds, 4),
            "batch_us_per_config": round(batch_seconds / args.configs * 1e6, 3),
            "first_config_ms": round(first_config * 1e3, 2),
            "single_cold_us": round(single_cold * 1e6, 1),
            "single_new_after_2000_us": round(single_new * 1e6, 1),
            "single_warm_us": round(single_warm * 1e6, 1),
            "sampling_seconds_not_counted": round(sampling, 2),
            "goals": {"single_us": 50, "batch_100k_seconds": 1.0},
        }
        results.append(payload)
        print(payload)
    payload = {"results": results}
    path = write_results("predictor", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
