"""Extraction: an active subnet becomes a standalone compact model directory.

The directory is Hugging Face-style (``config.json``, ``model.safetensors``, tokenizer
files) plus ``arch.json`` (the architecture config alone) and ``bertnas.json``
(provenance: where the weights came from, versions, parameter and MAC counts). It loads
with :meth:`bertnas.model.CompactBert.from_pretrained`, without the supernet.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from bertnas import __version__
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_directory
from bertnas.cost import count_macs
from bertnas.errors import BertnasError
from bertnas.model.compact import CompactBert
from bertnas.supernet.elastic import ElasticBert


def supernet_for_arch(source: str, arch: ArchConfig) -> ElasticBert:
    """Load a saved supernet, or build one from a backbone with just the extras ``arch`` needs."""
    max_stack = max(layer.ffn_stack for layer in arch.layers)
    max_bottleneck = max((layer.bottleneck or 0) for layer in arch.layers)
    return ElasticBert.from_pretrained(source, max_ffn_stack=max_stack, max_bottleneck=max_bottleneck)


def extract_subnet(
    supernet: ElasticBert, arch: ArchConfig, out: str | Path, force: bool = False, source: str | None = None
) -> tuple[Path, CompactBert]:
    """Extract ``arch`` from ``supernet`` into the directory ``out`` (written atomically)."""

    if supernet.tokenizer is None:
        raise BertnasError(
            "the supernet has no tokenizer to ship with the model; load it from a directory that has one"
        )
    supernet.set_active_subnet(arch)
    model = supernet.get_active_subnet()
    with atomic_directory(out, force=force) as scratch:
        model.save_pretrained(scratch, tokenizer=supernet.tokenizer)
        model.arch.save(scratch / "arch.json")
        provenance: dict[str, Any] = {
            "supernet": source or supernet.config.backbone,
            "backbone": supernet.config.backbone,
            "task": supernet.config.task,
            "arch_hash": model.arch.hash(),
            "params": sum(p.numel() for p in model.parameters()),
            "versions": {"bertnas": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }
        seq_len = min(128, model.arch.max_position_embeddings)
        provenance[f"macs_at_{seq_len}"] = count_macs(model.arch, seq_len)
        (scratch / "bertnas.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out), model
