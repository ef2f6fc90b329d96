"""The layer schema: each per-layer dimension and each operation of a layer, written once.

What a kept layer *is* to bertnas lives here and nowhere else. The rest of the project
derives from it:

- ``arch.py`` validates, bounds (``check_fits``) and serialises a :class:`~bertnas.arch.LayerConfig`
  field by field from :data:`FIELDS` (LayerConfig itself is a plain dataclass, checked
  against :data:`FIELDS` when ``arch.py`` is imported);
- ``space/spec.py`` and ``space/space.py`` read, resolve, order and default a space file's
  per-layer choices from :data:`DIMENSIONS`;
- ``cost.py`` counts a layer's parameters and MACs from :func:`layer_ops`, compiled once
  into plain Python (:func:`layer_params`, :func:`layer_macs`, :func:`layer_mac_parts`);
- ``hardware/kernels.py`` lists the kernel calls of one layer or of 100k layers at once
  (numpy columns) from :func:`layer_ops`;
- ``hardware/onnx_graph.py`` builds a subnet's ONNX graph by walking :func:`layer_ops`
  and dispatching each op by name.

``model/functional.py`` stays the hand-written reference (it ships inside exported model
directories and imports nothing else from bertnas). The tests hold this schema to it:
parameter counts against ``CompactBert``'s real tensors and MACs against fvcore's trace
(``tests/test_cost.py``), and the op list against the calls functional.py actually makes,
in order, with their shapes (``tests/test_schema.py``).

A leaf module: it imports nothing from bertnas but the error type and the kept-token rule,
and no torch.

Fields
------
Each :class:`Field` is one field of ``LayerConfig`` (and of a layer in arch JSON):

``name``
    The LayerConfig field, the arch JSON key and the space file's ``layer:`` key.
``kind``
    What its values are, which decides how it is validated, bounded, written to JSON
    and written in a space file (see :data:`KINDS`):

    - ``index``: which backbone layer; a non-negative integer, increasing along the
      layers; not a search dimension (the space's depth rule picks the layers);
    - ``size``: a positive integer; a space file gives fractions of ``unit`` (or
      ``{absolute: [...]}``);
    - ``count``: a positive integer; a space file gives counts (``ffn_stack: [1, 2]``);
    - ``optional_size``: a size or null (none of it); null sorts after every size,
      since no bottleneck is the full width;
    - ``step``: a number in (0, 1], non-increasing along the layers; a space file gives
      per-layer steps whose running product is the value (retention);
    - ``flag``: true or false.
``doc``
    One line: what it means.
``default``
    The value a layer has when arch JSON leaves it out, which is also the backbone's
    own (``FULL``: no default, every layer must say; a space file's default is then the
    backbone's size, fraction 1.0). A space file that does not list the dimension fixes
    it here.
``limit``, ``limit_offset``, ``limit_what``
    The :class:`~bertnas.arch.ArchLimits` field that bounds it in ``check_fits`` (plus
    ``limit_offset``), and the word errors use for that bound. For an ``optional_size``
    the limit is an extra parameter of the supernet (0: it has none).
``unit``, ``unit_what``
    The ArchLimits field a space file's fraction is resolved against, and its word in
    errors (None: the space file writes values, not fractions).
``inactive``
    ``"largest"`` or ``"smallest"``: the choice a dropped layer's dimension gets in
    ``SearchSpace.to_values`` (the backbone-like one: largest size, one FFN, no
    bottleneck, full retention, a flag's true).
``omit_default``
    Written to arch JSON only when it differs from ``default``. Every field added after
    the first release must set it: :meth:`ArchConfig.hash` hashes the JSON, and caches,
    studies and committed results key on existing hashes.
``choice_word``, ``null``
    Words for space-file errors: what a ``count`` counts; what null means for an
    ``optional_size``.

The operations
--------------
:func:`layer_ops` lists what one layer computes, top to bottom, as :class:`Op` entries:
a stable ``name``, the kernel ``family`` (:data:`bertnas.hardware.kernels.FAMILIES`), the
family's ``shape``, how many times it runs (``count``; ``repeat`` names a block of
consecutive ops that runs ``count`` times in a row), a ``when`` condition, its
``params`` and ``macs`` per call and the ``part`` of ``cost.LayerCost`` its MACs belong
to; a linear op also says whether it has a ``bias``. It is written over quantities that
may be plain ints (one layer), numpy columns (many layers of many configs) or symbols
(compiling the cost formulas), so the same lines serve all three: conditions are written
with ``&`` and :func:`where`, derived quantities are named with :func:`let`, and a family
the config chooses (norm, activation) is a string for one layer and a :class:`Choice` of
masked families for many. :func:`run_order` gives the calls of one layer in the order they
run (the stacked FFN block unrolled).

Adding a dimension
------------------
1. Declare its :class:`Field` in :data:`FIELDS` (a new field needs ``omit_default=True``)
   and, if it changes what a layer computes, use it in :func:`layer_ops`; validation, arch
   JSON, ``check_fits``, space files, the cost model, kernel lists, latency predictions and
   the ONNX latency graph follow.
2. Add the field to ``LayerConfig`` (``arch.py``) and to the exported model's ``LayerSpec``
   (``model/hf.py``, which cannot import this module); both are checked against :data:`FIELDS`.
3. If it changes the weights: build them in ``model/params.py`` (the compact model) and
   slice them in ``supernet/elastic.py``; ``tests/test_schema.py`` fails until the op list
   and ``model/functional.py`` agree.
4. Place its group in the progressive shrinking stages (``training/strategies.py``).
"""

from __future__ import annotations

import operator
import re
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from bertnas.errors import BertnasError
from bertnas.retention_rule import RETENTION_DECIMALS

# ---------------------------------------------------------------------- values


def is_int(value: Any) -> bool:
    """A Python integer that is not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    """Choice equality that keeps None, booleans and numbers apart (True is not 1 here)."""
    if a is None or b is None:
        return a is b
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def order_key(value: Any) -> tuple[int, Any]:
    """Sort key of a dimension's choices, smallest compute first: null (none of a reduction,
    i.e. the full size) after every size, False before True."""
    return (1, 0) if value is None else (0, value)


#: The largest size any field may have (far above every real BERT's), so a hostile or
#: mistyped config is refused before anything sized by it is allocated.
MAX_SIZE = 1 << 20


class _Full:
    def __repr__(self) -> str:
        return "FULL"


#: A field's default when it has none: arch JSON must give it; a space file's default
#: choice is then the backbone's own size (fraction 1.0).
FULL: Any = _Full()

#: What a field's values are; see the module docstring.
KINDS = ("index", "size", "count", "optional_size", "step", "flag")

# ---------------------------------------------------------------------- fields


@dataclass(frozen=True)
class Field:
    """One field of a layer; see the module docstring for every attribute."""

    name: str
    kind: str
    doc: str
    default: Any = FULL
    limit: str | None = None
    limit_offset: int = 0
    limit_what: str = ""
    unit: str | None = None
    unit_what: str = ""
    inactive: str = "largest"
    omit_default: bool = False
    choice_word: str = ""
    null: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")
        if self.inactive not in ("largest", "smallest"):
            raise ValueError(f"field {self.name}: inactive must be 'largest' or 'smallest'")

    # ------------------------------------------------------------------ derived facts
    @property
    def required(self) -> bool:
        """Arch JSON must give it (no default)."""
        return self.default is FULL

    @property
    def searched(self) -> bool:
        """A search dimension (a space file may list it)."""
        return self.kind != "index"

    @property
    def fractions(self) -> bool:
        """A space file's plain list holds fractions of :attr:`unit`."""
        return self.unit is not None

    @property
    def space_default(self) -> tuple[Any, ...]:
        """The choices of a space file that does not list it."""
        return (1.0,) if self.default is FULL else (self.default,)

    # ------------------------------------------------------------------ arch checks
    def check(self, value: Any, where: str) -> None:
        """Raise :class:`BertnasError` unless ``value`` is a valid value (``where``: ``layers[2]``)."""
        name = f"{where}.{self.name}"
        kind = self.kind
        if kind == "index":
            if not is_int(value) or value < 0:
                raise BertnasError(f"{name}={value!r} must be a non-negative integer")
        elif kind == "step":
            if not is_number(value) or not 0.0 < value <= 1.0:
                raise BertnasError(f"{name}={value!r} must be a number in (0, 1]")
        elif kind == "flag":
            if not isinstance(value, bool):
                raise BertnasError(f"{name}={value!r} must be true or false")
        elif not (kind == "optional_size" and value is None):
            check_positive_int(name, value)

    def check_order(self, previous: Any, value: Any, where: str) -> None:
        """Raise unless ``value`` may follow the previous kept layer's ``previous`` (None: first layer)."""
        if previous is None:
            return
        if self.kind == "index" and value <= previous:
            raise BertnasError(
                f"{where}.{self.name}={value} must be greater than the previous layer's "
                f"{previous}: list kept layers in backbone order, each once"
            )
        if self.kind == "step" and value > previous + 1e-12:
            raise BertnasError(
                f"{where}.{self.name}={value} exceeds the previous layer's {previous}: "
                f"{self.name} must be non-increasing"
            )

    def check_fits(self, value: Any, limits: Any, where: str, backbone_name: str) -> None:
        """Raise unless ``value`` fits ``limits`` (an :class:`~bertnas.arch.ArchLimits`)."""
        if self.limit is None or value is None:
            return
        bound = getattr(limits, self.limit) + self.limit_offset
        name = f"{where}.{self.name}"
        if self.kind == "optional_size":
            if bound == 0:
                raise BertnasError(
                    f"{name}={value}: this supernet has no {self.name} parameters; build it with "
                    f"{self.name}s enabled or set {self.name} to null"
                )
            if value > bound:
                raise BertnasError(f"{name}={value} exceeds the supernet's {self.limit_what} {bound}")
        elif value > bound:
            raise BertnasError(f"{name}={value} exceeds the {backbone_name}'s {self.limit_what} {bound}")

    def to_json(self, value: Any) -> Any:
        """The value as arch JSON stores it (retention rounded to its stored precision)."""
        return round(float(value), RETENTION_DECIMALS) if self.kind == "step" else value

    def written(self, value: Any) -> bool:
        """Whether arch JSON writes the value (see ``omit_default``)."""
        return not (self.omit_default and same_value(value, self.default))

    # ------------------------------------------------------------------ space files
    def choice_error(self, value: Any, absolute: bool) -> str | None:
        """What is wrong with ``value`` as a space-file choice (``absolute``: under ``{absolute: ...}``), or None."""
        if value is None:
            if self.kind == "optional_size":
                return None
            return "null is only a choice for " + " or ".join(f"{f.name} ({f.null})" for f in NULLABLE)
        if self.kind == "flag":
            return None if isinstance(value, bool) else f"{value!r} is not true or false"
        if self.kind == "count" or absolute:
            if not is_int(value) or value < 1:
                return f"{value!r} is not a positive integer ({self.choice_word or 'an absolute size'})"
            return None
        if not is_number(value):
            return f"{value!r} is not a number; expected a fraction in (0, 1]"
        if value > 1 and self.fractions:
            return (
                f"{value} is more than 1; plain lists hold fractions of the backbone's size, "
                f"write {{absolute: [{value}, ...]}} to give sizes in units"
            )
        if not 0 < value <= 1:
            return f"{value} is not a fraction in (0, 1]"
        return None

    # ------------------------------------------------------------------ the op list's view
    def read(self, value: Any) -> Any:
        """The value as :func:`layer_ops` reads it: an absent optional size is 0."""
        return 0 if value is None else value


#: Every field of a layer, in LayerConfig's (and arch JSON's) order.
FIELDS: tuple[Field, ...] = (
    Field(
        "index",
        "index",
        "which backbone layer this is (kept layers are listed in backbone order)",
        limit="num_layers",
        limit_offset=-1,
        limit_what="last layer index",
    ),
    Field(
        "heads",
        "size",
        "attention heads",
        limit="num_heads",
        limit_what="heads",
        unit="num_heads",
        unit_what="heads",
    ),
    Field(
        "qk_dim",
        "size",
        "query/key width per head",
        limit="head_dim",
        limit_what="head dim",
        unit="head_dim",
        unit_what="head dim",
    ),
    Field(
        "v_dim",
        "size",
        "value width per head",
        limit="head_dim",
        limit_what="head dim",
        unit="head_dim",
        unit_what="head dim",
    ),
    Field(
        "ffn_dim",
        "size",
        "FFN width (every stacked FFN of the layer has it)",
        limit="ffn_dim",
        limit_what="FFN dim",
        unit="ffn_dim",
        unit_what="FFN dim",
    ),
    Field(
        "ffn_stack",
        "count",
        "FFNs in a row (MobileBERT); 1 is the backbone's own",
        default=1,
        limit="max_ffn_stack",
        limit_what="max FFN stack",
        inactive="smallest",
        choice_word="a number of stacked FFNs",
    ),
    Field(
        "bottleneck",
        "optional_size",
        "MobileBERT's inner width: attention and FFNs run at it between two projections (null: none)",
        default=None,
        limit="max_bottleneck",
        limit_what="max bottleneck",
        unit="hidden_size",
        unit_what="hidden size",
        null="no bottleneck",
    ),
    Field(
        "retention",
        "step",
        "share of the input's tokens kept after this layer's attention (PoWER-BERT); non-increasing",
        default=1.0,
    ),
    Field(
        "attention_out_bias",
        "flag",
        "whether the attention output projection has a bias (false: it is left out)",
        default=True,
        omit_default=True,  # added after the first release: existing configs keep their JSON and hash
    ),
)

#: The per-layer search dimensions (every field but ``index``), in the order a space walks them.
DIMENSIONS: tuple[Field, ...] = tuple(f for f in FIELDS if f.searched)
#: The residual width: one value for the whole subnet, resolved like a per-layer size.
HIDDEN_SIZE = Field("hidden_size", "size", "the residual width h", unit="hidden_size", unit_what="hidden size")
#: Fields by name, the global hidden size included.
BY_NAME: dict[str, Field] = {f.name: f for f in (HIDDEN_SIZE, *FIELDS)}
#: Fields whose choices may be null.
NULLABLE: tuple[Field, ...] = tuple(f for f in FIELDS if f.kind == "optional_size")

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
DIMENSION_NAMES: tuple[str, ...] = tuple(f.name for f in DIMENSIONS)
_read_fields = operator.attrgetter(*FIELD_NAMES)
_CONVERTED = tuple(f for f in FIELDS if f.kind == "step")
# Common valid values pass these without a call to Field.check (which accepts exactly the same
# values, int subclasses and ints for steps included, and names what is wrong).
_QUICK = {
    "index": lambda v: type(v) is int and v >= 0,
    "size": lambda v: type(v) is int and 0 < v <= MAX_SIZE,
    "count": lambda v: type(v) is int and 0 < v <= MAX_SIZE,
    "optional_size": lambda v: v is None or (type(v) is int and 0 < v <= MAX_SIZE),
    "step": lambda v: type(v) is float and 0.0 < v <= 1.0,
    "flag": lambda v: v is True or v is False,
}
_QUICK_CHECKS = tuple(_QUICK[f.kind] for f in FIELDS)
_ORDERED = tuple(i for i, f in enumerate(FIELDS) if f.kind in ("index", "step"))
_OMITTED = tuple(f for f in FIELDS if f.omit_default)


def check_layers(layers: Sequence[Any]) -> None:
    """Validate every field of every layer (:meth:`Field.check`) and the order rules between
    consecutive layers (:meth:`Field.check_order`); raise :class:`BertnasError` naming the field."""
    previous = None
    for position, layer in enumerate(layers):
        values = _read_fields(layer)
        for spec, quick, value in zip(FIELDS, _QUICK_CHECKS, values, strict=True):
            if not quick(value):  # the full check, which names what is wrong
                spec.check(value, f"layers[{position}]")
        if previous is not None:
            for i in _ORDERED:
                FIELDS[i].check_order(previous[i], values[i], f"layers[{position}]")
        previous = values


def layer_to_json(layer: Any) -> dict[str, Any]:
    """A layer's arch JSON object: every field by :meth:`Field.to_json`, those :meth:`Field.written`
    leaves out omitted (one C-level read of the fields; ``to_dict`` and ``hash`` run often)."""
    data = dict(zip(FIELD_NAMES, _read_fields(layer), strict=True))
    for spec in _CONVERTED:
        data[spec.name] = spec.to_json(data[spec.name])
    for spec in _OMITTED:
        if same_value(data[spec.name], spec.default):
            del data[spec.name]
    return data


def check_positive_int(name: str, value: Any) -> None:
    """Raise unless ``value`` is a positive integer no larger than :data:`MAX_SIZE`."""
    if not is_int(value) or value < 1:
        raise BertnasError(f"{name}={value!r} must be a positive integer")
    if value > MAX_SIZE:
        raise BertnasError(f"{name}={value} is larger than any BERT's ({MAX_SIZE}); check the config")


def check_layer_class(cls: type) -> None:
    """Raise unless dataclass ``cls`` (LayerConfig, or the exported model's LayerSpec with
    ``index`` left out) has exactly these fields, in order, with these defaults."""
    import dataclasses

    fields = dataclasses.fields(cls)
    expected = [f for f in FIELDS if f.name in {g.name for g in fields}]
    names = [f.name for f in fields]
    if names != [f.name for f in expected] or not set(DIMENSION_NAMES) <= set(names):
        raise TypeError(f"{cls.__name__} fields {names} do not match bertnas.schema.FIELDS {list(FIELD_NAMES)}")
    for ours, theirs in zip(expected, fields, strict=True):
        default = FULL if theirs.default is dataclasses.MISSING else theirs.default
        if not (default is ours.default or same_value(default, ours.default)):
            raise TypeError(f"{cls.__name__}.{ours.name} defaults to {default!r}, the schema to {ours.default!r}")


# ---------------------------------------------------------------------- the operations
#: The parts of ``cost.LayerCost`` a layer's MACs are split into.
MAC_PARTS = ("attention_proj", "attention_core", "ffn", "bottleneck")


class Op(NamedTuple):
    """One operation of a layer; see the module docstring."""

    name: str
    family: Any  # a kernel family, or a Choice of families (norm, activation) over many configs
    shape: tuple[Any, ...]
    count: Any = 1
    when: Any = True
    params: Any = 0
    macs: Any = 0
    part: str | None = None
    repeat: str | None = None
    bias: Any = False  # linear only


class Choice(NamedTuple):
    """A family each config chooses (norm, activation), listed for many configs at once:
    ``(family, mask of the layers whose config uses it)`` for every family."""

    options: tuple[tuple[str, Any], ...]


#: What :func:`layer_ops` reads: the residual width ``h``, the tokens entering (``n_in``)
#: and kept after attention (``n_out``), the config's ``norm`` and ``act`` families, and
#: every dimension by name (:meth:`Field.read`: an absent bottleneck is 0).
LayerInputs = namedtuple("LayerInputs", ("h", "n_in", "n_out", "norm", "act", *DIMENSION_NAMES))


def layer_inputs(layer: Any, h: int, n_in: int, n_out: int, norm: str, act: str) -> Any:
    """:data:`LayerInputs` of one layer (a LayerConfig), in plain Python values."""
    return LayerInputs(h, n_in, n_out, norm, act, *(f.read(getattr(layer, f.name)) for f in DIMENSIONS))


# The quantities layer_ops names with let() while _compile traces it (None otherwise).
_definitions: list[tuple[str, str]] | None = None


def let(name: str, value: Any) -> Any:
    """``value``, named: compiled formulas compute a named quantity once (plain values and
    columns pass through)."""
    if isinstance(value, _Symbol) and _definitions is not None:
        _definitions.append((name, value.text))
        return _Symbol(name)
    return value


def where(condition: Any, a: Any, b: Any) -> Any:
    """``a`` where ``condition`` holds, else ``b``: for plain values, numpy columns and symbols alike."""
    if isinstance(condition, _Symbol):
        return _Symbol(f"({_text(a)} if {condition.text} else {_text(b)})")
    if isinstance(condition, np.ndarray):
        return np.where(condition, a, b)
    return a if condition else b


def _linear(
    name: str,
    tokens: Any,
    n_in: Any,
    n_out: Any,
    part: str,
    *,
    bias: Any = True,
    count: Any = 1,
    when: Any = True,
    repeat: str | None = None,
) -> Op:
    """``tokens x n_in -> tokens x n_out``: weight and bias, one MAC per weight and token."""
    return Op(
        name,
        "linear",
        (tokens, n_in, n_out),
        count=count,
        when=when,
        params=n_in * n_out + n_out * bias,
        macs=tokens * n_in * n_out,
        part=part,
        repeat=repeat,
        bias=bias,
    )


def _norm(name: str, family: Any, tokens: Any, width: Any, when: Any = True) -> Op:
    """LayerNorm or NoNorm over ``width`` channels: a weight and a bias per channel."""
    return Op(name, family, (tokens, width), when=when, params=2 * width)


def layer_ops(d: Any) -> list[Op]:
    """Every operation of one kept layer, in the order ``model/functional.py`` runs them.

    ``d`` is a :data:`LayerInputs` (plain values, numpy columns or symbols).
    """
    h, n_in, n_out = d.h, d.n_in, d.n_out
    a, k, v, f, s = d.heads, d.qk_dim, d.v_dim, d.ffn_dim, d.ffn_stack
    has_bottleneck = let("has_bottleneck", d.bottleneck > 0)
    w = let("w", where(has_bottleneck, d.bottleneck, h))  # the inner width attention and FFNs run at
    dropped = let("dropped", n_out < n_in)  # PoWER-BERT drops tokens after this layer's attention
    return [
        # MobileBERT bottleneck: h -> w. Without one the inner stream u is the residual stream x.
        _linear("bottleneck_in", n_in, h, w, "bottleneck", when=has_bottleneck),
        # Multi-head self-attention over the n_in tokens entering the layer.
        _linear("query", n_in, w, a * k, "attention_proj"),
        _linear("key", n_in, w, a * k, "attention_proj"),
        _linear("value", n_in, w, a * v, "attention_proj"),
        Op("scores", "attn_scores", (n_in, a, k), macs=n_in * n_in * a * k, part="attention_core"),  # Q K^T / sqrt(k)
        Op("softmax", "softmax", (n_in, a)),  # with the additive padding mask
        Op("context", "attn_context", (n_in, a, v), macs=n_in * n_in * a * v, part="attention_core"),  # probs V
        _linear("attention_out", n_in, a * v, w, "attention_proj", bias=d.attention_out_bias),
        Op("attention_residual", "add", (n_in, w)),  # u + attention(u)
        _norm("attention_norm", d.norm, n_in, w),
        # Token extraction: keep the n_out most significant tokens of u (and of x with a bottleneck).
        Op("select", "token_select", (n_in, a), when=dropped),
        Op("gather", "gather", (n_out, w), when=dropped),
        Op("gather_residual", "gather", (n_out, h), when=dropped & has_bottleneck),
        # s FFNs in a row on the n_out kept tokens: u = u + down(act(up(u))); the last one's norm follows.
        _linear("ffn_up", n_out, w, f, "ffn", count=s, repeat="ffn"),
        Op("ffn_act", d.act, (n_out, f), count=s, repeat="ffn"),
        _linear("ffn_down", n_out, f, w, "ffn", count=s, repeat="ffn"),
        Op("ffn_residual", "add", (n_out, w), count=s, repeat="ffn"),
        _norm("ffn_norm", d.norm, n_out, w),
        # Bottleneck out: w -> h, residual over the whole block: x = Norm(x + W_out u).
        _linear("bottleneck_out", n_out, w, h, "bottleneck", when=has_bottleneck),
        Op("bottleneck_residual", "add", (n_out, h), when=has_bottleneck),
        _norm("bottleneck_norm", d.norm, n_out, h, when=has_bottleneck),
    ]


def active_ops(d: Any) -> list[Op]:
    """:func:`layer_ops` of plain values, only those the layer makes (``when`` holds)."""
    return [op for op in layer_ops(d) if op.when]


def run_order(ops: Sequence[Op]) -> list[Op]:
    """The calls of one layer in the order they run: ``ops`` are plain values, those the layer
    makes (:func:`active_ops`); each repeated block (consecutive ops sharing a ``repeat``) is
    unrolled ``count`` times."""
    order: list[Op] = []
    position = 0
    while position < len(ops):
        op = ops[position]
        if op.repeat is None:
            order.extend([op] * op.count)
            position += 1
            continue
        end = position
        while end < len(ops) and ops[end].repeat == op.repeat:
            end += 1
        block = ops[position:end]
        if any(other.count != op.count for other in block):
            raise ValueError(f"repeated block {op.repeat!r}: every op must have the same count")
        for _ in range(op.count):
            order.extend(block)
        position = end
    return order


# ---------------------------------------------------------------------- compiled formulas
class _Symbol:
    """A named quantity: :func:`layer_ops` over symbols writes its formulas as Python source."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def _binary(self, other: Any, operator: str, reverse: bool = False) -> Any:
        if operator == "*":
            for one, rest in ((self, other), (other, self)):
                if not isinstance(one, _Symbol) and one is not False and one == 1:
                    return rest
        left, right = (_text(other), self.text) if reverse else (self.text, _text(other))
        return _Symbol(f"({left} {operator} {right})")

    def __add__(self, other: Any) -> Any:
        return self._binary(other, "+")

    def __radd__(self, other: Any) -> Any:
        return self._binary(other, "+", reverse=True)

    def __mul__(self, other: Any) -> Any:
        return self._binary(other, "*")

    def __rmul__(self, other: Any) -> Any:
        return self._binary(other, "*", reverse=True)

    def __and__(self, other: Any) -> Any:
        return self._binary(other, "and")

    def __rand__(self, other: Any) -> Any:
        return self._binary(other, "and", reverse=True)

    def __lt__(self, other: Any) -> Any:
        return self._binary(other, "<")

    def __gt__(self, other: Any) -> Any:
        return self._binary(other, ">")

    def __bool__(self) -> bool:
        raise TypeError("a symbol has no truth value; write conditions with where() and masks")


def _text(value: Any) -> str:
    return value.text if isinstance(value, _Symbol) else repr(value)


def _term(op: Op, per_call: Any, condition: bool = True) -> str | None:
    """``count * per_call`` (times ``when`` if ``condition``) as source, or None where it is 0."""
    if not isinstance(per_call, _Symbol) and per_call == 0:
        return None
    value = per_call
    for factor in (op.count, op.when) if condition else (op.count,):
        if factor is not True:
            value = _Symbol(f"({_text(factor)} * {_text(value)})") if isinstance(factor, _Symbol) else factor * value
    return _text(value)


def _trace() -> tuple[list[Op], list[tuple[str, str]]]:
    """:func:`layer_ops` over symbols, and the quantities it named with :func:`let`."""
    global _definitions
    symbols = LayerInputs(
        **{name: _Symbol(name) for name in ("h", "n_in", "n_out", "norm", "act")},
        **{f.name: _Symbol(f.name) for f in DIMENSIONS},
    )
    _definitions = []
    try:
        return layer_ops(symbols), _definitions
    finally:
        _definitions = None


def _uses(text: str, word: str) -> bool:
    return re.search(rf"\b{word}\b", text) is not None


def _function(name: str, arguments: str, body: list[str], definitions: list[tuple[str, str]]) -> Callable[..., Any]:
    """Compile ``def name(arguments)``: it reads the layer fields the ``body`` lines use (an absent
    optional size as 0), computes the named quantities they need, then runs ``body``; the source
    is kept as the function's ``.source``."""
    text = "\n".join(body)
    needed = [(target, value) for target, value in definitions if _uses(text, target)]
    for target, value in reversed(definitions):  # what the needed quantities need in turn
        if (target, value) not in needed and any(_uses(other, target) for _, other in needed):
            needed.append((target, value))
    needed = [definition for definition in definitions if definition in needed]
    used = text + " ".join(value for _, value in needed)
    for word in ("n_in", "n_out", "norm", "act"):
        if _uses(used, word) and not _uses(arguments, word):
            raise ValueError(f"{name}: the formula depends on {word}")
    lines = [f"def {name}({arguments}):"]
    for field in DIMENSIONS:  # read only the fields used
        if _uses(used, field.name):
            lines.append(f"    {field.name} = layer.{field.name}")
            if field.kind == "optional_size":
                lines.append(f"    {field.name} = 0 if {field.name} is None else {field.name}")
    lines += [f"    {target} = {value}" for target, value in needed]
    lines += [f"    {line}" for line in body]
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<bertnas.schema.{name}>", "exec"), namespace)  # noqa: S102 (source built above)
    function = namespace[name]
    function.source = source
    return function


def _compile_sums(name: str, tokens: bool, sums: dict[str, Callable[[Op], Any]]) -> Callable[..., Any]:
    """``name(layer, h[, n_in, n_out])`` returning one sum per entry of ``sums`` (a single value
    if there is one), each ``sum(op.count * op.when * per_call(op))`` over :func:`layer_ops`.
    A single sum adds the terms of each condition under one ``if`` (the hot path: ``count_macs``)."""
    ops, definitions = _trace()
    arguments = "layer, h, n_in, n_out" if tokens else "layer, h"
    if len(sums) == 1:
        (per_call,) = sums.values()
        by_condition: dict[str | None, list[str]] = {}
        for op in ops:
            term = _term(op, per_call(op), condition=False)
            if term is not None:
                by_condition.setdefault(None if op.when is True else _text(op.when), []).append(term)
        body = [f"total = {' + '.join(by_condition.pop(None, ['0']))}"]
        for condition, terms in by_condition.items():
            body += [f"if {condition}:", f"    total += {' + '.join(terms)}"]
        return _function(name, arguments, [*body, "return total"], definitions)
    results = []
    for per_call in sums.values():
        terms = [term for op in ops if (term := _term(op, per_call(op))) is not None]
        results.append(" + ".join(terms) or "0")
    return _function(name, arguments, ["return (" + ", ".join(results) + ",)"], definitions)


def _compile_calls(name: str) -> Callable[..., Any]:
    """``name(layer, h, n_in, n_out, norm, act)`` returning ``(family, shape, count)`` of every op
    the layer makes, in :func:`layer_ops` order (:func:`active_ops` without building ops)."""
    ops, definitions = _trace()
    body, group, condition = ["calls = []"], [], None

    def flush() -> None:
        if group:
            listing = f"calls += [{', '.join(group)}]"
            body.append(listing if condition is None else f"if {condition}:\n        {listing}")
            group.clear()

    for op in ops:
        when = None if op.when is True else _text(op.when)
        if when != condition:
            flush()
            condition = when
        shape = "(" + "".join(f"{_text(x)}, " for x in op.shape) + ")"
        group.append(f"({_text(op.family)}, {shape}, {_text(op.count)})")
    flush()
    body.append("return calls")
    return _function(name, "layer, h, n_in, n_out, norm, act", body, definitions)


#: ``layer_params(layer, h)``: parameters of one layer (a LayerConfig) at residual width ``h``.
layer_params = _compile_sums("layer_params", False, {"params": lambda op: op.params})
#: ``layer_macs(layer, h, n_in, n_out)``: matrix-product MACs of one layer at its token counts.
layer_macs = _compile_sums("layer_macs", True, {"macs": lambda op: op.macs})
#: ``layer_mac_parts(layer, h, n_in, n_out)``: the same MACs split by :data:`MAC_PARTS`.
layer_mac_parts = _compile_sums(
    "layer_mac_parts", True, {part: (lambda op, part=part: op.macs if op.part == part else 0) for part in MAC_PARTS}
)
#: ``layer_calls(layer, h, n_in, n_out, norm, act)``: ``(family, shape, count)`` of each op one layer
#: makes, in order, as plain Python (the latency predictor's per-config path).
layer_calls = _compile_calls("layer_calls")


# ---------------------------------------------------------------------- columns
def layer_columns(layers: Sequence[Any]) -> dict[str, np.ndarray]:
    """One numpy column per dimension over ``layers`` (LayerConfigs), as :func:`layer_ops` reads
    them: integers as int64, steps as float64, flags as bool, an absent optional size as 0."""
    from itertools import chain

    total = len(layers)
    plain = [f for f in DIMENSIONS if f.kind != "optional_size"]
    numeric = np.fromiter(
        chain.from_iterable(map(operator.attrgetter(*(f.name for f in plain)), layers)),
        np.float64,
        count=len(plain) * total,
    ).reshape(total, len(plain))
    columns: dict[str, np.ndarray] = {}
    dtypes = {"step": np.float64, "flag": bool}
    for position, field in enumerate(plain):
        columns[field.name] = numeric[:, position].astype(dtypes.get(field.kind, np.int64))
    for field in NULLABLE:
        raw = np.array(list(map(operator.attrgetter(field.name), layers)), dtype=np.float64)
        columns[field.name] = np.nan_to_num(raw).astype(np.int64) if total else np.zeros(0, dtype=np.int64)
    return {f.name: columns[f.name] for f in DIMENSIONS}


__all__ = [
    "BY_NAME",
    "DIMENSIONS",
    "DIMENSION_NAMES",
    "FIELDS",
    "FIELD_NAMES",
    "FULL",
    "HIDDEN_SIZE",
    "KINDS",
    "MAC_PARTS",
    "MAX_SIZE",
    "NULLABLE",
    "Choice",
    "Field",
    "LayerInputs",
    "Op",
    "active_ops",
    "check_layer_class",
    "check_layers",
    "check_positive_int",
    "is_int",
    "is_number",
    "layer_calls",
    "layer_columns",
    "layer_inputs",
    "layer_macs",
    "layer_mac_parts",
    "layer_ops",
    "layer_params",
    "layer_to_json",
    "let",
    "order_key",
    "run_order",
    "same_value",
    "where",
]
