"""Deployable accuracy: the held-out search split, subnet fine-tuning, fine-tuned exports, the trust report.

One small real world, built once: a 2-layer random BERT fine-tuned into a teacher on a toy
SST-2 task, a supernet trained from it (both hold 32 train examples out as the search split),
and a 10-trial search scored on that split. Everything below runs the real code.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file
from scipy import stats
from toys import tiny_bert, write_toy_sst2

from bertnas.atomic import dir_mode, file_mode
from bertnas.cli.main import main
from bertnas.data import get_task
from bertnas.data.holdout import SearchSplitSpec, holdout_indices
from bertnas.errors import BertnasError
from bertnas.search import SearchConfig, SearchRun, run_search
from bertnas.search.objectives import latency_column
from bertnas.training import subnet_finetune
from bertnas.training.evaluate import SEARCH_SPLIT_JSON, load_train_dev
from bertnas.training.finetune import FinetuneConfig, finetune
from bertnas.training.subnet_finetune import FINETUNED_CSV, finetuned_dir
from bertnas.training.supernet_train import SupernetTrainer, config_from
from bertnas.trust import TRUST_JSON, TRUST_PNG, front_indices

REPO = Path(__file__).resolve().parents[1]
DEVICE = "pixel4"
HELD_OUT = "32"


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm_hf):
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    root = tmp_path_factory.mktemp("deployable")
    glue = root / "glue"
    (glue / "SST-2").mkdir(parents=True)
    write_toy_sst2(glue / "SST-2" / "train.tsv", 256, seed=0)
    write_toy_sst2(glue / "SST-2" / "dev.tsv", 64, seed=1)
    _, tokenizer = minilm_hf
    backbone = root / "tiny-bert"
    tiny_bert(tokenizer.vocab_size).save_pretrained(str(backbone))
    tokenizer.save_pretrained(str(backbone))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        patch.setenv("BERTNAS_PROFILES_DIR", str(REPO / "hardware_profiles"))
        teacher = root / "teacher"
        learned = finetune(
            FinetuneConfig(
                task="sst2",
                backbone=str(backbone),
                epochs=10,
                batch_size=16,
                lr=2e-3,
                glue_dir=str(glue),
                search_split=HELD_OUT,
            ),
            teacher,
        )
        assert learned["score"] > 0.6  # a teacher worth distilling from
        supernet = root / "supernet"
        config = config_from(
            "sst2",
            str(teacher),
            "quick",
            epochs=2.0,
            train_subset=None,
            lr=1e-3,
            glue_dir=str(glue),
            search_split=HELD_OUT,
            random_subnets=1,
            rewire_batches=2,
            checkpoint_every=100,
        )
        SupernetTrainer(config, supernet).train()
        limits = ElasticBert.from_pretrained(supernet).limits
        space = load_space("unified").bind(limits, backbone="tiny-bert")
        predictor = load_predictor(DEVICE)
        budget = (predictor.predict(space.smallest()) + predictor.predict(space.largest())) / 2
        search = SearchConfig(
            task="sst2",
            budgets_ms={DEVICE: budget},
            supernet=str(supernet),
            glue_dir=str(glue),
            trials=10,
            sampler="random",
            seed=0,
            out=str(root / "run"),
        )
        run_search(search, progress=False)
        yield {"root": root, "glue": glue, "teacher": teacher, "supernet": supernet, "run": root / "run"}


def _trials(world) -> pd.DataFrame:
    trials = SearchRun.open(world["run"]).trials
    return trials[trials["state"] == "COMPLETE"].sort_values(latency_column(DEVICE))


# ---------------------------------------------------------------------- the search split
def test_search_split_is_held_out_of_training_stable_and_recorded(world, minilm_hf):
    _, tokenizer = minilm_hf
    task = get_task("sst2")
    teacher_record = json.loads((world["teacher"] / SEARCH_SPLIT_JSON).read_text())
    supernet_record = json.loads((world["supernet"] / SEARCH_SPLIT_JSON).read_text())
    assert supernet_record["ids_sha256"] == teacher_record["ids_sha256"]
    assert supernet_record["teacher"] == "held out" and supernet_record["examples"] == 32

    first = load_train_dev(task, tokenizer, str(world["glue"]), search_split=HELD_OUT)
    again = load_train_dev(task, tokenizer, str(world["glue"]), search_split=HELD_OUT, train_subset=100)
    held = set(first.holdout.indices.tolist())
    assert len(held) == 32 and held == set(again.holdout.indices.tolist())  # stable; independent of the subset
    assert held.isdisjoint(first.train_ids.tolist()) and held.isdisjoint(again.train_ids.tolist())
    assert held | set(first.train_ids.tolist()) == set(range(256))
    # what the trainers trained on: every example but the held-out ones
    metrics = json.loads((world["supernet"] / "metrics.json").read_text())
    teacher_metrics = json.loads((world["teacher"] / "metrics.json").read_text())
    assert metrics["train_examples"] == teacher_metrics["train_examples"] == 224
    assert metrics["data"]["search_split"]["ids_sha256"] == supernet_record["ids_sha256"]
    # stratified: each class keeps its share of train, within one example
    labels = np.asarray([int(label) for label in first.search.labels])
    train_labels = np.concatenate([labels, first.train.labels.numpy()])
    assert abs(labels.mean() - train_labels.mean()) * 32 <= 1.0
    # the search scored trials on it, and the front carries a dev metric evaluated after the search
    run = SearchRun.open(world["run"])
    assert run.split == "search" and run.info["evaluation"].startswith(f"search:{supernet_record['ids_sha256']}")
    front = json.loads((world["run"] / f"pareto_{DEVICE}.json").read_text())
    assert front["metric_split"] == "search" and front["dev_metric_split"] == "dev"
    assert front["points"] and all(point["dev_metric"] is not None for point in front["points"])
    assert "dev_metric" in pd.read_csv(world["run"] / f"pareto_{DEVICE}.csv").columns


def test_holdout_is_seeded_stratified_and_sized():
    labels = np.array([0] * 900 + [1] * 100)
    chosen = holdout_indices(labels, 50, seed=0)
    assert len(chosen) == 50 and (labels[chosen] == 1).sum() == 5
    assert np.array_equal(chosen, holdout_indices(labels, 50, seed=0))
    assert not np.array_equal(chosen, holdout_indices(labels, 50, seed=1))
    assert SearchSplitSpec.parse("5%").size(67349) == 3367
    assert SearchSplitSpec.parse(None).size(3668) == 500 and SearchSplitSpec.parse(None).size(400000) == 5000
    assert SearchSplitSpec.parse("none").size(1000) == 0 and SearchSplitSpec.parse("800").size(1000) == 250
    for bad in ("-1", "0.9", "lots", "nan"):
        with pytest.raises(BertnasError, match="--search-split"):
            SearchSplitSpec.parse(bad)


def test_a_supernet_without_a_search_split_is_refused_unless_dev_is_asked_for(world, tmp_path, capsys):
    old = tmp_path / "old-supernet"
    shutil.copytree(world["supernet"], old, ignore=shutil.ignore_patterns(SEARCH_SPLIT_JSON, "eval_cache*"))
    args = ["search", "--task", "sst2", "--device", DEVICE, "--budget", "1000ms", "--supernet", str(old)]
    args += ["--glue-dir", str(world["glue"]), "--trials", "2", "--sampler", "random", "--no-references"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "records no search split" in error and "--split dev" in error
    assert main([*args, "--out", str(tmp_path / "dev"), "--split", "dev", "--json"]) == 0
    capsys.readouterr()
    info = SearchRun.open(tmp_path / "dev").info
    assert info["split"] == "dev" and "selection and report share data" in info["warnings"][0]


# ---------------------------------------------------------------------- fine-tuning the chosen subnets
def test_finetune_subnets_lowers_the_distillation_loss_and_resumes_per_model(world, capsys, monkeypatch):
    trials = _trials(world)
    fast, slow = int(trials.iloc[0]["number"]), int(trials.iloc[-1]["number"])
    args = ["finetune-subnets", str(world["run"]), "--device", DEVICE, "--max-steps", "14", "--json"]
    args += ["--allow-degenerate"]  # a toy supernet: some subnets predict one class before fine-tuning
    args += ["--select", f"trial:{fast}", "--select", f"trial:{slow}"]
    # the second model fails half-way: the first one is kept
    original = subnet_finetune.finetune_subnet
    calls = []

    def second_fails(*pos, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*pos, **kw)

    monkeypatch.setattr(subnet_finetune, "finetune_subnet", second_fails)
    assert main(args) == 130
    capsys.readouterr()
    assert (finetuned_dir(world["run"], fast) / "finetune.json").is_file()
    assert not finetuned_dir(world["run"], slow).exists()
    calls.clear()
    monkeypatch.setattr(subnet_finetune, "finetune_subnet", original)

    counted = []

    def counting(*pos, **kw):
        counted.append(1)
        return original(*pos, **kw)

    monkeypatch.setattr(subnet_finetune, "finetune_subnet", counting)
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)["models"]
    assert len(counted) == 1  # only the unfinished model was trained
    for result in results:
        tuned = result["finetuned"]
        losses = [point["search_distill_loss"] for point in tuned["history"]]
        assert len(losses) >= 3 and min(losses[1:]) < losses[0]  # training brings it closer to the teacher
        assert tuned["search_metric"] >= result["weight_shared"]["search_metric"]  # early stopping keeps the best
        assert result["teacher"] == str(world["teacher"])
    table = pd.read_csv(world["run"] / FINETUNED_CSV)
    assert sorted(table["trial"]) == sorted([fast, slow])
    assert main(args) == 0 and len(counted) == 1  # everything finished: nothing trained again
    capsys.readouterr()


def test_export_ships_the_finetuned_weights_and_checks_them(world, tmp_path, capsys):
    trial = int(_trials(world).iloc[0]["number"])
    assert main(["finetune-subnets", str(world["run"]), "--device", DEVICE, "--select", f"trial:{trial}",
                 "--max-steps", "14", "--allow-degenerate"]) == 0  # fmt: skip
    capsys.readouterr()
    base = ["export", str(world["run"]), "--device", DEVICE, "--select", f"trial:{trial}", "--allow-degenerate"]
    base += ["--warmup", "1", "--repeats", "2"]
    out = tmp_path / "export"
    assert main([*base, "--out", str(out)]) == 0
    capsys.readouterr()
    entry = json.loads((out / "manifest.json").read_text())["models"][0]
    # a shared model store can read it: the umask's modes, not mkdtemp's private ones
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode()
    assert stat.S_IMODE((out / entry["name"] / "model.onnx").stat().st_mode) == file_mode()
    result = json.loads((finetuned_dir(world["run"], trial) / "finetune.json").read_text())
    assert entry["weights"] == "finetuned"
    assert entry["metric"] == pytest.approx(result["finetuned"]["dev_metric"], abs=1e-12)
    assert {"compact_vs_finetuned", "onnx_vs_finetuned"} <= set(entry["parity"])
    shipped = load_file(str(out / entry["name"] / "model.safetensors"))
    tuned = load_file(str(finetuned_dir(world["run"], trial) / "model.safetensors"))
    assert shipped.keys() == tuned.keys() and all((shipped[k] == tuned[k]).all() for k in tuned)
    # --weights supernet ships the shared slice
    assert main([*base, "--out", str(tmp_path / "shared"), "--weights", "supernet", "--format", "hf"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "shared" / "manifest.json").read_text())["models"][0]["weights"] == "supernet"
    # the metric check runs on the fine-tuned weights: a record that does not match them is refused
    path = finetuned_dir(world["run"], trial) / "finetune.json"
    saved = path.read_text()
    record = json.loads(saved)
    record["finetuned"]["dev_metric"] += 0.25
    path.write_text(json.dumps(record))
    try:
        assert main([*base, "--out", str(tmp_path / "bad"), "--format", "hf"]) == 2
        assert "finetune-subnets reported" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    finally:
        path.write_text(saved)


# ---------------------------------------------------------------------- the trust report
def test_trust_report_figures_recompute_from_finetuned_csv(world, capsys):
    assert main(["trust", str(world["run"]), "--device", DEVICE, "--n", "4", "--max-steps", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads((world["run"] / TRUST_JSON).read_text()) == report
    assert (world["run"] / TRUST_PNG).stat().st_size > 1000
    picked = [point["trial"] for point in report["points"]]
    assert report["k"] == len(picked) == 4
    table = pd.read_csv(world["run"] / FINETUNED_CSV).set_index("trial").loc[sorted(picked)]
    shared, tuned = table["shared_dev_metric"].to_numpy(), table["finetuned_dev_metric"].to_numpy()
    tau = stats.kendalltau(shared, tuned).statistic
    assert (report["kendall_tau"] is None and np.isnan(tau)) or report["kendall_tau"] == pytest.approx(tau)
    assert report["gain"]["mean"] == pytest.approx(float((tuned - shared).mean()))
    assert report["gain"]["max"] == pytest.approx(float((tuned - shared).max()))
    trials = SearchRun.open(world["run"]).trials.set_index("number")
    latency = trials.loc[sorted(picked), latency_column(DEVICE)].to_numpy()
    shared_front = front_indices(latency, shared)
    assert report["front"]["of"] == len(shared_front)
    assert report["front"]["kept"] == len(shared_front & front_indices(latency, tuned))
    # the report brings trials from the front and off it
    front = set(SearchRun.open(world["run"]).pareto(DEVICE)["number"])
    assert set(picked) & front and set(picked) - front


def test_a_supernet_is_refused_on_a_task_it_was_not_trained_for(world, tmp_path, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(_trials(world).iloc[0]["config"])
    args = ["eval", "--supernet", str(world["supernet"]), "--arch", str(arch), "--glue-dir", str(world["glue"])]
    assert main([*args, "--task", "mrpc", "--split", "dev"]) == 2  # both 2-class tasks: the head fits
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "trained on sst2, not mrpc" in error
    assert main([*args, "--json"]) == 0  # on its own task and split: fine
    assert json.loads(capsys.readouterr().out)["split"] == "search"


# ---------------------------------------------------------------------- what early stopping keeps
def test_stop_on_loss_keeps_the_lowest_loss_check_and_old_models_stay_fresh(world, tmp_path, capsys, monkeypatch):
    run = world["root"] / "run-stop-on"  # beside the original: the run names its supernet by a relative path
    shutil.copytree(world["run"], run, ignore=shutil.ignore_patterns("finetuned", "finetuned.csv", "trust.*"))
    trial = int(_trials(world).iloc[-1]["number"])
    args = ["finetune-subnets", str(run), "--device", DEVICE, "--max-steps", "14", "--json", "--allow-degenerate"]
    args += ["--select", f"trial:{trial}"]
    original = subnet_finetune.finetune_subnet
    counted = []

    def counting(*pos, **kw):
        counted.append(kw.get("config", pos[3]).stop_on)
        return original(*pos, **kw)

    monkeypatch.setattr(subnet_finetune, "finetune_subnet", counting)
    assert main(args) == 0
    capsys.readouterr()
    # a model fine-tuned before the setting existed (no stop_on recorded) is the default's: not trained again
    record_path = finetuned_dir(run, trial) / "finetune.json"
    record = json.loads(record_path.read_text())
    assert record["settings"].pop("stop_on") == "metric"
    record_path.write_text(json.dumps(record))
    assert main(args) == 0 and counted == ["metric"]
    capsys.readouterr()

    assert main([*args, "--stop-on", "loss"]) == 0  # another setting: trained again
    assert counted == ["metric", "loss"]
    tuned = json.loads(capsys.readouterr().out)["models"][0]["finetuned"]
    losses = {point["step"]: point["search_distill_loss"] for point in tuned["history"]}
    assert losses[tuned["best_step"]] == min(losses.values())  # the lowest-loss check's weights are kept
    assert tuned["search_distill_loss"] == pytest.approx(min(losses.values()), rel=1e-4)

    assert main([*args, "--stop-on", "accuracy"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--stop-on 'accuracy' is not one of: metric, loss" in error
