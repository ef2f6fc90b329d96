"""``bertnas devices`` and ``bertnas profile ...``: hardware profiles and latency prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bertnas.cli.main import app
from bertnas.errors import BertnasError

if TYPE_CHECKING:
    from bertnas.arch import ArchConfig

profile_app = typer.Typer(
    help="Hardware profiles (hardware_profiles/NAME.yaml): measure, predict, validate, export, import.",
    no_args_is_help=True,
)
app.add_typer(profile_app, name="profile")

_DEVICE_HELP = "A profile name (see `bertnas devices`) or the path of a profile .yaml file."
_BACKBONE_HELP = "Backbone whose unified space the subnets come from (repeat to mix backbones)."
_ROUNDS_HELP = "Interleaved passes over the end-to-end subnets; the median per subnet is kept (3)."


@app.command("devices")
def devices_command(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List the hardware profiles in the registry with their provenance."""
    from bertnas.hardware import list_profiles, load_profile, profiles_dir

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append(
            {
                "name": p.name,
                "provenance": p.provenance,
                "runtime": p.runtime,
                "threads": p.threads,
                "batch": p.batch,
                "seq_len": p.seq_len,
                "precision": p.precision,
                "date": p.date,
                "device": p.device,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no profiles in {profiles_dir()}")
        return
    header = f"{'name':<24} {'provenance':<11} {'runtime':<12} {'thr':>3} {'seq':>4} {'prec':<5} {'date':<10} device"
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r['name']:<24} {r['provenance']:<11} {r['runtime']:<12} {r['threads']:>3} {r['seq_len']:>4} "
            f"{r['precision']:<5} {r['date']:<10} {r['device']}"
        )


def _positive(value: int, option: str) -> int:
    if value < 1:
        raise BertnasError(f"{option} {value}: must be a positive integer")
    return value


@profile_app.command("measure")
def measure_command(
    runtime: str = typer.Option(..., "--runtime", help="torch, onnxruntime or litert (LiteRT/XNNPACK)."),
    name: str = typer.Option(..., "--name", help="Profile name; written to hardware_profiles/NAME.yaml."),
    threads: int = typer.Option(2, "--threads", help="Intra-op threads (2)."),
    cuda: bool = typer.Option(False, "--cuda", help="Measure on the CUDA device instead of the CPU."),
    seq_len: int = typer.Option(128, "--seq-len", help="Sequence length (128)."),
    batch: int = typer.Option(1, "--batch", help="Batch size (1)."),
    grid: str = typer.Option(
        "default", "--grid", help="Kernel grid: default, minilm (MiniLM's space only: a third) or tiny (tests)."
    ),
    calibration: int = typer.Option(
        30, "--calibration", help="Random subnets timed end to end to fit the corrections; 0: none (30)."
    ),
    calibration_lengths: str | None = typer.Option(
        None,
        "--calibration-lengths",
        help="Comma-separated token counts each calibration subnet is timed at (default: --seq-len and 1/2, 1/4, "
        "1/8 of it, so the profile prices short sentences as well as long ones).",
    ),
    rounds: int = typer.Option(3, "--rounds", help=_ROUNDS_HELP),
    backbone: list[str] = typer.Option(["all-MiniLM-L6-v2"], "--backbone", help=_BACKBONE_HELP),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of the registry."),
    force: bool = typer.Option(False, "--force", help="Replace an existing profile."),
) -> None:
    """Measure the kernel set on this machine (warm-up, repeats, medians) and write a profile."""
    from bertnas.hardware.measure import GRIDS, anchor_arch
    from bertnas.hardware.profile import profiles_dir
    from bertnas.hardware.runtimes import RUNTIMES
    from bertnas.hardware.validate import CALIBRATION_SEED, sample_subnets
    from bertnas.locks import exclusive

    if runtime not in RUNTIMES:
        raise BertnasError(
            f"--runtime {runtime!r} cannot be measured here (choose {', '.join(RUNTIMES)}); for other targets "
            "use `bertnas profile kernels --export DIR` and `bertnas profile import`"
        )

    _positive(threads, "--threads")
    _positive(seq_len, "--seq-len")
    _positive(batch, "--batch")
    _positive(rounds, "--rounds")
    if grid not in GRIDS:
        raise BertnasError(f"--grid {grid!r}: choose one of {', '.join(GRIDS)}")
    if calibration < 0:
        raise BertnasError(f"--calibration {calibration}: must be 0 or more")
    lengths = _calibration_lengths(calibration_lengths, seq_len)
    target = out or profiles_dir() / f"{name}.yaml"
    if target.exists() and not force:
        raise BertnasError(f"{target} exists; pass --force to replace it or choose another --name")
    archs = sample_subnets(calibration, CALIBRATION_SEED, backbone) if calibration else []
    label = f"{calibration} random unified-space subnets of {'+'.join(backbone)}, seed {CALIBRATION_SEED}"
    with exclusive(target, "profile"):
        _measure_into(
            target,
            name,
            runtime,
            threads,
            seq_len,
            batch,
            cuda,
            GRIDS[grid](seq_len),
            archs,
            label,
            rounds,
            anchor_arch(backbone[0]),
            lengths,
        )


def _calibration_lengths(text: str | None, seq_len: int) -> tuple[int, ...] | None:
    """``--calibration-lengths 128,32,8``: token counts between 1 and ``seq_len`` (None: the default).

    Checked here, before the lock and the grid, with the option's own wording."""
    if text is None:
        return None
    try:
        lengths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        lengths = ()
    if not lengths or not all(1 <= length <= seq_len for length in lengths):
        raise BertnasError(
            f"--calibration-lengths {text!r}: give comma-separated token counts between 1 and --seq-len {seq_len} "
            f"(e.g. {seq_len},{seq_len // 4})"
        )
    return lengths


def _measure_into(
    target: Path,
    name: str,
    runtime: str,
    threads: int,
    seq_len: int,
    batch: int,
    cuda: bool,
    grid: object,
    archs: list,
    label: str,
    rounds: int,
    anchor: ArchConfig | None = None,
    lengths: tuple[int, ...] | None = None,
) -> None:
    """Measure into ``target``; the kernel families finished so far wait in a hidden checkpoint
    beside it, so a rerun after a kill times only the rest (removed once the profile is written)."""
    from bertnas.hardware.measure import Timing, measure_profile

    checkpoint = target.with_name(f".{target.name}.measure-checkpoint.json")
    profile = measure_profile(
        name,
        runtime,
        threads,
        seq_len=seq_len,
        batch=batch,
        cuda=cuda,
        grid=grid,
        calibration=archs,
        calibration_label=label if archs else "",
        timing=Timing(rounds=rounds),
        checkpoint=checkpoint,
        anchor=anchor,
        calibration_lengths=lengths,
    )
    profile.save(target)
    checkpoint.unlink(missing_ok=True)
    typer.echo(f"wrote {target}")
    if "calibration" in profile.evidence:
        typer.echo(f"calibration: {json.dumps(profile.evidence['calibration'])}")


@profile_app.command("predict")
def predict_command(
    device: str = typer.Option(..., "--device", help=_DEVICE_HELP),
    arch: Path = typer.Option(..., "--arch", help="Architecture JSON (no weights needed)."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Sequence length (the profile's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the per-layer breakdown."),
) -> None:
    """Predict the latency of ARCH on DEVICE."""
    from bertnas.arch import ArchConfig
    from bertnas.hardware import load_predictor

    predictor = load_predictor(device)
    config = ArchConfig.load(arch)
    result = predictor.breakdown(config, seq_len)
    info = {"device": predictor.profile.name, "provenance": predictor.profile.provenance, **result}
    info["seq_len"] = seq_len or predictor.profile.seq_len
    if as_json:
        typer.echo(json.dumps(info))
        return
    p = predictor.profile
    typer.echo(
        f"{info['latency_ms']:.3f} ms on {p.name} ({p.provenance}; {p.runtime}, {p.threads} threads, "
        f"batch {p.batch}, {info['seq_len']} tokens)"
    )


@profile_app.command("validate")
def validate_command(
    device: str = typer.Option(..., "--device", help=_DEVICE_HELP),
    samples: int = typer.Option(100, "--samples", help="Random subnets to measure (100)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (0)."),
    rounds: int = typer.Option(3, "--rounds", help=_ROUNDS_HELP),
    backbone: list[str] = typer.Option(["all-MiniLM-L6-v2"], "--backbone", help=_BACKBONE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (without the per-subnet points)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the full result (with points) as JSON here."),
    save_residuals: bool = typer.Option(
        False,
        "--save-residuals",
        help="Store the relative residuals in the profile file, for guaranteed budgets (--confidence).",
    ),
) -> None:
    """Measure random subnets end to end and compare with the predictor: MAPE, +-10 % share, Kendall tau."""
    import dataclasses
    import datetime

    from bertnas.atomic import atomic_write_text
    from bertnas.hardware import load_profile
    from bertnas.hardware.conformal import Residuals, relative_residuals
    from bertnas.hardware.measure import Timing
    from bertnas.hardware.validate import CALIBRATION_SEED, validate

    _positive(samples, "--samples")
    _positive(rounds, "--rounds")
    if seed == CALIBRATION_SEED:
        raise BertnasError(f"--seed {seed} is the seed the corrections were fitted on; choose another")
    profile = load_profile(device)
    if save_residuals and profile.provenance != "measured":
        raise BertnasError(
            f"--save-residuals: profile {profile.name!r} is {profile.provenance}, not measured on this machine; "
            "residuals must come from the device the profile describes"
        )
    result = validate(profile, samples, seed=seed, backbones=backbone, timing=Timing(rounds=rounds))
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    if save_residuals:
        points = result["points"]
        values = relative_residuals([p["predicted_ms"] for p in points], [p["measured_ms"] for p in points])
        label = (
            f"{len(points)} random unified-space subnets of {', '.join(backbone)}, seed {seed}, "
            f"{rounds} rounds, measured {datetime.date.today().isoformat()}"
        )
        residuals = Residuals(tuple(float(v) for v in values), label)
        dataclasses.replace(profile, residuals=residuals).save(profile.source)
        typer.echo(f"stored {len(values)} residuals in {profile.source}")
    summary = {k: v for k, v in result.items() if k != "points"}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"{summary['device']}: {summary['samples']} subnets, MAPE {summary['mape_pct']} %, "
        f"{summary['within_10pct']} % within +-10 %, Kendall tau {summary['kendall_tau']}, "
        f"worst {summary['max_abs_error_pct']} % ({summary['wall_seconds']} s)"
    )
    anchor = summary["anchor"]
    if "drift_corrected" in summary:
        d = summary["drift_corrected"]
        typer.echo(
            f"at the profile's speed (its anchor ran {anchor['now']['ms']:.3f} ms now, "
            f"{anchor['profile_ms']:.3f} ms when measured): MAPE {d['mape_pct']} %, "
            f"{d['within_10pct']} % within +-10 %, Kendall tau {d['kendall_tau']}, worst {d['max_abs_error_pct']} %"
        )
    else:
        typer.echo(f"anchor {anchor['now']['ms']:.3f} ms now; {anchor['note']}")


@profile_app.command("kernels")
def kernels_command(
    export: Path = typer.Option(..., "--export", help="Directory to write the kernel set to."),
    grid: str = typer.Option("default", "--grid", help="Kernel grid: default or tiny."),
    seq_len: int = typer.Option(128, "--seq-len", help="Sequence length (128)."),
    batch: int = typer.Option(1, "--batch", help="Batch size (1)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing directory."),
) -> None:
    """Export the kernel set as ONNX files + manifest + benchmark script for a device this machine cannot reach."""
    from bertnas.hardware.exchange import export_kernels
    from bertnas.hardware.measure import GRIDS

    if grid not in GRIDS:
        raise BertnasError(f"--grid {grid!r}: choose one of {', '.join(GRIDS)}")
    _positive(seq_len, "--seq-len")
    _positive(batch, "--batch")
    directory = export_kernels(export, GRIDS[grid](seq_len), batch=batch, seq_len=seq_len, force=force)
    typer.echo(f"wrote {directory}; on the target: python benchmark.py --threads N --out results.csv")


@profile_app.command("import")
def import_command(
    results: Path = typer.Argument(..., help="CSV written by the exported benchmark.py (family,shape,median_ms)."),
    name: str = typer.Option(..., "--name", help="Profile name; written to hardware_profiles/NAME.yaml."),
    device: str | None = typer.Option(None, "--device", help="Device description (the name)."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime the target ran (onnxruntime)."),
    threads: int = typer.Option(1, "--threads", help="Threads used on the target (1)."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Sequence length (largest measured)."),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of the registry."),
    force: bool = typer.Option(False, "--force", help="Replace an existing profile."),
) -> None:
    """Build an imported profile from a target's kernel timings."""
    from bertnas.hardware.exchange import import_results
    from bertnas.hardware.profile import profiles_dir

    _positive(threads, "--threads")
    target = out or profiles_dir() / f"{name}.yaml"
    if target.exists() and not force:
        raise BertnasError(f"{target} exists; pass --force to replace it or choose another --name")
    profile = import_results(results, name=name, device=device, runtime=runtime, threads=threads, seq_len=seq_len)
    profile.save(target)
    typer.echo(f"wrote {target}")


@profile_app.command("calibrate")
def calibrate_command(
    spec: Path = typer.Argument(..., help="Calibration spec (e.g. hardware_profiles/reference_models/pixel4.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of the registry (NAME from the spec)."),
) -> None:
    """Fit an analytic profile to published end-to-end latencies and print the fit table."""
    from bertnas.hardware.calibrate import calibrate, points_table
    from bertnas.hardware.profile import profiles_dir

    profile = calibrate(spec)
    target = out or profiles_dir() / f"{profile.name}.yaml"
    profile.save(target)
    typer.echo(points_table(profile))
    typer.echo(f"wrote {target}")
