"""Export a search run's Pareto front and tabulate it: metric, size, predicted vs. measured latency.

    python benchmarks/bench_export.py RUN [--device pixel4] [--out exports/sst2-pixel4] [--repeats 50]

Runs ``bertnas export RUN --device DEVICE --select pareto --out OUT --force`` (the real
command: parity, metric re-check, onnxruntime timing on this machine), then reads
``OUT/manifest.json`` and writes benchmarks/results/export_<task>_<device>.json plus a
markdown table: each exported model's dev metric, MACs, params, predicted DEVICE latency,
and predicted vs. measured latency of this machine's onnxruntime profile
(``host-cpu-onnxruntime``). Time it on a quiet machine: the measurement is wall time.
"""

from __future__ import annotations

import sys

from common import export_arguments, export_front, write_results

from bertnas.export.package import MEASURE_PROFILE


def table(manifest: dict, device: str) -> str:
    metric = manifest["metric"]
    lines = [
        f"| model | dev {metric} | MACs (seq {manifest['models'][0]['macs_seq_len']}) | params "
        f"| predicted {device} | predicted {MEASURE_PROFILE} | measured onnxruntime | measured / predicted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in manifest["models"]:
        measured = entry.get("measured") or {}
        predicted_host = measured.get("predicted_ms")
        measured_ms = measured.get("median_ms")
        ratio = f"{measured_ms / predicted_host:.2f}" if measured_ms and predicted_host else "n/a"
        lines.append(
            f"| {entry['name']} | {entry['metric']:.4f} | {entry['macs'] / 1e6:.1f} M | {entry['params'] / 1e6:.2f} M "
            f"| {entry['predicted_ms'][device]['ms']:.2f} ms "
            f"| {f'{predicted_host:.2f} ms' if predicted_host is not None else 'n/a'} "
            f"| {f'{measured_ms:.2f} ms' if measured_ms is not None else 'n/a'} | {ratio} |"
        )
    return "\n".join(lines)


def run() -> int:
    args = export_arguments(__doc__).parse_args()
    out, _, manifest, seconds = export_front(args)
    markdown = table(manifest, args.device)
    print(markdown)
    path = write_results(
        f"export_{manifest['task']}_{args.device}",
        {
            "command": ["python", "benchmarks/bench_export.py", *sys.argv[1:]],
            "run": args.run,
            "device": args.device,
            "export_dir": str(out),
            "export_seconds": round(seconds, 1),
            "models": [
                {
                    key: entry.get(key)
                    for key in (
                        "name",
                        "trial",
                        "arch_hash",
                        "metric_name",
                        "metric",
                        "metric_reported",
                        "metric_onnx",
                        "params",
                        "macs",
                        "macs_seq_len",
                        "predicted_ms",
                        "measured",
                        "parity",
                    )
                }
                for entry in manifest["models"]
            ],
            "markdown": markdown,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
