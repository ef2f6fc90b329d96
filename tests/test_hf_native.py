"""Exported compact models load in plain transformers: a Python without bertnas, remote code on.

The directory's ``auto_map`` points at ``modeling_bertnas.py`` and the modules it imports,
copied from bertnas with relative imports; these tests load random unified subnets
(token retention, bottlenecks and stacked FFNs included) that way and compare logits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SENTENCES
from toys import run_without_bertnas

from bertnas.export import extract_subnet
from bertnas.model.bundle import bundle_sources
from bertnas.space import load_space

TOL = 1e-5

LOAD = """
import json, sys
import numpy as np, torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

sentences = json.loads(open(sys.argv[1]).read())
report = {}
for directory in sys.argv[2:]:
    model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    classify = pipeline("text-classification", model=directory, trust_remote_code=True, top_k=None)
    scores = [{item["label"]: item["score"] for item in row} for row in classify(sentences)]
    report[directory] = {
        "class": type(model).__name__,
        "module": type(model).__module__,
        "config": AutoConfig.from_pretrained(directory, trust_remote_code=True).model_type,
        "base": type(AutoModel.from_pretrained(directory, trust_remote_code=True)).__name__,
        "logits": logits.tolist(),
        "pipeline": scores,
    }
print(json.dumps(report))
"""


def _subnets(space, count: int):
    """Random unified subnets that together use retention, bottlenecks and stacked FFNs."""
    rng = np.random.default_rng(11)
    chosen, seen = [], set()
    while len(chosen) < count:
        arch = space.sample(rng)
        features = {
            "retention": any(layer.retention < 1 for layer in arch.layers),
            "bottleneck": any(layer.bottleneck for layer in arch.layers),
            "stack": any(layer.ffn_stack > 1 for layer in arch.layers),
        }
        new = {name for name, used in features.items() if used} - seen
        if new or len(seen) == 3:
            chosen.append(arch)
            seen |= new
    assert seen == {"retention", "bottleneck", "stack"}
    return chosen


def test_random_unified_subnets_load_in_transformers_without_bertnas(minilm_supernet, minilm_hf, tmp_path):
    supernet = minilm_supernet
    _, tokenizer = minilm_hf
    space = load_space("unified").bind(supernet.limits, backbone="all-MiniLM-L6-v2")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # stacked FFNs and bottlenecks that really compute something
        for layer in supernet.layers:
            for extra in layer.extra_ffns:
                extra.down.weight.copy_(torch.randn(extra.down.weight.shape, generator=generator) * 0.02)
    expected = {}
    try:
        batch = dict(tokenizer(SENTENCES, return_tensors="pt", padding=True))
        for number, arch in enumerate(_subnets(space, 4)):
            directory, compact = extract_subnet(supernet, arch, tmp_path / f"subnet-{number}")
            compact.config.id2label = {0: "negative", 1: "positive"}
            compact.config.label2id = {"negative": 0, "positive": 1}
            compact.save_pretrained(directory, tokenizer=tokenizer)
            with torch.no_grad():
                expected[str(directory)] = compact(**batch).logits.numpy()
    finally:
        with torch.no_grad():
            for layer in supernet.layers:
                for extra in layer.extra_ffns:
                    extra.down.weight.zero_()
    (tmp_path / "sentences.json").write_text(json.dumps(SENTENCES))
    done = run_without_bertnas(LOAD, str(tmp_path / "sentences.json"), *expected, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for directory, logits in expected.items():
        got = report[directory]
        assert got["class"] == "CompactBertForSequenceClassification"
        assert got["module"].startswith("transformers_modules")  # the directory's code, not bertnas
        assert got["config"] == "bertnas-compact" and got["base"] == got["class"]
        assert np.abs(np.array(got["logits"]) - logits).max() < TOL, directory
        probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        for row, scores in zip(probabilities, got["pipeline"], strict=True):
            assert scores["negative"] == pytest.approx(row[0], abs=TOL)
            assert scores["positive"] == pytest.approx(row[1], abs=TOL)


def test_bundle_imports_nothing_from_bertnas():
    sources = bundle_sources()
    assert set(sources) == {"modeling_bertnas.py", "functional.py", "params.py", "retention.py", "retention_rule.py"}
    for name, text in sources.items():
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("import ", "from "))]
        assert not [line for line in lines if "bertnas" in line], name
        relative = [line.split()[1] for line in lines if line.startswith("from .")]
        assert all(f"{module[1:]}.py" in sources or module == ".modeling_bertnas" for module in relative), name
