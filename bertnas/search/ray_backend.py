"""The Ray backend: the same study, its accuracy evaluations spread over a Ray cluster.

:class:`RayTrialLoop` is a :class:`~bertnas.search.loop.TrialLoop`: the study, its resume
rule, the stop and give-up rules, progress and the run directory are the local backend's.
The driver runs the cheap part of every trial itself (``study.ask()``, the subnet
suggestion, the latency predictions and the rejection of subnets over every budget, from
the plan: it loads no weights and no data). Only scoring, the expensive part, goes to a
pool of Ray actors: the trials' subnets, and at the end the reference points and the dev
report. Each actor loads the supernet once (:class:`SubnetEvaluator`) and scores every
subnet it is sent; they share the supernet's SQLite accuracy cache, so no subnet is
evaluated twice across workers or runs. Scores come back to the driver, which records
them on the trial and ``tell``s the study, exactly as the local backend does.

Fault tolerance: actors are created with ``max_restarts=-1`` and ``max_task_retries=-1``,
so a worker process or node that dies mid-trial is restarted elsewhere and the trial's
evaluation is retried there; should an actor be lost for good, the driver replaces it
and sends the trial again. The trial stays RUNNING (with heartbeats) meanwhile, so the
study ends with the requested number of evaluated trials. A killed driver leaves at most
its in-flight trials RUNNING; a rerun resumes the study like the local backend does.

Why not Ray Tune's ``OptunaSearch``: it keeps its own in-memory study, records no
user attributes (the constraints NSGA-II needs, latencies, configs), and resumes through
Tune's experiment checkpoints rather than the Optuna storage; a Tune trial per subnet
would also start a trainable per trial. The ask/tell driver keeps the study in the one
Optuna storage every other command reads. See docs/ray.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.search.backends import OnTrial, RayOptions
from bertnas.search.config import SearchConfig
from bertnas.search.loop import TrialLoop, run_search
from bertnas.search.results import SearchSummary, SubnetScore
from bertnas.search.setup import SearchPlan
from bertnas.search.study import evaluation_units
from bertnas.search.trial import Proposal

#: Trial user attribute: which worker (node id, process id) evaluated the trial.
WORKER_ATTR = "ray_worker"
#: Trial user attribute: when that worker process loaded the supernet (one value per process).
LOADED_ATTR = "ray_worker_loaded_at"
#: Times one trial is sent again after its actor was lost for good, before it is marked FAIL.
MAX_DISPATCHES = 4
#: Seconds between heartbeats of in-flight trials (the storage's interval is 60 s).
HEARTBEAT_EVERY = 20.0

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SubnetWorker:
    """A Ray actor's state: one supernet, loaded once, scoring the subnets it is sent."""

    def __init__(
        self, supernet: str, task: str, split: str, subset: int | None, glue_dir: str | None, device: str
    ) -> None:
        if not Path(supernet).is_dir():
            raise BertnasError(
                f"supernet {supernet} is not on this worker's node; put it on a volume every node mounts at that path"
            )
        self.evaluator = SubnetEvaluator.open(
            supernet, task=task, split=split, subset=subset, glue_dir=glue_dir, device=device
        )
        self.glue_dir = glue_dir
        self.splits = {split: self.evaluator}
        self.loaded_at = time.time()
        self.evaluations = 0

    def ready(self) -> float:
        """When this process loaded the supernet (a cheap call that waits for the actor to start)."""
        return self.loaded_at

    def baseline(self) -> dict[str, Any]:
        """The input-ignoring score of the split trials are scored on."""
        return self.evaluator.baseline()

    def score(self, arch_json: str, split: str | None = None) -> tuple[SubnetScore, str, float]:
        """One subnet's score on the trials' split (or ``split``; the shared cache first), and who
        computed it: ``(score, worker, loaded_at)``."""
        import ray

        if split is not None and split not in self.splits:
            self.splits[split] = self.evaluator.on_split(split, glue_dir=self.glue_dir)
        evaluator = self.evaluator if split is None else self.splits[split]
        score = evaluator.evaluate(ArchConfig.from_json(arch_json))
        self.evaluations += 1
        return score, f"{ray.get_runtime_context().get_node_id()[:12]}:{os.getpid()}", self.loaded_at


def connect(options: RayOptions) -> bool:
    """Connect to (or start) Ray; True when this call started or joined it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if options.address is None:
        # Embedded: a private single-node Ray on loopback, no dashboard, only the CPUs the workers use.
        _keep_loopback()
        workers = options.workers or 2
        ray.init(
            address="local",  # never join a cluster found in the environment or Ray's temp files
            num_cpus=max(1, int(round(workers * options.cpus_per_worker))),
            num_gpus=math.ceil(workers * options.gpus_per_trial) if options.gpus_per_trial else None,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
        return True
    host = options.address.rsplit(":", 1)[0] if options.address != "auto" else ""
    if host in _LOOPBACK:
        _keep_loopback()
    if options.address != "auto":
        _check_reachable(options.address)
    try:
        ray.init(address=options.address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BertnasError(f"cannot connect to the Ray cluster at {options.address}: {first}") from None
    return True


def _check_reachable(address: str) -> None:
    """A one-line error for an address nothing listens on (ray.init would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BertnasError(f"--address {address!r} is not HOST:PORT or auto (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as error:
        raise BertnasError(
            f"cannot reach the Ray cluster at {address}: {error.strerror or error}; start it with "
            "`ray start --head` or pass the head node's GCS address"
        ) from None


def _reason(error: BaseException) -> str:
    """The one line of a Ray error that says what went wrong (a BertnasError's message when there is one)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "BertnasError:" in line:
            return line.split("BertnasError:", 1)[1].strip()
    return lines[0] if lines else type(error).__name__


def _keep_loopback() -> None:
    """Stop Ray from rewriting 127.0.0.1 to this machine's outward IP.

    Ray replaces a loopback node or cluster address with the host's outward IP before using it,
    so an embedded Ray would register on that interface and a cluster bound to 127.0.0.1 could
    not be joined. This flag (otherwise only for Windows/macOS) makes its IP discovery answer
    127.0.0.1; it changes nothing else.
    """
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _worker_count(options: RayOptions) -> int:
    import ray

    if options.workers is not None:
        return options.workers
    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // options.cpus_per_worker))


class RayTrialLoop(TrialLoop):
    """Asks the study for trials, rejects or dispatches them, tells the results; see the module doc."""

    backend = "ray"

    def __init__(
        self, plan: SearchPlan, options: RayOptions, progress: bool = True, on_trial: OnTrial | None = None
    ) -> None:
        super().__init__(plan, progress, on_trial)
        self.options = options
        self.actors: list[Any] = []
        self.in_flight: dict[Any, tuple[int, optuna.Trial, Proposal]] = {}  # ref -> (slot, trial, proposal)
        self.dispatches: dict[int, int] = {}  # trial number -> times sent
        self.lost_in_a_row = 0  # actor losses since the last result; many in a row means workers cannot start
        self._started_ray = False
        self._baseline: dict[str, Any] | None = None

    def description(self) -> str:
        return f"search {self.plan.study_name} (ray x{len(self.actors)})"

    # ------------------------------------------------------------------ actors
    def _new_actor(self) -> Any:
        import ray

        config = self.config
        glue_dir = str(Path(config.glue_dir).resolve()) if config.glue_dir else None
        device = "cuda" if self.options.gpus_per_trial > 0 and config.eval_device == "cpu" else config.eval_device
        actor_class = ray.remote(SubnetWorker).options(
            num_cpus=self.options.cpus_per_worker,
            num_gpus=self.options.gpus_per_trial,
            max_restarts=-1,
            max_task_retries=-1,
            scheduling_strategy="SPREAD",
        )
        return actor_class.remote(
            str(Path(self.plan.supernet_path).resolve()),
            self.plan.task.ref,
            config.split,
            config.dev_subset,
            glue_dir,
            device,
        )

    def open(self) -> dict[str, Any]:
        import ray
        from ray.exceptions import RayActorError

        self._started_ray = connect(self.options)
        workers = _worker_count(self.options)
        started = time.perf_counter()
        self.actors = [self._new_actor() for _ in range(workers)]
        # No trial can run before a worker has loaded the supernet; waiting here separates that startup cost.
        try:
            ray.get([actor.ready.remote() for actor in self.actors])
        except RayActorError as error:  # a constructor failed: e.g. the supernet is not on a worker's node
            raise BertnasError(f"a Ray worker could not start: {_reason(error)}") from None
        return {
            "workers": workers,
            "address": self.options.address or "embedded",
            "worker_startup_s": round(time.perf_counter() - started, 2),
        }

    def close(self) -> None:
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def baseline(self) -> dict[str, Any]:
        import ray

        if self._baseline is None:
            self._baseline = ray.get(self.actors[0].baseline.remote())
        return self._baseline

    def score(self, archs: Sequence[ArchConfig], split: str) -> list[SubnetScore]:
        """Scores spread over the workers (in order); the trials' split when ``split`` is the search's own."""
        import ray

        wanted = None if split == self.config.split else split
        refs = [self.actors[k % len(self.actors)].score.remote(arch.to_json(), wanted) for k, arch in enumerate(archs)]
        return [result[0] for result in ray.get(refs)]

    def _dispatch(self, slot: int, trial: optuna.Trial, proposal: Proposal) -> None:
        ref = self.actors[slot].score.remote(proposal.arch.to_json())
        self.in_flight[ref] = (slot, trial, proposal)
        self.dispatches[trial.number] = self.dispatches.get(trial.number, 0) + 1

    # ------------------------------------------------------------------ trials
    def _propose(self, study: optuna.Study) -> tuple[optuna.Trial, Proposal]:
        """Ask for trials until one is not rejected: ``(trial, proposal)``; a rejected trial is told
        PRUNED and counted (the give-up rule raises)."""
        while True:
            trial = study.ask()
            try:
                return trial, self.plan.trials.begin(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
                self.after_trial(study, study._storage.get_trial(trial._trial_id))

    def run_trials(self, study: optuna.Study) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        storage = study._storage
        # Trials a killed driver left RUNNING past the grace period become FAIL (optimize() does the same);
        # the heartbeats below are recorded by hand, which Optuna warns about outside optimize().
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = self.config.trials
        last_heartbeat = time.monotonic()
        done = False
        told: list[int] = []  # told trials the hook has not seen yet: it sees them once idle workers have work
        try:
            while True:
                complete = evaluation_units(study)
                # Fill idle workers, never asking for more trials than can still be needed.
                busy = {slot for slot, _, _ in self.in_flight.values()}
                for slot in range(len(self.actors)):
                    if slot in busy or done or complete + len(self.in_flight) >= trials:
                        continue
                    trial, proposal = self._propose(study)
                    self._dispatch(slot, trial, proposal)
                if told and self.on_trial is not None:
                    trials_by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
                    for number in told:
                        self.on_trial(study, trials_by_number[number])
                told = []
                if not self.in_flight:
                    break
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=HEARTBEAT_EVERY)
                if time.monotonic() - last_heartbeat >= HEARTBEAT_EVERY:
                    for _, trial, _ in self.in_flight.values():
                        storage.record_heartbeat(trial._trial_id)
                    last_heartbeat = time.monotonic()
                for ref in ready:
                    slot, trial, proposal = self.in_flight.pop(ref)
                    try:
                        score, worker, loaded_at = ray.get(ref)
                    except RayActorError as error:
                        # The actor is gone for good (restarts exhausted): replace it and send the trial again.
                        self.lost_in_a_row += 1
                        if self.lost_in_a_row > MAX_DISPATCHES * len(self.actors):
                            study.tell(trial, state=TrialState.FAIL)
                            reason = _reason(error)
                            raise BertnasError(f"Ray workers keep dying before finishing a trial: {reason}") from None
                        self._retry(study, slot, trial, proposal)
                        continue
                    except RayTaskError as error:
                        study.tell(trial, state=TrialState.FAIL)
                        cause = getattr(error, "cause", None)
                        if isinstance(cause, BertnasError):
                            raise BertnasError(str(cause)) from None
                        raise
                    self.lost_in_a_row = 0
                    trial.set_user_attr(WORKER_ATTR, worker)
                    trial.set_user_attr(LOADED_ATTR, loaded_at)
                    study.tell(trial, self.plan.trials.finish(trial, proposal, score))
                    done = self.after_trial(study, storage.get_trial(trial._trial_id), notify=False) or done
                    told.append(trial.number)
        except BaseException:
            # Stopped by an error or Ctrl-C: the trials still in flight end FAIL (as optimize() does with its
            # running trial) instead of staying RUNNING; they never count as evaluated.
            for _, trial, _ in self.in_flight.values():
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
            self.in_flight.clear()
            raise

    def _retry(self, study: optuna.Study, slot: int, trial: optuna.Trial, proposal: Proposal) -> None:
        import ray

        ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._new_actor()
        if self.dispatches.get(trial.number, 0) >= MAX_DISPATCHES:
            study.tell(trial, state=TrialState.FAIL)  # not counted: the study still reaches its trials
            return
        self._dispatch(slot, trial, proposal)


def run_search_ray(
    config: SearchConfig, options: RayOptions | None = None, progress: bool = True, on_trial: OnTrial | None = None
) -> SearchSummary:
    """``run_search`` on Ray: same checks, same study, same run directory; the summary."""
    return run_search(config, progress, options or RayOptions(), on_trial)
