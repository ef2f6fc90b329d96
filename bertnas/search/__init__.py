"""Hardware-aware multi-objective search over a weight-shared supernet.

``bertnas search`` maximizes the task metric and minimizes the predicted latency on the
first device under a latency budget per device, with Optuna (NSGA-II by default). Each
trial is evaluated once (weight-shared accuracy, cached) and its latency predicted on
every device, so fronts for other devices and budgets are rebuilt from the stored
trials: :meth:`SearchRun.pareto`.

Modules: :mod:`.budget` (``60ms``), :mod:`.objectives`, :mod:`.study` (storage, samplers),
:mod:`.evolution` (regularized evolution sampler), :mod:`.evaluate` (one trial),
:mod:`.pareto` (fronts, hypervolume), :mod:`.plot`, :mod:`.run` (run directory),
:mod:`.config` (settings, study files), :mod:`.driver` (local backend).
"""

from bertnas.search.budget import parse_budget
from bertnas.search.config import SearchConfig, load_study_file
from bertnas.search.pareto import hypervolume, pareto_front
from bertnas.search.run import SearchRun

__all__ = ["SearchConfig", "SearchRun", "hypervolume", "load_study_file", "pareto_front", "parse_budget", "run_search"]


def run_search(config: SearchConfig, progress: bool = True) -> dict:
    """Run a search with the local backend (see :func:`bertnas.search.driver.run_search`)."""
    from bertnas.search.driver import run_search as _run

    return _run(config, progress=progress)
