"""The layer schema (bertnas/schema.py) and the values it must never change."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertnas.arch import ArchConfig
from bertnas.cost import cost, count_macs, count_params
from bertnas.hardware import load_predictor
from bertnas.space import load_space
from bertnas.space.backbone_dims import backbone_limits

REFERENCE_MODELS = Path(__file__).resolve().parents[1] / "hardware_profiles" / "reference_models"

# Computed before the schema existed (commit e45eebb): hash, parameters, MACs at 128 tokens, the
# pixel4 prediction (128 tokens), the host-cpu-onnxruntime prediction at 64 tokens (vectorised path)
# and the first layer's (attention projections, attention core, FFN, bottleneck) MACs at 64 tokens.
# Caches, studies and committed results key on the hashes; none of these may move.
FROZEN = {
    "bert-base": (
        "0824603ed2ae8133",
        109483778,
        11174217216,
        343.35098199999993,
        73.08674869916298,
        (150994944, 6291456, 301989888, 0),
    ),
    "mobilebert-layernorm-gelu": (
        "d8dc99d4ea99c538",
        33582594,
        2315518976,
        191.46481693333328,
        20.923394988882993,
        (4194304, 1048576, 33554432, 8388608),
    ),
    "mobilebert-tiny": (
        "eb364ab5538abb4b",
        27260418,
        1510212608,
        41.59045266666666,
        14.197186551978994,
        (4194304, 1048576, 16777216, 8388608),
    ),
    "mobilebert": (
        "d69e8564242e42e1",
        33582594,
        2315518976,
        59.24052093333334,
        19.228976287435,
        (4194304, 1048576, 33554432, 8388608),
    ),
    "unified-0": (
        "f120a65a0afa8922",
        19180008,
        315129312,
        21.644690712499997,
        3.408707349616339,
        (4423680, 1474560, 4718592, 3538944),
    ),
    "unified-1": (
        "b1de9985d2cbe8ee",
        11699676,
        391203268,
        26.283793790364587,
        3.83945822710697,
        (2359296, 393216, 51757056, 3045504),
    ),
    "unified-2": (
        "55305fafef16866a",
        9311184,
        190136736,
        14.89041939375,
        2.1928196033423752,
        (8257536, 1376256, 39813120, 0),
    ),
}


def frozen_archs() -> dict[str, ArchConfig]:
    archs = {path.stem: ArchConfig.load(path) for path in sorted(REFERENCE_MODELS.glob("*.json"))}
    space = load_space("unified").bind(backbone_limits("minilm"), "all-MiniLM-L6-v2")
    for i, arch in enumerate(space.sample_many(3, seed=0)):
        archs[f"unified-{i}"] = arch
    return archs


def test_hashes_costs_and_predictions_are_frozen():
    archs = frozen_archs()
    assert set(archs) == set(FROZEN)
    pixel4, onnxruntime = load_predictor("pixel4"), load_predictor("host-cpu-onnxruntime")
    for name, arch in archs.items():
        digest, params, macs, pixel4_ms, onnxruntime_ms, first_layer = FROZEN[name]
        assert arch.hash() == digest, name
        assert count_params(arch) == params, name
        assert count_macs(arch, 128) == macs, name
        layer = cost(arch, 64).layers[0]
        assert (layer.attention_proj_macs, layer.attention_core_macs, layer.ffn_macs, layer.bottleneck_macs) == (
            first_layer
        ), name
        assert pixel4.predict(arch) == pytest.approx(pixel4_ms, rel=1e-12), name
        assert float(onnxruntime.predict_many([arch], 64)[0]) == pytest.approx(onnxruntime_ms, rel=1e-12), name


# ---------------------------------------------------------------------- fields
def test_layer_config_is_the_schema_fields():
    import dataclasses

    from bertnas import schema
    from bertnas.arch import LayerConfig

    assert tuple(f.name for f in dataclasses.fields(LayerConfig)) == schema.FIELD_NAMES
    schema.check_layer_class(LayerConfig)

    @dataclasses.dataclass(frozen=True)
    class Stale:  # a copy that missed a field, or got a default wrong
        index: int
        heads: int
        qk_dim: int
        v_dim: int
        ffn_dim: int
        ffn_stack: int = 2

    with pytest.raises(TypeError, match="do not match"):
        schema.check_layer_class(Stale)


def test_same_value_keeps_none_booleans_and_numbers_apart():
    import numpy as np

    from bertnas.schema import same_value

    assert same_value(1, 1.0) and same_value(None, None) and same_value(True, np.bool_(True))
    assert not same_value(True, 1) and not same_value(0, False) and not same_value(None, 0)
    assert not same_value(0.5, "0.5")
