"""Your own task and your own teacher: data directories, save_to_disk, columns, labels, identities,
one-line errors for bad data, and the whole pipeline (plan, supernet training, search) on a CSV task."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pandas as pd
import pytest
from toys import tiny_bert

from bertnas.cli.main import main
from bertnas.data import compose_task, get_task, load_task, tokenize_split
from bertnas.errors import BertnasError

WORDS = {"neg": ["dull", "awful", "boring"], "neutral": ["fine", "okay", "plain"], "pos": ["superb", "moving", "great"]}


def _rows(count: int, seed: int, classes=("neg", "pos")) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(classes)
        rows.append({"sentence": f"the film is {rng.choice(WORDS[label])} , {rng.randint(0, 99)} .", "label": label})
    return rows


def write_task(directory: Path, fmt: str, train: list[dict], dev: list[dict], dev_name: str = "dev") -> Path:
    """A task directory in one of the formats bertnas reads."""
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "disk":
        import datasets

        datasets.DatasetDict(
            {"train": datasets.Dataset.from_list(train), "validation": datasets.Dataset.from_list(dev)}
        ).save_to_disk(str(directory))
        return directory
    for name, rows in (("train", train), (dev_name, dev)):
        frame = pd.DataFrame(rows)
        if fmt == "csv":
            frame.to_csv(directory / f"{name}.csv", index=False)
        elif fmt == "tsv":
            frame.to_csv(directory / f"{name}.tsv", index=False, sep="\t")
        elif fmt == "jsonl":
            frame.to_json(directory / f"{name}.jsonl", orient="records", lines=True)
        elif fmt == "parquet":
            frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


# ---------------------------------------------------------------------- formats and labels


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "disk"])
def test_every_format_round_trips(tmp_path, fmt):
    train, dev = _rows(12, 0), _rows(6, 1)
    directory = write_task(tmp_path / fmt, fmt, train, dev, dev_name="validation" if fmt == "jsonl" else "dev")
    info = get_task(str(directory))
    assert info.is_custom and not info.is_pair and not info.is_regression
    assert info.labels == ("neg", "pos")  # string labels: sorted, names kept
    assert info.metrics == ("accuracy", "macro_f1") and info.main_metric == "accuracy"
    assert info.name.startswith(f"{fmt}-") and info.ref == str(directory)
    loaded = load_task(str(directory), "train")
    assert [e.text_a for e in loaded.examples] == [r["sentence"] for r in train]
    assert [info.labels[e.label] for e in loaded.examples] == [r["label"] for r in train]
    assert len(load_task(str(directory), "validation")) == len(dev)


def test_pair_task_with_integer_labels(tmp_path):
    rng = random.Random(0)
    rows = [{"premise": f"a {i}", "hypothesis": f"b {i}", "label": rng.choice([0, 1, 2])} for i in range(20)]
    directory = write_task(tmp_path / "nli", "jsonl", rows[:14], rows[14:])
    info = get_task(str(directory))
    assert info.is_pair and info.text_columns == ("premise", "hypothesis")
    assert info.labels == ("0", "1", "2") and info.num_labels == 3
    example = load_task(str(directory), "dev").examples[0]
    assert (example.text_a, example.text_b, example.label) == ("a 14", "b 14", rows[14]["label"])


def test_regression_task(tmp_path):
    rows = [{"text": f"s {i}", "score": i / 7} for i in range(10)]
    directory = write_task(tmp_path / "reg", "csv", rows[:7], rows[7:])
    spec = compose_task(str(directory), label_column="score")
    info = get_task(spec)
    assert info.is_regression and info.num_labels == 1
    assert info.metrics == ("spearman", "pearson")
    assert load_task(spec, "dev").examples[0].label == pytest.approx(7 / 7)


def test_named_columns_metric_and_length(tmp_path):
    rows = [{"title": f"t {i}", "body": f"b {i}", "stars": ["one", "two", "three"][i % 3]} for i in range(12)]
    directory = write_task(tmp_path / "reviews", "parquet", rows[:9], rows[9:])
    spec = compose_task(str(directory), text_columns="title,body", label_column="stars", metric="f1", max_length=32)
    assert spec == f"{directory}?text=title,body&label=stars&metric=f1&max_length=32"
    info = get_task(spec)
    assert info.text_columns == ("title", "body") and info.labels == ("one", "three", "two")
    assert info.main_metric == "macro_f1" and info.metrics[0] == "macro_f1" and info.max_length == 32


def test_identity_follows_content_and_settings(tmp_path):
    first = write_task(tmp_path / "a", "csv", _rows(12, 0), _rows(6, 1))
    same = write_task(tmp_path / "copy" / "a", "csv", _rows(12, 0), _rows(6, 1))
    other = write_task(tmp_path / "b" / "a", "csv", _rows(12, 5), _rows(6, 1))
    assert get_task(str(first)).identity == get_task(str(same)).identity
    assert get_task(str(first)).name != get_task(str(other)).name
    assert get_task(str(first)).name != get_task(f"{first}?metric=f1").name


def test_tokenization_cache_is_per_task(tmp_path, minilm_hf):
    _, tokenizer = minilm_hf
    first = write_task(tmp_path / "a", "csv", _rows(12, 0), _rows(6, 1))
    other = write_task(tmp_path / "b", "csv", _rows(12, 0), _rows(6, 2))
    cache = tmp_path / "cache"
    a = tokenize_split(load_task(str(first), "dev"), tokenizer, cache_dir=cache)
    b = tokenize_split(load_task(str(other), "dev"), tokenizer, cache_dir=cache)
    assert a.cache_path != b.cache_path and not b.from_cache
    assert tokenize_split(load_task(str(first), "dev"), tokenizer, cache_dir=cache).from_cache


# ---------------------------------------------------------------------- bad input: one line, exit 2


def _error(capsys, args: list[str]) -> str:
    capsys.readouterr()  # what the test itself printed (model saving progress) is not the command's
    start = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _finetune(directory: Path | str, *extra: str) -> list[str]:
    return ["finetune", "--task", str(directory), "--preset", "quick", "--out", "/nonexistent/never-written", *extra]


def test_bad_data_gives_one_line_errors(tmp_path, capsys):
    good_train, good_dev = _rows(12, 0), _rows(6, 1)

    only_train = tmp_path / "only-train"
    write_task(only_train, "csv", good_train, good_dev)
    (only_train / "dev.csv").unlink()
    assert "no dev file" in _error(capsys, _finetune(only_train))

    bad_csv = write_task(tmp_path / "bad-csv", "csv", good_train, good_dev)
    (bad_csv / "train.csv").write_text("sentence,label\nfine,pos\ntoo,many,fields\n")
    assert f"{bad_csv / 'train.csv'}:3: not a valid CSV file" in _error(capsys, _finetune(bad_csv))

    bad_jsonl = write_task(tmp_path / "bad-jsonl", "jsonl", good_train, good_dev)
    (bad_jsonl / "dev.jsonl").write_text('{"sentence": "a", "label": "pos"}\n{"sentence": "b", "lab\n')
    assert "not a valid JSON Lines file" in _error(capsys, _finetune(bad_jsonl))

    bad_parquet = write_task(tmp_path / "bad-parquet", "parquet", good_train, good_dev)
    (bad_parquet / "train.parquet").write_bytes(b"this is not parquet")
    assert "not a valid Parquet file" in _error(capsys, _finetune(bad_parquet))

    no_label = write_task(tmp_path / "no-label", "csv", [{"sentence": "a", "y": 1}], [{"sentence": "b", "y": 0}])
    message = _error(capsys, _finetune(no_label))
    assert "no label column found (columns: sentence, y)" in message and "--label-column" in message

    ambiguous = [{"text": "a", "sentence": "b", "label": 0}, {"text": "c", "sentence": "d", "label": 1}]
    two_texts = write_task(tmp_path / "two-texts", "csv", ambiguous, ambiguous)
    assert "ambiguous text columns" in _error(capsys, _finetune(two_texts))

    missing_named = write_task(tmp_path / "named", "csv", good_train, good_dev)
    message = _error(capsys, _finetune(missing_named, "--label-column", "stars"))
    assert "no label column 'stars' (columns: sentence, label)" in message

    one_class = write_task(tmp_path / "one-class", "csv", [{"sentence": "a", "label": "pos"}] * 4, good_dev)
    assert "one class only" in _error(capsys, _finetune(one_class))

    with_nan = write_task(tmp_path / "nan", "csv", good_train, good_dev)
    (with_nan / "train.csv").write_text("sentence,label\na,pos\nb,\nc,neg\n")
    assert f"{with_nan / 'train.csv'}:3: label column 'label' is empty or NaN" in _error(capsys, _finetune(with_nan))

    unseen = write_task(tmp_path / "unseen", "csv", good_train, [{"sentence": "x", "label": "meh"}])
    assert "label 'meh' never appears in train" in _error(capsys, _finetune(unseen))

    empty = write_task(tmp_path / "empty", "csv", good_train, good_dev)
    (empty / "dev.csv").write_text("sentence,label\n")
    assert "no examples" in _error(capsys, _finetune(empty))

    assert "is a file" in _error(capsys, _finetune(empty / "train.csv"))
    assert "not a GLUE task" in _error(capsys, _finetune(tmp_path / "nowhere"))
    message = _error(capsys, ["finetune", "--task", "sst2", "--label-column", "y"])
    assert "--label-column describes your own data" in message
    assert "does not apply" in _error(capsys, _finetune(missing_named, "--metric", "spearman"))
    assert "unknown setting 'colour=red'" in _error(capsys, _finetune(f"{missing_named}?colour=red"))
    assert "must name one or two columns" in _error(capsys, _finetune(missing_named, "--text-columns", "a,b,c"))
    two_trains = write_task(tmp_path / "two-trains", "csv", good_train, good_dev)
    write_task(two_trains, "jsonl", good_train, good_dev)
    assert "more than one train file (train.csv, train.jsonl)" in _error(capsys, _finetune(two_trains))

    # an unfinished fine-tuning with other settings is refused, not silently resumed or overwritten
    out = tmp_path / "teacher"
    checkpoint = tmp_path / ".teacher.checkpoint"
    checkpoint.mkdir()
    state = {"step": 5, "train_seconds": 1.0, "record": {}, "config": {"task": str(missing_named), "epochs": 9.0}}
    (checkpoint / "state.json").write_text(json.dumps(state))
    args = ["finetune", "--task", str(missing_named), "--preset", "quick", "--out", str(out)]
    assert "holds an unfinished fine-tuning with other settings" in _error(capsys, args)
    assert (checkpoint / "state.json").is_file() and not out.exists()


def test_hub_dataset_offline_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = _error(capsys, _finetune("hf:someone/no-such-dataset-bertnas"))
    assert "cannot load hub dataset someone/no-such-dataset-bertnas" in message


def test_teacher_must_match_the_task(tmp_path, capsys, minilm_hf):
    _, tokenizer = minilm_hf
    task = write_task(tmp_path / "three", "csv", _rows(30, 0, tuple(WORDS)), _rows(9, 1, tuple(WORDS)))
    two = tmp_path / "two-labels"
    tiny_bert(tokenizer.vocab_size, num_labels=2).save_pretrained(two)
    base = ["supernet", "train", "--task", str(task), "--out", str(tmp_path / "s")]
    message = _error(capsys, [*base, "--teacher", str(two)])
    assert "has 2 labels but task" in message and "has 3 (neg, neutral, pos)" in message
    named = tmp_path / "named"
    model = tiny_bert(tokenizer.vocab_size, num_labels=3)
    model.config.id2label = {0: "pos", 1: "neg", 2: "neutral"}
    model.save_pretrained(named)
    assert "do not match task" in _error(capsys, [*base, "--teacher", str(named)])
    message = _error(capsys, [*base, "--teacher", "someone/no-such-teacher-bertnas"])
    assert "cannot load backbone 'someone/no-such-teacher-bertnas'" in message
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------- the pipeline on a CSV task


@pytest.fixture(scope="module")
def pipeline_env(tmp_path_factory, minilm_hf):
    _, tokenizer = minilm_hf
    root = tmp_path_factory.mktemp("pipeline")
    teacher = root / "my-teacher"
    tiny_bert(tokenizer.vocab_size, num_labels=3).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTNAS_CACHE", str(root / "cache"))
        yield {"root": root, "teacher": str(teacher)}


def _budget_ms(teacher: str) -> float:
    from bertnas.hardware import load_predictor
    from bertnas.space import load_space
    from bertnas.supernet import ElasticBert

    limits = ElasticBert.from_backbone(teacher).limits
    space = load_space("unified").bind(limits, backbone=teacher)
    return 2 * float(load_predictor("pixel4").predict(space.largest()))


def test_search_on_a_custom_csv_task_trains_what_is_missing_and_ends_with_a_front(pipeline_env, capsys):
    from bertnas.paths import supernet_dir

    root, teacher = pipeline_env["root"], pipeline_env["teacher"]
    budget = f"{_budget_ms(teacher):.4f}ms"
    runs = {}
    for name, seed in (("first", 0), ("second", 7)):
        task = write_task(
            root / name / "reviews", "csv", _rows(40, seed, tuple(WORDS)), _rows(16, seed + 1, tuple(WORDS))
        )
        out = root / f"run-{name}"
        args = [
            "search",
            "--task",
            str(task),
            "--teacher",
            teacher,
            "--preset",
            "quick",
            "--device",
            "pixel4",
            "--budget",
            budget,
            "--trials",
            "4",
            "--population",
            "2",
            "--no-references",
            "--out",
            str(out),
            "--json",
        ]
        assert main(args) == 0
        captured = capsys.readouterr()
        assert "plan:" in captured.err and "train the supernet" in captured.err
        summary = json.loads(captured.out)
        assert summary["counts"]["evaluated"] == 4 and summary["fronts"]["pixel4"]["points"]
        info = get_task(str(task))
        cached = supernet_dir(teacher, info.name, "unified")
        assert (cached / "training.json").is_file()  # the user's teacher, used as given, under its own key
        run = json.loads((out / "run.json").read_text())
        assert run["config"]["task"] == str(task) and run["config"]["teacher"] == teacher
        assert run["supernet"] == str(cached) or Path(run["supernet"]).name == cached.name
        runs[name] = (info.name, cached)
    assert runs["first"][0] != runs["second"][0] and runs["first"][1] != runs["second"][1]
    # the export reopens the custom task from the run and names the classes as the data did
    exported = root / "export"
    export = [
        "export",
        str(out),
        "--device",
        "pixel4",
        "--select",
        f"trial:{summary['fronts']['pixel4']['points'][0]['trial']}",
        "--format",
        "hf",
        "--out",
        str(exported),
        "--allow-degenerate",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ]
    assert main(export) == 0, capsys.readouterr().err
    capsys.readouterr()
    config = json.loads(next(exported.glob("*/config.json")).read_text())
    assert list(config["id2label"].values()) == ["neg", "neutral", "pos"]
    # the same command again: everything cached, no plan, same front
    assert main(args) == 0
    assert "plan:" not in capsys.readouterr().err


def test_no_train_keeps_the_refusal(pipeline_env, capsys):
    root = pipeline_env["root"]
    task = write_task(root / "fresh" / "t", "csv", _rows(20, 3, tuple(WORDS)), _rows(8, 4, tuple(WORDS)))
    args = ["search", "--task", str(task), "--device", "pixel4", "--budget", "60ms", "--no-train"]
    message = _error(capsys, args)
    assert "no trained teacher and supernet" in message
    with pytest.raises(BertnasError, match="unknown preset"):
        from bertnas.search.config import SearchConfig

        SearchConfig(task=str(task), budgets_ms={"pixel4": 60.0}, preset="huge").validate()
