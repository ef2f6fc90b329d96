"""``bertnas space``: look at a search space and draw configs from it."""

from __future__ import annotations

import json
from typing import Any

import typer

from bertnas.backbones import DEFAULT_BACKBONE
from bertnas.cli.main import app
from bertnas.errors import BertnasError

space_app = typer.Typer(
    help="Search spaces (search_spaces/NAME.yaml): show their dimensions, sample configs.",
    no_args_is_help=True,
)
app.add_typer(space_app, name="space")

_NAME_HELP = "A space name (see `bertnas space list`) or the path of a space .yaml file."
_BACKBONE_HELP = (
    "Backbone whose sizes the space's fractions resolve against: all-MiniLM-L6-v2, bert-base-uncased, "
    "or a local directory with a BERT config.json."
)


def _bind(name: str, backbone: str) -> Any:
    from bertnas.backbones import backbone_limits
    from bertnas.space import load_space

    spec = load_space(name)  # BertnasError (exit 2) for an unknown name or a malformed file
    return spec.bind(backbone_limits(backbone), backbone=backbone)


@space_app.command("list")
def list_command() -> None:
    """List the space names that SPACE arguments accept."""
    from bertnas.space import list_spaces

    for name in list_spaces():
        typer.echo(name)


@space_app.command("show")
def show_command(
    name: str = typer.Argument(..., help=_NAME_HELP),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help=_BACKBONE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Describe space NAME for a backbone: its dimensions with resolved choices, and its size."""
    space = _bind(name, backbone)
    info = space.describe()
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(format_description(info))


@space_app.command("sample")
def sample_command(
    name: str = typer.Argument(..., help=_NAME_HELP),
    n: int = typer.Option(1, "--n", help="Number of configs to draw."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same configs."),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help=_BACKBONE_HELP),
) -> None:
    """Print N random configs of space NAME, one architecture JSON per line."""
    if n < 1:
        raise BertnasError(f"--n {n} must be at least 1")
    space = _bind(name, backbone)
    for arch in space.sample_many(n, seed):
        typer.echo(arch.to_json())


def format_description(info: dict[str, Any]) -> str:
    """The text of ``bertnas space show``: per-layer dimensions with equal choices on one line."""
    limits = info["limits"]
    lines = [
        f"{info['name']}: {info['description']}" if info["description"] else info["name"],
        f"file: {info['source']}",
        f"backbone: {info['backbone']} (hidden {limits['hidden_size']}, {limits['num_layers']} layers, "
        f"{limits['num_heads']} heads of {limits['head_dim']}, FFN {limits['ffn_dim']})",
    ]
    if info["depth_rule"] == "per_layer":
        lines.append(f"depth: each layer kept or dropped; always kept: {_indices(info['always_keep'])}")
    elif info["depth_rule"] == "all":
        lines.append("depth: every layer kept")
    for rule, meanings in info["dynabert"].items():
        lines.append(f"DynaBERT {rule}:")
        for multiplier, meaning in meanings.items():
            shown = (
                f"layers {_indices(meaning)}"
                if rule == "depth"
                else (f"{meaning['heads']} heads, FFN {meaning['ffn_dim']}")
            )
            lines.append(f"  {multiplier:>5}  {shown}")
    groups = _group(info["dimensions"])
    lines.append(f"dimensions ({len(info['dimensions'])}):")
    width = max((len(label) for label, _ in groups), default=0)
    lines += [f"  {label.ljust(width)}  {choices}" for label, choices in groups]
    if info["fixed"]:
        lines.append("fixed: " + ", ".join(f"{key} {_value(value)}" for key, value in info["fixed"].items()))
    if info["options"]:
        lines.append("options: " + ", ".join(f"{key} {value}" for key, value in info["options"].items()))
    lines.append(f"size: {_size(info['size'])} configs")
    lines.append(f"supernet needs: max_ffn_stack {info['max_ffn_stack']}, max_bottleneck {info['max_bottleneck']}")
    return "\n".join(lines)


def _group(dimensions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``heads.0`` ... ``heads.5`` with equal choices become one ``heads.{0-5}`` line."""
    groups: dict[tuple[str, str], list[int]] = {}
    order: list[tuple[str, str]] = []
    for dim in dimensions:
        base, _, index = dim["name"].partition(".")
        key = (base, ", ".join(_value(choice) for choice in dim["choices"]))
        if key not in groups:
            groups[key] = []
            order.append(key)
        if index:
            groups[key].append(int(index))
    return [(f"{base}.{{{_indices(groups[(base, c)])}}}" if groups[(base, c)] else base, c) for base, c in order]


def _indices(indices: list[int]) -> str:
    """``[0, 1, 2, 4]`` -> ``0-2,4``."""
    runs: list[str] = []
    start = previous = None
    for index in [*indices, None]:
        if previous is not None and index == previous + 1:
            previous = index
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = index
    return ",".join(runs)


def _value(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _size(size: int) -> str:
    text = str(size)
    # Exact counts are unreadable past 12 digits: add the order of magnitude (from the
    # digits, since the count can exceed the float range).
    return text if len(text) <= 12 else f"{text} (~{text[0]}.{text[1:3]}e{len(text) - 1})"
