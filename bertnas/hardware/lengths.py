"""Budgets over real sentence lengths: ``--seq-len task:mean|p50|p90``.

A profile prices a config at one token count; a deployed model runs each sentence at its
own length (dynamic shapes), token retention included (each layer keeps its share of
*that* sentence's tokens). :class:`LengthPricedPredictor` prices a config at every
distinct length of the task's split (the search split: the data the search scores on)
and reduces the per-length prices over the length histogram:

- ``task:mean``: the expected latency, ``sum_L count_L * price(L) / sum_L count_L``;
- ``task:p50`` / ``task:p90``: the weighted 50th / 90th percentile of the per-sentence
  prices (a budget then holds for half / nine in ten of the task's sentences).

A calibrated profile prices only its published length, so it refuses; a measured profile
prices 1..its seq_len.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError

STATISTICS = ("mean", "p50", "p90")
_PATTERN = re.compile(r"^task:(mean|p50|p90)$")


def parse_seq_len(value: Any) -> int | str | None:
    """``--seq-len``: a positive token count, or ``task:mean``, ``task:p50`` or ``task:p90``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BertnasError(f"--seq-len {value!r}: give a token count (128) or task:mean, task:p50, task:p90")
    if isinstance(value, int):
        if value < 1:
            raise BertnasError(f"--seq-len {value} must be at least 1")
        return value
    text = str(value).strip()
    if text.isdigit():
        return parse_seq_len(int(text))
    if _PATTERN.match(text):
        return text
    raise BertnasError(
        f"--seq-len {value!r}: give a token count (128) or task:mean, task:p50, task:p90 "
        "(price each subnet at the task's real sentence lengths)"
    )


def is_task_statistic(seq_len: Any) -> bool:
    return isinstance(seq_len, str) and bool(_PATTERN.match(seq_len))


@dataclass(frozen=True)
class LengthDistribution:
    """A histogram of token counts: distinct ``lengths`` (increasing) and their ``counts``."""

    lengths: tuple[int, ...]
    counts: tuple[int, ...]
    source: str = ""  # which split of which task

    @classmethod
    def of(cls, lengths: Sequence[int], source: str = "") -> LengthDistribution:
        values = np.asarray(list(lengths), dtype=np.int64)
        if not len(values) or values.min() < 1:
            raise BertnasError(f"no token lengths to price at ({source or 'empty split'})")
        distinct, counts = np.unique(values, return_counts=True)
        return cls(tuple(int(x) for x in distinct), tuple(int(c) for c in counts), source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LengthDistribution:
        return cls(
            tuple(int(x) for x in data["lengths"]), tuple(int(c) for c in data["counts"]), data.get("source", "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {"lengths": list(self.lengths), "counts": list(self.counts), "source": self.source}

    def length(self, statistic: str) -> int:
        """The representative token count of ``statistic`` (for timing an export at it)."""
        lengths, weights = np.asarray(self.lengths, float), np.asarray(self.counts, float)
        if statistic == "mean":
            return max(1, round(float(np.average(lengths, weights=weights))))
        return int(_weighted_percentile(lengths[:, None], weights, _level(statistic))[0])


def _level(statistic: str) -> float:
    return {"p50": 0.5, "p90": 0.9}[statistic]


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, level: float) -> np.ndarray:
    """Per column of ``values`` (rows: lengths), the smallest value whose weight share reaches ``level``."""
    order = np.argsort(values, axis=0, kind="stable")
    cumulative = np.cumsum(weights[order], axis=0) / weights.sum()
    first = np.argmax(cumulative >= level - 1e-12, axis=0)
    return np.take_along_axis(values, order, axis=0)[first, np.arange(values.shape[1])]


def reduce_prices(values: np.ndarray, weights: np.ndarray, statistic: str) -> np.ndarray:
    """``statistic`` of each column of ``values`` (rows: sentences or lengths, weighted by ``weights``).

    One definition for what a ``task:*`` budget means, used by the predictor (rows: the task's
    distinct lengths) and by ``export`` on per-sentence timings (rows: sentences, weight 1).
    """
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if statistic == "mean":
        return weights @ values / weights.sum()
    return _weighted_percentile(values, weights, _level(statistic))


class LengthPricedPredictor:
    """A latency predictor pricing each config over a :class:`LengthDistribution`."""

    def __init__(self, predictor: Any, distribution: LengthDistribution, statistic: str) -> None:
        if statistic not in STATISTICS:
            raise BertnasError(f"length statistic {statistic!r}: choose one of {', '.join(STATISTICS)}")
        profile = predictor.profile
        served = profile.served_seq_lens()
        outside = [length for length in distribution.lengths if length not in served]
        if outside:
            if len(served) == 1:
                raise BertnasError(
                    f"--seq-len task:{statistic}: profile {profile.name!r} is calibrated at {profile.seq_len} tokens "
                    f"only and cannot price the task's lengths "
                    f"({distribution.lengths[0]}..{distribution.lengths[-1]}); "
                    "use a measured profile (bertnas devices) or a fixed --seq-len"
                )
            raise BertnasError(
                f"--seq-len task:{statistic}: the task has sentences of up to {distribution.lengths[-1]} tokens, "
                f"profile {profile.name!r} covers 1..{profile.seq_len}; measure one with --seq-len "
                f"{distribution.lengths[-1]} or lower the task's --max-length"
            )
        self.predictor, self.distribution, self.statistic = predictor, distribution, statistic
        self.profile = profile
        self._weights = np.asarray(distribution.counts, dtype=np.float64)
        self._cache: dict[str, float] = {}  # a search prices a config when screening and again when told

    def per_length(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Prices, one row per distinct length, one column per config."""
        return np.stack([self.predictor.predict_many(list(archs), length) for length in self.distribution.lengths])

    def _reduce(self, prices: np.ndarray) -> np.ndarray:
        return reduce_prices(prices, self._weights, self.statistic)

    def predict_many(self, archs: Sequence[ArchConfig], seq_len: int | None = None) -> np.ndarray:
        if seq_len is not None:
            raise BertnasError("a length-distribution predictor prices the task's lengths, not one seq_len")
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        return self._reduce(self.per_length(archs))

    def predict(self, arch: ArchConfig, seq_len: int | None = None) -> float:
        if seq_len is not None:
            raise BertnasError("a length-distribution predictor prices the task's lengths, not one seq_len")
        key = arch.hash()
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            prices = np.array([[self.predictor.predict(arch, length)] for length in self.distribution.lengths])
            cached = self._cache[key] = float(self._reduce(prices)[0])
        return cached


def priced(predictor: Any, seq_len: Any, distribution: Mapping[str, Any] | LengthDistribution | None) -> tuple:
    """``(predictor, seq_len)`` to price with: a length-distribution predictor for ``task:*``."""
    if not is_task_statistic(seq_len):
        return predictor, seq_len
    if distribution is None:
        raise BertnasError(f"--seq-len {seq_len}: no length distribution was recorded for this run")
    if not isinstance(distribution, LengthDistribution):
        distribution = LengthDistribution.from_dict(distribution)
    return LengthPricedPredictor(predictor, distribution, seq_len.removeprefix("task:")), None


__all__ = [
    "STATISTICS",
    "LengthDistribution",
    "LengthPricedPredictor",
    "is_task_statistic",
    "parse_seq_len",
    "priced",
    "reduce_prices",
]
