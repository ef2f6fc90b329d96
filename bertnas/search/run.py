"""The run directory of a search, and reading it back.

Layout (every file but ``study.db`` is rewritten atomically, so a killed search never
leaves a half-written one; ``study.db`` is SQLite and transactional)::

    RUN/
      study.db               Optuna storage (open it with optuna-dashboard), unless --storage
      run.json               command, versions, seeds, hashes, budgets, storage URL, study name
      trials.csv, .parquet   every trial: state, metric, latency per device, MACs, params, config JSON
      references.json        full model and DynaBERT grid: metric, latency per device
      pareto_<device>.csv    the front under the device's budget (.json with full configs, .png plot)

``SearchRun.open(RUN)`` gives ``.info`` (run.json), ``.trials`` (a DataFrame read from
the study storage, or from trials.parquet when the storage is gone), ``.devices`` and
``.pareto(device, budget_ms)``: fronts for any device, including one the search did not
target, whose latencies are then predicted from the stored configs without evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write, atomic_write_text
from bertnas.errors import BertnasError
from bertnas.hardware import load_predictor, load_profile
from bertnas.hardware.conformal import effective_budgets
from bertnas.hardware.lengths import priced
from bertnas.paths import from_portable
from bertnas.readers import read_json
from bertnas.search.objectives import latency_column
from bertnas.search.pareto import pareto_front
from bertnas.search.plot import plot_front
from bertnas.search.results import FrontPoint
from bertnas.search.study import open_storage, sqlite_url
from bertnas.search.trial import CONFIG_ATTR, STATUS_ATTR

RUN_JSON = "run.json"
STUDY_DB = "study.db"
REFERENCES_JSON = "references.json"
TRIALS_CSV = "trials.csv"
TRIALS_PARQUET = "trials.parquet"
BASE_COLUMNS = [
    "number",
    "state",
    "status",
    "metric",
    "degenerate",
    "macs",
    "params",
    "cached",
    "arch_hash",
    "duration_s",
]
BASELINE_JSON = "baseline.json"
#: The dev-split report of every front point (and reference): evaluated once each, after the search.
DEV_METRICS_JSON = "dev_metrics.json"


def trials_frame(study: optuna.Study, devices: Iterable[str]) -> pd.DataFrame:
    """One row per trial: state, metric, latency per device, MACs, params, config JSON."""
    devices = list(devices)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "status": attrs.get(STATUS_ATTR, "running" if trial.state.name == "RUNNING" else trial.state.name.lower()),
            "metric": attrs.get("metric"),
            "degenerate": attrs.get("degenerate"),
            "macs": attrs.get("macs"),
            "params": attrs.get("params"),
            "cached": attrs.get("cached"),
            "arch_hash": attrs.get("arch_hash"),
            "duration_s": duration,
        }
        for device in devices:
            row[latency_column(device)] = attrs.get(latency_column(device))
        row["metrics"] = json.dumps(attrs["metrics"], sort_keys=True) if "metrics" in attrs else None
        row["config"] = attrs.get(CONFIG_ATTR)
        rows.append(row)
    columns = BASE_COLUMNS + [latency_column(d) for d in devices] + ["metrics", "config"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("metric", "duration_s", *(latency_column(d) for d in devices)):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in ("macs", "params"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    return frame


def write_front_files(
    directory: Path,
    trials: pd.DataFrame,
    device: str,
    budget_ms: float | None,
    metric_name: str,
    references: list[dict[str, Any]] | None,
    provenance: str | None = None,
    baseline: dict[str, Any] | None = None,
    dev: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``pareto_<device>.csv``, ``.json`` and ``.png`` under ``budget_ms``; returns the front.

    ``baseline`` (:func:`bertnas.training.evaluate.baseline_metrics`) is the score of a model
    that ignores its input; it goes into the JSON and the plot, and front points whose
    predictions are constant are marked ``degenerate``. ``dev`` (``dev_metrics.json``) gives
    each point its ``dev_metric``: the report, on data the search did not select on.
    """
    front = with_dev_metric(pareto_front(trials, device, budget_ms), dev)
    _atomic_write_csv(front, directory / f"pareto_{device}.csv")
    points = [point.to_json() for point in front_points(front)]
    payload = {
        "device": device,
        "budget_ms": budget_ms,
        "metric": metric_name,
        "metric_split": None if dev is None else _selection_split(dev),
        "dev_metric_split": None if dev is None else dev["split"],
        "latency_provenance": provenance,
        "baseline": baseline,
        "degenerate_points": sum(point["degenerate"] for point in points),
        "points": points,
    }
    atomic_write_text(directory / f"pareto_{device}.json", json.dumps(payload, indent=2) + "\n")
    plot_front(
        trials, front, device, budget_ms, metric_name, references, directory / f"pareto_{device}.png", baseline=baseline
    )
    return front


def with_dev_metric(front: pd.DataFrame, dev: dict[str, Any] | None) -> pd.DataFrame:
    """``front`` with a ``dev_metric`` column from a dev report (NaN where it has no entry)."""
    front = front.copy()
    points = (dev or {}).get("points", {})
    front["dev_metric"] = [points.get(h, {}).get("dev_metric", float("nan")) for h in front["arch_hash"]]
    front["dev_metric"] = pd.to_numeric(front["dev_metric"], errors="coerce")
    return front


def _selection_split(dev: dict[str, Any]) -> str:
    return dev.get("selection_split", "search")


def write_dev_metrics(directory: Path, report: dict[str, Any]) -> None:
    atomic_write_text(directory / DEV_METRICS_JSON, json.dumps(report, indent=2) + "\n")


def front_points(front: pd.DataFrame) -> list[FrontPoint]:
    """The points of a front (from :meth:`SearchRun.pareto`), typed."""
    return [FrontPoint.from_row(row) for _, row in front.iterrows()]


def write_trials(directory: Path, trials: pd.DataFrame) -> None:
    """``trials.csv`` and ``trials.parquet``, each replaced atomically."""
    _atomic_write_csv(trials, directory / TRIALS_CSV)
    atomic_write(directory / TRIALS_PARQUET, lambda path: trials.to_parquet(path, index=False))


def write_run_json(directory: Path, info: dict[str, Any]) -> None:
    atomic_write_text(directory / RUN_JSON, json.dumps(info, indent=2, sort_keys=False, default=str) + "\n")


class SearchRun:
    """A finished or interrupted search, read back from its run directory."""

    def __init__(self, directory: Path, info: dict[str, Any]) -> None:
        self.directory = directory
        self.info = info

    @classmethod
    def open(cls, path: str | Path) -> SearchRun:
        directory = Path(path)
        run_json = directory / RUN_JSON
        if not run_json.is_file():
            raise BertnasError(f"{directory} is not a search run directory (no {RUN_JSON}); run `bertnas search` first")
        info = read_json(run_json, "run record", max_bytes=64 * 1024 * 1024)
        if not isinstance(info, dict) or "budgets_ms" not in info:
            raise BertnasError(f"{run_json}:1: not a search run record (no budgets_ms); run `bertnas search` again")
        return cls(directory, info)

    @property
    def devices(self) -> list[str]:
        """The devices the search predicted latency for (the first one is optimized)."""
        return list(self.info["budgets_ms"])

    @property
    def budgets_ms(self) -> dict[str, float]:
        return dict(self.info["budgets_ms"])

    def predictor(self, device: str) -> tuple[Any, int | None]:
        """``(predictor, seq_len)`` pricing ``device`` as the search priced its devices (its
        ``--seq-len``, or the recorded length distribution for ``task:*``)."""

        return priced(load_predictor(device), self.info.get("seq_len_override"), self.info.get("length_distribution"))

    def guaranteed_budget(
        self, device: str, budget_ms: float | None, confidence: float | None
    ) -> tuple[float | None, dict | None]:
        """The budget on ``device``'s prediction scale, and its conformal record (None without one).

        ``budget_ms`` None: the search's requested budget for the device (before any confidence
        turned it into a bound). With ``confidence``: ``budget / (1 + q)`` from the residuals the
        device's profile stores; without: the budget itself, or the search's own (already
        guaranteed) budget when none is given.
        """
        recorded = (self.info.get("conformal") or {}).get(device)
        if confidence is None:
            if budget_ms is None:
                return self.budgets_ms.get(device), recorded
            return budget_ms, None
        if budget_ms is None:
            budget_ms = recorded["requested_budget_ms"] if recorded else self.budgets_ms.get(device)
        if budget_ms is None:
            raise BertnasError(
                f"--confidence needs a budget: the search did not target {device}; give one "
                "(pareto --budget 40ms, export --select best-under:40ms)"
            )

        effective, record = effective_budgets({device: budget_ms}, {device: load_profile(device)}, confidence)
        return effective[device], record[device]

    @property
    def split(self) -> str:
        """The split trials were scored on: ``search`` (held out of train) or ``dev`` (runs from
        before the search split, or ``--split dev``)."""
        return self.info.get("split", "dev")

    def dev_metric(self, arch_hash: str, metric: float | None = None) -> float | None:
        """A subnet's dev metric: the dev report's, or the trial's own ``metric`` when the search
        scored on dev; None when it was never evaluated on dev."""
        point = ((self.dev_report or {}).get("points") or {}).get(arch_hash)
        if point is not None:
            return float(point["dev_metric"])
        return metric if self.split == "dev" else None

    def supernet_dir(self, override: str | Path | None = None) -> Path:
        """The supernet the search evaluated (or ``override``), checked by its weights' fingerprint."""
        from bertnas.supernet.elastic import WEIGHTS_NAME, supernet_fingerprint

        directory = Path(override) if override else from_portable(self.info["supernet"], self.directory)
        if not (directory / WEIGHTS_NAME).is_file():
            raise BertnasError(
                f"supernet {directory} (used by the search, recorded as {self.info['supernet']!r} from the run "
                "directory) is missing; pass --supernet DIR"
            )
        expected = (self.info.get("hashes") or {}).get("supernet_fingerprint")
        if expected and supernet_fingerprint(directory) != expected:
            raise BertnasError(
                f"supernet {directory} is not the one the search evaluated (fingerprint "
                f"{supernet_fingerprint(directory)}, run recorded {expected}); its metrics would not match"
            )
        return directory

    @property
    def metric_name(self) -> str:
        return self.info.get("metric", "metric")

    @cached_property
    def baseline(self) -> dict[str, Any] | None:
        """The input-ignoring score on the search's evaluation data (``baseline.json``), if recorded."""
        path = self.directory / BASELINE_JSON
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def dev_report(self) -> dict[str, Any] | None:
        """The dev metric of the front points (``dev_metrics.json``), if the search wrote one."""
        path = self.directory / DEV_METRICS_JSON
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def references(self) -> list[dict[str, Any]]:
        path = self.directory / REFERENCES_JSON
        return json.loads(path.read_text()) if path.is_file() else []

    @property
    def storage_url(self) -> str:
        """The study's storage: the run directory's own ``study.db`` when the search used the default
        (recorded relative, so a moved or copied run opens its own copy), else the URL recorded."""

        relative = self.info.get("storage_file")
        if relative:
            return sqlite_url(self.directory / relative)
        if not self.info.get("storage"):
            raise BertnasError(f"{self.directory / RUN_JSON} records no study storage; rerun the search")
        return self.info["storage"]

    def study(self) -> optuna.Study:

        storage = open_storage(self.storage_url, must_exist=True)
        return optuna.load_study(study_name=self.info["study"], storage=storage)

    @cached_property
    def trials(self) -> pd.DataFrame:
        """Every trial, from the study storage (the source of truth) or trials.parquet."""
        try:
            return trials_frame(self.study(), self.devices)
        except (BertnasError, KeyError):
            parquet = self.directory / TRIALS_PARQUET
            if parquet.is_file():
                return pd.read_parquet(parquet)
            raise

    def with_device(self, device: str) -> pd.DataFrame:
        """``trials`` with a latency column for ``device``, predicted from the configs if missing."""
        trials = self.trials
        column = latency_column(device)
        if column in trials.columns and trials[column].notna().any():
            return trials

        predictor, seq_len = self.predictor(device)
        trials = trials.copy()
        has_config = trials["config"].notna()
        archs = [ArchConfig.from_json(text) for text in trials.loc[has_config, "config"]]
        trials[column] = float("nan")
        if archs:
            trials.loc[has_config, column] = predictor.predict_many(archs, seq_len)
        return trials

    def pareto(self, device: str, budget_ms: float | None = None) -> pd.DataFrame:
        """The front on ``device`` under ``budget_ms`` (default: the search's budget for it)."""
        if budget_ms is None:
            budget_ms = self.budgets_ms.get(device)
        return with_dev_metric(pareto_front(self.with_device(device), device, budget_ms), self.dev_report)

    def write_front(self, device: str, budget_ms: float | None = None) -> pd.DataFrame:
        """Rebuild ``pareto_<device>.*`` from stored trials (no evaluation) and return the front."""
        if budget_ms is None:
            budget_ms = self.budgets_ms.get(device)
        trials = self.with_device(device)
        references = self._references_for(device)
        return write_front_files(
            self.directory,
            trials,
            device,
            budget_ms,
            self.metric_name,
            references,
            baseline=self.baseline,
            dev=self.dev_report,
        )

    def _references_for(self, device: str) -> list[dict[str, Any]]:
        references = self.references
        if not references or all(device in r["latency_ms"] for r in references):
            return references
        predictor, seq_len = self.predictor(device)
        out = []
        for reference in references:
            latency = dict(reference["latency_ms"])
            arch = ArchConfig.from_json(reference["config"])
            latency[device] = float(predictor.predict(arch, seq_len))
            out.append({**reference, "latency_ms": latency})
        return out


def _atomic_write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda target: frame.to_csv(target, index=False))
