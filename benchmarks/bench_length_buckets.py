"""Dev accuracy of fine-tuned subnets by sentence length, with and without their token retention.

    python benchmarks/bench_length_buckets.py RUN/finetuned/trial-0036 RUN/finetuned/trial-0081 [--glue-dir DIR]

For each compact model directory (``bertnas finetune-subnets`` output): SST-2 dev accuracy on all
sentences, on those under 15 words and on those of 15 or more, then the same weights with every
layer's retention set to 1.0 (every token kept), to tell a retention loss from a capacity loss.
Prints markdown; writes benchmarks/results/length_buckets_sst2.json.
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
    parser.add_argument("models", nargs="+")
    parser.add_argument("--glue-dir", default=None)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
