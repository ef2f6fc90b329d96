"""Search space files: parse and validate a YAML space into a :class:`SpaceSpec`.

A space file describes the choices independently of any backbone: sizes are fractions
of the backbone's own dimensions, so one file serves MiniLM (hidden 384, 6 layers, 12
heads of 32, FFN 1536) and BERT-base (768, 12 layers, 12 x 64, 3072).
:meth:`SpaceSpec.bind` resolves them against a backbone's :class:`~bertnas.arch.ArchLimits`.

Schema (every key optional except where noted)::

    name: unified                 # default: the file name without .yaml
    description: >-
      One paragraph shown by `bertnas space show`.
    hidden_size: [1.0, 0.75, 0.5] # residual width h, shared by every layer (schuBERT h)
    depth:
      rule: per_layer             # required; per_layer | dynabert | all
      always_keep: [0]            # per_layer only: layers never dropped (default [0], not empty)
      # rule: dynabert  needs  multipliers: [1.0, 0.75, 0.5]
      # rule: all       keeps every layer (the default when depth is absent)
    width:                        # optional; one global DynaBERT multiplier for heads and FFN
      rule: dynabert
      multipliers: [1.0, 0.75, 0.5, 0.25]
    layer:                        # per-layer choices; every kept layer chooses independently
      heads: [1.0, 0.5]           # fractions of the backbone's heads
      qk_dim: [1.0, 0.5]          # of the backbone's head dim (per head, shared by Q and K)
      v_dim: [1.0, 0.5]           # of the backbone's head dim
      ffn_dim: [1.0, 0.5]         # of the backbone's FFN dim
      ffn_stack: [1, 2, 4]        # absolute: stacked FFNs per layer (MobileBERT)
      bottleneck: [null, 0.25]    # null = no bottleneck; fractions of the backbone's hidden size
      retention: [1.0, 0.8]       # kept fraction of the previous kept layer's tokens (PoWER-BERT)
      attention_out_bias: [true, false]  # false: the attention output projection has no bias
    options:                      # pass-through ArchConfig fields, the same for every config
      hidden_act: gelu            # gelu | relu
      norm: layernorm             # layernorm | nonorm

Size lists (``hidden_size``, ``heads``, ``qk_dim``, ``v_dim``, ``ffn_dim``,
``bottleneck``) hold fractions in (0, 1], resolved as ``max(1, floor(value * fraction +
0.5))``; ``{absolute: [12, 6]}`` gives sizes in units instead. A missing dimension is
fixed at the backbone's value (``ffn_stack`` 1, ``bottleneck`` null, ``retention`` 1.0,
``attention_out_bias`` true; :data:`bertnas.schema.FIELDS` declares every dimension);
a one-element list fixes it elsewhere. ``width.rule: dynabert`` sets heads and FFN
itself, so it cannot be combined with ``layer.heads`` or ``layer.ffn_dim``.

Every mistake is a :class:`~bertnas.errors.BertnasError` reading
``FILE:LINE: path.to.field: what is wrong; how to fix``, the line being where that field
is written; unknown keys are errors too, so that a typo cannot silently fall back to a
default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bertnas import schema
from bertnas.arch import ACTIVATIONS, NORMS, ArchLimits
from bertnas.errors import BertnasError
from bertnas.readers import load_yaml, read_text
from bertnas.schema import is_int, is_number, same_value

if TYPE_CHECKING:
    from bertnas.space.space import SearchSpace

#: Per-layer dimensions in the order the space walks them (:data:`bertnas.schema.DIMENSIONS`).
LAYER_DIMS = schema.DIMENSION_NAMES
#: Dimensions whose plain lists are fractions of a backbone size.
SIZE_DIMS = tuple(dim.name for dim in (schema.HIDDEN_SIZE, *schema.DIMENSIONS) if dim.fractions)
DEPTH_RULES = ("all", "per_layer", "dynabert")
OPTION_VALUES: dict[str, tuple[str, ...]] = {"hidden_act": ACTIVATIONS, "norm": NORMS}

_TOP_KEYS = ("name", "description", "hidden_size", "depth", "width", "layer", "options")
_DEPTH_KEYS = {"all": ("rule",), "per_layer": ("rule", "always_keep"), "dynabert": ("rule", "multipliers")}
_WIDTH_KEYS = ("rule", "multipliers")
#: The choices of a dimension the file does not list: the backbone's own.
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    dim.name: dim.space_default for dim in (schema.HIDDEN_SIZE, *schema.DIMENSIONS)
}

Path_ = tuple[str | int, ...]  # a field's position: ("layer", "heads", 2) is layer.heads[2]


@dataclass(frozen=True)
class Choices:
    """The values written for one dimension: fractions (``absolute=False``) or units."""

    values: tuple[Any, ...]
    absolute: bool = False


@dataclass(frozen=True)
class SpaceSpec:
    """A validated space file, not yet tied to a backbone; see :meth:`bind`."""

    name: str
    description: str
    source: str
    hidden_size: Choices
    layer: Mapping[str, Choices]
    depth_rule: str = "all"
    always_keep: tuple[int, ...] = (0,)
    depth_multipliers: tuple[float, ...] = ()
    width_multipliers: tuple[float, ...] = ()  # empty: no DynaBERT width rule
    options: Mapping[str, str] = field(default_factory=dict)
    lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def bind(self, limits: ArchLimits, backbone: str | None = None) -> SearchSpace:
        """Resolve the fractions against ``limits``; ``backbone`` is written into every config."""
        from bertnas.space.space import SearchSpace

        return SearchSpace(self, limits, backbone)

    def error(self, path: str, message: str) -> BertnasError:
        """A ``FILE:LINE: path: message`` error about field ``path`` (for checks made at bind time)."""
        line = self.lines.get(path)
        while line is None and "." in path:
            path_parent = path.rsplit(".", 1)[0]
            line = self.lines.get(path_parent)
            path = path_parent
        return BertnasError(f"{self.source}:{line or 1}: {path}: {message}")


# ---------------------------------------------------------------------- loading
def load_space_file(path: str | Path) -> SpaceSpec:
    """Parse the space file at ``path``."""
    path = Path(path)
    return parse_space(read_text(path, "space file"), str(path), default_name=path.stem)


def parse_space(text: str, source: str = "<space>", default_name: str | None = None) -> SpaceSpec:
    """Parse and validate the YAML ``text``; ``source`` names it in error messages."""
    try:
        data, root = load_yaml(text, source)
    except BertnasError as error:
        raise BertnasError(f"{error}; a space file is a YAML mapping, see search_spaces/unified.yaml") from None
    return _Parser(source, root).parse(data, default_name or Path(source).stem)


class _Parser:
    """Validates the loaded data, with the composed node tree giving each field's line."""

    def __init__(self, source: str, root: yaml.Node | None) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}
        if root is not None:
            self._index(root, ())

    # --------------------------------------------------------------- line numbers
    def _index(self, node: yaml.Node, path: Path_) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a complex key; the data check reports it as an unknown key
                key = key_node.value
                if key in seen:
                    # SafeLoader silently keeps the last of duplicate keys: a likely mistake.
                    where = _dotted((*path, key))
                    raise BertnasError(
                        f"{self.source}:{key_node.start_mark.line + 1}: {where}: written twice; keep one"
                    )
                seen.add(key)
                # A field's line is where its key is written.
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._index(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self._index(item, (*path, position))

    def line(self, path: Path_) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def fail(self, path: Path_, message: str) -> BertnasError:
        return BertnasError(f"{self.source}:{self.line(path)}: {_dotted(path) or '(top level)'}: {message}")

    # --------------------------------------------------------------- structure
    def _mapping(self, data: Any, path: Path_, known: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(path, f"expected a mapping with keys {', '.join(known)}, got {_kind(data)}")
        for key in data:
            if key not in known:
                raise self.fail((*path, key), f"unknown key {key!r}; known keys here: {', '.join(known)}")
        return data

    def parse(self, data: Any, default_name: str) -> SpaceSpec:
        if data is None:
            raise BertnasError(
                f"{self.source}:1: the file is empty; a space file is a YAML mapping, see search_spaces/unified.yaml"
            )
        top = self._mapping(data, (), _TOP_KEYS)
        name = self._text(top, "name", default_name)
        description = " ".join(self._text(top, "description", "").split())
        hidden = self._choices(top["hidden_size"], ("hidden_size",)) if "hidden_size" in top else None
        depth_rule, always_keep, depth_mults = self._depth(top.get("depth"))
        width_mults = self._width(top["width"]) if "width" in top else ()
        layer = self._layer(top.get("layer", {}), bool(width_mults))
        options = self._options(top.get("options", {}))
        return SpaceSpec(
            name=name,
            description=description,
            source=self.source,
            hidden_size=hidden or Choices(_DEFAULTS["hidden_size"]),
            layer=layer,
            depth_rule=depth_rule,
            always_keep=always_keep,
            depth_multipliers=depth_mults,
            width_multipliers=width_mults,
            options=options,
            lines={_dotted(path): line for path, line in self.lines.items() if path},
        )

    def _text(self, top: Mapping[str, Any], key: str, default: str) -> str:
        value = top.get(key, default)
        if not isinstance(value, str) or (key == "name" and not value.strip()):
            raise self.fail((key,), f"expected {'a non-empty' if key == 'name' else 'a'} string, got {_kind(value)}")
        return value

    def _depth(self, data: Any) -> tuple[str, tuple[int, ...], tuple[float, ...]]:
        if data is None:
            return "all", (), ()
        path: Path_ = ("depth",)
        if not isinstance(data, Mapping) or "rule" not in data:
            raise self.fail(path, f"expected a mapping with 'rule: {' | '.join(DEPTH_RULES)}'")
        rule = data["rule"]
        if rule not in DEPTH_RULES:
            raise self.fail((*path, "rule"), f"unknown rule {rule!r}; choose one of {', '.join(DEPTH_RULES)}")
        self._mapping(data, path, _DEPTH_KEYS[rule])
        if rule == "dynabert":
            if "multipliers" not in data:
                raise self.fail(path, "rule dynabert needs 'multipliers', e.g. [1.0, 0.75, 0.5]")
            return rule, (), self._multipliers(data["multipliers"], (*path, "multipliers"))
        if rule == "per_layer":
            keep_path = (*path, "always_keep")
            keep = data.get("always_keep", [0])
            if not isinstance(keep, list) or not keep:
                raise self.fail(
                    keep_path, "expected a non-empty list of layer indices (a subnet keeps at least one layer)"
                )
            for position, index in enumerate(keep):
                if not is_int(index) or index < 0:
                    raise self.fail((*keep_path, position), f"{index!r} is not a layer index (0, 1, ...)")
            self._no_duplicates(keep, keep_path)
            return rule, tuple(sorted(keep)), ()
        return rule, (), ()

    def _width(self, data: Any) -> tuple[float, ...]:
        path: Path_ = ("width",)
        self._mapping(data, path, _WIDTH_KEYS)
        if "rule" not in data:
            raise self.fail(path, "missing 'rule: dynabert' (the only width rule)")
        if data["rule"] != "dynabert":
            raise self.fail((*path, "rule"), f"unknown rule {data['rule']!r}; the only width rule is dynabert")
        if "multipliers" not in data:
            raise self.fail(path, "rule dynabert needs 'multipliers', e.g. [1.0, 0.75, 0.5, 0.25]")
        return self._multipliers(data["multipliers"], (*path, "multipliers"))

    def _layer(self, data: Any, dynabert_width: bool) -> dict[str, Choices]:
        path: Path_ = ("layer",)
        data = self._mapping(data if data is not None else {}, path, LAYER_DIMS)
        layer = {}
        for name in LAYER_DIMS:
            if name not in data:
                layer[name] = Choices(_DEFAULTS[name])
                continue
            if dynabert_width and name in ("heads", "ffn_dim"):
                raise self.fail(
                    (*path, name),
                    f"width rule dynabert already sets heads and FFN dim; remove layer.{name} or the width section",
                )
            layer[name] = self._choices(data[name], (*path, name))
        return layer

    def _options(self, data: Any) -> dict[str, str]:
        path: Path_ = ("options",)
        data = self._mapping(data if data is not None else {}, path, tuple(OPTION_VALUES))
        for key, value in data.items():
            if value not in OPTION_VALUES[key]:
                raise self.fail((*path, key), f"{value!r} is not one of {', '.join(OPTION_VALUES[key])}")
        return dict(data)

    # --------------------------------------------------------------- value lists
    def _choices(self, data: Any, path: Path_) -> Choices:
        name = str(path[-1])
        absolute = False
        values_path = path
        if isinstance(data, Mapping):
            if name not in SIZE_DIMS:
                raise self.fail(path, f"expected a list of values; {name} has no {{absolute: ...}} form")
            self._mapping(data, path, ("absolute",))
            if "absolute" not in data:
                raise self.fail(path, "expected {absolute: [sizes]}")
            data, absolute, values_path = data["absolute"], True, (*path, "absolute")
        if not isinstance(data, list):
            raise self.fail(values_path, f"expected a list of choices, got {_kind(data)}")
        if not data:
            raise self.fail(values_path, "empty list of choices; give at least one value (one value fixes it)")
        for position, value in enumerate(data):
            self._check_value(name, value, absolute, (*values_path, position))
        self._no_duplicates(data, values_path)
        return Choices(tuple(data), absolute)

    def _check_value(self, name: str, value: Any, absolute: bool, path: Path_) -> None:
        message = schema.BY_NAME[name].choice_error(value, absolute)
        if message is not None:
            raise self.fail(path, message)

    def _multipliers(self, data: Any, path: Path_) -> tuple[float, ...]:
        if not isinstance(data, list) or not data:
            raise self.fail(path, "expected a non-empty list of multipliers in (0, 1]")
        for position, value in enumerate(data):
            if not is_number(value) or not 0 < value <= 1:
                raise self.fail((*path, position), f"{value!r} is not a multiplier in (0, 1]")
        self._no_duplicates(data, path)
        return tuple(float(value) for value in data)

    def _no_duplicates(self, values: list[Any], path: Path_) -> None:
        for position, value in enumerate(values):
            if any(same_value(value, earlier) for earlier in values[:position]):
                shown = "null" if value is None else repr(value)
                raise self.fail((*path, position), f"{shown} is listed twice; list each choice once")


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# ---------------------------------------------------------------------- finding spaces by name
def space_dirs() -> list[Path]:
    """Where names are looked up: ``$BERTNAS_SPACES_DIR`` (if set), then the repository's ``search_spaces/``."""
    import bertnas

    dirs = []
    override = os.environ.get("BERTNAS_SPACES_DIR")
    if override:
        dirs.append(Path(override).expanduser())
    dirs.append(Path(bertnas.__file__).resolve().parents[1] / "search_spaces")
    # a non-editable install ships the files as data files under <prefix>/share/bertnas
    dirs.append(Path(sys.prefix) / "share" / "bertnas" / "search_spaces")
    return dirs


def list_spaces() -> list[str]:
    """Names of the spaces :func:`load_space` finds (``NAME.yaml`` files), sorted."""
    names = {path.stem for directory in space_dirs() if directory.is_dir() for path in directory.glob("*.yaml")}
    return sorted(names)


def load_space(name_or_path: str | Path) -> SpaceSpec:
    """Load a space by name (``unified``, ``dynabert``, ...) or from a ``.yaml`` file path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or "/" in text
    if not looks_like_path:
        for directory in space_dirs():
            candidate = directory / f"{text}.yaml"
            if candidate.is_file():
                return load_space_file(candidate)
    if path.is_file():
        return load_space_file(path)
    if looks_like_path:
        raise BertnasError(f"space file {text} does not exist")
    available = ", ".join(list_spaces()) or "none"
    raise BertnasError(f"unknown search space {text!r}; available: {available} (or pass the path of a .yaml file)")
