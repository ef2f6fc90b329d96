"""Search spaces: YAML specs, DynaBERT rules, sampling, decoding, Optuna, encoding, errors."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import optuna
import pytest

from bertnas.arch import ArchConfig, ArchLimits, full_arch
from bertnas.backbones import backbone_limits
from bertnas.errors import BertnasError
from bertnas.space import SearchSpace, dynabert_kept_layers, dynabert_width, list_spaces, load_space
from bertnas.space.spec import parse_space

MINILM = ArchLimits(hidden_size=384, num_layers=6, num_heads=12, head_dim=32, ffn_dim=1536)
BERT_BASE = ArchLimits(hidden_size=768, num_layers=12, num_heads=12, head_dim=64, ffn_dim=3072)
SPACES = ("unified", "dynabert", "powerbert", "schubert", "mobilebert")
BACKBONES = {"minilm": MINILM, "bert-base": BERT_BASE}


def bound(name: str, limits: ArchLimits = MINILM) -> SearchSpace:
    return load_space(name).bind(limits, backbone="test-backbone")


def space_from(text: str, limits: ArchLimits = MINILM, source: str = "test.yaml") -> SearchSpace:
    return parse_space(textwrap.dedent(text), source).bind(limits)


# ---------------------------------------------------------------------- DynaBERT rules
def test_dynabert_kept_layers_match_the_paper_for_12_layers():
    assert dynabert_kept_layers(12, 1.0) == tuple(range(12))
    assert dynabert_kept_layers(12, 0.75) == (0, 1, 2, 4, 5, 6, 8, 9, 10)
    assert dynabert_kept_layers(12, 0.5) == (0, 2, 4, 6, 8, 10)


def test_dynabert_depth_rounds_halves_to_even_like_the_official_code():
    # round(0.75 * 6) = round(4.5) = 4 in the official code (Python's round).
    assert dynabert_kept_layers(6, 0.75) == (0, 1, 2, 4)
    assert dynabert_kept_layers(6, 0.5) == (0, 2, 4)
    # Exact decimals: floor(i / 0.6) must not fall just below an integer (3 / 0.6 = 5).
    assert dynabert_kept_layers(10, 0.6) == (0, 1, 3, 5, 6, 8)
    assert dynabert_kept_layers(3, 0.1) == (0,)  # at least one layer


def test_dynabert_width():
    assert dynabert_width(12, 1536, 0.5) == (6, 768)
    assert dynabert_width(12, 3072, 0.25) == (3, 768)
    assert dynabert_width(12, 3072, 0.75) == (9, 2304)
    assert dynabert_width(2, 100, 0.25) == (1, 50)  # 0.5 heads rounds up, never to 0
    with pytest.raises(BertnasError, match="multiplier"):
        dynabert_width(12, 3072, 1.5)


@pytest.mark.parametrize("limits", [MINILM, BERT_BASE], ids=["minilm", "bert-base"])
def test_dynabert_space_has_exactly_12_configs(limits):
    space = bound("dynabert", limits)
    archs = list(space.enumerate())
    assert space.size() == 12
    assert len(archs) == 12 and len({arch.hash() for arch in archs}) == 12
    depths = {arch.num_layers for arch in archs}
    assert depths == {limits.num_layers, len(dynabert_kept_layers(limits.num_layers, 0.75)), limits.num_layers // 2}


def test_dynabert_half_width_full_depth_on_minilm():
    space = bound("dynabert")
    arch = space.from_values({"width": 0.5, "depth": 1.0})
    assert arch.num_layers == 6
    assert {(layer.heads, layer.ffn_dim, layer.qk_dim, layer.v_dim) for layer in arch.layers} == {(6, 768, 32, 32)}
    assert arch.hidden_size == 384
    assert space.to_values(arch) == {"depth": 1.0, "width": 0.5}


# ---------------------------------------------------------------------- the five spaces
def test_list_spaces_has_the_five():
    assert set(SPACES) <= set(list_spaces())


@pytest.mark.parametrize("name", SPACES)
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_random_samples_are_valid_members_and_round_trip(name, backbone):
    limits = BACKBONES[backbone]
    space = bound(name, limits)
    supernet = dataclasses.replace(limits, max_ffn_stack=space.max_ffn_stack, max_bottleneck=space.max_bottleneck)
    assert space.supernet_limits() == supernet
    for arch in space.sample_many(200, seed=11):
        arch.validate()
        arch.check_fits(supernet)
        values = space.to_values(arch)
        assert list(values) == [dim.name for dim in space.dimensions]  # full genotype, fixed order
        assert space.from_values(values).hash() == arch.hash()
        again = ArchConfig.from_json(arch.to_json())
        assert again.hash() == arch.hash() and space.contains(again)
        vector = space.encode(arch)
        assert vector.shape == (len(space.dimensions),)
        assert np.all((vector == -1.0) | ((vector >= 0.0) & (vector <= 1.0)))
        retentions = [layer.retention for layer in arch.layers]
        assert retentions == sorted(retentions, reverse=True)


def test_seeded_sampling_is_reproducible():
    space = bound("unified")
    first = [arch.hash() for arch in space.sample_many(20, seed=5)]
    assert first == [arch.hash() for arch in space.sample_many(20, seed=5)]
    assert first != [arch.hash() for arch in space.sample_many(20, seed=6)]
    assert space.sample(3) == space.sample(np.random.default_rng(3))
    assert len(set(first)) == 20


def test_per_layer_depth_never_drops_always_kept_layers_and_asks_only_active_dims():
    space = bound("unified")
    asked_by_arch = []
    for arch in space.sample_many(50, seed=0):
        assert arch.layers[0].index == 0
        values = space.to_values(arch)
        asked = []
        space.decode(lambda name, choices, values=values, asked=asked: asked.append(name) or values[name])
        kept = {layer.index for layer in arch.layers}
        for name in asked:
            base, _, index = name.partition(".")
            if index and base != "keep":
                assert int(index) in kept  # a dropped layer's dims are never asked
        asked_by_arch.append(len(asked))
    assert len(set(asked_by_arch)) > 1


def test_retention_is_the_running_product_of_steps():
    space = bound("powerbert")
    arch = space.from_values({f"retention.{i}": step for i, step in enumerate([0.9, 1.0, 0.8, 0.7, 0.5, 0.6])})
    assert [layer.retention for layer in arch.layers] == [0.9, 0.9, 0.72, 0.504, 0.252, 0.1512]
    assert space.to_values(arch)["retention.2"] == 0.8


def test_dimension_names_order_and_choices():
    space = bound("unified")
    names = [dim.name for dim in space.dimensions]
    assert names[:7] == ["hidden_size", "heads.0", "qk_dim.0", "v_dim.0", "ffn_dim.0", "ffn_stack.0", "bottleneck.0"]
    assert names[7:10] == ["retention.0", "keep.1", "heads.1"]
    assert "keep.0" not in names and len(names) == 1 + 5 + 6 * 7
    assert space.choices("hidden_size") == (154, 192, 240, 288, 336, 384)
    assert space.choices("heads.3") == (3, 6, 9, 12)
    assert space.choices("bottleneck.5") == (96, 192, None)
    assert space.choices("keep.2") == (False, True)
    assert (space.max_ffn_stack, space.max_bottleneck) == (4, 192)
    assert [dim.name for dim in bound("powerbert").dimensions] == [f"retention.{i}" for i in range(6)]
    with pytest.raises(BertnasError, match="no dimension 'heads.9'"):
        space.choices("heads.9")


def test_largest_smallest_full():
    space = bound("unified")
    largest, smallest, full = space.largest(), space.smallest(), space.full()
    assert largest.num_layers == 6 and smallest.num_layers == 1
    assert {(la.heads, la.ffn_dim, la.ffn_stack, la.bottleneck, la.retention) for la in largest.layers} == {
        (12, 1536, 4, None, 1.0)
    }
    (layer,) = smallest.layers
    assert (smallest.hidden_size, layer.heads, layer.qk_dim, layer.ffn_dim, layer.ffn_stack) == (154, 3, 16, 384, 1)
    assert (layer.bottleneck, layer.retention) == (96, 0.5)
    assert np.all(space.encode(largest) == 1.0)
    assert set(space.encode(smallest).tolist()) == {0.0, -1.0}
    assert full.hash() == full_arch(MINILM).hash() and space.contains(full)
    # A space that always uses a bottleneck does not contain the backbone itself.
    always = space_from("layer:\n  bottleneck: [0.5, 0.25]\n")
    assert not always.contains(always.full())
    assert always.smallest().layers[0].bottleneck == 96 and always.largest().layers[0].bottleneck == 192


def test_encode_marks_inactive_dimensions():
    space = bound("unified")
    values = space.to_values(space.largest())
    values["keep.3"] = False
    arch = space.from_values(values)
    vector = space.encode(arch)
    names = [dim.name for dim in space.dimensions]
    for k, name in enumerate(names):
        if name.endswith(".3") and not name.startswith("keep"):
            assert vector[k] == -1.0
    assert vector[names.index("keep.3")] == 0.0 and vector[names.index("heads.4")] == 1.0


def test_mutation_and_crossover_give_members():
    for name in SPACES:
        space = bound(name)
        rng = np.random.default_rng(0)
        parents = space.sample_many(30, seed=1)
        changed = 0
        for a, b in zip(parents, parents[1:], strict=False):
            child = space.mutate(a, rng, prob=0.3)
            assert space.contains(child)
            changed += child.hash() != a.hash()
            mixed = space.crossover(a, b, rng)
            assert space.contains(mixed)
        assert changed > 0
        assert space.mutate(parents[0], 0, prob=0.0) == parents[0]
    with pytest.raises(BertnasError, match="probability"):
        bound("unified").mutate(parents[0], 0, prob=2.0)


def test_mutation_can_reactivate_a_dropped_layer():
    space = bound("unified")
    arch = space.smallest()
    rng = np.random.default_rng(0)
    grown = [space.mutate(arch, rng, prob=0.5) for _ in range(20)]
    assert max(child.num_layers for child in grown) > 1


def test_optuna_study_suggests_members_that_decode_back():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = bound("unified")
    suggested = {}

    def objective(trial: optuna.Trial) -> float:
        arch = space.suggest(trial)
        suggested[trial.number] = arch
        return sum(layer.heads * layer.ffn_dim * layer.ffn_stack for layer in arch.layers) / arch.hidden_size

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=20)
    assert len(study.trials) == 20
    saw_null = False
    for trial in study.trials:
        arch = space.from_values(trial.params)
        assert arch.hash() == suggested[trial.number].hash()
        assert set(trial.params) <= {dim.name for dim in space.dimensions}
        saw_null |= any(value is None for value in trial.params.values())
    assert saw_null  # None (no bottleneck) is a valid categorical choice


def test_to_values_names_the_offending_field():
    space = bound("unified")
    arch = space.largest()
    bad = arch.replace(layers=(dataclasses.replace(arch.layers[0], heads=5), *arch.layers[1:]))
    with pytest.raises(BertnasError, match=r"layers\[0\]\.heads=5 is not one of 3, 6, 9, 12"):
        space.to_values(bad)
    assert not space.contains(bad)
    no_first = arch.replace(layers=arch.layers[1:])
    with pytest.raises(BertnasError, match="drops layer 0"):
        space.to_values(no_first)
    odd_retention = arch.replace(layers=(dataclasses.replace(arch.layers[0], retention=0.55),))
    with pytest.raises(BertnasError, match=r"layers\[0\]\.retention=0\.55"):
        space.to_values(odd_retention)
    with pytest.raises(BertnasError, match="uses 'gelu'"):
        space.to_values(arch.replace(hidden_act="relu"))
    narrow_qk = tuple(dataclasses.replace(layer, qk_dim=16) for layer in full_arch(MINILM).layers)
    with pytest.raises(BertnasError, match=r"layers\[0\]\.qk_dim=16, but this space fixes it at 32"):
        bound("dynabert").to_values(full_arch(MINILM).replace(layers=narrow_qk))
    with pytest.raises(BertnasError, match="not a DynaBERT depth"):
        bound("dynabert").to_values(full_arch(MINILM).replace(layers=full_arch(MINILM).layers[:5]))


def test_from_values_rejects_unknown_missing_and_foreign_values():
    space = bound("dynabert")
    with pytest.raises(BertnasError, match="no dimension 'widht'"):
        space.from_values({"widht": 0.5, "depth": 1.0})
    with pytest.raises(BertnasError, match="no value for dimension 'width'"):
        space.from_values({"depth": 1.0})
    with pytest.raises(BertnasError, match="width=0.3 is not a choice"):
        space.from_values({"depth": 1.0, "width": 0.3})


# ---------------------------------------------------------------------- size and enumeration
SMALL_SPACES = {
    "per_layer": """
        depth: {rule: per_layer, always_keep: [1]}
        layer:
          heads: [1.0, 0.5]
          bottleneck: [null, 0.25]
          retention: [1.0, 0.5]
        """,
    "dynabert_both": """
        depth: {rule: dynabert, multipliers: [1.0, 0.5]}
        width: {rule: dynabert, multipliers: [1.0, 0.5]}
        layer:
          qk_dim: [1.0, 0.5]
        """,
    "all_layers": """
        hidden_size: [1.0, 0.5]
        layer:
          ffn_stack: [1, 2]
          v_dim: {absolute: [8, 4]}
        """,
}
TINY = ArchLimits(hidden_size=64, num_layers=3, num_heads=4, head_dim=16, ffn_dim=256)


@pytest.mark.parametrize("key", list(SMALL_SPACES))
def test_size_matches_enumeration(key):
    space = space_from(SMALL_SPACES[key], TINY)
    archs = list(space.enumerate())
    assert space.size() == len(archs) == len({arch.hash() for arch in archs})
    assert all(space.contains(arch) for arch in archs)


def test_enumerate_refuses_huge_spaces():
    with pytest.raises(BertnasError, match="more than the limit"):
        bound("unified").enumerate()
    assert bound("unified").size() > 10**20


def test_fractions_round_half_up_and_duplicates_collapse():
    space = space_from("layer:\n  heads: [1.0, 0.375, 0.35, 0.01]\n", MINILM)
    # 12 * 0.375 = 4.5 -> 5 (not 4); 12 * 0.35 = 4.2 -> 4; 0.01 -> at least 1.
    assert space.choices("heads.0") == (1, 4, 5, 12)
    collapsed = space_from("layer:\n  qk_dim: [1.0, 0.99]\n", TINY)  # 16 and 15.84 -> 16 both
    assert collapsed.dimensions == []  # one choice left: fixed, no dimension
    assert collapsed.size() == 1


# ---------------------------------------------------------------------- loading and errors
def write(tmp_path, text: str, name: str = "bad.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path, limits: ArchLimits = MINILM) -> str:
    with pytest.raises(BertnasError) as caught:
        load_space(str(path)).bind(limits)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("name: x\nlayer:\n  heads: [1.0, 0.5\n  qk_dim: [1.0]\n", 4, "not valid YAML"),
        ("name: x\nlayer:\n  heads: [1.0]\n ffn_dim: [1.0]\n", 4, "not valid YAML"),
        ("name: x\nlayer:\n  heads: [1.0]\n  ffn_dims: [0.5]\n", 4, "layer.ffn_dims: unknown key 'ffn_dims'; known"),
        ("name: x\ndepht:\n  rule: all\n", 2, "depht: unknown key"),
        ("layer:\n  heads:\n    - 1.0\n    - 6\n", 4, "layer.heads[1]: 6 is more than 1; "),
        ("hidden_size: [1.0, 0.5]\nlayer:\n  ffn_dim: [2]\n", 3, "{absolute: [2, ...]}"),
        (
            "width:\n  rule: dynabert\n  multipliers: [1.0, 0.5]\nlayer:\n  qk_dim: [1.0]\n  heads: [1.0, 0.5]\n",
            6,
            "layer.heads: width rule dynabert already sets heads",
        ),
        ("layer:\n  heads: [1.0]\n  ffn_dim: []\n", 3, "layer.ffn_dim: empty list of choices"),
        ("layer:\n  heads: [1.0]\n  heads: [0.5]\n", 3, "layer.heads: written twice"),
        ("depth:\n  rule: dynabert\n  multipliers: [1.0, 1.25]\n", 3, "depth.multipliers[1]: 1.25 is not a multi"),
        ("depth:\n  rule: per_layer\n  always_keep: []\n", 3, "depth.always_keep: expected a non-empty list"),
        ("options:\n  hidden_act: gelu\n  norm: batchnorm\n", 3, "options.norm: 'batchnorm' is not one of"),
        ("layer:\n  ffn_stack: [1, 0.5]\n", 2, "layer.ffn_stack[1]: 0.5 is not a positive integer"),
        ("layer:\n  retention: {absolute: [1]}\n", 2, "layer.retention: expected a list of values"),
        ("", 1, "the file is empty"),
        # Checked at bind time, still with the line of the field.
        ("name: x\ndepth:\n  rule: per_layer\n  always_keep: [0, 6]\n", 4, "depth.always_keep: layer 6 does not"),
        ("layer:\n  heads: {absolute: [16, 8]}\n", 2, "layer.heads: 16 exceeds the backbone's heads 12"),
    ],
)
def test_malformed_space_files_report_file_line_and_field(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_load_space_by_name_path_and_directory_override(tmp_path, monkeypatch):
    assert load_space("dynabert").name == "dynabert"
    path = write(tmp_path, "description: mine\nlayer:\n  heads: [1.0, 0.5]\n", "mine.yaml")
    spec = load_space(str(path))
    assert (spec.name, spec.description) == ("mine", "mine")  # name defaults to the file name
    with pytest.raises(BertnasError, match="unknown search space 'mine'; available: .*dynabert"):
        load_space("mine")
    monkeypatch.setenv("BERTNAS_SPACES_DIR", str(tmp_path))
    assert load_space("mine").source == str(path)
    assert "mine" in list_spaces() and "unified" in list_spaces()
    with pytest.raises(BertnasError, match="does not exist"):
        load_space(str(tmp_path / "absent.yaml"))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("family", ["dynabert", "powerbert", "schubert", "mobilebert"])
def test_unified_space_contains_every_family_space(family, backbone):
    """Each family's space file is a sub-space of unified.yaml, so a unified search (and
    a supernet trained on it) can reach every point a family search can."""
    limits = BACKBONES[backbone]
    unified, sub = bound("unified", limits), bound(family, limits)
    shared = {dim.name for dim in unified.dimensions}
    for dim in sub.dimensions:
        if dim.name in shared:  # DynaBERT's width/depth multipliers have no unified twin
            assert set(dim.choices) <= set(unified.choices(dim.name)), dim.name
    for arch in [sub.largest(), sub.smallest(), *sub.sample_many(200, seed=5)]:
        assert unified.contains(arch), arch.to_json()


def test_all_shipped_spaces_bind_to_both_backbones():
    for name in SPACES:
        for limits in BACKBONES.values():
            info = bound(name, limits).describe()
            assert info["size"] >= 12 and info["name"] == name
            json.dumps(info)


def test_backbone_limits():
    assert backbone_limits("all-MiniLM-L6-v2") == MINILM
    assert backbone_limits("minilm") == MINILM == backbone_limits("sentence-transformers/all-MiniLM-L6-v2")
    assert backbone_limits("bert-base-uncased") == BERT_BASE
    with pytest.raises(BertnasError, match="unknown backbone"):
        backbone_limits("no-such-model")


def test_backbone_limits_from_a_local_directory(tmp_path):
    config = {
        "model_type": "bert",
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert backbone_limits(str(tmp_path)) == ArchLimits(256, 4, 4, 64, 1024)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_attention_heads": 5}))
    with pytest.raises(BertnasError, match="not a multiple"):
        backbone_limits(str(tmp_path))
