"""The one atomic writer: outputs appear whole or not at all, with the umask's modes, and the
crash cleanup removes its own temporaries and nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bertnas.atomic import (
    atomic_directory,
    atomic_write_text,
    is_temporary,
    remove_temporaries,
    settle,
    temporary_file,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_directories_get_the_umasks_modes(tmp_path, umask_022):
    atomic_write_text(tmp_path / "run.json", "{}\n")
    assert _mode(tmp_path / "run.json") == 0o644
    with atomic_directory(tmp_path / "model") as scratch:
        (scratch / "sub").mkdir(mode=0o700)
        private = temporary_file(scratch / "sub" / "weights")  # mkstemp: 0600
        private.rename(scratch / "sub" / "weights.bin")
    assert _mode(tmp_path / "model") == 0o755 and _mode(tmp_path / "model" / "sub") == 0o755
    assert _mode(tmp_path / "model" / "sub" / "weights.bin") == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "front.csv", "old\n")

    def failing(target: str) -> None:
        Path(target).write_text("half")
        raise RuntimeError("killed")

    from bertnas.atomic import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "front.csv", failing)
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "export"):
        raise RuntimeError("killed")
    assert (tmp_path / "front.csv").read_text() == "old\n" and not (tmp_path / "export").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.csv"]


def test_crash_cleanup_removes_only_bertnas_temporaries(tmp_path):
    mine = [tmp_path / ".trials.csv.bertnas-tmp-k2j3h4", tmp_path / ".run.json.bertnas-tmp-x"]
    users = [tmp_path / name for name in (".env.local", ".bashrc.bak", ".study.db.journal", ".a.b.c", "notes.txt")]
    for path in mine + users:
        path.write_text("x")
    assert all(is_temporary(path) for path in mine) and not any(is_temporary(path) for path in users)
    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in users)


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_one_releases(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from bertnas.errors import BertnasError
    from bertnas.locks import exclusive

    target = tmp_path / "run"
    code = (
        f"from bertnas.locks import exclusive\nimport time\nwith exclusive({str(target)!r}, 'x'):\n"
        "    print('held', flush=True)\n    time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = pytest.raises(BertnasError, match=rf"run directory .*run is in use by pid {holder.pid} ")
        with refused, exclusive(target, "run directory"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    start = time.perf_counter()
    with exclusive(target, "run directory"):  # the kernel released the killed holder's lock
        pass
    assert time.perf_counter() - start < 1


def test_settle_puts_back_a_directory_moved_aside_and_removes_the_scratch(tmp_path):
    """A kill between the two renames of a directory replace leaves the old directory aside and
    the new one in scratch: settling restores the old (complete) one and deletes the rest."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    aside = tmp_path / ".model.bertnas-partial-old-abc123"
    aside.mkdir()
    os.replace(target, aside / "model")
    scratch = tmp_path / ".model.bertnas-partial-xyz"
    scratch.mkdir()
    (scratch / "weights").write_text("new, unfinished")
    (tmp_path / ".other.bertnas-tmp-1").write_text("another output's temporary")
    (tmp_path / ".modelx").write_text("a user's file")
    settle(target)
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".modelx", ".other.bertnas-tmp-1", "model"]
