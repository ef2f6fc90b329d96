"""fp32 and int8, ONNX and TFLite, for every model of a search run's front.

    python benchmarks/bench_formats.py RUN [--device pixel4] [--out DIR] [--seq-len 128] [--repeats 50]

Runs the real command, ``bertnas export RUN --device DEVICE --select pareto --format
hf,onnx,tflite --quantize int8 --seq-len 128 --out OUT --force`` (every fp32 file checked
against PyTorch, every file's dev metric measured on the file itself, each timed at 1 and 4
threads, batch 1, all tokens real), then tabulates per model: dev metric and 1-thread
latency of fp32 ONNX, int8 ONNX, fp32 TFLite, int8 TFLite, size on disk, the predicted
DEVICE latency, and the export's wall time. Goals (issue 16): every int8 file within 1
point of its fp32 file and at least 1.5x faster on this CPU. Writes
benchmarks/results/formats_<task>_<device>.json. Time it on a quiet machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import export_arguments, export_front, write_results

FILES = ("onnx", "onnx-int8", "tflite", "tflite-int8")


def _one_thread(result: dict) -> float:
    return float(result["latency"]["1"]["median_ms"])


def summarise(manifest: dict, device: str) -> tuple[list[dict], dict]:
    rows, drops, speedups = [], [], []
    for entry in manifest["models"]:
        formats = entry["formats"]
        row = {
            "name": entry["name"],
            "trial": entry["trial"],
            "predicted_ms": entry["predicted_ms"][device]["ms"],
            "pytorch_metric": entry["metric"],
        }
        for name in FILES:
            result = formats.get(name, {})
            if "error" in result or not result:
                row[name] = {"error": result.get("error", "not written")}
                continue
            row[name] = {
                "metric": result["metric"],
                "ms_1_thread": _one_thread(result),
                "ms_4_threads": float(result["latency"]["4"]["median_ms"]) if "4" in result["latency"] else None,
                "mb": result["bytes"] / 1e6,
                "recommended": result["recommended"],
            }
        for quantized, base in (("onnx-int8", "onnx"), ("tflite-int8", "tflite")):
            if "metric" in row.get(quantized, {}) and "metric" in row.get(base, {}):
                drop = (row[base]["metric"] - row[quantized]["metric"]) * 100
                speedup = row[base]["ms_1_thread"] / row[quantized]["ms_1_thread"]
                row[quantized]["drop_points"] = drop
                row[quantized]["speedup"] = speedup
                drops.append(drop)
                speedups.append((quantized, speedup))
        rows.append(row)
    goals = {
        "int8_within_1_point": {
            "goal": "every int8 file within 1 point of its fp32 file",
            "worst_drop_points": max(drops) if drops else None,
            "met": bool(drops) and max(drops) <= 1.0,
        },
        "int8_1_5x_faster": {
            "goal": ">= 1.5x faster than fp32 at 1 thread on this CPU",
            "smallest_onnx": min((s for n, s in speedups if n == "onnx-int8"), default=None),
            "smallest_tflite": min((s for n, s in speedups if n == "tflite-int8"), default=None),
            "met": bool(speedups) and min(s for _, s in speedups) >= 1.5,
        },
    }
    return rows, goals


def table(rows: list[dict], metric: str, device: str) -> str:
    lines = [
        f"| model | predicted {device} | "
        + " | ".join(f"{name} dev {metric} / 1-thread ms / MB" for name in FILES)
        + " | int8 drop (ONNX / TFLite) | int8 speed-up (ONNX / TFLite) |",
        "|---|---:|" + "---:|" * len(FILES) + "---:|---:|",
    ]
    for row in rows:
        cells = []
        for name in FILES:
            cell = row[name]
            cells.append(
                "error" if "error" in cell else f"{cell['metric']:.4f} / {cell['ms_1_thread']:.2f} / {cell['mb']:.1f}"
            )
        drops = [row[q].get("drop_points") for q in ("onnx-int8", "tflite-int8")]
        speeds = [row[q].get("speedup") for q in ("onnx-int8", "tflite-int8")]
        lines.append(
            f"| {row['name']} | {row['predicted_ms']:.2f} ms | "
            + " | ".join(cells)
            + " | "
            + " / ".join("n/a" if d is None else f"{d:+.2f}" for d in drops)
            + " | "
            + " / ".join("n/a" if s is None else f"{s:.2f}x" for s in speeds)
            + " |"
        )
    return "\n".join(lines)


def run() -> int:
    parser = export_arguments(__doc__, out_suffix="-formats")
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    formats = ("--format", "hf,onnx,tflite", "--quantize", "int8", "--seq-len", str(args.seq_len))
    _, command, manifest, seconds = export_front(args, *formats)
    rows, goals = summarise(manifest, args.device)
    markdown = table(rows, manifest["metric"], args.device)
    print(markdown)
    print(json.dumps(goals, indent=2))
    path = write_results(
        f"formats_{manifest['task']}_{args.device}",
        {
            "command": ["python", "benchmarks/bench_formats.py", *sys.argv[1:]],
            "export_command": ["bertnas", *command],
            "run": Path(args.run).name,
            "device": args.device,
            "split": "dev (every metric: the file's own predictions on all of dev)",
            "seq_len": args.seq_len,
            "export_seconds": round(seconds, 1),
            "models": rows,
            "goals": goals,
            "recommended": manifest["recommended"],
            "markdown": markdown,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
