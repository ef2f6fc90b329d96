"""Where a search's trials run: one options class per backend, and the names the CLI knows them by.

A backend is two pieces: an options class here (light: the CLI builds it before anything heavy
is imported) with ``check(config)`` (refuse what it cannot do, before any training) and
``make_loop(plan, progress, on_trial)``, and a :class:`~bertnas.search.loop.TrialLoop` subclass
in its own module (:class:`~bertnas.search.loop.LocalTrialLoop`,
:class:`~bertnas.search.ray_backend.RayTrialLoop`). A new backend adds both and a line to
:data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bertnas.errors import BertnasError
from bertnas.search.config import SearchConfig

if TYPE_CHECKING:
    import optuna

    from bertnas.search.loop import TrialLoop
    from bertnas.search.setup import SearchPlan

OnTrial = Callable[["optuna.Study", "optuna.trial.FrozenTrial"], None]


class Backend(Protocol):
    """What :func:`bertnas.search.loop.run_search` needs of a backend's options."""

    def check(self, config: SearchConfig) -> None: ...

    def make_loop(self, plan: SearchPlan, progress: bool = True, on_trial: OnTrial | None = None) -> TrialLoop: ...


@dataclass
class LocalOptions:
    """The local backend: trials one after another in this process."""

    def check(self, config: SearchConfig) -> None:
        """Nothing the local backend cannot do."""

    def make_loop(self, plan: SearchPlan, progress: bool = True, on_trial: OnTrial | None = None) -> TrialLoop:
        from bertnas.search.loop import LocalTrialLoop

        return LocalTrialLoop(plan, progress, on_trial)


@dataclass
class RayOptions:
    """Where and how wide to run: ``address`` None starts Ray in this process (embedded)."""

    address: str | None = None
    workers: int | None = None  # default: 2 embedded; on a cluster, its CPUs / cpus_per_worker
    cpus_per_worker: float = 1.0
    gpus_per_trial: float = 0.0

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise BertnasError(f"--workers {self.workers} must be at least 1")
        if self.gpus_per_trial < 0:
            raise BertnasError(f"--gpus-per-trial {self.gpus_per_trial} must be 0 or more")
        if self.cpus_per_worker <= 0:
            raise BertnasError(f"cpus per worker {self.cpus_per_worker} must be positive")

    def check(self, config: SearchConfig) -> None:
        """Refuse what the Ray backend cannot do, before anything starts."""
        self.validate()
        if config.fidelity is not None:
            raise BertnasError(
                "--multi-fidelity runs on the local backend only for now; drop it or use --backend local"
            )

    def make_loop(self, plan: SearchPlan, progress: bool = True, on_trial: OnTrial | None = None) -> TrialLoop:
        from bertnas.search.ray_backend import RayTrialLoop

        return RayTrialLoop(plan, self, progress, on_trial)


#: The backends by the name ``--backend`` takes.
BACKENDS: dict[str, type] = {"local": LocalOptions, "ray": RayOptions}


__all__ = ["BACKENDS", "Backend", "LocalOptions", "OnTrial", "RayOptions"]
