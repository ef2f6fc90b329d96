"""Hardware-aware multi-objective search over a weight-shared supernet.

``bertnas search`` maximizes the task metric and minimizes the predicted latency on the
first device under a latency budget per device, with Optuna (NSGA-II by default). Each
trial is evaluated once (weight-shared accuracy, cached) and its latency predicted on
every device, so fronts for other devices and budgets are rebuilt from the stored
trials: :meth:`SearchRun.pareto`.

Modules, in the order a search uses them: :mod:`.config` (settings, study files),
:mod:`.budget` (``60ms``), :mod:`.setup` (the cheap plan, then the load), :mod:`.objectives`,
:mod:`.accuracy` (the weight-shared evaluator), :mod:`.results` (typed scores and front
points), :mod:`.trial` (one trial), :mod:`.loop` (the :class:`~.loop.TrialLoop` interface, the
local backend, :func:`run_search`), :mod:`.ray_backend`, :mod:`.study` (storage, samplers:
:mod:`.planned`, :mod:`.evolution`, :mod:`.surrogate`), :mod:`.finalize` (the run directory),
:mod:`.run` (reading it back), :mod:`.pareto` (fronts, hypervolume), :mod:`.plot`.
"""

from typing import Any

from bertnas.search.budget import parse_budget
from bertnas.search.config import SearchConfig, load_study_file
from bertnas.search.pareto import hypervolume, pareto_front
from bertnas.search.results import FrontPoint, SearchSummary, SubnetScore
from bertnas.search.run import SearchRun

__all__ = [
    "FrontPoint",
    "SearchConfig",
    "SearchRun",
    "SearchSummary",
    "SubnetScore",
    "hypervolume",
    "load_study_file",
    "pareto_front",
    "parse_budget",
    "run_search",
]


def run_search(config: SearchConfig, progress: bool = True, backend: Any = None) -> SearchSummary:
    """Run a search on ``backend`` (the local one by default; see :func:`bertnas.search.loop.run_search`)."""
    from bertnas.search.loop import run_search as _run

    return _run(config, progress, backend)
