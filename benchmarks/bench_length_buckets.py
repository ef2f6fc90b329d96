"""Dev accuracy of fine-tuned subnets by sentence length, with and without their token retention.

    python benchmarks/bench_length_buckets.py RUN/finetuned/trial-0036 RUN/finetuned/trial-0081 [--glue-dir DIR]
    python benchmarks/bench_length_buckets.py --rerank RUN [--share 0.25] [--top 15]

For each compact model directory (``bertnas finetune-subnets`` output): SST-2 dev accuracy on all
sentences, on those under 15 words and on those of 15 or more, then the same weights with every
layer's retention set to 1.0 (every token kept), to tell a retention loss from a capacity loss.
Prints markdown; writes benchmarks/results/length_buckets_sst2.json.

``--rerank RUN``: would a search split of deployment-length sentences pick another subnet? The
``--top`` best non-degenerate trials of the search in RUN under ``--share`` of the full model's
pixel4 latency, scored (weight-shared) on the search split's sentences of 15 or more words
only, next to their score on the whole search split (what the search picked on). Dev is not
used. Writes benchmarks/results/length_rerank_sst2.json. Needs ``BERTNAS_CACHE`` where the
run's supernet is cached.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from common import write_results

from bertnas.data.batching import Collator
from bertnas.data.glue import load_task, tokenize_split
from bertnas.model.compact import CompactBert, CompactConfig

LONG = 15  # words


def predict(model: CompactBert, data, batch: int = 32) -> np.ndarray:
    collate, out = Collator(model.config.pad_token_id), []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(data), batch):
            inputs = collate([data[i] for i in range(start, min(start + batch, len(data)))])
            inputs.pop("labels")
            out.append(model(**inputs).logits.argmax(-1).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--rerank", metavar="RUN", help="re-rank RUN's cheap trials on long search-split sentences")
    parser.add_argument("--share", type=float, default=0.25, help="with --rerank: at most this share of full latency")
    parser.add_argument("--top", type=int, default=15, help="with --rerank: this many best trials")
    args = parser.parse_args()
    if args.rerank:
        rerank(Path(args.rerank), args.share, args.top, args.glue_dir)
        return
    if not args.models:
        parser.error("give model directories, or --rerank RUN")
    from transformers import AutoTokenizer

    split = load_task("sst2", "dev", args.glue_dir)
    words = np.array([len(e.text_a.split()) for e in split.examples])
    labels = np.array([e.label for e in split.examples])
    rows = []
    for directory in args.models:
        model = CompactBert.from_pretrained(directory)
        data = tokenize_split(split, AutoTokenizer.from_pretrained(directory), use_cache=False)
        arch = model.arch
        kept = arch.replace(layers=tuple(dataclasses.replace(layer, retention=1.0) for layer in arch.layers))
        config = CompactConfig(kept)
        config.pad_token_id = model.config.pad_token_id
        every_token = CompactBert(config)
        every_token.load_state_dict(model.state_dict())
        for label, net in (("as searched", model), ("retention off", every_token)):
            right = predict(net, data) == labels
            rows.append(
                {
                    "model": Path(directory).name,
                    "variant": label,
                    "all": round(100 * float(right.mean()), 2),
                    f"under {LONG} words": round(100 * float(right[words < LONG].mean()), 2),
                    f"{LONG}+ words": round(100 * float(right[words >= LONG].mean()), 2),
                }
            )
    results = {
        "split": "SST-2 dev (reported only; nothing selected on it)",
        "sentences": {f"under {LONG} words": int((words < LONG).sum()), f"{LONG}+ words": int((words >= LONG).sum())},
        "rows": rows,
    }
    write_results("length_buckets_sst2", results)
    print(f"| model | variant | all | under {LONG} words | {LONG}+ words |\n|---|---|---:|---:|---:|")
    for row in rows:
        short, long = row[f"under {LONG} words"], row[f"{LONG}+ words"]
        print(f"| {row['model']} | {row['variant']} | {row['all']} | {short} | {long} |")


def rerank(run_dir: Path, share: float, top: int, glue_dir: str | None) -> None:
    from bertnas.arch import ArchConfig
    from bertnas.data.holdout import SearchSplitSpec, check_record, make_holdout
    from bertnas.hardware import load_predictor
    from bertnas.search import SearchRun
    from bertnas.search.accuracy import SubnetEvaluator
    from bertnas.search.objectives import latency_column
    from bertnas.search.pareto import degenerate_mask
    from bertnas.space import load_space
    from bertnas.training.evaluate import evaluate_predictions, require_search_split, take

    run = SearchRun.open(run_dir)
    evaluator = SubnetEvaluator.open(run.supernet_dir(), glue_dir=glue_dir, use_cache=False)
    # the search split's own sentences, in the evaluator's order, to count their words
    record = require_search_split(run.supernet_dir(), evaluator.data.task)
    loaded = load_task(evaluator.data.task.name, "train", glue_dir)
    labels = np.array([example.label for example in loaded.examples])
    holdout = make_holdout(labels, SearchSplitSpec.from_dict(record["spec"]), loaded.fingerprint)
    check_record(record, holdout, "the run's supernet")
    words = np.array([len(loaded.examples[int(i)].text_a.split()) for i in holdout.indices])
    long_data = take(evaluator.data, np.where(words >= LONG)[0])
    full_ms = float(load_predictor("pixel4").predict(load_space("unified").bind(evaluator.supernet.limits).full()))
    column = latency_column("pixel4")
    trials = run.trials[~degenerate_mask(run.trials)]
    trials = trials[trials[column] <= share * full_ms].sort_values(["metric", column], ascending=[False, True])
    rows = []
    for _, trial in trials.head(top).iterrows():
        evaluator.supernet.set_active_subnet(ArchConfig.from_json(trial["config"]))
        metrics, _, _ = evaluate_predictions(evaluator.supernet, long_data, evaluator.batch_size)
        rows.append(
            {
                "trial": int(trial["number"]),
                "latency_ms": round(float(trial[column]), 2),
                "search_split": round(100 * float(trial["metric"]), 2),
                f"search_split_{LONG}+_words": round(100 * float(metrics[evaluator.data.task.main_metric]), 2),
            }
        )
    long_key = f"search_split_{LONG}+_words"
    results = {
        "split": f"SST-2 search split (train held out; weight-shared), all and its sentences of {LONG}+ words",
        "run": run_dir.name,
        "share_of_full_pixel4_latency": share,
        "full_pixel4_ms": round(full_ms, 2),
        "sentences": {"all": len(words), f"{LONG}+ words": int((words >= LONG).sum())},
        "mean_words": round(float(words.mean()), 2),
        "rows": rows,
        "picked_on_all": rows[0]["trial"] if rows else None,
        "picked_on_long": max(rows, key=lambda r: r[long_key])["trial"] if rows else None,
    }
    write_results("length_rerank_sst2", results)
    print(f"| trial | pixel4 ms | search split | search split, {LONG}+ words |\n|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['trial']} | {row['latency_ms']} | {row['search_split']} | {row[long_key]} |")


if __name__ == "__main__":
    main()
