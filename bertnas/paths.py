"""Where bertnas keeps what it builds: ``$BERTNAS_CACHE``, else ``~/.cache/bertnas``.

Teachers are cached by backbone and task name, supernets by teacher (its name and a hash
of its weights), task name and space, so later commands (``bertnas eval``, ``bertnas
search``) find them without being told and a supernet trained from one teacher is never
picked up for another. Custom task names end with a hash of their data
(:mod:`bertnas.data.custom`), so two datasets never share a cache entry.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("BERTNAS_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "bertnas"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "default"


def teacher_dir(backbone: str, task: str) -> Path:
    """The cached teacher ``bertnas finetune`` writes for ``backbone`` on the task named ``task``."""
    return cache_root() / "teachers" / f"{_slug(backbone)}--{_slug(task)}"


def teacher_key(teacher: str) -> str:
    """``NAME-HASH`` for a teacher directory or hub id: its last path part and weights hash."""
    from bertnas.supernet.backbone import teacher_fingerprint

    name = Path(teacher.rstrip("/")).name if Path(teacher).expanduser().exists() else teacher
    return f"{_slug(name)[:48]}-{teacher_fingerprint(teacher)}"


def supernet_dir(teacher: str, task: str, space: str) -> Path:
    """The cached supernet trained from ``teacher`` (a directory or hub id) on task ``task`` for ``space``."""
    return cache_root() / "supernets" / f"{teacher_key(teacher)}--{_slug(task)}--{_slug(space)}"


CACHE_PREFIX = "cache:"


def portable(path: str | Path, base: str | Path) -> str:
    """``path`` as a run record keeps it, so the record's directory can move: ``cache:REL`` when
    it lies in the bertnas cache (reopened under the reading machine's cache), else relative to
    ``base``, the directory holding the record."""
    path, base = Path(path).expanduser().resolve(), Path(base).expanduser().resolve()
    try:
        return CACHE_PREFIX + path.relative_to(cache_root().expanduser().resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, base)).as_posix()


def from_portable(recorded: str, base: str | Path) -> Path:
    """The path :func:`portable` recorded, for a record in ``base`` (an absolute path from an older
    record stays as it is)."""
    if recorded.startswith(CACHE_PREFIX):
        return cache_root() / recorded[len(CACHE_PREFIX) :]
    return Path(base) / recorded
