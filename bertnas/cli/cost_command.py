"""``bertnas cost``: parameters and MACs of an architecture config, per layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from bertnas.cli.main import app
from bertnas.errors import BertnasError


def _human(value: int) -> str:
    """Compact engineering units: 22.71M, 1.45G, 9.2K."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return _human(value) if isinstance(value, int) else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`bertnas.cost.cost_table` rows (right-aligned numbers)."""
    columns = [
        ("part", "part"),
        ("n_in", "tokens in"),
        ("n_out", "tokens out"),
        ("attn_proj", "attn proj"),
        ("attn_core", "attn core"),
        ("ffn", "FFN"),
        ("bottleneck", "bottleneck"),
        ("macs", "MACs"),
        ("params", "params"),
    ]
    cells = [[header for _, header in columns]]
    for row in rows:
        # Token counts are exact small integers: print them as they are, not in K units.
        cells.append(
            [
                str(row[key]) if key in ("n_in", "n_out") and row[key] is not None else _cell(row[key])
                for key, _ in columns
            ]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for number, line in enumerate(cells):
        # Part names left-aligned, numbers right-aligned so their units line up.
        parts = [line[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts))
        if number == 0 or number == len(cells) - 2:  # rule under the header and above the total
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


@app.command("cost")
def cost_command(
    arch: Path = typer.Option(..., "--arch", help="Architecture config JSON."),
    seq_len: int = typer.Option(128, "--seq-len", help="Sequence length (real tokens, batch 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Parameters and matrix-product MACs of ARCH at --seq-len tokens, per layer (see docs/cost-model.md)."""
    from bertnas.arch import ArchConfig
    from bertnas.cost import cost, cost_table

    config = ArchConfig.load(arch)  # BertnasError (exit 2) for a missing or invalid file
    if not 1 <= seq_len <= config.max_position_embeddings:
        # Raised, not fail(): main() turns BertnasError into exit 2 whatever the typer version.
        raise BertnasError(
            f"--seq-len {seq_len} must be between 1 and the arch's max_position_embeddings "
            f"{config.max_position_embeddings}"
        )
    result = cost(config, seq_len)
    if as_json:
        typer.echo(json.dumps({"arch_hash": config.hash(), **result.to_dict()}))
        return
    typer.echo(f"arch {config.hash()}  seq_len {seq_len}  (batch 1, all tokens real; matrix products only)")
    typer.echo(format_table(cost_table(config, seq_len)))
    typer.echo(
        f"total: {result.params / 1e6:.2f}M parameters, {result.macs / 1e9:.3f} GMACs "
        f"({2 * result.macs / 1e9:.3f} GFLOPs) at {seq_len} tokens"
    )
