"""Data-parallel supernet training under torchrun (gloo, 2 CPU processes) on a tiny real BERT.

Without dropout, and with per-example losses only (logit KL and the label loss, no hidden-state term), two
processes that each take half of every batch must end with the weights one process gets
from the whole batch: the gradient reduction is exact, the subnets of each step agree, and
process 0's setup (rewiring, extra parameters) reaches the other process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file
from toys import tiny_bert, write_toy_sst2

from bertnas.training.finetune import FinetuneConfig, finetune
from bertnas.training.supernet_train import SupernetTrainer, config_from

# the label loss keeps the gradients well above float noise: Adam turns a near-zero gradient
# into a full-size step whose sign is that noise
SETTINGS = dict(
    epochs=1.0, lr=1e-3, recipe="sandwich", hidden_weight=0.0, label_weight=1.0, random_subnets=1, search_split="32"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_hf):
    root = tmp_path_factory.mktemp("distributed")
    glue = root / "glue"
    (glue / "SST-2").mkdir(parents=True)
    write_toy_sst2(glue / "SST-2" / "train.tsv", 256, seed=0)
    write_toy_sst2(glue / "SST-2" / "dev.tsv", 64, seed=1)
    _, tokenizer = minilm_hf
    backbone = root / "tiny"
    tiny_bert(tokenizer.vocab_size).save_pretrained(str(backbone))
    tokenizer.save_pretrained(str(backbone))
    teacher = root / "teacher"
    finetune(
        FinetuneConfig(
            task="sst2", backbone=str(backbone), epochs=2, batch_size=16, lr=2e-3, glue_dir=str(glue), search_split="32"
        ),
        teacher,
    )
    # no dropout: the single-process and two-process runs then compute the same function
    config = json.loads((teacher / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (teacher / "config.json").write_text(json.dumps(config))
    return glue, teacher


def test_two_processes_train_the_weights_one_process_trains(setup, tmp_path, monkeypatch):
    glue, teacher = setup
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    single = tmp_path / "single"
    config = config_from("sst2", str(teacher), "quick", glue_dir=str(glue), device="cpu", **SETTINGS)
    SupernetTrainer(config, single).train()

    double = tmp_path / "double"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "bertnas",
        "supernet",
        "train",
        "--task",
        "sst2",
        "--teacher",
        str(teacher),
        "--preset",
        "quick",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--recipe",
        "sandwich",
        "--hidden-weight",
        "0",
        "--label-weight",
        "1",
        "--random-subnets",
        "1",
        "--search-split",
        "32",
        "--glue-dir",
        str(glue),
        "--device",
        "cpu",
        "--out",
        str(double),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BERTNAS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert done.stdout.count("supernet ") == 1, done.stdout  # process 0 alone reports

    one, two = load_file(str(single / "model.safetensors")), load_file(str(double / "model.safetensors"))
    assert one.keys() == two.keys()
    moved = max(float((one[k] - load_file(str(teacher / "model.safetensors")).get(k, one[k])).abs().max()) for k in one)
    assert moved > 1e-3  # training changed the weights, so agreeing below means something
    worst = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert worst < 1e-4, worst
    run = json.loads((double / "run.json").read_text())
    assert run["processes"] == 2
    assert json.loads((single / "run.json").read_text())["processes"] == 1
    assert not (double / "checkpoint").exists()


def test_a_batch_smaller_than_the_processes_is_refused(setup, tmp_path, monkeypatch):
    glue, teacher = setup
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun --nproc_per_node 4 would set it
    config = config_from("sst2", str(teacher), "quick", glue_dir=str(glue), device="cpu", batch_size=2, **SETTINGS)
    from bertnas.errors import BertnasError

    with pytest.raises(BertnasError, match="global batch"):
        SupernetTrainer(config, tmp_path / "x")
