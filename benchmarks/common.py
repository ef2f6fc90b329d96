"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def median_seconds(fn: Callable[[], Any], warmup: int = 2, repeats: int = 7) -> float:
    """Median wall time of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def host() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    path = Path(__file__).parent / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"host": host(), "date": time.strftime("%Y-%m-%d"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def supernet_teacher(supernet_dir: str | Path) -> Path:
    """The teacher directory a supernet's run.json names."""
    return Path(json.loads((Path(supernet_dir) / "run.json").read_text())["config"]["teacher"])


def teacher_metrics(supernet_dir: str | Path) -> dict[str, Any]:
    """The metrics.json of the teacher a supernet was trained from (``score``: its dev score)."""
    return json.loads((supernet_teacher(supernet_dir) / "metrics.json").read_text())


def full_pixel4_ms(supernet_dir: str | Path) -> float:
    """The predicted pixel4 latency of the supernet's full model (the unified space at its limits)."""
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    limits = ElasticBert.from_pretrained(supernet_dir).limits
    return float(load_predictor("pixel4").predict(load_space("unified").bind(limits).full()))


def export_arguments(description: str, out_suffix: str = "") -> argparse.ArgumentParser:
    """RUN, --device, --out, --warmup, --repeats: what every front-export benchmark takes.

    ``--out`` defaults to ``exports/<run name>-<device><out_suffix>`` (see :func:`export_front`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="search run directory")
    parser.add_argument("--device", default="pixel4")
    default = f"exports/<run name>-<device>{out_suffix}"
    parser.add_argument("--out", default=None, help=f"export directory (default: {default})")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.set_defaults(out_suffix=out_suffix)
    return parser


def export_front(args: argparse.Namespace, *extra: str) -> tuple[Path, list[str], dict[str, Any], float]:
    """Run the real ``bertnas export RUN --device D --select pareto ... --force`` with ``extra`` flags.

    Returns the export directory, the command (without ``bertnas``), its manifest and its wall
    time in seconds; a failed export ends the benchmark with the command's exit code.
    """
    from bertnas.cli.main import main as bertnas_main

    out = Path(args.out or f"exports/{Path(args.run).name}-{args.device}{args.out_suffix}")
    command = [
        "export", args.run, "--device", args.device, "--select", "pareto", *extra, "--out", str(out), "--force",
        "--warmup", str(args.warmup), "--repeats", str(args.repeats),
    ]  # fmt: skip
    start = time.perf_counter()
    code = bertnas_main(command)
    if code != 0:
        raise SystemExit(code)
    seconds = time.perf_counter() - start
    return out, command, json.loads((out / "manifest.json").read_text()), seconds
