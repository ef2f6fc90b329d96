"""Latency budgets as written on the command line or in a study file: ``60ms``, ``0.06s``, ``60 ms``."""

from __future__ import annotations

import math
import re

from bertnas.errors import BertnasError

_UNITS_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|µs|ms|s)\s*$")


def parse_budget(text: str | float | int) -> float:
    """A budget in milliseconds; the unit is required (a bare number is refused with a hint)."""
    if isinstance(text, bool):
        raise BertnasError(f"latency budget {text!r} is not a duration; write it with a unit, e.g. 60ms or 0.06s")
    if isinstance(text, (int, float)):
        raise BertnasError(f"latency budget {text} has no unit; write {text}ms or {text}s")
    raw = str(text)
    match = _PATTERN.match(raw)
    if match is None:
        if re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*", raw):
            raise BertnasError(f"latency budget {raw.strip()!r} has no unit; write {raw.strip()}ms or {raw.strip()}s")
        raise BertnasError(f"latency budget {raw!r} is not a duration; write it like 60ms, 60 ms or 0.06s")
    value = float(match.group(1)) * _UNITS_MS[match.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise BertnasError(f"latency budget {raw!r} must be positive")
    return value


def format_ms(value: float) -> str:
    """``60ms``, ``12.5ms``: how budgets and latencies are printed."""
    return f"{value:.3g}ms" if value < 100 else f"{value:.0f}ms"


def pair_budgets(devices: list[str], budgets: list[str]) -> dict[str, float]:
    """Match budgets to devices: one budget for all devices, or one per device in order."""
    if not devices:
        raise BertnasError("no device given; pass --device NAME (see `bertnas devices`)")
    if len(set(devices)) != len(devices):
        raise BertnasError(f"device listed twice in {devices}; give each --device once")
    if not budgets:
        raise BertnasError("no latency budget given; pass --budget, e.g. --budget 60ms (one, or one per --device)")
    parsed = [parse_budget(b) for b in budgets]
    if len(parsed) == 1:
        parsed = parsed * len(devices)
    if len(parsed) != len(devices):
        raise BertnasError(
            f"{len(budgets)} budgets for {len(devices)} devices; give one --budget for all, or one per --device"
        )
    return dict(zip(devices, parsed, strict=True))
