"""The Ray backend: a study on a multi-node Ray cluster on this machine, and one that loses a node mid-study.

The clusters are real (``ray.cluster_utils.Cluster``: a head and two worker nodes, every
process bound to 127.0.0.1); the supernet is a tiny real ElasticBert with the real
MiniLM tokenizer, the dev set a toy SST-2 file, the latency predictors the real profiles.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402
from toys import record_search_split, tiny_bert, write_toy_sst2  # noqa: E402

from bertnas.cli.main import main  # noqa: E402
from bertnas.errors import BertnasError  # noqa: E402
from bertnas.search import SearchConfig, SearchRun  # noqa: E402
from bertnas.search.ray_backend import LOADED_ATTR, WORKER_ATTR, RayOptions, run_search_ray  # noqa: E402
from bertnas.search.study import open_storage  # noqa: E402

DEVICE = "pixel4"
LOOPBACK = "127.0.0.1"
CLI = "import sys; from bertnas.cli.main import main; sys.exit(main(sys.argv[1:]))"
# Detect a killed node in ~2 s instead of Ray's default ~20 s.
FAST_FAILURE = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}


@pytest.fixture(scope="module")
def env(tmp_path_factory, minilm_hf):
    """A tiny unified-capable supernet, toy SST-2 dev data, an empty bertnas cache, a mid-space budget."""
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    root = tmp_path_factory.mktemp("ray-search")
    glue = root / "glue"
    (glue / "SST-2").mkdir(parents=True)
    write_toy_sst2(glue / "SST-2" / "train.tsv", 32, seed=0)
    write_toy_sst2(glue / "SST-2" / "dev.tsv", 48, seed=1)
    _, tokenizer = minilm_hf
    supernet = ElasticBert.from_hf_model(
        tiny_bert(tokenizer.vocab_size), "tiny-bert", tokenizer, max_ffn_stack=4, max_bottleneck=16, task="sst2"
    )
    supernet.save_pretrained(root / "supernet")
    record_search_split(root / "supernet", glue, tokenizer)
    space = load_space("unified").bind(supernet.limits, backbone="tiny-bert")
    predictor = load_predictor(DEVICE)
    budget = (predictor.predict(space.smallest()) + predictor.predict(space.largest())) / 2
    with pytest.MonkeyPatch.context() as patch:
        # Ray nodes and their workers inherit this environment (offline hub, this cache).
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        yield {"root": root, "glue": str(glue), "supernet": str(root / "supernet"), "budget": budget}


def _config(env, out: Path, **overrides) -> SearchConfig:
    values = dict(
        task="sst2",
        budgets_ms={DEVICE: env["budget"]},
        supernet=env["supernet"],
        glue_dir=env["glue"],
        trials=6,
        population=4,
        seed=0,
        out=str(out),
        references=False,
    )
    values.update(overrides)
    return SearchConfig(**values)


@pytest.fixture
def cluster():
    """A head (no CPUs: it only hosts the driver) and two 2-CPU worker nodes, all on loopback."""
    node = {"node_ip_address": LOOPBACK, "object_store_memory": 80 * 1024**2}
    head = dict(node, num_cpus=0, include_dashboard=False, _system_config=FAST_FAILURE)
    cluster = Cluster(initialize_head=True, head_node_args=head)
    workers = [cluster.add_node(num_cpus=2, **node) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _check_run(out: Path, trials: int) -> tuple:
    """Every trial accounted for in storage and run directory; (evaluated frame, storage trials)."""
    import optuna

    run = SearchRun.open(out)
    frame = run.trials
    assert set(frame["state"]) <= {"COMPLETE", "PRUNED"}, frame["state"].value_counts()
    assert (frame["state"] == "COMPLETE").sum() == trials == run.info["counts"]["evaluated"]
    assert run.info["counts"]["failed"] == 0 and run.info["counts"]["running_or_interrupted"] == 0
    stored = optuna.load_study(study_name=run.info["study"], storage=open_storage(run.storage_url)).trials
    assert [t.number for t in stored] == list(range(len(stored))) == sorted(frame["number"].tolist())
    done = frame[frame["state"] == "COMPLETE"]
    assert done["metric"].between(0, 1).all()
    assert (done[f"latency_ms.{DEVICE}"] <= run.budgets_ms[DEVICE]).all()  # one device: evaluated means feasible
    for suffix in ("csv", "json", "png"):
        assert (out / f"pareto_{DEVICE}.{suffix}").is_file()
    assert (out / "trials.csv").is_file() and (out / "trials.parquet").is_file()
    return done, [t for t in stored if t.state.name == "COMPLETE"]


def test_study_on_a_two_node_cluster(env, cluster, tmp_path):
    cluster_, _ = cluster
    out = tmp_path / "run"
    addresses = set()

    def record_addresses(study, trial):
        addresses.update(node["NodeManagerAddress"] for node in ray.nodes())

    options = RayOptions(address=cluster_.address, workers=2)
    result = run_search_ray(_config(env, out), options, progress=False, on_trial=record_addresses)
    assert addresses == {LOOPBACK}  # every node, as the driver sees them, is on loopback
    assert result.backend["workers"] == 2 and result.counts["evaluated"] == 6
    _, complete = _check_run(out, 6)
    workers = {t.user_attrs[WORKER_ATTR] for t in complete}
    nodes = {w.split(":")[0] for w in workers}
    assert len(nodes) == 2  # spread over both worker nodes
    # The supernet was loaded once per worker process, not once per trial.
    loads = {(t.user_attrs[WORKER_ATTR], t.user_attrs[LOADED_ATTR]) for t in complete}
    assert len(loads) == len(workers) <= 2 < len(complete)
    # The same study resumes (here with the local backend) up to a larger count: one study, either backend.
    from bertnas.search import run_search

    run_search(_config(env, out, trials=8), progress=False)
    _check_run(out, 8)
    tighter = env["budget"] * 0.8
    assert main(["pareto", str(out), "--device", DEVICE, "--budget", f"{tighter}ms", "--json", "--no-write"]) == 0


@pytest.fixture
def slow_trials(env, tmp_path, monkeypatch):
    """A larger dev set and an empty accuracy cache, so that every trial really runs for a while on its worker.

    With the module's shared cache every subnet an earlier test saw is answered at once, and the trial the
    test means to kill mid-flight may already be done before the node goes: set before ``cluster`` starts.
    """
    glue = tmp_path / "glue"
    (glue / "SST-2").mkdir(parents=True)
    write_toy_sst2(glue / "SST-2" / "train.tsv", 32, seed=0)
    write_toy_sst2(glue / "SST-2" / "dev.tsv", 4000, seed=2)
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    return str(glue)


def test_a_node_killed_mid_study_loses_no_trial(env, slow_trials, cluster, tmp_path):
    cluster_, nodes = cluster
    killed: dict = {}

    def kill_a_busy_node(study, trial):
        # The worker that just finished was handed its next trial already: kill its node (and the worker process
        # with it, as a machine failure would) while that trial is in flight.
        if killed or sum(t.state.name == "COMPLETE" for t in study.trials) < 2:
            return
        node_prefix, pid = trial.user_attrs[WORKER_ATTR].split(":")
        victim = next(n for n in nodes if n.node_id.startswith(node_prefix))
        killed["node"] = node_prefix
        killed["running"] = [t.number for t in study.trials if t.state.name == "RUNNING"]
        killed["workers_before"] = {t.user_attrs[WORKER_ATTR] for t in study.trials if t.state.name == "COMPLETE"}
        cluster_.remove_node(victim, allow_graceful=False)
        os.kill(int(pid), signal.SIGKILL)

    out = tmp_path / "run"
    # Enough trials after the kill (at the second completion) that the restarted worker surely gets some:
    # with 6 the surviving worker could finish the study while the new one was still starting.
    config = _config(env, out, trials=12, glue_dir=slow_trials)
    run_search_ray(config, RayOptions(address=cluster_.address, workers=2), progress=False, on_trial=kill_a_busy_node)
    assert killed and killed["running"]
    _, complete = _check_run(out, 12)  # the requested count, every trial COMPLETE or rejected, none lost
    numbers = {t.number for t in complete}
    assert set(killed["running"]) <= numbers  # the trials in flight at the kill completed
    workers = {t.user_attrs[WORKER_ATTR] for t in complete}
    # Two original worker processes plus the one restarted on the surviving node after the kill.
    assert len(workers) >= 3, workers
    assert any(not w.startswith(killed["node"]) for w in workers - killed["workers_before"])


def test_a_killed_driver_resumes(env, cluster, tmp_path):
    """kill -9 of the driver mid-study loses no told trial; rerunning the command finishes the study."""
    cluster_, _ = cluster
    out = tmp_path / "run"
    command = [
        sys.executable, "-c", CLI, "search", "--device", DEVICE, "--budget", f"{env['budget']}ms",
        "--supernet", env["supernet"], "--glue-dir", env["glue"], "--trials", "400", "--population", "4",
        "--out", str(out), "--no-references", "--json", "--backend", "ray", "--address", cluster_.address,
        "--workers", "2",
    ]  # fmt: skip
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and _completed(out / "study.db") < 3:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    killed_at = _completed(out / "study.db")
    assert killed_at >= 3
    config = _config(env, out, trials=killed_at + 2)
    result = run_search_ray(config, RayOptions(address=cluster_.address, workers=2), progress=False)
    assert result.counts["evaluated"] == killed_at + 2
    assert result.counts["failed"] == 0
    assert result.counts["running_or_interrupted"] <= 2  # at most the killed driver's in-flight trials
    assert (SearchRun.open(out).trials["state"] == "RUNNING").sum() == 0  # closed by the rerun
    frame = SearchRun.open(out).trials
    assert (frame["state"] == "COMPLETE").sum() == killed_at + 2
    assert frame["number"].tolist() == list(range(len(frame)))


def _completed(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_study_file_on_embedded_ray_and_errors(env, tmp_path, capsys):
    with pytest.raises(BertnasError, match="--workers 0"):
        run_search_ray(_config(env, tmp_path / "bad"), RayOptions(workers=0), progress=False)
    assert main(["search", "--device", DEVICE, "--budget", "9ms", "--workers", "2"]) == 2
    assert "need --backend ray" in capsys.readouterr().err
    with pytest.raises(BertnasError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        run_search_ray(_config(env, tmp_path / "bad"), RayOptions(address="127.0.0.1:1"), progress=False)
    study = tmp_path / "study.yaml"
    study.write_text(
        f"task: sst2\ndevices: {{{DEVICE}: {env['budget']}ms}}\nsampler: nsga2\ntrials: 3\npopulation: 3\n"
        f"seed: 1\nsupernet: {env['supernet']}\nglue_dir: {env['glue']}\nreferences: false\n"
    )
    out = tmp_path / "run"
    code = main(["study", "run", str(study), "--out", str(out), "--backend", "ray", "--workers", "1", "--json"])
    assert code == 0 and not ray.is_initialized()  # an embedded Ray is shut down after the search
    _check_run(out, 3)
    assert json.loads(capsys.readouterr().out)["backend"]["address"] == "embedded"


def test_the_driver_loads_no_weights(env, tmp_path, monkeypatch):
    """The driver works from the plan: the trials, the reference points and the dev report are all
    scored by the workers (separate processes), so a driver that cannot load a supernet still runs
    the whole search."""
    from bertnas.search.accuracy import SubnetEvaluator
    from bertnas.supernet import ElasticBert

    def refused(*args, **kwargs):
        raise AssertionError("the Ray driver loaded weights")

    monkeypatch.setattr(SubnetEvaluator, "open", refused)
    monkeypatch.setattr(ElasticBert, "from_pretrained", refused)
    out = tmp_path / "run"
    result = run_search_ray(_config(env, out, trials=3, references=True), RayOptions(workers=1), progress=False)
    assert result.counts["evaluated"] == 3 and not ray.is_initialized()
    run = SearchRun.open(out)
    assert {point["label"] for point in run.references} >= {"full"}  # the references were scored
    assert run.dev_report["points"] and all(
        0.0 <= point["dev_metric"] <= 1.0 for point in run.dev_report["points"].values()
    )
