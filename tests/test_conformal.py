"""Guaranteed budgets: split-conformal bounds from a profile's validation residuals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from bertnas.errors import BertnasError
from bertnas.hardware import load_profile
from bertnas.hardware.conformal import (
    Residuals,
    conformal_quantile,
    effective_budgets,
    minimum_residuals,
    relative_residuals,
    upper_bound,
)
from bertnas.hardware.profile import parse_profile

REPO = Path(__file__).resolve().parents[1]
DEVICE_A = "pixel4"


def test_bound_is_monotone_in_the_confidence():
    residuals = np.random.default_rng(0).normal(0.0, 0.05, 200)
    levels = [0.5, 0.6, 0.8, 0.9, 0.95, 0.99]
    quantiles = [conformal_quantile(residuals, c) for c in levels]
    assert quantiles == sorted(quantiles) and quantiles[0] < quantiles[-1]
    bounds = [upper_bound(10.0, residuals, c) for c in levels]
    assert bounds == sorted(bounds) and bounds[-1] > 10.0


def test_bound_covers_calibration_and_fresh_residuals_at_the_stated_rate():
    """Split-conformal: over calibration sets, P(fresh residual <= q) is ceil((n+1)c)/(n+1) >= c."""
    rng = np.random.default_rng(1)
    n, confidence, repeats = 99, 0.95, 400
    coverage = []
    for _ in range(repeats):
        calibration = rng.lognormal(0.0, 0.3, n) - 1.0  # skewed, like real over-runs
        q = conformal_quantile(calibration, confidence)
        assert np.mean(calibration <= q) >= confidence  # the calibration residuals themselves
        fresh = rng.lognormal(0.0, 0.3, 500) - 1.0
        coverage.append(np.mean(fresh <= q))
    # exact expectation 95/100 = 0.95; a rank one lower (e.g. floor(n c)) would give 0.94
    assert np.mean(coverage) == pytest.approx(0.95, abs=0.004)
    violation = 1.0 - np.mean(coverage)
    assert violation <= 1.0 - confidence + 0.004


def test_too_few_residuals_and_bad_confidence_are_refused():
    assert minimum_residuals(0.95) == 19 and minimum_residuals(0.5) == 1 and minimum_residuals(0.99) == 99
    conformal_quantile(np.zeros(19), 0.95)
    with pytest.raises(BertnasError, match="needs at least 19 validation residuals, the profile has 18"):
        conformal_quantile(np.zeros(18), 0.95)
    for bad in (0.0, 1.0, 1.5, -0.1, True):
        with pytest.raises(BertnasError, match="strictly between 0 and 1"):
            conformal_quantile(np.zeros(100), bad)
    with pytest.raises(BertnasError, match="positive finite"):
        relative_residuals([1.0, 0.0], [1.0, 1.0])
    assert relative_residuals([2.0, 4.0], [3.0, 4.0]).tolist() == [0.5, 0.0]


def _profile_with(residuals: list[float] | None, tmp_path, name: str = "guaranteed"):
    data = yaml.safe_load((REPO / "hardware_profiles" / f"{DEVICE_A}.yaml").read_text())
    data["name"] = name
    if residuals is not None:
        data["residuals"] = {"subnets": "synthetic", "relative": residuals}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_effective_budget_is_budget_over_one_plus_q(tmp_path):
    residuals = [0.01 * i for i in range(40)]  # q at 0.95: the 39th smallest = 0.38
    profile = load_profile(_profile_with(residuals, tmp_path))
    assert profile.residuals.values[5] == pytest.approx(0.05)
    budgets, record = effective_budgets({"guaranteed": 60.0}, {"guaranteed": profile}, 0.95)
    assert budgets["guaranteed"] == pytest.approx(60.0 / 1.38)
    assert record["guaranteed"]["quantile"] == pytest.approx(0.38) and record["guaranteed"]["residuals"] == 40
    assert effective_budgets({"guaranteed": 60.0}, {"guaranteed": profile}, None) == ({"guaranteed": 60.0}, {})
    # the profile round-trips its residuals
    again = parse_profile(profile.to_yaml(), "again.yaml")
    assert again.residuals.subnets == "synthetic"
    assert again.residuals.values == pytest.approx(profile.residuals.values, abs=1e-5)
    assert isinstance(again.residuals, Residuals)
    # a profile without residuals cannot give a guarantee, and says how to get one
    plain = load_profile(DEVICE_A)
    with pytest.raises(BertnasError, match="stores no validation residuals.*--save-residuals"):
        effective_budgets({DEVICE_A: 60.0}, {DEVICE_A: plain}, 0.95)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"relative": []}, "list of 1 to"),
        ({"relative": [0.1, "x"]}, "not a relative residual"),
        ({"relative": [0.1, -1.5]}, "not a relative residual"),
        ({"values": [0.1]}, "must be"),
        ({"relative": [0.1], "extra": 1}, "unknown field"),
    ],
)
def test_malformed_residuals_name_file_line_and_field(tmp_path, entry, message):
    path = _profile_with(None, tmp_path)
    data = yaml.safe_load(path.read_text())
    data["residuals"] = entry
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(BertnasError, match=rf"guaranteed.yaml:\d+: residuals.*{message}"):
        load_profile(path)
