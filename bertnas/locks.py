"""One process at a time per output: an advisory lock next to what a command writes.

Two ``bertnas search`` runs into one ``--out``, two trainings into one directory or two
exports into one target would overwrite each other's files. Each such command holds
:func:`exclusive` on its output for as long as it runs; a second one is refused at once
with a one-line error naming the holder (its pid, command and start time). The lock is an
``flock`` on a small file, so the kernel releases it when the holder exits, however it
exits (``kill -9`` included): a stale lock never blocks a rerun. A holder that ends normally
removes the file. Whoever takes the lock first settles what a killed holder left
(:func:`bertnas.atomic.settle`): a directory moved aside is put back, temporaries go.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bertnas.atomic import settle
from bertnas.errors import BertnasError

LOCK_SUFFIX = ".bertnas-lock"


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target`` (a sibling, so a target that does not exist yet can be locked)."""
    target = Path(target)
    return target.with_name(f".{target.name}{LOCK_SUFFIX}")


@contextmanager
def exclusive(target: str | Path, what: str) -> Iterator[None]:
    """Hold the lock of ``target`` (a ``what``, for the message) or refuse in one line."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise BertnasError(
                f"{what} {target} is in use by {_holder(path)}; wait for it to finish or write elsewhere"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(handle)  # the previous holder removed the file between our open and our lock: again
    try:
        os.ftruncate(handle, 0)
        record = {"pid": os.getpid(), "command": " ".join(sys.argv[:4]), "since": time.strftime("%H:%M:%S")}
        os.write(handle, json.dumps(record).encode())
        settle(target)
        yield
    finally:
        # Remove the file while still holding the lock, then release: a process that opened the old
        # file in between sees, once it has the lock, that the path no longer names it, and retries.
        # A holder killed here leaves the file, which the next one simply reuses.
        path.unlink(missing_ok=True)
        os.close(handle)


def _holder(path: Path) -> str:
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record:
        return "another bertnas process"
    return f"pid {record.get('pid')} ({record.get('command', 'bertnas')}, since {record.get('since', '?')})"
