"""Hardware profiles: what a device costs, as a versioned YAML file.

A profile records *where* latencies were taken (device, runtime, threads, batch,
sequence length, precision, host, date), *how* we know them (``provenance``:
``measured`` on this machine, ``calibrated`` to published numbers, or ``imported``
from a benchmark run on the target) with its evidence, and the latency data itself: one
entry per kernel family of :mod:`bertnas.hardware.kernels`, either a measured table
over a grid (interpolated by the predictor) or an analytic cost
``overhead_ms + ms_per_unit * work``. Optional ``corrections`` turn the kernel sum into
an end-to-end latency (see docs/hardware.md)::

    format: bertnas-hardware-profile
    version: 1
    name: host-cpu-torch
    device: "Intel Xeon ... (2 cores)"
    runtime: torch            # torch | onnxruntime | tflite | ...
    threads: 2
    batch: 1
    seq_len: 128
    precision: fp32
    host: {...}               # free-form description of the machine and software
    date: "2026-11-23"
    provenance: measured      # measured | calibrated | imported
    evidence: {...}           # for calibrated: the published points and their sources
    notes: "..."
    kernels:
      linear: {table: {tokens: [...], in: [...], out: [...], ms: [[[...]]]}}
      gelu: {analytic: {overhead_ms: 0.01, ms_per_unit: 1.5e-6}}
    corrections: {scale: 1.0, per_layer_ms: 0.0, per_model_ms: 0.0}
    residuals:                # optional: held-out validation residuals, for --confidence
      subnets: "100 random unified-space subnets ..., seed 0"
      relative: [0.012, -0.031, ...]   # measured / predicted - 1 (bertnas/hardware/conformal.py)

Profiles live in the registry directory ``hardware_profiles/`` of the repository
(``$BERTNAS_PROFILES_DIR`` overrides it); :func:`load_profile` takes a registry name or
a path to a ``.yaml`` file.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bertnas.atomic import atomic_write_text
from bertnas.errors import BertnasError
from bertnas.hardware.conformal import Residuals
from bertnas.hardware.kernels import FAMILIES, GROUP_OF, KERNEL_GROUPS
from bertnas.hashing import file_sha256
from bertnas.readers import load_yaml, read_text

FORMAT = "bertnas-hardware-profile"
VERSION = 1
PROVENANCES = ("measured", "calibrated", "imported")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PROFILES_ENV = "BERTNAS_PROFILES_DIR"

_REQUIRED = ("name", "device", "runtime", "threads", "batch", "seq_len", "precision", "provenance", "kernels")
_OPTIONAL = ("format", "version", "host", "date", "evidence", "notes", "corrections", "residuals")
_MAX_RESIDUALS = 100_000
_CORRECTIONS = ("scale", "per_layer_ms", "per_call_ms", "per_model_ms", "group_scales", "fitted_on")


def profiles_dir() -> Path:
    """The registry: ``$BERTNAS_PROFILES_DIR``, else ``hardware_profiles/`` in the repository."""
    override = os.environ.get(PROFILES_ENV)
    if override:
        return Path(override).expanduser()
    in_repository = Path(__file__).resolve().parents[2] / "hardware_profiles"
    if in_repository.is_dir():
        return in_repository
    # a non-editable install ships the profiles as data files under <prefix>/share/bertnas
    return Path(sys.prefix) / "share" / "bertnas" / "hardware_profiles"


@dataclass(frozen=True)
class KernelTable:
    """Measured latency (ms) of one family over a grid: ``ms[i, j, ...]`` at ``axes[0][i], axes[1][j], ...``."""

    axes: tuple[np.ndarray, ...]
    ms: np.ndarray

    def to_yaml(self, names: tuple[str, ...]) -> dict[str, Any]:
        data: dict[str, Any] = {name: [int(x) for x in axis] for name, axis in zip(names, self.axes, strict=True)}
        data["ms"] = np.round(self.ms, 6).tolist()
        return {"table": data}


@dataclass(frozen=True)
class AnalyticCost:
    """``overhead_ms + ms_per_unit * work`` (work: see :func:`bertnas.hardware.kernels.work`)."""

    overhead_ms: float
    ms_per_unit: float

    def to_yaml(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {"analytic": {"overhead_ms": float(self.overhead_ms), "ms_per_unit": float(self.ms_per_unit)}}


@dataclass(frozen=True)
class Corrections:
    """Kernel sums -> end to end:
    ``scale * sum_g group_scale[g] * sum_g + per_layer_ms * layers + per_call_ms * calls + per_model_ms``.

    ``sum_g`` is the summed cost of the config's kernels in group ``g`` (the families'
    groups: :data:`bertnas.hardware.kernels.KERNEL_GROUPS`); without ``group_scales`` every
    group's scale is 1, so the first term is ``scale * sum``. A measured profile fits one
    scale per group because a graph runtime treats them differently (it fuses elementwise
    operators into their neighbours; a matrix product streams its weights from memory).
    ``calls`` is the number of kernel calls the config makes (a layer's count follows its
    shape: a bottleneck adds 3-5, retention 2-3, each stacked FFN 4), so a runtime's
    per-operator dispatch cost is priced by shape instead of as a constant per layer.
    """

    scale: float = 1.0
    per_layer_ms: float = 0.0
    per_model_ms: float = 0.0
    fitted_on: str | None = None
    per_call_ms: float = 0.0
    group_scales: tuple[tuple[str, float], ...] = ()  # (group, scale) pairs; a group left out: 1

    def weight(self, family: str) -> float:
        """What one ms of ``family``'s table costs end to end, before the overheads."""
        return self.scale * dict(self.group_scales).get(GROUP_OF[family], 1.0)

    def to_yaml(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "scale": round(float(self.scale), 6),
            "per_layer_ms": round(float(self.per_layer_ms), 6),
            "per_model_ms": round(float(self.per_model_ms), 6),
        }
        if self.group_scales:
            data["group_scales"] = {group: round(float(v), 6) for group, v in self.group_scales}
        if self.per_call_ms:
            data["per_call_ms"] = round(float(self.per_call_ms), 7)
        if self.fitted_on:
            data["fitted_on"] = self.fitted_on
        return data


@dataclass(frozen=True)
class HardwareProfile:
    """One device + runtime + settings, and its latency data."""

    name: str
    device: str
    runtime: str
    threads: int
    batch: int
    seq_len: int
    precision: str
    provenance: str
    kernels: Mapping[str, KernelTable | AnalyticCost]
    corrections: Corrections = Corrections()
    host: Mapping[str, Any] = field(default_factory=dict)
    date: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""
    source: str | None = None  # the file it was loaded from
    residuals: Residuals | None = None  # held-out validation residuals (conformal budgets)

    def check_request(self, seq_len: int | None = None, runtime: str | None = None, batch: int | None = None) -> None:
        """Refuse a request this profile cannot answer, saying which field differs."""
        if runtime is not None and runtime != self.runtime:
            raise BertnasError(
                f"profile {self.name!r} was taken with runtime {self.runtime!r}, not {runtime!r}; "
                f"measure one with `bertnas profile measure --runtime {runtime} --name NAME`"
            )
        if batch is not None and batch != self.batch:
            raise BertnasError(f"profile {self.name!r} is for batch {self.batch}, not {batch}")
        if seq_len is not None and seq_len not in self.served_seq_lens():
            if len(self.served_seq_lens()) == 1:
                raise BertnasError(
                    f"profile {self.name!r} is calibrated at seq_len {self.seq_len} only (the published "
                    f"measurements' length); it cannot price seq_len {seq_len}"
                )
            raise BertnasError(
                f"profile {self.name!r} covers seq_len 1..{self.seq_len}, not {seq_len}; "
                f"measure a profile with --seq-len {seq_len}"
            )

    def record(self) -> dict[str, Any]:
        """What a run keeps of the profile it priced with: name, device, runtime, length, provenance
        and the file's sha256 (None for a profile built in memory)."""
        return {
            "name": self.name,
            "device": self.device,
            "runtime": self.runtime,
            "seq_len": self.seq_len,
            "provenance": self.provenance,
            "file_sha256": file_sha256(self.source) if self.source and Path(self.source).is_file() else None,
        }

    def describe(self) -> str:
        """How the profile knows its latencies, in words: ``measured (onnxruntime, 2 threads, fp32, 2026-11-23)``."""
        details = [
            str(self.runtime or ""),
            f"{self.threads} threads" if self.threads else "",
            str(self.precision or ""),
            f"seq {self.seq_len}" if self.seq_len else "",
            str(self.date or ""),
        ]
        details = [detail for detail in details if detail]
        return f"{self.provenance} ({', '.join(details)})" if details else str(self.provenance)

    def served_seq_lens(self) -> range:
        """Sequence lengths the profile prices: its own only if calibrated analytically (a MAC count
        knows nothing of length), else every length up to it (measured tables, scaled or not)."""
        if self.provenance == "calibrated" and all(isinstance(k, AnalyticCost) for k in self.kernels.values()):
            return range(self.seq_len, self.seq_len + 1)
        return range(1, self.seq_len + 1)

    def to_yaml(self) -> str:
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "device": self.device,
            "runtime": self.runtime,
            "threads": self.threads,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "precision": self.precision,
            "host": _plain(self.host),
            "date": self.date or _dt.date.today().isoformat(),
            "provenance": self.provenance,
            "evidence": _plain(self.evidence),
            "notes": self.notes,
            "corrections": self.corrections.to_yaml(),
            "kernels": {family: entry.to_yaml(FAMILIES[family]) for family, entry in self.kernels.items()},
        }
        if self.residuals is not None:
            data["residuals"] = self.residuals.to_yaml()
        return yaml.safe_dump(data, sort_keys=False, width=120, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.to_yaml())
        return path


def _plain(value: Any) -> Any:
    """numpy scalars and tuples -> plain YAML types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)  # str subclasses (torch's version string) -> plain str
    return value


# ---------------------------------------------------------------------------- loading
class _Lines:
    """Line numbers of mapping keys, from the YAML node tree (safe composer)."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def line(self, *path: str) -> int | None:
        node, best = self.node, None
        for key in path:
            if not isinstance(node, yaml.MappingNode):
                break
            for key_node, value_node in node.value:
                if key_node.value == key:
                    best = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                break
        return best if best is not None else (self.node.start_mark.line + 1 if self.node is not None else None)


def parse_profile(text: str, source: str) -> HardwareProfile:
    """Parse and validate profile YAML; errors name ``source``, the line and the field."""
    data, node = load_yaml(text, source)
    lines = _Lines(node)

    def fail(message: str, *path: str) -> BertnasError:
        line = lines.line(*path)
        field_name = ".".join(path) if path else "profile"
        return BertnasError(f"{source}:{line}: {field_name}: {message}")

    if not isinstance(data, Mapping):
        raise fail("a profile is a YAML mapping with name, runtime, kernels, ...")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise fail(f"unknown field (known: {', '.join(_REQUIRED + _OPTIONAL)})", unknown[0])
    for key in _REQUIRED:
        if key not in data:
            raise fail(f"missing required field {key!r}")
    if data.get("format", FORMAT) != FORMAT:
        raise fail(f"expected {FORMAT!r}", "format")
    if data.get("version", VERSION) != VERSION:
        raise fail(f"{data.get('version')!r} is not supported (this bertnas reads version {VERSION})", "version")
    for key in ("name", "device", "runtime"):
        if not isinstance(data[key], str) or not data[key]:
            raise fail("must be a non-empty string", key)
    for key in ("threads", "batch", "seq_len"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(f"must be a positive integer, got {value!r}", key)
    if data["precision"] not in PRECISIONS:
        raise fail(f"{data['precision']!r} is not one of {', '.join(PRECISIONS)}", "precision")
    if data["provenance"] not in PROVENANCES:
        raise fail(f"{data['provenance']!r} is not one of {', '.join(PROVENANCES)}", "provenance")
    for key in ("host", "evidence"):
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise fail("must be a mapping", key)
    if data["provenance"] == "calibrated" and not (data.get("evidence") or {}).get("published"):
        raise fail("a calibrated profile lists its published measurements under evidence.published", "evidence")

    kernels_data = data["kernels"]
    if not isinstance(kernels_data, Mapping) or not kernels_data:
        raise fail("must map kernel families to a table or an analytic cost", "kernels")
    missing = [family for family in FAMILIES if family not in kernels_data]
    if missing:
        raise fail(f"missing kernel family {missing[0]!r} (a profile prices all of {', '.join(FAMILIES)})", "kernels")
    kernels: dict[str, KernelTable | AnalyticCost] = {}
    for family, entry in kernels_data.items():
        if family not in FAMILIES:
            raise fail(f"unknown kernel family (known: {', '.join(FAMILIES)})", "kernels", str(family))
        kernels[family] = _parse_kernel(family, entry, lambda m, *p, f=family: fail(m, "kernels", f, *p))
    corrections_data = data.get("corrections") or {}
    if not isinstance(corrections_data, Mapping):
        raise fail("must be a mapping with scale, per_layer_ms, per_model_ms", "corrections")
    for key, value in corrections_data.items():
        if key not in _CORRECTIONS:
            raise fail(f"unknown correction (known: {', '.join(_CORRECTIONS)})", "corrections", str(key))
        if key == "group_scales":
            continue
        if key != "fitted_on" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise fail(f"must be a number, got {value!r}", "corrections", key)
    groups = corrections_data.get("group_scales") or {}
    if not isinstance(groups, Mapping):
        raise fail("must be a mapping of kernel group to scale", "corrections", "group_scales")
    for group, value in groups.items():
        if group not in KERNEL_GROUPS:
            raise fail(f"unknown kernel group (known: {', '.join(KERNEL_GROUPS)})", "corrections", "group_scales")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise fail(f"must be a number >= 0, got {value!r}", "corrections", "group_scales", str(group))
    corrections = Corrections(
        **{**corrections_data, "group_scales": tuple((str(g), float(v)) for g, v in groups.items())}
    )
    if corrections.scale <= 0:
        raise fail("must be positive", "corrections", "scale")
    residuals = _parse_residuals(data.get("residuals"), fail)
    return HardwareProfile(
        name=data["name"],
        device=data["device"],
        runtime=data["runtime"],
        threads=data["threads"],
        batch=data["batch"],
        seq_len=data["seq_len"],
        precision=data["precision"],
        provenance=data["provenance"],
        kernels=kernels,
        corrections=corrections,
        host=data.get("host") or {},
        date=str(data.get("date") or ""),
        evidence=data.get("evidence") or {},
        notes=str(data.get("notes") or ""),
        source=source,
        residuals=residuals,
    )


def _parse_residuals(entry: Any, fail: Any) -> Residuals | None:
    if entry is None:
        return None
    if not isinstance(entry, Mapping) or "relative" not in entry:
        raise fail("must be {subnets: '...', relative: [measured / predicted - 1, ...]}", "residuals")
    extra = sorted(set(entry) - {"subnets", "relative"})
    if extra:
        raise fail("unknown field (known: subnets, relative)", "residuals", str(extra[0]))
    values = entry["relative"]
    if not isinstance(values, list) or not values or len(values) > _MAX_RESIDUALS:
        raise fail(f"must be a list of 1 to {_MAX_RESIDUALS} numbers", "residuals", "relative")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= -1:
            raise fail(f"{value!r} is not a relative residual (a finite number above -1)", "residuals", "relative")
    return Residuals(tuple(float(v) for v in values), str(entry.get("subnets") or ""))


def _parse_kernel(family: str, entry: Any, fail: Any) -> KernelTable | AnalyticCost:
    if not isinstance(entry, Mapping) or len(entry) != 1 or next(iter(entry)) not in ("table", "analytic"):
        raise fail("must be {table: {...}} or {analytic: {overhead_ms, ms_per_unit}}")
    kind, body = next(iter(entry.items()))
    if not isinstance(body, Mapping):
        raise fail("must be a mapping", kind)
    if kind == "analytic":
        values = {}
        for key in ("overhead_ms", "ms_per_unit"):
            value = body.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise fail(f"must be a non-negative number, got {value!r}", kind, key)
            values[key] = float(value)
        extra = sorted(set(body) - {"overhead_ms", "ms_per_unit"})
        if extra:
            raise fail("unknown field (known: overhead_ms, ms_per_unit)", kind, extra[0])
        return AnalyticCost(**values)
    names = FAMILIES[family]
    extra = sorted(set(body) - set(names) - {"ms"})
    if extra:
        raise fail(f"unknown axis (axes of {family}: {', '.join(names)}, and ms)", kind, str(extra[0]))
    axes = []
    for name in names:
        axis = body.get(name)
        if (
            not isinstance(axis, list)
            or not axis
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in axis)
            or any(b <= a for a, b in zip(axis, axis[1:], strict=False))
        ):
            raise fail("must be a non-empty increasing list of positive integers", kind, name)
        axes.append(np.asarray(axis, dtype=np.float64))
    try:
        ms = np.asarray(body.get("ms"), dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("must be a nested list of numbers (milliseconds)", kind, "ms") from None
    expected = tuple(len(axis) for axis in axes)
    if ms.shape != expected:
        raise fail(f"has shape {ms.shape}, expected {expected} (one value per grid point)", kind, "ms")
    if not np.all(np.isfinite(ms)) or np.any(ms < 0):
        raise fail("must hold finite non-negative milliseconds", kind, "ms")
    return KernelTable(axes=tuple(axes), ms=ms)


def load_profile(
    name_or_path: str | Path, *, runtime: str | None = None, seq_len: int | None = None
) -> HardwareProfile:
    """A profile by registry name or ``.yaml`` path; optionally check it fits ``runtime``/``seq_len``."""
    text_name = str(name_or_path)
    path = Path(text_name).expanduser()
    if not (text_name.endswith((".yaml", ".yml")) or os.sep in text_name):
        path = profiles_dir() / f"{text_name}.yaml"
        if not path.is_file():
            available = ", ".join(list_profiles()) or "(none)"
            raise BertnasError(
                f"unknown device {text_name!r}; available profiles in {profiles_dir()}: {available} "
                "(or pass a path to a profile .yaml)"
            )
    profile = parse_profile(read_text(path, "profile"), str(path))
    profile.check_request(seq_len=seq_len, runtime=runtime)
    return profile


def list_profiles() -> list[str]:
    """Names of the profiles in the registry directory, sorted."""
    directory = profiles_dir()
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.yaml") if not path.name.startswith("."))


__all__ = [
    "AnalyticCost",
    "Corrections",
    "HardwareProfile",
    "KernelTable",
    "PROFILES_ENV",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "profiles_dir",
]
