"""Guaranteed budgets: split-conformal upper bounds on a profile's latency predictions.

A measured profile can store the *relative residuals* ``measured / predicted - 1`` of
its validation subnets (``bertnas profile validate --save-residuals``), subnets drawn
from a seed stream that neither its kernels nor its corrections were fitted on. For a
confidence ``c`` the conformal quantile is the ``ceil((n + 1) * c)``-th smallest of the
``n`` residuals, and the upper bound of a prediction ``p`` is ``p * (1 + q)``: for a new
subnet drawn like the validation ones, the measured latency exceeds the bound with
probability at most ``1 - c`` (split-conformal prediction; the guarantee is marginal
over subnets, and holds on the machine and runtime the residuals were measured on).

A budget ``B`` at confidence ``c`` is therefore met when ``p <= B / (1 + q)``: searches,
fronts and exports compare predictions with that *effective* budget and record both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bertnas.errors import BertnasError


@dataclass(frozen=True)
class Residuals:
    """Relative residuals ``measured / predicted - 1`` of held-out validation subnets."""

    values: tuple[float, ...]
    subnets: str = ""  # what they were measured on (seed stream, backbone, rounds)

    def to_yaml(self) -> dict:
        # Unrounded: a residual is above -1 (measured > 0), but one of -0.999996 (a profile
        # 250,000x off) rounded to 5 decimals is -1.0, which the loader rightly refuses; the
        # profile written by ``validate --save-residuals`` could then not be read back.
        return {"subnets": self.subnets, "relative": [float(v) for v in self.values]}


def relative_residuals(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    """``measured / predicted - 1`` per subnet."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape or not len(p):
        raise BertnasError("residuals need as many predictions as measurements, and at least one")
    if np.any(p <= 0) or np.any(m <= 0) or not (np.all(np.isfinite(p)) and np.all(np.isfinite(m))):
        raise BertnasError("residuals need positive finite predicted and measured latencies")
    return m / p - 1.0


def check_confidence(confidence: float) -> float:
    """A confidence strictly between 0 and 1 (0.95 = at most 5 % of subnets over budget)."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise BertnasError(f"--confidence {confidence!r}: give a probability strictly between 0 and 1, e.g. 0.95")
    return float(confidence)


def minimum_residuals(confidence: float) -> int:
    """How many residuals a conformal bound at ``confidence`` needs: ``ceil((n + 1) c) <= n``."""
    c = check_confidence(confidence)
    return max(1, math.ceil(c / (1.0 - c) - 1e-9))


def conformal_quantile(residuals: Sequence[float], confidence: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) c)``-th smallest residual."""
    c = check_confidence(confidence)
    values = np.sort(np.asarray(residuals, dtype=np.float64))
    n = len(values)
    rank = math.ceil((n + 1) * c - 1e-9)
    if rank > n:
        raise BertnasError(
            f"a {c:g} conformal bound needs at least {minimum_residuals(c)} validation residuals, the profile "
            f"has {n}; run `bertnas profile validate --device NAME --samples {max(100, minimum_residuals(c))} "
            "--save-residuals` on the device, or lower --confidence"
        )
    return float(values[rank - 1])


def upper_bound(predicted: float | np.ndarray, residuals: Sequence[float], confidence: float) -> float | np.ndarray:
    """The conformal upper bound ``predicted * (1 + q)`` of the measured latency."""
    return predicted * (1.0 + conformal_quantile(residuals, confidence))


def effective_budgets(
    budgets_ms: Mapping[str, float], profiles: Mapping[str, object], confidence: float | None
) -> tuple[dict[str, float], dict[str, dict]]:
    """Budgets on the prediction scale: ``B / (1 + q)`` per device, and what each came from.

    ``profiles`` maps each device to its :class:`~bertnas.hardware.profile.HardwareProfile`.
    Without a confidence the budgets are returned unchanged (and no record). A device whose
    profile stores no residuals (a calibrated one, or one never validated) is refused.
    """
    if confidence is None:
        return dict(budgets_ms), {}
    check_confidence(confidence)
    effective, record = {}, {}
    for device, budget in budgets_ms.items():
        profile = profiles[device]
        residuals = getattr(profile, "residuals", None)
        if residuals is None or not residuals.values:
            raise BertnasError(
                f"--confidence {confidence:g}: profile {device!r} ({profile.provenance}) stores no validation "
                f"residuals, so no bound can be guaranteed on it; run `bertnas profile validate --device {device} "
                "--samples 100 --save-residuals` where the device can be measured, or drop --confidence"
            )
        try:
            q = conformal_quantile(residuals.values, confidence)
        except BertnasError as error:
            raise BertnasError(f"profile {device!r}: {error}") from None
        effective[device] = budget / (1.0 + q)
        record[device] = {
            "confidence": confidence,
            "requested_budget_ms": budget,
            "effective_budget_ms": effective[device],
            "quantile": q,
            "residuals": len(residuals.values),
            "residuals_from": residuals.subnets,
        }
    return effective, record


__all__ = [
    "Residuals",
    "check_confidence",
    "conformal_quantile",
    "effective_budgets",
    "minimum_residuals",
    "relative_residuals",
    "upper_bound",
]
