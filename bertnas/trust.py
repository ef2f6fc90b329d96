"""How far to trust a supernet: does its weight-shared ranking predict the fine-tuned one?

The whole search rests on the supernet ranking subnets the way training them as themselves
would. :func:`trust_report` picks ``k`` subnets of a search run spread over its trials (front
points and off-front ones, cheap to expensive), fine-tunes each
(:mod:`bertnas.training.subnet_finetune`; shared with ``bertnas finetune-subnets``) and
compares weight-shared against fine-tuned accuracy on the dev split, which neither the
search (search split) nor fine-tuning's early stopping (search split) looked at:

- Kendall's tau and Spearman's rho between the two accuracies;
- the fine-tuning gain (fine-tuned minus weight-shared): mean, spread, range;
- how many points of the weight-shared front of the ``k`` stay on their fine-tuned front.

``RUN/trust.json`` holds the figures and every point; ``RUN/trust.png`` draws them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write_text
from bertnas.errors import BertnasError
from bertnas.search.objectives import latency_column
from bertnas.search.pareto import degenerate_mask
from bertnas.search.plot import save_figure
from bertnas.training.subnet_finetune import Selected, SubnetFinetuneConfig, finetune_run, finetuned_table

TRUST_JSON = "trust.json"
TRUST_PNG = "trust.png"


def pick_spread(run: Any, device: str, k: int) -> list[Selected]:
    """``k`` evaluated, non-degenerate trials: up to half from the device's front (spread along
    it), the rest off the front at evenly spaced latency quantiles; fastest first."""
    if k < 3:
        raise BertnasError(f"--n {k}: a rank correlation needs at least 3 subnets")
    trials = run.with_device(device)
    column = latency_column(device)
    done = trials[(trials["state"] == "COMPLETE") & trials["metric"].notna() & trials["config"].notna()]
    done = done[~degenerate_mask(done)].drop_duplicates("arch_hash").sort_values(column)
    if len(done) < k:
        raise BertnasError(
            f"--n {k}: {run.directory} has only {len(done)} distinct evaluated, non-degenerate trials; "
            "ask for fewer or let the search run longer"
        )
    front = run.pareto(device)
    front = front[front["arch_hash"].isin(done["arch_hash"])].sort_values(column)
    on_front = front.iloc[_evenly(len(front), min(len(front), k // 2 + k % 2))]
    rest = done[~done["arch_hash"].isin(on_front["arch_hash"])]
    off_front = rest.iloc[_evenly(len(rest), k - len(on_front))]
    picked = pd.concat([on_front, off_front]).sort_values(column)
    return [Selected(int(row["number"]), ArchConfig.from_json(row["config"])) for _, row in picked.iterrows()]


def _evenly(n: int, count: int) -> list[int]:
    """``count`` positions of ``0..n-1`` spread evenly, both ends included."""
    if count <= 0 or n == 0:
        return []
    if count >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, count)})


def front_indices(latency: np.ndarray, metric: np.ndarray) -> set[int]:
    """Positions on the Pareto front of (lower latency, higher metric)."""
    kept = set()
    for i in range(len(latency)):
        dominated = any(
            latency[j] <= latency[i] and metric[j] >= metric[i] and (latency[j] < latency[i] or metric[j] > metric[i])
            for j in range(len(latency))
        )
        if not dominated:
            kept.add(i)
    return kept


def trust_figures(table: pd.DataFrame, latency: dict[int, float], split: str = "dev") -> dict[str, Any]:
    """The report's figures from fine-tuned results (``finetuned.csv`` rows) on ``split``."""
    from scipy import stats

    shared = table[f"shared_{split}_metric"].to_numpy(float)
    tuned = table[f"finetuned_{split}_metric"].to_numpy(float)
    gain = tuned - shared
    times = np.array([latency[int(t)] for t in table["trial"]])
    tau = stats.kendalltau(shared, tuned).statistic
    rho = stats.spearmanr(shared, tuned).statistic
    shared_front = front_indices(times, shared)
    tuned_front = front_indices(times, tuned)
    trials = [int(t) for t in table["trial"]]
    return {
        "split": split,
        "n": len(table),
        "kendall_tau": None if math.isnan(tau) else float(tau),
        "spearman_rho": None if math.isnan(rho) else float(rho),
        "gain": {
            "mean": float(gain.mean()),
            "std": float(gain.std(ddof=1)) if len(gain) > 1 else 0.0,
            "min": float(gain.min()),
            "max": float(gain.max()),
        },
        "front": {
            "shared": sorted(trials[i] for i in shared_front),
            "finetuned": sorted(trials[i] for i in tuned_front),
            "kept": len(shared_front & tuned_front),
            "of": len(shared_front),
        },
    }


def trust_report(
    run: Any,
    device: str,
    k: int,
    config: SubnetFinetuneConfig,
    supernet_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``k`` spread subnets of ``run`` (reusing ones already fine-tuned with the same
    settings), write ``trust.json`` and ``trust.png``; the report."""

    picked = pick_spread(run, device, k)
    finetune_run(run, picked, config, supernet_dir, progress=progress)
    wanted = {item.trial for item in picked}
    table = finetuned_table(run.directory)
    table = table[table["trial"].isin(wanted)].sort_values("trial").reset_index(drop=True)
    trials = run.with_device(device).set_index("number")
    column = latency_column(device)
    latency = {trial: float(trials.loc[trial, column]) for trial in wanted}
    report = {
        "device": device,
        "k": len(table),
        "finetune": {key: getattr(config, key) for key in ("epochs", "max_steps", "lr", "batch_size", "seed")},
        **trust_figures(table, latency, "dev"),
        "search_split": trust_figures(table, latency, "search"),
        "points": [
            {
                "trial": int(row["trial"]),
                "latency_ms": latency[int(row["trial"])],
                "shared_dev_metric": float(row["shared_dev_metric"]),
                "finetuned_dev_metric": float(row["finetuned_dev_metric"]),
                "shared_search_metric": float(row["shared_search_metric"]),
                "finetuned_search_metric": float(row["finetuned_search_metric"]),
                "seconds": float(row["seconds"]),
            }
            for _, row in table.iterrows()
        ],
    }
    atomic_write_text(run.directory / TRUST_JSON, json.dumps(report, indent=2) + "\n")
    plot_trust(report, run.directory / TRUST_PNG, run.metric_name)
    return report


def plot_trust(report: dict[str, Any], path: Path, metric_name: str) -> None:
    """Weight-shared vs. fine-tuned dev metric, the diagonal, weight-shared front points marked."""
    import matplotlib.pyplot as plt  # the Agg backend, as bertnas.search.plot selects it

    points = report["points"]
    shared = [p["shared_dev_metric"] for p in points]
    tuned = [p["finetuned_dev_metric"] for p in points]
    front = set(report["front"]["shared"])
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    low, high = min(shared + tuned), max(shared + tuned)
    pad = 0.02 * max(high - low, 1e-3)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="#6c757d", linestyle="--", linewidth=1)
    marks = [p["trial"] in front for p in points]
    ax.scatter(
        [s for s, m in zip(shared, marks, strict=True) if not m],
        [t for t, m in zip(tuned, marks, strict=True) if not m],
        s=24,
        color="#9aa5b1",
        label="off the weight-shared front",
    )
    ax.scatter(
        [s for s, m in zip(shared, marks, strict=True) if m],
        [t for t, m in zip(tuned, marks, strict=True) if m],
        s=36,
        color="#d1495b",
        label="on the weight-shared front",
    )
    tau = report["kendall_tau"]
    title = f"Kendall tau {tau:.2f}" if tau is not None else "Kendall tau undefined"
    ax.set_title(f"{title}, mean gain {report['gain']['mean']:+.3f} ({report['k']} subnets, {report['device']})")
    ax.set_xlabel(f"weight-shared dev {metric_name}")
    ax.set_ylabel(f"fine-tuned dev {metric_name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
