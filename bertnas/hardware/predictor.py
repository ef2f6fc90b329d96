"""Latency predictor: per-layer composition of a hardware profile.

A config's latency is the sum, over its kernel calls (:mod:`bertnas.hardware.kernels`),
of each call's cost at its own shape, every layer at its *own* token count under
retention, then the profile's end-to-end corrections::

    latency = scale * (embedding + sum over layers of sum of their kernels + head)
              + per_layer_ms * layers + per_model_ms

Nothing is averaged over layers (HAT's layer-averaged predictor is what this avoids).
A measured table is interpolated multilinearly on its grid (exact for costs that are
products of per-axis linear terms, e.g. a linear layer's ``m * k * n``), extrapolated
linearly past its last points; an analytic entry is ``overhead + per_unit * work``.

Speed: :meth:`LatencyPredictor.predict_many` prices a whole batch with column arrays
(100k configs well under a second); :meth:`LatencyPredictor.predict` reuses cached
per-layer costs, so one config costs a dictionary lookup per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertnas.arch import ArchConfig, kept_tokens
from bertnas.errors import BertnasError
from bertnas.hardware.kernels import LayerTable, config_calls, layer_calls, work
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


class LatencyPredictor:
    """Predict end-to-end latency (ms) of configs on one hardware profile."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self._layer_cache: dict[tuple, float] = {}
        self._model_cache: dict[tuple, float] = {}

    # ------------------------------------------------------------------ batch path
    def kernel_sums(self, archs: Sequence[ArchConfig], seq_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per config: the raw kernel sum (ms, before corrections) and the layer count."""
        seq_len = self._seq_len(seq_len)
        table = LayerTable.from_archs(archs, seq_len)
        layer_ms = self._layer_ms(table)
        total = np.bincount(table.config, weights=layer_ms, minlength=table.num_configs)
        return total + self._config_ms(table), table.num_layers

    def predict_many(self, archs: Sequence[ArchConfig], seq_len: int | None = None) -> np.ndarray:
        """Latency in ms of every config (same order), at the profile's batch size."""
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        sums, layers = self.kernel_sums(archs, seq_len)
        return self._correct(sums, layers)

    def _layer_ms(self, table: LayerTable) -> np.ndarray:
        layer_ms = np.zeros(len(table.config), dtype=np.float64)
        for family, shape, count, mask in layer_calls(table):
            if not mask.any():
                continue
            if mask.all():
                layer_ms += count * kernel_cost(self.profile, family, shape)
            else:
                layer_ms[mask] += count[mask] * kernel_cost(self.profile, family, [x[mask] for x in shape])
        return layer_ms

    def _config_ms(self, table: LayerTable) -> np.ndarray:
        config_ms = np.zeros(table.num_configs, dtype=np.float64)
        for family, shape, count, mask in config_calls(table):
            if mask.any():
                config_ms[mask] += count[mask] * kernel_cost(self.profile, family, [x[mask] for x in shape])
        return config_ms

    def _correct(self, sums: np.ndarray, layers: np.ndarray) -> np.ndarray:
        c = self.profile.corrections
        return c.scale * sums + c.per_layer_ms * layers + c.per_model_ms

    # ------------------------------------------------------------------ single config
    def predict(self, arch: ArchConfig, seq_len: int | None = None) -> float:
        """Latency in ms of one config; per-layer costs are cached across calls."""
        seq_len = self._seq_len(seq_len)
        h, norm, act = arch.hidden_size, arch.norm, arch.hidden_act
        total, n_in = 0.0, seq_len
        missing = False
        for layer in arch.layers:
            n_out = min(n_in, kept_tokens(layer.retention, seq_len))
            cost = self._layer_cache.get((layer, h, n_in, n_out, norm, act, seq_len))
            if cost is None:
                missing = True
                break
            total += cost
            n_in = n_out
        model_key = (h, arch.pooler, arch.num_labels, seq_len)
        model_cost = self._model_cache.get(model_key)
        if missing or model_cost is None:
            return self._predict_and_cache(arch, seq_len)
        return float(self._correct(np.float64(total + model_cost), np.int64(len(arch.layers))))

    def _predict_and_cache(self, arch: ArchConfig, seq_len: int) -> float:
        table = LayerTable.from_archs([arch], seq_len)
        layer_ms = self._layer_ms(table)
        model_ms = float(self._config_ms(table)[0])
        if len(self._layer_cache) > _CACHE_LIMIT:
            self._layer_cache.clear()
        h, norm, act = arch.hidden_size, arch.norm, arch.hidden_act
        for layer, n_in, n_out, cost in zip(arch.layers, table.n_in, table.n_out, layer_ms, strict=True):
            self._layer_cache[(layer, h, int(n_in), int(n_out), norm, act, seq_len)] = float(cost)
        self._model_cache[(h, arch.pooler, arch.num_labels, seq_len)] = model_ms
        total = float(layer_ms.sum()) + model_ms
        return float(self._correct(np.float64(total), np.int64(len(arch.layers))))

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
            "corrections": {"scale": c.scale, "per_layer_ms": c.per_layer_ms, "per_model_ms": c.per_model_ms},
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
