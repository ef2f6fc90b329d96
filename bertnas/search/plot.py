"""The front plot: metric vs. predicted latency, front highlighted, budget line, references."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bertnas.atomic import atomic_write_bytes  # noqa: E402
from bertnas.search.objectives import latency_column  # noqa: E402
from bertnas.search.pareto import degenerate_mask  # noqa: E402


def plot_front(
    trials: pd.DataFrame,
    front: pd.DataFrame,
    device: str,
    budget_ms: float | None,
    metric_name: str,
    references: list[dict[str, Any]] | None,
    path: str | Path,
    title: str | None = None,
    baseline: dict[str, Any] | None = None,
) -> None:
    """Write the PNG at ``path`` atomically. ``baseline``: the input-ignoring score, drawn as a
    horizontal line; degenerate subnets (constant predictions) are drawn as crosses."""
    column = latency_column(device)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    done = trials[(trials["state"] == "COMPLETE") & trials["metric"].notna()]
    flags = degenerate_mask(done)
    ax.scatter(
        done.loc[~flags, column],
        done.loc[~flags, "metric"],
        s=12,
        color="#9aa5b1",
        alpha=0.7,
        label="evaluated subnets",
    )
    if flags.any():
        ax.scatter(
            done.loc[flags, column],
            done.loc[flags, "metric"],
            s=18,
            marker="x",
            color="#6c757d",
            label="degenerate (constant predictions)",
        )
    if baseline is not None:
        ax.axhline(baseline["score"], color="#6c757d", linestyle=":", linewidth=1, label=f"{baseline['kind']} baseline")
    if not front.empty:
        ax.step(front[column], front["metric"], where="post", color="#d1495b", linewidth=1.2)
        ax.scatter(front[column], front["metric"], s=28, color="#d1495b", zorder=3, label="Pareto front")
        if "dev_metric" in front and front["dev_metric"].notna().any():
            ax.scatter(
                front[column],
                front["dev_metric"],
                s=34,
                facecolors="none",
                edgecolors="#d1495b",
                linewidth=1.0,
                zorder=3,
                label="front on dev (report)",
            )
    for point in references or []:
        if device not in point["latency_ms"]:
            continue
        is_full = point["label"] == "full"
        ax.scatter(
            point["latency_ms"][device],
            point["metric"],
            marker="*" if is_full else "D",
            s=90 if is_full else 22,
            color="#00798c" if is_full else "#edae49",
            edgecolor="black",
            linewidth=0.4,
            zorder=4,
        )
    # One legend entry per reference kind.
    if references:
        ax.scatter([], [], marker="D", s=22, color="#edae49", edgecolor="black", linewidth=0.4, label="DynaBERT grid")
        ax.scatter([], [], marker="*", s=90, color="#00798c", edgecolor="black", linewidth=0.4, label="full model")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="black", linestyle="--", linewidth=1, label=f"budget {budget_ms:.3g} ms")
    ax.set_xlabel(f"predicted latency on {device} (ms)")
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"{metric_name} vs. latency on {device}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Lay ``fig`` out, write it as a PNG atomically, and close it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
