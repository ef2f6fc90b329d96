"""``bertnas cost``: table and JSON output, one-line errors with exit code 2."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import types

import pytest

from bertnas.arch import ArchLimits, full_arch
from bertnas.cost import count_macs, count_params

MINILM = ArchLimits(
    hidden_size=384, num_layers=6, num_heads=12, head_dim=32, ffn_dim=1536, max_ffn_stack=4, max_bottleneck=384
)


@pytest.fixture
def cli(monkeypatch):
    """``bertnas.cli.main.main`` with the cost command registered.

    main() imports every command module; while a sibling module is still being written
    a stand-in keeps this test about `cost` alone (the real module wins once it exists).
    """
    try:
        importlib.import_module("bertnas.cli.space_commands")
    except ModuleNotFoundError:
        monkeypatch.setitem(sys.modules, "bertnas.cli.space_commands", types.ModuleType("space_commands"))
    importlib.import_module("bertnas.cli.cost_command")
    from bertnas.cli.main import main

    return main


@pytest.fixture
def arch_file(tmp_path):
    arch = full_arch(MINILM)
    layers = tuple(
        dataclasses.replace(layer, retention=r, bottleneck=128 if layer.index == 5 else None, ffn_stack=2)
        for layer, r in zip(arch.layers, [1.0, 1.0, 0.5, 0.5, 0.3, 0.3], strict=True)
    )
    arch = arch.replace(layers=layers, num_labels=2)
    path = tmp_path / "arch.json"
    arch.save(path)
    return path, arch


def test_table(cli, arch_file, capsys):
    path, arch = arch_file
    assert cli(["cost", "--arch", str(path), "--seq-len", "128"]) == 0
    out = capsys.readouterr().out
    assert arch.hash() in out
    for index in range(6):
        assert f"layer {index}" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("layer ")}
    # Tokens in / out per layer: retention 0.5 then 0.3 of 128 tokens.
    assert [rows[str(i)][2:4] for i in range(6)] == [[str(a), str(b)] for a, b in arch.token_counts(128)]
    assert rows["4"][2:4] == ["64", "39"]
    assert f"{count_params(arch) / 1e6:.2f}M parameters" in out
    assert f"{count_macs(arch, 128) / 1e9:.3f} GMACs" in out


def test_json(cli, arch_file, capsys):
    path, arch = arch_file
    assert cli(["cost", "--arch", str(path), "--seq-len", "64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == count_params(arch)
    assert data["macs"] == count_macs(arch, 64)
    assert data["seq_len"] == 64
    assert data["arch_hash"] == arch.hash()
    assert [(layer["n_in"], layer["n_out"]) for layer in data["layers"]] == arch.token_counts(64)
    assert sum(layer["macs"] for layer in data["layers"]) + data["head_macs"] == data["macs"]


def test_default_seq_len_is_128(cli, arch_file, capsys):
    path, arch = arch_file
    assert cli(["cost", "--arch", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == count_macs(arch, 128)


@pytest.mark.parametrize("seq_len", ["0", "-1", "513"])
def test_bad_seq_len(cli, arch_file, capsys, seq_len):
    path, _ = arch_file
    assert cli(["cost", "--arch", str(path), "--seq-len", seq_len]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"error: --seq-len {seq_len} must be between 1 and the arch's max_position_embeddings 512"
    ]


def test_missing_arch_file(cli, tmp_path, capsys):
    assert cli(["cost", "--arch", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read arch file" in err[0] and "nope.json" in err[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"hidden_size": 3', "not valid JSON"),
        ('{"hidden_size": 64, "layers": []}', "layers is empty"),
        ('{"hidden_size": 64, "layers": [{"index": 0, "heads": 2, "qk_dim": 8, "v_dim": 8}]}', "ffn_dim"),
    ],
)
def test_invalid_arch_file(cli, tmp_path, capsys, text, expected):
    path = tmp_path / "arch.json"
    path.write_text(text)
    assert cli(["cost", "--arch", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
