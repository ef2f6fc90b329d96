"""Teacher and supernet training on SST-2 with MiniLM, and weight-shared accuracy of subnets.

    python benchmarks/bench_training.py [--preset full] [--space unified] [--device cuda]

Steps (each reuses what an earlier run left, so the script can be rerun after an
interruption and resumes the supernet training from its last checkpoint):

1. teacher: ``bertnas finetune --task sst2`` (cached teacher directory);
2. supernet: ``bertnas supernet train --task sst2 --space SPACE --preset PRESET``;
3. dev accuracy of the teacher, the largest subnet, the 12 DynaBERT (m_w, m_d) points,
   5 retention-only (PoWER-BERT space) and 5 random unified subnets, by weight sharing;
4. evaluation throughput (sentences/s) and the padding share with/without bucketing.

Writes benchmarks/results/training_sst2_<preset>.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import write_results

from bertnas.data import load_task, padding_comparison, tokenize_split
from bertnas.paths import supernet_dir, teacher_dir
from bertnas.search.accuracy import SubnetEvaluator
from bertnas.space import load_space
from bertnas.supernet.backbone import DEFAULT_BACKBONE
from bertnas.training.common import hardware, pick_device
from bertnas.training.finetune import PRESETS as TEACHER_PRESETS
from bertnas.training.finetune import FinetuneConfig, finetune
from bertnas.training.supernet_train import SupernetTrainer, config_from, is_trained_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--space", default="unified")
    parser.add_argument("--device", default=None)
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--cache", default=None, help="directory for teacher and supernet [default: bertnas cache]")
    args = parser.parse_args()
    device = str(pick_device(args.device))
    task = "sst2"
    teacher = Path(args.cache) / "teacher" if args.cache else teacher_dir(DEFAULT_BACKBONE, task)
    if not (teacher / "metrics.json").is_file():
        config = FinetuneConfig(task=task, device=args.device, glue_dir=args.glue_dir, **TEACHER_PRESETS[args.preset])
        finetune(config, teacher)
    teacher_result = json.loads((teacher / "metrics.json").read_text())
    supernet = (
        Path(args.cache) / f"supernet-{args.space}-{args.preset}"
        if args.cache
        else supernet_dir(str(teacher), task, f"{args.space}-{args.preset}")
    )

    if not is_trained_supernet(supernet):
        config = config_from(
            task, str(teacher), args.preset, space=args.space, device=args.device, glue_dir=args.glue_dir
        )
        SupernetTrainer(config, supernet).train()
    training = json.loads((supernet / "metrics.json").read_text())

    evaluator = SubnetEvaluator.open(supernet, task=task, glue_dir=args.glue_dir, device=device)
    limits = evaluator.supernet.limits
    rows = []

    def score(group: str, name: str, arch) -> None:
        result = evaluator.evaluate(arch)
        rows.append(
            {
                "group": group,
                "name": name,
                "accuracy": result.metrics["accuracy"],
                "macs": result.macs,
                "params": result.params,
                "arch": arch.to_dict(),
            }
        )
        print(
            f"{group:10s} {name:28s} {result['metrics']['accuracy']:.4f} {result['macs'] / 1e9:.3f} GMACs", flush=True
        )

    score("full", "backbone shape", evaluator.supernet.full_arch())
    unified = load_space(args.space).bind(limits, backbone=DEFAULT_BACKBONE)
    score("largest", "largest of the space", unified.largest())
    dynabert = load_space("dynabert").bind(limits, backbone=DEFAULT_BACKBONE)
    for arch in dynabert.enumerate():
        values = dynabert.to_values(arch)
        score("dynabert", f"m_w={values.get('width', 1.0)}, m_d={values.get('depth', 1.0)}", arch)
    powerbert = load_space("powerbert").bind(limits, backbone=DEFAULT_BACKBONE)
    for i, arch in enumerate(powerbert.sample_many(5, seed=1)):
        retention = "/".join(f"{layer.retention:.2f}" for layer in arch.layers)
        score("retention", f"#{i} {retention}", arch)
    for i, arch in enumerate(unified.sample_many(5, seed=2)):
        score("unified", f"random #{i}", arch)

    # Evaluation throughput of a weight-shared subnet (uncached) and padding shares.
    dev = tokenize_split(load_task(task, "dev", args.glue_dir), evaluator.supernet.tokenizer)
    half = next(
        arch
        for arch in dynabert.enumerate()
        if dynabert.to_values(arch).get("width") == 0.5 and dynabert.to_values(arch).get("depth", 1.0) == 1.0
    )
    from bertnas.training.evaluate import evaluate_model

    evaluator.supernet.set_active_subnet(half)
    start = time.perf_counter()
    evaluate_model(evaluator.supernet, dev, device=device)
    throughput = len(dev) / (time.perf_counter() - start)
    padding = padding_comparison(dev.lengths, 32)

    teacher_acc = teacher_result["metrics"]["accuracy"]
    path = write_results(
        f"training_sst2_{args.preset}",
        {
            "preset": args.preset,
            "space": args.space,
            "device": device,
            "hardware": hardware(),
            "teacher": teacher_result,
            "supernet_training": training,
            "subnets": rows,
            "eval_throughput_sentences_per_s": throughput,
            "padding_share": padding,
        },
    )
    print("\n| group | subnet | dev acc | vs teacher | GMACs (128 tok) |\n|---|---|---:|---:|---:|")
    print(f"| teacher | fine-tuned MiniLM | {teacher_acc:.2%} | | |")
    for row in rows:
        delta = (row["accuracy"] - teacher_acc) * 100
        print(f"| {row['group']} | {row['name']} | {row['accuracy']:.2%} | {delta:+.1f} | {row['macs'] / 1e9:.2f} |")
    within3 = np.mean([(teacher_acc - r["accuracy"]) * 100 <= 3 for r in rows if r["group"] == "dynabert"])
    print(f"\nDynaBERT grid points within 3 points of the teacher: {within3:.0%}")
    print(
        f"teacher training {teacher_result['train_seconds'] / 60:.1f} min, supernet training "
        f"{training['train_seconds'] / 60:.1f} min on {device}"
    )
    print(f"eval throughput (DynaBERT 0.5 width, weight-shared): {throughput:.0f} sentences/s; padding share {padding}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
