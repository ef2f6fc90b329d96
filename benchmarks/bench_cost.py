"""Speed of the analytic cost model: calls per second.

    python benchmarks/bench_cost.py [--configs 2000] [--seq-len 128]

Search loops price every candidate with :func:`bertnas.cost.count_macs` /
:func:`bertnas.cost.count_params`; this measures how many configs per second that is,
on random configs over the unified MiniLM space (6 layers, stacked FFNs, bottlenecks,
retention). Writes benchmarks/results/cost.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import write_results

from bertnas.arch import ArchConfig, ArchLimits, LayerConfig
from bertnas.cost import cost, count_macs, count_macs_batch, count_params

MINILM = ArchLimits(
    hidden_size=384, num_layers=6, num_heads=12, head_dim=32, ffn_dim=1536, max_ffn_stack=4, max_bottleneck=384
)


def _random_arch(rng: np.random.Generator) -> ArchConfig:
    depth = int(rng.integers(1, MINILM.num_layers + 1))
    kept = sorted(rng.choice(MINILM.num_layers, size=depth, replace=False).tolist())
    retention = sorted((float(rng.uniform(0.2, 1.0)) for _ in kept), reverse=True)
    hidden = int(rng.integers(64, MINILM.hidden_size + 1))
    layers = tuple(
        LayerConfig(
            index=index,
            heads=int(rng.integers(1, 13)),
            qk_dim=int(rng.integers(8, 33)),
            v_dim=int(rng.integers(8, 33)),
            ffn_dim=int(rng.integers(64, 1537)),
            ffn_stack=int(rng.integers(1, 5)),
            bottleneck=int(rng.integers(32, hidden + 1)) if rng.random() < 0.3 else None,
            retention=round(r, 4),
        )
        for index, r in zip(kept, retention, strict=True)
    )
    return ArchConfig(hidden_size=hidden, layers=layers, num_labels=2)


def _rate(fn, archs: list[ArchConfig], repeats: int) -> float:
    """Best-of-``repeats`` calls per second of ``fn`` over ``archs``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for arch in archs:
            fn(arch)
        best = min(best, time.perf_counter() - start)
    return len(archs) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=2000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    archs = [_random_arch(rng) for _ in range(args.configs)]
    n = args.seq_len
    rates = {
        "count_macs": _rate(lambda arch: count_macs(arch, n), archs, args.repeats),
        "count_params": _rate(count_params, archs, args.repeats),
        "cost (breakdown)": _rate(lambda arch: cost(arch, n), archs, args.repeats),
    }
    start = time.perf_counter()
    count_macs_batch(archs, n)
    rates["count_macs_batch"] = len(archs) / (time.perf_counter() - start)
    for name, rate in rates.items():
        print(f"{name:>18}: {rate:12,.0f} calls/s  ({1e6 / rate:6.2f} us/call)")
    path = write_results("cost", {"configs": args.configs, "seq_len": n, "calls_per_second": rates})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
