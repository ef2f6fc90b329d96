"""``bertnas extract``: a subnet as a standalone model directory."""

from __future__ import annotations

from pathlib import Path

import typer

from bertnas.backbones import DEFAULT_BACKBONE
from bertnas.cli.main import app


@app.command("extract")
def extract(
    arch: Path = typer.Option(..., "--arch", help="Architecture config JSON (see `bertnas space sample`)."),
    out: Path = typer.Option(..., "--out", help="Directory to write the compact model to."),
    supernet: str = typer.Option(
        DEFAULT_BACKBONE,
        "--supernet",
        help="A trained supernet directory, or a Hugging Face BERT (name or path) to slice directly.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Extract the subnet ARCH into OUT: config.json, model.safetensors, tokenizer, arch.json."""
    from bertnas.arch import ArchConfig
    from bertnas.export import extract_subnet, supernet_for_arch

    config = ArchConfig.load(arch)
    if out.exists() and not force:  # refuse before loading any weights
        from bertnas.errors import BertnasError

        raise BertnasError(f"{out} already exists; choose another --out or pass --force to replace it")
    _check_backbone_fits(config, supernet)
    model_source = supernet_for_arch(supernet, config)
    path, model = extract_subnet(model_source, config, out, force=force, source=supernet)
    params = sum(p.numel() for p in model.parameters())
    typer.echo(f"wrote {path} ({params / 1e6:.2f}M parameters, arch {model.arch.hash()})")


def _check_backbone_fits(config, source: str) -> None:
    """Refuse an architecture over the backbone's sizes from its config alone, before any weights
    load (a trained supernet directory is checked when it loads)."""
    from dataclasses import replace

    from bertnas.backbones import backbone_limits
    from bertnas.errors import BertnasError
    from bertnas.supernet.elastic import WEIGHTS_NAME

    if (Path(source) / WEIGHTS_NAME).is_file() and (Path(source) / "training.json").is_file():
        return
    try:
        limits = backbone_limits(source)
    except BertnasError:
        return  # a hub id whose sizes are unknown offline: checked once it loads
    extras = replace(
        limits,
        max_ffn_stack=max(layer.ffn_stack for layer in config.layers),
        max_bottleneck=max((layer.bottleneck or 0) for layer in config.layers),
    )
    config.check_fits(extras, source)
