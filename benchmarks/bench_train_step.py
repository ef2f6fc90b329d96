"""Training step cost: the supernet step against the dense fine-tuning step of the same model.

    python benchmarks/bench_train_step.py [--task sst2] [--steps 5] [--threads 2]

On the same SST-2 training batches (batch 32, length-bucketed, seed 42), times the dense
fine-tuning step of MiniLM (one forward and one backward pass) and the supernet training
step of each preset and recipe (a frozen-teacher forward plus one forward and one backward
pass per sampled subnet), through the probes the pipeline plans with
(``bertnas.training.probe``). Reports seconds per step, the ratio to the dense step,
forward/backward passes per step, examples/s and each preset's extrapolated training time.

Writes benchmarks/results/train_step_<task>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse

import torch
from common import host, write_results

from bertnas.supernet.backbone import DEFAULT_BACKBONE
from bertnas.training.finetune import PRESETS as TEACHER_PRESETS
from bertnas.training.finetune import FinetuneConfig
from bertnas.training.probe import probe_finetune, probe_supernet
from bertnas.training.supernet_train import PRESETS as SUPERNET_PRESETS
from bertnas.training.supernet_train import config_from


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--recipes", nargs="*", default=["families", "sandwich"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for preset, values in TEACHER_PRESETS.items():
        timing = probe_finetune(FinetuneConfig(task=args.task, glue_dir=args.glue_dir, **values), args.steps)
        rows.append({"kind": "finetune", "preset": preset, "recipe": "-", **timing.to_dict()})
        print(rows[-1], flush=True)
    for preset in SUPERNET_PRESETS:
        for recipe in args.recipes:
            config = config_from(args.task, DEFAULT_BACKBONE, preset, recipe=recipe, glue_dir=args.glue_dir)
            timing = probe_supernet(config, args.steps, backbone=DEFAULT_BACKBONE)
            rows.append({"kind": "supernet", "preset": preset, "recipe": recipe, **timing.to_dict()})
            print(rows[-1], flush=True)
    # the dense step of the same preset runs on the same first batches (same train subset and seed)
    dense = {r["preset"]: r["seconds_per_step"] for r in rows if r["kind"] == "finetune"}
    for row in rows:
        row["ratio_to_dense"] = row["seconds_per_step"] / dense[row["preset"]]

    print("\n| step | preset | recipe | s/step | x dense | fwd / bwd passes | examples/s | steps | est. total |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['preset']} | {r['recipe']} | {r['seconds_per_step']:.3f} | {r['ratio_to_dense']:.2f} "
            f"| {r['forward_passes']} / {r['backward_passes']} | {r['examples_per_second']:.0f} | {r['steps']} "
            f"| {r['total_seconds'] / 60:.1f} min |"
        )
    write_results(
        f"train_step_{args.task}",
        {
            "task": args.task,
            "backbone": DEFAULT_BACKBONE,
            "timed_steps": args.steps,
            "host": host(),
            "threads": torch.get_num_threads(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
