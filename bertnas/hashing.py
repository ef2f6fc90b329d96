"""Hashing files in blocks (weights, data files): one helper for every content fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

BLOCK = 1 << 22


def update_with_file(digest: Any, path: str | Path) -> Any:
    """Feed the bytes of ``path`` to ``digest`` (a ``hashlib`` object) block by block; return it."""
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(BLOCK), b""):
            digest.update(block)
    return digest


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    return update_with_file(hashlib.sha256(), path).hexdigest()
