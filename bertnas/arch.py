"""The architecture config: one serializable description of a subnet.

Every part of bertnas speaks this format: the search space produces it, the supernet
activates it, the cost model and latency predictors price it, export writes it next to
the weights. It is plain JSON::

    {"hidden_size": 384,
     "layers": [{"index": 0, "heads": 12, "qk_dim": 32, "v_dim": 32,
                 "ffn_dim": 1536, "ffn_stack": 1, "bottleneck": null,
                 "retention": 1.0}, ...]}

``layers`` lists the kept backbone layers in order (``index`` = which backbone layer).
``qk_dim`` / ``v_dim`` are per head. ``bottleneck`` is the MobileBERT-style intra-block
width (null = none). ``retention`` is the fraction of the *input's* tokens still present
after this layer's attention (PoWER-BERT extraction; non-increasing; [CLS] always kept).

What each layer field means and how it is checked, bounded and written is declared once,
in :mod:`bertnas.schema`.

Optional fields describe what the model needs beyond the per-layer shapes (norm and
activation type, vocabulary and head sizes, the backbone's name), so that a config can
be priced without any weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertnas import schema
from bertnas.errors import BertnasError

# The kept-token rule lives in a leaf module that exported model directories carry too.
from bertnas.retention_rule import RETENTION_DECIMALS, RETENTION_SCALE, kept_tokens, retention_units  # noqa: F401 (re-exported)
from bertnas.schema import MAX_SIZE, check_positive_int  # noqa: F401 (MAX_SIZE re-exported)

ACTIVATIONS = ("gelu", "relu")
NORMS = ("layernorm", "nonorm")


@dataclass(frozen=True)
class LayerConfig:
    """Shape of one kept backbone layer: the fields of :data:`bertnas.schema.FIELDS`, which says
    what each means, how it is checked and written (checked against it below)."""

    index: int
    heads: int
    qk_dim: int
    v_dim: int
    ffn_dim: int
    ffn_stack: int = 1
    bottleneck: int | None = None
    retention: float = 1.0
    attention_out_bias: bool = True

    def inner_width(self, hidden_size: int) -> int:
        """Width the attention and FFN sub-layers run at (the bottleneck if any)."""
        return self.bottleneck if self.bottleneck is not None else hidden_size


schema.check_layer_class(LayerConfig)


@dataclass(frozen=True)
class ArchLimits:
    """The largest shapes a backbone (plus the supernet's extra parameters) offers."""

    hidden_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    ffn_dim: int
    max_ffn_stack: int = 1
    max_bottleneck: int = 0  # 0: the supernet has no bottleneck parameters


@dataclass(frozen=True)
class ArchConfig:
    """A subnet: global hidden width plus one :class:`LayerConfig` per kept layer."""

    hidden_size: int
    layers: tuple[LayerConfig, ...]
    hidden_act: str = "gelu"
    norm: str = "layernorm"
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    num_labels: int | None = None  # None: no classification head
    pooler: bool = True
    backbone: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form, not hashed

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check internal consistency; raise :class:`BertnasError` naming the field."""
        check_positive_int("hidden_size", self.hidden_size)
        if self.hidden_act not in ACTIVATIONS:
            raise BertnasError(f"hidden_act={self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.norm not in NORMS:
            raise BertnasError(f"norm={self.norm!r} is not one of {', '.join(NORMS)}")
        for name in ("vocab_size", "max_position_embeddings", "type_vocab_size"):
            check_positive_int(name, getattr(self, name))
        if self.num_labels is not None:
            check_positive_int("num_labels", self.num_labels)
        if not self.layers:
            raise BertnasError("layers is empty: a subnet keeps at least one layer")
        if len(self.layers) > MAX_LAYERS:
            raise BertnasError(f"layers has {len(self.layers)} entries; no BERT backbone has more than {MAX_LAYERS}")
        schema.check_layers(self.layers)

    def check_fits(self, limits: ArchLimits, backbone_name: str = "backbone") -> None:
        """Check that every dimension fits inside ``limits`` (the supernet's largest)."""
        if self.hidden_size > limits.hidden_size:
            raise BertnasError(f"hidden_size={self.hidden_size} exceeds the {backbone_name}'s {limits.hidden_size}")
        for position, layer in enumerate(self.layers):
            for spec in schema.FIELDS:
                spec.check_fits(getattr(layer, spec.name), limits, f"layers[{position}]", backbone_name)

    # ------------------------------------------------------------------ derived
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def token_counts(self, seq_len: int) -> list[tuple[int, int]]:
        """``(tokens entering, tokens kept after attention)`` per layer for ``seq_len`` real tokens."""
        counts, n_in = [], seq_len
        for layer in self.layers:
            n_out = min(n_in, kept_tokens(layer.retention, seq_len))
            counts.append((n_in, n_out))
            n_in = n_out
        return counts

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "hidden_size": self.hidden_size,
            "layers": [schema.layer_to_json(layer) for layer in self.layers],
            "hidden_act": self.hidden_act,
            "norm": self.norm,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "num_labels": self.num_labels,
            "pooler": self.pooler,
            "backbone": self.backbone,
        }
        if self.extra:
            data["extra"] = dict(self.extra)
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def hash(self) -> str:
        """Stable 16-hex-digit hash of the architecture (``extra``, ``backbone`` and ``num_labels``
        excluded: the head's size comes from the task, not from the subnet).

        Two configs with the same shapes hash the same whichever file or tool wrote
        them (a search's trial and the model exported from it alike); caches key on
        (supernet, task, hash).
        """
        data = self.to_dict()
        for name in ("extra", "backbone", "num_labels"):
            data.pop(name, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Any, source: str = "arch") -> ArchConfig:
        """Build from parsed JSON; errors name ``source`` and the offending field."""
        try:
            return _from_dict(data)
        except BertnasError as error:
            raise BertnasError(f"{source}: {error}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "arch") -> ArchConfig:
        from bertnas.readers import load_json

        try:
            data = load_json(text, source)
        except BertnasError as error:
            raise BertnasError(f"{error}; an arch file is one JSON object") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        from bertnas.readers import read_text

        path = Path(path)
        return cls.from_json(read_text(path, "arch file"), str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=2) + "\n")


_LAYER_FIELDS = {f.name for f in dataclasses.fields(LayerConfig)}
_ARCH_FIELDS = {f.name for f in dataclasses.fields(ArchConfig)}
_LAYER_REQUIRED = tuple(spec.name for spec in schema.FIELDS if spec.required)


def _from_dict(data: Any) -> ArchConfig:
    if not isinstance(data, Mapping):
        raise BertnasError(f"expected a JSON object with hidden_size and layers, got {type(data).__name__}")
    unknown = sorted(set(data) - _ARCH_FIELDS)
    if unknown:
        raise BertnasError(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(_ARCH_FIELDS))})")
    for required in ("hidden_size", "layers"):
        if required not in data:
            raise BertnasError(f"missing field {required!r}")
    if not isinstance(data["layers"], list):
        raise BertnasError("layers must be a list of layer objects")
    layers = []
    for position, item in enumerate(data["layers"]):
        where = f"layers[{position}]"
        if not isinstance(item, Mapping):
            raise BertnasError(f"{where} must be an object, got {type(item).__name__}")
        unknown = sorted(set(item) - _LAYER_FIELDS)
        if unknown:
            raise BertnasError(f"unknown field {where}.{unknown[0]} (known: {', '.join(sorted(_LAYER_FIELDS))})")
        missing = [name for name in _LAYER_REQUIRED if name not in item]
        if missing:
            raise BertnasError(f"{where} is missing {missing[0]!r}")
        layers.append(LayerConfig(**item))
    kwargs = {key: value for key, value in data.items() if key != "layers"}
    return ArchConfig(layers=tuple(layers), **kwargs)


#: Sanity bounds of any BERT (far above every real one), so a hostile or mistyped config is
#: refused by every command alike before anything sized by it is computed or allocated
#: (``MAX_SIZE``, the largest size, is the schema's).
MAX_LAYERS = 128


def full_arch(limits: ArchLimits, **options: Any) -> ArchConfig:
    """The backbone itself as a config: every layer, every head, full widths."""
    # The dimensions without a default take the backbone's own size; the others their default.
    full = {spec.name: getattr(limits, spec.unit) for spec in schema.DIMENSIONS if spec.required}
    layers = tuple(LayerConfig(index=i, **full) for i in range(limits.num_layers))
    return ArchConfig(hidden_size=limits.hidden_size, layers=layers, **options)
