"""Summarise bench_union.py results over seeds: does the union pay off at every budget? (issue 12)

    python benchmarks/union_summary.py benchmarks/results/union_mrpc_mrpc-budget-attention_seeds.json [MORE.json ...]

Reads one or more result files of ``bench_union.py`` for the same task and supernet (a benchmark
run in parts writes one file per ``--tag``; a label present in several files is taken from the
last one given, e.g. a search that an earlier part left unfinished). Prints markdown:

1. one row per search label (``SPACE/SAMPLER[:VARIANT]@SEED``): best metric at <= 25/33/50/75 %
   of the full model's latency, hypervolume, degenerate trials;
2. one row per search without its seed: mean over the seeds run, and the range;
3. the verdict: at each budget, the unified ``surrogate`` search's seed mean against the best
   single-family row's seed mean (tied = within 0.2 points, the issue's margin), then seed by
   seed against the single-family searches run with the same seed.

Every figure is on the split the results file names (the search split), x 100.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

FRACTIONS = ("0.25", "0.33", "0.5", "0.75")
FAMILIES = ("dynabert", "powerbert", "schubert", "mobilebert")
TIE = 0.2  # points


def load(paths: list[Path]) -> tuple[dict, dict[str, dict]]:
    header, searches = None, {}
    for path in paths:
        results = json.loads(path.read_text())
        if header is None:
            header = results
        elif (results["task"], results["supernet"]) != (header["task"], header["supernet"]):
            raise SystemExit(f"{path}: task/supernet differ from {paths[0]}; summarise one benchmark at a time")
        for entry in results["searches"]:
            label = entry["search"] if "@" in entry["search"] else f"{entry['search']}@{entry['seed']}"
            searches[label] = entry
    return header, searches


def best(entry: dict, fraction: str) -> float | None:
    point = entry["best_at"].get(fraction)
    return None if point is None else 100 * point["metric"]


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summarise(header: dict, searches: dict[str, dict]) -> str:
    lines = [
        f"{header['task']} ({header['metric']} x 100 on the {header['split']} split of "
        f"{header['search_examples']} examples), supernet {header['supernet']}, {header['evaluations']} "
        f"evaluations per search, {header['device']} (full model {header['full_latency_ms']:.1f} ms); "
        f"teacher {100 * header['teacher']:.2f}, {header['baseline']['kind']} baseline "
        f"{100 * header['baseline']['score']:.2f}",
        "",
        "| search | "
        + " | ".join(f"best <= {round(100 * float(f))} %" for f in FRACTIONS)
        + " | hypervolume | degenerate | wall s |",
        "|---|" + "---:|" * (len(FRACTIONS) + 3),
    ]
    groups: dict[str, list[dict]] = defaultdict(list)
    for label, entry in searches.items():
        cells = [cell(best(entry, f)) for f in FRACTIONS]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {entry['hypervolume']:.3f} | {entry['degenerate']} | {entry['wall_time_s']:.0f} |"
        )
        groups[label.partition("@")[0]].append(entry)

    lines += [
        "",
        "| search (seeds) | " + " | ".join(f"<= {round(100 * float(f))} %" for f in FRACTIONS) + " | hypervolume |",
        "|---|" + "---:|" * (len(FRACTIONS) + 1),
    ]
    means: dict[str, dict[str, float | None]] = {}
    for name, entries in groups.items():
        row, means[name] = [], {}
        for fraction in FRACTIONS:
            values = [best(e, fraction) for e in entries]
            if any(v is None for v in values):  # a seed found nothing at that latency
                means[name][fraction] = None
                row.append("-" if all(v is None for v in values) else "- (some seeds)")
                continue
            mean = sum(values) / len(values)
            means[name][fraction] = mean
            row.append(f"{mean:.2f}" + (f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""))
        hvs = [e["hypervolume"] for e in entries]
        means[name]["hv"] = sum(hvs) / len(hvs)
        hv = f"{means[name]['hv']:.3f}" + (f" ({min(hvs):.3f}-{max(hvs):.3f})" if len(hvs) > 1 else "")
        lines.append(f"| {name} ({len(entries)}) | " + " | ".join(row) + f" | {hv} |")

    union = means.get("unified/surrogate")
    families = {n: m for n, m in means.items() if n.split("/")[0] in FAMILIES}
    if union and families:
        lines += ["", "Verdict (seed means; tied = within 0.2 points):", ""]
        for fraction in FRACTIONS:
            rivals = {n: m[fraction] for n, m in families.items() if m[fraction] is not None}
            if not rivals:
                lines.append(f"- <= {round(100 * float(fraction))} %: no single family reaches it")
                continue
            rival = max(rivals, key=rivals.get)
            mine = union[fraction]
            if mine is None:
                lines.append(
                    f"- <= {round(100 * float(fraction))} %: unified has no point; best family {rival} "
                    f"{rivals[rival]:.2f} (**missed**)"
                )
                continue
            gap = mine - rivals[rival]
            verdict = "best" if gap > TIE else "tied" if gap >= -TIE else "**missed**"
            lines.append(
                f"- <= {round(100 * float(fraction))} %: unified {mine:.2f} vs {rival} {rivals[rival]:.2f} "
                f"({gap:+.2f}): {verdict}"
            )
        rival = max(families, key=lambda n: families[n]["hv"])
        gap = union["hv"] / families[rival]["hv"] - 1
        lines.append(
            f"- hypervolume: unified {union['hv']:.3f} vs {rival} {families[rival]['hv']:.3f} "
            f"({100 * gap:+.0f} %): {'best' if gap > 0 else '**missed**'}"
        )
        lines += ["", "Seed by seed (each unified search against the single-family searches of the same seed):", ""]
        for label in sorted(k for k in searches if k.partition("@")[0] == "unified/surrogate"):
            seed = label.partition("@")[2]
            rivals_of_seed = {
                k: e for k, e in searches.items() if k.partition("@")[2] == seed and k.split("/")[0] in FAMILIES
            }
            cells = []
            for fraction in FRACTIONS:
                scores = {k: best(e, fraction) for k, e in rivals_of_seed.items() if best(e, fraction) is not None}
                mine = best(searches[label], fraction)
                if not scores or mine is None:
                    cells.append(f"{round(100 * float(fraction))} %: -")
                    continue
                rival = max(scores, key=scores.get)
                gap = mine - scores[rival]
                verdict = "best" if gap > TIE else "tied" if gap >= -TIE else "missed"
                cells.append(f"{round(100 * float(fraction))} %: {gap:+.2f} vs {rival.split('/')[0]} ({verdict})")
            lines.append(f"- {label}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench_union.py result files (one task, one supernet)")
    args = parser.parse_args()
    print(summarise(*load(args.results)))


if __name__ == "__main__":
    main()
