"""Measuring a profile on this machine: kernel grids, timing, end-to-end corrections.

Timing (:func:`time_runner`): a few warm-up calls, then individual calls timed with
``perf_counter`` until both ``min_repeats`` calls and ``min_seconds`` have passed (at
most ``max_repeats``); the median is kept, so a stray interrupt does not move it.
End-to-end timings (calibration and validation subnets) are taken in ``rounds``
interleaved passes over the whole set and the median per subnet is kept: on a shared
or virtual machine the speed drifts over seconds, and one pass would put each subnet
wholly inside one slow or fast spell. Where an anchor is timed beside them
(:func:`time_paired`), each call of the timed model sits between two calls of the anchor
and its cost is the median of its ratios to them: the machine's speed is taken out call
by call, which on a shared VM whose speed moves by 10-30 % within seconds leaves about
1 % of noise where the plain median leaves 8-15 %.

A measured profile is built in two steps (``bertnas profile measure``):

1. every kernel family over its grid (:class:`Grid`), giving the tables;
2. ``calibration`` random subnets of the unified space (seeded apart from the ones
   ``validate`` uses) timed end to end the same way; three physically meaningful
   corrections are fitted by least squares on relative error and stored in the
   profile: ``scale`` (memory effects: a model streams each layer's weights once,
   a kernel repeated in a loop finds them in cache), ``per_layer_ms`` (per-layer work
   outside the kernels: the additive mask, the retention bookkeeping, Python dispatch),
   ``per_call_ms`` (the runtime's dispatch cost per operator, which scales with the
   layer's shape: a bottleneck or retention layer runs more operators) and
   ``per_model_ms`` (the forward call, input handling, output assembly).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write_text
from bertnas.backbones import backbone_limits
from bertnas.errors import BertnasError
from bertnas.hardware.kernels import FAMILIES, KERNEL_GROUPS
from bertnas.hardware.profile import Corrections, HardwareProfile, KernelTable
from bertnas.hardware.runtimes import Runtime, open_runtime
from bertnas.readers import read_json
from bertnas.space import load_space


@dataclass(frozen=True)
class Timing:
    warmup: int = 3
    min_repeats: int = 7
    max_repeats: int = 200
    min_seconds: float = 0.03
    rounds: int = 1  # interleaved passes over a set of end-to-end models (measure_models)


def _once(call: Callable[[], object]) -> float:
    """Milliseconds of one call of ``call``."""
    t0 = time.perf_counter()
    call()
    return 1000.0 * (time.perf_counter() - t0)


def _repeat(sample: Callable[[], float], timing: Timing) -> list[float]:
    """``sample()`` until both ``min_repeats`` samples and ``min_seconds`` have passed (at most ``max_repeats``)."""
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < timing.max_repeats:
        samples.append(sample())
        if len(samples) >= timing.min_repeats and time.perf_counter() - started >= timing.min_seconds:
            break
    return samples


def time_runner(run: Callable[[], object], timing: Timing = Timing()) -> float:
    """Median milliseconds of one call of ``run``."""
    for _ in range(timing.warmup):
        run()
    return statistics.median(_repeat(lambda: _once(run), timing))


#: At most this long (ms) of untimed calls before each timed call of :func:`time_paired`.
REWARM_MS = 10.0


@dataclass(frozen=True)
class Paired:
    """One model timed call by call between calls of an anchor (:func:`time_paired`)."""

    ms: float  # median ms of one call of the model
    ratio: float  # median over its calls of (call - harness) / (mean of the anchor calls either side - harness)
    anchor_ms: float  # median ms of one call of the anchor (harness subtracted)


def time_paired(
    run: Callable[[], object],
    anchor: Callable[[], object],
    timing: Timing = Timing(),
    harness: float = 0.0,
    rewarm: int = 4,
) -> Paired:
    """Time ``run`` with every call between two calls of ``anchor``: anchor, (run), run, anchor, ..., anchor.

    The machine's speed moves within seconds on a shared or virtual machine; a model's time
    divided by the anchor's right beside it does not. ``harness`` (ms per call) is taken off
    both before dividing. Stops as :func:`time_runner` does, counting the model's calls.

    Each timed call follows up to ``rewarm`` untimed calls of ``run`` (stopping once they have
    taken :data:`REWARM_MS`): right after an anchor call (the full MiniLM, 22 MB of weights)
    a small model runs cold, 1.6-2x its back-to-back time at 16 tokens and 4-11 % over it at
    128 here; one untimed call recovered about half of that, four all of it. Back to back is
    how a deployed model serving requests runs, and how ``export`` and :func:`time_runner` time.
    """
    for _ in range(timing.warmup):
        run()
        anchor()
    beside = [_once(anchor)]

    def sample() -> float:
        started = time.perf_counter()
        for _ in range(rewarm):
            run()
            if 1000.0 * (time.perf_counter() - started) >= REWARM_MS:
                break
        own = _once(run)
        beside.append(_once(anchor))
        return own

    samples = _repeat(sample, timing)
    own = np.asarray(samples) - harness
    anchors = np.asarray(beside) - harness
    around = np.maximum((anchors[:-1] + anchors[1:]) / 2, 1e-9)
    return Paired(
        ms=float(np.median(samples)),
        ratio=float(np.median(np.maximum(own, 0.0) / around)),
        anchor_ms=float(max(np.median(anchors), 1e-9)),
    )


@dataclass(frozen=True)
class Grid:
    """Axis values per kernel family (axis names as in :data:`bertnas.hardware.kernels.FAMILIES`)."""

    tokens: tuple[int, ...]
    dims: tuple[int, ...]  # linear in/out
    heads: tuple[int, ...]
    head_dims: tuple[int, ...]
    widths: tuple[int, ...]  # elementwise widths
    hidden: tuple[int, ...]  # embedding / classifier widths
    embedding_tokens: tuple[int, ...]

    def axes(self, family: str) -> tuple[tuple[int, ...], ...]:
        names = FAMILIES[family]
        values = {
            "tokens": self.embedding_tokens if family == "embedding" else self.tokens,
            "in": self.dims,
            "out": self.dims,
            "heads": self.heads,
            "head_dim": self.head_dims,
            "width": self.hidden if family in ("embedding", "classifier") else self.widths,
        }
        return tuple(values[name] for name in names)

    def points(self) -> int:
        return sum(int(np.prod([len(axis) for axis in self.axes(family)])) for family in FAMILIES)


def _tokens(seq_len: int, values: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted({v for v in values if v < seq_len} | {seq_len}))


def default_grid(seq_len: int = 128) -> Grid:
    """Covers the unified space of MiniLM and BERT-base (and MobileBERT shapes) at ``seq_len``."""
    tokens = _tokens(seq_len, (1, 8, 16, 32, 48, 64, 80, 96, 112))
    return Grid(
        tokens=tokens,
        dims=(16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072),
        heads=(1, 2, 3, 4, 6, 8, 9, 12, 16),
        head_dims=(16, 32, 48, 64),
        widths=(16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072),
        hidden=(64, 128, 192, 256, 384, 512, 768, 1024),
        embedding_tokens=_tokens(seq_len, (1, 16, 32, 64, 96)),
    )


def tiny_grid(seq_len: int = 16) -> Grid:
    """A seconds-long grid for tests and smoke runs (configs must stay near these sizes)."""
    tokens = _tokens(seq_len, (1, 8))
    return Grid(
        tokens=tokens,
        dims=(16, 32, 64),
        heads=(1, 2, 4),
        head_dims=(8, 16),
        widths=(16, 32, 64),
        hidden=(32, 64),
        embedding_tokens=tokens,
    )


def minilm_grid(seq_len: int = 128) -> Grid:
    """The unified space of all-MiniLM-L6-v2 only (hidden <= 384, 12 heads of 32, FFN <= 1536),
    a third of the default grid's points: for runtimes where each kernel is converted first
    (LiteRT: about a second per kernel)."""
    tokens = _tokens(seq_len, (1, 8, 16, 32, 64, 96))
    return Grid(
        tokens=tokens,
        dims=(32, 64, 96, 192, 288, 384, 768, 1152, 1536),
        heads=(1, 3, 6, 9, 12),
        head_dims=(16, 32),
        widths=(64, 96, 192, 288, 384, 768, 1536),
        hidden=(128, 256, 384),
        embedding_tokens=_tokens(seq_len, (1, 16, 64)),
    )


GRIDS = {"default": default_grid, "minilm": minilm_grid, "tiny": tiny_grid}


def harness_ms(runtime: Runtime, timing: Timing = Timing()) -> float:
    """Per-call cost of the timing harness itself (an empty call on the runtime).

    A kernel timed alone pays it on every call (for onnxruntime: binding inputs and
    outputs of ``session.run``); inside a model it is paid once, so it is subtracted.
    """
    return min(time_runner(runtime.baseline(), timing) for _ in range(3))


def kernel_anchor(grid: Grid) -> tuple[str, tuple[int, ...]]:
    """The kernel timed beside a grid to track the machine's speed: the middle ``linear`` point."""
    return "linear", tuple(int(axis[len(axis) // 2]) for axis in grid.axes("linear"))


def measure_kernels(
    runtime: Runtime,
    grid: Grid,
    timing: Timing = Timing(),
    progress: bool = True,
    harness: float = 0.0,
    checkpoint: Path | None = None,
    anchored: bool = True,
) -> tuple[dict[str, KernelTable], dict[str, object] | None]:
    """Time every family over its grid, minus ``harness`` ms per call: ``({family: KernelTable}, anchor)``.

    ``anchored``: every point is timed paired with the kernel :func:`kernel_anchor`
    (:func:`time_paired`: each call between two anchor calls), kept as its median ratio to the
    anchor and multiplied by the median of all the anchor's timings, so the whole table is at
    one speed of the machine (as :class:`Measured` does for end-to-end models): a kernel timed
    in a slow spell is not priced slower than one timed in a fast one. ``anchor`` records the
    kernel and its timings (None when not anchored).

    With ``checkpoint`` (a JSON file), each finished family is saved there, and the families a
    killed earlier run of the same measurement (same runtime, grid, timing and host) finished
    are read back instead of timed again."""
    spec = kernel_anchor(grid) if anchored else None
    key = {
        "runtime": runtime.describe(),
        "grid": {family: [list(map(int, axis)) for axis in grid.axes(family)] for family in FAMILIES},
        "timing": timing.__dict__,
        "harness_ms": None,  # the harness is re-timed each run; the tables do not depend on it
        "host": host_description(),
        "anchor": None if spec is None else [spec[0], list(spec[1]), "paired"],
    }
    relative, anchors = _read_checkpoint(checkpoint, key)
    anchor_run = runtime.kernel(*spec) if spec is not None else None
    with tqdm(total=grid.points(), desc=f"kernels ({runtime.name})", unit="pt", disable=not progress) as bar:
        for family in FAMILIES:
            axes = grid.axes(family)
            if family in relative:
                bar.update(int(np.prod([len(axis) for axis in axes])))
                continue
            ms = np.zeros([len(axis) for axis in axes])
            timings: list[float] = []
            for index in np.ndindex(*ms.shape):
                shape = tuple(int(axis[i]) for axis, i in zip(axes, index, strict=True))
                run = runtime.kernel(family, shape)
                if anchor_run is None:
                    ms[index] = max(time_runner(run, timing) - harness, 0.0)
                else:  # in anchor units
                    paired = time_paired(run, anchor_run, timing, harness)
                    ms[index] = paired.ratio
                    timings.append(paired.anchor_ms)
                bar.update()
            relative[family] = KernelTable(axes=tuple(np.asarray(a, dtype=np.float64) for a in axes), ms=ms)
            anchors[family] = timings
            if checkpoint is not None:
                _write_checkpoint(checkpoint, key, relative, anchors)
            killpoints.reached("family-measured")
    if spec is None:
        return relative, None
    every = [t for family in FAMILIES for t in anchors[family]]
    speed = float(np.median(every))
    tables = {family: replace(table, ms=table.ms * speed) for family, table in relative.items()}
    record = {
        "kernel": spec[0],
        "shape": list(spec[1]),
        "ms": round(speed, 6),
        "spread_ms": [round(min(every), 6), round(max(every), 6)],
        "paired": True,
    }
    return tables, record


def _read_checkpoint(path: Path | None, key: dict) -> tuple[dict[str, KernelTable], dict[str, list[float]]]:
    """The families (in anchor units when anchored) and their anchor timings a killed run finished."""
    if path is None or not path.is_file():
        return {}, {}
    try:
        saved = read_json(path, "measurement checkpoint")
    except BertnasError:
        return {}, {}  # unreadable: measure again
    if not isinstance(saved, dict) or saved.get("key") != json.loads(json.dumps(key)):
        return {}, {}  # another measurement's: measure again
    families = {f: e for f, e in saved.get("families", {}).items() if f in FAMILIES}
    tables = {
        family: KernelTable(
            axes=tuple(np.asarray(a, dtype=np.float64) for a in entry["axes"]), ms=np.asarray(entry["ms"])
        )
        for family, entry in families.items()
    }
    return tables, {family: [float(t) for t in entry.get("anchor_ms", [])] for family, entry in families.items()}


def _write_checkpoint(path: Path, key: dict, tables: dict[str, KernelTable], anchors: dict[str, list[float]]) -> None:
    families = {
        f: {"axes": [a.astype(int).tolist() for a in t.axes], "ms": t.ms.tolist(), "anchor_ms": anchors.get(f, [])}
        for f, t in tables.items()
    }
    atomic_write_text(path, json.dumps({"key": key, "families": families}))


def anchor_arch(backbone: str = "all-MiniLM-L6-v2") -> ArchConfig:
    """The model timed beside a set to track the machine's speed: ``backbone`` in full, 2 labels."""
    return load_space("unified").bind(backbone_limits(backbone), backbone=backbone).full().replace(num_labels=2)


@dataclass(frozen=True)
class Measured:
    """End-to-end times of a set of models, with the machine's speed tracked beside them.

    On a shared or virtual machine the speed drifts by several per cent over minutes and by
    tens of per cent between days, which no profile fitted at another time can know. Each
    model is timed paired with a fixed model (the *anchor*, :func:`anchor_arch`): every call
    between two calls of the anchor (:func:`time_paired`). ``relative`` is the median over the
    passes of the model's median ratio to the anchor: its cost in anchor units, which drift
    moves far less than milliseconds (about 1 % call to call on a shared VM, against 8-15 %).
    """

    ms: np.ndarray  # (models,) median over the passes of each model's time
    relative: np.ndarray | None = None  # (models,) median over the passes of time / the anchor beside it
    anchor_ms: float | None = None  # median of the anchor's per-model medians over the set
    anchor_spread: tuple[float, float] | None = None  # the fastest and slowest of those medians

    def at_speed(self, anchor_ms: float) -> np.ndarray:
        """The times the models would have taken had the anchor run in ``anchor_ms`` throughout."""
        if self.relative is None:
            raise BertnasError("these times were measured without an anchor; no drift can be removed")
        return self.relative * anchor_ms


def measure_models(
    runtime: Runtime, archs: Sequence[ArchConfig], timing: Timing = Timing(), desc: str = "subnets"
) -> np.ndarray:
    """End-to-end ms of each config on ``runtime``: the median over ``timing.rounds`` interleaved passes.

    Each pass opens each model afresh, so only one runner is held at a time; a runtime whose
    build is expensive builds each model once for all passes (:meth:`Runtime.prepare`: LiteRT
    converts each subnet once and keeps the file until the last pass).
    """
    return measure_anchored(runtime, archs, None, timing, desc).ms


def measure_anchored(
    runtime: Runtime,
    archs: Sequence[ArchConfig],
    anchor: ArchConfig | None,
    timing: Timing = Timing(),
    desc: str = "subnets",
    anchor_runtime: Runtime | None = None,
) -> Measured:
    """:func:`measure_models`, each model timed paired with ``anchor`` (see :class:`Measured`); None: alone.

    ``anchor_runtime``: run the anchor there instead (another token count of the same runtime),
    so that sets timed at different lengths are all in units of one anchor."""
    if timing.rounds < 1:
        raise BertnasError(f"rounds={timing.rounds}: need at least one pass")
    count = len(archs)
    samples = np.zeros((timing.rounds, count))
    ratios = np.ones((timing.rounds, count))
    anchor_timings: list[float] = []
    prepared: list = [None] * count
    anchor_model = (anchor_runtime or runtime).prepare(anchor) if anchor is not None and count else None
    try:
        anchor_run = anchor_model() if anchor_model is not None else None
        with tqdm(total=samples.size, desc=f"{desc} ({runtime.name})", unit="net") as bar:
            for round_ in range(timing.rounds):
                for i, arch in enumerate(archs):
                    if prepared[i] is None:
                        prepared[i] = runtime.prepare(arch)
                    if anchor_run is None:
                        samples[round_, i] = time_runner(prepared[i](), timing)
                    else:
                        paired = time_paired(prepared[i](), anchor_run, timing)
                        samples[round_, i], ratios[round_, i] = paired.ms, paired.ratio
                        anchor_timings.append(paired.anchor_ms)
                    if round_ == timing.rounds - 1:
                        prepared[i].close()
                    bar.update()
    finally:
        for item in [*prepared, anchor_model]:
            if item is not None:
                item.close()
    if anchor_model is None:
        return Measured(ms=np.median(samples, axis=0))
    return Measured(
        ms=np.median(samples, axis=0),
        relative=np.median(ratios, axis=0),
        anchor_ms=float(np.median(anchor_timings)),
        anchor_spread=(float(min(anchor_timings)), float(max(anchor_timings))),
    )


def fit_corrections(
    kernel_sums: np.ndarray,
    layers: np.ndarray,
    measured: np.ndarray,
    label: str,
    calls: np.ndarray | None = None,
    per_layer: bool = True,
    groups: np.ndarray | None = None,
) -> Corrections:
    """Non-negative least squares on relative error:
    ``measured ~ scale * sum + per_layer * layers [+ per_call * calls] + per_model``.

    All terms are physical costs, so none may be negative. ``calls`` (kernel calls per
    config) adds the per-call overhead term; ``per_layer=False`` leaves the per-layer one
    out (the call count then carries all per-layer dispatch). ``groups`` (configs x kernel
    groups, :meth:`LatencyPredictor.group_sums`) fits one scale per kernel group in place of
    the one ``scale`` (:class:`Corrections`). If the fitted scale (with groups: the matrix
    products') is implausible (outside 0.25..4: the kernel timings are too noisy to carry the
    fit, e.g. on a busy CPU), the fit falls back: without groups, the scale is pinned to 1 and
    only the overheads are fitted; with groups, to the one-scale fit.
    """
    from scipy.optimize import nnls

    kernel_columns = [kernel_sums] if groups is None else list(np.asarray(groups, dtype=np.float64).T)
    terms = [*kernel_columns, layers.astype(np.float64) if per_layer else np.zeros_like(kernel_sums)]
    if calls is not None:
        terms.append(np.asarray(calls, dtype=np.float64))
    terms.append(np.ones_like(kernel_sums))
    columns = np.stack(terms, axis=1) / measured[:, None]
    norm = columns.max(axis=0)
    norm[norm == 0] = 1.0
    solution, _ = nnls(columns / norm, np.ones_like(measured))
    values = [float(x) for x in solution / norm]
    k = len(kernel_columns)
    if groups is not None:
        scales = dict(zip(KERNEL_GROUPS, values[:k], strict=True))
        if not 0.25 <= scales["matmul"] <= 4.0:
            fallback = fit_corrections(kernel_sums, layers, measured, label, calls, per_layer)
            return replace(fallback, fitted_on=f"{fallback.fitted_on}; one scale (the per-group fit was implausible)")
        per_layer, *rest = values[k:]
        return Corrections(
            scale=1.0,
            group_scales=tuple(scales.items()),
            per_layer_ms=per_layer,
            per_call_ms=rest[0] if calls is not None else 0.0,
            per_model_ms=rest[-1],
            fitted_on=label,
        )
    if not 0.25 <= values[0] <= 4.0:
        rest, _ = nnls(columns[:, 1:] / norm[1:], 1.0 - columns[:, 0])
        values = [1.0, *(float(x) for x in rest / norm[1:])]
        label = f"{label}; scale pinned to 1 (free fit gave an implausible scale)"
    scale, per_layer, *rest = values
    per_call = rest[0] if calls is not None else 0.0
    return Corrections(
        scale=scale, per_layer_ms=per_layer, per_call_ms=per_call, per_model_ms=rest[-1], fitted_on=label
    )


def _calibration_times(
    runtime: Runtime,
    archs: Sequence[ArchConfig],
    anchor: ArchConfig,
    timing: Timing,
    lengths: Sequence[int],
) -> Measured:
    """``archs`` timed at every token count in ``lengths`` (length-major), each paired with
    ``anchor`` on ``runtime`` (its own length), so all are in units of that one anchor."""
    parts = []
    for length in lengths:
        desc = f"calibration subnets, {length} tokens"
        if length == runtime.seq_len:
            parts.append(measure_anchored(runtime, archs, anchor, timing, desc=desc))
            continue
        with open_runtime(runtime.name, runtime.threads, runtime.batch, length, runtime.cuda) as at_length:
            parts.append(measure_anchored(at_length, archs, anchor, timing, desc=desc, anchor_runtime=runtime))
    anchors = [part.anchor_ms for part in parts]
    return Measured(
        ms=np.concatenate([part.ms for part in parts]),
        relative=np.concatenate([part.relative for part in parts]),
        anchor_ms=float(np.median(anchors)),
        anchor_spread=(min(part.anchor_spread[0] for part in parts), max(part.anchor_spread[1] for part in parts)),
    )


def anchor_record(anchor: ArchConfig, timed: Measured) -> dict[str, object]:
    """What a profile's evidence keeps of its anchor: the model, and its median time then."""
    return {
        "arch": anchor.to_dict(),
        "hash": anchor.hash(),
        "ms": round(float(timed.anchor_ms), 5),
        "spread_ms": [round(v, 5) for v in timed.anchor_spread],
        "paired": True,
    }


def host_description() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(), "os": platform.platform()}


def default_calibration_lengths(seq_len: int) -> tuple[int, ...]:
    """The token counts calibration subnets are timed at: the profile's length and 1/2, 1/4, 1/8 of it.

    A profile prices every length from 1 to ``seq_len`` (``--seq-len task:*`` prices a task's
    real sentences, 25 tokens on average for SST-2), but corrections fitted at ``seq_len``
    alone carry its balance of kernel costs and overheads to every length: fitted at 128
    tokens, this machine's onnxruntime profile over-priced real SST-2 sentences by 42 %
    (README, issue 17)."""
    return tuple(dict.fromkeys(length for length in (seq_len, seq_len // 2, seq_len // 4, seq_len // 8) if length >= 2))


def measure_profile(
    name: str,
    runtime_name: str,
    threads: int,
    *,
    seq_len: int = 128,
    batch: int = 1,
    cuda: bool = False,
    grid: Grid | None = None,
    calibration: Sequence[ArchConfig] = (),
    calibration_label: str = "",
    timing: Timing = Timing(),
    progress: bool = True,
    checkpoint: Path | None = None,
    per_call: bool = True,
    anchor: ArchConfig | None = None,
    per_group: bool = True,
    calibration_lengths: Sequence[int] | None = None,
) -> HardwareProfile:
    """Measure kernels (and fit corrections on ``calibration`` subnets) into a ``measured`` profile.

    ``checkpoint``: see :func:`measure_kernels` (a rerun after a kill keeps the timed families).
    ``per_call``: fit the per-kernel-call overhead too (else only per layer and per model).
    ``per_group``: one scale per kernel group (:class:`Corrections`; else one for all kernels).
    The calibration subnets are timed beside ``anchor`` (default: the full MiniLM; see
    :class:`Measured`); it and its median time are stored in the evidence, so ``profile
    validate`` can tell the profile's error from the machine's drift since.
    ``calibration_lengths``: the token counts each calibration subnet is timed at (default
    :func:`default_calibration_lengths`); the anchor always runs at ``seq_len``, so every
    length's times are in the same anchor units and the fit sees them at one speed."""
    from bertnas.hardware.predictor import LatencyPredictor

    grid = grid or default_grid(seq_len)
    if max(grid.tokens) != seq_len:
        raise BertnasError(f"the grid's largest token count {max(grid.tokens)} must equal seq_len {seq_len}")
    lengths = tuple(dict.fromkeys(calibration_lengths or default_calibration_lengths(seq_len)))
    outside = [length for length in lengths if not 1 <= length <= seq_len]
    if outside:
        raise BertnasError(f"calibration lengths {outside}: each must be between 1 and --seq-len {seq_len}")
    with open_runtime(runtime_name, threads, batch, seq_len, cuda) as runtime:
        started = time.perf_counter()
        harness = harness_ms(runtime, timing)
        tables, kernel_anchor_record = measure_kernels(runtime, grid, timing, progress, harness, checkpoint)
        kernel_seconds = time.perf_counter() - started
        host = {**host_description(), **runtime.describe()}
        device = (
            f"{host['cpu']} ({threads} thread{'s' if threads > 1 else ''})" if not cuda else host.get("device", "cuda")
        )
        profile = HardwareProfile(
            name=name,
            device=device,
            runtime=runtime_name,
            threads=threads,
            batch=batch,
            seq_len=seq_len,
            precision="fp32",
            provenance="measured",
            kernels=tables,
            host=host,
            date=_dt.date.today().isoformat(),
        )
        evidence: dict[str, object] = {
            "method": (
                "each call timed between two calls of an anchor after warm-up; a kernel or model is its median "
                "ratio to the anchor times the anchor's median time (bertnas/hardware/measure.py, time_paired)"
            ),
            "timing": {
                "warmup": timing.warmup,
                "min_repeats": timing.min_repeats,
                "min_seconds": timing.min_seconds,
                "rounds": timing.rounds,
            },
            "grid_points": grid.points(),
            "harness_ms_subtracted": round(harness, 5),
            "kernel_seconds": round(kernel_seconds, 1),
            "kernel_anchor": kernel_anchor_record,
        }
        corrections = Corrections()
        if calibration:
            started = time.perf_counter()
            anchor = anchor or anchor_arch()
            timed = _calibration_times(runtime, calibration, anchor, timing, lengths)
            # the calibration set at one speed (its median anchor): drift within the set is not fitted
            measured = timed.at_speed(timed.anchor_ms)
            raw = LatencyPredictor(profile)
            per_length = [raw.terms(calibration, length) for length in lengths]
            sums, layers, calls = (np.concatenate(parts) for parts in zip(*per_length, strict=True))
            label = calibration_label or f"{len(calibration)} subnets"
            label += f", each at {', '.join(map(str, lengths))} tokens"
            groups = np.concatenate([raw.group_sums(calibration, length) for length in lengths]) if per_group else None
            corrections = fit_corrections(sums, layers, measured, label, calls if per_call else None, groups=groups)
            fitted_predictor = LatencyPredictor(replace(profile, corrections=corrections))
            fitted = np.concatenate([fitted_predictor.predict_many(calibration, length) for length in lengths])

            def mape(predicted: np.ndarray, rows: slice = slice(None)) -> float:
                return round(float(np.mean(np.abs(predicted[rows] - measured[rows]) / measured[rows]) * 100), 2)

            count = len(calibration)
            evidence["calibration"] = {
                "subnets": count,
                "label": calibration_label,
                "lengths": list(lengths),
                "raw_kernel_sum_mape_pct": mape(sums),
                "fitted_mape_pct": mape(fitted),
                "fitted_mape_pct_by_length": {
                    str(length): mape(fitted, slice(i * count, (i + 1) * count)) for i, length in enumerate(lengths)
                },
                "seconds": round(time.perf_counter() - started, 1),
            }
            evidence["anchor"] = anchor_record(anchor, timed)
        notes = (
            f"Measured on this machine with {runtime_name}, {threads} threads, batch {batch}, {seq_len} tokens. "
            "Corrections fitted on calibration subnets only (never on validation subnets)."
        )
        return HardwareProfile(
            **{**profile.__dict__, "corrections": corrections, "evidence": evidence, "notes": notes, "source": None}
        )


__all__ = [
    "GRIDS",
    "Grid",
    "Measured",
    "Paired",
    "Timing",
    "anchor_arch",
    "anchor_record",
    "kernel_anchor",
    "default_calibration_lengths",
    "default_grid",
    "fit_corrections",
    "measure_anchored",
    "measure_kernels",
    "measure_models",
    "measure_profile",
    "minilm_grid",
    "time_paired",
    "time_runner",
    "tiny_grid",
]
