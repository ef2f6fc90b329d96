"""Hardware profiles, the latency predictor, measurement, export/import and the CLI (tiny grids)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bertnas.arch import ArchConfig, LayerConfig
from bertnas.cli.main import main
from bertnas.errors import BertnasError
from bertnas.hardware import LatencyPredictor, list_profiles, load_predictor, load_profile
from bertnas.hardware.kernels import reference_calls
from bertnas.hardware.measure import Timing, default_calibration_lengths, measure_profile, tiny_grid
from bertnas.hardware.predictor import kernel_cost
from bertnas.hardware.profile import parse_profile

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "hardware_profiles" / "reference_models"
SEQ = 16
FAST = Timing(warmup=1, min_repeats=3, max_repeats=5, min_seconds=0.0)


def tiny_arch(rng: np.random.Generator, layers: int | None = None) -> ArchConfig:
    """A random config inside the tiny grid (hidden <= 64, widths <= 64)."""
    hidden = int(rng.choice([32, 64]))
    count = layers or int(rng.integers(1, 4))
    retention, result = 1.0, []
    for index in range(count):
        retention = min(retention, float(rng.choice([1.0, 0.75, 0.5])))
        result.append(
            LayerConfig(
                index=index,
                heads=int(rng.choice([1, 2, 4])),
                qk_dim=int(rng.choice([8, 16])),
                v_dim=int(rng.choice([8, 16])),
                ffn_dim=int(rng.choice([16, 32, 64])),
                ffn_stack=int(rng.choice([1, 2])),
                bottleneck=rng.choice([None, 16, 32]),
                retention=retention,
            )
        )
    return ArchConfig(
        hidden_size=hidden,
        layers=tuple(result),
        num_labels=2,
        hidden_act=str(rng.choice(["gelu", "relu"])),
        norm=str(rng.choice(["layernorm", "nonorm"])),
        vocab_size=1000,
    )


@pytest.fixture(scope="module")
def tiny_profiles():
    rng = np.random.default_rng(7)
    calibration = [tiny_arch(rng) for _ in range(6)]
    return {
        runtime: measure_profile(
            f"tiny-{runtime}",
            runtime,
            1,
            seq_len=SEQ,
            grid=tiny_grid(SEQ),
            calibration=calibration,
            timing=FAST,
            progress=False,
            anchor=calibration[0],
        )
        for runtime in ("torch", "onnxruntime")
    }


def reference(name: str) -> ArchConfig:
    return ArchConfig.load(REFERENCE / f"{name}.json")


# ---------------------------------------------------------------- profile format
def test_measure_tiny_grid_both_runtimes_round_trip(tiny_profiles, tmp_path):
    for runtime, profile in tiny_profiles.items():
        assert profile.provenance == "measured" and profile.runtime == runtime
        assert profile.evidence["calibration"]["subnets"] == 6
        # timed at the profile's length and at 1/2, 1/4, 1/8 of it, one fit over all (docs/hardware.md)
        assert profile.evidence["calibration"]["lengths"] == list(default_calibration_lengths(SEQ)) == [16, 8, 4, 2]
        assert set(profile.evidence["calibration"]["fitted_mape_pct_by_length"]) == {"16", "8", "4", "2"}
        path = profile.save(tmp_path / f"{runtime}.yaml")
        loaded = load_profile(path)
        assert loaded.name == profile.name and loaded.seq_len == SEQ and loaded.threads == 1
        for family, table in profile.kernels.items():
            assert np.allclose(loaded.kernels[family].ms, table.ms, atol=1e-6)
            assert all(np.array_equal(a, b) for a, b in zip(loaded.kernels[family].axes, table.axes, strict=True))
        assert loaded.corrections.scale == pytest.approx(profile.corrections.scale, rel=1e-5)
        # Timings are finite and non-negative (the harness's per-call cost is subtracted); their
        # growth with shape is too small to assert at these microsecond sizes on a shared CPU.
        assert all(np.all(np.isfinite(t.ms)) and np.all(t.ms >= 0) for t in profile.kernels.values())
        assert profile.evidence["harness_ms_subtracted"] > 0


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nruntime: torch\nthreads: [1\n")
    with pytest.raises(BertnasError, match=rf"{path}:\d+: not valid YAML"):
        load_profile(path)


def test_bad_field_names_file_line_and_field(tmp_path):
    text = (REPO / "hardware_profiles" / "pixel4-analytic.yaml").read_text().replace("threads: 4", "threads: -4")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    line = text.splitlines().index("threads: -4") + 1
    with pytest.raises(BertnasError, match=rf"{path}:{line}: threads: must be a positive integer"):
        load_profile(path)
    broken_table = (
        (REPO / "hardware_profiles" / "pixel4-analytic.yaml").read_text().replace("ms_per_unit: ", "ms_per_unit: -", 1)
    )
    path.write_text(broken_table)
    with pytest.raises(BertnasError, match=r"kernels\.\w+\.analytic\.ms_per_unit: must be a non-negative number"):
        load_profile(path)


def test_unknown_device_lists_available(tmp_path, monkeypatch, tiny_profiles):
    monkeypatch.setenv("BERTNAS_PROFILES_DIR", str(tmp_path))
    tiny_profiles["torch"].save(tmp_path / "alpha.yaml")
    tiny_profiles["onnxruntime"].save(tmp_path / "beta.yaml")
    assert list_profiles() == ["alpha", "beta"]
    with pytest.raises(BertnasError, match="unknown device 'gamma'.*alpha, beta"):
        load_profile("gamma")


def test_seq_len_and_runtime_mismatch_refused(tiny_profiles):
    with pytest.raises(BertnasError, match="calibrated at seq_len 128 only"):
        load_predictor("pixel4-analytic").predict(reference("bert-base"), seq_len=64)
    # scaled measured tables know how cost varies with length: pixel4 prices shorter inputs
    pixel4 = load_predictor("pixel4")
    assert 0 < pixel4.predict(reference("bert-base"), seq_len=64) < pixel4.predict(reference("bert-base"))
    with pytest.raises(BertnasError, match="runtime 'tflite', not 'torch'"):
        load_profile("pixel4", runtime="torch")
    predictor = LatencyPredictor(tiny_profiles["torch"])
    with pytest.raises(BertnasError, match=f"covers seq_len 1..{SEQ}, not {SEQ * 2}"):
        predictor.predict(tiny_arch(np.random.default_rng(0)), seq_len=SEQ * 2)
    assert predictor.predict(tiny_arch(np.random.default_rng(0)), seq_len=SEQ // 2) > 0


# ---------------------------------------------------------------- predictor
@pytest.mark.parametrize("device", ["pixel4", "pixel4-analytic"])
def test_pixel4_reproduces_published_points_within_10pct(device):
    predictor = load_predictor(device)
    assert predictor.profile.provenance == "calibrated"
    published = {"bert-base": 342, "mobilebert": 62, "mobilebert-tiny": 40, "mobilebert-layernorm-gelu": 192}
    for name, ms in published.items():
        assert abs(predictor.predict(reference(name)) - ms) / ms < 0.10, name
    rows = {row["model"]: row for row in predictor.profile.evidence["published"]}
    assert set(rows) == set(published)


@pytest.mark.parametrize("device", ["pixel4", "pixel4-analytic"])
def test_pixel4_calibration_is_reproducible(device):
    from bertnas.hardware.calibrate import calibrate
    from bertnas.hardware.profile import KernelTable

    fresh = calibrate(REFERENCE / f"{device}.yaml")
    committed = load_profile(device)
    assert fresh.corrections.per_call_ms == pytest.approx(committed.corrections.per_call_ms, rel=1e-5)
    for family, entry in committed.kernels.items():
        if isinstance(entry, KernelTable):  # scaled host tables (stored to 6 decimals of a ms)
            assert np.allclose(fresh.kernels[family].ms, entry.ms, rtol=1e-5, atol=1e-6), family
            continue
        assert fresh.kernels[family].ms_per_unit == pytest.approx(entry.ms_per_unit, rel=1e-6)
        assert fresh.kernels[family].overhead_ms == pytest.approx(entry.overhead_ms, rel=1e-6)


def test_pixel4_is_the_litert_tables_scaled_to_the_published_points():
    """The headline profile's shape dependence is the measured LiteRT one: each kernel is the
    host-cpu-litert table times its family's fitted scale, and the provenance says so."""
    from bertnas.hardware.calibrate import HEAVY_FAMILIES

    pixel4, host = load_profile("pixel4"), load_profile("host-cpu-litert")
    tables = pixel4.evidence["tables"]
    assert tables["profile"] == "host-cpu-litert" and tables["threads"] == host.threads
    assert "host-cpu-litert" in pixel4.notes and "1 thread" in pixel4.notes
    coefficients = pixel4.evidence["fitted_coefficients"]
    for family, entry in pixel4.kernels.items():
        factor = coefficients["heavy_scale" if family in HEAVY_FAMILIES else "scale"]
        assert np.allclose(entry.ms, host.kernels[family].ms * factor, rtol=1e-4, atol=2e-6), family
    assert pixel4.corrections.per_call_ms == pytest.approx(coefficients["per_call_ms"], rel=1e-5)


def _with(arch: ArchConfig, **changes) -> ArchConfig:
    return arch.replace(layers=tuple(LayerConfig(**{**layer.__dict__, **changes}) for layer in arch.layers))


def test_pixel4_monotone_and_retention():
    """Bigger in any dimension costs more; retention costs less (analytic profile: exact; the
    scaled-table pixel4 agrees on these large changes)."""
    from bertnas.backbones import backbone_limits
    from bertnas.cost import count_macs_batch
    from bertnas.space import load_space

    predictor = load_predictor("pixel4-analytic")
    tables = load_predictor("pixel4")
    base = reference("bert-base")
    for changes in ({"heads": 6}, {"ffn_dim": 1536}, {"qk_dim": 32}, {"retention": 0.6}):
        assert predictor.predict(_with(base, **changes)) < predictor.predict(base), changes
        assert tables.predict(_with(base, **changes)) < tables.predict(base), changes
    assert predictor.predict(base.replace(layers=base.layers[:6])) < predictor.predict(base)
    assert tables.predict(base.replace(layers=base.layers[:6])) < tables.predict(base)
    space = load_space("unified").bind(backbone_limits("bert-base-uncased"), "bert-base-uncased")
    archs = space.sample_many(300, seed=5)
    from scipy.stats import spearmanr

    rho = spearmanr(count_macs_batch(archs, 128), predictor.predict_many(archs)).statistic
    assert rho > 0.9  # latency follows MACs closely, but not exactly (norms, activations, overheads)


@pytest.mark.parametrize("device", ["pixel4", "pixel4-analytic", "tiny-torch", "tiny-onnxruntime"])
def test_composition_equals_sum_of_parts(device, tiny_profiles):
    rng = np.random.default_rng(4)
    if device.startswith("pixel4"):
        predictor, seq = load_predictor(device), 128
        archs = [reference(name) for name in ("bert-base", "mobilebert", "mobilebert-tiny")]
        archs.append(_with(archs[0], retention=0.7))
    else:
        predictor, seq = LatencyPredictor(tiny_profiles[device.removeprefix("tiny-")]), SEQ
        archs = [tiny_arch(rng) for _ in range(10)]
    for arch in archs:
        # The readable per-call listing priced call by call gives the vectorised kernel sum ...
        expected = sum(
            count * float(kernel_cost(predictor.profile, family, [np.array([s]) for s in shape])[0])
            for family, shape, count in reference_calls(arch, seq)
        )
        sums, layers = predictor.kernel_sums([arch])
        assert sums[0] == pytest.approx(expected, rel=1e-9)
        # ... the per-layer breakdown adds up to it, each layer at its own token counts ...
        parts = predictor.breakdown(arch)
        total = parts["embedding_and_head_ms"] + sum(layer["kernels_ms"] for layer in parts["layers"])
        assert total == pytest.approx(expected, rel=1e-9)
        assert [(layer["n_in"], layer["n_out"]) for layer in parts["layers"]] == arch.token_counts(seq)
        # ... the call count is the listing's (each stacked FFN, each Q/K projection counted) ...
        calls = sum(count for _, _, count in reference_calls(arch, seq))
        assert predictor.terms([arch])[2][0] == calls
        # ... and the prediction is that sum through the profile's corrections (each family's
        # cost weighted by its group's scale where the profile has them).
        c = predictor.profile.corrections
        weighted = sum(
            c.weight(family) * count * float(kernel_cost(predictor.profile, family, [np.array([s]) for s in shape])[0])
            for family, shape, count in reference_calls(arch, seq)
        )
        assert predictor.predict(arch) == pytest.approx(
            weighted + c.per_layer_ms * arch.num_layers + c.per_call_ms * calls + c.per_model_ms, rel=1e-9
        )


def test_group_scales_price_each_kernel_group_and_are_fitted_back(tiny_profiles, tmp_path):
    """One scale per kernel group: the prediction weights each family by its group's scale (batch
    and single paths alike), the YAML keeps them, and the fit recovers known ones."""
    from dataclasses import replace

    from bertnas.hardware.kernels import FAMILIES, GROUP_OF, KERNEL_GROUPS
    from bertnas.hardware.measure import fit_corrections
    from bertnas.hardware.profile import Corrections

    rng = np.random.default_rng(12)
    archs = [tiny_arch(rng) for _ in range(40)]
    # Tables that grow with every axis, not this moment's timings: a family timed at ~0 ms (the
    # harness subtracted on a busy CPU) leaves its group's scale unidentifiable, which is about
    # the machine, not the fit.
    measured = tiny_profiles["onnxruntime"]
    tables = {
        family: replace(table, ms=1e-3 * (1.0 + sum(np.meshgrid(*(np.log1p(a) for a in table.axes), indexing="ij"))))
        for family, table in measured.kernels.items()
    }
    base = replace(measured, kernels=tables)
    raw = LatencyPredictor(replace(base, corrections=Corrections()))
    groups = raw.group_sums(archs)  # (configs, groups), raw ms
    sums, layers, calls = raw.terms(archs)
    assert groups.shape == (40, len(KERNEL_GROUPS)) and np.allclose(groups.sum(axis=1), sums, rtol=1e-12)
    assert set(GROUP_OF) == set(FAMILIES)
    truth = {"matmul": 1.6, "elementwise": 0.0, "selection": 2.0, "model": 5.0}
    corrections = Corrections(scale=1.0, group_scales=tuple(truth.items()), per_layer_ms=0.02, per_model_ms=0.01)
    predictor = LatencyPredictor(replace(base, corrections=corrections))
    expected = groups @ np.array([truth[g] for g in KERNEL_GROUPS]) + 0.02 * layers + 0.01
    many = predictor.predict_many(archs)
    assert np.allclose(many, expected, rtol=1e-9)
    assert np.allclose([predictor.predict(a) for a in archs], many, rtol=1e-9)
    assert predictor.breakdown(archs[0])["corrections"]["group_scales"] == truth
    # the YAML round trip keeps them
    loaded = load_profile(replace(base, corrections=corrections).save(tmp_path / "g.yaml"))
    assert dict(loaded.corrections.group_scales) == pytest.approx(truth)
    # (the tables are stored to 1e-6 ms, and these kernels take microseconds)
    assert np.allclose(LatencyPredictor(loaded).predict_many(archs), many, rtol=0, atol=2e-4)
    # the fit gives the truth back from noiseless end-to-end times
    fitted = fit_corrections(sums, layers, expected, "synthetic", groups=groups)
    assert dict(fitted.group_scales) == pytest.approx(truth, abs=1e-6)
    assert fitted.per_layer_ms == pytest.approx(0.02, rel=1e-5) and fitted.scale == 1.0
    # an implausible matrix-product scale falls back to the one-scale fit
    wild = fit_corrections(sums, layers, groups[:, 0] * 9.0 + 0.01, "synthetic", groups=groups)
    assert wild.group_scales == () and "one scale" in wild.fitted_on
    # bad values are refused with the field named
    text = (tmp_path / "g.yaml").read_text()
    for old, new, message in (
        ("elementwise: 0.0", "elementwise: -1.0", r"group_scales\.elementwise: must be a number >= 0"),
        ("elementwise: 0.0", "softmaxes: 1.0", r"group_scales: unknown kernel group \(known: matmul"),
    ):
        assert old in text
        (tmp_path / "bad.yaml").write_text(text.replace(old, new))
        with pytest.raises(BertnasError, match=message):
            load_profile(tmp_path / "bad.yaml")


def test_layers_priced_at_their_own_token_counts(tiny_profiles):
    """Retention on a late layer changes only that layer's price (no averaging over layers)."""
    predictor = LatencyPredictor(tiny_profiles["onnxruntime"])
    layers = tuple(LayerConfig(i, 4, 16, 16, 64) for i in range(3))
    base = ArchConfig(hidden_size=64, layers=layers, num_labels=2, vocab_size=1000)
    late = base.replace(layers=layers[:2] + (LayerConfig(2, 4, 16, 16, 64, retention=0.5),))
    full, cut = predictor.breakdown(base)["layers"], predictor.breakdown(late)["layers"]
    assert [x["kernels_ms"] for x in full[:2]] == [x["kernels_ms"] for x in cut[:2]]
    assert (cut[2]["n_in"], cut[2]["n_out"]) == (SEQ, SEQ // 2) and cut[2]["kernels_ms"] != full[2]["kernels_ms"]


@pytest.mark.parametrize("device", ["pixel4", "pixel4-analytic", "tiny-torch", "tiny-onnxruntime"])
def test_predict_many_equals_predict(device, tiny_profiles):
    rng = np.random.default_rng(3)
    if device.startswith("pixel4"):
        from bertnas.backbones import backbone_limits
        from bertnas.space import load_space

        space = load_space("unified").bind(backbone_limits("bert-base-uncased"), "bert-base-uncased")
        archs = space.sample_many(200, seed=1)
        predictor = load_predictor(device)
    else:
        archs = [tiny_arch(rng) for _ in range(200)]
        predictor = LatencyPredictor(tiny_profiles[device.removeprefix("tiny-")])
    many = predictor.predict_many(archs)
    single = np.array([predictor.predict(arch) for arch in archs])
    again = np.array([predictor.predict(arch) for arch in archs])  # now from the per-layer cache
    assert np.allclose(many, single, rtol=1e-9) and np.allclose(single, again, rtol=1e-12)
    assert np.all(many > 0)


def test_tiny_profile_validation_reports_what_it_measured(tiny_profiles):
    """The report's figures are the profile's predictions against the end-to-end timings it made. How
    close they are is a timing, so it is not a pass/fail condition here (that claim is `bertnas
    profile validate` on a quiet CPU, README); a contended CI machine once measured 66 % MAPE."""
    from bertnas.hardware.predictor import LatencyPredictor
    from bertnas.hardware.validate import metrics, validate

    rng = np.random.default_rng(11)
    archs = [tiny_arch(rng) for _ in range(4)]
    result = validate(tiny_profiles["onnxruntime"], 4, archs=archs, timing=FAST)
    assert result["samples"] == 4
    assert [p["hash"] for p in result["points"]] == [a.hash() for a in archs]
    predicted = np.array([p["predicted_ms"] for p in result["points"]])
    measured = np.array([p["measured_ms"] for p in result["points"]])
    expected = LatencyPredictor(tiny_profiles["onnxruntime"]).predict_many(archs)
    np.testing.assert_allclose(predicted, expected, atol=1e-4)
    assert bool(np.all(np.isfinite(measured) & (measured > 0)))
    recomputed = metrics(predicted, measured)
    # The subnets were timed beside the anchor the profile stored; at the profile's speed the
    # measured times are the anchor units times the anchor's time then.
    stored = tiny_profiles["onnxruntime"].evidence["anchor"]
    assert result["anchor"]["profile_ms"] == stored["ms"] and result["anchor"]["now"]["model"] == stored["hash"]
    steady = np.array([p["anchor_units"] for p in result["points"]]) * stored["ms"]
    assert result["drift_corrected"]["kendall_tau"] == pytest.approx(metrics(predicted, steady)["kendall_tau"])
    # The points are stored to 1e-4 ms, so on a sub-millisecond tiny model the errors recomputed
    # from them can differ from the report's (made from the unrounded timings) by this much:
    half = 5e-5
    # (an error p/m - 1 moves by at most h/(m-h) through p and (p+h)h/(m-h)^2 through m)
    slack = 100 * float(np.max(half / (measured - half) + (predicted + half) * half / (measured - half) ** 2)) + 0.01
    for key in ("mape_pct", "max_abs_error_pct"):
        assert result[key] == pytest.approx(recomputed[key], abs=slack)
    near_edge = np.abs(np.abs(predicted / measured - 1) - 0.10) * 100 <= slack
    assert result["within_10pct"] == pytest.approx(recomputed["within_10pct"], abs=100 * near_edge.mean() + 0.05)


def test_end_to_end_timing_in_interleaved_rounds():
    from dataclasses import replace

    import torch

    from bertnas.hardware.measure import measure_models
    from bertnas.hardware.runtimes import open_runtime

    rng = np.random.default_rng(12)
    archs = [tiny_arch(rng) for _ in range(3)]
    threads = torch.get_num_threads()
    with open_runtime("torch", 1, 1, SEQ) as runtime:
        assert torch.get_num_threads() == 1
        timed = measure_models(runtime, archs, replace(FAST, rounds=3))
        assert timed.shape == (3,) and bool(np.all(np.isfinite(timed) & (timed > 0)))
        with pytest.raises(BertnasError, match="rounds=0"):
            measure_models(runtime, archs, replace(FAST, rounds=0))
    assert torch.get_num_threads() == threads  # the process's thread count is given back


def test_a_profiles_anchor_record_survives_saving_and_is_checked_before_use(tiny_profiles, tmp_path):
    from dataclasses import replace

    from bertnas.hardware.validate import _stored_anchor

    good = load_profile(tiny_profiles["torch"].save(tmp_path / "anchored.yaml"))
    record = good.evidence["anchor"]
    arch, ms = _stored_anchor(good)
    assert arch.hash() == record["hash"] and ms == record["ms"] > 0
    broken = [{"ms": "fast"}, {**record, "ms": -1.0}, {**record, "hash": "0" * 16}, {**record, "arch": {"x": 1}}, "yes"]
    for bad in broken:
        assert _stored_anchor(replace(good, evidence={**good.evidence, "anchor": bad})) is None


class _DriftingRuntime:
    """A machine whose speed drifts on demand: every model sleeps for its cost times a factor that
    grows with each call made on the machine (the 150th call takes about 4 times the first)."""

    name = "drifting"

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, arch: ArchConfig):
        import time

        from bertnas.hardware.runtimes import Prepared

        cost = 0.001 * len(arch.layers)

        def run() -> None:
            self.calls += 1
            time.sleep(cost * (1.0 + self.calls / 50))  # sleeping, unlike work, barely feels a busy CPU

        return Prepared(lambda: run)

    def kernel(self, family: str, shape: tuple[int, ...]):
        import time

        cost = 0.0005 * (1 + sum(shape) % 3)

        def run() -> None:
            self.calls += 1
            time.sleep(cost * (1.0 + self.calls / 50))

        return run

    def describe(self) -> dict[str, str]:
        return {"runtime": self.name}


def test_kernel_tables_are_timed_at_one_speed_of_a_drifting_machine():
    from bertnas.hardware.kernels import FAMILIES
    from bertnas.hardware.measure import Grid, measure_kernels

    grid = Grid(
        tokens=(4, 8), dims=(8, 16), heads=(1,), head_dims=(8,), widths=(8,), hidden=(8,), embedding_tokens=(4,)
    )
    timing = Timing(warmup=1, min_repeats=5, max_repeats=7, min_seconds=0.0)
    runtime = _DriftingRuntime()
    tables, anchor = measure_kernels(runtime, grid, timing, progress=False)
    assert runtime.calls > 300  # the machine ran at least 7 x slower at the end than at the start
    assert anchor["kernel"] == "linear" and anchor["spread_ms"][1] / anchor["spread_ms"][0] > 3
    # every point in units of its cost: one speed throughout (the extremes left out, as above)
    ratios = np.sort(
        np.concatenate(
            [
                (table.ms / np.vectorize(lambda *s: 1 + sum(s) % 3)(*np.meshgrid(*table.axes, indexing="ij"))).ravel()
                for family, table in tables.items()
                if family in FAMILIES
            ]
        )
    )[1:-1]
    assert ratios[-1] / ratios[0] < 1.35
    plain, none = measure_kernels(_DriftingRuntime(), grid, timing, progress=False, anchored=False)
    assert none is None and set(plain) == set(tables)


def test_anchored_timing_takes_out_the_machines_drift():
    from bertnas.hardware.measure import measure_anchored

    rng = np.random.default_rng(3)
    same = tiny_arch(rng, layers=2)
    archs = [same] * 10
    timing = Timing(warmup=1, min_repeats=5, max_repeats=7, min_seconds=0.0)
    timed = measure_anchored(_DriftingRuntime(), archs, tiny_arch(rng, layers=3), timing)
    # the machine slowed down over the set; in anchor units the same model costs the same throughout
    # (2 layers against the anchor's 3). The extremes are left out: a busy CI core adds a stray spike.
    raw, relative = np.sort(timed.ms)[1:-1], np.sort(timed.relative)[1:-1]
    assert raw[-1] / raw[0] > 1.5 and timed.anchor_spread[1] / timed.anchor_spread[0] > 1.5
    assert relative[-1] / relative[0] < 1.3 and float(np.median(relative)) == pytest.approx(2 / 3, rel=0.2)
    np.testing.assert_allclose(timed.at_speed(3.0), timed.relative * 3.0)
    plain = measure_anchored(_DriftingRuntime(), archs[:2], None, FAST)
    with pytest.raises(BertnasError, match="without an anchor"):
        plain.at_speed(1.0)


# ---------------------------------------------------------------- export / import
def test_kernels_export_benchmark_and_import(tmp_path, monkeypatch):
    from bertnas.hardware.exchange import export_kernels, import_results

    directory = export_kernels(tmp_path / "kit", tiny_grid(SEQ), seq_len=SEQ)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert len(manifest["kernels"]) == tiny_grid(SEQ).points()
    for entry in manifest["kernels"][::25]:
        onnx.checker.check_model(onnx.load(directory / entry["file"]))
    out = tmp_path / "results.csv"
    subprocess.run(
        [sys.executable, str(directory / "benchmark.py"), "--out", str(out), "--repeats", "1", "--warmup", "0",
         "--min-seconds", "0"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    profile = import_results(out, name="kit", runtime="onnxruntime", threads=1)
    assert profile.provenance == "imported" and profile.seq_len == SEQ
    assert LatencyPredictor(profile).predict(tiny_arch(np.random.default_rng(1))) > 0
    # A hole in a table is refused with the missing point.
    rows = list(csv.reader(out.read_text().splitlines()))
    out.write_text("\n".join(",".join(row) for row in rows[:5] + rows[6:]) + "\n")
    with pytest.raises(BertnasError, match="is missing; a table needs its full grid"):
        import_results(out, name="kit")
    monkeypatch.setenv("BERTNAS_PROFILES_DIR", str(tmp_path / "registry"))
    out.write_text("\n".join(",".join(row) for row in rows) + "\n")
    assert main(["profile", "import", str(out), "--name", "kit"]) == 0
    assert load_profile("kit").provenance == "imported"


# ---------------------------------------------------------------- CLI
def test_cli_predict_and_devices(capsys):
    assert main(["devices", "--json"]) == 0
    names = {row["name"]: row["provenance"] for row in json.loads(capsys.readouterr().out)}
    assert names["pixel4"] == "calibrated"
    arch = str(REFERENCE / "mobilebert.json")
    assert main(["profile", "predict", "--device", "pixel4", "--arch", arch, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 62 * 0.9 < info["latency_ms"] < 62 * 1.1 and len(info["layers"]) == 24


def test_cli_bad_input_exits_2(tmp_path, capsys):
    arch = str(REFERENCE / "bert-base.json")
    assert main(["profile", "predict", "--device", "nope", "--arch", arch]) == 2
    assert "available profiles" in capsys.readouterr().err
    assert main(["profile", "predict", "--device", "pixel4-analytic", "--arch", arch, "--seq-len", "64"]) == 2
    bad = tmp_path / "a.json"
    bad.write_text("{")
    assert main(["profile", "predict", "--device", "pixel4", "--arch", str(bad)]) == 2
    assert main(["profile", "validate", "--device", "pixel4", "--samples", "2"]) == 2
    assert "cannot run on this machine" in capsys.readouterr().err
    assert main(["profile", "validate", "--device", "host-cpu-torch", "--samples", "2", "--rounds", "0"]) == 2
    assert "--rounds 0" in capsys.readouterr().err
    assert main(["profile", "measure", "--runtime", "tflite", "--name", "x", "--out", str(tmp_path / "x.yaml")]) == 2
    capsys.readouterr()
    for lengths in ("0,3", "a,b", ",", "256"):
        args = ["profile", "measure", "--runtime", "torch", "--name", "x", "--calibration-lengths", lengths]
        assert main([*args, "--out", str(tmp_path / "x.yaml")]) == 2
        err = capsys.readouterr().err
        assert (
            f"--calibration-lengths {lengths!r}: give comma-separated token counts between 1 and --seq-len 128" in err
        )
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.yaml").exists()
    assert main(["profile", "import", str(tmp_path / "missing.csv"), "--name", "x", "--out", str(tmp_path / "y")]) == 2


def test_parse_rejects_missing_family(tmp_path):
    text = (REPO / "hardware_profiles" / "pixel4-analytic.yaml").read_text()
    data_lines = [line for line in text.splitlines() if not line.startswith("  relu:")]
    with pytest.raises(BertnasError, match="missing kernel family 'relu'"):
        parse_profile("\n".join(data_lines), "p.yaml")


def test_validate_stores_residuals_for_guaranteed_budgets(tiny_profiles, tmp_path, capsys):
    path = tiny_profiles["onnxruntime"].save(tmp_path / "tiny.yaml")
    out = tmp_path / "validation.json"
    args = ["profile", "validate", "--device", str(path), "--samples", "3", "--rounds", "1", "--seed", "5"]
    assert main([*args, "--out", str(out), "--save-residuals"]) == 0
    assert "stored 3 residuals" in capsys.readouterr().out
    stored = load_profile(path).residuals
    points = json.loads(out.read_text())["points"]
    expected = [p["measured_ms"] / p["predicted_ms"] - 1 for p in points]
    assert stored.values == pytest.approx(expected, abs=1e-5) and "seed 5" in stored.subnets
    assert load_profile(path).kernels.keys() == tiny_profiles["onnxruntime"].kernels.keys()
    # a residual just above -1 (a profile far off, as the tiny one can be for MiniLM subnets) is
    # written as it is: rounded to -1.0 the profile could not be read back
    from dataclasses import replace

    from bertnas.hardware.conformal import Residuals

    far = replace(load_profile(path), residuals=Residuals((-0.999996, 0.02), "far")).save(tmp_path / "far.yaml")
    assert load_profile(far).residuals.values == (-0.999996, 0.02)
    # residuals must come from the device itself: a calibrated profile cannot collect them here
    assert main(["profile", "validate", "--device", "pixel4", "--samples", "2", "--save-residuals"]) == 2
    assert "not measured on this machine" in capsys.readouterr().err


# ---------------------------------------------------------------- prices over real lengths
def test_length_distribution_price_is_the_mean_of_per_length_prices(tiny_profiles):
    from bertnas.hardware.lengths import LengthDistribution, LengthPricedPredictor

    predictor = LatencyPredictor(tiny_profiles["onnxruntime"])
    sentences = [3, 3, 5, 7, 7, 7, 9, 12, 16, 16, 2]  # token counts of a toy split
    lengths = LengthDistribution.of(sentences, "toy")
    assert lengths.lengths == (2, 3, 5, 7, 9, 12, 16) and sum(lengths.counts) == len(sentences)
    rng = np.random.default_rng(21)
    archs = [tiny_arch(rng) for _ in range(12)]
    assert any(layer.retention < 1 for arch in archs for layer in arch.layers)  # retention is priced per length
    mean = LengthPricedPredictor(predictor, lengths, "mean")
    p90 = LengthPricedPredictor(predictor, lengths, "p90")
    for arch in archs:
        per_sentence = np.array([predictor.predict(arch, n) for n in sentences])
        assert mean.predict(arch) == pytest.approx(per_sentence.mean(), rel=1e-9)
        ranked = np.sort(per_sentence)  # the 90th percentile sentence: the 10th of 11
        assert p90.predict(arch) == pytest.approx(ranked[int(np.ceil(0.9 * len(sentences))) - 1], rel=1e-9)
    assert np.allclose(mean.predict_many(archs), [mean.predict(a) for a in archs], rtol=1e-9)
    assert np.allclose(p90.predict_many(archs), [p90.predict(a) for a in archs], rtol=1e-9)
    assert lengths.length("p50") == 7 and lengths.length("mean") == round(np.mean(sentences))
    # a profile that cannot price those lengths says so
    with pytest.raises(BertnasError, match="calibrated at 128 tokens only"):
        LengthPricedPredictor(load_predictor("pixel4-analytic"), lengths, "mean")
    with pytest.raises(BertnasError, match="up to 40 tokens.*covers 1..16"):
        LengthPricedPredictor(predictor, LengthDistribution.of([4, 40]), "p50")


@pytest.mark.parametrize("value", ["task:p95", "p50", "0", "-3", "task:", "mean"])
def test_seq_len_values_are_checked(value):
    from bertnas.hardware.lengths import parse_seq_len

    with pytest.raises(BertnasError, match="--seq-len"):
        parse_seq_len(value)
    assert parse_seq_len("64") == 64 and parse_seq_len("task:p90") == "task:p90" and parse_seq_len(None) is None


def test_token_selection_is_priced_only_where_tokens_are_dropped(tiny_profiles):
    """Top-k, significance and gathers cost a retention layer, and nothing elsewhere."""
    from dataclasses import replace

    from bertnas.hardware.profile import Corrections, KernelTable

    # plain corrections: a per-group fit to six noisy tiny subnets may scale a group to 0
    profile = replace(tiny_profiles["onnxruntime"], corrections=Corrections(per_layer_ms=0.01, per_call_ms=0.001))
    free = dict(profile.kernels)
    for family in ("token_select", "gather"):
        free[family] = KernelTable(axes=profile.kernels[family].axes, ms=np.zeros_like(profile.kernels[family].ms))
    priced, unpriced = LatencyPredictor(profile), LatencyPredictor(replace(profile, kernels=free))
    layers = tuple(LayerConfig(i, 4, 16, 16, 64, bottleneck=32 if i == 1 else None) for i in range(3))
    whole = ArchConfig(hidden_size=64, layers=layers, num_labels=2, vocab_size=1000)
    schedule = (0.75, 0.5, 0.25)  # of the input length: every layer drops tokens
    cut = whole.replace(
        layers=tuple(LayerConfig(**{**x.__dict__, "retention": r}) for x, r in zip(layers, schedule, strict=True))
    )
    assert priced.predict(whole) == unpriced.predict(whole)
    assert priced.predict(cut) > unpriced.predict(cut)
    calls = [priced.terms([arch])[2][0] for arch in (whole, cut)]
    assert calls[1] - calls[0] == 2 + 3 + 2  # select + gather per layer, + residual gather with a bottleneck


def test_litert_kernel_is_timed_and_a_tiny_converted_subnet_runs():
    from bertnas.export.formats import TfliteFormat

    missing = TfliteFormat().available()
    if missing:
        pytest.skip(f"LiteRT is not installable on this platform: {missing}")
    import torch

    from bertnas.hardware.measure import time_runner
    from bertnas.hardware.runtimes import open_runtime
    from bertnas.model.compact import CompactBert, CompactConfig

    runtime = open_runtime("litert", 1, batch=1, seq_len=SEQ)
    assert time_runner(runtime.kernel("linear", (SEQ, 32, 64)), FAST) > 0
    assert time_runner(runtime.kernel("token_select", (SEQ, 2)), FAST) > 0
    arch = tiny_arch(np.random.default_rng(5), layers=2)
    logits = runtime.model(arch)()
    torch.manual_seed(0)  # the runtime's model: random weights from seed 0
    reference = CompactBert(CompactConfig(arch)).eval()
    ids = torch.randint(1, arch.vocab_size, (1, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = reference(ids, torch.ones_like(ids)).logits.numpy()
    assert np.asarray(logits).shape == (1, 2) and np.allclose(logits, expected, atol=1e-4)
    assert "XNNPACK" in runtime.describe()["delegate"]

    # Several timing rounds convert each subnet once: every round reopens the same file, which
    # the last round deletes.
    from dataclasses import replace
    from pathlib import Path

    from bertnas.hardware.measure import measure_models

    scratch = Path(runtime._scratch.name)
    prepared = runtime.prepare(arch)
    assert len(list(scratch.rglob("*.tflite"))) == 1
    assert np.allclose(prepared()(), logits, atol=1e-4) and np.allclose(prepared()(), logits, atol=1e-4)
    prepared.close()
    assert not list(scratch.rglob("*.tflite"))
    archs = [arch, tiny_arch(np.random.default_rng(6), layers=1)]
    conversions = runtime._count
    timed = measure_models(runtime, archs, replace(FAST, rounds=3))
    assert runtime._count - conversions == len(archs)  # not 3 x
    assert bool(np.all(timed > 0)) and not list(scratch.rglob("*.tflite"))
