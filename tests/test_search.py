"""bertnas search: budgets, fronts, small searches on a tiny supernet, resume, kill -9, CLI errors.

The supernet is a real ElasticBert built from a 2-layer random BERT (real MiniLM
tokenizer) with room for the whole unified space; the dev set is a toy SST-2 file. The
latency predictors are the real hardware profiles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from toys import record_search_split, run_without_bertnas, tiny_bert, write_toy_sst2

from bertnas.arch import ArchConfig
from bertnas.cli.main import main
from bertnas.errors import BertnasError
from bertnas.search import SearchConfig, SearchRun, hypervolume, load_study_file, parse_budget, run_search
from bertnas.search.budget import pair_budgets
from bertnas.search.objectives import latency_column
from bertnas.search.pareto import front_mask, pareto_front

DEVICE_A = "pixel4"
DEVICE_B = "pixel4-x2"  # a second profile written by the `env` fixture: pixel4 at twice the speed
REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from bertnas.cli.main import main; sys.exit(main(sys.argv[1:]))"


# ---------------------------------------------------------------------- budgets and fronts (no model)
@pytest.mark.parametrize("text", ["60ms", "0.06s", "60 ms", " 60ms ", "60000us", "6e1ms"])
def test_budget_units(text):
    assert parse_budget(text) == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [("60", "no unit; write 60ms or 60s"), (60, "no unit"), ("fast", "not a duration"), ("0ms", "positive")],
)
def test_budget_errors(text, message):
    with pytest.raises(BertnasError, match=message):
        parse_budget(text)


def test_budgets_pair_with_devices():
    assert pair_budgets(["a", "b"], ["10ms"]) == {"a": 10.0, "b": 10.0}
    assert pair_budgets(["a", "b"], ["10ms", "0.02s"]) == {"a": 10.0, "b": 20.0}
    with pytest.raises(BertnasError, match="one per --device"):
        pair_budgets(["a", "b"], ["1ms", "2ms", "3ms"])


def test_front_and_hypervolume_by_hand():
    metric = np.array([0.80, 0.85, 0.82, 0.90, 0.85])
    latency = np.array([10.0, 20.0, 25.0, 40.0, 20.0])
    assert front_mask(metric, latency).tolist() == [True, True, False, True, False]  # duplicate kept once
    # Staircase to the reference (0.5, 50 ms): (20-10)*0.30 + (40-20)*0.35 + (50-40)*0.40
    assert hypervolume(metric, latency, 0.5, 50.0) == pytest.approx(3.0 + 7.0 + 4.0)
    assert hypervolume(metric, latency, 0.95, 50.0) == 0.0


def test_pareto_front_respects_the_budget():
    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"],
            "metric": [0.8, 0.9, None, 0.95],
            latency_column("d"): [5.0, 9.0, 1.0, 12.0],
        }
    )
    front = pareto_front(frame, "d", budget_ms=10.0)
    assert front["number"].tolist() == [0, 1]
    with pytest.raises(BertnasError, match="no latency for device 'e'"):
        pareto_front(frame, "e")


def test_committed_study_files_parse():
    files = sorted((REPO / "studies").glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        config = load_study_file(path)
        assert config.task == "sst2" and config.budgets_ms


def test_study_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: sst2\ndevices:\n  pixel4: 60\n")
    with pytest.raises(BertnasError, match=r"bad.yaml:3: .*no unit"):
        load_study_file(bad)
    bad.write_text("task: sst2\ndevices: {pixel4: 60ms}\ntrails: 10\n")
    with pytest.raises(BertnasError, match=r"bad.yaml:3: unknown key 'trails'"):
        load_study_file(bad)
    bad.write_text("task: sst2\ndevices: [pixel4\n")
    with pytest.raises(BertnasError, match=r"bad.yaml:\d+:"):
        load_study_file(bad)
    bad.write_text("task: sst2\ndevices: {pixel4: 60ms}\nseq_len: task:max\n")
    with pytest.raises(BertnasError, match=r"bad.yaml:3: --seq-len 'task:max'"):
        load_study_file(bad)
    bad.write_text("task: sst2\ndevices: {pixel4: 60ms}\nseed: 1\nconfidence: 1.5\n")
    with pytest.raises(BertnasError, match=r"bad.yaml:4: --confidence 1.5"):
        load_study_file(bad)


# ---------------------------------------------------------------------- a tiny supernet
@pytest.fixture(scope="module")
def env(tmp_path_factory, minilm_hf):
    """A tiny unified-capable supernet, toy SST-2 dev data, an empty bertnas cache."""
    from bertnas.supernet import ElasticBert

    root = tmp_path_factory.mktemp("search")
    glue = root / "glue"
    (glue / "SST-2").mkdir(parents=True)
    write_toy_sst2(glue / "SST-2" / "train.tsv", 32, seed=0)
    write_toy_sst2(glue / "SST-2" / "dev.tsv", 48, seed=1)
    _, tokenizer = minilm_hf
    model = tiny_bert(tokenizer.vocab_size)
    supernet = ElasticBert.from_hf_model(model, "tiny-bert", tokenizer, max_ffn_stack=4, max_bottleneck=16, task="sst2")
    supernet.save_pretrained(root / "supernet")
    record_search_split(root / "supernet", glue, tokenizer)
    profiles = root / "profiles"
    profiles.mkdir()
    for path in (REPO / "hardware_profiles").glob("*.yaml"):
        shutil.copy(path, profiles / path.name)
    derived = yaml.safe_load((profiles / f"{DEVICE_A}.yaml").read_text())
    derived["name"] = DEVICE_B
    per_call = derived["corrections"].get("per_call_ms", 0.0)  # the scaled-table pixel4 has a dispatch cost per call
    derived["corrections"] = {"scale": 0.5, "per_layer_ms": 0.0, "per_model_ms": 0.0, "per_call_ms": per_call / 2}
    (profiles / f"{DEVICE_B}.yaml").write_text(yaml.safe_dump(derived, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        patch.setenv("BERTNAS_PROFILES_DIR", str(profiles))
        yield {"root": root, "glue": str(glue), "supernet": str(root / "supernet")}


@pytest.fixture(scope="module")
def budgets(env):
    """Budgets halfway between the unified space's smallest and largest subnet on each device."""
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    limits = ElasticBert.from_pretrained(env["supernet"]).limits
    space = load_space("unified").bind(limits, backbone="tiny-bert")
    out = {}
    for device in (DEVICE_A, DEVICE_B):
        predictor = load_predictor(device)
        low, high = predictor.predict(space.smallest()), predictor.predict(space.largest())
        assert low < high
        out[device] = (low, (low + high) / 2)
    return out


def _config(env, out: Path, budgets_ms: dict[str, float], **overrides) -> SearchConfig:
    values = dict(
        task="sst2",
        budgets_ms=budgets_ms,
        supernet=env["supernet"],
        glue_dir=env["glue"],
        trials=6,
        sampler="nsga2",
        population=4,
        seed=0,
        out=str(out),
    )
    values.update(overrides)
    return SearchConfig(**values)


def test_default_supernet_is_the_spaces_own_else_the_unified_one(env, tmp_path, monkeypatch):
    from bertnas.paths import supernet_dir
    from bertnas.search.setup import _supernet_path

    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    teacher = tmp_path / "teacher"
    tiny_bert(64).save_pretrained(teacher)
    config = _config(env, tmp_path / "run", {DEVICE_A: 1.0}, supernet=None, space="dynabert", teacher=str(teacher))
    with pytest.raises(BertnasError, match="no trained supernet .*bertnas supernet train --task sst2"):
        _supernet_path(config, "sst2")
    unified = supernet_dir(str(teacher), "sst2", "unified")
    shutil.copytree(env["supernet"], unified)
    (unified / "training.json").write_text("{}")
    assert _supernet_path(config, "sst2") == unified
    own = supernet_dir(str(teacher), "sst2", "dynabert")
    shutil.copytree(unified, own)
    assert _supernet_path(config, "sst2") == own
    other = tmp_path / "other-teacher"
    tiny_bert(80).save_pretrained(other)  # another teacher: never handed the first one's supernets
    with pytest.raises(BertnasError, match="no trained supernet"):
        _supernet_path(_config(env, tmp_path / "run", {DEVICE_A: 1.0}, supernet=None, teacher=str(other)), "sst2")


@pytest.fixture(scope="module")
def two_device_run(env, budgets, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "two"
    budgets_ms = {DEVICE_A: budgets[DEVICE_A][1], DEVICE_B: budgets[DEVICE_B][1]}
    result = run_search(_config(env, out, budgets_ms, trials=8), progress=False)
    return out, result, budgets_ms


def test_search_writes_the_run_directory(two_device_run):
    out, result, budgets_ms = two_device_run
    for name in ("study.db", "run.json", "trials.csv", "trials.parquet", "references.json"):
        assert (out / name).is_file(), name
    for device in budgets_ms:
        for suffix in ("csv", "json", "png"):
            assert (out / f"pareto_{device}.{suffix}").is_file()
    run = SearchRun.open(out)
    assert run.devices == list(budgets_ms)
    assert run.info["counts"]["evaluated"] == 8 == result.counts["evaluated"]
    assert run.info["hashes"]["supernet_fingerprint"] and "optuna" in run.info["versions"]
    trials = run.trials
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    done = trials[trials["state"] == "COMPLETE"]
    assert done["metric"].between(0, 1).all() and done["config"].notna().all() and (done["macs"] > 0).all()
    rejected = trials[trials["state"] == "PRUNED"]
    assert rejected["metric"].isna().all()  # no evaluation was spent on them
    for _, row in rejected.iterrows():  # ... and they were over every budget
        assert all(row[latency_column(d)] > b for d, b in budgets_ms.items())
    for _, row in done.iterrows():  # evaluated ones fit at least one device
        assert any(row[latency_column(d)] <= b for d, b in budgets_ms.items())
    assert pd.read_parquet(out / "trials.parquet")["number"].tolist() == trials["number"].tolist()
    labels = [r["label"] for r in json.loads((out / "references.json").read_text())]
    assert "full" in labels and any(label.startswith("dynabert") for label in labels)


def test_every_reported_point_respects_its_budget(two_device_run):
    out, result, budgets_ms = two_device_run
    for device, budget in budgets_ms.items():
        written = json.loads((out / f"pareto_{device}.json").read_text())
        assert written["budget_ms"] == budget and written["points"]
        assert all(p["latency_ms"][device] <= budget for p in written["points"])
        assert all(p.latency_ms[device] <= budget for p in result.fronts[device].points)
        metrics = [p["metric"] for p in written["points"]]
        assert metrics == sorted(metrics) and len(set(metrics)) == len(metrics)  # a real front


def test_fronts_for_two_devices_without_evaluation(two_device_run, monkeypatch, budgets):
    out, _, budgets_ms = two_device_run
    import bertnas.training.evaluate as evaluate_module

    def no_evaluation(*args, **kwargs):
        raise AssertionError("a front rebuild must not evaluate")

    monkeypatch.setattr(evaluate_module, "evaluate_model", no_evaluation)
    monkeypatch.setattr(evaluate_module, "evaluate_predictions", no_evaluation)
    run = SearchRun.open(out)
    tighter = (budgets[DEVICE_B][0] + budgets_ms[DEVICE_B]) / 2
    front = run.pareto(DEVICE_B, tighter)
    assert (front[latency_column(DEVICE_B)] <= tighter).all()
    assert main(["pareto", str(out), "--device", DEVICE_B, "--budget", f"{tighter}ms", "--json"]) == 0
    assert json.loads((out / f"pareto_{DEVICE_B}.json").read_text())["budget_ms"] == pytest.approx(tighter)


def test_resume_continues_to_the_requested_count(env, budgets, tmp_path):
    budgets_ms = {DEVICE_A: budgets[DEVICE_A][1]}
    run_search(_config(env, tmp_path / "run", budgets_ms, trials=3, sampler="random", study="s"), progress=False)
    first = SearchRun.open(tmp_path / "run").trials
    run_search(_config(env, tmp_path / "run", budgets_ms, trials=6, sampler="random", study="s"), progress=False)
    second = SearchRun.open(tmp_path / "run").trials
    assert (second["state"] == "COMPLETE").sum() == 6
    kept = second.set_index("number").loc[first["number"], ["state", "metric", "config"]]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), first[["state", "metric", "config"]])
    info = SearchRun.open(tmp_path / "run").info
    assert len(info["sessions"]) == 2 and info["sessions"][0]["sampler_seed"] != info["sessions"][1]["sampler_seed"]
    # Resuming the same study with other settings is refused.
    other = {DEVICE_A: budgets[DEVICE_A][1] * 0.9}
    with pytest.raises(BertnasError, match="study 's' .* objectives"):
        run_search(_config(env, tmp_path / "run", other, trials=7, sampler="random", study="s"), progress=False)


@pytest.mark.parametrize("sampler", ["tpe", "evolution", "surrogate"])
def test_other_samplers(env, budgets, tmp_path, sampler):
    budgets_ms = {DEVICE_A: budgets[DEVICE_A][1]}
    result = run_search(_config(env, tmp_path / "run", budgets_ms, trials=7, population=3, sampler=sampler), False)
    assert result.counts["evaluated"] == 7
    assert all(p.latency_ms[DEVICE_A] <= budgets_ms[DEVICE_A] for p in result.fronts[DEVICE_A].points)


def test_kill_minus_nine_loses_nothing(env, budgets, tmp_path):
    out = tmp_path / "run"
    budget = f"{budgets[DEVICE_A][1]}ms"
    command = [
        sys.executable, "-c", CLI, "search", "--device", DEVICE_A, "--budget", budget,
        "--supernet", env["supernet"], "--glue-dir", env["glue"], "--trials", "400", "--sampler", "random",
        "--out", str(out), "--no-references", "--json",
    ]  # fmt: skip
    environment = {**os.environ, "BERTNAS_CACHE": str(env["root"] / "cache-kill")}
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
    database = out / "study.db"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and _completed(database) < 4:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        assert _completed(database) >= 4
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    killed_at = _completed(database)
    for path in out.iterdir():  # whatever carries a final name is complete
        if path.suffix == ".csv" and not path.name.startswith("."):
            pd.read_csv(path)
        elif path.suffix == ".parquet" and not path.name.startswith("."):
            pd.read_parquet(path)
        elif path.suffix == ".json" and not path.name.startswith("."):
            json.loads(path.read_text())
    config = _config(env, out, {DEVICE_A: budgets[DEVICE_A][1]}, trials=killed_at + 2, sampler="random")
    config.references = False
    result = run_search(config, progress=False)
    assert result.counts["evaluated"] == killed_at + 2
    assert result.counts["running_or_interrupted"] <= 1  # the trial the kill interrupted, if any
    # ... closed by the rerun (it holds the run directory's lock): nothing is left RUNNING
    assert (SearchRun.open(out).trials["state"] == "RUNNING").sum() == 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # temporaries cleaned up


def _completed(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


# ---------------------------------------------------------------------- CLI errors: one line, exit 2
def _cli_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_a_mistyped_device_fails_before_anything_is_trained(env, tmp_path, capsys, monkeypatch):
    """On a fresh machine the main command would plan and train a teacher and a supernet first; the
    checks that need no supernet (devices, budgets, space, lengths) come before that plan."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BERTNAS_CACHE", str(cache))
    import bertnas.pipeline

    def no_plan(*args, **kwargs):
        raise AssertionError("the pipeline was planned before the request was checked")

    monkeypatch.setattr(bertnas.pipeline, "plan_search", no_plan)
    base = ["search", "--glue-dir", env["glue"], "--out", str(tmp_path / "r")]
    assert "unknown device 'no-such-phone'" in _cli_error(
        capsys, [*base, "--device", "no-such-phone", "--budget", "60ms"]
    )
    assert "unknown search space" in _cli_error(
        capsys, [*base, "--device", DEVICE_A, "--budget", "60ms", "--space", "x"]
    )
    assert not cache.exists() or not any(cache.iterdir())  # nothing fine-tuned, trained or cached


def test_cli_errors(env, budgets, tmp_path, capsys):
    base = ["search", "--supernet", env["supernet"], "--glue-dir", env["glue"], "--out", str(tmp_path / "r")]
    assert "no unit" in _cli_error(capsys, [*base, "--device", DEVICE_A, "--budget", "60"])
    assert "pixel4" in _cli_error(capsys, [*base, "--device", "no-such-phone", "--budget", "60ms"])
    message = _cli_error(capsys, [*base, "--device", DEVICE_A, "--budget", "9ms", "--space", "x"])
    assert "unknown search space" in message
    assert "task" in _cli_error(capsys, [*base, "--device", DEVICE_A, "--budget", "9ms", "--task", "nope"]).lower()
    smallest = budgets[DEVICE_A][0]
    message = _cli_error(capsys, [*base, "--device", DEVICE_A, "--budget", f"{smallest / 10}ms"])
    assert "infeasible" in message and "smallest subnet" in message
    storage = "sqlite:////nonexistent-dir/x/study.db"
    assert "cannot open storage" in _cli_error(
        capsys, [*base, "--device", DEVICE_A, "--budget", f"{budgets[DEVICE_A][1]}ms", "--storage", storage]
    )
    missing = _cli_error(capsys, ["search", "--device", DEVICE_A, "--budget", "60ms", "--task", "sst2", "--no-train"])
    assert "no trained teacher and supernet" in missing and "without --no-train" in missing
    assert "not a search run directory" in _cli_error(capsys, ["pareto", str(tmp_path), "--device", DEVICE_A])
    fitting = [*base, "--device", DEVICE_A, "--budget", f"{budgets[DEVICE_A][1]}ms"]
    assert "between 0 and 1" in _cli_error(capsys, [*fitting, "--multi-fidelity", "1.5"])
    assert "local backend only" in _cli_error(capsys, [*fitting, "--multi-fidelity", "0.5", "--backend", "ray"])
    recipe = ["supernet", "train", "--task", "sst2", "--teacher", env["supernet"], "--out", str(tmp_path / "s")]
    assert "unknown training recipe 'nope'" in _cli_error(capsys, [*recipe, "--recipe", "nope"])


def test_study_run_cli(env, budgets, tmp_path, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(
        f"task: sst2\nspace: unified\ndevices:\n  {DEVICE_A}: {budgets[DEVICE_A][1]:.6f}ms\n"
        f"sampler: nsga2\ntrials: 4\npopulation: 2\nseed: 1\nreferences: false\n"
        f"supernet: {env['supernet']}\nglue_dir: {env['glue']}\nout: {tmp_path / 'run'}\n"
    )
    assert main(["study", "run", str(study), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["evaluated"] == 4 and summary["fronts"][DEVICE_A]["points"]


def test_rejected_subnets_are_never_evaluated(env, budgets, tmp_path, monkeypatch):
    from bertnas.search.accuracy import SubnetEvaluator

    evaluated: list[str] = []
    reported: list[str] = []
    original = SubnetEvaluator.evaluate

    def recording(self, arch):
        (evaluated if self.data.split == "search" else reported).append(arch.hash())
        return original(self, arch)

    monkeypatch.setattr(SubnetEvaluator, "evaluate", recording)
    # A tight budget (a quarter of the way from the smallest subnet to the midpoint): NSGA-II, which
    # learns the budget from rejected trials, has many.
    low, mid = budgets[DEVICE_A]
    config = _config(env, tmp_path / "run", {DEVICE_A: low + (mid - low) / 4}, trials=4, sampler="nsga2")
    config.references = False
    result = run_search(config, progress=False)
    trials = SearchRun.open(tmp_path / "run").trials
    assert result.counts["rejected"] > 0
    assert sorted(evaluated) == sorted(trials.loc[trials["state"] == "COMPLETE", "arch_hash"])
    assert reported and set(reported) <= set(evaluated)  # the dev report: front points only, after the search


@pytest.mark.parametrize("sampler", ["random", "evolution"])
def test_screening_samplers_reject_in_memory_not_in_the_study(env, budgets, tmp_path, sampler):
    """Random search and evolution draw configs over every budget again in memory: the same tight
    budget gives no rejected trial at all, and every evaluated subnet meets it."""
    low, mid = budgets[DEVICE_A]
    budget = low + (mid - low) / 4
    config = _config(env, tmp_path / "run", {DEVICE_A: budget}, trials=6, sampler=sampler, population=3)
    config.references = False
    result = run_search(config, progress=False)
    trials = SearchRun.open(tmp_path / "run").trials
    assert result.counts["rejected"] == 0 and result.counts["evaluated"] == 6
    assert (trials[latency_column(DEVICE_A)] <= budget).all()


def test_study_seeded_from_another_runs_front(env, budgets, tmp_path):
    """--seed-from: a unified search starts from a PoWER-BERT-only run's front, in its order."""
    from bertnas.arch import ArchConfig
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    budgets_ms = {DEVICE_A: budgets[DEVICE_A][1] * 100}
    first = _config(env, tmp_path / "powerbert", budgets_ms, space="powerbert", trials=5, sampler="random")
    run_search(first, progress=False)
    front = SearchRun.open(tmp_path / "powerbert").pareto(DEVICE_A, budgets_ms[DEVICE_A])
    assert len(front) >= 1
    supernet = ElasticBert.from_pretrained(env["supernet"])
    space = load_space("unified").bind(supernet.limits, backbone=supernet.config.backbone)
    expected = [space.to_values(ArchConfig.from_json(text)) for text in front["config"]]
    trials = len(expected) + 2
    seeded = _config(
        env, tmp_path / "unified", budgets_ms, trials=trials, sampler="random", seed_from=[str(tmp_path / "powerbert")]
    )
    run_search(seeded, progress=False)
    frame = SearchRun.open(tmp_path / "unified").trials.sort_values("number")
    got = [space.to_values(ArchConfig.from_json(c)) for c in frame["config"].head(len(expected))]
    assert got == expected and (frame["state"] == "COMPLETE").sum() == trials


def test_seed_from_must_be_a_list_of_run_directories(env, budgets, tmp_path):
    config = _config(env, tmp_path / "run", {DEVICE_A: budgets[DEVICE_A][1]}, seed_from=str(tmp_path))
    with pytest.raises(BertnasError, match="must be a list of run directories"):
        config.validate()


def test_seed_from_a_directory_that_is_not_a_run_is_refused_before_anything_is_written(env, budgets, tmp_path):
    config = _config(env, tmp_path / "run", {DEVICE_A: budgets[DEVICE_A][1]}, seed_from=[str(tmp_path)])
    with pytest.raises(BertnasError, match="not a search run directory"):
        run_search(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_seeded_study_starts_from_the_references(env, budgets, tmp_path):
    from bertnas.arch import ArchConfig
    from bertnas.search.trial import reference_archs
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    supernet = ElasticBert.from_pretrained(env["supernet"])
    space = load_space("unified").bind(supernet.limits, backbone=supernet.config.backbone)
    references = [a for a in reference_archs(space, supernet.full_arch()).values() if space.contains(a)]
    unique = []
    for arch in references:
        if space.to_values(arch) not in unique:
            unique.append(space.to_values(arch))
    budgets_ms = {DEVICE_A: budgets[DEVICE_A][1] * 100}  # every reference fits
    trials = len(unique) + 2
    config = _config(env, tmp_path / "run", budgets_ms, trials=trials, sampler="random", seed_references=True)
    run_search(config, progress=False)
    frame = SearchRun.open(tmp_path / "run").trials.sort_values("number")
    assert (frame["state"] == "COMPLETE").sum() == trials and "WAITING" not in set(frame["state"])
    first = [space.to_values(ArchConfig.from_dict(json.loads(c))) for c in frame["config"].head(len(unique))]
    assert first == unique  # the full model and the DynaBERT grid, in order, before any sampled trial
    # A resumed study is not seeded again.
    run_search(_config(env, tmp_path / "run", budgets_ms, trials=trials + 2, sampler="random", seed_references=True))
    again = SearchRun.open(tmp_path / "run").trials
    assert len(again) == trials + 2


def test_multi_fidelity_search_prunes_only_dominated_subnets(env, budgets, tmp_path):
    from bertnas.search.trial import BOUND_ATTR, PRUNED_FRONT

    budgets_ms = {DEVICE_A: budgets[DEVICE_A][1]}
    config = _config(env, tmp_path / "run", budgets_ms, trials=10, sampler="random", fidelity=0.5)
    result = run_search(config, progress=False)
    study = SearchRun.open(tmp_path / "run").study()
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    stopped = [t for t in study.trials if t.user_attrs.get("status") == PRUNED_FRONT]
    for trial in stopped:  # each stop was dominated by a subnet evaluated before it
        latency = trial.user_attrs[latency_column(DEVICE_A)]
        earlier = [t for t in done if t.number < trial.number and t.values[1] <= latency]
        assert earlier and max(t.values[0] for t in earlier) >= trial.user_attrs[BOUND_ATTR]
        assert 0 < trial.user_attrs["eval_fraction"] < 1
    assert result.counts["pruned_multi_fidelity"] == len(stopped)
    assert len(done) + int(sum(t.user_attrs["eval_fraction"] for t in stopped)) >= 10


def test_fronts_carry_the_baseline_and_degenerate_flags(two_device_run):
    from bertnas.export.selection import select_candidates

    out, result, budgets_ms = two_device_run
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["kind"] == "majority class" and 0.5 <= baseline["score"] <= 1.0
    assert result.baseline == baseline
    trials = SearchRun.open(out).trials
    done = trials[trials["state"] == "COMPLETE"]
    assert done["degenerate"].notna().all()
    device = next(iter(budgets_ms))
    written = json.loads((out / f"pareto_{device}.json").read_text())
    assert written["baseline"] == baseline
    assert written["degenerate_points"] == sum(p["degenerate"] for p in written["points"])
    run = SearchRun.open(out)
    flagged = done[done["degenerate"].astype(bool)]
    if not flagged.empty:  # a random tiny supernet: some subnets predict one class
        number = int(flagged.iloc[0]["number"])
        with pytest.raises(BertnasError, match="degenerate"):
            select_candidates(run, device, f"trial:{number}")
        assert select_candidates(run, device, f"trial:{number}", allow_degenerate=True)[0].trial == number
    exported = {c.trial for c in select_candidates(run, device, "pareto", allow_degenerate=True)}
    try:
        kept = {c.trial for c in select_candidates(run, device, "pareto")}
    except BertnasError as error:
        assert "constant output" in str(error)
        kept = set()
    front = {p["trial"]: p["degenerate"] for p in written["points"]}
    assert kept == {t for t in exported if not front[t]}


def test_a_moved_run_directory_opens_its_own_study(two_device_run, tmp_path):
    out, _, _ = two_device_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    run = SearchRun.open(moved)
    assert run.info["storage_file"] == "study.db"
    assert run.storage_url.endswith(str(moved / "study.db"))
    pd.testing.assert_frame_equal(run.trials, SearchRun.open(out).trials)
    # its storage gone: the table it wrote, and no new empty database in its place
    (moved / "study.db").unlink()
    (moved / "trials.parquet").rename(tmp_path / "kept.parquet")
    with pytest.raises(BertnasError, match="does not exist"):
        SearchRun.open(moved).study()
    assert not (moved / "study.db").exists()


def test_a_run_moved_with_its_supernet_finds_it_by_relative_path(two_device_run, env, tmp_path):
    """run.json records the supernet relative to the run directory (and its fingerprint), so the
    two moved together still belong together; the study storage is the run's own file."""
    out, _, _ = two_device_run
    info = SearchRun.open(out).info
    recorded = info["supernet"]
    assert not Path(recorded).is_absolute() and info["storage"] is None
    ups = Path(recorded).parts.count("..")
    new_run = tmp_path.joinpath(*["d"] * ups, "run")
    new_supernet = (new_run / recorded).resolve()
    assert tmp_path in new_supernet.parents
    shutil.copytree(out, new_run)
    shutil.copytree(env["supernet"], new_supernet)
    assert SearchRun.open(new_run).supernet_dir().resolve() == new_supernet
    shutil.rmtree(new_supernet)
    with pytest.raises(BertnasError, match="is missing; pass --supernet"):
        SearchRun.open(new_run).supernet_dir()


def test_two_searches_at_once_share_a_study_safely_and_never_one_directory(env, budgets, tmp_path):
    """Two real search processes: a second one into the same --out is refused at once, naming the
    holder; one into another directory on the same study storage cooperates through Optuna's
    storage (no corrupt table, nothing left RUNNING, the requested count reached)."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    budget = f"{budgets[DEVICE_A][1]}ms"
    TRIALS = 200  # toy trials take ~0.1 s: enough that the first is still running while a second starts

    def command(out: Path) -> list[str]:
        return [
            sys.executable, "-c", CLI, "search", "--device", DEVICE_A, "--budget", budget, "--supernet",
            env["supernet"], "--glue-dir", env["glue"], "--trials", str(TRIALS), "--sampler", "random",
            "--out", str(out), "--storage", storage, "--study", "shared", "--no-references",
        ]  # fmt: skip

    environment = {**os.environ, "BERTNAS_CACHE": str(env["root"] / "cache-concurrent")}
    first = subprocess.Popen(command(tmp_path / "a"), cwd=REPO, env=environment, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _completed(tmp_path / "shared.db") < 1:
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        refused = subprocess.run(command(tmp_path / "a"), cwd=REPO, env=environment, capture_output=True, text=True)
        assert first.poll() is None, "the first search ended before the second started: raise TRIALS"
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is in use by pid {first.pid}" in lines[0], refused.stderr
        second = subprocess.run(command(tmp_path / "b"), cwd=REPO, env=environment, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr[-2000:]
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0
    with sqlite3.connect(tmp_path / "shared.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(connection.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
    assert TRIALS <= states["COMPLETE"] <= TRIALS + 1 and "RUNNING" not in states  # each stops at the count it sees
    for out in (tmp_path / "a", tmp_path / "b"):
        assert SearchRun.open(out).info["study"] == "shared"


def test_a_reference_point_exports_like_a_trial(two_device_run, tmp_path, capsys):
    from bertnas.arch import ArchConfig
    from bertnas.cli.main import main
    from bertnas.export.selection import reference_name

    out, _, _ = two_device_run
    references = SearchRun.open(out).references
    label = next(point["label"] for point in references if point["label"].startswith("dynabert"))
    name = reference_name(label)
    assert name.startswith("dynabert-") and " " not in name
    args = ["export", str(out), "--device", DEVICE_A, "--format", "hf", "--allow-degenerate"]
    assert main([*args, "--select", f"reference:{name}", "--out", str(tmp_path / "e")]) == 0
    (entry,) = json.loads((tmp_path / "e" / "manifest.json").read_text())["models"]
    expected = next(point for point in references if point["label"] == label)
    assert entry["name"] == f"reference-{name}" and entry["trial"] is None
    supernet = SearchRun.open(out).supernet_dir()
    from bertnas.supernet import ElasticBert

    elastic = ElasticBert.from_pretrained(supernet)
    elastic.set_active_subnet(ArchConfig.from_json(expected["config"]))
    assert entry["arch_hash"] == elastic.get_active_arch().hash()  # the reference's subnet, as extracted
    assert main([*args, "--select", "reference:nope", "--out", str(tmp_path / "f")]) == 2
    assert "no reference point 'nope'; choose one of full, dynabert-" in capsys.readouterr().err


PLAIN_LOAD = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

directory = sys.argv[1]
model = AutoModelForSequenceClassification.from_pretrained(directory).eval()  # no remote code
tokenizer = AutoTokenizer.from_pretrained(directory)
batch = tokenizer(json.loads(sys.argv[2]), return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model(**batch).logits
labels = [row["label"] for row in pipeline("text-classification", model=directory)(json.loads(sys.argv[2]))]
print(json.dumps({"class": type(model).__name__, "logits": logits.tolist(), "labels": labels}))
"""


def test_the_full_reference_exports_as_a_plain_bert(two_device_run, tmp_path):
    """A subnet with the backbone's layout also ships as a plain BertForSequenceClassification."""
    import torch

    from bertnas.model import CompactBert

    out, _, _ = two_device_run
    export = tmp_path / "plain"
    args = ["export", str(out), "--device", DEVICE_A, "--format", "hf,onnx", "--allow-degenerate"]
    assert main([*args, "--select", "reference:full", "--out", str(export)]) == 0
    manifest = json.loads((export / "manifest.json").read_text())
    (entry,) = manifest["models"]
    assert entry["plain_bert"] == "bert" and entry["parity"]["plain_bert_vs_compact"] <= 1e-4
    directory = export / entry["name"]
    assert (directory / "bert" / "model.onnx").is_file()  # optimum's layout
    assert f"{entry['name']}/bert" in manifest["recommended"]
    config = json.loads((directory / "bert" / "config.json").read_text())
    assert config["model_type"] == "bert" and "auto_map" not in config
    sentences = ["the film is superb .", "dull and boring and awful from start to end ."]
    compact = CompactBert.from_pretrained(directory)
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(str(directory / "bert"))(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = compact(**batch).logits.numpy()
    done = run_without_bertnas(PLAIN_LOAD, str(directory / "bert"), json.dumps(sentences), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["class"] == "BertForSequenceClassification"
    assert np.abs(np.array(report["logits"]) - expected).max() < 1e-5
    names = compact.config.id2label
    assert report["labels"] == [names[int(i)] for i in expected.argmax(axis=-1)]


def test_guaranteed_budgets_bound_the_front_and_its_export_selection(env, budgets, tmp_path, monkeypatch, capsys):
    """--confidence: every front point's conformal bound meets the budget; pareto/export agree."""
    profiles = tmp_path / "profiles"
    shutil.copytree(env["root"] / "profiles", profiles)
    data = yaml.safe_load((profiles / f"{DEVICE_A}.yaml").read_text())
    data["name"] = "guaranteed"
    data["residuals"] = {"subnets": "synthetic", "relative": [0.01 * i for i in range(20)]}  # q at 0.9 = 0.18
    (profiles / "guaranteed.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("BERTNAS_PROFILES_DIR", str(profiles))
    budget = budgets[DEVICE_A][1]
    out = tmp_path / "run"
    result = run_search(_config(env, out, {"guaranteed": budget}, trials=6, confidence=0.9), progress=False)
    front = result.to_json()["fronts"]["guaranteed"]  # as `bertnas search --json` prints it
    assert front["budget_ms"] == pytest.approx(budget / 1.18)
    assert front["conformal"]["requested_budget_ms"] == budget and front["conformal"]["quantile"] == pytest.approx(0.18)
    assert front["points"] and all(p["latency_ms"] * 1.18 <= budget * (1 + 1e-9) for p in front["points"])
    info = SearchRun.open(out).info
    assert info["conformal"]["guaranteed"]["confidence"] == 0.9 and info["config"]["confidence"] == 0.9
    # pareto at a stricter confidence: the front can only shrink, and says what it guarantees
    assert main(["pareto", str(out), "--device", "guaranteed", "--confidence", "0.95", "--no-write", "--json"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert strict["conformal"]["quantile"] == pytest.approx(0.19)
    assert strict["budget_ms"] == pytest.approx(budget / 1.19)
    assert {p["trial"] for p in strict["points"]} <= {p["trial"] for p in front["points"]}
    assert main(["pareto", str(out), "--device", "guaranteed", "--confidence", "0.96", "--no-write"]) == 2
    assert "needs at least 24 validation residuals, the profile has 20" in capsys.readouterr().err
    # a profile without residuals cannot promise anything
    base = ["search", "--supernet", env["supernet"], "--glue-dir", env["glue"], "--out", str(tmp_path / "r2")]
    message = _cli_error(capsys, [*base, "--device", DEVICE_A, "--budget", f"{budget}ms", "--confidence", "0.95"])
    assert "stores no validation residuals" in message
    assert "strictly between 0 and 1" in _cli_error(
        capsys, [*base, "--device", "guaranteed", "--budget", f"{budget}ms", "--confidence", "95"]
    )
    # export's selection under a guaranteed budget
    from bertnas.export.selection import select_candidates

    run = SearchRun.open(out)
    fastest = min(p["latency_ms"] for p in front["points"])
    with pytest.raises(BertnasError, match="the 0.9 bound of"):
        select_candidates(run, "guaranteed", f"best-under:{fastest * 1.1:.6f}ms", True, confidence=0.9)
    chosen = select_candidates(run, "guaranteed", f"best-under:{fastest * 1.18 + 1e-6:.6f}ms", True, confidence=0.9)
    assert len(chosen) == 1


def test_search_prices_subnets_over_the_tasks_real_lengths(env, tmp_path, capsys):
    """--seq-len task:mean: every trial's latency is the mean over the scored split's sentences."""
    from bertnas.hardware import load_predictor
    from bertnas.hardware.lengths import LengthDistribution, LengthPricedPredictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    device = "host-cpu-onnxruntime"  # measured: prices 1..128 tokens
    base = load_predictor(device)
    space = load_space("unified").bind(ElasticBert.from_pretrained(env["supernet"]).limits, backbone="tiny-bert")
    budget = (base.predict(space.smallest()) + base.predict(space.largest())) / 2
    out = tmp_path / "run"
    run_search(_config(env, out, {device: budget}, trials=5, seq_len="task:mean"), progress=False)
    run = SearchRun.open(out)
    recorded = LengthDistribution.from_dict(run.info["length_distribution"])
    assert "search split" in recorded.source and run.info["seq_len_override"] == "task:mean"
    assert max(recorded.lengths) < 128  # toy sentences are short: the 128-token price would overstate
    priced = LengthPricedPredictor(base, recorded, "mean")
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 5
    for _, row in done.iterrows():
        arch = ArchConfig.from_json(row["config"])
        assert row[latency_column(device)] == pytest.approx(priced.predict(arch), rel=1e-9)
        assert row[latency_column(device)] < base.predict(arch)
    # fronts for another device are priced the same way (pixel4's scaled LiteRT tables too); a profile
    # calibrated from a MAC count cannot and says so
    for other in ("host-cpu-torch", DEVICE_A):
        assert main(["pareto", str(out), "--device", other, "--no-write", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["points"]
    assert "calibrated at 128 tokens only" in _cli_error(capsys, ["pareto", str(out), "--device", "pixel4-analytic"])
    assert "task:mean, task:p50, task:p90" in _cli_error(
        capsys, ["search", "--device", device, "--budget", "5ms", "--seq-len", "task:max", "--out", str(tmp_path / "x")]
    )
