"""The first checks of a search, those that need no supernet: the task, the space file, the devices,
the sequence length and the guarantee. The CLI runs them before the pipeline trains anything
(:mod:`bertnas.pipeline`), so a mistyped device or an impossible confidence fails in seconds, not
after an hour of training; :func:`bertnas.search.setup.plan` starts from them.

This module stays light (no ``transformers``, no weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bertnas.data import get_task
from bertnas.data.glue import TaskInfo
from bertnas.hardware import load_predictor
from bertnas.hardware.conformal import effective_budgets
from bertnas.hardware.lengths import is_task_statistic
from bertnas.search.config import SearchConfig
from bertnas.space import load_space
from bertnas.space.spec import SpaceSpec


@dataclass
class Request:
    """What :func:`check` resolves before any supernet exists: the task, the space file, one
    predictor per device and the budgets on the prediction scale."""

    task: TaskInfo
    spec: SpaceSpec
    predictors: dict[str, Any]
    seq_len: int | None  # the token count every profile prices at; None: each profile's own (or task:*)
    budgets: dict[str, float]
    conformal: dict[str, Any]


def check(config: SearchConfig) -> Request:
    """The checks that need no supernet (task, space, devices, lengths, confidence): the CLI runs them
    before the pipeline trains anything, so a mistyped device fails in a second, not after training."""
    config.validate()
    task = get_task(config.task)
    spec = load_space(config.space)
    predictors = {device: load_predictor(device) for device in config.devices}
    price_len = None if is_task_statistic(config.seq_len) else config.seq_len  # task:mean|p50|p90
    if price_len is not None:
        for predictor in predictors.values():
            predictor.profile.check_request(seq_len=price_len)  # the profile says why it cannot
    # --confidence: each budget on the prediction scale, B / (1 + conformal quantile)
    budgets, conformal = effective_budgets(
        config.budgets_ms, {d: p.profile for d, p in predictors.items()}, config.confidence
    )
    return Request(task, spec, predictors, price_len, budgets, conformal)


__all__ = ["Request", "check"]
