"""Teacher fine-tuning: the backbone trained on one task (GLUE or the user's own data).

The teacher is a plain Hugging Face ``BertForSequenceClassification`` directory (any
tool can load it) with ``metrics.json`` (its dev metrics) and ``run.json`` (command,
configuration, versions). Supernet training starts from it. A team with its own
fine-tuned model passes that as ``--teacher`` instead and skips this step.

Checkpoints go to a hidden sibling ``.OUT.checkpoint/`` every ``checkpoint_every`` steps;
rerunning the same command resumes there, and the finished teacher replaces it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bertnas import killpoints
from bertnas.atomic import atomic_directory, settle
from bertnas.backbones import DEFAULT_BACKBONE
from bertnas.data import Collator, get_task
from bertnas.data.batching import LengthBucketSampler
from bertnas.data.holdout import SearchSplitSpec
from bertnas.errors import BertnasError, check_range
from bertnas.locks import exclusive
from bertnas.supernet.backbone import load_backbone
from bertnas.training.common import (
    apply_gradients,
    batches_from,
    linear_schedule,
    make_optimizer,
    pick_device,
    rng_state,
    run_record,
    set_rng_state,
    set_seed,
    write_json,
)
from bertnas.training.evaluate import SEARCH_SPLIT_JSON, evaluate_model, load_train_dev


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
    max_steps: int | None = None  # stop after this many steps even if epochs asks for more
    # The slice of train held out for the search (bertnas.data.holdout.SearchSplitSpec.parse):
    # 5 % of train, at least 500 and at most 5,000 examples; "none" trains on all of it.
    search_split: str = "0.05"
    checkpoint_every: int = 200
    seed: int = 42
    device: str | None = None
    glue_dir: str | None = None

    def validate(self) -> None:
        """Every setting in range before any work starts (a 0-example subset used to loop forever)."""
        check_range("--epochs", self.epochs, 0, strict=True)
        check_range("--lr", self.lr, 0, strict=True)
        check_range("--batch-size", self.batch_size, 1)
        check_range("--train-subset", self.train_subset, 1)
        check_range("--dev-subset", self.dev_subset, 1)
        check_range("--max-steps", self.max_steps, 1)
        check_range("--max-length", self.max_length, 8)
        check_range("--checkpoint-every", self.checkpoint_every, 1)
        check_range("--seed", self.seed, 0)
        check_range("--weight-decay", self.weight_decay, 0)
        if not 0 <= self.warmup_ratio < 1:
            raise BertnasError(f"warmup ratio {self.warmup_ratio!r} must be in [0, 1)")
        SearchSplitSpec.parse(self.search_split)

    def total_steps(self, steps_per_epoch: int) -> int:
        total = max(1, int(steps_per_epoch * self.epochs))
        return min(total, self.max_steps) if self.max_steps else total


# The same three names as supernet training (bertnas.training.presets). On 2 CPU cores with
# MiniLM on SST-2: quick 1.3 min, default 7.7 min (measured on a 2-core Xeon, README issue 13),
# full ~43 min (extrapolated, benchmarks/results/train_step_sst2.json).
PRESETS: dict[str, dict[str, Any]] = {
    # for trying the commands and for tests: a train subset, one epoch; not a usable teacher
    "quick": {"epochs": 1.0, "train_subset": 4000, "dev_subset": None, "lr": 1e-4, "max_steps": None},
    # three epochs, capped at 1260 steps (40k examples): small tasks get their epochs, large ones a
    # budget. 630 steps gave an SST-2 teacher of 87.61 % and a best subnet at half the latency of
    # 85.55 %; 1260 steps 89.11 % and 87.73 % (README, issue 13)
    "default": {"epochs": 3.0, "train_subset": None, "dev_subset": None, "lr": 1e-4, "max_steps": 1260},
    "full": {"epochs": 2.0, "train_subset": None, "dev_subset": None, "lr": 5e-5, "max_steps": None},
}
CHECKPOINT_STATE = "state.json"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
_RESUME_KEYS = ("task", "backbone", "epochs", "batch_size", "lr", "train_subset", "max_steps", "search_split", "seed")


def checkpoint_dir(out: str | Path) -> Path:
    """Where an unfinished fine-tuning into ``out`` keeps its checkpoint."""
    out = Path(out)
    return out.with_name(f".{out.name}.checkpoint")


def loss_for(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def finetune(config: FinetuneConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Fine-tune ``config.backbone`` on ``config.task``; write the teacher directory ``out`` (resumable;
    a second fine-tuning into ``out`` at the same time is refused)."""
    config.validate()  # before anything is created, the lock's directory included
    with exclusive(out, "teacher directory"):
        return _finetune(config, Path(out), force)


def _finetune(config: FinetuneConfig, out: Path, force: bool) -> dict[str, Any]:
    if out.exists() and not force:
        raise BertnasError(f"{out} already exists; pass --force to retrain it, or use it as --teacher")
    config.validate()
    info = get_task(config.task)
    set_seed(config.seed)
    device = pick_device(config.device)
    checkpoint = checkpoint_dir(out)
    settle(checkpoint)  # what a killed run left beside its checkpoint (``out`` itself: settled by the lock)
    resume = _checkpoint_state(checkpoint, config, force)
    model, tokenizer = load_backbone(str(checkpoint) if resume else config.backbone, num_labels=info.num_labels)
    model.config.id2label = dict(enumerate(info.labels)) if info.labels else {0: "score"}
    model.config.label2id = {label: i for i, label in model.config.id2label.items()}
    model.to(device)

    splits = load_train_dev(
        info, tokenizer, config.glue_dir, config.max_length, config.train_subset, config.dev_subset, config.search_split
    )
    train, dev = splits.train, splits.dev
    sampler = LengthBucketSampler(train.lengths, config.batch_size, shuffle=True, seed=config.seed)
    collate = Collator(0)
    steps_per_epoch = len(sampler)
    total = config.total_steps(steps_per_epoch)
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    scheduler = linear_schedule(optimizer, int(total * config.warmup_ratio), total)

    record = run_record("finetune", asdict(config))
    step, elapsed_before = 0, 0.0
    if resume:
        saved = torch.load(checkpoint / CHECKPOINT_OPTIMIZER, weights_only=True, map_location="cpu")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, elapsed_before, record = int(resume["step"]), float(resume["train_seconds"]), resume["record"]
        if "rng" in saved:
            set_rng_state(saved["rng"])  # dropout continues where it was: the result is bit-identical
    start = time.perf_counter()
    model.train()
    progress = tqdm(total=total, initial=step, desc=f"finetune {info.name}", unit="step", dynamic_ncols=True)
    for epoch, indices in batches_from(sampler, step, total):
        batch = collate([train[i] for i in indices])
        labels = batch.pop("labels").to(device)
        logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
        loss = loss_for(logits, labels)
        loss.backward()
        apply_gradients(model, optimizer, scheduler)
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch)
        if step % config.checkpoint_every == 0 and step < total:
            seconds = elapsed_before + time.perf_counter() - start
            _save_checkpoint(checkpoint, model, tokenizer, optimizer, scheduler, config, step, record, seconds)
        killpoints.reached("train-step")
    progress.close()
    train_seconds = elapsed_before + time.perf_counter() - start

    metrics = evaluate_model(model, dev, device=str(device))
    result = {
        "task": info.name,
        "task_spec": info.ref,
        "dev_examples": len(dev),
        "metrics": metrics,
        "main_metric": info.main_metric,
        "score": metrics[info.main_metric],
        "train_examples": len(train),
        "search_examples": 0 if splits.search is None else len(splits.search),
        "data": splits.data,
        "steps": total,
        "train_seconds": train_seconds,
    }
    with atomic_directory(out, force=force) as scratch:
        model.cpu().save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        write_json(scratch / "metrics.json", result)
        if splits.holdout is not None:
            write_json(scratch / SEARCH_SPLIT_JSON, splits.holdout.record)
        write_json(scratch / "run.json", {**record, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    shutil.rmtree(checkpoint, ignore_errors=True)
    return result


def _checkpoint_state(checkpoint: Path, config: FinetuneConfig, force: bool) -> dict[str, Any] | None:
    path = checkpoint / CHECKPOINT_STATE
    if not path.is_file():
        return None
    if force:
        shutil.rmtree(checkpoint, ignore_errors=True)
        return None
    state = json.loads(path.read_text())
    now = asdict(config)
    for key in _RESUME_KEYS:
        if state["config"].get(key) != now.get(key):
            raise BertnasError(
                f"{checkpoint} holds an unfinished fine-tuning with other settings "
                f"({key}={state['config'].get(key)!r}, now {now.get(key)!r}); rerun with the same settings "
                "to resume it, or pass --force to start over"
            )
    return state


def _save_checkpoint(
    checkpoint: Path,
    model: Any,
    tokenizer: Any,
    optimizer: Any,
    scheduler: Any,
    config: FinetuneConfig,
    step: int,
    record: dict[str, Any],
    seconds: float,
) -> None:
    with atomic_directory(checkpoint, force=True) as scratch:
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
            scratch / CHECKPOINT_OPTIMIZER,
        )
        write_json(
            scratch / CHECKPOINT_STATE,
            {"step": step, "config": asdict(config), "record": record, "train_seconds": seconds},
        )
        killpoints.reached("checkpoint-written")
