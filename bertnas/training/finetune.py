"""Teacher fine-tuning: the backbone trained on one GLUE task.

The teacher is a plain Hugging Face ``BertForSequenceClassification`` directory (any
tool can load it) with ``metrics.json`` (its dev metrics) and ``run.json`` (command,
configuration, versions). Supernet training starts from it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bertnas.atomic import atomic_directory
from bertnas.data import get_task, load_task, make_dataloader, tokenize_split
from bertnas.errors import BertnasError
from bertnas.supernet.backbone import DEFAULT_BACKBONE, load_backbone
from bertnas.training.common import linear_schedule, make_optimizer, pick_device, run_record, set_seed, write_json
from bertnas.training.evaluate import evaluate_model, subset_of


@dataclass
class FinetuneConfig:
    task: str
    backbone: str = DEFAULT_BACKBONE
    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_length: int | None = None  # None: the task's default
    train_subset: int | None = None
    dev_subset: int | None = None
    seed: int = 42
    device: str | None = None
    glue_dir: str | None = None


PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on 2 CPU cores
    "quick": {"epochs": 1.0, "train_subset": 4000, "dev_subset": None, "lr": 1e-4},
    "full": {"epochs": 2.0, "train_subset": None, "dev_subset": None, "lr": 5e-5},
}


def loss_for(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def finetune(config: FinetuneConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Fine-tune ``config.backbone`` on ``config.task``; write the teacher directory ``out``."""
    out = Path(out)
    if out.exists() and not force:
        raise BertnasError(f"{out} already exists; pass --force to retrain it, or use it as --teacher")
    info = get_task(config.task)
    set_seed(config.seed)
    device = pick_device(config.device)
    model, tokenizer = load_backbone(config.backbone, num_labels=info.num_labels)
    model.config.id2label = dict(enumerate(info.labels)) if info.labels else {0: "score"}
    model.config.label2id = {label: i for i, label in model.config.id2label.items()}
    model.to(device)

    train = subset_of(
        tokenize_split(load_task(info.name, "train", config.glue_dir), tokenizer, config.max_length),
        config.train_subset,
    )
    dev = subset_of(
        tokenize_split(load_task(info.name, "dev", config.glue_dir), tokenizer, config.max_length), config.dev_subset
    )
    loader = make_dataloader(train, config.batch_size, shuffle=True, seed=config.seed, pad_token_id=0)
    steps_per_epoch = len(loader)
    total = max(1, int(steps_per_epoch * config.epochs))
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    scheduler = linear_schedule(optimizer, int(total * config.warmup_ratio), total)

    record = run_record("finetune", asdict(config))
    start = time.perf_counter()
    model.train()
    step, epoch = 0, 0
    progress = tqdm(total=total, desc=f"finetune {info.name}", unit="step", dynamic_ncols=True)
    while step < total:
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            if step >= total:
                break
            labels = batch.pop("labels").to(device)
            logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
            loss = loss_for(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch)
        epoch += 1
    progress.close()
    train_seconds = time.perf_counter() - start

    metrics = evaluate_model(model, dev, device=str(device))
    result = {
        "task": info.name,
        "dev_examples": len(dev),
        "metrics": metrics,
        "main_metric": info.main_metric,
        "score": metrics[info.main_metric],
        "train_examples": len(train),
        "steps": total,
        "train_seconds": train_seconds,
    }
    with atomic_directory(out, force=force) as scratch:
        model.cpu().save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        write_json(scratch / "metrics.json", result)
        write_json(scratch / "run.json", {**record, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return result
