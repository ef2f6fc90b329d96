"""Supernet-with-subnet-active vs. extracted compact model, and token retention's speedup.

    python benchmarks/bench_supernet.py [--batch 32] [--seq-len 128] [--repeats 7]

1. Forward time (no grad, eval) of five MiniLM subnets, from the full model to about
   10 % of its MACs, run (a) inside the supernet on sliced weights and (b) as the
   extracted compact model. Goal: the supernet within 10 % of the extracted model.
2. Token retention alone (0.5 from layer 2 on): measured speedup vs. the MACs ratio.

Writes benchmarks/results/supernet.json and prints markdown tables.
"""

from __future__ import annotations

import argparse

import torch
from common import median_seconds, write_results

from bertnas.arch import ArchConfig, LayerConfig
from bertnas.cost import count_macs
from bertnas.supernet import ElasticBert


def _subnet(full: ArchConfig, hidden: int, heads: int, ffn: int, kept: list[int], retention=None) -> ArchConfig:
    layers = []
    for position, index in enumerate(kept):
        r = 1.0 if retention is None else retention[position]
        layers.append(LayerConfig(index=index, heads=heads, qk_dim=32, v_dim=32, ffn_dim=ffn, retention=r))
    return full.replace(hidden_size=hidden, layers=tuple(layers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    supernet = ElasticBert.from_backbone("all-MiniLM-L6-v2", num_labels=2)
    full = supernet.full_arch()
    configs = {
        "full": full,
        "heads 9, FFN 1152": _subnet(full, 384, 9, 1152, list(range(6))),
        "DynaBERT (0.5, 1.0)": _subnet(full, 384, 6, 768, list(range(6))),
        "h 288, heads 6, FFN 768, 4 layers": _subnet(full, 288, 6, 768, [0, 1, 3, 4]),
        "h 192, heads 3, FFN 384, 3 layers": _subnet(full, 192, 3, 384, [0, 2, 4]),
    }
    input_ids = torch.randint(1000, 29000, (args.batch, args.seq_len))
    attention_mask = torch.ones_like(input_ids)
    full_macs = count_macs(full, args.seq_len)

    def timed(model) -> float:
        with torch.inference_mode():
            return median_seconds(lambda: model(input_ids=input_ids, attention_mask=attention_mask), 2, args.repeats)

    rows = []
    for name, arch in configs.items():
        supernet.set_active_subnet(arch)
        compact = supernet.get_active_subnet()
        t_super, t_compact = timed(supernet), timed(compact)
        rows.append(
            {
                "config": name,
                "arch_hash": arch.hash(),
                "macs_share": count_macs(arch, args.seq_len) / full_macs,
                "supernet_ms": t_super * 1e3,
                "extracted_ms": t_compact * 1e3,
                "overhead": t_super / t_compact - 1,
            }
        )
        print(rows[-1], flush=True)

    # Token retention alone: every layer full width, retention 0.5 from layer 2 on.
    retained = _subnet(full, 384, 12, 1536, list(range(6)), [1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    supernet.set_active_subnet(retained)
    compact_retained = supernet.get_active_subnet()
    supernet.set_active_subnet(full)
    compact_full = supernet.get_active_subnet()
    t_full, t_retained = timed(compact_full), timed(compact_retained)
    supernet.set_active_subnet(retained)
    t_retained_super = timed(supernet)
    retention = {
        "config": "retention 0.5 from layer 2 on (layers 0-1 keep all tokens)",
        "macs_ratio": full_macs / count_macs(retained, args.seq_len),
        "measured_speedup_extracted": t_full / t_retained,
        "measured_speedup_supernet": rows[0]["supernet_ms"] / 1e3 / t_retained_super,
        "full_ms": t_full * 1e3,
        "retained_ms": t_retained * 1e3,
    }
    print(retention)
    path = write_results(
        "supernet",
        {
            "batch": args.batch,
            "seq_len": args.seq_len,
            "repeats": args.repeats,
            "subnets": rows,
            "retention": retention,
        },
    )
    print("\n| subnet | MACs | supernet ms | extracted ms | supernet overhead |\n|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['config']} | {row['macs_share']:.0%} | {row['supernet_ms']:.0f} | {row['extracted_ms']:.0f} "
            f"| {row['overhead']:+.1%} |"
        )
    print(
        f"\nretention 0.5 from layer 2: MACs ratio {retention['macs_ratio']:.2f}x, measured "
        f"{retention['measured_speedup_extracted']:.2f}x (extracted), "
        f"{retention['measured_speedup_supernet']:.2f}x (supernet)\nwrote {path}"
    )


if __name__ == "__main__":
    main()
