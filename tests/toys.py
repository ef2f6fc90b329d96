"""Tiny real models and toy GLUE data shared by the tests that need a supernet in seconds."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

WORDS = {1: ["wonderful", "brilliant", "moving", "superb"], 0: ["dull", "awful", "tedious", "boring"]}


def write_toy_sst2(path: Path, rows: int, seed: int) -> None:
    """An SST-2-format TSV whose label follows the first sentiment word of each sentence."""
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for _ in range(rows):
        label = rng.randint(0, 1)
        lines.append(f"the film is {rng.choice(WORDS[label])} and {rng.choice(WORDS[rng.randint(0, 1)])} . \t{label}")
    path.write_text("\n".join(lines) + "\n")


def tiny_bert(vocab_size: int, num_layers: int = 2, num_labels: int = 2) -> BertForSequenceClassification:
    """A randomly initialised (seed 0) BERT classifier: hidden 32, 4 heads, FFN 64, 128 positions."""
    torch.manual_seed(0)
    config = BertConfig(
        num_labels=num_labels,
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return BertForSequenceClassification(config)


def record_search_split(supernet_dir: Path, glue_dir: str | Path, tokenizer, count: str = "8") -> None:
    """Write what supernet training records for an untrained test supernet: the search split it held
    out of the toy train split (``count`` examples), so searches over it score on that split."""
    import json

    from bertnas.data import get_task
    from bertnas.training.evaluate import SEARCH_SPLIT_JSON, load_train_dev

    splits = load_train_dev(get_task("sst2"), tokenizer, str(glue_dir), search_split=count)
    (Path(supernet_dir) / SEARCH_SPLIT_JSON).write_text(json.dumps(splits.holdout.record))


def run_without_bertnas(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh Python that has this environment's packages but cannot import
    bertnas: isolated mode, no site processing (so no editable-install hook), site-packages
    added by hand. The script fails first thing if bertnas is importable anyway."""
    import site
    import sys

    guard = (
        "import sys\n"
        f"sys.path.extend({site.getsitepackages()!r})\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('bertnas') is None, 'bertnas is importable'\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", guard + script, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
