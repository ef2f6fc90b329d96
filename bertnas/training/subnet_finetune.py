"""Fine-tuning the chosen subnets as standalone models, distilled from the teacher.

A search scores subnets with the supernet's shared weights; what a team ships should be
trained as itself, as every system this one competes with does (HAT retrains, Once-for-All
fine-tunes, DynaBERT and MobileBERT distill). Each selected subnet is extracted into a
:class:`~bertnas.model.CompactBert` and trained on the train split minus the search split:

- loss: KL divergence to the teacher's logits, plus (weighted) MSE to the teacher's hidden
  states and head-averaged attention maps wherever they line up (same tokens, i.e. before
  retention drops any; hidden states on the subnet's channels of the rewired stream);
- the subnet's own token retention is active, as it will be when deployed;
- early stopping on the search split: scored ``evals_per_epoch`` times an epoch (or over
  the run, when ``max_steps`` ends it sooner) and once before the first step; the best
  weights are kept. "Best" is the highest task metric (``stop_on="metric"``, the default:
  fine-tuning then never ships weights that score worse on the search split than the
  weight-shared ones) or the lowest distillation loss to the teacher's logits
  (``stop_on="loss"``: never a higher loss than the weight-shared weights): a student within
  the split's noise of the teacher cannot show a gain in the metric, which moves in steps of
  one example, while the loss, averaged over every example, still can.

Results go to ``RUN/finetuned/trial-NNNN/`` (a compact model directory plus
``finetune.json``), written atomically per model: a rerun skips finished models. Within a
model, every early-stopping check leaves a checkpoint in ``RUN/finetuned/.trial-NNNN.checkpoint/``
(weights, best weights so far, optimizer, schedule, random state, history), so a killed
fine-tuning resumes at its last check and ends bit-identical to an uninterrupted one; it is
removed when the model is written. ``RUN/finetuned.csv`` lists them all.
"""

from __future__ import annotations

import copy
import json
import pickle  # only for the error torch.load(weights_only=True) raises on a file that is not plain tensors
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from bertnas import killpoints
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_directory, atomic_write_text, settle
from bertnas.data import Collator, compute_metrics, get_task
from bertnas.data.batching import LengthBucketSampler, make_dataloader
from bertnas.data.glue import TokenizedSplit
from bertnas.data.holdout import SearchSplitSpec
from bertnas.errors import BertnasError
from bertnas.locks import exclusive
from bertnas.model.compact import CompactBert
from bertnas.supernet.elastic import ElasticBert
from bertnas.training.common import (
    apply_gradients,
    linear_schedule,
    make_optimizer,
    pick_device,
    rng_state,
    set_rng_state,
    set_seed,
    versions,
)
from bertnas.training.distill import attention_loss, hidden_loss, logit_loss
from bertnas.training.evaluate import evaluate_predictions, load_train_dev, predict, read_search_split

FINETUNED_DIR = "finetuned"
FINETUNED_CSV = "finetuned.csv"
RESULT_NAME = "finetune.json"
CHECKPOINT_STATE = "state.json"
CHECKPOINT_TENSORS = "checkpoint.pt"  # read back with torch.load(weights_only=True)
#: Settings whose change makes an earlier fine-tuned model stale (it is trained again).
_RESULT_KEYS = (
    "epochs", "batch_size", "lr", "hidden_weight", "attention_weight", "max_steps", "train_subset", "seed", "stop_on",
)  # fmt: skip
#: Settings added after models were fine-tuned without them, with the value those models used.
_SETTING_DEFAULTS = {"stop_on": "metric"}
#: What early stopping keeps (``SubnetFinetuneConfig.stop_on``).
STOP_ON = ("metric", "loss")


@dataclass
class SubnetFinetuneConfig:
    """How each subnet is fine-tuned (``bertnas finetune-subnets`` and ``bertnas trust``)."""

    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    hidden_weight: float = 1.0  # hidden-state transfer where shapes line up (0: logits only)
    attention_weight: float = 1.0  # attention-map transfer where tokens line up (0: off)
    max_steps: int | None = None  # stop after this many steps even if epochs asks for more
    train_subset: int | None = None  # the first N train examples (after the search split is taken out)
    evals_per_epoch: int = 4  # early-stopping checks on the search split per epoch
    patience: int = 3  # checks without improvement before stopping
    stop_on: str = "metric"  # what a check improves: "metric" (search split) or "loss" (distillation, search split)
    seed: int = 42
    device: str | None = None
    glue_dir: str | None = None

    def validate(self) -> None:
        if not self.epochs > 0:
            raise BertnasError(f"--epochs {self.epochs} must be positive")
        if self.batch_size < 1:
            raise BertnasError(f"--batch-size {self.batch_size} must be at least 1")
        if not self.lr > 0:
            raise BertnasError(f"--lr {self.lr} must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            raise BertnasError(f"--max-steps {self.max_steps} must be at least 1")
        if self.train_subset is not None and self.train_subset < 1:
            raise BertnasError(f"--train-subset {self.train_subset} must be at least 1")
        if self.hidden_weight < 0 or self.attention_weight < 0:
            raise BertnasError("--hidden-weight and --attention-weight must be 0 or more")
        if self.evals_per_epoch < 1 or self.patience < 1:
            raise BertnasError("evals per epoch and patience must be at least 1")
        if self.stop_on not in STOP_ON:
            raise BertnasError(f"--stop-on {self.stop_on!r} is not one of: {', '.join(STOP_ON)}")

    def rank(self, metric: float, distill_loss: float) -> tuple[float, float]:
        """A check's standing for early stopping: higher is better."""
        if self.stop_on == "loss":
            return (-distill_loss, metric)
        return (metric, -distill_loss)

    def total_steps(self, steps_per_epoch: int) -> int:
        total = max(1, int(steps_per_epoch * self.epochs))
        return min(total, self.max_steps) if self.max_steps else total


@dataclass
class Teacher:
    """What the subnets learn from: the model, the channel each rewired channel holds, where it came from."""

    model: CompactBert
    channels: torch.Tensor | None
    source: str
    logits: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # per evaluation split


@dataclass
class FinetuneData:
    train: TokenizedSplit
    search: TokenizedSplit
    dev: TokenizedSplit
    record: dict[str, Any]


def load_teacher(supernet: Any, teacher: str | None, task_ref: str, device: torch.device) -> Teacher:
    """The supernet's teacher when it can be loaded (a directory or cached hub id), else the
    supernet's full model (trained along with the subnets; its channels already rewired)."""

    model, channels, source = None, None, "the supernet's full model (the teacher could not be loaded)"
    if teacher:
        try:
            model = ElasticBert.from_backbone(teacher, task=task_ref).get_active_subnet()
            order = supernet.config.channel_order
            channels = None if order is None else torch.tensor(order, device=device)
            source = str(teacher)
        except (OSError, ValueError, BertnasError):
            model = None
    if model is None:
        supernet.set_active_subnet(supernet.full_arch())
        model = supernet.get_active_subnet()
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return Teacher(model, channels, source)


def load_finetune_data(supernet_dir: Path, task: Any, tokenizer: Any, config: SubnetFinetuneConfig) -> FinetuneData:
    """Train (minus the search split the supernet held out), search and dev splits."""
    record = read_search_split(supernet_dir)
    if record is None:
        raise BertnasError(
            f"the supernet in {supernet_dir} records no search split, which fine-tuning stops early on; retrain it "
            f"with `bertnas supernet train --task {task.ref}` (it holds 5 % of train out)"
        )
    splits = load_train_dev(
        task,
        tokenizer,
        config.glue_dir,
        None,
        config.train_subset,
        None,
        SearchSplitSpec.from_dict(record["spec"]),
    )
    assert splits.holdout is not None and splits.search is not None
    if splits.holdout.record["ids_sha256"] != record["ids_sha256"]:
        raise BertnasError(
            f"the train data of {task.name} changed since the supernet in {supernet_dir} was trained "
            "(its search split no longer matches); fine-tune on the data it was trained on"
        )
    return FinetuneData(splits.train, splits.search, splits.dev, splits.data)


def _score(model: CompactBert, data: TokenizedSplit, teacher: Teacher, device: torch.device) -> dict[str, Any]:
    """The model's metrics on ``data`` and its mean logit distillation loss against the teacher
    (whose logits on ``data`` are computed once and kept)."""
    loader = make_dataloader(data, 64, shuffle=False, bucket=True)
    # a DataLoader draws a seed from torch's generator for every pass: kept out of the training's
    # random stream, so dropout after a check is the same whether the teacher's logits were cached
    # (an uninterrupted run) or not (one resumed from a checkpoint)
    with torch.random.fork_rng(devices=[]):
        logits, labels = predict(model, loader, device)
        key = (data.split, len(data))
        if key not in teacher.logits:
            teacher.logits[key] = predict(teacher.model, loader, device)[0]
    predictions = logits.squeeze(-1) if data.task.is_regression else logits.argmax(dim=-1)
    metrics = compute_metrics(data.task, predictions.numpy(), labels.numpy())
    loss = float(logit_loss(logits, teacher.logits[key]))
    return {"metric": float(metrics[data.task.main_metric]), "metrics": metrics, "distill_loss": loss}


def distillation_step_loss(
    student: CompactBert, teacher: Teacher, batch: dict[str, torch.Tensor], config: SubnetFinetuneConfig
) -> torch.Tensor:
    """One batch's loss: logits KL, plus hidden-state and attention transfer where they line up."""
    extras = config.hidden_weight > 0 or config.attention_weight > 0
    with torch.no_grad():
        reference = teacher.model(**batch, output_hidden_states=extras, output_attentions=config.attention_weight > 0)
    output = student(**batch, output_hidden_states=extras, output_attentions=config.attention_weight > 0)
    loss = logit_loss(output.logits, reference.logits)
    if config.hidden_weight > 0:
        hidden = hidden_loss(
            student.arch, output.hidden_states, output.hidden_masks, reference.hidden_states, teacher.channels
        )
        if hidden is not None:
            loss = loss + config.hidden_weight * hidden
    if config.attention_weight > 0:
        maps = attention_loss(student.arch, output.attentions, output.hidden_masks[:-1], reference.attentions)
        if maps is not None:
            loss = loss + config.attention_weight * maps
    return loss


def finetune_subnet(
    student: CompactBert,
    teacher: Teacher,
    data: FinetuneData,
    config: SubnetFinetuneConfig,
    device: torch.device,
    desc: str = "finetune subnet",
    progress: bool = True,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Train ``student`` in place (ending on its best search-split weights); its record.

    With ``checkpoint`` (a directory), the state at every early-stopping check is saved there,
    and a checkpoint already there for the same settings and subnet is resumed from."""
    set_seed(config.seed)
    student.to(device)
    sampler = LengthBucketSampler(data.train.lengths, config.batch_size, shuffle=True, seed=config.seed)
    collate = Collator(student.config.pad_token_id)
    steps_per_epoch = len(sampler)
    total = config.total_steps(steps_per_epoch)
    every = max(1, min(steps_per_epoch, total) // config.evals_per_epoch)
    optimizer = make_optimizer(student, config.lr, config.weight_decay)
    scheduler = linear_schedule(optimizer, int(total * config.warmup_ratio), total)
    identity = {"settings": _settings(config), "arch_hash": student.arch.hash(), "total": total}

    start = time.perf_counter()
    resumed = _load_checkpoint(checkpoint, identity, student, optimizer, scheduler) if checkpoint else None
    if resumed is None:
        before = _score(student, data.search, teacher, device)
        history = [{"step": 0, "search_metric": before["metric"], "search_distill_loss": before["distill_loss"]}]
        best = (before["metric"], -before["distill_loss"], 0, copy.deepcopy(student.state_dict()))
        stale, step, elapsed_before = 0, 0, 0.0
    else:
        history, best, stale, step, elapsed_before = resumed
    stopped_early = False
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True, disable=not progress)
    while step < total and not stopped_early:
        epoch, offset = divmod(step, steps_per_epoch)
        for indices in sampler.batches(epoch)[offset:]:
            if step >= total:
                break
            student.train()
            batch = collate([data.train[i] for i in indices])
            batch.pop("labels")
            batch = {key: value.to(device) for key, value in batch.items()}
            loss = distillation_step_loss(student, teacher, batch, config)
            loss.backward()
            apply_gradients(student, optimizer, scheduler)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", best=f"{best[0]:.4f}")
            if step % every == 0 or step == total:
                now = _score(student, data.search, teacher, device)
                history.append(
                    {"step": step, "search_metric": now["metric"], "search_distill_loss": now["distill_loss"]}
                )
                if config.rank(now["metric"], now["distill_loss"]) > config.rank(best[0], -best[1]):
                    best = (now["metric"], -now["distill_loss"], step, copy.deepcopy(student.state_dict()))
                    stale = 0
                else:
                    stale += 1
                    if stale >= config.patience:
                        stopped_early = True
                        break
                if checkpoint is not None and step < total:
                    seconds = elapsed_before + time.perf_counter() - start
                    state = {**identity, "step": step, "history": history, "stale": stale, "train_seconds": seconds}
                    _save_checkpoint(checkpoint, state, student, best, optimizer, scheduler)
            killpoints.reached("train-step")
    bar.close()
    train_seconds = elapsed_before + time.perf_counter() - start
    student.load_state_dict(best[3])
    after_search = _score(student, data.search, teacher, device)
    after_dev, _, _ = evaluate_predictions(student, data.dev, device=str(device))
    return {
        "steps": step,
        "best_step": best[2],
        "epochs": round(step / steps_per_epoch, 4),
        "stopped_early": stopped_early,
        "search_metric": after_search["metric"],
        "search_distill_loss": after_search["distill_loss"],
        "dev_metric": float(after_dev[data.dev.task.main_metric]),
        "dev_metrics": after_dev,
        "history": history,
        "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / max(1, step), 4),
    }


def _settings(config: SubnetFinetuneConfig) -> dict[str, Any]:
    """The settings a fine-tuned model (or its checkpoint) was made with: a change makes it stale."""
    return {key: value for key, value in asdict(config).items() if key in _RESULT_KEYS}


def _recorded_settings(recorded: Any) -> Any:
    """Settings as recorded, with the values of settings added since filled in (those models
    were made with them), so a model fine-tuned before a setting existed is not made stale."""
    return {**_SETTING_DEFAULTS, **recorded} if isinstance(recorded, dict) else recorded


def _save_checkpoint(
    directory: Path,
    state: dict[str, Any],
    student: CompactBert,
    best: tuple[float, float, int, dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    tensors = {
        "student": student.state_dict(),
        "best": best[3],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }
    record = {**state, "best": {"metric": best[0], "neg_distill_loss": best[1], "step": best[2]}}
    with atomic_directory(directory, force=True) as scratch:
        torch.save(tensors, scratch / CHECKPOINT_TENSORS)
        (scratch / CHECKPOINT_STATE).write_text(json.dumps(record, indent=2) + "\n")
        killpoints.reached("checkpoint-written")


def _load_checkpoint(
    directory: Path,
    identity: dict[str, Any],
    student: CompactBert,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> tuple[list[dict[str, Any]], tuple, int, int, float] | None:
    """Restore what :func:`_save_checkpoint` left in ``directory`` into the model, optimizer,
    schedule and random state; ``(history, best, stale, step, train_seconds)``, or None (and
    the checkpoint is dropped) when there is none or it is for other settings or another subnet."""
    if not (directory / CHECKPOINT_STATE).is_file():
        return None
    untouched = [copy.deepcopy(part.state_dict()) for part in (student, optimizer, scheduler)]
    try:
        state = json.loads((directory / CHECKPOINT_STATE).read_text())
        state["settings"] = _recorded_settings(state.get("settings"))
        if any(state.get(key) != value for key, value in identity.items()):
            raise ValueError("another fine-tuning's checkpoint")
        tensors = torch.load(directory / CHECKPOINT_TENSORS, weights_only=True, map_location="cpu")
        best_record = state["best"]
        best = (float(best_record["metric"]), float(best_record["neg_distill_loss"]), int(best_record["step"]))
        history, stale, step = list(state["history"]), int(state["stale"]), int(state["step"])
        seconds = float(state["train_seconds"])
        student.load_state_dict(tensors["student"])
        optimizer.load_state_dict(tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        set_rng_state(tensors["rng"])  # dropout continues where it was: the result is bit-identical
        return history, (*best, tensors["best"]), stale, step, seconds
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError):
        for part, before in zip((student, optimizer, scheduler), untouched, strict=True):
            part.load_state_dict(before)
        shutil.rmtree(directory, ignore_errors=True)  # damaged or stale: this model starts over
        return None


# ---------------------------------------------------------------------- a search run's subnets
@dataclass
class Selected:
    """A subnet of a search run to fine-tune."""

    trial: int
    arch: ArchConfig

    @property
    def name(self) -> str:
        return f"trial-{self.trial:04d}"


def finetuned_dir(run_dir: str | Path, trial: int) -> Path:
    """Where a run's fine-tuned model of ``trial`` lives."""
    return Path(run_dir) / FINETUNED_DIR / f"trial-{trial:04d}"


def checkpoint_dir(run_dir: str | Path, trial: int) -> Path:
    """Where an unfinished fine-tuning of ``trial`` keeps its last early-stopping check."""
    return Path(run_dir) / FINETUNED_DIR / f".trial-{trial:04d}.checkpoint"


def read_result(directory: Path) -> dict[str, Any] | None:
    path = directory / RESULT_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record: the model is trained again


def finetune_run(
    run: Any,
    selected: list[Selected],
    config: SubnetFinetuneConfig,
    supernet_dir: Path,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Fine-tune each ``selected`` subnet of ``run`` (a :class:`~bertnas.search.run.SearchRun`)
    whose result is missing or stale; rewrite ``finetuned.csv``; the results of ``selected``."""
    config.validate()
    with exclusive(Path(run.directory) / FINETUNED_DIR, "fine-tuned models directory"):
        return _finetune_run(run, selected, config, supernet_dir, progress)


def _finetune_run(
    run: Any, selected: list[Selected], config: SubnetFinetuneConfig, supernet_dir: Path, progress: bool
) -> list[dict[str, Any]]:

    wanted = _settings(config)
    todo = []
    for item in selected:
        result = read_result(finetuned_dir(run.directory, item.trial))
        if (
            result is None
            or _recorded_settings(result.get("settings")) != wanted
            or result.get("arch_hash") != item.arch.hash()
        ):
            todo.append(item)
    if todo:
        device = pick_device(config.device)
        supernet = ElasticBert.from_pretrained(supernet_dir).eval()
        if supernet.tokenizer is None:
            raise BertnasError(f"the supernet in {supernet_dir} has no tokenizer files")
        task = get_task((run.info.get("config") or {}).get("task") or run.info["task"])
        data = load_finetune_data(supernet_dir, task, supernet.tokenizer, config)
        teacher = load_teacher(supernet, _supernet_teacher(supernet_dir), task.ref, device)
        for position, item in enumerate(todo, 1):
            supernet.set_active_subnet(item.arch)
            student = copy.deepcopy(supernet.get_active_subnet())
            student.config.task = task.name
            student.config.id2label = dict(enumerate(task.labels)) if task.labels else student.config.id2label
            shared_dev = evaluate_predictions(student.to(device), data.dev, device=str(device))[0]
            desc = f"finetune {item.name} ({position}/{len(todo)})"
            checkpoint = checkpoint_dir(run.directory, item.trial)
            settle(checkpoint)  # what a kill while writing it left
            result = finetune_subnet(student, teacher, data, config, device, desc, progress, checkpoint)
            # the extracted model before its first step: what the supernet's shared weights score
            shared = {
                "search_metric": result["history"][0]["search_metric"],
                "dev_metric": shared_dev[task.main_metric],
            }
            record = {
                "trial": item.trial,
                "arch_hash": item.arch.hash(),
                "task": task.name,
                "main_metric": task.main_metric,
                "weight_shared": shared,
                "finetuned": result,
                "teacher": teacher.source,
                "settings": wanted,
                "config": asdict(config),
                "data": data.record,
                "device": str(device),
                "versions": versions(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            target = finetuned_dir(run.directory, item.trial)
            with atomic_directory(target, force=True) as scratch:
                student.cpu().save_pretrained(scratch, tokenizer=supernet.tokenizer)
                student.arch.save(scratch / "arch.json")
                (scratch / RESULT_NAME).write_text(json.dumps(record, indent=2) + "\n")
            shutil.rmtree(checkpoint, ignore_errors=True)
    write_finetuned_csv(run.directory)
    return [read_result(finetuned_dir(run.directory, item.trial)) or {} for item in selected]


def finetuned_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per fine-tuned model of a run (``finetuned.csv``'s content)."""
    rows = []
    for directory in sorted((Path(run_dir) / FINETUNED_DIR).glob("trial-*")):
        result = read_result(directory)
        if result is None:
            continue
        tuned = result["finetuned"]
        rows.append(
            {
                "trial": result["trial"],
                "arch_hash": result["arch_hash"],
                "shared_search_metric": result["weight_shared"]["search_metric"],
                "shared_dev_metric": result["weight_shared"]["dev_metric"],
                "finetuned_search_metric": tuned["search_metric"],
                "finetuned_dev_metric": tuned["dev_metric"],
                "epochs": tuned["epochs"],
                "steps": tuned["steps"],
                "best_step": tuned["best_step"],
                "seconds": tuned["train_seconds"],
                "device": result.get("device"),
            }
        )
    columns = [
        "trial",
        "arch_hash",
        "shared_search_metric",
        "shared_dev_metric",
        "finetuned_search_metric",
        "finetuned_dev_metric",
        "epochs",
        "steps",
        "best_step",
        "seconds",
        "device",
    ]
    return pd.DataFrame(rows, columns=columns)


def write_finetuned_csv(run_dir: str | Path) -> Path:
    path = Path(run_dir) / FINETUNED_CSV
    atomic_write_text(path, finetuned_table(run_dir).to_csv(index=False))
    return path


def _supernet_teacher(supernet_dir: Path) -> str | None:
    """The teacher a supernet was trained from (its run.json), if recorded."""
    path = supernet_dir / "run.json"
    if not path.is_file():
        return None
    try:
        return (json.loads(path.read_text()).get("config") or {}).get("teacher")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
