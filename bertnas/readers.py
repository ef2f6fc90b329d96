"""Bounded readers for every YAML and JSON file a user hands bertnas.

A file from a user is untrusted: it may be huge, nested 100,000 deep, or a few hundred
bytes of YAML aliases that expand to billions of nodes ("billion laughs"). Every such file
goes through :func:`read_text`, :func:`load_yaml` or :func:`load_json`, which refuse, with a
one-line ``FILE:LINE: problem`` error and before any real work, a file over ``max_bytes``,
text that is not UTF-8, nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES`
aliases, or a document whose alias-expanded size exceeds :data:`MAX_NODES` nodes. YAML goes
through PyYAML's safe loader only (no Python objects).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bertnas.errors import BertnasError

#: Default size limit of a configuration file (space, profile, study, architecture, record).
MAX_BYTES = 4 * 1024 * 1024
#: Deepest nesting any configuration of this project needs is < 10.
MAX_DEPTH = 64
MAX_ALIASES = 1000
#: Nodes of a YAML document with every alias expanded (a 12-layer profile has a few thousand).
MAX_NODES = 200_000


def read_text(path: str | Path, what: str, max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of ``path`` (a ``what`` file), refusing one over ``max_bytes`` before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise BertnasError(f"{what} {path} is not a regular file")
        if size > max_bytes:
            raise BertnasError(
                f"{what} {path} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit of a {what}; "
                "is it the right file?"
            )
        data = path.read_bytes()
    except OSError as error:
        raise BertnasError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BertnasError(f"{path}:{line}: not UTF-8 text (byte {error.start}); a {what} is a text file") from None


def load_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """``(data, composed node tree)`` of YAML ``text``, after the alias and size checks."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except RecursionError:
        raise BertnasError(f"{source}:1: nested too deeply (over {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BertnasError(f"{source}:{line}: not valid YAML ({problem})") from None
    if root is not None:
        _check_nodes(root, source)
    try:
        constructor = yaml.SafeLoader("")
        data = constructor.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise BertnasError(f"{source}:{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    return data, root


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse alias bombs and deep nesting: count aliases, expanded size and depth, each node once."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    seen: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            size = 1 + sum(sizes[id(child)][0] for child in children)
            depth = 1 + max((sizes[id(child)][1] for child in children), default=0)
            sizes[key] = (size, depth)
            line = node.start_mark.line + 1
            if depth > MAX_DEPTH:
                raise BertnasError(f"{source}:{line}: nested too deeply (over {MAX_DEPTH} levels)")
            if size > MAX_NODES:
                raise BertnasError(
                    f"{source}:{line}: expands to more than {MAX_NODES} values (YAML aliases repeated inside "
                    "each other); write the values out, without anchors and aliases"
                )
            continue
        if key in seen:
            aliases += 1  # a node reached twice is an alias (PyYAML shares the node)
            if aliases > MAX_ALIASES:
                raise BertnasError(f"{source}:{node.start_mark.line + 1}: more than {MAX_ALIASES} YAML aliases")
            if key in sizes:
                continue
            raise BertnasError(f"{source}:{node.start_mark.line + 1}: a YAML alias refers to itself")
        seen.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_json(text: str, source: str) -> Any:
    """JSON ``text``, with errors as ``FILE:LINE`` and nesting over :data:`MAX_DEPTH` refused."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:  # a cheap scan before the parser recurses
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        elif char in "]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise BertnasError(f"{source}:1: nested too deeply (over {MAX_DEPTH} levels)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BertnasError(f"{source}:{error.lineno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise BertnasError(f"{source}:1: nested too deeply") from None


def read_yaml(path: str | Path, what: str, max_bytes: int = MAX_BYTES) -> tuple[Any, yaml.Node | None, str]:
    """``(data, node tree, text)`` of a YAML file, bounded (:func:`read_text`, :func:`load_yaml`)."""
    text = read_text(path, what, max_bytes)
    data, root = load_yaml(text, str(path))
    return data, root, text


def read_json(path: str | Path, what: str, max_bytes: int = MAX_BYTES) -> Any:
    """A JSON file, bounded (:func:`read_text`, :func:`load_json`)."""
    return load_json(read_text(path, what, max_bytes), str(path))
