"""A search space bound to a backbone: categorical dimensions and one decode routine.

:class:`SearchSpace` turns a :class:`~bertnas.space.spec.SpaceSpec` into named
categorical *dimensions* whose choices are absolute sizes for the bound backbone
(``heads.3: (3, 6, 9, 12)``). Every operation (sampling, Optuna suggestion, decoding a
value dict, enumeration, largest/smallest) goes through the one define-by-run routine
:meth:`SearchSpace.decode`: it walks the dimensions in a fixed order and asks its
``chooser`` only for those that are *active*, so a dropped layer's dimensions are never
asked. Dimension names are stable:

``hidden_size``, ``depth`` / ``width`` (DynaBERT multipliers), then per backbone layer
``i``: ``keep.{i}``, ``heads.{i}``, ``qk_dim.{i}``, ``v_dim.{i}``, ``ffn_dim.{i}``,
``ffn_stack.{i}``, ``bottleneck.{i}``, ``retention.{i}``.

A dimension with one choice is fixed and is not a dimension. Choices are sorted from
smallest to largest compute (``keep``: False, True; ``bottleneck``: narrowest first,
None, meaning no bottleneck, last), so that index 0 everywhere is :meth:`smallest`, the
last index everywhere is :meth:`largest`, and :meth:`encode` is monotone in size.

``retention.{i}`` is a *step*: the j-th kept layer keeps ``round(previous * step, 6)``
of the input tokens (``previous`` = 1.0 before the first kept layer), which makes the
absolute retention non-increasing by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bertnas import schema
from bertnas.arch import ArchConfig, ArchLimits, LayerConfig, full_arch
from bertnas.errors import BertnasError
from bertnas.schema import order_key as _size_order
from bertnas.schema import same_value as _same
from bertnas.space.dynabert import dynabert_kept_layers, dynabert_width, exact, round_half_up
from bertnas.space.spec import LAYER_DIMS, SpaceSpec

if TYPE_CHECKING:
    import optuna

Chooser = Callable[[str, tuple[Any, ...]], Any]

# The smallest absolute retention a config can carry (arch JSON keeps 6 decimals);
# below it every layer keeps only [CLS] anyway.
_MIN_RETENTION = 1e-6


@dataclass(frozen=True)
class Dimension:
    """One categorical decision: a stable ``name`` and its ``choices``, smallest first."""

    name: str
    choices: tuple[Any, ...]


class SearchSpace:
    """A :class:`SpaceSpec` resolved against one backbone's :class:`ArchLimits`.

    Build it with ``load_space(name).bind(limits, backbone)``.
    """

    def __init__(self, spec: SpaceSpec, limits: ArchLimits, backbone: str | None = None) -> None:
        self.spec = spec
        self.limits = limits
        self.backbone = backbone
        self.options = dict(spec.options)
        self._resolve()

    # ------------------------------------------------------------------ binding
    def _resolve(self) -> None:
        spec, limits = self.spec, self.limits
        # What a fraction of each size dimension is a fraction of (bertnas.schema: unit, unit_what).
        sized = [dim for dim in (schema.HIDDEN_SIZE, *schema.DIMENSIONS) if dim.unit is not None]
        units = {dim.name: getattr(limits, dim.unit) for dim in sized}
        what = {dim.name: dim.unit_what for dim in sized}
        # choices per base name; per-layer bases hold the same choices for every layer.
        self._choices: dict[str, tuple[Any, ...]] = {}
        for base, field_path in (("hidden_size", "hidden_size"), *((b, f"layer.{b}") for b in LAYER_DIMS)):
            written = spec.hidden_size if base == "hidden_size" else spec.layer[base]
            resolved = []
            for value in written.values:
                if value is None or base not in units:  # null bottleneck, counts, steps, flags
                    resolved.append(value)
                elif written.absolute:
                    if value > units[base]:
                        raise spec.error(
                            field_path,
                            f"{value} exceeds the backbone's {what[base]} {units[base]}; "
                            f"use sizes up to {units[base]} or fractions",
                        )
                    resolved.append(value)
                else:
                    # Exact decimal arithmetic: 0.35 * 10 is 3.5 and rounds up, as written.
                    resolved.append(max(1, round_half_up(exact(value) * units[base])))
            # Two fractions may resolve to one size on a small backbone: keep it once.
            self._choices[base] = tuple(sorted(set(resolved), key=_size_order))

        self._kept_by_depth: dict[float, tuple[int, ...]] = {}
        if spec.depth_rule == "dynabert":
            # Largest multiplier first, so two multipliers keeping the same layers keep the larger.
            for m_d in sorted(spec.depth_multipliers, reverse=True):
                kept = dynabert_kept_layers(limits.num_layers, m_d)
                if kept not in self._kept_by_depth.values():
                    self._kept_by_depth[m_d] = kept
            self._choices["depth"] = tuple(sorted(self._kept_by_depth))
        self._always_keep = frozenset(spec.always_keep) if spec.depth_rule == "per_layer" else frozenset()
        for index in sorted(self._always_keep):
            if index >= limits.num_layers:
                raise spec.error(
                    "depth.always_keep",
                    f"layer {index} does not exist in a {limits.num_layers}-layer backbone; "
                    f"use indices 0 to {limits.num_layers - 1}",
                )
        self._choices["keep"] = (False, True)

        self._width_shapes: dict[float, tuple[int, int]] = {}
        for m_w in sorted(spec.width_multipliers, reverse=True):
            shape = dynabert_width(limits.num_heads, limits.ffn_dim, m_w)
            if shape not in self._width_shapes.values():
                self._width_shapes[m_w] = shape
        if self._width_shapes:
            self._choices["width"] = tuple(sorted(self._width_shapes))

        self._dimensions: list[Dimension] = []
        for name, base in self._walk_names():
            if len(self._choices[base]) > 1:
                self._dimensions.append(Dimension(name, self._choices[base]))
        self._by_name = {dim.name: dim for dim in self._dimensions}
        # Where each choice stands among its base's choices: a dict lookup instead of a scan (decoding
        # asks for every dimension of every config; the surrogate sampler decodes thousands per trial).
        self._positions = {
            base: {_choice_key(choice): position for position, choice in enumerate(choices)}
            for base, choices in self._choices.items()
        }

    def _walk_names(self) -> Iterator[tuple[str, str]]:
        """``(name, base)`` of every potential dimension, in decode order."""
        yield "hidden_size", "hidden_size"
        if "depth" in self._choices:
            yield "depth", "depth"
        if "width" in self._choices:
            yield "width", "width"
        for i in range(self.limits.num_layers):
            if self.spec.depth_rule == "per_layer" and i not in self._always_keep:
                yield f"keep.{i}", "keep"
            for base in self._layer_bases:
                yield f"{base}.{i}", base

    @property
    def _layer_bases(self) -> tuple[str, ...]:
        if self._width_shapes:  # DynaBERT width sets heads and FFN dim globally
            return tuple(base for base in LAYER_DIMS if base not in ("heads", "ffn_dim"))
        return LAYER_DIMS

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dimensions(self) -> list[Dimension]:
        """Every dimension, in decode order, whether or not a given config activates it."""
        return list(self._dimensions)

    def choices(self, name: str) -> tuple[Any, ...]:
        """The choices of dimension ``name`` (smallest first)."""
        if name not in self._by_name:
            raise BertnasError(f"space {self.name!r} has no dimension {name!r}{self._known_hint()}")
        return self._by_name[name].choices

    @property
    def max_ffn_stack(self) -> int:
        """The most stacked FFNs any config uses: what the supernet must allocate."""
        return max(self._choices["ffn_stack"])

    @property
    def max_bottleneck(self) -> int:
        """The widest bottleneck any config uses, 0 if none: what the supernet must allocate."""
        return max((b for b in self._choices["bottleneck"] if b is not None), default=0)

    def supernet_limits(self) -> ArchLimits:
        """``limits`` with the extra parameters (stacked FFNs, bottlenecks) this space needs."""
        from dataclasses import replace

        return replace(self.limits, max_ffn_stack=self.max_ffn_stack, max_bottleneck=self.max_bottleneck)

    def size(self) -> int:
        """Number of distinct configs (an exact, possibly huge, integer).

        Counts the define-by-run tree: every kept layer multiplies by the product of its
        per-layer choice counts. Distinct choices give distinct configs, except that
        retention products below 1e-6 (dozens of layers at small steps) all clamp to 1e-6.
        """
        per_layer = math.prod(len(self._choices[base]) for base in self._layer_bases)
        num_layers = self.limits.num_layers
        if self.spec.depth_rule == "dynabert":
            layer_count = sum(per_layer ** len(kept) for kept in self._kept_by_depth.values())
        elif self.spec.depth_rule == "per_layer":
            # Always-kept layers contribute per_layer each, the others (1 + per_layer): dropped or kept.
            always = len(self._always_keep)
            layer_count = per_layer**always * (1 + per_layer) ** (num_layers - always)
        else:
            layer_count = per_layer**num_layers
        return len(self._choices["hidden_size"]) * len(self._choices.get("width", (None,))) * layer_count

    def describe(self) -> dict[str, Any]:
        """What ``bertnas space show`` prints: choices resolved for the bound backbone, size."""
        fixed = {}
        for name, base in (("hidden_size", "hidden_size"), *((b, b) for b in self._layer_bases)):
            if len(self._choices[base]) == 1:
                fixed[name] = self._choices[base][0]
        rules: dict[str, Any] = {}  # what each DynaBERT multiplier means for this backbone
        if self._kept_by_depth:
            rules["depth"] = {str(m): list(kept) for m, kept in sorted(self._kept_by_depth.items())}
        if self._width_shapes:
            rules["width"] = {str(m): {"heads": h, "ffn_dim": f} for m, (h, f) in sorted(self._width_shapes.items())}
        return {
            "name": self.name,
            "description": self.spec.description,
            "source": self.spec.source,
            "backbone": self.backbone,
            "limits": {
                "hidden_size": self.limits.hidden_size,
                "num_layers": self.limits.num_layers,
                "num_heads": self.limits.num_heads,
                "head_dim": self.limits.head_dim,
                "ffn_dim": self.limits.ffn_dim,
            },
            "depth_rule": self.spec.depth_rule,
            "always_keep": sorted(self._always_keep),
            "dimensions": [{"name": dim.name, "choices": list(dim.choices)} for dim in self._dimensions],
            "fixed": fixed,  # single-choice values: the same in every config
            "dynabert": rules,
            "options": dict(self.options),
            "size": self.size(),
            "max_ffn_stack": self.max_ffn_stack,
            "max_bottleneck": self.max_bottleneck,
        }

    def __repr__(self) -> str:
        return (
            f"SearchSpace({self.name!r}, backbone={self.backbone!r}, "
            f"dimensions={len(self._dimensions)}, size={self.size()})"
        )

    # ------------------------------------------------------------------ decoding
    def decode(self, chooser: Chooser) -> ArchConfig:
        """Build a config, asking ``chooser(name, choices)`` for each active dimension in order.

        ``chooser`` returns one of ``choices``; anything else is a :class:`BertnasError`.
        """
        return self._decode(chooser)[0]

    def _decode(self, chooser: Chooser) -> tuple[ArchConfig, list[str]]:
        asked: list[str] = []

        def pick(name: str, base: str) -> Any:
            choices = self._choices[base]
            if len(choices) == 1:
                return choices[0]
            value = chooser(name, choices)
            asked.append(name)
            return choices[self._position(base, name, value)]

        limits, rule = self.limits, self.spec.depth_rule
        hidden = pick("hidden_size", "hidden_size")
        kept = self._kept_by_depth[pick("depth", "depth")] if rule == "dynabert" else None
        width = self._width_shapes[pick("width", "width")] if self._width_shapes else None
        layers, previous = [], 1.0
        for i in range(limits.num_layers):
            if rule == "per_layer" and i not in self._always_keep:
                if not pick(f"keep.{i}", "keep"):
                    continue
            elif kept is not None and i not in kept:
                continue
            shape = {base: pick(f"{base}.{i}", base) for base in self._layer_bases}
            if width is not None:
                shape["heads"], shape["ffn_dim"] = width
            step = shape.pop("retention")
            previous = max(_MIN_RETENTION, round(previous * step, 6))
            layers.append(LayerConfig(index=i, retention=previous, **shape))
        arch = ArchConfig(hidden_size=hidden, layers=tuple(layers), backbone=self.backbone, **self.options)
        return arch, asked

    def _lookup(self, base: str, value: Any) -> int | None:
        """Where ``value`` stands among ``base``'s choices, or None if it is not one of them."""
        try:
            return self._positions[base].get(_choice_key(value))
        except TypeError:  # an unhashable value: never a choice
            return None

    def _position(self, base: str, name: str, value: Any) -> int:
        """Where ``value`` stands among the choices of dimension ``name`` (of ``base``); an error if nowhere."""
        position = self._lookup(base, value)
        if position is None:
            choices = self._choices[base]
            raise BertnasError(
                f"{name}={value!r} is not a choice of space {self.name!r}; choose one of {_listing(choices)}"
            )
        return position

    def from_values(self, values: Mapping[str, Any]) -> ArchConfig:
        """The config for a dimension-value dict (Optuna's ``trial.params``, or :meth:`to_values`).

        Only the dimensions the config activates are needed; values for inactive ones
        are ignored, unknown names are an error.
        """
        unknown = sorted(set(values) - set(self._by_name))
        if unknown:
            raise BertnasError(f"space {self.name!r} has no dimension {unknown[0]!r}{self._known_hint()}")

        def chooser(name: str, choices: tuple[Any, ...]) -> Any:
            if name not in values:
                raise BertnasError(f"no value for dimension {name!r} of space {self.name!r}")
            return values[name]

        return self.decode(chooser)

    def to_values(self, arch: ArchConfig) -> dict[str, Any]:
        """The full genotype of ``arch``: a value for every dimension, inactive ones included.

        Inactive dimensions (those of dropped layers) get a default, the backbone-like
        choice (largest size, one FFN, no bottleneck, full retention), so that a mutation
        which keeps the layer again has values to use. Raises :class:`BertnasError`
        naming the field when ``arch`` is not a config of this space.
        """
        values: dict[str, Any] = {}

        def put(name: str, base: str, value: Any, where: str) -> None:
            choices = self._choices[base]
            position = self._lookup(base, value)
            if position is not None:
                if len(choices) > 1:
                    values[name] = choices[position]
                return
            if len(choices) == 1:
                raise self._not_member(f"{where}={value!r}, but this space fixes it at {choices[0]!r}")
            raise self._not_member(f"{where}={value!r} is not one of {_listing(choices)}")

        for option in ("hidden_act", "norm"):
            wanted = self.options.get(option, getattr(ArchConfig, option))
            if getattr(arch, option) != wanted:
                raise self._not_member(f"{option}={getattr(arch, option)!r}, but this space uses {wanted!r}")
        put("hidden_size", "hidden_size", arch.hidden_size, "hidden_size")
        indices = [layer.index for layer in arch.layers]
        if indices[-1] >= self.limits.num_layers:
            raise self._not_member(
                f"layers[{len(indices) - 1}].index={indices[-1]}, but the backbone has {self.limits.num_layers} layers"
            )
        self._depth_values(indices, values)
        if self._width_shapes:
            self._width_values(arch, values)
        previous = 1.0
        for position, layer in enumerate(arch.layers):
            where = f"layers[{position}]"
            for base in self._layer_bases:
                if base != "retention":
                    put(f"{base}.{layer.index}", base, getattr(layer, base), f"{where}.{base}")
            step = self._retention_step(previous, layer.retention)
            if step is None:
                raise self._not_member(
                    f"{where}.retention={layer.retention} is not the previous layer's {previous} times "
                    f"a step of {_listing(self._choices['retention'])}"
                )
            put(f"retention.{layer.index}", "retention", step, f"{where}.retention")
            previous = max(_MIN_RETENTION, round(previous * step, 6))
        values = {dim.name: values[dim.name] if dim.name in values else _default(dim) for dim in self._dimensions}
        # A last safety net: the values must rebuild exactly this shape.
        rebuilt = self.from_values(values)
        if rebuilt.hidden_size != arch.hidden_size or rebuilt.layers != arch.layers:
            raise self._not_member("its layers do not match what the space builds from the same choices")
        return values

    def _depth_values(self, indices: list[int], values: dict[str, Any]) -> None:
        rule, num_layers = self.spec.depth_rule, self.limits.num_layers
        if rule == "all" and indices != list(range(num_layers)):
            raise self._not_member(f"it keeps layers {indices}; this space keeps all {num_layers} layers")
        if rule == "per_layer":
            missing = sorted(self._always_keep - set(indices))
            if missing:
                raise self._not_member(f"it drops layer {missing[0]}, which this space always keeps")
            for i in range(num_layers):
                if i not in self._always_keep:
                    values[f"keep.{i}"] = i in indices
        if rule == "dynabert":
            for m_d, kept in self._kept_by_depth.items():
                if list(kept) == indices:
                    if "depth" in self._by_name:
                        values["depth"] = m_d
                    return
            options = "; ".join(f"{m}: {list(kept)}" for m, kept in self._kept_by_depth.items())
            raise self._not_member(f"it keeps layers {indices}, not a DynaBERT depth of this space ({options})")

    def _width_values(self, arch: ArchConfig, values: dict[str, Any]) -> None:
        first = arch.layers[0]
        m_w = next((m for m, shape in self._width_shapes.items() if shape == (first.heads, first.ffn_dim)), None)
        if m_w is None:
            options = "; ".join(f"{m}: {h} heads, FFN {f}" for m, (h, f) in self._width_shapes.items())
            raise self._not_member(
                f"layers[0] has {first.heads} heads and FFN {first.ffn_dim}, not a DynaBERT width ({options})"
            )
        heads, ffn = self._width_shapes[m_w]
        for position, layer in enumerate(arch.layers):
            if (layer.heads, layer.ffn_dim) != (heads, ffn):
                raise self._not_member(
                    f"layers[{position}] has {layer.heads} heads and FFN {layer.ffn_dim}, but DynaBERT "
                    f"width {m_w} gives every layer {heads} heads and FFN {ffn}"
                )
        if "width" in self._by_name:
            values["width"] = m_w

    def _retention_step(self, previous: float, retention: float) -> float | None:
        target = round(float(retention), 6)
        # Largest step first: when rounding makes two steps equal, take the larger.
        for step in reversed(self._choices["retention"]):
            if max(_MIN_RETENTION, round(previous * step, 6)) == target:
                return step
        return None

    def contains(self, arch: ArchConfig) -> bool:
        """Whether ``arch`` is a config of this space (its shapes and options; not num_labels, vocab)."""
        try:
            self.to_values(arch)
        except BertnasError:
            return False
        return True

    def _not_member(self, detail: str) -> BertnasError:
        return BertnasError(f"the arch is not in space {self.name!r} for this backbone: {detail}")

    def _known_hint(self) -> str:
        names = [dim.name for dim in self._dimensions]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return f" (dimensions: {shown})" if names else " (it has no dimensions)"

    # ------------------------------------------------------------------ sampling and search
    def sample(self, rng: np.random.Generator | int) -> ArchConfig:
        """A random config: each active dimension uniform over its choices.

        Uniform per dimension, not over configs: with per-layer depth each droppable
        layer is kept with probability 1/2.
        """
        generator = _generator(rng)
        return self.decode(lambda name, choices: choices[int(generator.integers(len(choices)))])

    def sample_many(self, n: int, seed: int) -> list[ArchConfig]:
        """``n`` random configs, reproducible from ``seed`` (duplicates are possible)."""
        generator = np.random.default_rng(seed)
        return [self.sample(generator) for _ in range(n)]

    def suggest(self, trial: optuna.trial.BaseTrial) -> ArchConfig:
        """The config an Optuna trial suggests: one categorical parameter per active dimension.

        ``trial.params`` then holds exactly the active dimensions, and
        ``space.from_values(trial.params)`` gives the same config back.
        """
        return self.decode(lambda name, choices: trial.suggest_categorical(name, list(choices)))

    def encode(self, arch: ArchConfig) -> np.ndarray:
        """A float vector of length ``len(dimensions)`` for predictors and surrogate models.

        Entry k is ``index / (n_choices - 1)`` of the chosen value of dimension k (0 =
        smallest choice, 1 = largest), or -1.0 when dimension k is inactive in ``arch``
        (a dropped layer's dimensions).
        """
        values = self.to_values(arch)
        _, asked = self._decode(lambda name, choices: values[name])
        active = set(asked)
        vector = np.full(len(self._dimensions), -1.0)
        for k, dim in enumerate(self._dimensions):
            if dim.name in active:
                base = dim.name.split(".", 1)[0]
                vector[k] = self._position(base, dim.name, values[dim.name]) / (len(dim.choices) - 1)
        return vector

    def mutate(
        self,
        arch: ArchConfig,
        rng: np.random.Generator | int,
        prob: float = 0.1,
        groups: frozenset[str] | set[str] | None = None,
    ) -> ArchConfig:
        """Change each dimension (inactive ones included) with probability ``prob`` to another choice.

        With ``groups`` (names of :data:`DIMENSION_GROUPS`), only the dimensions of those groups
        may change: a move along one compression family's own axes (``{"retention"}`` is a
        PoWER-BERT move, ``{"depth", "heads", "ffn_dim"}`` a DynaBERT one).
        """
        if not 0.0 <= prob <= 1.0:
            raise BertnasError(f"mutation probability {prob} must be between 0 and 1")
        if groups is not None:
            unknown = set(groups) - set(DIMENSION_GROUPS)
            if unknown:
                raise BertnasError(
                    f"unknown dimension group {sorted(unknown)[0]!r}; choose from {', '.join(DIMENSION_GROUPS)}"
                )
        generator = _generator(rng)
        values = self.to_values(arch)
        for dim in self._dimensions:
            if groups is not None and dimension_group(dim.name) not in groups:
                continue
            if generator.random() < prob:
                others = [choice for choice in dim.choices if not _same(choice, values[dim.name])]
                values[dim.name] = others[int(generator.integers(len(others)))]
        return self.from_values(values)

    def groups(self) -> tuple[str, ...]:
        """The dimension groups (:data:`DIMENSION_GROUPS`) this space varies, in that order."""
        present = {dimension_group(dim.name) for dim in self._dimensions}
        return tuple(group for group in DIMENSION_GROUPS if group in present)

    def restrict(self, arch: ArchConfig, released: frozenset[str] | set[str]) -> ArchConfig:
        """``arch`` with every dimension whose group is not in ``released`` set back to its
        backbone-like value (largest size, every layer kept, one FFN, no bottleneck, full
        retention): the sub-space a progressive-shrinking stage trains.

        Groups are the dimension names before the layer index (``hidden_size``, ``heads``,
        ``qk_dim``, ``v_dim``, ``ffn_dim``, ``ffn_stack``, ``bottleneck``, ``retention``,
        ``width``), with ``depth`` for both ``depth`` and the per-layer ``keep.{i}``.
        """
        unknown = set(released) - set(DIMENSION_GROUPS)
        if unknown:
            raise BertnasError(
                f"unknown dimension group {sorted(unknown)[0]!r}; choose from {', '.join(DIMENSION_GROUPS)}"
            )
        values = self.to_values(arch)
        for dim in self._dimensions:
            if dimension_group(dim.name) not in released:
                values[dim.name] = _default(dim)
        return self.from_values(values)

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: np.random.Generator | int) -> ArchConfig:
        """Uniform crossover: each dimension's value from ``a`` or ``b`` with equal probability."""
        generator = _generator(rng)
        values_a, values_b = self.to_values(a), self.to_values(b)
        child = {
            dim.name: values_a[dim.name] if generator.random() < 0.5 else values_b[dim.name] for dim in self._dimensions
        }
        return self.from_values(child)

    def enumerate(self, limit: int = 100_000) -> Iterator[ArchConfig]:
        """Every config once, depth first in choice order; :class:`BertnasError` if more than ``limit``."""
        size = self.size()
        if size > limit:
            raise BertnasError(
                f"space {self.name!r} has {size} configs, more than the limit {limit}; "
                "sample it instead, or raise the limit"
            )
        return self._walk()

    def _walk(self) -> Iterator[ArchConfig]:
        # Odometer over the define-by-run tree: `prefix` holds the choice index taken at each
        # question asked so far; after each config, advance the deepest question that still
        # has choices left and forget the later ones (they may not even be asked any more).
        prefix: list[int] = []
        while True:
            counts: list[int] = []
            yield self.decode(_Replay(prefix, counts))
            position = len(counts) - 1
            while position >= 0 and prefix[position] + 1 == counts[position]:
                position -= 1
            if position < 0:
                return
            prefix[position] += 1
            del prefix[position + 1 :]

    # ------------------------------------------------------------------ reference points
    def largest(self) -> ArchConfig:
        """The space's most expensive config: every layer, largest choices, most stacked FFNs,
        no bottleneck (if allowed), full retention. The top of the sandwich rule."""
        return self.decode(lambda name, choices: choices[-1])

    def smallest(self) -> ArchConfig:
        """The space's cheapest config: fewest layers, smallest choices, one FFN, the narrowest
        bottleneck (if any), the smallest retention step in every layer. The bottom of the sandwich."""
        return self.decode(lambda name, choices: choices[0])

    def full(self) -> ArchConfig:
        """The backbone itself (every layer at full size, one FFN, no bottleneck, retention 1).

        Not necessarily a config of the space (a space may, e.g., always use a bottleneck).
        """
        return full_arch(self.limits, backbone=self.backbone, **self.options)


#: The groups :meth:`SearchSpace.restrict` releases dimensions by.
DIMENSION_GROUPS = ("hidden_size", "depth", "width", *LAYER_DIMS)


def dimension_group(name: str) -> str:
    """The group of dimension ``name``: ``heads.3`` -> ``heads``, ``keep.2`` -> ``depth``."""
    base = name.split(".", 1)[0]
    return "depth" if base == "keep" else base


class _Replay:
    """A chooser that replays the choice indices in ``prefix`` and takes the first choice beyond it,
    recording how many choices each question had in ``counts``."""

    def __init__(self, prefix: list[int], counts: list[int]) -> None:
        self.prefix, self.counts = prefix, counts

    def __call__(self, name: str, choices: tuple[Any, ...]) -> Any:
        position = len(self.counts)
        self.counts.append(len(choices))
        if position == len(self.prefix):
            self.prefix.append(0)
        return choices[self.prefix[position]]


def _choice_key(value: Any) -> tuple[Any, ...]:
    """A dict key under which two values are the same choice exactly when ``same_value`` says so:
    None only as None, booleans apart from numbers (True is not 1 here), numbers by value."""
    if value is None:
        return ("none",)
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    return ("value", value)


def _default(dim: Dimension) -> Any:
    """The value an inactive dimension gets: the backbone-like choice (the schema's ``inactive``;
    the largest for the global and depth dimensions)."""
    field = schema.BY_NAME.get(dim.name.split(".", 1)[0])
    return dim.choices[0] if field is not None and field.inactive == "smallest" else dim.choices[-1]


def _listing(choices: tuple[Any, ...]) -> str:
    return ", ".join("null" if choice is None else str(choice) for choice in choices)


def _generator(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise BertnasError(f"rng must be a numpy Generator or an integer seed, got {type(rng).__name__}")
