"""Non-dominated fronts (metric up, latency down) and their 2-D hypervolume.

Fronts are computed from stored trials only: any device whose latency the trials carry
and any budget give a front without a single new evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bertnas.errors import BertnasError
from bertnas.search.objectives import latency_column


def front_mask(metric: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (metric >= and latency <=, one strictly).

    Duplicates of one (metric, latency) point keep only their first occurrence.
    """
    order = np.lexsort((-metric, latency))  # by latency, then best metric first
    mask = np.zeros(len(metric), dtype=bool)
    best = -np.inf
    for i in order:
        if metric[i] > best:
            mask[i] = True
            best = metric[i]
    return mask


def pareto_front(trials: pd.DataFrame, device: str, budget_ms: float | None = None) -> pd.DataFrame:
    """Evaluated trials on the (metric, latency on ``device``) front within ``budget_ms``, fastest first."""
    column = latency_column(device)
    if column not in trials.columns:
        known = sorted(c.removeprefix("latency_ms.") for c in trials.columns if c.startswith("latency_ms."))
        raise BertnasError(
            f"the trials carry no latency for device {device!r} (devices: {', '.join(known) or 'none'}); "
            "rebuild with --device NAME to predict it from the stored configs"
        )
    done = trials[(trials["state"] == "COMPLETE") & trials["metric"].notna()]
    if budget_ms is not None:
        done = done[done[column] <= budget_ms]
    if done.empty:
        return done.copy()
    mask = front_mask(done["metric"].to_numpy(float), done[column].to_numpy(float))
    return done[mask].sort_values(column).reset_index(drop=True)


def hypervolume(metric: np.ndarray, latency: np.ndarray, ref_metric: float, ref_latency: float) -> float:
    """Area dominated by the points and bounded by the reference point (``ref_metric``, ``ref_latency``).

    In units of metric x ms; points below ``ref_metric`` or beyond ``ref_latency`` add nothing.
    """
    keep = (metric > ref_metric) & (latency < ref_latency)
    metric, latency = metric[keep], latency[keep]
    if not len(metric):
        return 0.0
    mask = front_mask(metric, latency)
    order = np.argsort(latency[mask])
    xs, ys = latency[mask][order], metric[mask][order]
    # Staircase: each front point owns the strip from its latency to the next point's.
    edges = np.append(xs[1:], ref_latency)
    return float(np.sum((edges - xs) * (ys - ref_metric)))


def is_flagged(value: Any) -> bool:
    """A stored ``degenerate`` flag; trials from before the flag existed count as not degenerate."""
    return False if value is None or pd.isna(value) else bool(value)


def degenerate_mask(trials: pd.DataFrame) -> pd.Series:
    """True for the rows whose subnet predicts one constant output (all False without the column)."""
    if "degenerate" not in trials.columns:
        return pd.Series(False, index=trials.index, dtype=bool)
    return trials["degenerate"].map(is_flagged).astype(bool)
