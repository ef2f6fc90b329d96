"""Profiles for devices this machine cannot reach: export the kernels, import the timings.

``bertnas profile kernels --export DIR`` writes::

    DIR/manifest.json        format, grid, batch, seq_len and one entry per kernel file
    DIR/kernels/*.onnx       every kernel family at every grid point (random weights)
    DIR/baseline.onnx        an Identity graph: the harness's per-call cost
    DIR/benchmark.py         standalone script (numpy + onnxruntime only) that times them

On the target, ``python benchmark.py --threads 4 --out results.csv`` writes
``family,shape,median_ms`` rows (baseline already subtracted); convert the ONNX files
to the target's runtime first if it is not onnxruntime and keep the same CSV.
``bertnas profile import results.csv --name NAME`` turns that CSV into an
``imported`` profile (no end-to-end corrections: the kernel sum is the prediction).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bertnas.atomic import atomic_directory
from bertnas.errors import BertnasError
from bertnas.hardware.kernels import FAMILIES
from bertnas.hardware.measure import Grid
from bertnas.hardware.onnx_graph import GraphBuilder, kernel_model
from bertnas.hardware.profile import HardwareProfile, KernelTable

MANIFEST_FORMAT = "bertnas-kernel-set"

BENCHMARK_SCRIPT = '''"""Time the bertnas kernel set on this device (written by `bertnas profile kernels --export`).

Needs only numpy and onnxruntime. Usage: python benchmark.py --threads 4 --out results.csv
Writes family,shape,median_ms rows; import them with `bertnas profile import results.csv --name NAME`.
"""

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds(sess, rng):
    result = {}
    for value in sess.get_inputs():
        shape = value.shape
        if value.type == "tensor(int64)":
            if value.name == "index":
                chosen = np.sort(rng.permutation(max(shape[-1] * 2, 2))[: shape[-1]])
                result[value.name] = np.broadcast_to(chosen, shape).astype(np.int64)
            elif value.name == "attention_mask":
                result[value.name] = np.ones(shape, dtype=np.int64)
            elif value.name == "input_ids":
                result[value.name] = rng.integers(1, 30000, size=shape, dtype=np.int64)
            else:
                result[value.name] = np.zeros(shape, dtype=np.int64)
        else:
            result[value.name] = rng.standard_normal(shape).astype(np.float32)
    return result


def median_ms(sess, inputs, warmup, repeats, min_seconds):
    for _ in range(warmup):
        sess.run(None, inputs)
    samples, started = [], time.perf_counter()
    while len(samples) < 200:
        t0 = time.perf_counter()
        sess.run(None, inputs)
        samples.append(time.perf_counter() - t0)
        if len(samples) >= repeats and time.perf_counter() - started >= min_seconds:
            break
    return 1000.0 * statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results.csv")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.03)
    args = parser.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    base_sess = session(HERE / manifest["baseline"], args.threads)
    base_inputs = feeds(base_sess, rng)
    baseline = min(median_ms(base_sess, base_inputs, 3, 50, 0.05) for _ in range(3))
    rows = []
    for i, entry in enumerate(manifest["kernels"]):
        sess = session(HERE / entry["file"], args.threads)
        ms = median_ms(sess, feeds(sess, rng), args.warmup, args.repeats, args.min_seconds)
        rows.append((entry["family"], "x".join(str(s) for s in entry["shape"]), round(max(ms - baseline, 0.0), 6)))
        if i % 50 == 0:
            print(f"{i + 1}/{len(manifest['kernels'])}", flush=True)
    with open(args.out, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["family", "shape", "median_ms"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out} (baseline {baseline:.4f} ms subtracted)")


if __name__ == "__main__":
    main()
'''


def export_kernels(
    directory: str | Path, grid: Grid, *, batch: int = 1, seq_len: int = 128, force: bool = False
) -> Path:
    """Write the kernel set (ONNX files, manifest, benchmark script) to ``directory`` atomically."""
    entries = []
    with atomic_directory(directory, force=force) as scratch:
        (scratch / "kernels").mkdir()
        with tqdm(total=grid.points(), desc="exporting kernels", unit="file") as bar:
            for family in FAMILIES:
                axes = grid.axes(family)
                for index in np.ndindex(*[len(axis) for axis in axes]):
                    shape = [int(axis[i]) for axis, i in zip(axes, index, strict=True)]
                    name = f"kernels/{family}__{'x'.join(map(str, shape))}.onnx"
                    (scratch / name).write_bytes(kernel_model(family, tuple(shape), batch, seq_len).SerializeToString())
                    entries.append({"family": family, "shape": shape, "file": name})
                    bar.update()
        builder = GraphBuilder()
        baseline = builder.model([builder.op("Identity", [builder.input("x", (1,))])])
        (scratch / "baseline.onnx").write_bytes(baseline.SerializeToString())
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "batch": batch,
            "seq_len": seq_len,
            "date": _dt.date.today().isoformat(),
            "families": {family: {"axes": list(FAMILIES[family])} for family in FAMILIES},
            "baseline": "baseline.onnx",
            "kernels": entries,
        }
        (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (scratch / "benchmark.py").write_text(BENCHMARK_SCRIPT)
    return Path(directory)


def import_results(
    csv_path: str | Path,
    *,
    name: str,
    device: str | None = None,
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch: int = 1,
    seq_len: int | None = None,
    precision: str = "fp32",
) -> HardwareProfile:
    """Build an ``imported`` profile from ``family,shape,median_ms`` rows covering full grids."""
    csv_path = Path(csv_path)
    try:
        text = csv_path.read_text()
    except OSError as error:
        raise BertnasError(f"cannot read results {csv_path}: {error.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"family", "shape", "median_ms"} <= set(reader.fieldnames):
        raise BertnasError(f"{csv_path}:1: expected the header family,shape,median_ms (as benchmark.py writes)")
    points: dict[str, dict[tuple[int, ...], float]] = defaultdict(dict)
    for line, row in enumerate(reader, start=2):
        family = row["family"]
        if family not in FAMILIES:
            raise BertnasError(f"{csv_path}:{line}: unknown kernel family {family!r} (known: {', '.join(FAMILIES)})")
        try:
            shape = tuple(int(x) for x in row["shape"].split("x"))
            ms = float(row["median_ms"])
        except (AttributeError, ValueError):
            raise BertnasError(
                f"{csv_path}:{line}: shape must look like 128x768x3072 and median_ms be a number"
            ) from None
        if len(shape) != len(FAMILIES[family]):
            raise BertnasError(
                f"{csv_path}:{line}: {family} has axes {', '.join(FAMILIES[family])}, got shape {row['shape']}"
            )
        if not np.isfinite(ms) or ms < 0:
            raise BertnasError(f"{csv_path}:{line}: median_ms={row['median_ms']} must be a finite, non-negative number")
        points[family][shape] = ms
    missing = [family for family in FAMILIES if family not in points]
    if missing:
        raise BertnasError(f"{csv_path}: no rows for kernel family {missing[0]!r}; run the whole exported kernel set")
    tables = {}
    for family, values in points.items():
        axes = [sorted({shape[d] for shape in values}) for d in range(len(FAMILIES[family]))]
        ms = np.zeros([len(axis) for axis in axes])
        for index in np.ndindex(*ms.shape):
            shape = tuple(axis[i] for axis, i in zip(axes, index, strict=True))
            if shape not in values:
                raise BertnasError(
                    f"{csv_path}: {family} at shape {'x'.join(map(str, shape))} is missing; a table needs its full grid"
                )
            ms[index] = values[shape]
        tables[family] = KernelTable(axes=tuple(np.asarray(a, dtype=np.float64) for a in axes), ms=ms)
    max_tokens = int(max(tables["linear"].axes[0]))
    seq_len = seq_len or max_tokens
    if seq_len > max_tokens:
        raise BertnasError(f"--seq-len {seq_len} exceeds the largest token count measured ({max_tokens})")
    return HardwareProfile(
        name=name,
        device=device or name,
        runtime=runtime,
        threads=threads,
        batch=batch,
        seq_len=seq_len,
        precision=precision,
        provenance="imported",
        kernels=tables,
        date=_dt.date.today().isoformat(),
        evidence={"results": csv_path.name, "rows": sum(len(v) for v in points.values())},
        notes="Imported kernel timings from the target; no end-to-end corrections (the kernel sum is the prediction).",
    )


__all__ = ["BENCHMARK_SCRIPT", "export_kernels", "import_results"]
