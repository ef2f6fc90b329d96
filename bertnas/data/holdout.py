"""The search split: a fixed, seeded, stratified slice of a task's train split held out of training.

Teacher fine-tuning and supernet training never see it; the search scores subnets on it, so
the dev split is left to report on (selection and report on different data). The slice is a
pure function of the train split's labels and a :class:`SearchSplitSpec`, so it is never
stored: a checkpoint records the spec, the train split's fingerprint and a hash of the
chosen example ids (``record``), and every reader recomputes the slice and checks that hash.

Example ids are positions in the train split as loaded (before any ``--train-subset``,
which cuts what remains after the slice is taken out).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertnas.errors import BertnasError

#: The split name evaluation uses for the held-out slice.
SEARCH = "search"
#: Regression labels are stratified by this many quantile bins.
_REGRESSION_BINS = 10


@dataclass(frozen=True)
class SearchSplitSpec:
    """How large the held-out slice is, and its seed.

    ``fraction`` of the train split, clamped to ``[minimum, maximum]`` examples, and never more
    than a quarter of the train split (a tiny task keeps three quarters to train on). ``count``
    instead asks for an exact number of examples (again at most a quarter). ``fraction=0`` and
    no count: no slice (``none``); a search then has to evaluate on ``--split dev``.
    """

    fraction: float = 0.05
    minimum: int = 500
    maximum: int = 5000
    count: int | None = None
    seed: int = 0

    @classmethod
    def parse(cls, text: str | SearchSplitSpec | None) -> SearchSplitSpec:
        """``5%``, ``0.05`` (a fraction, with the default bounds), ``800`` (exactly that many) or ``none``."""
        if isinstance(text, SearchSplitSpec):
            return text
        if text is None:
            return cls()
        value = str(text).strip().lower()
        if value in ("none", "off", "0", "0%"):
            return cls(fraction=0.0)
        hint = "give a share of train (5% or 0.05), a number of examples (800) or none"
        percent = re.fullmatch(r"(\d+(?:\.\d+)?)%", value)
        try:
            if percent:
                fraction = float(percent.group(1)) / 100
            elif re.fullmatch(r"\d+", value):
                return cls(count=int(value))
            else:
                fraction = float(value)
        except ValueError:
            raise BertnasError(f"--search-split {text!r} is not a size; {hint}") from None
        if not 0.0 < fraction < 1.0 or fraction != fraction:
            raise BertnasError(f"--search-split {text!r} must be a share between 0 and 1 (0.05 or 5%); {hint}")
        if fraction > 0.5:
            raise BertnasError(f"--search-split {text!r} holds out more than half of train; {hint}")
        return cls(fraction=fraction)

    @property
    def enabled(self) -> bool:
        return bool(self.count) or self.fraction > 0

    def size(self, train_examples: int) -> int:
        """How many of ``train_examples`` the slice holds."""
        if not self.enabled:
            return 0
        share = min(self.maximum, max(self.minimum, int(round(self.fraction * train_examples))))
        wanted = self.count or share
        return max(0, min(wanted, train_examples // 4))

    def to_string(self) -> str:
        if not self.enabled:
            return "none"
        return str(self.count) if self.count else f"{self.fraction:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "count": self.count,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSplitSpec:
        return cls(**{key: data[key] for key in ("fraction", "minimum", "maximum", "count", "seed") if key in data})


def holdout_indices(labels: Any, size: int, seed: int, is_regression: bool = False) -> np.ndarray:
    """``size`` example positions, stratified by label (regression: by label decile), sorted.

    Each class gets its share of ``size`` by largest remainder; within a class the examples
    are the first of one seeded permutation of the whole split, so the choice is stable.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if size <= 0 or total == 0:
        return np.zeros(0, dtype=np.int64)
    if is_regression:
        edges = np.quantile(labels.astype(float), np.linspace(0, 1, _REGRESSION_BINS + 1)[1:-1])
        strata = np.searchsorted(edges, labels.astype(float), side="right")
    else:
        strata = labels
    values, counts = np.unique(strata, return_counts=True)
    exact = counts * size / total
    share = np.floor(exact).astype(int)
    for position in np.argsort(-(exact - share), kind="stable")[: size - int(share.sum())]:
        share[position] += 1
    order = np.random.default_rng(seed).permutation(total)
    chosen = []
    for value, take in zip(values, share, strict=True):
        members = order[strata[order] == value]
        chosen.append(members[:take])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def ids_sha256(indices: np.ndarray) -> str:
    """A short content hash of a set of example positions."""
    return hashlib.sha256(",".join(str(int(i)) for i in np.sort(indices)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Holdout:
    """A computed slice: its positions in the train split and the record a checkpoint keeps."""

    indices: np.ndarray
    record: dict[str, Any]

    @property
    def rest(self) -> np.ndarray:
        """The train positions left to train on, in order."""
        mask = np.ones(self.record["of"], dtype=bool)
        mask[self.indices] = False
        return np.flatnonzero(mask)


def make_holdout(labels: Any, spec: SearchSplitSpec, train_fingerprint: str, is_regression: bool = False) -> Holdout:
    """The slice of a train split with ``labels`` (fingerprint ``train_fingerprint``) under ``spec``."""
    total = len(labels)
    indices = holdout_indices(labels, spec.size(total), spec.seed, is_regression)
    record = {
        "spec": spec.to_dict(),
        "examples": int(len(indices)),
        "of": int(total),
        "train_fingerprint": train_fingerprint,
        "ids_sha256": ids_sha256(indices),
    }
    return Holdout(indices, record)


def check_record(record: dict[str, Any], holdout: Holdout, where: str) -> None:
    """Refuse a recomputed slice that is not the one ``record`` describes (the train data changed)."""
    if (
        record.get("train_fingerprint") != holdout.record["train_fingerprint"]
        or record.get("ids_sha256") != holdout.record["ids_sha256"]
    ):
        raise BertnasError(
            f"{where} held out a search split of other train data (train fingerprint "
            f"{record.get('train_fingerprint')}, now {holdout.record['train_fingerprint']}); the task's train "
            "split changed since training: retrain on this data, or pass --split dev"
        )
