"""Writing outputs so that a crash never leaves a half-written one that looks complete.

The one writer of the project: every file and directory bertnas writes goes through a
temporary sibling (same file system) and an atomic rename, so a reader, or a rerun after
``kill -9``, sees either the previous complete output or the new complete one. Outputs get
the usual modes under the user's umask (files ``0666 & ~umask``, directories ``0777 &
~umask``: 0644 / 0755 by default), not the private 0600 / 0700 of ``mkstemp``/``mkdtemp``,
so a shared model store or a container running as another user can read them.

Temporaries are named ``.NAME.bertnas-tmp-XXXXXXXX`` (files) and
``.NAME.bertnas-partial-XXXXXXXX`` (directories): :func:`is_temporary` recognizes exactly
those, so cleaning up after a crash never touches a user's own hidden files. Replacing a
directory moves the old one aside into ``.NAME.bertnas-partial-old-XXXXXXXX/NAME`` first; a
kill between the two renames leaves it there, and :func:`settle` (which every command that
owns an output calls once it holds the output's lock) puts it back and removes the rest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bertnas import killpoints
from bertnas.errors import BertnasError

TEMP_MARK = ".bertnas-tmp-"
PARTIAL_MARK = ".bertnas-partial-"
_OLD_MARK = f"{PARTIAL_MARK}old-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the current umask (0644 by default)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode a new directory gets under the current umask (0755 by default)."""
    return 0o777 & ~_umask()


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary a bertnas write left behind (and nothing else)."""
    return path.name.startswith(".") and (TEMP_MARK in path.name or PARTIAL_MARK in path.name)


def temporary_file(path: Path, suffix: str = "") -> Path:
    """A new empty temporary sibling of ``path`` (closed), for writers that need a file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=suffix, dir=path.parent)
    os.close(handle)
    return Path(temporary)


def atomic_write(path: str | Path, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(temporary_path)``, then move the result onto ``path`` atomically.

    ``suffix`` ends the temporary's name (for writers that choose a format by extension).
    """
    path = Path(path)
    temporary = temporary_file(path, suffix)
    try:
        write(str(temporary))
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda target: Path(target).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda target: Path(target).write_text(text))


@contextmanager
def atomic_directory(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``target`` only if the block succeeds.

    The scratch directory sits next to ``target`` (same file system, so the final
    ``rename`` is atomic) under a hidden name. An existing ``target`` is refused unless
    ``force``; with ``force`` it is replaced only after the new one is complete. The
    directory and everything in it get the umask's modes.
    """
    target = Path(target)
    if target.exists() and not force:
        raise BertnasError(f"{target} already exists; choose another --out or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL_MARK}", dir=target.parent))
    try:
        yield scratch
        _open_modes(scratch)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL_MARK}old-", dir=target.parent))
            os.replace(target, old / target.name)
            killpoints.reached("directory-swap")
            os.replace(scratch, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(scratch, target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def settle(target: str | Path) -> None:
    """Undo what a killed writer of ``target`` left: put back a directory it had moved aside
    and not yet replaced, then delete its temporaries (beside ``target`` and, for a
    directory, directly inside it). Call it only while holding ``target``'s lock."""
    target = Path(target)
    if target.parent.is_dir():
        _settle_in(target.parent, target.name)
    if target.is_dir():
        _settle_in(target, None)


def remove_temporaries(directory: Path) -> None:
    """Delete the temporaries that interrupted writes left directly in ``directory`` (and put
    back any directory moved aside by an interrupted replace); nothing else, whatever its name."""
    _settle_in(Path(directory), None)


def _settle_in(directory: Path, name: str | None) -> None:
    """Settle the temporaries in ``directory`` (of the output ``name`` only, when given)."""
    for path in directory.glob(".*"):
        if not is_temporary(path) or (name is not None and not path.name.startswith(f".{name}.bertnas-")):
            continue
        if path.is_dir() and not path.is_symlink():
            if _OLD_MARK in path.name:  # .NAME.bertnas-partial-old-XXXX/NAME: the previous complete NAME
                original = path.name[1 : path.name.index(_OLD_MARK)]
                kept = path / original
                if kept.exists() and not (directory / original).exists():
                    os.replace(kept, directory / original)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _open_modes(root: Path) -> None:
    """Give ``root`` and everything under it the umask's modes (mkdtemp/mkstemp make them private)."""
    files, dirs = file_mode(), dir_mode()
    os.chmod(root, dirs)
    for directory, subdirs, names in os.walk(root):
        for name in subdirs:
            os.chmod(os.path.join(directory, name), dirs)
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, files)
