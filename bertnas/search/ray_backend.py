"""The Ray backend: the same study, its accuracy evaluations spread over a Ray cluster.

The driver keeps the Optuna study (same storage, sampler, constraints and resume rule as
the local backend) and runs the cheap part of every trial itself: ``study.ask()``, the
subnet suggestion, the latency predictions and the rejection of subnets over every
budget. Only the accuracy evaluation, the expensive part, goes to a pool of Ray actors.
Each actor loads the supernet once (:class:`SubnetEvaluator`) and evaluates every
subnet it is sent; they share the supernet's SQLite accuracy cache, so no subnet is
evaluated twice across workers or runs. Results come back to the driver, which records
them on the trial and ``tell``s the study, exactly as :class:`TrialEvaluator` does.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.locks import exclusive
from bertnas.search.config import SearchConfig
from bertnas.search.driver import (
    SearchContext,
    _existing_trials,
    close_interrupted,
    context_sampler,
    count_states,
    finalize,
    prepare,
    rejection_limit,
    report_progress,
    save_sessions,
    seed_study,
    start_session,
    too_tight,
)
from bertnas.search.evaluate import Candidate, measurement
from bertnas.search.study import open_storage, open_study

#: Trial user attribute: which worker (node id, process id) evaluated the trial.
WORKER_ATTR = "ray_worker"
#: Trial user attribute: when that worker process loaded the supernet (one value per process).
LOADED_ATTR = "ray_worker_loaded_at"
#: Times one trial is sent again after its actor was lost for good, before it is marked FAIL.
MAX_DISPATCHES = 4
#: Seconds between heartbeats of in-flight trials (the storage's interval is 60 s).
HEARTBEAT_EVERY = 20.0

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


class SubnetWorker:
    """A Ray actor's state: one supernet, loaded once, evaluating the subnets it is sent."""

    def __init__(
        self, supernet: str, task: str, split: str, subset: int | None, glue_dir: str | None, device: str
    ) -> None:
        from bertnas.training.evaluate import SubnetEvaluator

        if not Path(supernet).is_dir():
            raise BertnasError(
                f"supernet {supernet} is not on this worker's node; put it on a volume every node mounts at that path"
            )
        self.evaluator = SubnetEvaluator.open(
            supernet, task=task, split=split, subset=subset, glue_dir=glue_dir, device=device
        )
        self.loaded_at = time.time()
        self.evaluations = 0

    def ready(self) -> float:
        """When this process loaded the supernet (a cheap call that waits for the actor to start)."""
        return self.loaded_at

    def measure(self, arch_json: str) -> dict[str, Any]:
        """Metric, MACs and params of one subnet (the shared cache first), and who computed it."""
        import ray

        result = self.evaluator.evaluate(ArchConfig.from_json(arch_json))
        self.evaluations += 1
        return {
            **measurement(result),
            "worker": f"{ray.get_runtime_context().get_node_id()[:12]}:{os.getpid()}",
            "loaded_at": self.loaded_at,
        }


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


class RayTrialLoop:
    """Asks the study for trials, rejects or dispatches them, tells the results; see the module doc."""

    def __init__(
        self,
        context: SearchContext,
        options: RayOptions,
        progress: bool = True,
        on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    ) -> None:
        self.context = context
        self.options = options
        self.progress = progress
        self.on_trial = on_trial  # called after each told trial, once the free workers have new work
        self.actors: list[Any] = []
        self.in_flight: dict[Any, tuple[int, optuna.Trial, Candidate]] = {}  # ref -> (slot, trial, candidate)
        self.dispatches: dict[int, int] = {}  # trial number -> times sent
        self.lost_in_a_row = 0  # actor losses since the last result; many in a row means workers cannot start

    # ------------------------------------------------------------------ actors
    def _new_actor(self) -> Any:
        import ray

        config = self.context.config
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
            str(Path(self.context.supernet_path).resolve()),
            self.context.evaluator.data.task.ref,
            config.split,
            config.dev_subset,
            glue_dir,
            device,
        )

    def _dispatch(self, slot: int, trial: optuna.Trial, candidate: Candidate) -> None:
        ref = self.actors[slot].measure.remote(candidate.arch.to_json())
        self.in_flight[ref] = (slot, trial, candidate)
        self.dispatches[trial.number] = self.dispatches.get(trial.number, 0) + 1

    # ------------------------------------------------------------------ trials
    def _propose(self, study: optuna.Study) -> tuple[optuna.Trial, Candidate | None]:
        """A new trial with its candidate; None as candidate when it was rejected (and told PRUNED)."""
        trial = study.ask()
        try:
            return trial, self.context.trial_evaluator.begin(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return trial, None

    def _record(self, study: optuna.Study, trial: optuna.Trial, candidate: Candidate, record: dict) -> None:
        trial.set_user_attr(WORKER_ATTR, record["worker"])
        trial.set_user_attr(LOADED_ATTR, record["loaded_at"])
        study.tell(trial, self.context.trial_evaluator.finish(trial, candidate, record))

    def run(self) -> optuna.Study:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        context, config = self.context, self.context.config
        storage = open_storage(context.storage_url)
        before = _existing_trials(storage, context.study_name)
        sampler_seed = config.seed + before  # as the local backend: a resumed study draws new numbers
        sampler = context_sampler(context, sampler_seed)
        study, resumed = open_study(storage, context.study_name, context.objectives, sampler, context.identity)
        close_interrupted(study, context)
        if not resumed and (config.seed_references or config.seed_from):
            seed_study(study, context)
        workers = _worker_count(self.options)
        start_session(
            study,
            context,
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "trials_before": before,
                "sampler_seed": sampler_seed,
                "backend": "ray",
                "workers": workers,
                "address": self.options.address or "embedded",
            },
        )
        # Trials a killed driver left RUNNING past the grace period become FAIL (optimize() does the same);
        # the heartbeats below are recorded by hand, which Optuna warns about outside optimize().
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        done = count_states(study)["COMPLETE"]
        if done >= config.trials:
            return study
        started = time.perf_counter()
        self.actors = [self._new_actor() for _ in range(workers)]
        # No trial can run before a worker has loaded the supernet; waiting here separates that startup cost.
        try:
            ray.get([actor.ready.remote() for actor in self.actors])
        except RayActorError as error:  # a constructor failed: e.g. the supernet is not on a worker's node
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            raise BertnasError(f"a Ray worker could not start: {_reason(error)}") from None
        context.identity["sessions"][-1]["worker_startup_s"] = round(time.perf_counter() - started, 2)
        save_sessions(study, context)
        bar = tqdm(
            total=config.trials,
            initial=done,
            desc=f"search {context.study_name} (ray x{workers})",
            unit="trial",
            disable=not self.progress,
        )
        rejected_in_a_row, last_table, last_heartbeat = 0, done, time.monotonic()
        pending_notify: list[int] = []  # told trials the hook has not seen yet
        try:
            while True:
                complete = count_states(study)["COMPLETE"]
                # Fill idle workers, never asking for more trials than can still be needed.
                busy = {slot for slot, _, _ in self.in_flight.values()}
                for slot in range(len(self.actors)):
                    if slot in busy or complete + len(self.in_flight) >= config.trials:
                        continue
                    while True:
                        trial, candidate = self._propose(study)
                        if candidate is not None:
                            rejected_in_a_row = 0
                            self._dispatch(slot, trial, candidate)
                            break
                        rejected_in_a_row += 1
                        if rejected_in_a_row >= rejection_limit(study.sampler):
                            raise too_tight(config, study.sampler)
                if pending_notify:
                    self._notify(study, pending_notify)
                    pending_notify = []
                if not self.in_flight:
                    break
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=HEARTBEAT_EVERY)
                if time.monotonic() - last_heartbeat >= HEARTBEAT_EVERY:
                    for _, trial, _ in self.in_flight.values():
                        storage.record_heartbeat(trial._trial_id)
                    last_heartbeat = time.monotonic()
                told = []
                for ref in ready:
                    slot, trial, candidate = self.in_flight.pop(ref)
                    try:
                        record = ray.get(ref)
                    except RayActorError as error:
                        # The actor is gone for good (restarts exhausted): replace it and send the trial again.
                        self.lost_in_a_row += 1
                        if self.lost_in_a_row > MAX_DISPATCHES * len(self.actors):
                            study.tell(trial, state=TrialState.FAIL)
                            reason = _reason(error)
                            raise BertnasError(f"Ray workers keep dying before finishing a trial: {reason}") from None
                        self._retry(study, slot, trial, candidate)
                        continue
                    except RayTaskError as error:
                        study.tell(trial, state=TrialState.FAIL)
                        cause = getattr(error, "cause", None)
                        if isinstance(cause, BertnasError):
                            raise BertnasError(str(cause)) from None
                        raise
                    self.lost_in_a_row = 0
                    self._record(study, trial, candidate, record)
                    told.append(trial.number)
                if not told:
                    continue
                _, last_table = report_progress(bar, study, context, last_table)
                if self.on_trial is not None:
                    pending_notify.extend(told)
        except BaseException:
            # Stopped by an error or Ctrl-C: the trials still in flight end FAIL (as optimize() does with its
            # running trial) instead of staying RUNNING; they never count as evaluated.
            for _, trial, _ in self.in_flight.values():
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
            self.in_flight.clear()
            raise
        finally:
            bar.close()
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
        return study

    def _notify(self, study: optuna.Study, told: list[int]) -> None:
        """The hook (tests, monitoring) sees the trials just told, after the idle workers got new work."""
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        for number in told:
            self.on_trial(study, trials[number])

    def _retry(self, study: optuna.Study, slot: int, trial: optuna.Trial, candidate: Candidate) -> None:
        import ray

        ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._new_actor()
        if self.dispatches.get(trial.number, 0) >= MAX_DISPATCHES:
            study.tell(trial, state=TrialState.FAIL)  # not counted: the study still reaches its trials
            return
        self._dispatch(slot, trial, candidate)


def run_search_ray(
    config: SearchConfig,
    options: RayOptions | None = None,
    progress: bool = True,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> dict[str, Any]:
    """``run_search`` on Ray: same checks, same study, same run directory; the summary."""
    import ray

    options = options or RayOptions()
    options.validate()
    if config.fidelity is not None:
        raise BertnasError("--multi-fidelity runs on the local backend only for now; drop it or use --backend local")
    with exclusive(config.run_dir(), "run directory"):
        context = prepare(config)
        started = connect(options)
        try:
            start = time.perf_counter()
            study = RayTrialLoop(context, options, progress, on_trial).run()
            wall = time.perf_counter() - start
        finally:
            if started:
                ray.shutdown()
        result = finalize(context, study, wall_time_s=wall)
    result["run_dir"] = str(context.run_dir)
    result["backend"] = {"name": "ray", **context.identity["sessions"][-1]}
    return result
