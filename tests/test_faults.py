"""kill -9 of real commands at chosen points, then the same command again.

Each command runs as its own process and is killed with SIGKILL at named points
(:mod:`bertnas.killpoints`: after a training step, with a checkpoint written but not yet
renamed, between the two renames of a directory swap, with the final weights in place but
not marked complete, after an evaluation not yet stored, after a front file, after an
exported model, after a timed kernel family). Several kills are chained: each rerun is
killed at the next point, and the last rerun runs to the end. Then:

* training (fine-tuning, supernet, a search's subnets fine-tuned): the final weights are
  bit-identical to an uninterrupted run's (RNG, data order and schedule are in the checkpoint);
* search: every trial completed before a kill is still there, unchanged, nothing is
  duplicated or left RUNNING, and the run reaches the requested count;
* export and profile measure: nothing appears under the final name before it is
  complete, and the rerun writes the same model files (export) or only times the
  kernel families that were not finished (profile);
* nothing anywhere is left behind: no temporary file or directory, no lock file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from toys import tiny_bert, write_toy_sst2

from bertnas.atomic import is_temporary
from bertnas.cli.main import main
from bertnas.killpoints import ENVIRONMENT, POINTS
from bertnas.locks import LOCK_SUFFIX

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from bertnas.cli.main import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm_hf):
    """Toy SST-2 (256 train / 64 dev), a 2-layer random BERT with the MiniLM tokenizer, a cache."""
    root = tmp_path_factory.mktemp("faults")
    glue = root / "glue" / "SST-2"
    glue.mkdir(parents=True)
    write_toy_sst2(glue / "train.tsv", 256, seed=0)
    write_toy_sst2(glue / "dev.tsv", 64, seed=1)
    _, tokenizer = minilm_hf
    backbone = root / "tiny-bert"
    tiny_bert(tokenizer.vocab_size).save_pretrained(str(backbone))
    tokenizer.save_pretrained(str(backbone))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        patch.delenv(ENVIRONMENT, raising=False)
        yield {"root": root, "glue": str(root / "glue"), "backbone": str(backbone)}


def _killed_then_finished(args: list[str], kills: list[str], cwd: Path) -> list[int]:
    """Run ``bertnas ARGS`` once per kill point (each run killed there), then once to the end;
    the return codes. A run that ends before its kill point fails the test."""
    codes = []
    for point in [*kills, None]:
        environment = {**os.environ}
        environment.pop(ENVIRONMENT, None)
        if point is not None:
            assert point.partition(":")[0] in POINTS
            environment[ENVIRONMENT] = point
        done = subprocess.run(
            [sys.executable, "-c", CLI, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
        )
        codes.append(done.returncode)
        expected = -9 if point is not None else 0
        assert done.returncode == expected, f"kill at {point}: rc {done.returncode}\n{done.stderr[-3000:]}"
    return codes


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(root: Path) -> list[str]:
    """Temporaries and lock files anywhere under ``root``."""
    return [
        str(path.relative_to(root))
        for path in root.rglob(".*")
        if is_temporary(path) or path.name.endswith(LOCK_SUFFIX) or "measure-checkpoint" in path.name
    ]


# ---------------------------------------------------------------------- training


FINETUNE = ["finetune", "--task", "sst2", "--epochs", "3", "--lr", "2e-3", "--checkpoint-every", "8"]


@pytest.fixture(scope="module")
def teacher(world):
    """An uninterrupted fine-tuning (in this process), the reference for the killed ones."""
    out = world["root"] / "teacher"
    args = [*FINETUNE, "--backbone", world["backbone"], "--glue-dir", world["glue"], "--search-split", "32"]
    assert main([*args, "--out", str(out)]) == 0
    return out


def test_killed_finetuning_resumes_to_bit_identical_weights(world, teacher):
    out = world["root"] / "teacher-killed"
    args = [*FINETUNE, "--backbone", world["backbone"], "--glue-dir", world["glue"], "--search-split", "32"]
    # 3 epochs x 14 steps, checkpoints at 8, 16, ...: killed mid-epoch, with a checkpoint written but
    # not renamed, between the renames of a checkpoint swap, and again after a resumed step
    kills = ["train-step:5", "checkpoint-written:2", "directory-swap:1", "train-step:3"]
    _killed_then_finished([*args, "--out", str(out)], kills, world["root"])
    assert _sha256(out / "model.safetensors") == _sha256(teacher / "model.safetensors")
    assert (
        json.loads((out / "metrics.json").read_text())["score"]
        == json.loads((teacher / "metrics.json").read_text())["score"]
    )
    assert not (out.parent / f".{out.name}.checkpoint").exists()
    assert _leftovers(world["root"]) == []


SUPERNET = ["supernet", "train", "--task", "sst2", "--epochs", "1", "--checkpoint-every", "2", "--search-split", "32"]


@pytest.fixture(scope="module")
def supernet(world, teacher):
    out = world["root"] / "supernet"
    assert main([*SUPERNET, "--teacher", str(teacher), "--glue-dir", world["glue"], "--out", str(out)]) == 0
    return out


def test_killed_supernet_training_resumes_to_bit_identical_weights(world, teacher, supernet):
    out = world["root"] / "supernet-killed"
    args = [*SUPERNET, "--teacher", str(teacher), "--glue-dir", world["glue"], "--out", str(out)]
    kills = ["train-step:3", "checkpoint-written:1", "directory-swap:1", "final-weights:1"]
    _killed_then_finished(args, kills, world["root"])
    assert _sha256(out / "model.safetensors") == _sha256(supernet / "model.safetensors")
    assert (out / "training.json").is_file() and not (out / "checkpoint").exists()
    assert _leftovers(world["root"]) == []


# ---------------------------------------------------------------------- search and export


def _completed(database: Path) -> dict[int, tuple[str, str]]:
    """number -> (config, metric) of every COMPLETE trial."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT t.number, a.key, a.value_json FROM trials t JOIN trial_user_attributes a USING (trial_id) "
            "WHERE t.state = 'COMPLETE' AND a.key IN ('config', 'metric')"
        ).fetchall()
    out: dict[int, dict[str, str]] = {}
    for number, key, value in rows:
        out.setdefault(number, {})[key] = value
    return {number: (attrs["config"], attrs["metric"]) for number, attrs in out.items()}


def _search(world, supernet: Path, out: Path) -> list[str]:
    """``bertnas search`` of random subnets of the toy supernet into ``out`` (add ``--trials``)."""
    return [
        "search", "--device", "pixel4", "--budget", "1000ms", "--supernet", str(supernet),
        "--glue-dir", world["glue"], "--sampler", "random", "--no-references", "--out", str(out),
    ]  # fmt: skip


def test_killed_search_keeps_every_completed_trial_and_finishes(world, supernet):
    out = world["root"] / "search"
    args = [*_search(world, supernet, out), "--json"]
    _killed_then_finished([*args, "--trials", "3"], ["trial-evaluated:2"], world["root"])
    first = _completed(out / "study.db")
    assert len(first) == 3
    _killed_then_finished([*args, "--trials", "6"], ["trial-evaluated:2", "front-written:1"], world["root"])
    final = _completed(out / "study.db")
    assert len(final) == 6 and all(final[number] == first[number] for number in first)
    assert len({config for config, _ in final.values()}) == 6  # nothing evaluated twice
    with sqlite3.connect(out / "study.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0] == 0
    run = json.loads((out / "run.json").read_text())
    assert len(run["sessions"]) == 5  # every killed session is recorded
    assert _leftovers(world["root"]) == []


def test_killed_export_leaves_nothing_and_the_rerun_writes_the_same_models(world, supernet):
    run = world["root"] / "search-for-export"
    assert main([*_search(world, supernet, run), "--trials", "3"]) == 0
    export = ["export", str(run), "--device", "pixel4", "--format", "hf", "--allow-degenerate"]
    reference = world["root"] / "export-reference"
    assert main([*export, "--out", str(reference)]) == 0
    models = json.loads((reference / "manifest.json").read_text())["models"]

    out = world["root"] / "export-killed"
    kills = ["model-exported:1"] + (["model-exported:2"] if len(models) > 2 else [])
    _killed_then_finished([*export, "--out", str(out)], kills, world["root"])
    # replacing a complete export, killed between the two renames: the old one is put back
    _killed_then_finished([*export, "--out", str(out), "--force"], ["directory-swap:1"], world["root"])
    assert (out / "manifest.json").is_file()
    again = json.loads((out / "manifest.json").read_text())["models"]
    for mine, theirs in zip(again, models, strict=True):
        assert mine["name"] == theirs["name"]
        assert _sha256(out / mine["name"] / "model.safetensors") == _sha256(
            reference / theirs["name"] / "model.safetensors"
        )
    assert _leftovers(world["root"]) == []


def test_killed_subnet_finetuning_resumes_at_its_last_check_to_bit_identical_weights(world, supernet):
    import shutil

    run = world["root"] / "search-for-finetune"
    assert main([*_search(world, supernet, run), "--trials", "2"]) == 0
    killed = world["root"] / "search-for-finetune-killed"
    shutil.copytree(run, killed)
    # batch 8: 28 steps an epoch, an early-stopping check (and a checkpoint) every 7 steps; patience 3
    # cannot stop it before step 21, and every kill below comes before
    tune = ["--device", "pixel4", "--select", "trial:0", "--allow-degenerate", "--epochs", "2", "--batch-size", "8"]
    tune += ["--lr", "1e-3", "--glue-dir", world["glue"]]
    assert main(["finetune-subnets", str(run), *tune]) == 0  # the uninterrupted reference, in this process
    # killed after step 9 (checkpoint of step 7 kept), with step 14's checkpoint written but not renamed,
    # between the renames replacing step 7's by step 14's, and after step 17 (resumes from 14)
    kills = ["train-step:9", "checkpoint-written:1", "directory-swap:1", "train-step:10"]
    _killed_then_finished(["finetune-subnets", str(killed), *tune], kills, world["root"])
    mine, reference = killed / "finetuned" / "trial-0000", run / "finetuned" / "trial-0000"
    assert _sha256(mine / "model.safetensors") == _sha256(reference / "model.safetensors")
    history = json.loads((mine / "finetune.json").read_text())["finetuned"]["history"]
    assert history == json.loads((reference / "finetune.json").read_text())["finetuned"]["history"]
    assert not list((killed / "finetuned").glob(".*checkpoint*"))  # removed once the model is written
    assert _leftovers(world["root"]) == []


# ---------------------------------------------------------------------- profile measure


def test_killed_profile_measurement_keeps_the_timed_families(world):
    from bertnas.hardware.kernels import FAMILIES
    from bertnas.hardware.profile import load_profile

    out = world["root"] / "profiles" / "faulty.yaml"
    args = ["profile", "measure", "--runtime", "torch", "--name", "faulty", "--grid", "tiny", "--seq-len", "16"]
    args += ["--calibration", "2", "--rounds", "1", "--threads", "1", "--out", str(out)]
    checkpoint = out.with_name(f".{out.name}.measure-checkpoint.json")
    env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT}

    def run(point: str | None) -> int:
        environment = {**env, **({ENVIRONMENT: point} if point else {})}
        done = subprocess.run([sys.executable, "-c", CLI, *args], env=environment, capture_output=True, timeout=300)
        return done.returncode

    assert run("family-measured:2") == -9
    assert len(json.loads(checkpoint.read_text())["families"]) == 2 and not out.exists()
    assert run("family-measured:1") == -9  # the rerun times only the third family before it is killed
    assert len(json.loads(checkpoint.read_text())["families"]) == 3
    assert run(None) == 0
    profile = load_profile(str(out))
    assert set(profile.kernels) == set(FAMILIES) and not checkpoint.exists()
    # the CLI's calibration: its subnets timed beside the backbone's full model, which the evidence names
    assert profile.evidence["calibration"]["subnets"] == 2
    assert profile.evidence["anchor"]["arch"]["hidden_size"] == 384  # all-MiniLM-L6-v2
    assert _leftovers(world["root"]) == []


def test_every_kill_point_is_reached_somewhere():
    """The documented points and the ones the code reaches are the same set."""
    import re

    used = set()
    for path in (REPO / "bertnas").rglob("*.py"):
        used |= set(re.findall(r'killpoints\.reached\("([a-z-]+)"\)', path.read_text()))
    assert used == set(POINTS)
