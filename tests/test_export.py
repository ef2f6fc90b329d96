"""Deployment export: ONNX with in-graph retention, packaged model directories, manifest, safety.

Runs on a tiny random BERT (real MiniLM tokenizer, real SST-2-format dev data written
here), so every export takes seconds.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from toys import tiny_bert

from bertnas.arch import ArchConfig, LayerConfig
from bertnas.errors import BertnasError
from bertnas.export import package
from bertnas.export.onnx import OnnxModel, export_onnx
from bertnas.export.package import Candidate, ExportOptions, export_models
from bertnas.model import CompactBert
from bertnas.model.compact import CompactConfig
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.supernet import ElasticBert

GOOD = ["wonderful", "brilliant", "moving", "delightful", "superb", "charming"]
BAD = ["dull", "awful", "tedious", "boring", "clumsy", "lifeless"]
FILLER = ["the film is", "a", "this movie feels", "an often", "the acting , costumes and music are", "it 's"]


def _layers(*specs: tuple) -> tuple[LayerConfig, ...]:
    return tuple(
        LayerConfig(index=i, heads=h, qk_dim=8, v_dim=8, ffn_dim=f, ffn_stack=k, bottleneck=b, retention=r)
        for i, (h, f, k, b, r) in enumerate(specs)
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory, minilm_hf):
    """A saved tiny supernet (task sst2, room for stacked FFNs and bottlenecks) and SST-2 dev data."""
    _, tokenizer = minilm_hf
    root = tmp_path_factory.mktemp("export-env")
    rng = random.Random(1)
    lines = ["sentence\tlabel"]
    for _ in range(48):
        label = rng.randint(0, 1)
        words = " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 6)))
        lines.append(f"{words} {rng.choice(GOOD if label else BAD)} . \t{label}")
    (root / "glue" / "SST-2").mkdir(parents=True)
    (root / "glue" / "SST-2" / "dev.tsv").write_text("\n".join(lines) + "\n")
    hf = tiny_bert(tokenizer.vocab_size, num_layers=3).eval()
    supernet = ElasticBert.from_hf_model(hf, "tiny-bert", tokenizer, max_ffn_stack=2, max_bottleneck=32, task="sst2")
    with torch.no_grad():  # make the stacked FFNs compute something
        for layer in supernet.layers:
            for extra in layer.extra_ffns:
                extra.down.weight.normal_(0, 0.05)
    supernet.save_pretrained(root / "supernet")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        (root / "profiles").mkdir()  # no host-cpu-onnxruntime profile: timing at ExportOptions.seq_len
        patch.setenv("BERTNAS_PROFILES_DIR", str(root / "profiles"))
        yield root


def _candidates(env, glue) -> list[Candidate]:
    archs = [
        ArchConfig(hidden_size=32, layers=_layers((4, 64, 1, None, 1.0), (3, 48, 2, 16, 0.6), (2, 32, 1, None, 0.3))),
        ArchConfig(hidden_size=32, layers=_layers((2, 32, 1, None, 0.5), (2, 32, 1, None, 0.5))),
    ]
    evaluator = SubnetEvaluator.open(env / "supernet", task="sst2", split="dev", glue_dir=str(glue), use_cache=False)
    return [
        Candidate(f"trial-{number}", arch, evaluator.evaluate(arch).metric, trial=number)
        for number, arch in zip((3, 7), archs, strict=True)
    ]


def _options(env, **changes) -> ExportOptions:
    base = {"task": "sst2", "glue_dir": str(env / "glue"), "warmup": 1, "repeats": 3, "seq_len": 32}
    return ExportOptions(**{**base, **changes})


def test_onnx_retention_parity_on_padded_batches_of_any_shape(batch, tmp_path):
    """Retention runs inside the graph: padded batches of new shapes match PyTorch per example."""
    torch.manual_seed(0)
    layers = _layers((4, 64, 1, None, 1.0), (4, 64, 2, 24, 0.6), (4, 64, 1, None, 0.4), (4, 64, 1, None, 0.2))
    arch = ArchConfig(hidden_size=32, layers=layers, vocab_size=30522, max_position_embeddings=128, num_labels=2)
    model = CompactBert(CompactConfig(arch)).eval()
    with torch.no_grad():  # larger than init weights, so that every kept token visibly moves the logits
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)) * 0.2)
    path = export_onnx(model, tmp_path / "model.onnx")
    runner = OnnxModel(path)
    assert json.loads(runner.metadata["arch"]) == arch.to_dict()
    no_retention = CompactBert(CompactConfig(arch.replace(layers=[replace(x, retention=1.0) for x in layers])))
    no_retention.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(1)
    cases = [batch, {k: v[:1] for k, v in batch.items()}, {k: v[2:5, :20] for k, v in batch.items()}]
    for size, width in ((7, 3), (1, 1), (5, 97)):
        ids = torch.randint(1000, 2000, (size, width), generator=generator)
        mask = torch.ones_like(ids)
        for row in range(1, size):
            mask[row, int(torch.randint(1, width + 1, (1,), generator=generator)) :] = 0
        cases.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    # Real lengths where length * retention is a whole number: the kept count must not round up.
    ids = torch.randint(1000, 2000, (6, 30), generator=generator)
    mask = (torch.arange(30).unsqueeze(0) < torch.tensor([5, 10, 15, 20, 25, 30]).unsqueeze(1)).long()
    cases.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    for case in cases:
        case = {key: value.clone() for key, value in case.items()}
        case["attention_mask"][:, 0] = 1
        with torch.no_grad():
            expected = model(**case).logits.numpy()
            without = no_retention(**case).logits.numpy()
        got = runner.logits(case["input_ids"], case["attention_mask"], case["token_type_ids"])
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4
        if case["input_ids"].shape[1] > 5:  # tokens were really dropped, and the graph dropped the same ones
            assert np.abs(without - expected).max() > 1e-3
    # Each example alone gives the same logits as inside the padded batch.
    lengths = batch["attention_mask"].sum(dim=1)
    together = runner.logits(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    for row, length in enumerate(lengths.tolist()):
        alone = runner.logits(batch["input_ids"][row : row + 1, :length])
        assert np.abs(alone - together[row : row + 1]).max() < 1e-4


def test_onnx_kept_counts_equal_kept_tokens_for_every_length(tmp_path):
    """The exported graph keeps exactly kept_tokens(r, n) tokens: no float rounding on the way.

    Regression: 0.56 x 25 kept 15 tokens in ONNX (the float epsilon was dropped by the
    exporter) and 0.7 x 40 kept 29 (integer division exported as float32).
    """
    import onnxruntime

    from bertnas.arch import kept_tokens
    from bertnas.model.retention import kept_counts

    rng = random.Random(0)
    retentions = [0.56, 0.7, 0.504, 0.6, 0.1, 0.333333, 0.999999, 0.000001] + [
        round(rng.uniform(0.05, 1.0), 6) for _ in range(12)
    ]

    class Counts(torch.nn.Module):
        def forward(self, mask: torch.Tensor) -> torch.Tensor:
            lengths = mask.sum(dim=1)
            return torch.stack([kept_counts(r, lengths, lengths) for r in retentions], dim=1)

    path = tmp_path / "counts.onnx"
    mask = torch.ones(2, 8, dtype=torch.long)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("tokens", max=4096)}
    torch.onnx.export(Counts(), (mask,), str(path), dynamo=True, dynamic_shapes=(dims,), verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lengths = np.arange(1, 513)
    masks = (np.arange(512)[None, :] < lengths[:, None]).astype(np.int64)
    (got,) = session.run(None, {session.get_inputs()[0].name: masks})
    expected = np.array([[kept_tokens(r, int(n)) for r in retentions] for n in lengths])
    assert np.array_equal(got, expected)
    assert np.array_equal(Counts()(torch.from_numpy(masks)).numpy(), expected)


def test_onnx_runner_errors(tmp_path):
    with pytest.raises(BertnasError, match="does not exist"):
        OnnxModel(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BertnasError, match="cannot load"):
        OnnxModel(tmp_path / "junk.onnx")


def test_export_models_writes_self_contained_directories_and_manifest(env, tmp_path):
    candidates = _candidates(env, env / "glue")
    out = tmp_path / "export"
    manifest = export_models(env / "supernet", candidates, out, _options(env, source={"study": "s1"}), predictors={})
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [row["name"] for row in rows] == ["trial-3", "trial-7"]
    for candidate, entry, row in zip(candidates, manifest["models"], rows, strict=True):
        directory = out / candidate.name
        files = {p.name for p in directory.iterdir()}
        assert {"config.json", "model.safetensors", "model.onnx", "README.md", "arch.json", "tokenizer.json"} <= files
        assert set(entry["files"]) == files
        assert entry["metric"] == entry["metric_reported"] == entry["metric_onnx"] == candidate.metric
        assert entry["parity"]["onnx_vs_supernet"] < 1e-4 and entry["parity"]["examples"] == 16
        assert entry["measured"]["median_ms"] > 0 and entry["measured"]["seq_len"] == 32
        assert (
            entry["measured"]["predicted_ms"] is None and "no host-cpu-onnxruntime profile" in entry["measured"]["note"]
        )
        assert float(row["measured_ms"]) == pytest.approx(entry["measured"]["median_ms"])
        assert int(row["params"]) == entry["params"] and row["arch_hash"] == entry["arch_hash"]
        assert ArchConfig.load(directory / "arch.json").hash() == entry["arch_hash"]
        config = json.loads((directory / "config.json").read_text())
        assert config["task"] == "sst2" and config["id2label"] == {"0": "negative", "1": "positive"}
        card = (directory / "README.md").read_text()
        assert f"{entry['metric']:.4f}" in card and "onnxruntime" in card and "from_pretrained" in card
        # Loads and runs without the supernet, in PyTorch and in onnxruntime, with the same logits.
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        inputs = tokenizer(
            ["a charming film .", "dull , tedious and boring from start to end ."], return_tensors="pt", padding=True
        )
        model = CompactBert.from_pretrained(directory)
        with torch.no_grad():
            torch_logits = model(**inputs).logits.numpy()
        onnx_logits = OnnxModel(directory / "model.onnx").logits(**inputs)
        assert np.abs(torch_logits - onnx_logits).max() < 1e-4


def test_export_refuses_to_overwrite_and_force_replaces(env, tmp_path):
    candidates = _candidates(env, env / "glue")[1:]
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BertnasError, match="already exists.*--force"):
        export_models(env / "supernet", candidates, out, _options(env, formats=("hf",)), predictors={})
    assert (out / "keep.txt").read_text() == "mine"
    manifest = export_models(env / "supernet", candidates, out, _options(env, formats=("hf",)), {}, force=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert "measured" not in manifest["models"][0] and not (out / "trial-7" / "model.onnx").exists()


def test_interrupted_export_leaves_nothing_that_looks_complete(env, tmp_path, monkeypatch):
    candidates = _candidates(env, env / "glue")
    out = tmp_path / "export"
    calls = []
    real_card = package.render_card

    def crash_on_second(entry):
        calls.append(entry["name"])
        if len(calls) == 2:  # the first model is completely written by now
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        return real_card(entry)

    monkeypatch.setattr(package, "render_card", crash_on_second)
    hf_only = _options(env, formats=("hf",))
    with pytest.raises(KeyboardInterrupt):
        export_models(env / "supernet", candidates, out, hf_only, predictors={})
    assert calls == ["trial-3", "trial-7"] and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no scratch directory left behind either
    # With --force over an existing export, the old one survives an interrupted replacement.
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        export_models(env / "supernet", candidates, out, hf_only, predictors={}, force=True)
    assert (out / "manifest.json").read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_export_fails_loudly_when_the_metric_differs_from_the_search(env, tmp_path):
    candidate = _candidates(env, env / "glue")[1]
    wrong = Candidate(candidate.name, candidate.arch, candidate.metric + 1 / 48, candidate.trial)
    out = tmp_path / "export"
    with pytest.raises(BertnasError, match="search reported"):
        export_models(env / "supernet", [wrong], out, _options(env, formats=("hf",)), predictors={})
    assert not out.exists()
    with pytest.raises(BertnasError, match="--format"):
        export_models(env / "supernet", [candidate], out, _options(env, formats=("coreml",)), predictors={})
    # float32 noise in a recomputed metric (two near-tied predictions swapping) is not a change
    close = Candidate(candidate.name, candidate.arch, candidate.metric + 2e-6, candidate.trial)
    export_models(env / "supernet", [close], out, _options(env, formats=("hf",)), predictors={})
    assert (out / "manifest.json").is_file()


def test_measured_comparison_flags_a_profile_from_another_cpu():
    """host-cpu-onnxruntime describes the CPU it was measured on; elsewhere the export says so."""
    from bertnas.hardware import load_predictor
    from bertnas.hardware.measure import host_description
    from bertnas.hardware.predictor import LatencyPredictor

    shipped_file = Path(__file__).parents[1] / "hardware_profiles" / f"{package.MEASURE_PROFILE}.yaml"
    shipped = load_predictor(shipped_file).profile
    here = LatencyPredictor(replace(shipped, host={**shipped.host, "cpu": host_description()["cpu"]}))
    elsewhere = LatencyPredictor(replace(shipped, host={**shipped.host, "cpu": "Some Other CPU 9000"}))
    assert package._measure_note(here) is None
    note = package._measure_note(elsewhere)
    assert "measured on Some Other CPU 9000" in note and "bertnas profile measure" in note
    assert "no host-cpu-onnxruntime profile" in package._measure_note(None)
