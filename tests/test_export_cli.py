"""``bertnas export`` end to end: a tiny real search, then its front exported and reloaded.

The supernet is a real ElasticBert from a 2-layer random BERT (real MiniLM tokenizer),
the dev set a toy SST-2 file, the latency predictors the committed hardware profiles.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from toys import WORDS, record_search_split, tiny_bert, write_toy_sst2

from bertnas.arch import ArchConfig
from bertnas.cli.main import main
from bertnas.export.onnx import OnnxModel
from bertnas.model import CompactBert
from bertnas.search import SearchConfig, SearchRun, run_search
from bertnas.search.objectives import latency_column

REPO = Path(__file__).resolve().parents[1]
DEVICE = "pixel4"


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, minilm_hf):
    """A finished 6-trial search on pixel4 over a tiny supernet (real search code)."""
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    root = tmp_path_factory.mktemp("export-cli")
    (root / "glue" / "SST-2").mkdir(parents=True)
    rng = random.Random(2)
    lines = ["sentence\tlabel"]
    for _ in range(40):
        label = rng.randint(0, 1)
        extra = " ".join(rng.choice(WORDS[rng.randint(0, 1)]) for _ in range(rng.randint(0, 8)))
        lines.append(f"the film is {rng.choice(WORDS[label])} and {extra} . \t{label}")
    (root / "glue" / "SST-2" / "dev.tsv").write_text("\n".join(lines) + "\n")
    write_toy_sst2(root / "glue" / "SST-2" / "train.tsv", 32, seed=0)
    _, tokenizer = minilm_hf
    hf = tiny_bert(tokenizer.vocab_size)
    supernet = ElasticBert.from_hf_model(hf, "tiny-bert", tokenizer, max_ffn_stack=4, max_bottleneck=16, task="sst2")
    supernet.save_pretrained(root / "supernet")
    record_search_split(root / "supernet", root / "glue", tokenizer)
    profiles = root / "profiles"
    shutil.copytree(REPO / "hardware_profiles", profiles)
    derived = yaml.safe_load((profiles / f"{DEVICE}.yaml").read_text())  # a device the search did not target
    derived["name"] = "pixel4-half"
    per_call = derived["corrections"].get("per_call_ms", 0.0)  # the scaled-table pixel4 has a dispatch cost per call
    derived["corrections"] = {"scale": 0.5, "per_layer_ms": 0.0, "per_model_ms": 0.0, "per_call_ms": per_call / 2}
    (profiles / "pixel4-half.yaml").write_text(yaml.safe_dump(derived, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        patch.setenv("BERTNAS_PROFILES_DIR", str(profiles))
        space = load_space("unified").bind(ElasticBert.from_pretrained(root / "supernet").limits, backbone="tiny-bert")
        predictor = load_predictor(DEVICE)
        budget = (predictor.predict(space.smallest()) + predictor.predict(space.largest())) / 2
        search = SearchConfig(
            task="sst2",
            budgets_ms={DEVICE: budget},
            supernet=str(root / "supernet"),
            glue_dir=str(root / "glue"),
            trials=6,
            population=4,
            seed=0,
            out=str(root / "run"),
            references=False,
        )
        run_search(search, progress=False)
        yield root


def _export(root: Path, out: Path, *args: str) -> int:
    # The tiny supernet is random: its subnets predict one class, which export refuses by default
    # (tested in test_search.py); these tests are about the export itself.
    return main(
        [
            "export",
            str(root / "run"),
            "--device",
            DEVICE,
            "--out",
            str(out),
            "--warmup",
            "1",
            "--repeats",
            "3",
            "--allow-degenerate",
            *args,
        ]
    )


def test_export_pareto_front_from_a_search(search_run, tmp_path, capsys):
    run = SearchRun.open(search_run / "run")
    front = run.pareto(DEVICE)
    assert len(front) >= 1
    out = tmp_path / "front"
    assert _export(search_run, out, "--format", "hf") == 0
    assert f"wrote {len(front)} model(s)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["trial"] for entry in manifest["models"]] == front["number"].tolist()
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    for entry, row, (_, point) in zip(manifest["models"], rows, front.iterrows(), strict=True):
        # the search scored on the search split; export recomputes the dev metric its report gave
        assert entry["metric"] == entry["metric_reported"] == pytest.approx(point["dev_metric"], abs=0)
        assert entry["search_metric"] == pytest.approx(point["metric"], abs=0)
        assert float(row[f"predicted_ms.{DEVICE}"]) == pytest.approx(point[latency_column(DEVICE)])
        assert entry["predicted_ms"][DEVICE]["provenance"].startswith("calibrated")
        assert entry["source"]["supernet_fingerprint"] == run.info["hashes"]["supernet_fingerprint"]
        assert CompactBert.from_pretrained(out / entry["name"]).arch.hash() == entry["arch_hash"]
        assert "pixel4" in (out / entry["name"] / "README.md").read_text()
    # A second export to the same place is refused, untouched, unless --force.
    before = (out / "manifest.json").read_text()
    assert _export(search_run, out, "--format", "hf") == 2
    assert "already exists" in capsys.readouterr().err and (out / "manifest.json").read_text() == before


def test_export_best_under_with_onnx_and_measurement(search_run, tmp_path):
    run = SearchRun.open(search_run / "run")
    trials = run.trials
    done = trials[trials["state"] == "COMPLETE"]
    limit = float(done[latency_column(DEVICE)].max())
    best = done[done[latency_column(DEVICE)] <= limit].sort_values(
        ["metric", latency_column(DEVICE)], ascending=[False, True]
    )
    out = tmp_path / "best"
    assert _export(search_run, out, "--select", f"best-under:{limit + 1e-6}ms") == 0
    (entry,) = json.loads((out / "manifest.json").read_text())["models"]
    assert entry["trial"] == int(best.iloc[0]["number"])
    assert entry["metric_onnx"] == entry["metric"] == entry["metric_reported"]
    assert entry["measured"]["median_ms"] > 0 and entry["measured"]["batch_size"] == 1
    if (search_run / "profiles" / "host-cpu-onnxruntime.yaml").is_file():  # the measured profile, when installed
        from bertnas.hardware import load_profile

        profile = load_profile(search_run / "profiles" / "host-cpu-onnxruntime.yaml")
        assert entry["measured"]["predicted_ms"] > 0 and entry["measured"]["seq_len"] == profile.seq_len
        assert entry["measured"]["threads"] == profile.threads
        assert entry["measured"]["provenance"].startswith("measured")
    directory = out / entry["name"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    inputs = tokenizer(
        ["the film is superb .", "dull and boring and awful from start to end ."], return_tensors="np", padding=True
    )
    onnx_logits = OnnxModel(directory / "model.onnx").logits(**inputs)
    with torch.no_grad():
        torch_logits = CompactBert.from_pretrained(directory)(
            **{k: torch.as_tensor(v) for k, v in inputs.items()}
        ).logits
    assert np.abs(onnx_logits - torch_logits.numpy()).max() < 1e-4


def test_task_length_export_times_real_sentences_against_the_searched_price(search_run, tmp_path, capsys):
    """--seq-len task:mean: each ONNX file also runs real dev sentences one at a time, at their lengths."""
    from bertnas.data import load_task, tokenize_split
    from bertnas.hardware import load_predictor
    from bertnas.hardware.lengths import LengthDistribution, LengthPricedPredictor
    from bertnas.supernet import ElasticBert

    run_dir = tmp_path / "run-lengths"
    search = SearchConfig(
        task="sst2",
        budgets_ms={DEVICE: 1e6},
        supernet=str(search_run / "supernet"),
        glue_dir=str(search_run / "glue"),
        trials=2,
        population=2,
        seed=0,
        out=str(run_dir),
        references=False,
        seq_len="task:mean",
    )
    run_search(search, progress=False)
    out = tmp_path / "lengths"
    args = ["export", str(run_dir), "--device", DEVICE, "--select", "trial:0", "--format", "onnx", "--out", str(out)]
    assert main([*args, "--warmup", "1", "--repeats", "3", "--allow-degenerate", "--real-sentences", "12"]) == 0
    assert "task:mean over 12 dev sentences" in capsys.readouterr().out
    (entry,) = json.loads((out / "manifest.json").read_text())["models"]
    real = entry["measured"]["real_sentences"]
    assert real["statistic"] == "task:mean" and real["split"] == "dev" and real["sentences"] == 12
    per = real["per_sentence"]
    assert len(per["lengths"]) == len(per["ms"]) == len(per["steady_ms"]) == 12
    assert real["measured_ms"] == pytest.approx(np.mean(per["ms"])) and real["steady_ms"] == pytest.approx(
        np.mean(per["steady_ms"])
    )
    # every call beside one anchor shared by the export: the supernet's full shape, whose time in
    # the first model's timing is the speed every model's steady_ms is put at
    supernet = ElasticBert.from_pretrained(search_run / "supernet")
    anchor = real["anchor"]
    assert anchor["arch_hash"] == supernet.full_arch().hash()
    assert anchor["steady_at_ms"] == anchor["ms"] > 0  # this export's first (and only) model
    assert per["steady_ms"] == pytest.approx(np.asarray(per["anchor_ratio"]) * anchor["steady_at_ms"])
    # the sentences are the dev split's own, unpadded: their lengths are the tokenized lengths
    dev = tokenize_split(load_task("sst2", "dev", str(search_run / "glue")), supernet.tokenizer)
    assert set(per["lengths"]) <= {len(dev[index]["input_ids"]) for index in range(len(dev))}
    assert len(set(per["lengths"])) > 1
    # priced as the search priced it (its split's lengths) and over the timed sentences' own lengths
    arch = ArchConfig.from_dict(entry["arch"])
    profile = load_predictor("host-cpu-onnxruntime")
    searched = LengthDistribution.from_dict(SearchRun.open(run_dir).info["length_distribution"])
    assert real["predicted_ms"] == pytest.approx(LengthPricedPredictor(profile, searched, "mean").predict(arch))
    own = np.mean([profile.predict(arch, length) for length in per["lengths"]])
    assert real["predicted_these_ms"] == pytest.approx(own)
    row = next(csv.DictReader((out / "manifest.csv").open()))
    assert float(row["real_sentences_measured_ms"]) == pytest.approx(real["measured_ms"])
    assert "real dev sentences, each run alone" in (out / entry["name"] / "README.md").read_text()
    # an ordinary search's export has none of this
    plain = tmp_path / "plain"
    assert _export(search_run, plain, "--select", "trial:0", "--format", "onnx") == 0
    (entry,) = json.loads((plain / "manifest.json").read_text())["models"]
    assert "real_sentences" not in entry["measured"]


def test_export_for_a_device_the_search_did_not_target(search_run, tmp_path):
    out = tmp_path / "other"
    code = main(
        [
            "export",
            str(search_run / "run"),
            "--device",
            "pixel4-half",
            "--select",
            "trial:0",
            "--format",
            "hf",
            "--out",
            str(out),
            "--allow-degenerate",
        ]
    )
    assert code == 0
    (entry,) = json.loads((out / "manifest.json").read_text())["models"]
    predicted = entry["predicted_ms"]
    assert set(predicted) == {DEVICE, "pixel4-half"}
    assert predicted["pixel4-half"]["ms"] == pytest.approx(predicted[DEVICE]["ms"] / 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select", "trial:999"], "has no trial 999"),
        (["--select", "trial:x"], "not a trial number"),
        (["--select", "fastest"], "is not understood"),
        (["--select", "best-under:40"], "no unit"),
        (["--select", "best-under:0.000001ms"], "no evaluated trial is predicted under"),
        (["--format", "coreml"], "--format"),
        (["--quantize", "int4"], "--quantize"),
        (["--format", "hf", "--quantize", "int8"], "add onnx or tflite"),
        (["--format", "tflite", "--seq-len", "4"], "--seq-len 4 is shorter than the longest dev example"),
        (["--supernet", "/nonexistent"], "is missing"),
        (["--real-sentences", "-1"], "--real-sentences -1: give 0 (none) or more"),
    ],
)
def test_export_cli_errors(search_run, tmp_path, capsys, args, message):
    assert _export(search_run, tmp_path / "x", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def _unified_trial(search_run: Path) -> int:
    """A completed front trial (it has a dev report to compare with) whose subnet drops tokens (so
    retention runs inside the fixed-shape graph), if one does."""
    run = SearchRun.open(search_run / "run")
    trials = run.trials
    done = trials[trials["state"] == "COMPLETE"]
    reported = [row["arch_hash"] for _, row in done.iterrows() if run.dev_metric(row["arch_hash"]) is not None]
    done = done[done["arch_hash"].isin(reported)] if reported else done
    for _, row in done.iterrows():
        if any(layer["retention"] < 1 for layer in json.loads(row["config"])["layers"]):
            return int(row["number"])
    return int(done.iloc[0]["number"])


def test_export_tflite_and_int8_checked_on_dev_with_open_modes(search_run, tmp_path, capsys):
    import os
    import stat

    from bertnas.export.formats import TfliteModel

    trial = _unified_trial(search_run)
    out = tmp_path / "deploy"
    previous = os.umask(0o022)
    try:
        args = ["--select", f"trial:{trial}", "--format", "hf,onnx,tflite", "--quantize", "int8"]
        assert _export(search_run, out, *args, "--max-int8-drop", "0", "--seq-len", "64") == 0
    finally:
        os.umask(previous)
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["models"]
    formats = entry["formats"]
    assert list(formats) == ["onnx", "onnx-int8", "tflite", "tflite-int8"]
    directory = out / entry["name"]
    for result in formats.values():
        assert "error" not in result, result
        assert (directory / result["file"]).stat().st_size == result["bytes"] > 0
        assert set(result["latency"]) == {"1", "4"} and result["latency"]["1"]["median_ms"] > 0
        assert result["file"] in printed
    # fp32 files: the same logits and the same dev metric as the PyTorch model
    assert entry["parity"]["tflite_vs_compact"] <= 1e-4
    assert formats["tflite"]["metric"] == formats["onnx"]["metric"] == entry["metric"] == entry["metric_reported"]
    assert formats["tflite"]["latency"]["1"]["seq_len"] == 64
    # int8: smaller, measured on its own file, recommended only within --max-int8-drop (0 points here)
    for name, base in (("onnx-int8", "onnx"), ("tflite-int8", "tflite")):
        result = formats[name]
        assert result["bytes"] < formats[base]["bytes"] and result["quantized"] == "int8-dynamic"
        assert result["metric_drop"] == pytest.approx(entry["metric"] - result["metric"])
        assert result["recommended"] == (result["metric_drop"] <= 0)
        assert (f"{entry['name']}/{result['file']}" in manifest["recommended"]) == result["recommended"]
        if not result["recommended"]:
            assert "--max-int8-drop" in result["left_out"]
    assert f"{entry['name']}/model.tflite" in manifest["recommended"]
    # the TFLite file itself, read back, on real sentences of other lengths
    from bertnas.deploy import load, predict

    model, tokenizer = load(directory)
    sentences = ["the film is superb .", "dull and boring and awful from start to end , truly tedious ."]
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        reference = model(**batch).logits.numpy()
    runner = TfliteModel(directory / "model.tflite")
    assert runner.seq_len == 64
    assert (
        np.abs(runner.logits(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]) - reference).max()
        < 1e-4
    )
    labels = {}
    for fmt in ("hf", "onnx", "tflite", "onnx-int8", "tflite-int8"):
        loaded, loaded_tokenizer = load(directory, format=fmt)
        labels[fmt] = [p.label for p in predict(loaded, loaded_tokenizer, sentences)]
        assert all(label in ("negative", "positive") for label in labels[fmt])
    assert labels["hf"] == labels["onnx"] == labels["tflite"]
    # modes: a shared model store can read everything
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    card = (directory / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: text-classification" in card and "model-index:" in card
    assert str(tmp_path) not in card and str(tmp_path) not in (out / "manifest.json").read_text()
    # bertnas predict: plain and JSON lines
    capsys.readouterr()
    assert main(["predict", str(directory), "--text", sentences[0], "--format", "tflite"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[0] == labels["tflite"][0] and line.endswith(sentences[0])
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"text": s}) for s in sentences) + "\n")
    assert main(["predict", str(directory), "--file", str(tmp_path / "in.jsonl"), "--json"]) == 0
    records = [json.loads(text) for text in capsys.readouterr().out.strip().splitlines()]
    assert [r["label"] for r in records] == labels["hf"]
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-5 for r in records)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to classify"),
        (["--text", "x", "--format", "coreml"], "format 'coreml': choose one of"),
        (["--text", "x", "--format", "tflite"], "has no model.tflite"),
        (["--file", "{missing}"], "No such file"),
        (["--file", "{bad}"], ":2: not JSON"),
    ],
)
def test_predict_errors(search_run, tmp_path, capsys, args, message):
    out = tmp_path / "hf-only"
    assert _export(search_run, out, "--select", "trial:0", "--format", "hf") == 0
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    args = [arg.format(missing=tmp_path / "nope.jsonl", bad=tmp_path / "bad.jsonl") for arg in args]
    capsys.readouterr()
    assert main(["predict", str(out / "trial-0000"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert main(["predict", str(out), "--text", "x"]) == 2
    assert "is an export of 1 model(s); load one of them" in capsys.readouterr().err
