"""What a search optimizes, declared Archai-style: a name, a direction and an optional budget.

A study has two objectives, the task metric (maximized) and the predicted latency on the
*first* device (minimized). Every device carries a latency budget; the budgets are
constraints (Optuna's ``trial.set_constraint``, which replaces the ``constraints_func``
Optuna 5 deprecates), and the latency of the other devices is
recorded on each trial so that their fronts can be rebuilt later without evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The name of the trial constraint (``trial.set_constraint``; <= 0 is feasible).
CONSTRAINT_NAME = "latency_over_budget"


def latency_column(device: str) -> str:
    """The trials-table column and user attribute holding the predicted latency on ``device``."""
    return f"latency_ms.{device}"


@dataclass(frozen=True)
class Objective:
    """One quantity a trial reports. ``budget`` is an upper bound (lower for maximized ones)."""

    name: str
    direction: str  # "maximize" | "minimize"
    budget: float | None = None
    device: str | None = None  # set for latency objectives

    @property
    def column(self) -> str:
        return latency_column(self.device) if self.device else self.name


@dataclass(frozen=True)
class Objectives:
    """The metric, and one latency objective per device (the first one is optimized)."""

    metric: Objective
    latencies: tuple[Objective, ...]

    @classmethod
    def build(cls, metric: str, budgets: Mapping[str, float]) -> Objectives:
        latencies = tuple(Objective(f"latency_{d}", "minimize", budget=b, device=d) for d, b in budgets.items())
        return cls(Objective(metric, "maximize"), latencies)

    @property
    def optimized(self) -> tuple[Objective, Objective]:
        """The two objectives the sampler sees: the metric and the first device's latency."""
        return self.metric, self.latencies[0]

    @property
    def directions(self) -> list[str]:
        return [objective.direction for objective in self.optimized]

    @property
    def devices(self) -> list[str]:
        return [objective.device for objective in self.latencies if objective.device]

    @property
    def budgets(self) -> dict[str, float]:
        return {o.device: o.budget for o in self.latencies if o.device and o.budget is not None}

    def values(self, metric: float, latency_ms: Mapping[str, float]) -> list[float]:
        """The objective values told to Optuna."""
        return [metric, latency_ms[self.devices[0]]]

    def deployable_on(self, latency_ms: Mapping[str, float]) -> list[str]:
        """Devices whose budget ``latency_ms`` meets."""
        return [d for d, b in self.budgets.items() if latency_ms[d] <= b]

    def constraint(self, latency_ms: Mapping[str, float]) -> float:
        """The constraint value, <= 0 when the subnet fits at least one device's budget.

        The value is the smallest relative overshoot ``latency / budget - 1`` over devices:
        a subnet that one device can run is a valid member of the study, and the sampler
        learns how far the others are from any budget.
        """
        return min(latency_ms[d] / b - 1.0 for d, b in self.budgets.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": {"name": self.metric.name, "direction": self.metric.direction},
            "latency": [
                {"name": o.name, "device": o.device, "direction": o.direction, "budget_ms": o.budget}
                for o in self.latencies
            ],
            "optimized": [o.column for o in self.optimized],
        }
