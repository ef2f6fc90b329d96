"""Validating a profile: predicted vs. measured end-to-end latency of random subnets.

``bertnas profile validate --device NAME --samples N`` draws N random configs of the
unified space (for a backbone, default all-MiniLM-L6-v2, with a 2-way classifier),
measures each end to end on the profile's runtime with the profile's threads, batch
and sequence length, the same way the kernels were timed, and reports MAPE, the share
within +-10 % and Kendall's tau. The subnets are timed beside an anchor model (the full
backbone; :class:`~bertnas.hardware.measure.Measured`): where the profile stored its anchor's
time when it was measured, the same figures are also reported at that speed
(``drift_corrected``), which separates the profile's own error from the machine's drift
since (a shared VM runs tens of per cent slower or faster from one day to the next).
Validation subnets come from seed stream ``VALIDATION_SEED``; the subnets a measured
profile's corrections were fitted on come from ``CALIBRATION_SEED``: the two never share a seed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from bertnas.arch import ArchConfig
from bertnas.backbones import backbone_limits
from bertnas.errors import BertnasError
from bertnas.hardware.measure import Measured, Timing, anchor_arch, measure_anchored
from bertnas.hardware.predictor import LatencyPredictor
from bertnas.hardware.profile import HardwareProfile
from bertnas.hardware.runtimes import RUNTIMES, open_runtime
from bertnas.space import load_space

VALIDATION_SEED = 0
CALIBRATION_SEED = 1_000_003
DEFAULT_BACKBONES = ("all-MiniLM-L6-v2",)


def sample_subnets(n: int, seed: int, backbones: Sequence[str] = DEFAULT_BACKBONES, space: str = "unified") -> list:
    """``n`` random configs of ``space`` (2-way classifier), spread evenly over ``backbones``."""

    if n < 1:
        raise BertnasError(f"--samples {n}: need at least one subnet")
    spec = load_space(space)
    bound = [spec.bind(backbone_limits(b), backbone=b) for b in backbones]
    rng = np.random.default_rng(seed)
    return [bound[i % len(bound)].sample(rng).replace(num_labels=2) for i in range(n)]


def metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """MAPE (%), share within +-10 % (%), Kendall's tau, worst error (%)."""
    error = (predicted - measured) / measured
    tau = kendalltau(predicted, measured).statistic if len(measured) > 1 else float("nan")
    return {
        "mape_pct": round(float(np.mean(np.abs(error)) * 100), 2),
        "within_10pct": round(float(np.mean(np.abs(error) <= 0.10) * 100), 1),
        "kendall_tau": round(float(tau), 4),
        "max_abs_error_pct": round(float(np.max(np.abs(error)) * 100), 2),
        "mean_error_pct": round(float(np.mean(error) * 100), 2),
    }


def validate(
    profile: HardwareProfile,
    samples: int,
    *,
    seed: int = VALIDATION_SEED,
    backbones: Sequence[str] = DEFAULT_BACKBONES,
    timing: Timing = Timing(),
    archs: Sequence[ArchConfig] | None = None,
) -> dict[str, Any]:
    """Measure ``samples`` random subnets on the profile's runtime and compare with the predictor."""
    if profile.runtime not in RUNTIMES:
        raise BertnasError(
            f"profile {profile.name!r} is for runtime {profile.runtime!r}, which cannot run on this machine "
            f"(validate measures with {', '.join(RUNTIMES)}); its evidence lists how it was checked"
        )
    cuda = "cuda" in str(profile.host.get("device", "")) or "cuda" in str(profile.host.get("provider", "")).lower()
    archs = list(archs) if archs is not None else sample_subnets(samples, seed, backbones)
    stored = _stored_anchor(profile)
    anchor = stored[0] if stored else anchor_arch(backbones[0])
    started = time.perf_counter()
    with open_runtime(profile.runtime, profile.threads, profile.batch, profile.seq_len, cuda) as runtime:
        timed = measure_anchored(runtime, archs, anchor, timing, desc="validation subnets")
    seconds = time.perf_counter() - started
    measured = timed.ms
    predicted = LatencyPredictor(profile).predict_many(archs)
    drift = drift_report(stored[1] if stored else None, anchor, timed, predicted)
    return {
        "device": profile.name,
        "runtime": profile.runtime,
        "threads": profile.threads,
        "batch": profile.batch,
        "seq_len": profile.seq_len,
        "samples": len(archs),
        "rounds": timing.rounds,
        "seed": seed,
        "backbones": list(backbones),
        **metrics(predicted, measured),
        "measured_ms": {"min": round(float(measured.min()), 3), "max": round(float(measured.max()), 3)},
        "wall_seconds": round(seconds, 1),
        **drift,
        "points": [
            {
                "hash": arch.hash(),
                "predicted_ms": round(float(p), 4),
                "measured_ms": round(float(m), 4),
                "anchor_units": round(float(r), 5),
            }
            for arch, p, m, r in zip(archs, predicted, measured, timed.relative, strict=True)
        ],
    }


def _stored_anchor(profile: HardwareProfile) -> tuple[ArchConfig, float] | None:
    """The profile's anchor model and its time then, or None where it has none (or one this code cannot use)."""
    stored = (profile.evidence or {}).get("anchor")
    if not isinstance(stored, Mapping):
        return None
    ms = stored.get("ms")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not ms > 0:
        return None
    try:
        arch = ArchConfig.from_dict(stored.get("arch"), source=f"{profile.name}: evidence.anchor.arch")
    except (BertnasError, TypeError, ValueError):
        return None
    return (arch, float(ms)) if arch.hash() == stored.get("hash") else None


def drift_report(then: float | None, anchor: ArchConfig, timed: Measured, predicted: np.ndarray) -> dict[str, Any]:
    """The anchor now against ``then`` (its time when the profile was measured), and the metrics at that speed."""
    now = {
        "model": anchor.hash(),
        "ms": round(float(timed.anchor_ms), 5),
        "spread_ms": [round(v, 5) for v in timed.anchor_spread],
    }
    if then is None:
        note = "the profile stores no usable anchor (evidence.anchor: measured before anchors, or malformed)"
        return {"anchor": {"now": now, "profile_ms": None, "note": f"{note}; drift not separated"}}
    return {
        "anchor": {"now": now, "profile_ms": then, "speed_ratio": round(float(timed.anchor_ms) / then, 4)},
        "drift_corrected": metrics(predicted, timed.at_speed(then)),
    }


__all__ = ["CALIBRATION_SEED", "VALIDATION_SEED", "drift_report", "metrics", "sample_subnets", "validate"]
