"""Which unified-space dimension costs accuracy on a trained supernet?

    GLUE_DIR=../shared/data/glue python benchmarks/bench_dimension_ablation.py [--supernet DIR]

Starts from DynaBERT's (m_w=0.5, m_d=1.0) subnet of MiniLM (6 heads, FFN 768 in every
layer) and changes one dimension at a time, everywhere: hidden size, query/key and
value head dims, stacked FFNs, bottleneck, one dropped layer. Dev accuracy by weight
sharing (cached). Writes benchmarks/results/dimension_ablation.json.
"""

from __future__ import annotations

import argparse
import dataclasses

from common import write_results

from bertnas.paths import supernet_dir
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.supernet.backbone import DEFAULT_BACKBONE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--supernet", default=None, help="default: the full-preset SST-2 supernet of the cached teacher"
    )
    parser.add_argument("--glue-dir", default=None)
    args = parser.parse_args()
    if args.supernet is None:
        from bertnas.paths import teacher_dir

        args.supernet = str(supernet_dir(str(teacher_dir(DEFAULT_BACKBONE, "sst2")), "sst2", "unified-full"))
    evaluator = SubnetEvaluator.open(args.supernet, task="sst2", glue_dir=args.glue_dir)
    full = evaluator.supernet.full_arch()
    heads, ffn = full.layers[0].heads // 2, full.layers[0].ffn_dim // 2
    hidden, head_dim = full.hidden_size, full.layers[0].qk_dim

    def layers(**changes):
        return tuple(dataclasses.replace(layer, heads=heads, ffn_dim=ffn, **changes) for layer in full.layers)

    base = full.replace(layers=layers())
    variants = {
        "DynaBERT (0.5, 1.0)": base,
        f"hidden {hidden * 3 // 4}": base.replace(hidden_size=hidden * 3 // 4),
        f"hidden {hidden // 2}": base.replace(hidden_size=hidden // 2),
        f"qk_dim {head_dim // 2}": base.replace(layers=layers(qk_dim=head_dim // 2)),
        f"v_dim {head_dim // 2}": base.replace(layers=layers(v_dim=head_dim // 2)),
        "ffn_stack 2": base.replace(layers=layers(ffn_stack=2)),
        "ffn_stack 4": base.replace(layers=layers(ffn_stack=4)),
        f"bottleneck {hidden // 2}": base.replace(layers=layers(bottleneck=hidden // 2)),
        f"bottleneck {hidden // 4}": base.replace(layers=layers(bottleneck=hidden // 4)),
        "layer 3 dropped": base.replace(layers=tuple(layer for layer in layers() if layer.index != 3)),
    }
    rows = []
    reference = None
    print("| change (from DynaBERT 0.5, 1.0) | dev acc | vs base | GMACs |\n|---|---:|---:|---:|")
    for name, arch in variants.items():
        result = evaluator.evaluate(arch)
        reference = result.metric if reference is None else reference
        rows.append({"change": name, "score": result.metric, "macs": result.macs, "arch": arch.to_dict()})
        delta = (result.metric - reference) * 100
        print(f"| {name} | {result.metric:.2%} | {delta:+.1f} | {result.macs / 1e9:.2f} |")
    write_results("dimension_ablation", {"supernet": args.supernet, "rows": rows})


if __name__ == "__main__":
    main()
