"""GLUE loading, tokenization cache and batching.

Parsing is tested on hand-written fixtures (tests/fixtures/glue) that reproduce each
format trap, and on the real GLUE files when ``GLUE_DIR`` points at them (CI sets
``GLUE_DIR=../shared/data/glue``); those tests skip otherwise.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bertnas.data import (
    TASKS,
    LengthBucketSampler,
    batch_indices,
    collate,
    get_task,
    load_task,
    make_dataloader,
    padding_comparison,
    padding_share,
    read_glue_tsv,
    resolve_split,
    tokenize_split,
)
from bertnas.errors import BertnasError

# The hub fallback must fail fast in tests (no network); bertnas.data imports datasets only
# when it falls back to the hub, and datasets reads these when it is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures" / "glue"
_GLUE_DIR = os.environ.get("GLUE_DIR")
REAL_GLUE = Path(_GLUE_DIR) if _GLUE_DIR and Path(_GLUE_DIR).is_dir() else None
needs_real_glue = pytest.mark.skipif(
    REAL_GLUE is None, reason="real GLUE data absent: set GLUE_DIR to a GLUE directory (e.g. ../shared/data/glue)"
)


@pytest.fixture
def offline_hub(monkeypatch):
    """No GLUE_DIR, and the hub in offline mode even if datasets was imported before."""
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from bertnas.backbones import resolve_backbone

    return AutoTokenizer.from_pretrained(resolve_backbone("minilm"))


class CountingTokenizer:
    """Wraps a tokenizer and counts calls, so a test can tell a cache hit from a rebuild."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- registry


def test_registry_has_the_nine_tasks_with_hub_label_order():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert get_task("rte").labels == ("entailment", "not_entailment")
    assert get_task("qnli").labels == ("entailment", "not_entailment")
    assert get_task("mnli").labels == ("entailment", "neutral", "contradiction")
    assert get_task("wnli").labels == ("not_entailment", "entailment")
    assert get_task("cola").labels == ("unacceptable", "acceptable")
    assert get_task("stsb").num_labels == 1 and get_task("stsb").is_regression
    assert get_task("mnli").num_labels == 3
    lengths = {name: info.max_length for name, info in TASKS.items()}
    assert lengths == {
        "cola": 64, "sst2": 64, "stsb": 64, "rte": 256,
        "mrpc": 128, "qqp": 128, "mnli": 128, "qnli": 128, "wnli": 128,
    }  # fmt: skip
    mains = {name: info.main_metric for name, info in TASKS.items()}
    assert mains == {
        "cola": "matthews_corr", "sst2": "accuracy", "mrpc": "f1", "stsb": "spearman", "qqp": "f1",
        "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy",
    }  # fmt: skip
    for info in TASKS.values():
        assert info.metrics[0] == info.main_metric


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [
        ("SST-2", "dev", ("sst2", "dev")),
        ("sst-2", "validation", ("sst2", "dev")),
        ("Sst2", "TRAIN", ("sst2", "train")),
        ("sts-b", "dev", ("stsb", "dev")),
        ("STS_B", "test", ("stsb", "test")),
        ("CoLA", "dev", ("cola", "dev")),
        ("MNLI", "dev", ("mnli", "dev_matched")),
        ("mnli", "validation_mismatched", ("mnli", "dev_mismatched")),
        ("mnli-mm", "dev", ("mnli", "dev_mismatched")),
        ("MNLI-MM", "test", ("mnli", "test_mismatched")),
        ("mnli-m", "dev", ("mnli", "dev_matched")),
    ],
)
def test_task_and_split_aliases(name, split, expected):
    info, canonical = resolve_split(name, split)
    assert (info.name, canonical) == expected


def test_unknown_task_or_split_is_a_user_error():
    with pytest.raises(BertnasError, match="unknown task 'squad': not a GLUE task"):
        get_task("squad")
    with pytest.raises(BertnasError, match="no split 'dev_matched'"):
        resolve_split("sst2", "dev_matched")


# --------------------------------------------------------------------------- fixtures (format traps)


def test_cola_has_no_header_and_no_trailing_newline():
    path = FIXTURES / "CoLA" / "dev.tsv"
    assert not path.read_bytes().endswith(b"\n")
    split = load_task("cola", "dev", glue_dir=FIXTURES)
    assert len(split) == 4  # the first row is data, and the last row (no newline) is not lost
    assert split.examples[0].text_a == "The cat chased the ball across the garden."
    assert split.examples[-1].text_a == "Him left the room quickly she."
    assert split.labels == [1, 0, 1, 0]
    assert split.examples[2].text_a == 'She said "hello" and left.'
    assert split.texts_b is None and split.source == str(FIXTURES / "CoLA" / "dev.tsv")


def test_data_identity_names_files_without_the_machine_path():
    from bertnas.data.glue import get_task
    from bertnas.data.tasks import data_identity

    split = load_task("cola", "dev", glue_dir=FIXTURES)
    record = data_identity(get_task("cola"), {"dev": split})
    assert record["dev_source"] == "CoLA/dev.tsv"  # not the absolute path of this checkout
    assert record["dev_fingerprint"] == split.fingerprint


def test_cola_test_split_has_a_header_and_no_labels(tokenizer):
    split = load_task("cola", "test", glue_dir=FIXTURES)
    assert [e.text_a for e in split.examples] == ["Birds sing in the morning.", "Sing birds morning the in."]
    assert split.labels == [None, None] and not split.has_labels
    tokenized = tokenize_split(split, tokenizer, use_cache=False)
    assert tokenized.labels is None
    batch = collate([tokenized[0], tokenized[1]], tokenizer.pad_token_id)
    assert "labels" not in batch and batch["input_ids"].shape[0] == 2


def test_mrpc_bom_header():
    assert (FIXTURES / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    split = load_task("mrpc", "dev", glue_dir=FIXTURES)
    assert split.labels == [1, 0, 1]
    assert split.examples[0].text_b == '"The budget was approved by the council on Monday.'
    assert split.examples[1].text_a == 'He called the plan "reckless" in a speech.'


def test_stsb_float_score_in_last_column():
    split = load_task("STS-B", "dev", glue_dir=FIXTURES)
    assert split.labels == [5.0, 0.0, 3.25]
    assert split.examples[0] == ("A dog runs on the beach.", "A dog is running on the beach.", 5.0)


def test_stray_quotes_are_preserved_and_rows_not_merged():
    path = FIXTURES / "RTE" / "dev.tsv"
    # The trap: with default CSV quoting the unclosed quote swallows the following rows.
    with path.open(encoding="utf-8") as f:
        assert len(list(csv.reader(f, delimiter="\t"))) - 1 < 3
    split = load_task("rte", "dev", glue_dir=FIXTURES)
    assert len(split) == 3
    assert split.examples[0].text_a.startswith('"The bridge')
    assert split.labels == [0, 1, 1]  # entailment = 0, as in HF glue
    qnli = load_task("qnli", "dev", glue_dir=FIXTURES)
    assert qnli.labels == [0, 1] and qnli.examples[1].text_b.startswith('"Critics')


def test_wnli_qqp_sst2_fixtures():
    assert load_task("wnli", "dev", glue_dir=FIXTURES).labels == [1, 0]
    qqp = load_task("qqp", "dev", glue_dir=FIXTURES)
    assert qqp.labels == [1, 0] and qqp.examples[1].text_b == "How far away is the moon?"
    sst2 = load_task("sst2", "dev", glue_dir=FIXTURES)
    assert sst2.label_counts() == {"negative": 3, "positive": 2}
    assert sst2.examples[0].text_a == "a warm and funny little film . "  # trailing space kept
    test = load_task("sst2", "test", glue_dir=FIXTURES)
    assert test.labels == [None, None] and test.examples[1].text_a == "nothing works here . "


def test_mnli_matched_and_mismatched():
    matched = load_task("mnli", "dev", glue_dir=FIXTURES)
    assert matched.split == "dev_matched" and matched.labels == [0, 1, 2]
    assert matched.examples[2].text_a == 'The hotel is "right next" to the beach.'
    mismatched = load_task("mnli-mm", "dev", glue_dir=FIXTURES)
    assert mismatched.split == "dev_mismatched" and mismatched.labels == [0, 2]
    test = load_task("mnli", "test", glue_dir=FIXTURES)
    assert test.split == "test_matched" and test.labels == [None] and test.examples[0].text_b == "It rained."


# --------------------------------------------------------------------------- malformed files


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n")
    with pytest.raises(BertnasError, match=rf"{path}:3: expected 4 tab-separated fields, found 3"):
        load_task("rte", "dev", glue_dir=tmp_path)


def test_unknown_label_names_file_and_line(tmp_path):
    path = _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\ngood . \t1\nbad . \tpositive\n")
    with pytest.raises(BertnasError, match=rf"{path}:3: unknown sst2 label 'positive'"):
        load_task("sst2", "dev", glue_dir=tmp_path)
    path = _write(tmp_path / "CoLA" / "dev.tsv", "x\t1\t\tok.\nx\t2\t\tok.")
    with pytest.raises(BertnasError, match=rf"{path}:2: unknown cola label '2'"):
        load_task("cola", "dev", glue_dir=tmp_path)


def test_bad_score_and_bad_header(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path = _write(tmp_path / "STS-B" / "dev.tsv", header + "0\tg\tf\ty\t0\tn\tn\ta\tb\tfive\n")
    with pytest.raises(BertnasError, match=rf"{path}:2: stsb score 'five' is not a finite number"):
        load_task("stsb", "dev", glue_dir=tmp_path)
    path = _write(tmp_path / "QNLI" / "dev.tsv", "index\tquestion\ttext\tlabel\n0\tq\ts\tentailment\n")
    with pytest.raises(BertnasError, match="no column 'sentence' in the header"):
        load_task("qnli", "dev", glue_dir=tmp_path)


def test_blank_lines_are_skipped(tmp_path):
    _write(tmp_path / "WNLI" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n\n1\tc\td\t0\n\n")
    assert load_task("wnli", "dev", glue_dir=tmp_path).labels == [1, 0]


# --------------------------------------------------------------------------- sources


def test_missing_split_lists_every_place_tried(offline_hub, tmp_path, monkeypatch):
    with pytest.raises(BertnasError) as caught:
        load_task("qnli", "train", glue_dir=FIXTURES)
    message = str(caught.value)
    assert "\n" not in message
    assert str(FIXTURES / "QNLI" / "train.tsv") in message
    assert "GLUE_DIR (not set)" in message
    assert "hub nyu-mll/glue qnli/train (" in message
    assert "--glue-dir DIR" in message and "GLUE_DIR=DIR" in message

    monkeypatch.setenv("GLUE_DIR", str(tmp_path))
    with pytest.raises(BertnasError) as caught:
        load_task("mnli", "dev_mismatched")
    assert str(tmp_path / "MNLI" / "dev_mismatched.tsv") in str(caught.value)
    assert "validation_mismatched" in str(caught.value)


def test_glue_dir_argument_comes_before_env_and_falls_through(tmp_path, monkeypatch):
    _write(tmp_path / "WNLI" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    monkeypatch.setenv("GLUE_DIR", str(FIXTURES))
    assert len(load_task("wnli", "dev", glue_dir=tmp_path)) == 1  # argument wins
    assert len(load_task("wnli", "dev")) == 2  # environment
    assert len(load_task("rte", "dev", glue_dir=tmp_path)) == 3  # not in the argument dir: from GLUE_DIR
    with pytest.raises(BertnasError, match=r"--glue-dir .*nowhere is not a directory"):
        load_task("wnli", "dev", glue_dir=tmp_path / "nowhere")  # a typo never falls back to GLUE_DIR


def _fake_hub(monkeypatch, columns=None, error=None):
    """Replace ``datasets.load_dataset`` (no network here) by one serving an in-memory ``datasets.Dataset``."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        if error is not None:
            raise error
        return datasets.Dataset.from_dict(columns)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    return calls


def test_hub_fallback_maps_columns_and_test_labels(monkeypatch, tmp_path):
    calls = _fake_hub(
        monkeypatch, {"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [2, 0], "idx": [0, 1]}
    )
    split = load_task("mnli-mm", "dev", glue_dir=tmp_path)
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert split.examples == [("p1", "h1", 2), ("p2", "h2", 0)]
    assert split.fingerprint.startswith("hub:") and len(split.fingerprint) > 8
    assert split.source == "hub nyu-mll/glue mnli/validation_mismatched"
    _fake_hub(monkeypatch, {"sentence": ["a", "b"], "label": [-1, -1], "idx": [0, 1]})
    assert load_task("sst2", "test").labels == [None, None]


def test_hub_failure_is_reported_in_one_line(monkeypatch):
    _fake_hub(monkeypatch, error=ConnectionError("Couldn't reach the hub\nsecond line"))
    with pytest.raises(BertnasError, match=r"hub nyu-mll/glue cola/validation \(ConnectionError: Couldn't reach"):
        load_task("cola", "dev")


# --------------------------------------------------------------------------- real data


REAL_COUNTS = {
    ("sst2", "train"): (67_349, {"negative": 29_780, "positive": 37_569}),
    ("sst2", "dev"): (872, {"negative": 428, "positive": 444}),
    ("cola", "train"): (8_551, {"unacceptable": 2_528, "acceptable": 6_023}),
    ("cola", "dev"): (1_043, {"unacceptable": 322, "acceptable": 721}),
    ("mrpc", "train"): (3_668, {"not_equivalent": 1_194, "equivalent": 2_474}),
    ("mrpc", "dev"): (408, {"not_equivalent": 129, "equivalent": 279}),
    ("rte", "train"): (2_490, {"entailment": 1_249, "not_entailment": 1_241}),
    ("rte", "dev"): (277, {"entailment": 146, "not_entailment": 131}),
    ("qnli", "dev"): (5_463, {"entailment": 2_702, "not_entailment": 2_761}),
    ("wnli", "train"): (635, {"not_entailment": 323, "entailment": 312}),
    ("wnli", "dev"): (71, {"not_entailment": 40, "entailment": 31}),
}


@needs_real_glue
@pytest.mark.parametrize(("task", "split"), sorted(REAL_COUNTS))
def test_real_glue_row_and_label_counts(task, split):
    rows, counts = REAL_COUNTS[(task, split)]
    loaded = load_task(task, split, glue_dir=REAL_GLUE)
    assert len(loaded) == rows
    assert loaded.label_counts() == counts
    assert all(e.text_a for e in loaded.examples)
    assert loaded.fingerprint.startswith("sha256:")


@needs_real_glue
def test_real_stsb_scores():
    for split, rows in (("train", 5_749), ("dev", 1_500)):
        scores = np.array(load_task("stsb", split, glue_dir=REAL_GLUE).labels)
        assert len(scores) == rows and scores.min() == 0.0 and scores.max() == 5.0
    assert scores.mean() == pytest.approx(2.364, abs=1e-3)


@needs_real_glue
def test_real_quotes_bom_and_cola_tail():
    for task in ("rte", "qnli"):
        texts = [t for e in load_task(task, "dev", glue_dir=REAL_GLUE).examples for t in (e.text_a, e.text_b)]
        assert any('"' in t for t in texts), f"{task} dev should keep its raw stray quotes"
    mrpc = load_task("mrpc", "dev", glue_dir=REAL_GLUE)
    assert mrpc.examples[0].text_b.startswith('"The foodservice pie business')
    cola_raw = (REAL_GLUE / "CoLA" / "dev.tsv").read_text(encoding="utf-8")
    assert not cola_raw.endswith("\n")
    last = cola_raw.rsplit("\n", 1)[-1].split("\t")
    assert load_task("cola", "dev", glue_dir=REAL_GLUE).examples[-1].text_a == last[3]


@needs_real_glue
@pytest.mark.parametrize(("task", "split"), [("qqp", "dev"), ("mnli", "dev"), ("mnli-mm", "dev")])
def test_real_missing_tasks_raise_with_places(offline_hub, task, split):
    with pytest.raises(BertnasError) as caught:
        load_task(task, split, glue_dir=REAL_GLUE)
    info, canonical = resolve_split(task, split)
    message = str(caught.value)
    assert str(REAL_GLUE / info.dir_name / f"{canonical}.tsv") in message
    assert "hub nyu-mll/glue" in message and "--glue-dir" in message


# --------------------------------------------------------------------------- tokenization cache


def test_tokenize_cache_hit_and_corrupt_rebuild(tokenizer, tmp_path):
    split = load_task("mrpc", "dev", glue_dir=FIXTURES)
    counting = CountingTokenizer(tokenizer)
    first = tokenize_split(split, counting, cache_dir=tmp_path)
    assert counting.calls == 1 and not first.from_cache and first.cache_path.is_file()
    second = tokenize_split(split, counting, cache_dir=tmp_path)
    assert counting.calls == 1 and second.from_cache
    assert second.input_ids == first.input_ids and second.token_type_ids == first.token_type_ids
    assert torch.equal(second.labels, first.labels) and second.labels.dtype == torch.long

    # Stored as plain arrays: loads without pickle, no object arrays.
    with np.load(first.cache_path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)

    first.cache_path.write_bytes(b"not a zip file")
    rebuilt = tokenize_split(split, counting, cache_dir=tmp_path)
    assert counting.calls == 2 and not rebuilt.from_cache and rebuilt.input_ids == first.input_ids
    assert tokenize_split(split, counting, cache_dir=tmp_path).from_cache and counting.calls == 2

    # A different max_length is a different cache entry.
    short = tokenize_split(split, counting, max_length=8, cache_dir=tmp_path)
    assert counting.calls == 3 and short.cache_path != first.cache_path
    assert max(short.lengths) == 8 and not list(tmp_path.glob("*.tmp"))


def test_tokenized_pairs_and_regression_labels(tokenizer, tmp_path):
    split = load_task("stsb", "dev", glue_dir=FIXTURES)
    tokenized = tokenize_split(split, tokenizer, cache_dir=tmp_path)
    assert tokenized.max_length == 64 and len(tokenized) == 3
    ids, types_ = tokenized.input_ids[0], tokenized.token_type_ids[0]
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 2
    assert set(types_) == {0, 1} and types_[0] == 0 and types_[-1] == 1
    assert tokenized.labels.dtype == torch.float32 and tokenized.labels.tolist() == [5.0, 0.0, 3.25]
    batch = make_dataloader(tokenized, 2).__iter__().__next__()
    assert batch["labels"].dtype == torch.float32


def test_default_cache_dir_honours_bertnas_cache(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path))
    tokenized = tokenize_split(load_task("wnli", "dev", glue_dir=FIXTURES), tokenizer)
    assert tokenized.cache_path.parent == tmp_path / "data"


# --------------------------------------------------------------------------- batching


def test_collate_pads_each_batch_to_its_longest():
    batch = collate(
        [
            {"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0], "labels": torch.tensor(1)},
            {"input_ids": [101, 102], "token_type_ids": [0, 0], "labels": torch.tensor(0)},
        ],
        pad_token_id=0,
    )
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert padding_share([batch]) == pytest.approx(1 / 6)
    assert padding_share([[3, 2]]) == pytest.approx(1 / 6)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("bucket", [False, True])
def test_batch_indices_cover_every_example_once(shuffle, bucket):
    lengths = np.random.default_rng(0).integers(3, 60, size=1_003).tolist()
    batches = batch_indices(lengths, 32, shuffle=shuffle, seed=1, bucket=bucket, bucket_batches=5)
    assert sorted(i for b in batches for i in b) == list(range(1_003))
    assert Counter(len(b) for b in batches) == Counter({32: 31, 11: 1})
    assert batches == batch_indices(lengths, 32, shuffle=shuffle, seed=1, bucket=bucket, bucket_batches=5)
    if not shuffle and not bucket:
        assert batches[0] == list(range(32))
    if not shuffle and bucket:
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)
    dropped = batch_indices(lengths, 32, shuffle=shuffle, seed=1, bucket=bucket, drop_last=True)
    assert all(len(b) == 32 for b in dropped) and len(dropped) == 31


def test_sampler_epochs_differ_but_are_reproducible():
    lengths = list(range(5, 205))
    sampler = LengthBucketSampler(lengths, 16, shuffle=True, seed=3)
    first, second = list(sampler), list(sampler)
    assert first != second and len(sampler) == len(first) == 13
    again = LengthBucketSampler(lengths, 16, shuffle=True, seed=3)
    assert list(again) == first
    again.set_epoch(1)
    assert list(again) == second


@needs_real_glue
def test_bucketing_lowers_padding_on_sst2_dev(tokenizer, tmp_path):
    tokenized = tokenize_split(load_task("sst2", "dev", glue_dir=REAL_GLUE), tokenizer, 64, cache_dir=tmp_path)
    shares = padding_comparison(tokenized.lengths, 32)
    # SST-2 dev sentences run from 4 to 55 tokens: random batches are about half padding.
    assert shares["bucketed"] < 0.1 < 0.3 < shares["shuffled"]
    assert shares["sorted"] <= shares["bucketed"]
    bucketed = make_dataloader(tokenized, 32, shuffle=True, seed=0, pad_token_id=tokenizer.pad_token_id)
    plain = make_dataloader(tokenized, 32, shuffle=True, seed=0, bucket=False, pad_token_id=tokenizer.pad_token_id)
    assert padding_share(bucketed) == pytest.approx(shares["bucketed"])
    assert padding_share(plain) == pytest.approx(shares["shuffled"])
    batch = next(iter(bucketed))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())


def test_read_glue_tsv_directly():
    split = read_glue_tsv(FIXTURES / "QQP" / "dev.tsv", "QQP", "dev")
    assert split.task.name == "qqp" and len(split) == 2
