"""Pieces every training loop here shares: seeding, optimizer, schedule, run records."""

from __future__ import annotations

import json
import platform
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertnas import __version__
from bertnas.atomic import atomic_write_text


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every random number generator a training step draws from (dropout: torch's), as tensors,
    ints and tuples that ``torch.load(weights_only=True)`` reads back. Saved in each checkpoint,
    so a resumed training continues the same random stream and ends bit-identical."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norm weights (BERT's recipe)."""
    decay, no_decay = [], []
    for _name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim == 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base rate, then linear decay to zero at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def apply_gradients(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    max_norm: float = 1.0,
) -> None:
    """The update every trainer makes once a step's gradients are in: clip their norm, step the
    optimizer and the schedule, clear the gradients."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def batches_from(sampler: Any, step: int, total: int) -> Iterator[tuple[int, list[int]]]:
    """``(epoch, batch indices)`` for training steps ``step`` (0, or the step a checkpoint resumes at)
    to ``total``, epoch after epoch, in the sampler's order for each epoch (seeded by the epoch, so a
    resumed run sees the batches an uninterrupted one would)."""
    steps_per_epoch = len(sampler)
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        for indices in sampler.batches(epoch)[offset:]:
            if step >= total:
                return
            yield epoch, indices
            step += 1


def versions() -> dict[str, str]:

    found = {"bertnas": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "optuna", "numpy", "tokenizers"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        found[name] = getattr(module, "__version__", "?")
    return found


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: str | Path, data: dict[str, Any]) -> None:

    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def run_record(command: str, config: dict[str, Any]) -> dict[str, Any]:
    """What every run writes down: the command, its configuration, versions and hardware."""
    return {
        "command": command,
        "argv": sys.argv,
        "config": config,
        "versions": versions(),
        "hardware": hardware(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
