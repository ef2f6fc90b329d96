"""Every task bertnas works on: a GLUE task by name, or the user's own data by task spec.

:func:`get_task`, :func:`resolve_split` and :func:`load_task` take either; everything above
this module (training, search, export) passes task strings through them and never needs to
know which kind it has. GLUE names win over paths: write ``./sst2`` for a directory of that
name.
"""

from __future__ import annotations

import os

from bertnas.data import glue
from bertnas.data.custom import HUB_PREFIX, TaskSpec, compose_task, loaded_task, open_custom_task
from bertnas.data.glue import GlueSplit, TaskInfo
from bertnas.errors import BertnasError


def is_glue(task: str) -> bool:
    """True when ``task`` names a GLUE task (with aliases such as ``SST-2`` or ``mnli-mm``)."""
    return glue._normalise_task(task) in glue._ALIASES


def _custom(task: str):
    known = loaded_task(task)
    if known is not None:
        return known
    source = TaskSpec.parse(task).source
    if not source.startswith(HUB_PREFIX) and not os.path.exists(os.path.expanduser(source)):
        raise BertnasError(
            f"unknown task {task!r}: not a GLUE task ({', '.join(glue.TASKS)}, mnli-mm) and no such directory; "
            "give a GLUE name, a directory holding train and dev files (CSV, TSV, JSONL or Parquet), "
            "a save_to_disk directory or hf:NAME[:CONFIG]"
        )
    return open_custom_task(task)


def get_task(task: str | TaskInfo) -> TaskInfo:
    """The :class:`TaskInfo` of a GLUE name or a task spec (a custom task is read and checked once)."""
    if isinstance(task, TaskInfo):
        return task
    if is_glue(task):
        return glue.get_task(task)
    return _custom(task).info


def resolve_split(task: str | TaskInfo, split: str) -> tuple[TaskInfo, str]:
    """``(task info, canonical split)``; custom tasks have ``train`` and ``dev`` (alias ``validation``)."""
    info = get_task(task)
    if not info.is_custom:
        return glue.resolve_split(info.name if isinstance(task, TaskInfo) else task, split)
    canonical = glue._SPLIT_ALIASES.get(split.strip().lower().replace("-", "_").replace(" ", "_"))
    if canonical not in ("train", "dev"):
        raise BertnasError(f"task {info.name} has no split {split!r}; choose train or dev")
    return info, canonical


def load_task(task: str | TaskInfo, split: str = "dev", glue_dir: str | os.PathLike[str] | None = None) -> GlueSplit:
    """One split of a task: GLUE from ``glue_dir``/``$GLUE_DIR``/the hub, a custom task from its source."""
    info, canonical = resolve_split(task, split)
    if not info.is_custom:
        return glue.load_task(info.name if isinstance(task, TaskInfo) else task, canonical, glue_dir)
    return _custom(info.ref).splits[canonical]


def task_spec(
    task: str,
    text_columns: str | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    max_length: int | None = None,
) -> str:
    """The task string commands pass on: a GLUE name as given, or the user's data with its settings."""
    if is_glue(task):
        flags = (
            ("--text-columns", text_columns),
            ("--label-column", label_column),
            ("--metric", metric),
            ("--max-length", max_length),
        )
        given = [flag for flag, value in flags if value is not None]
        if given:
            raise BertnasError(
                f"{given[0]} describes your own data; GLUE task {task} has fixed columns, metric and length "
                "(drop the flag, or pass a data directory as --task)"
            )
        return task
    return compose_task(task, text_columns, label_column, metric, max_length)


def data_identity(info: TaskInfo, splits: dict[str, GlueSplit]) -> dict[str, str]:
    """What a run record notes about its data: the task, where each loaded split came from and its content hash.

    A split read from a file is named by its data directory and file (``SST-2/train.tsv``), not by
    its absolute path, so the record says nothing about the machine that wrote it; the content hash
    is what identifies the data."""
    record = {"task": info.name, "spec": info.ref}
    if info.identity:
        record["identity"] = info.identity
    for name, loaded in splits.items():
        record[f"{name}_source"] = _source_name(loaded.source)
        record[f"{name}_fingerprint"] = loaded.fingerprint
    return record


def _source_name(source: str) -> str:
    """A file path as its last two parts; a hub source (``hub NAME ...``) as it is."""
    if source.startswith("hub ") or not os.path.isabs(source):
        return source
    parts = source.replace(os.sep, "/").rstrip("/").split("/")
    return "/".join(parts[-2:])
