"""Which subnets of a search run to export: ``pareto``, ``trial:N``, ``best-under:40ms`` or
``reference:NAME`` (a reference point of the plot: ``full``, ``dynabert-0.5-1.0``, ...)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.export.package import Candidate
from bertnas.search.budget import format_ms, parse_budget
from bertnas.search.objectives import latency_column
from bertnas.search.pareto import degenerate_mask
from bertnas.search.results import FrontPoint

SELECT_HELP = (
    "pareto (the device's front under its budget), trial:N, best-under:40ms, or reference:NAME "
    "(a reference point: full, dynabert-0.5-1.0, ...)"
)


def select_candidates(
    run: Any, device: str, select: str, allow_degenerate: bool = False, confidence: float | None = None
) -> list[Candidate]:
    """Candidates from ``run`` (a :class:`bertnas.search.run.SearchRun`) on ``device``.

    ``pareto``: the device's front under the search's budget for it (no budget if the
    search did not target the device), fastest first. ``trial:N``: one evaluated trial.
    ``best-under:X``: the best metric among evaluated trials predicted at most X on the
    device (ties: the faster one).

    With ``confidence`` the budget of ``pareto`` and ``best-under`` is guaranteed: a subnet
    qualifies when its conformal upper bound (:mod:`bertnas.hardware.conformal`) meets it.

    Degenerate subnets (constant predictions on the evaluation data) are never
    recommended: ``pareto`` leaves them out, ``best-under`` skips them and ``trial:N``
    refuses one, unless ``allow_degenerate``.
    """

    select = select.strip()
    column = latency_column(device)
    if select.startswith("reference:"):
        return [_reference_candidate(run, select, allow_degenerate)]
    if select == "pareto":
        rows = run.pareto(device, run.guaranteed_budget(device, None, confidence)[0])
        if not allow_degenerate and not rows.empty:
            flagged = degenerate_mask(rows)
            if flagged.all():
                raise BertnasError(
                    f"every point of the {device} front of {run.directory} predicts one constant output "
                    "(degenerate: no better than ignoring the input); train the supernet longer or with another "
                    "recipe, or pass --allow-degenerate to export them anyway"
                )
            rows = rows[~flagged]
        if rows.empty:
            budget = run.budgets_ms.get(device)
            raise BertnasError(
                f"the {device} front of {run.directory} is empty"
                + (f" under its budget {format_ms(budget)}" if budget is not None else "")
                + "; let the search run more trials or pick one with --select trial:N"
            )
    elif select.startswith("trial:"):
        number = _trial_number(select)
        trials = run.with_device(device)
        rows = trials[trials["number"] == number]
        if rows.empty:
            raise BertnasError(f"--select {select}: {run.directory} has no trial {number}")
        if rows.iloc[0]["state"] != "COMPLETE" or pd.isna(rows.iloc[0]["metric"]):
            raise BertnasError(
                f"--select {select}: trial {number} was not evaluated (state {rows.iloc[0]['state']}); "
                "pick an evaluated trial (see trials.csv)"
            )
        if not allow_degenerate and degenerate_mask(rows).iloc[0]:
            raise BertnasError(
                f"--select {select}: trial {number} is degenerate (one constant prediction for every example); "
                "pick another trial, or pass --allow-degenerate to export it anyway"
            )
    elif select.startswith("best-under:"):
        requested = parse_budget(select.removeprefix("best-under:"))
        budget = run.guaranteed_budget(device, requested, confidence)[0]
        trials = run.with_device(device)
        done = trials[(trials["state"] == "COMPLETE") & trials["metric"].notna() & (trials[column] <= budget)]
        if not allow_degenerate:
            done = done[~degenerate_mask(done)]
        if done.empty:
            fastest = trials.loc[trials["state"] == "COMPLETE", column].min()
            hint = f" (the fastest evaluated trial is {format_ms(fastest)} there)" if pd.notna(fastest) else ""
            bound = f" (the {confidence:g} bound of {format_ms(requested)})" if confidence is not None else ""
            raise BertnasError(
                f"--select {select}: no evaluated trial is predicted under {format_ms(budget)}{bound} on {device}{hint}"
            )
        rows = done.sort_values(["metric", column], ascending=[False, True]).head(1)
    else:
        raise BertnasError(f"--select {select!r} is not understood; use {SELECT_HELP}")
    return [_candidate(row, run) for _, row in rows.iterrows()]


def reference_name(label: str) -> str:
    """The ``--select reference:NAME`` name of a reference point: ``dynabert w0.5 d1.0`` ->
    ``dynabert-0.5-1.0``, ``full`` -> ``full``."""
    return label.replace(" w", "-").replace(" d", "-").replace(" ", "-")


def _reference_candidate(run: Any, select: str, allow_degenerate: bool) -> Candidate:
    wanted = select.removeprefix("reference:").strip()
    references = {reference_name(point["label"]): point for point in run.references}
    if not references:
        raise BertnasError(
            f"--select {select}: {run.directory} has no reference points (the search ran with --no-references)"
        )
    point = references.get(wanted) or next((p for p in references.values() if p["label"] == wanted), None)
    if point is None:
        raise BertnasError(f"--select {select}: no reference point {wanted!r}; choose one of {', '.join(references)}")
    if point.get("degenerate") and not allow_degenerate:
        raise BertnasError(
            f"--select {select}: the reference point is degenerate (one constant prediction for every example); "
            "pass --allow-degenerate to export it anyway"
        )
    arch = ArchConfig.from_dict(json.loads(point["config"]), f"reference {wanted} config")
    return Candidate(
        name=f"reference-{reference_name(point['label'])}",
        arch=arch,
        metric=run.dev_metric(arch.hash(), float(point["metric"])),
        search_metric=float(point["metric"]),
    )


def _trial_number(select: str) -> int:
    text = select.removeprefix("trial:")
    try:
        number = int(text)
    except ValueError:
        raise BertnasError(f"--select {select}: {text!r} is not a trial number; write e.g. trial:12") from None
    if number < 0:
        raise BertnasError(f"--select {select}: trial numbers start at 0")
    return number


def _candidate(row: pd.Series, run: Any) -> Candidate:
    """The trial of ``row`` as a candidate; its metric is the one on dev (what export recomputes):
    the run's dev report, or the trial's own metric when the search scored on dev."""
    if not isinstance(row.get("config"), str):
        raise BertnasError(f"trial {int(row['number'])} stores no architecture config; it cannot be exported")
    point = FrontPoint.from_row(row)
    arch = ArchConfig.from_dict(point.config, f"trial {point.trial} config")
    metric = run.dev_metric(str(point.arch_hash), point.metric)
    return Candidate(
        name=f"trial-{point.trial:04d}", arch=arch, metric=metric, trial=point.trial, search_metric=point.metric
    )


def with_finetuned_weights(run: Any, candidate: Candidate, weights: str = "auto") -> Candidate:
    """``candidate`` shipping its fine-tuned weights (``RUN/finetuned/trial-NNNN``) when ``weights``
    is ``finetuned`` (they must exist) or ``auto`` (where they exist); as is for ``supernet``."""
    from dataclasses import replace

    from bertnas.training.subnet_finetune import finetuned_dir, read_result

    if weights == "supernet" or candidate.trial is None:
        return candidate
    directory = finetuned_dir(run.directory, candidate.trial)
    result = read_result(directory)
    if result is None or result.get("arch_hash") != candidate.arch.hash():
        if weights == "finetuned":
            raise BertnasError(
                f"--weights finetuned: trial {candidate.trial} has no fine-tuned model in {directory.parent}; run "
                f"`bertnas finetune-subnets {run.directory} --select trial:{candidate.trial}` first, or pass "
                "--weights supernet"
            )
        return candidate
    return replace(candidate, weights=directory, metric=float(result["finetuned"]["dev_metric"]))
