"""Where bertnas keeps what it builds: ``$BERTNAS_CACHE``, else ``~/.cache/bertnas``.

Teachers and supernets are cached by backbone, task (and space), so later commands
(``bertnas eval``, ``bertnas search``) find them without being told.
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
    return cache_root() / "teachers" / f"{_slug(backbone)}--{_slug(task)}"


def supernet_dir(backbone: str, task: str, space: str) -> Path:
    return cache_root() / "supernets" / f"{_slug(backbone)}--{_slug(task)}--{_slug(space)}"
