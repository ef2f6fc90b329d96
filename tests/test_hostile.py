"""Hostile input: every file a command reads, fed a table of bad cases.

Each case must end with exit code 2, one line on stderr, no traceback, within 5 seconds,
and nothing written. The cases: a YAML alias bomb, an oversized file, deep nesting,
binary garbage, the wrong type, NaN and infinities, negative sizes, unknown keys, a
symlink loop, and a pickle where safetensors weights belong.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import pytest

from bertnas.cli.main import main

REPO = Path(__file__).resolve().parents[1]
GOOD_ARCH = {
    "hidden_size": 384,
    "layers": [{"index": 0, "heads": 4, "qk_dim": 32, "v_dim": 32, "ffn_dim": 512}],
}

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)


class Pickled:
    """Unpickling this would run code: a pickle must never be loaded."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _yaml_cases() -> dict[str, bytes]:
    return {
        "alias bomb": ALIAS_BOMB.encode(),
        "oversized": b"name: x\n" + b"# padding padding padding padding\n" * 200_000,
        "deep nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
        "binary garbage": bytes(range(256)) * 40,
        "wrong type": b"- just\n- a list\n",
        "unknown keys": b"name: x\nlayer:\n  heads: [1.0]\nbogus_key: 1\n",
    }


def _json_cases() -> dict[str, bytes]:
    arch = dict(GOOD_ARCH)
    return {
        "oversized": json.dumps({**arch, "pad": "x" * 10_000_000}).encode(),
        "deep nesting": ("[" * 100_000 + "]" * 100_000).encode(),
        "binary garbage": bytes(range(256)) * 40,
        "wrong type": b"[1, 2, 3]",
        "nan": json.dumps({**arch, "hidden_size": float("nan")}).encode(),
        "infinity": json.dumps({**arch, "layers": [{**arch["layers"][0], "ffn_dim": float("inf")}]}).encode(),
        "negative size": json.dumps({**arch, "hidden_size": -384}).encode(),
        "unknown keys": json.dumps({**arch, "hiden_size": 384}).encode(),
        "ten thousand layers": json.dumps(
            {"hidden_size": 384, "layers": [{**arch["layers"][0], "index": i} for i in range(10_000)]}
        ).encode(),
    }


def _commands(tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    """command name -> (kind of file it reads, argv with FILE standing for the bad file)"""
    good_arch = tmp_path / "good.json"
    good_arch.write_text(json.dumps(GOOD_ARCH))
    return {
        "space show": ("yaml", ["space", "show", "FILE.yaml"]),
        "space sample": ("yaml", ["space", "sample", "FILE.yaml", "--n", "1"]),
        "study run": ("yaml", ["study", "run", "FILE.yaml"]),
        "profile predict (profile)": (
            "yaml",
            ["profile", "predict", "--device", "FILE.yaml", "--arch", str(good_arch)],
        ),
        "cost": ("json", ["cost", "--arch", "FILE.json"]),
        "profile predict (arch)": ("json", ["profile", "predict", "--device", "pixel4", "--arch", "FILE.json"]),
        "extract": ("json", ["extract", "--arch", "FILE.json", "--out", "OUT"]),
    }


def _cases(tmp_path: Path):
    yaml_cases, json_cases = _yaml_cases(), _json_cases()
    for name, (kind, argv) in _commands(tmp_path).items():
        for case, content in (yaml_cases if kind == "yaml" else json_cases).items():
            yield name, case, argv, kind, content
        yield name, "symlink loop", argv, kind, None


def _run_case(tmp_path: Path, argv: list[str], kind: str, content: bytes | None, capsys) -> tuple[int, str, float]:
    path = tmp_path / f"bad.{kind}"
    if path.is_symlink() or path.exists():
        path.unlink()
    if content is None:
        os.symlink(path, path)  # a symlink to itself
    else:
        path.write_bytes(content)
    args = [str(path) if a == f"FILE.{kind}" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    start = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - start
    return code, capsys.readouterr().err.strip(), seconds


def test_every_file_input_refuses_every_bad_case_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    failures = []
    for name, case, argv, kind, content in _cases(tmp_path):
        code, error, seconds = _run_case(tmp_path, argv, kind, content, capsys)
        ok = code == 2 and error.count("\n") == 0 and error.startswith("error: ") and seconds < 5
        written = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("good.json", "bad.json", "bad.yaml"))
        if not ok or written or (tmp_path / "PWNED").exists():
            failures.append(f"{name} / {case}: exit {code}, {seconds:.1f}s, wrote {written}: {error[:300]!r}")
    assert not failures, "\n".join(failures)


def test_a_pickle_where_safetensors_weights_belong_is_refused(tmp_path, capsys, minilm_hf):
    """A compact model directory whose weights file is a pickle, and a teacher whose only
    weights are a malicious pytorch_model.bin: one line each, and the pickle never runs."""
    from toys import tiny_bert

    from bertnas.model import CompactBert

    _, tokenizer = minilm_hf
    teacher = tmp_path / "teacher"
    tiny_bert(tokenizer.vocab_size).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    (teacher / "model.safetensors").unlink()
    (teacher / "pytorch_model.bin").write_bytes(pickle.dumps(Pickled()))
    os.chdir(tmp_path)
    capsys.readouterr()  # the fixture's own save_pretrained progress
    code = main(["supernet", "train", "--task", "sst2", "--teacher", str(teacher), "--out", str(tmp_path / "s")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0 and "Traceback" not in error, error[:500]
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "s").exists()

    model = tmp_path / "compact"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bertnas-compact", "arch": GOOD_ARCH}))
    (model / "model.safetensors").write_bytes(pickle.dumps(Pickled()))
    with pytest.raises(Exception) as caught:
        CompactBert.from_pretrained(model)
    assert type(caught.value).__name__ == "BertnasError" and "\n" not in str(caught.value)
    assert not (tmp_path / "PWNED").exists()


def test_a_closed_stdout_pipe_ends_quietly():
    import subprocess
    import sys

    bertnas = Path(sys.executable).parent / "bertnas"
    script = f"'{bertnas}' space sample unified --n 3000 --seed 0 | head -1 > /dev/null; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "141" and done.stderr == ""  # the shell's SIGPIPE status, no traceback


def test_every_command_a_message_names_exists():
    """Hints such as "run `bertnas supernet train --task T`" must name commands that parse."""
    import re

    import click
    import typer

    from bertnas.cli.main import _register_commands, app

    _register_commands()
    root = typer.main.get_command(app)
    named = set()
    for path in (REPO / "bertnas").rglob("*.py"):
        for match in re.finditer(r"`bertnas ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)*)", path.read_text()):
            named.add((path.name, match.group(1)))
    assert len(named) > 10
    missing = []
    for source, words in sorted(named):
        group: click.Command = root
        for word in words.split():
            if not isinstance(group, click.Group):
                break  # the rest are arguments (a task name, a directory)
            sub = group.get_command(click.Context(group), word)
            if sub is None:
                missing.append(f"{source}: `bertnas {words}`")
                break
            group = sub
    assert not missing, missing


def test_without_network_a_missing_task_fails_in_seconds(tmp_path):
    """No GLUE_DIR, no offline setting, a hub endpoint that refuses connections: the hub client's
    retries (about 25 s) are skipped and the usual error comes at once."""
    import subprocess
    import sys

    unset = ("GLUE_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")  # (tests before may set them)
    environment = {k: v for k, v in os.environ.items() if k not in unset and "PROXY" not in k.upper()}
    environment.update(HF_ENDPOINT="http://127.0.0.1:9", BERTNAS_CACHE=str(tmp_path / "cache"))
    code = "from bertnas.data.glue import load_task; load_task('rte', 'dev')"
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "cannot find GLUE rte split dev" in done.stderr
    assert "offline: 127.0.0.1:9 unreachable" in done.stderr
    assert "Retrying" not in done.stderr  # the hub client went straight to its offline answer
