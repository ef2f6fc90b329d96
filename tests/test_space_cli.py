"""``bertnas space show|sample|list``: output, reproducibility, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertnas.arch import ArchConfig
from bertnas.backbones import backbone_limits
from bertnas.cli.main import main
from bertnas.space import load_space


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_dynabert(capsys):
    code, out, err = run(capsys, "space", "show", "dynabert")
    assert code == 0, err
    assert out.startswith("dynabert: DynaBERT")
    assert "backbone: all-MiniLM-L6-v2 (hidden 384, 6 layers, 12 heads of 32, FFN 1536)" in out
    assert "0.75  layers 0-2,4" in out and "0.5  6 heads, FFN 768" in out
    assert "size: 12 configs" in out


def test_show_unified_groups_per_layer_dimensions(capsys):
    code, out, _ = run(capsys, "space", "show", "unified", "--backbone", "bert-base-uncased")
    assert code == 0
    assert "heads.{0-11}" in out and "keep.{1-11}" in out and "bottleneck.{0-11}  192, 384, null" in out
    assert "supernet needs: max_ffn_stack 4, max_bottleneck 384" in out


def test_show_json(capsys):
    code, out, _ = run(capsys, "space", "show", "powerbert", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["size"] == 6**6
    assert [dim["name"] for dim in info["dimensions"]] == [f"retention.{i}" for i in range(6)]
    assert info["fixed"]["heads"] == 12 and info["fixed"]["bottleneck"] is None


def test_sample_prints_reproducible_configs_of_the_space(capsys):
    code, out, _ = run(capsys, "space", "sample", "unified", "--n", "5", "--seed", "3")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 5
    space = load_space("unified").bind(backbone_limits("all-MiniLM-L6-v2"))
    for line in lines:
        arch = ArchConfig.from_json(line)
        assert space.contains(arch) and arch.backbone == "all-MiniLM-L6-v2"
    assert run(capsys, "space", "sample", "unified", "--n", "5", "--seed", "3")[1] == out
    assert run(capsys, "space", "sample", "unified", "--n", "5", "--seed", "4")[1] != out


def test_sample_from_a_file_for_a_local_backbone(capsys, tmp_path):
    space_file = tmp_path / "small.yaml"
    space_file.write_text("layer:\n  heads: [1.0, 0.5]\n")
    config = {
        "model_type": "bert",
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 512,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out, err = run(capsys, "space", "sample", str(space_file), "--n", "2", "--backbone", str(tmp_path))
    assert code == 0, err
    archs = [ArchConfig.from_json(line) for line in out.splitlines()]
    assert {arch.hidden_size for arch in archs} == {128}
    assert all(layer.heads in (1, 2) for arch in archs for layer in arch.layers)


def test_list(capsys):
    code, out, _ = run(capsys, "space", "list")
    assert code == 0
    assert {"unified", "dynabert", "powerbert", "schubert", "mobilebert"} <= set(out.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["space", "show", "nope"], "error: unknown search space 'nope'; available: dynabert"),
        (["space", "sample", "unified", "--n", "0"], "error: --n 0 must be at least 1"),
        (["space", "show", "unified", "--backbone", "gpt9"], "error: unknown backbone 'gpt9'"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1 and out == ""


def test_malformed_file_reports_file_and_line(capsys, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\nlayer:\n  heads: [1.0, 0.5]\n  qk_dims: [0.5]\n")
    code, _, err = run(capsys, "space", "show", str(path))
    assert code == 2
    assert err.startswith(f"error: {path}:4: layer.qk_dims: unknown key 'qk_dims'")


@pytest.mark.parametrize("argv", [["space", "--help"], ["space", "show", "--help"], ["space", "sample", "--help"]])
def test_help(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "Usage" in out


def test_console_script():
    script = Path(sys.executable).parent / "bertnas"
    if not script.exists():
        pytest.skip("the bertnas console script is not installed next to this Python")
    result = subprocess.run([str(script), "space", "show", "dynabert"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "size: 12 configs" in result.stdout
