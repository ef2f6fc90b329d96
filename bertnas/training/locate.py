"""Finding what earlier runs cached: the teacher a task uses and the supernet trained from it."""

from __future__ import annotations

from pathlib import Path

from bertnas.paths import supernet_dir, teacher_dir
from bertnas.training.supernet_train import is_trained_supernet


def search_teacher(teacher: str | None, backbone: str, task: str) -> str | None:
    """The teacher a search on task ``task`` uses: the user's (directory or hub id), else the cached
    ``bertnas finetune`` one for ``backbone`` when it exists, else None."""
    if teacher:
        return teacher
    cached = teacher_dir(backbone, task)
    return str(cached) if (cached / "metrics.json").is_file() else None


def find_supernet(teacher: str, task: str, space: str) -> Path | None:
    """The trained supernet of ``teacher`` on task ``task`` for ``space``, else the unified one
    (it contains every space), else None."""
    for name in dict.fromkeys((space, "unified")):
        candidate = supernet_dir(teacher, task, name)
        if is_trained_supernet(candidate):
            return candidate
    return None
