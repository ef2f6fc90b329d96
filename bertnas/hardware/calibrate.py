"""Calibrating an analytic profile to a few published end-to-end latencies (Pixel 4).

We cannot run anything on a Pixel 4, but MobileBERT's paper publishes four TFLite
latencies of known architectures (``hardware_profiles/reference_models/``). Four
numbers cannot fill a kernel table, so a calibrated profile prices every kernel
family analytically, ``overhead + per_unit * work``, with *shared* physical
coefficients, three of them fitted:

- ``ms_per_mac``: throughput of every matrix product (linear, attention, classifier);
- ``ms_per_heavy_element``: LayerNorm and GELU, which TFLite ran as chains of small
  ops in MobileBERT's unoptimised variant (mean, variance, rsqrt, ...; erf/tanh);
- ``op_overhead_ms``: fixed cost of dispatching any one kernel;

plus one coefficient fixed from first principles rather than fitted:
``ms_per_light_element`` for memory-bound elementwise work (residual add, NoNorm,
ReLU, softmax, gathers, embedding sum): a read-modify-write of fp32 at the device's
memory bandwidth (``LIGHT_ELEMENT_NS``).

The fit minimises squared *relative* error with non-negative coefficients
(``scipy.optimize.nnls`` on rows divided by the published value). With three
parameters for four points the fit is over-determined, so reproducing all four is
evidence, not tautology; what it cannot know is listed in the profile's notes.

**Scaled tables** (a spec with ``tables: PROFILE``): instead of pricing work by a MAC
count, take the *measured* kernel tables of a profile of the same runtime family (the
LiteRT interpreter with XNNPACK on the host, ``host-cpu-litert``) and fit three scales
to the published points: one for the matrix products and memory-bound elementwise
kernels (the device's speed relative to the host), one for LayerNorm and GELU, and a
per-kernel-call dispatch cost. Each kernel's dependence on its shape (skinny products,
few heads, short sequences, token selection) then comes from a measurement of the same
kernels, and the profile prices every length its tables cover.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.hardware.kernels import FAMILIES, MATMUL_FAMILIES, reference_calls, work
from bertnas.hardware.profile import (
    AnalyticCost,
    Corrections,
    HardwareProfile,
    KernelTable,
    load_profile,
    profiles_dir,
)
from bertnas.readers import read_yaml

HEAVY_FAMILIES = ("layernorm", "gelu")
LIGHT_FAMILIES = tuple(f for f in FAMILIES if f not in MATMUL_FAMILIES and f not in HEAVY_FAMILIES)

# Memory-bound elementwise fp32 on a phone CPU: ~12 bytes moved per element (two reads,
# one write) at ~25 GB/s sustained LPDDR4X bandwidth -> ~0.5 ns per element.
LIGHT_ELEMENT_NS = 0.5


@dataclass(frozen=True)
class PublishedPoint:
    """One published end-to-end latency of a known architecture."""

    model: str
    arch: ArchConfig
    latency_ms: float
    source: str
    note: str = ""


def reference_dir() -> Path:
    return profiles_dir() / "reference_models"


def load_points(spec_path: str | Path) -> tuple[dict[str, Any], list[PublishedPoint]]:
    """The calibration spec (device settings + published points); arch files resolve next to it."""
    spec_path = Path(spec_path)
    spec, _, _ = read_yaml(spec_path, "calibration spec")
    if not isinstance(spec, dict):
        raise BertnasError(f"{spec_path}:1: a calibration spec is a mapping with a 'published' list")
    points = []
    for item in spec.get("published", []):
        arch = ArchConfig.load(spec_path.parent / item["arch"])
        latency = float(item["latency_ms"])
        points.append(PublishedPoint(item["model"], arch, latency, item["source"], item.get("note", "")))
    if len(points) < 3:
        raise BertnasError(f"{spec_path}: calibrating three coefficients needs at least 3 published points")
    return spec, points


def features(arch: ArchConfig, seq_len: int) -> np.ndarray:
    """``[MACs, heavy elements, kernel calls, light elements]`` of one config."""
    totals: dict[str, float] = defaultdict(float)
    for family, shape, count in reference_calls(arch, seq_len):
        units = float(work(family, [np.array([x]) for x in shape])[0]) * count
        if family in MATMUL_FAMILIES:
            totals["macs"] += units
        elif family in HEAVY_FAMILIES:
            totals["heavy"] += units
        else:
            totals["light"] += units
        totals["calls"] += count
    return np.array([totals["macs"], totals["heavy"], totals["calls"], totals["light"]])


def fit(points: list[PublishedPoint], seq_len: int) -> dict[str, float]:
    """Fit ``ms_per_mac``, ``ms_per_heavy_element`` and ``op_overhead_ms`` (relative least squares)."""
    x = np.array([features(p.arch, seq_len) for p in points])
    y = np.array([p.latency_ms for p in points])
    light_ms = x[:, 3] * LIGHT_ELEMENT_NS * 1e-6
    rows = x[:, :3] / y[:, None]
    target = (y - light_ms) / y
    scale = rows.max(axis=0)  # condition the columns (MACs ~1e10, calls ~1e3)
    coefficients, _ = nnls(rows / scale, target)
    coefficients = coefficients / scale
    return {
        "ms_per_mac": float(coefficients[0]),
        "ms_per_heavy_element": float(coefficients[1]),
        "op_overhead_ms": float(coefficients[2]),
        "ms_per_light_element": LIGHT_ELEMENT_NS * 1e-6,
    }


def table_features(base: HardwareProfile, arch: ArchConfig, seq_len: int) -> np.ndarray:
    """``[matrix-product + light ms, heavy ms, kernel calls]`` of one config on ``base``'s raw kernels
    (its corrections left out: the published points calibrate the device, not the host)."""
    from bertnas.hardware.predictor import kernel_cost

    totals: dict[str, float] = defaultdict(float)
    for family, shape, count in reference_calls(arch, seq_len):
        ms = float(kernel_cost(base, family, [np.array([x]) for x in shape])[0]) * count
        totals["heavy" if family in HEAVY_FAMILIES else "scaled"] += ms
        totals["calls"] += count
    return np.array([totals["scaled"], totals["heavy"], totals["calls"]])


def fit_tables(points: list[PublishedPoint], base: HardwareProfile, seq_len: int) -> dict[str, float]:
    """Fit ``scale`` (products and light kernels), ``heavy_scale`` (LayerNorm, GELU) and ``per_call_ms``."""
    x = np.array([table_features(base, p.arch, seq_len) for p in points])
    y = np.array([p.latency_ms for p in points])
    rows = x / y[:, None]
    scale = rows.max(axis=0)
    coefficients, _ = nnls(rows / scale, np.ones(len(y)))
    coefficients = coefficients / scale
    return {
        "scale": float(coefficients[0]),
        "heavy_scale": float(coefficients[1]),
        "per_call_ms": float(coefficients[2]),
    }


def scaled_kernels(base: HardwareProfile, coefficients: dict[str, float]) -> dict[str, KernelTable | AnalyticCost]:
    """``base``'s kernels, each multiplied by its family's fitted scale."""
    kernels: dict[str, KernelTable | AnalyticCost] = {}
    for family, entry in base.kernels.items():
        factor = coefficients["heavy_scale" if family in HEAVY_FAMILIES else "scale"]
        if isinstance(entry, KernelTable):
            kernels[family] = KernelTable(entry.axes, entry.ms * factor)
        else:
            kernels[family] = AnalyticCost(entry.overhead_ms * factor, entry.ms_per_unit * factor)
    return kernels


def kernels_from(coefficients: dict[str, float]) -> dict[str, AnalyticCost]:
    overhead = coefficients["op_overhead_ms"]
    kernels: dict[str, AnalyticCost] = {}
    for family in FAMILIES:
        if family in MATMUL_FAMILIES:
            per_unit = coefficients["ms_per_mac"]
        elif family in HEAVY_FAMILIES:
            per_unit = coefficients["ms_per_heavy_element"]
        else:
            per_unit = coefficients["ms_per_light_element"]
        kernels[family] = AnalyticCost(overhead_ms=overhead, ms_per_unit=per_unit)
    return kernels


def calibrate(spec_path: str | Path) -> HardwareProfile:
    """Build the calibrated profile described by ``spec_path`` (see hardware_profiles/reference_models/)."""
    from bertnas.hardware.predictor import LatencyPredictor

    spec, points = load_points(spec_path)
    seq_len = int(spec["seq_len"])
    if spec.get("tables"):
        return _calibrate_tables(spec_path, spec, points, seq_len)
    coefficients = fit(points, seq_len)
    draft = HardwareProfile(
        name=spec["name"],
        device=spec["device"],
        runtime=spec["runtime"],
        threads=int(spec["threads"]),
        batch=int(spec["batch"]),
        seq_len=seq_len,
        precision=spec["precision"],
        provenance="calibrated",
        kernels=kernels_from(coefficients),
        corrections=Corrections(),
    )
    predictor = LatencyPredictor(draft)
    published = []
    for point in points:
        predicted = predictor.predict(point.arch)
        published.append(
            {
                "model": point.model,
                "arch": f"reference_models/{point.model}.json",
                "published_ms": point.latency_ms,
                "predicted_ms": round(predicted, 2),
                "error_pct": round(100 * (predicted - point.latency_ms) / point.latency_ms, 2),
                "source": point.source,
                **({"note": point.note} if point.note else {}),
            }
        )
    evidence = {
        "published": published,
        "fitted_coefficients": {k: float(f"{v:.6g}") for k, v in coefficients.items()},
        "fitted": ["ms_per_mac", "ms_per_heavy_element", "op_overhead_ms"],
        "fixed": {"ms_per_light_element": f"{LIGHT_ELEMENT_NS} ns (memory-bound fp32, not fitted)"},
        "method": "non-negative least squares on relative error; bertnas/hardware/calibrate.py",
        "reproduce": f"bertnas profile calibrate hardware_profiles/reference_models/{Path(spec_path).name}",
    }
    return HardwareProfile(
        name=draft.name,
        device=draft.device,
        runtime=draft.runtime,
        threads=draft.threads,
        batch=draft.batch,
        seq_len=seq_len,
        precision=draft.precision,
        provenance="calibrated",
        kernels=draft.kernels,
        corrections=Corrections(),
        host=spec.get("host") or {},
        date=_dt.date.today().isoformat(),
        evidence=evidence,
        notes=str(spec.get("notes", "")).strip(),
    )


def _published_rows(draft: HardwareProfile, points: list[PublishedPoint], reference: str) -> list[dict[str, Any]]:
    from bertnas.hardware.predictor import LatencyPredictor

    predictor = LatencyPredictor(draft)
    rows = []
    for point in points:
        predicted = predictor.predict(point.arch)
        rows.append(
            {
                "model": point.model,
                "arch": f"{reference}/{point.model}.json",
                "published_ms": point.latency_ms,
                "predicted_ms": round(predicted, 2),
                "error_pct": round(100 * (predicted - point.latency_ms) / point.latency_ms, 2),
                "source": point.source,
                **({"note": point.note} if point.note else {}),
            }
        )
    return rows


def _calibrate_tables(
    spec_path: str | Path, spec: dict[str, Any], points: list[PublishedPoint], seq_len: int
) -> HardwareProfile:
    """A calibrated profile made of a measured profile's tables, scaled to the published points."""
    base = load_profile(str(spec["tables"]))
    if base.provenance != "measured":
        raise BertnasError(
            f"{spec_path}: tables: {base.name} is {base.provenance}; scaled tables need a measured profile"
        )
    if base.seq_len < seq_len:
        raise BertnasError(f"{spec_path}: tables: {base.name} covers {base.seq_len} tokens, the points need {seq_len}")
    coefficients = fit_tables(points, base, seq_len)
    settings = dict(
        name=spec["name"],
        device=spec["device"],
        runtime=spec["runtime"],
        threads=int(spec["threads"]),
        batch=int(spec["batch"]),
        seq_len=seq_len,
        precision=spec["precision"],
        provenance="calibrated",
        kernels=scaled_kernels(base, coefficients),
        corrections=Corrections(per_call_ms=coefficients["per_call_ms"]),
    )
    draft = HardwareProfile(**settings)
    reference = Path(spec_path).parent.name
    evidence = {
        "published": _published_rows(draft, points, reference),
        "tables": {
            "profile": base.name,
            "device": base.device,
            "runtime": base.runtime,
            "threads": base.threads,
            "date": base.date,
            "host": dict(base.host),
            "corrections_used": "none (raw kernel tables)",
        },
        "fitted_coefficients": {k: float(f"{v:.6g}") for k, v in coefficients.items()},
        "fitted": ["scale (matrix products and light kernels)", "heavy_scale (LayerNorm, GELU)", "per_call_ms"],
        "method": "non-negative least squares on relative error over the published points; "
        "bertnas/hardware/calibrate.py",
        "reproduce": f"bertnas profile calibrate hardware_profiles/{reference}/{Path(spec_path).name}",
    }
    return HardwareProfile(
        **settings,
        host=spec.get("host") or {},
        date=_dt.date.today().isoformat(),
        evidence=evidence,
        notes=str(spec.get("notes", "")).strip(),
    )


def points_table(profile: HardwareProfile) -> str:
    """Markdown table of published vs. predicted (for README/docs)."""
    lines = ["| model | published (ms) | predicted (ms) | error |", "|---|---:|---:|---:|"]
    for row in profile.evidence.get("published", []):
        lines.append(f"| {row['model']} | {row['published_ms']} | {row['predicted_ms']} | {row['error_pct']:+.1f} % |")
    return "\n".join(lines)


def dumps_points(profile: HardwareProfile) -> str:
    return json.dumps(profile.evidence.get("published", []), indent=2)


__all__ = ["PublishedPoint", "calibrate", "features", "fit", "load_points", "points_table"]
