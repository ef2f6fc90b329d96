"""GLUE tasks: the task registry, loading a split, and tokenization with an on-disk cache.

Where the data comes from, in order:

1. the ``glue_dir`` argument (the CLI's ``--glue-dir``),
2. the ``GLUE_DIR`` environment variable,
3. the Hugging Face hub dataset ``nyu-mll/glue`` through ``datasets.load_dataset``
   (cached by ``datasets``; set ``HF_DATASETS_OFFLINE=1`` on a machine without network,
   otherwise ``datasets`` retries for about 20 s before giving up).

1 and 2 are directories in the original GLUE layout (what ``download_glue_data.py``
writes): ``DIR/SST-2/dev.tsv``, ``DIR/MNLI/dev_matched.tsv`` and so on. A missing file
falls through to the next source; when none has it, :class:`BertnasError` lists every
place that was tried.

Parsing follows the original files exactly: tab-separated with quoting disabled (RTE,
QNLI and MNLI hold raw stray ``"`` characters that CSV quoting would swallow, merging
rows), ``utf-8-sig`` (MRPC's header starts with a BOM), CoLA train/dev have no header,
string labels (RTE, QNLI, MNLI) are mapped to the label ids of Hugging Face ``glue`` so
TSV and hub data agree, and STS-B's float score is its last column. Columns of headed
files are found by header name, so train/dev/test files with different column counts
(MNLI dev has five annotator labels, test files have no label) all parse the same way.

Test splits are supported: they load with ``label=None`` (GLUE withholds test labels)
and their tokenized form has ``labels=None``; metrics cannot be computed on them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from bertnas.atomic import file_mode, temporary_file
from bertnas.errors import BertnasError
from bertnas.hub import ensure_reachable_or_offline

HUB_DATASET = "nyu-mll/glue"
"""The hub id of GLUE (the canonical ``glue`` name redirects here on the hub)."""

DATA_FORMAT_VERSION = 1
"""Bumped whenever parsing or tokenization changes, so stale cache files are not reused."""

_TOKENIZE_CHUNK = 2048  # examples per tokenizer call: bounds peak memory on MNLI/QQP train


@dataclass(frozen=True)
class TaskInfo:
    """Everything bertnas needs to know about one GLUE task.

    ``labels`` are the class names in the order of Hugging Face ``glue`` (so label id
    ``i`` means the same thing for TSV and hub data); ``raw_labels`` are how those
    classes are written in the TSV files, in the same order. Both are empty for the
    regression task STS-B. ``text_columns``/``label_column`` name TSV header columns;
    ``columns`` names the columns of headerless train/dev files (CoLA; GLUE test files
    always have a header). ``dev_splits`` is ``("dev",)`` except for MNLI.
    """

    name: str
    dir_name: str
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...]
    raw_labels: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    max_length: int
    hub_config: str
    hub_text_columns: tuple[str, ...]
    header: bool = True
    columns: tuple[str, ...] = ()
    dev_splits: tuple[str, ...] = ("dev",)
    # Custom tasks (bertnas.data.custom) only: the task spec that reopens the task, and the hash
    # of its data and settings (which its name ends with).
    spec: str = ""
    identity: str = ""

    @property
    def ref(self) -> str:
        """What to pass as ``--task`` (or to :func:`bertnas.data.get_task`) to get this task back."""
        return self.spec or self.name

    @property
    def is_custom(self) -> bool:
        """True for a task read from the user's own data."""
        return bool(self.spec)

    @property
    def is_regression(self) -> bool:
        """True for STS-B: one output, a float score."""
        return not self.raw_labels

    @property
    def num_labels(self) -> int:
        """Output width of the classification head (1 for regression)."""
        return 1 if self.is_regression else len(self.labels)

    @property
    def is_pair(self) -> bool:
        """True when examples are sentence pairs (text_b is set)."""
        return len(self.text_columns) == 2

    @property
    def splits(self) -> tuple[str, ...]:
        """Canonical split names this task has (the TSV file stems)."""
        tests = tuple(s.replace("dev", "test") for s in self.dev_splits)
        return ("train", *self.dev_splits, *tests)


# Main metrics follow the BERT paper (Devlin et al., 2019, Table 1): F1 for MRPC and QQP,
# Spearman for STS-B, Matthews correlation for CoLA, accuracy elsewhere. The second
# metric of MRPC/QQP/STS-B is reported alongside, as on the GLUE leaderboard.
# Max lengths follow PoWER-BERT: 64 for SST-2/CoLA/STS-B, 256 for RTE, 128 otherwise.
TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo(
            name="cola",
            dir_name="CoLA",
            text_columns=("sentence",),
            label_column="label",
            labels=("unacceptable", "acceptable"),
            raw_labels=("0", "1"),
            metrics=("matthews_corr", "accuracy"),
            main_metric="matthews_corr",
            max_length=64,
            hub_config="cola",
            hub_text_columns=("sentence",),
            header=False,
            columns=("source", "label", "original_mark", "sentence"),
        ),
        TaskInfo(
            name="sst2",
            dir_name="SST-2",
            text_columns=("sentence",),
            label_column="label",
            labels=("negative", "positive"),
            raw_labels=("0", "1"),
            metrics=("accuracy",),
            main_metric="accuracy",
            max_length=64,
            hub_config="sst2",
            hub_text_columns=("sentence",),
        ),
        TaskInfo(
            name="mrpc",
            dir_name="MRPC",
            text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            labels=("not_equivalent", "equivalent"),
            raw_labels=("0", "1"),
            metrics=("f1", "accuracy"),
            main_metric="f1",
            max_length=128,
            hub_config="mrpc",
            hub_text_columns=("sentence1", "sentence2"),
        ),
        TaskInfo(
            name="stsb",
            dir_name="STS-B",
            text_columns=("sentence1", "sentence2"),
            label_column="score",
            labels=(),
            raw_labels=(),
            metrics=("spearman", "pearson"),
            main_metric="spearman",
            max_length=64,
            hub_config="stsb",
            hub_text_columns=("sentence1", "sentence2"),
        ),
        TaskInfo(
            name="qqp",
            dir_name="QQP",
            text_columns=("question1", "question2"),
            label_column="is_duplicate",
            labels=("not_duplicate", "duplicate"),
            raw_labels=("0", "1"),
            metrics=("f1", "accuracy"),
            main_metric="f1",
            max_length=128,
            hub_config="qqp",
            hub_text_columns=("question1", "question2"),
        ),
        TaskInfo(
            name="mnli",
            dir_name="MNLI",
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            labels=("entailment", "neutral", "contradiction"),
            raw_labels=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            main_metric="accuracy",
            max_length=128,
            hub_config="mnli",
            hub_text_columns=("premise", "hypothesis"),
            dev_splits=("dev_matched", "dev_mismatched"),
        ),
        TaskInfo(
            name="qnli",
            dir_name="QNLI",
            text_columns=("question", "sentence"),
            label_column="label",
            labels=("entailment", "not_entailment"),
            raw_labels=("entailment", "not_entailment"),
            metrics=("accuracy",),
            main_metric="accuracy",
            max_length=128,
            hub_config="qnli",
            hub_text_columns=("question", "sentence"),
        ),
        TaskInfo(
            name="rte",
            dir_name="RTE",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=("entailment", "not_entailment"),
            raw_labels=("entailment", "not_entailment"),
            metrics=("accuracy",),
            main_metric="accuracy",
            max_length=256,
            hub_config="rte",
            hub_text_columns=("sentence1", "sentence2"),
        ),
        TaskInfo(
            name="wnli",
            dir_name="WNLI",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            # GLUE's WNLI TSV writes 1 for entailment; HF glue names id 0 not_entailment.
            labels=("not_entailment", "entailment"),
            raw_labels=("0", "1"),
            metrics=("accuracy",),
            main_metric="accuracy",
            max_length=128,
            hub_config="wnli",
            hub_text_columns=("sentence1", "sentence2"),
        ),
    )
}

# Task aliases after normalisation (lower case, "-", "_" and spaces removed) -> (task, dev split).
# "mnli-mm" is the GLUE convention for the mismatched dev set: its plain "dev" means mismatched.
_ALIASES: dict[str, tuple[str, str | None]] = {
    **{name: (name, None) for name in TASKS},
    "mnlim": ("mnli", "dev_matched"),
    "mnlimatched": ("mnli", "dev_matched"),
    "mnlimm": ("mnli", "dev_mismatched"),
    "mnlimismatched": ("mnli", "dev_mismatched"),
}

# Split aliases after normalisation (lower case, "-" and spaces -> "_").
_SPLIT_ALIASES = {
    "train": "train",
    "dev": "dev",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "eval": "dev",
    "dev_matched": "dev_matched",
    "validation_matched": "dev_matched",
    "matched": "dev_matched",
    "dev_mismatched": "dev_mismatched",
    "validation_mismatched": "dev_mismatched",
    "mismatched": "dev_mismatched",
    "test": "test",
    "test_matched": "test_matched",
    "test_mismatched": "test_mismatched",
}

# Canonical split -> the split name of the hub dataset.
_HUB_SPLITS = {
    "train": "train",
    "dev": "validation",
    "dev_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
    "test": "test",
    "test_matched": "test_matched",
    "test_mismatched": "test_mismatched",
}


def _normalise_task(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "-_ ")


def _resolve_task(name: str) -> tuple[TaskInfo, str | None]:
    entry = _ALIASES.get(_normalise_task(name))
    if entry is None:
        raise BertnasError(f"unknown GLUE task {name!r}; choose one of {', '.join(TASKS)} (or mnli-mm)")
    task, dev_split = entry
    return TASKS[task], dev_split


def get_task(name: str) -> TaskInfo:
    """The :class:`TaskInfo` for a task name, case-insensitively, with aliases (``SST-2``, ``sts-b``, ``mnli-mm``)."""
    return _resolve_task(name)[0]


def resolve_split(task: str, split: str) -> tuple[TaskInfo, str]:
    """``(task info, canonical split)`` for user-given names.

    Canonical splits are the GLUE file stems: ``train``, ``dev``, ``test``; for MNLI
    ``dev_matched``/``dev_mismatched`` and ``test_matched``/``test_mismatched``. On MNLI
    a plain ``dev``/``test`` means matched, or mismatched when the task was named
    ``mnli-mm``. ``validation`` is accepted for ``dev`` (the hub's name).
    """
    info, default_dev = _resolve_task(task)
    canonical = _SPLIT_ALIASES.get(split.strip().lower().replace("-", "_").replace(" ", "_"))
    if canonical in ("dev", "test") and len(info.dev_splits) > 1:
        chosen = default_dev or info.dev_splits[0]
        canonical = chosen if canonical == "dev" else chosen.replace("dev", "test")
    if canonical not in info.splits:
        raise BertnasError(f"GLUE task {info.name} has no split {split!r}; choose one of {', '.join(info.splits)}")
    return info, canonical


class Example(NamedTuple):
    """One GLUE example: ``text_b`` is None for single-sentence tasks, ``label`` None on test splits."""

    text_a: str
    text_b: str | None
    label: int | float | None


@dataclass
class GlueSplit:
    """One loaded split of a GLUE task.

    ``source`` says where it came from (a file path or the hub dataset); ``fingerprint``
    identifies its content (the file's sha256, or the hub dataset's fingerprint) and is
    part of the tokenization cache key.
    """

    task: TaskInfo
    split: str
    examples: list[Example]
    source: str
    fingerprint: str

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def has_labels(self) -> bool:
        """False for test splits, whose labels GLUE withholds."""
        return bool(self.examples) and self.examples[0].label is not None

    @property
    def texts_a(self) -> list[str]:
        """First sentences."""
        return [example.text_a for example in self.examples]

    @property
    def texts_b(self) -> list[str | None] | None:
        """Second sentences, or None for single-sentence tasks."""
        return [example.text_b for example in self.examples] if self.task.is_pair else None

    @property
    def labels(self) -> list[int | float | None]:
        """Label ids (float scores for STS-B; None on test splits)."""
        return [example.label for example in self.examples]

    def label_counts(self) -> dict[str, int]:
        """Examples per class name (classification tasks with labels only)."""
        if self.task.is_regression:
            raise BertnasError(f"{self.task.name} is a regression task; it has no label counts")
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.task.labels)}


# --------------------------------------------------------------------------- loading


def load_task(task: str, split: str = "dev", glue_dir: str | os.PathLike[str] | None = None) -> GlueSplit:
    """Load one split of a GLUE task from ``glue_dir``, ``$GLUE_DIR`` or the hub (in that order).

    Raises :class:`BertnasError` naming every place it looked when no source has the
    split, and for malformed files (with ``file:line``).
    """
    info, canonical = resolve_split(task, split)
    tried: list[str] = []
    roots: list[tuple[str, Path]] = []
    if glue_dir is not None:
        root = Path(glue_dir).expanduser()
        if not root.is_dir():  # a typo must not fall back to GLUE_DIR or the hub unseen
            raise BertnasError(
                f"--glue-dir {glue_dir} is not a directory; give the GLUE data directory (original layout: "
                f"DIR/{info.dir_name}/{canonical}.tsv), or leave --glue-dir out to use GLUE_DIR or the hub"
            )
        roots.append(("--glue-dir", root))
    env_dir = os.environ.get("GLUE_DIR")
    if env_dir:
        roots.append(("GLUE_DIR", Path(env_dir).expanduser()))
    else:
        tried.append("GLUE_DIR (not set)")
    for origin, root in roots:
        path = root / info.dir_name / f"{canonical}.tsv"
        if path.is_file():
            return read_glue_tsv(path, info, canonical)
        tried.append(f"{path} (from {origin}: no such file)")

    loaded = _load_from_hub(info, canonical)
    if isinstance(loaded, GlueSplit):
        return loaded
    tried.append(f"hub {HUB_DATASET} {info.hub_config}/{_HUB_SPLITS[canonical]} ({loaded})")
    raise BertnasError(
        f"cannot find GLUE {info.name} split {canonical}; looked in: {'; '.join(tried)}. "
        f"Pass --glue-dir DIR or set GLUE_DIR=DIR, where DIR is in the original GLUE layout "
        f"(DIR/{info.dir_name}/{canonical}.tsv), or make the hub dataset reachable"
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def read_glue_tsv(path: str | os.PathLike[str], task: str | TaskInfo, split: str) -> GlueSplit:
    """Parse one GLUE TSV file of ``task`` (``split`` decides whether labels are expected).

    Blank lines are skipped; any other row whose field count differs from the header's,
    or whose label is not one of the task's, raises :class:`BertnasError` with ``file:line``.
    """
    info = task if isinstance(task, TaskInfo) else get_task(task)
    path = Path(path)
    is_test = split.startswith("test")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BertnasError(f"cannot read {path}: {error.strerror or error}") from None
    fingerprint = hashlib.sha256(data).hexdigest()
    try:
        # utf-8-sig drops MRPC's BOM, which would otherwise be glued to its first column name.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BertnasError(f"{path}: not UTF-8 text (byte {error.start}); expected a GLUE TSV file") from None

    # QUOTE_NONE: GLUE text contains unbalanced '"' (RTE, QNLI, MNLI); newline="" lets csv handle line ends.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    if info.header or is_test:
        header = next(reader, None)
        if header is None:
            raise BertnasError(f"{path}: empty file; expected a GLUE {info.dir_name} TSV with a header line")
        columns = tuple(name.strip() for name in header)
    else:
        columns = info.columns
    position = {name: i for i, name in enumerate(columns)}
    for name in info.text_columns:
        if name not in position:
            raise BertnasError(
                f"{path}:1: no column {name!r} in the header ({', '.join(columns)}); "
                f"expected the original GLUE {info.dir_name} format"
            )
    labelled = info.label_column in position
    if not labelled and not is_test:
        raise BertnasError(f"{path}:1: no label column {info.label_column!r} in the header ({', '.join(columns)})")

    text_positions = [position[name] for name in info.text_columns]
    label_position = position.get(info.label_column)
    label_ids = {raw: i for i, raw in enumerate(info.raw_labels)}
    examples: list[Example] = []
    for row in reader:
        if not row:
            continue  # a blank line carries no example (e.g. an extra newline at the end)
        where = f"{path}:{reader.line_num}"
        if len(row) != len(columns):
            raise BertnasError(
                f"{where}: expected {len(columns)} tab-separated fields, found {len(row)}; "
                f"the file is not in the original GLUE {info.dir_name} format"
            )
        label: int | float | None = None
        if label_position is not None:
            label = _parse_label(row[label_position], info, label_ids, where)
        text_b = row[text_positions[1]] if info.is_pair else None
        examples.append(Example(row[text_positions[0]], text_b, label))
    return GlueSplit(task=info, split=split, examples=examples, source=str(path), fingerprint=f"sha256:{fingerprint}")


def _parse_label(raw: str, info: TaskInfo, label_ids: dict[str, int], where: str) -> int | float:
    value = raw.strip()
    if info.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise BertnasError(f"{where}: {info.name} score {raw!r} is not a finite number")
        return score
    if value not in label_ids:
        raise BertnasError(f"{where}: unknown {info.name} label {raw!r}; expected one of {', '.join(info.raw_labels)}")
    return label_ids[value]


def _load_from_hub(info: TaskInfo, split: str) -> GlueSplit | str:
    """The split from the hub, or a one-line reason why it could not be loaded."""
    hub_split = _HUB_SPLITS[split]
    try:
        import datasets
    except ImportError:
        return "the datasets package is not installed"

    offline = ensure_reachable_or_offline()
    try:
        dataset = datasets.load_dataset(HUB_DATASET, info.hub_config, split=hub_split)
    except Exception as error:  # datasets raises many unrelated types; all mean "not available"
        return f"{_one_line(error)}; offline: {offline}" if offline else _one_line(error)
    try:
        texts = [list(dataset[column]) for column in info.hub_text_columns]
        raw_labels = list(dataset["label"])
    except (KeyError, ValueError) as error:
        return f"unexpected columns in the hub dataset ({_one_line(error)})"

    is_test = split.startswith("test")
    examples: list[Example] = []
    for i, raw in enumerate(raw_labels):
        label: int | float | None
        if is_test:
            label = None  # the hub stores -1 for the withheld test labels
        elif info.is_regression:
            label = float(raw)
        else:
            label = int(raw)
            if not 0 <= label < info.num_labels:
                return f"hub example {i} has label {raw!r}, outside 0..{info.num_labels - 1}"
        text_b = texts[1][i] if info.is_pair else None
        examples.append(Example(texts[0][i], text_b, label))
    fingerprint = getattr(dataset, "_fingerprint", None) or _content_hash(examples)
    return GlueSplit(
        task=info,
        split=split,
        examples=examples,
        source=f"hub {HUB_DATASET} {info.hub_config}/{hub_split}",
        fingerprint=f"hub:{fingerprint}",
    )


def _content_hash(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(list(example)).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- tokenization


class TokenizedSplit(torch.utils.data.Dataset):
    """A tokenized split: per-example ``input_ids``/``token_type_ids`` (unpadded) and labels.

    Items are dicts for :func:`bertnas.data.batching.collate`. ``labels`` is a long
    tensor of class ids (float for STS-B), or None for a test split.
    """

    def __init__(
        self,
        task: TaskInfo,
        split: str,
        input_ids: list[list[int]],
        token_type_ids: list[list[int]],
        labels: torch.Tensor | None,
        max_length: int,
        cache_path: Path | None = None,
        from_cache: bool = False,
    ) -> None:
        self.task = task
        self.split = split
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.labels = labels
        self.max_length = max_length
        self.cache_path = cache_path
        self.from_cache = from_cache

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.input_ids[index], "token_type_ids": self.token_type_ids[index]}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item

    @property
    def lengths(self) -> list[int]:
        """Token count of each example (with special tokens), for length bucketing."""
        return [len(ids) for ids in self.input_ids]


def default_cache_dir() -> Path:
    """``$BERTNAS_CACHE/data``, else ``~/.cache/bertnas/data``."""
    root = os.environ.get("BERTNAS_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "bertnas") / "data"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides how ``tokenizer`` maps text to ids.

    For fast tokenizers this is the serialized ``tokenizers`` pipeline (vocabulary,
    normaliser, pre-tokenizer, post-processor); its truncation/padding state is left out
    because each call rewrites it. Slow tokenizers fall back to vocabulary, special
    tokens and lower-casing. ``name_or_path`` is included too.
    """
    digest = hashlib.sha256()
    digest.update(str(getattr(tokenizer, "name_or_path", "")).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        digest.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
        digest.update(str(getattr(tokenizer, "do_lower_case", None)).encode())
    digest.update(str(getattr(tokenizer, "truncation_side", "right")).encode())
    return digest.hexdigest()


def cache_key(split: GlueSplit, tokenizer: Any, max_length: int) -> str:
    """sha256 over task, split, data fingerprint, tokenizer fingerprint, max length and format version."""
    payload = {
        "format": DATA_FORMAT_VERSION,
        "task": split.task.name,
        "split": split.split,
        "data": split.fingerprint,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def tokenize_split(
    split: GlueSplit,
    tokenizer: Any,
    max_length: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> TokenizedSplit:
    """Tokenize ``split`` (truncating to ``max_length``, default the task's), through an on-disk cache.

    Cache files are ``.npz`` written atomically and read with ``allow_pickle=False``; a
    file that cannot be read or does not match is rebuilt. An unwritable cache directory
    only warns: tokenization does not depend on it.
    """
    max_length = split.task.max_length if max_length is None else int(max_length)
    if max_length < 2:
        raise BertnasError(f"max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}")
    labels = _labels_tensor(split)
    path: Path | None = None
    key = ""
    if use_cache:
        key = cache_key(split, tokenizer, max_length)
        path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        path = path / f"{split.task.name}-{split.split}-{key[:32]}.npz"
        cached = _read_cache(path, key, len(split))
        if cached is not None:
            input_ids, token_type_ids = cached
            return TokenizedSplit(split.task, split.split, input_ids, token_type_ids, labels, max_length, path, True)

    input_ids = []
    token_type_ids = []
    texts_a, texts_b = split.texts_a, split.texts_b
    for start in range(0, len(split), _TOKENIZE_CHUNK):
        stop = start + _TOKENIZE_CHUNK
        encoded = tokenizer(
            texts_a[start:stop],
            texts_b[start:stop] if texts_b is not None else None,
            truncation=True,
            max_length=max_length,
            padding=False,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        input_ids.extend(list(ids) for ids in encoded["input_ids"])
        token_type_ids.extend(list(types) for types in encoded["token_type_ids"])
    if path is not None:
        _write_cache(path, key, input_ids, token_type_ids)
    return TokenizedSplit(split.task, split.split, input_ids, token_type_ids, labels, max_length, path, False)


def _labels_tensor(split: GlueSplit) -> torch.Tensor | None:
    if not split.has_labels:
        return None
    dtype = torch.float32 if split.task.is_regression else torch.long
    return torch.tensor(split.labels, dtype=dtype)


def _write_cache(path: Path, key: str, input_ids: list[list[int]], token_type_ids: list[list[int]]) -> None:
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    arrays = {
        "key": np.array(key),
        "format": np.array(DATA_FORMAT_VERSION, dtype=np.int64),
        "offsets": offsets,
        "input_ids": np.fromiter(chain.from_iterable(input_ids), dtype=np.int32, count=total),
        "token_type_ids": np.fromiter(chain.from_iterable(token_type_ids), dtype=np.int32, count=total),
    }
    temp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write next to the target, then rename: readers never see a half-written file.
        temp_name = str(temporary_file(path, ".npz"))
        with open(temp_name, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp_name, file_mode())  # a shared cache must stay readable
        os.replace(temp_name, path)
        temp_name = None
    except OSError as error:
        warnings.warn(f"cannot write the tokenization cache {path} ({error}); continuing without it", stacklevel=3)
    finally:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)


def _read_cache(path: Path, key: str, num_examples: int) -> tuple[list[list[int]], list[list[int]]] | None:
    """The cached ids, or None when the file is missing, unreadable or does not match."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["key"]) != key or int(archive["format"]) != DATA_FORMAT_VERSION:
                return None
            offsets = archive["offsets"]
            flat_ids = archive["input_ids"]
            flat_types = archive["token_type_ids"]
        if (
            offsets.ndim != 1
            or len(offsets) != num_examples + 1
            or offsets[0] != 0
            or np.any(np.diff(offsets) < 0)
            or offsets[-1] != len(flat_ids)
            or len(flat_types) != len(flat_ids)
        ):
            return None
    except Exception:  # a corrupt cache (bad zip, truncated array, ...) is rebuilt, never fatal
        return None
    bounds = offsets.tolist()
    ids, types = flat_ids.tolist(), flat_types.tolist()
    input_ids = [ids[bounds[i] : bounds[i + 1]] for i in range(num_examples)]
    token_type_ids = [types[bounds[i] : bounds[i + 1]] for i in range(num_examples)]
    return input_ids, token_type_ids
