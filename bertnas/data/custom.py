"""Tasks from a deployment team's own data.

``--task`` takes, besides the GLUE names, a *task spec*: a source and optional settings::

    data/reviews                                # a directory: train.csv + dev.csv (or .tsv/.jsonl/.parquet)
    data/reviews-ds                             # a directory written by DatasetDict.save_to_disk
    hf:imdb    hf:glue:sst2                     # a hub dataset (datasets.load_dataset, cached)
    data/reviews?text=title,body&label=stars&metric=f1&max_length=64

The CLI writes the settings from ``--text-columns``, ``--label-column``, ``--metric`` and
``--max-length``; configurations, run records and study files keep the whole string, so
every later command (eval, export, a resumed search) reopens the same task.

Columns are detected when not named: ``sentence1``/``sentence2``, ``question1``/
``question2``, ``question``/``passage``, ``premise``/``hypothesis``, ``text`` or
``sentence`` for the text, ``label`` or ``labels`` for the label. Labels may be integers
or strings (classes in sorted order, names kept as ``id2label``; metrics accuracy and macro
F1, main accuracy unless ``metric=f1``) or floats (regression: Spearman and Pearson, main
Spearman as for STS-B).

A task's *identity* is a hash of its data (each file's sha256, or the ``datasets``
fingerprint of a saved or hub dataset), the column choice, the metric and the max length;
its name (``reviews-1a2b3c4d5e``) ends with that hash, so every cache keyed by task name
(tokenization, teachers, supernets, evaluation results, studies) tells two datasets apart.

Every problem with the data is a one-line :class:`~bertnas.errors.BertnasError` naming the
file (and row where there is one) and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertnas.data.glue import Example, GlueSplit, TaskInfo
from bertnas.errors import BertnasError
from bertnas.hashing import file_sha256
from bertnas.hub import ensure_reachable_or_offline

CUSTOM_FORMAT_VERSION = 1
"""Bumped whenever reading or label mapping changes, so a task's identity (and caches) change too."""

DEFAULT_MAX_LENGTH = 128
HUB_PREFIX = "hf:"

# suffix -> (datasets packaged loader, its options)
FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    # index_col=False: a row with an extra field is an error, not a silent index column
    ".csv": ("csv", {"keep_default_na": False, "na_values": [""], "index_col": False}),
    ".tsv": ("csv", {"delimiter": "\t", "keep_default_na": False, "na_values": [""], "index_col": False}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
}
SPLIT_STEMS: dict[str, tuple[str, ...]] = {"train": ("train",), "dev": ("dev", "validation", "valid", "val")}
TEXT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "passage"),
    ("premise", "hypothesis"),
    ("text",),
    ("sentence",),
)
LABEL_NAMES = ("label", "labels")
CLASSIFICATION_METRICS = {"accuracy": "accuracy", "f1": "macro_f1", "macro_f1": "macro_f1", "mcc": "matthews_corr"}
CLASSIFICATION_METRICS["matthews_corr"] = "matthews_corr"
REGRESSION_METRICS = {"spearman": "spearman", "pearson": "pearson"}
_SPEC_KEYS = ("text", "label", "metric", "max_length")


# --------------------------------------------------------------------------- task specs


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task spec: where the data is and how to read it (see the module docstring)."""

    source: str
    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    metric: str | None = None
    max_length: int | None = None

    @classmethod
    def parse(cls, text: str) -> TaskSpec:
        text = text.strip()
        if not text:
            raise BertnasError("--task is empty; give a GLUE task name, a data directory or hf:NAME")
        source, _, query = text.partition("?")
        if query and Path(text).expanduser().exists():
            source, query = text, ""  # a path that really has '?' in its name
        values: dict[str, str] = {}
        for part in filter(None, query.split("&")):
            key, sep, value = part.partition("=")
            if not sep or key not in _SPEC_KEYS:
                raise BertnasError(
                    f"task spec {text!r}: unknown setting {part!r}; settings are {', '.join(_SPEC_KEYS)} "
                    "(e.g. DIR?text=a,b&label=y)"
                )
            values[key] = value
        max_length = None
        if "max_length" in values:
            if not values["max_length"].isdigit() or int(values["max_length"]) < 2:
                raise BertnasError(f"task spec {text!r}: max_length={values['max_length']!r} must be an integer >= 2")
            max_length = int(values["max_length"])
        text_columns = tuple(c.strip() for c in values["text"].split(",")) if "text" in values else None
        if text_columns is not None and not (1 <= len(text_columns) <= 2 and all(text_columns)):
            raise BertnasError(
                f"--text-columns {values['text']!r} must name one or two columns (A or A,B for sentence pairs)"
            )
        return cls(source, text_columns, values.get("label") or None, values.get("metric") or None, max_length)

    def to_string(self) -> str:
        parts = []
        if self.text_columns:
            parts.append("text=" + ",".join(self.text_columns))
        if self.label_column:
            parts.append(f"label={self.label_column}")
        if self.metric:
            parts.append(f"metric={self.metric}")
        if self.max_length:
            parts.append(f"max_length={self.max_length}")
        return self.source + ("?" + "&".join(parts) if parts else "")


def compose_task(
    source: str,
    text_columns: str | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    max_length: int | None = None,
) -> str:
    """The task spec string for a source plus the CLI's column, metric and length flags."""
    spec = TaskSpec.parse(source)
    text = tuple(c.strip() for c in text_columns.split(",")) if text_columns else spec.text_columns
    spec = TaskSpec(
        spec.source,
        text,
        label_column or spec.label_column,
        metric or spec.metric,
        max_length or spec.max_length,
    )
    return TaskSpec.parse(spec.to_string()).to_string()  # validates the flags the same way as a typed spec


# --------------------------------------------------------------------------- loading


@dataclass
class CustomTask:
    """A loaded custom task: its :class:`TaskInfo` and both labelled splits."""

    info: TaskInfo
    splits: dict[str, GlueSplit]


_LOADED: dict[tuple[str, str], CustomTask] = {}
_BY_NAME: dict[str, CustomTask] = {}


def loaded_task(name: str) -> CustomTask | None:
    """A custom task this process already opened, by its name (``reviews-1a2b3c4d5e``)."""
    return _BY_NAME.get(name)


def open_custom_task(text: str) -> CustomTask:
    """Read, check and identify the task a spec names (once per process and working directory)."""
    spec = TaskSpec.parse(text)
    key = (spec.to_string(), os.getcwd())
    if key in _LOADED:
        return _LOADED[key]
    raw = _read_source(spec)
    task = _build_task(spec, raw)
    _LOADED[key] = task
    _BY_NAME[task.info.name] = task
    return task


class _Columns:
    """A dataset's columns by name, each read (and kept) only when asked for."""

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset
        self._names = list(dataset.column_names)
        self._read: dict[str, list[Any]] = {}

    def __iter__(self) -> Any:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> list[Any]:
        if name not in self._read:
            self._read[name] = list(self._dataset[name])
        return self._read[name]


@dataclass
class _RawSplit:
    columns: _Columns
    origin: str  # a file path or "hub NAME/split"; named in errors
    fingerprint: str
    line_offset: int | None  # data row i is on line i + offset (CSV/TSV/JSONL), None when rows have no lines


def _read_source(spec: TaskSpec) -> dict[str, _RawSplit]:
    if spec.source.startswith(HUB_PREFIX):
        return _read_hub(spec.source)
    path = Path(spec.source).expanduser()
    if not path.exists():
        raise BertnasError(
            f"--task {spec.source}: no such GLUE task, directory or file; give a GLUE name, a directory "
            "holding train and dev files (CSV, TSV, JSONL or Parquet), a save_to_disk directory or hf:NAME"
        )
    if path.is_file():
        raise BertnasError(
            f"--task {spec.source} is a file; a task is a directory holding a train and a dev file "
            f"(e.g. {path.parent / 'train'}{path.suffix} and {path.parent / 'dev'}{path.suffix}): "
            "pass that directory"
        )
    if (path / "dataset_dict.json").is_file():
        return _read_saved(path)
    return _read_files(path)


def _find_split_file(directory: Path, split: str) -> Path:
    found = [
        directory / f"{stem}{suffix}"
        for stem in SPLIT_STEMS[split]
        for suffix in FILE_FORMATS
        if (directory / f"{stem}{suffix}").is_file()
    ]
    if not found:
        present = ", ".join(sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))) or "nothing"
        names = "/".join(SPLIT_STEMS[split])
        raise BertnasError(
            f"{directory}: no {split} file (looked for {names} with .csv, .tsv, .jsonl, .json or .parquet; "
            f"found {present}); add one, e.g. {directory / SPLIT_STEMS[split][0]}.csv"
        )
    if len(found) > 1:
        raise BertnasError(
            f"{directory}: more than one {split} file ({', '.join(p.name for p in found)}); keep one of them"
        )
    return found[0]


def _read_files(directory: Path) -> dict[str, _RawSplit]:
    return {split: _read_file(_find_split_file(directory, split)) for split in SPLIT_STEMS}


def _deepest_message(error: BaseException) -> str:
    """The innermost cause's first line: ``datasets`` wraps the parser's own (useful) message."""
    seen = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for candidate in reversed(seen):
        text = str(candidate).strip()
        if text:
            return text.splitlines()[0][:300]
    return type(error).__name__


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()  # one "Generating split" bar per small file is noise here
    # datasets logs each parser failure as an ERROR with a traceback-like text before raising; the
    # user gets the one-line error below instead
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    return datasets


def _read_file(path: Path) -> _RawSplit:
    datasets = _quiet_datasets()

    builder, options = FILE_FORMATS[path.suffix]
    kind = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSON Lines", ".json": "JSON Lines", ".parquet": "Parquet"}
    if path.stat().st_size == 0:
        raise BertnasError(f"{path}: empty file; it needs a header (CSV/TSV) or records, and at least one example")
    try:
        dataset = datasets.load_dataset(builder, data_files={"data": str(path)}, split="data", **options)
    except Exception as error:  # datasets raises parser-specific types; all mean "not readable as this format"
        message = _deepest_message(error)
        if "corresponds to no data" in message:
            raise BertnasError(f"{path}: no examples (only a header?); every split needs at least one") from None
        line = re.search(r"\bline (\d+)", message)  # pandas: 1-based file lines (pyarrow's rows are 0-based)
        where = f"{path}:{line.group(1)}" if line and builder == "csv" else str(path)
        raise BertnasError(f"{where}: not a valid {kind[path.suffix]} file ({message})") from None
    offset = {"csv": 2, "json": 1}.get(builder)
    return _RawSplit(_Columns(dataset), str(path), f"sha256:{file_sha256(path)}", offset)


def _dataset_dict_splits(dataset_dict: Any, origin: str) -> dict[str, _RawSplit]:
    names = list(dataset_dict.keys())
    chosen: dict[str, str] = {}
    for split, stems in SPLIT_STEMS.items():
        match = [name for name in stems if name in dataset_dict]
        if not match:
            raise BertnasError(
                f"{origin} has no {split} split (splits: {', '.join(names) or 'none'}); it needs {' or '.join(stems)}"
            )
        chosen[split] = match[0]
    splits = {}
    for split, name in chosen.items():
        dataset = dataset_dict[name]
        fingerprint = getattr(dataset, "_fingerprint", None) or ""
        columns = _Columns(dataset)
        if not fingerprint:
            every = {column: columns[column] for column in columns}
            fingerprint = hashlib.sha256(json.dumps(every, default=str).encode()).hexdigest()
        splits[split] = _RawSplit(columns, f"{origin} split {name}", f"datasets:{fingerprint}", None)
    return splits


def _read_saved(directory: Path) -> dict[str, _RawSplit]:
    datasets = _quiet_datasets()

    try:
        dataset_dict = datasets.load_from_disk(str(directory))
    except Exception as error:  # a damaged or foreign directory
        raise BertnasError(
            f"{directory}: cannot read it as a datasets.save_to_disk directory ({_deepest_message(error)})"
        ) from None
    if not isinstance(dataset_dict, datasets.DatasetDict):
        raise BertnasError(
            f"{directory} holds one Dataset, not a DatasetDict; save a DatasetDict with train and validation splits"
        )
    return _dataset_dict_splits(dataset_dict, str(directory))


def _read_hub(source: str) -> dict[str, _RawSplit]:
    import datasets

    name, _, config = source[len(HUB_PREFIX) :].partition(":")
    if not name:
        raise BertnasError(f"--task {source}: give the hub dataset as hf:NAME or hf:NAME:CONFIG")

    offline = ensure_reachable_or_offline()
    try:
        dataset_dict = datasets.load_dataset(name, config or None)
    except Exception as error:  # offline, unknown name, gated: datasets raises many types
        why = _deepest_message(error) + (f"; offline: {offline}" if offline else "")
        raise BertnasError(
            f"cannot load hub dataset {name}{':' + config if config else ''} ({why}); "
            "check the name and the network (offline, only datasets already in the Hugging Face cache load), "
            "or save it to a directory and pass that"
        ) from None
    return _dataset_dict_splits(dataset_dict, f"hub {name}{':' + config if config else ''}")


# --------------------------------------------------------------------------- checking and labels


def _where(raw: _RawSplit, row: int) -> str:
    if raw.line_offset is None:
        return f"{raw.origin}: example {row + 1}"
    return f"{raw.origin}:{row + raw.line_offset}"


def _pick_columns(spec: TaskSpec, raw: _RawSplit) -> tuple[tuple[str, ...], str]:
    found = list(raw.columns)
    listing = ", ".join(found) or "none"
    if spec.text_columns is not None:
        missing = [c for c in spec.text_columns if c not in raw.columns]
        if missing:
            raise BertnasError(f"{raw.origin}: no text column {missing[0]!r} (columns: {listing}); fix --text-columns")
        text = spec.text_columns
    else:
        groups = [group for group in TEXT_GROUPS if all(c in raw.columns for c in group)]
        if not groups:
            raise BertnasError(
                f"{raw.origin}: no text column found (columns: {listing}); name it with --text-columns A "
                "(or A,B for sentence pairs)"
            )
        if len(groups) > 1:
            names = " and ".join("/".join(g) for g in groups)
            raise BertnasError(
                f"{raw.origin}: ambiguous text columns ({names}; columns: {listing}); choose with --text-columns"
            )
        text = groups[0]
    if spec.label_column is not None:
        if spec.label_column not in raw.columns:
            raise BertnasError(
                f"{raw.origin}: no label column {spec.label_column!r} (columns: {listing}); fix --label-column"
            )
        label = spec.label_column
    else:
        labels = [name for name in LABEL_NAMES if name in raw.columns]
        if not labels:
            raise BertnasError(f"{raw.origin}: no label column found (columns: {listing}); name it with --label-column")
        if len(labels) > 1:
            raise BertnasError(
                f"{raw.origin}: ambiguous label column ({' and '.join(labels)}); choose with --label-column"
            )
        label = labels[0]
    if label in text:
        raise BertnasError(f"{raw.origin}: column {label!r} cannot be both text and label; fix --text-columns")
    return text, label


def _check_values(raw: _RawSplit, label: str) -> list[Any]:
    values = raw.columns[label]
    if not values:
        raise BertnasError(f"{raw.origin}: no examples; every split needs at least one")
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise BertnasError(
                f"{_where(raw, row)}: label column {label!r} is empty or NaN; every example needs a label"
            )
        if not isinstance(value, (bool, int, float, str)):
            raise BertnasError(
                f"{_where(raw, row)}: label {value!r} is a {type(value).__name__}; labels are integers, strings "
                "or numbers (regression)"
            )
    return values


def _label_kind(values: Sequence[Any]) -> str:
    if any(isinstance(v, str) for v in values):
        return "str"
    if any(isinstance(v, float) for v in values):
        return "float"
    return "int"


def _build_task(spec: TaskSpec, raw: dict[str, _RawSplit]) -> CustomTask:
    train, dev = raw["train"], raw["dev"]
    text, label = _pick_columns(spec, train)
    dev_text, dev_label = _pick_columns(TaskSpec(spec.source, text, label), dev)
    train_values, dev_values = _check_values(train, label), _check_values(dev, dev_label)
    kind = _label_kind(train_values)
    if kind != "float" and _label_kind(dev_values) == "float":
        raise BertnasError(f"{dev.origin}: label column {label!r} holds numbers with decimals but train's does not")

    if kind == "float":
        metrics, choices = ("spearman", "pearson"), REGRESSION_METRICS
        names: tuple[str, ...] = ()
        to_label: Any = float
    else:
        metrics, choices = ("accuracy", "macro_f1"), CLASSIFICATION_METRICS
        if kind == "str":
            classes = sorted({str(v) for v in train_values})
        else:
            classes = [str(v) for v in sorted({int(v) for v in train_values})]
        if len(classes) < 2:
            raise BertnasError(
                f"{train.origin}: label column {label!r} has one class only ({classes[0]!r}); "
                "a classifier needs at least two"
            )
        names = tuple(classes)
        ids = {name: i for i, name in enumerate(classes)}

        def to_label(value: Any) -> int:
            return ids[str(int(value)) if kind != "str" else str(value)]

        for row, value in enumerate(dev_values):
            key = str(value) if kind == "str" else str(int(value))
            if key not in ids:
                raise BertnasError(
                    f"{_where(dev, row)}: label {value!r} never appears in train (classes: {', '.join(classes)}); "
                    "remove it from dev or add train examples of it"
                )
    main = metrics[0]
    if spec.metric is not None:
        if spec.metric not in choices:
            kind_name = "regression" if kind == "float" else "classification"
            raise BertnasError(
                f"--metric {spec.metric} does not apply to this {kind_name} task; choose one of "
                f"{', '.join(sorted(choices))}"
            )
        main = choices[spec.metric]
        if main not in metrics:
            metrics = (*metrics, main)
        metrics = (main, *(m for m in metrics if m != main))
    max_length = spec.max_length or DEFAULT_MAX_LENGTH

    identity = hashlib.sha256(
        json.dumps(
            {
                "format": CUSTOM_FORMAT_VERSION,
                "train": train.fingerprint,
                "dev": dev.fingerprint,
                "text": list(text),
                "label": label,
                "main_metric": main,
                "max_length": max_length,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    base = spec.source[len(HUB_PREFIX) :] if spec.source.startswith(HUB_PREFIX) else Path(spec.source).name
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "task"
    info = TaskInfo(
        name=f"{slug[:40]}-{identity[:10]}",
        dir_name=spec.source,
        text_columns=text,
        label_column=label,
        labels=names,
        raw_labels=names,
        metrics=metrics,
        main_metric=main,
        max_length=max_length,
        hub_config="",
        hub_text_columns=(),
        spec=spec.to_string(),
        identity=f"sha256:{identity}",
    )
    splits = {}
    for split, source in (("train", train), ("dev", dev)):
        columns = [source.columns[c] for c in text]
        values = source.columns[label]
        examples = []
        for row in range(len(values)):
            text_a = columns[0][row]
            text_b = columns[1][row] if len(columns) == 2 else None
            examples.append(Example(_text(text_a), _text(text_b) if len(columns) == 2 else None, to_label(values[row])))
        splits[split] = GlueSplit(info, split, examples, source.origin, f"{source.fingerprint}|{identity[:16]}")
    return CustomTask(info, splits)


def _text(value: Any) -> str:
    return "" if value is None else str(value)
