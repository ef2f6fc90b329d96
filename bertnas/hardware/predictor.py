"""Latency predictor: per-layer composition of a hardware profile.

A config's latency is the sum, over its kernel calls (:mod:`bertnas.hardware.kernels`),
of each call's cost at its own shape, every layer at its *own* token count under
retention, then the profile's end-to-end corrections::

    latency = scale * (embedding + sum over layers of sum of their kernels + head)
              + per_layer_ms * layers + per_call_ms * kernel calls + per_model_ms

Nothing is averaged over layers (HAT's layer-averaged predictor is what this avoids).
A measured table is interpolated multilinearly on its grid (exact for costs that are
products of per-axis linear terms, e.g. a linear layer's ``m * k * n``), extrapolated
linearly past its last points; an analytic entry is ``overhead + per_unit * work``.

Speed: :meth:`LatencyPredictor.predict_many` prices a whole batch with column arrays
(100k configs well under a second); :meth:`LatencyPredictor.predict` prices one config
in plain Python (no numpy per call), reusing cached per-layer and per-kernel-call costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertnas.arch import ArchConfig, kept_tokens
from bertnas.errors import BertnasError
from bertnas.hardware.kernels import (
    FAMILIES,
    GROUP_OF,
    KERNEL_GROUPS,
    LayerTable,
    call_counts,
    config_calls,
    head_reference_calls,
    layer_calls,
    layer_reference_calls,
    work,
)
from bertnas.hardware.profile import AnalyticCost, HardwareProfile, KernelTable, load_profile

_CACHE_LIMIT = 200_000


def interpolate(table: KernelTable, shape: Sequence[np.ndarray]) -> np.ndarray:
    """Multilinear interpolation of ``table`` at the points ``shape`` (one column per axis)."""
    columns = [np.asarray(x, dtype=np.float64) for x in shape]
    size = len(columns[0]) if columns else 0
    lower, frac = [], []
    for axis, x in zip(table.axes, columns, strict=True):
        if len(axis) == 1:
            lower.append(np.zeros(size, dtype=np.int64))
            frac.append(None)
            continue
        i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, len(axis) - 2)
        lower.append(i)
        frac.append((x - axis[i]) / (axis[i + 1] - axis[i]))
    result = np.zeros(size, dtype=np.float64)
    dims = len(columns)
    for corner in range(1 << dims):
        weight = np.ones(size, dtype=np.float64)
        index = []
        skip = False
        for d in range(dims):
            upper = (corner >> d) & 1
            if frac[d] is None:
                if upper:
                    skip = True
                    break
                index.append(lower[d])
                continue
            weight = weight * (frac[d] if upper else 1.0 - frac[d])
            index.append(lower[d] + upper)
        if not skip:
            result += weight * table.ms[tuple(index)]
    return result


def kernel_cost(profile: HardwareProfile, family: str, shape: Sequence[np.ndarray]) -> np.ndarray:
    """Milliseconds of one call of ``family`` at each shape (columns)."""
    entry = profile.kernels[family]
    if isinstance(entry, AnalyticCost):
        return entry.overhead_ms + entry.ms_per_unit * work(family, shape)
    return np.maximum(interpolate(entry, shape), 0.0)


class _FastTable:
    """A kernel table prepared for fast batch lookups (same values as :func:`interpolate`).

    Along a ``tokens`` axis the table is resampled once at every integer token count
    1..seq_len, so token counts index it exactly; the other axes are interpolated with
    flat ``take`` lookups. Multilinear interpolation is separable, so resampling one axis
    first gives the same values.
    """

    def __init__(self, table: KernelTable, token_axis: bool, seq_len: int) -> None:
        ms, axes = table.ms, list(table.axes)
        self.exact = token_axis and len(axes[0]) > 1
        if self.exact:
            tokens = np.arange(1, seq_len + 1, dtype=np.float64)
            i = np.clip(np.searchsorted(axes[0], tokens, side="right") - 1, 0, len(axes[0]) - 2)
            frac = ((tokens - axes[0][i]) / (axes[0][i + 1] - axes[0][i])).reshape((-1,) + (1,) * (ms.ndim - 1))
            ms = ms[i] * (1.0 - frac) + ms[i + 1] * frac
            axes[0] = tokens
        self.flat = np.ascontiguousarray(ms).ravel()
        self.axes = axes
        self.strides = [int(np.prod(ms.shape[d + 1 :])) for d in range(ms.ndim)]
        self.seq_len = seq_len
        # Integer shapes dominate: look up (cell, fraction) per integer value up to twice the
        # axis' last point; larger values (extrapolation) fall back to searchsorted.
        self.lookup: list[tuple[np.ndarray, np.ndarray] | None] = []
        for axis in axes:
            if len(axis) == 1:
                self.lookup.append(None)
                continue
            values = np.arange(int(axis[-1]) * 2 + 1, dtype=np.float64)
            self.lookup.append(self._cell(axis, values))
        self._lists: tuple[list[float], list[tuple[list[int], list[float]] | None]] | None = None

    @staticmethod
    def _cell(axis: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(np.searchsorted(axis, values, side="right") - 1, 0, len(axis) - 2)
        return i, (values - axis[i]) / (axis[i + 1] - axis[i])

    def _locate(self, d: int, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells, fractions = self.lookup[d]  # type: ignore[misc]
        column = np.asarray(column)
        if column.dtype.kind in "iu" and column.size and column.min() >= 0 and column.max() < len(cells):
            return cells.take(column), fractions.take(column)
        return self._cell(self.axes[d], column.astype(np.float64))

    def __call__(self, shape: Sequence[np.ndarray]) -> np.ndarray:
        size = np.shape(shape[0])
        base: np.ndarray | int = 0
        fracs: list[np.ndarray] = []
        strides: list[int] = []
        for d, column in enumerate(shape):
            if d == 0 and self.exact:
                base = base + (np.clip(column, 1, self.seq_len).astype(np.int64) - 1) * self.strides[0]
            elif self.lookup[d] is not None:
                i, frac = self._locate(d, column)
                base = base + i * self.strides[d]
                fracs.append(frac)
                strides.append(self.strides[d])
        base = np.broadcast_to(np.asarray(base, dtype=np.int64), size)
        # Corner values, then one linear blend per interpolated axis (last axis first).
        values = [self.flat.take(base + o) for o in _offsets(strides)]
        for frac in reversed(fracs):
            values = [low + frac * (high - low) for low, high in zip(values[0::2], values[1::2], strict=True)]
        return np.maximum(values[0], 0.0)

    def scalar(self, shape: tuple[int, ...]) -> float:
        """One call's cost in plain Python (a few microseconds; the same value as ``self``)."""
        if self._lists is None:
            cells = [None if x is None else (x[0].tolist(), x[1].tolist()) for x in self.lookup]
            self._lists = (self.flat.tolist(), cells)
        flat, lookup = self._lists
        base, fracs, strides = 0, [], []
        for d, x in enumerate(shape):
            if d == 0 and self.exact:
                base += (min(max(int(x), 1), self.seq_len) - 1) * self.strides[0]
                continue
            cells = lookup[d]
            if cells is None:
                continue
            if not (isinstance(x, int) and 0 <= x < len(cells[0])):  # extrapolation: the array path
                return float(self([np.array([v]) for v in shape])[0])
            base += cells[0][x] * self.strides[d]
            fracs.append(cells[1][x])
            strides.append(self.strides[d])
        values = [flat[base + o] for o in _offsets(strides)]
        for frac in reversed(fracs):
            values = [low + frac * (high - low) for low, high in zip(values[0::2], values[1::2], strict=True)]
        return max(values[0], 0.0)


def _offsets(strides: list[int]) -> list[int]:
    """Flat offsets of the 2^d corners, the last axis varying fastest."""
    offsets = [0]
    for stride in strides:
        offsets = [o + step for o in offsets for step in (0, stride)]
    return offsets


class LatencyPredictor:
    """Predict end-to-end latency (ms) of configs on one hardware profile."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self._layer_cache: dict[tuple, tuple[float, int]] = {}  # (kernel ms, kernel calls)
        self._model_cache: dict[tuple, tuple[float, int]] = {}
        self._call_cache: dict[tuple, float] = {}
        self._fast: dict[tuple[str, int], _FastTable] = {}

    def _cost(self, family: str, shape: Sequence[np.ndarray], seq_len: int) -> np.ndarray:
        """:func:`kernel_cost` through a prepared table (token counts index it exactly)."""
        entry = self.profile.kernels[family]
        if isinstance(entry, AnalyticCost):
            return entry.overhead_ms + entry.ms_per_unit * work(family, shape)
        return self._table(family, seq_len)(shape)

    def _table(self, family: str, seq_len: int) -> _FastTable:
        """The family's measured table, prepared once per sequence length."""
        key = (family, seq_len)
        if key not in self._fast:
            self._fast[key] = _FastTable(self.profile.kernels[family], FAMILIES[family][0] == "tokens", seq_len)
        return self._fast[key]

    # ------------------------------------------------------------------ batch path
    def kernel_sums(self, archs: Sequence[ArchConfig], seq_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per config: the raw kernel sum (ms, before corrections) and the layer count."""
        sums, layers, _ = self.terms(archs, seq_len)
        return sums, layers

    def terms(
        self, archs: Sequence[ArchConfig], seq_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per config: the raw kernel sum (ms), the layer count and the kernel-call count."""
        seq_len = self._seq_len(seq_len)
        table = LayerTable.from_archs(archs, seq_len)
        layer_ms = self._layer_ms(table)
        total = np.bincount(table.config, weights=layer_ms, minlength=table.num_configs)
        return total + self._config_ms(table), table.num_layers, call_counts(table)

    def group_sums(self, archs: Sequence[ArchConfig], seq_len: int | None = None) -> np.ndarray:
        """Per config and kernel group (:data:`KERNEL_GROUPS` order): the raw kernel sum in ms."""
        table = LayerTable.from_archs(list(archs), self._seq_len(seq_len))
        columns = []
        for group in KERNEL_GROUPS:
            weight = {family: float(GROUP_OF[family] == group) for family in FAMILIES}
            layer_ms = self._layer_ms(table, weight)
            columns.append(
                np.bincount(table.config, weights=layer_ms, minlength=table.num_configs)
                + self._config_ms(table, weight)
            )
        return np.stack(columns, axis=1)

    def predict_many(self, archs: Sequence[ArchConfig], seq_len: int | None = None) -> np.ndarray:
        """Latency in ms of every config (same order), at the profile's batch size."""
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        c = self.profile.corrections
        table = LayerTable.from_archs(archs, self._seq_len(seq_len))
        weight = {family: c.weight(family) for family in FAMILIES}
        kernels = np.bincount(
            table.config, weights=self._layer_ms(table, weight), minlength=table.num_configs
        ) + self._config_ms(table, weight)
        return kernels + c.per_layer_ms * table.num_layers + c.per_call_ms * call_counts(table) + c.per_model_ms

    def _layer_ms(self, table: LayerTable, weight: dict[str, float] | None = None) -> np.ndarray:
        """Per layer: its kernels' summed cost, each family's times ``weight[family]`` (default 1)."""
        layer_ms = np.zeros(len(table.config), dtype=np.float64)
        seq_len = table.seq_len
        for family, shape, count, mask in layer_calls(table):
            w = 1.0 if weight is None else weight[family]
            active = int(np.count_nonzero(mask))
            if active == 0 or w == 0:
                continue
            if active == len(mask):
                layer_ms += w * count * self._cost(family, shape, seq_len)
            elif active > len(mask) // 2:  # cheaper to price every row than to index
                layer_ms += w * np.where(mask, count, 0) * self._cost(family, shape, seq_len)
            else:
                layer_ms[mask] += w * count[mask] * self._cost(family, [x[mask] for x in shape], seq_len)
        return layer_ms

    def _config_ms(self, table: LayerTable, weight: dict[str, float] | None = None) -> np.ndarray:
        config_ms = np.zeros(table.num_configs, dtype=np.float64)
        for family, shape, count, mask in config_calls(table):
            w = 1.0 if weight is None else weight[family]
            if mask.any() and w != 0:
                config_ms[mask] += w * count[mask] * self._cost(family, [x[mask] for x in shape], table.seq_len)
        return config_ms

    # ------------------------------------------------------------------ single config
    def predict(self, arch: ArchConfig, seq_len: int | None = None) -> float:
        """Latency in ms of one config, in plain Python.

        Costs are cached per layer and per kernel call, so a search re-pricing known
        layers pays a dictionary lookup per layer, and a new layer mostly reuses kernel
        shapes priced before (a call's cost is interpolated once).
        """
        seq_len = self._seq_len(seq_len)
        h, norm, act = arch.hidden_size, arch.norm, arch.hidden_act
        if len(self._layer_cache) > _CACHE_LIMIT or len(self._call_cache) > _CACHE_LIMIT:
            self._layer_cache.clear()
            self._call_cache.clear()
        total, count, n_in = 0.0, 0, seq_len
        for layer in arch.layers:
            n_out = min(n_in, kept_tokens(layer.retention, seq_len))
            key = (layer, h, n_in, n_out, norm, act, seq_len)
            cached = self._layer_cache.get(key)
            if cached is None:
                calls = layer_reference_calls(layer, h, n_in, n_out, norm, act)
                cached = self._layer_cache[key] = (self._calls_ms(calls, seq_len), sum(c[2] for c in calls))
            total += cached[0]
            count += cached[1]
            n_in = n_out
        model_key = (h, arch.pooler, arch.num_labels, seq_len)
        model = self._model_cache.get(model_key)
        if model is None:
            calls = [("embedding", (seq_len, h), 1), *head_reference_calls(arch)]
            model = self._model_cache[model_key] = (self._calls_ms(calls, seq_len), sum(c[2] for c in calls))
        c = self.profile.corrections
        return (
            total + model[0] + c.per_layer_ms * len(arch.layers) + c.per_call_ms * (count + model[1]) + c.per_model_ms
        )

    def _calls_ms(self, calls: list[tuple[str, tuple[int, ...], int]], seq_len: int) -> float:
        """Summed cost of kernel calls, each weighted by its family's correction
        (:meth:`Corrections.weight`) and cached by (family, shape)."""
        total = 0.0
        for family, shape, count in calls:
            key = (family, shape, seq_len)
            cost = self._call_cache.get(key)
            if cost is None:
                entry = self.profile.kernels[family]
                if isinstance(entry, AnalyticCost):
                    cost = entry.overhead_ms + entry.ms_per_unit * float(work(family, shape))
                else:
                    cost = self._table(family, seq_len).scalar(shape)
                cost *= self.profile.corrections.weight(family)
                self._call_cache[key] = cost
            total += count * cost
        return total

    def breakdown(self, arch: ArchConfig, seq_len: int | None = None) -> dict[str, object]:
        """Per-layer and per-part costs of one config (for `bertnas profile predict`)."""
        seq_len = self._seq_len(seq_len)
        table = LayerTable.from_archs([arch], seq_len)
        layer_ms = self._layer_ms(table)
        model_ms = float(self._config_ms(table)[0])
        c = self.profile.corrections
        return {
            "latency_ms": self.predict(arch, seq_len),
            "embedding_and_head_ms": model_ms,
            "layers": [
                {"index": layer.index, "n_in": int(n_in), "n_out": int(n_out), "kernels_ms": float(ms)}
                for layer, n_in, n_out, ms in zip(arch.layers, table.n_in, table.n_out, layer_ms, strict=True)
            ],
            "corrections": {
                "scale": c.scale,
                "per_layer_ms": c.per_layer_ms,
                "per_call_ms": c.per_call_ms,
                "per_model_ms": c.per_model_ms,
                **({"group_scales": dict(c.group_scales)} if c.group_scales else {}),
            },
        }

    def _seq_len(self, seq_len: int | None) -> int:
        if seq_len is None:
            return self.profile.seq_len
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise BertnasError(f"seq_len={seq_len!r} must be a positive integer")
        self.profile.check_request(seq_len=int(seq_len))
        return int(seq_len)


def load_predictor(name_or_path: str | Path, *, runtime: str | None = None) -> LatencyPredictor:
    """``LatencyPredictor(load_profile(name_or_path))``."""
    return LatencyPredictor(load_profile(name_or_path, runtime=runtime))


__all__ = ["LatencyPredictor", "interpolate", "kernel_cost", "load_predictor"]
