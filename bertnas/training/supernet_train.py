"""Supernet training: make every subnet of a space good without retraining.

Recipe (DynaBERT + Once-for-All + Length-Adaptive Transformer):

1. Build the supernet from the fine-tuned teacher, with the extra parameters the space
   needs (stacked FFNs, bottlenecks); keep a frozen copy of the teacher.
2. Rewire once (DynaBERT): heads and FFN neurons sorted by importance, so every prefix
   slice keeps the most important units.
3. Each step, the sandwich rule: the space's largest subnet, its smallest and
   ``random_subnets`` random ones run on the same batch; their gradients accumulate
   and one optimizer step follows. Random subnets of a space with retention dimensions
   draw random per-layer token retention (LengthDrop-style), so retention vectors are
   trained and scored fairly.
4. In-place distillation: every subnet learns the teacher's logits (KL divergence)
   and, weighted by ``hidden_weight``, its hidden states where the shapes line up
   (``distill_from="largest"`` uses the largest subnet's logits instead, as OFA does).
   With ``stages="width-depth"``, the first half of the steps keeps every layer (width
   stage) and the second half samples depth too (DynaBERT's two stages).

Checkpoints go to ``OUT/checkpoint/`` every ``checkpoint_every`` steps (atomically);
rerunning the same command resumes from the last one. The finished supernet is a
directory ``ElasticBert.from_pretrained`` loads, with ``metrics.json`` and ``run.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bertnas import killpoints
from bertnas.arch import ArchConfig, ArchLimits
from bertnas.atomic import PARTIAL_MARK, atomic_directory, file_mode
from bertnas.data import Collator, get_task, make_dataloader
from bertnas.data.batching import LengthBucketSampler
from bertnas.data.holdout import SearchSplitSpec
from bertnas.errors import BertnasError, check_range
from bertnas.locks import exclusive
from bertnas.model.compact import CompactBert
from bertnas.space import SearchSpace, load_space
from bertnas.supernet.backbone import check_teacher, teacher_fingerprint
from bertnas.supernet.bottleneck_init import fit_bottlenecks
from bertnas.supernet.elastic import CONFIG_NAME, WEIGHTS_NAME, ElasticBert
from bertnas.supernet.rewire import rewire_supernet
from bertnas.training.augment import perturb_batch
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
from bertnas.training.distill import attention_loss, hidden_loss, logit_loss
from bertnas.training.distributed import current_world, world_size
from bertnas.training.evaluate import SEARCH_SPLIT_JSON, TrainDev, evaluate_model, load_train_dev, read_search_split
from bertnas.training.strategies import DEFAULT_RECIPE, Recipe, get_recipe, make_sampler

CHECKPOINT_DIR = "checkpoint"
STATE_NAME = "state.json"
OPTIMIZER_NAME = "optimizer.pt"


@dataclass
class SupernetTrainConfig:
    task: str
    teacher: str
    space: str = "unified"
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    # The training strategy (bertnas.training.strategies.RECIPES); the four fields after it
    # override the recipe's own values when set (``augment`` too).
    recipe: str = DEFAULT_RECIPE
    random_subnets: int | None = None
    hidden_weight: float | None = None
    attention_weight: float | None = None
    label_weight: float | None = None
    augment: float | None = None
    distill_from: str | None = None  # teacher | largest
    stages: str = "joint"  # joint | width-depth
    rewire: bool = True
    rewire_batches: int = 16
    max_length: int | None = None
    train_subset: int | None = None
    dev_subset: int | None = None
    max_steps: int | None = None  # stop after this many steps even if epochs asks for more
    # The slice of train held out for the search (bertnas.data.holdout.SearchSplitSpec.parse); a
    # teacher fine-tuned by bertnas must have held out the same one.
    search_split: str = "0.05"
    checkpoint_every: int = 200
    seed: int = 42
    device: str | None = None
    glue_dir: str | None = None

    def validate(self) -> None:
        if self.stages not in ("joint", "width-depth"):
            raise BertnasError(f"stages={self.stages!r} must be 'joint' or 'width-depth'")
        check_range("--epochs", self.epochs, 0, strict=True)
        check_range("--lr", self.lr, 0, strict=True)
        check_range("--batch-size", self.batch_size, 1)
        check_range("--train-subset", self.train_subset, 1)
        check_range("--dev-subset", self.dev_subset, 1)
        check_range("--max-steps", self.max_steps, 1)
        check_range("--max-length", self.max_length, 8)
        check_range("--checkpoint-every", self.checkpoint_every, 1)
        check_range("--rewire-batches", self.rewire_batches, 1)
        check_range("--random-subnets", self.random_subnets, 0)
        check_range("--seed", self.seed, 0)
        if not 0 <= self.warmup_ratio < 1:
            raise BertnasError(f"warmup ratio {self.warmup_ratio!r} must be in [0, 1)")
        self.resolved_recipe().validate()
        SearchSplitSpec.parse(self.search_split)

    def total_steps(self, steps_per_epoch: int) -> int:
        total = max(1, int(steps_per_epoch * self.epochs))
        return min(total, self.max_steps) if self.max_steps else total

    def resolved_recipe(self) -> Recipe:
        """The named recipe with this configuration's overrides applied."""
        recipe = get_recipe(self.recipe)
        overrides = {
            key: getattr(self, key)
            for key in (
                "random_subnets",
                "hidden_weight",
                "attention_weight",
                "label_weight",
                "augment",
                "distill_from",
            )
            if getattr(self, key) is not None
        }
        return replace(recipe, **overrides) if overrides else recipe


# The same three names as fine-tuning (bertnas.training.presets); times on 2 CPU cores with
# MiniLM on SST-2 are in benchmarks/results/train_step_sst2.json and the README.
PRESETS: dict[str, dict[str, Any]] = {
    # for trying the commands and for tests: a train subset, one epoch, one random subnet per step
    "quick": {
        "epochs": 1.0,
        "train_subset": 2000,
        "dev_subset": None,
        "recipe": "budget",
        "random_subnets": 1,
        "lr": 1e-4,
        "max_steps": None,
        "checkpoint_every": 50,
        "rewire_batches": 8,
    },
    # six epochs capped at 800 steps (25.6k examples) of the budget recipe: with the default
    # teacher, 16.4 minutes in all on a 2-core Xeon for SST-2 (README, issue 13); a small task
    # gets its epochs
    "default": {
        "epochs": 6.0,
        "train_subset": None,
        "dev_subset": None,
        "recipe": "budget",
        "random_subnets": 1,
        "lr": 1e-4,
        "max_steps": 800,
        "checkpoint_every": 100,
        "rewire_batches": 16,
    },
    # the whole training set twice (MiniLM, SST-2: about 110 minutes on 2 CPU cores)
    "full": {
        "epochs": 2.0,
        "train_subset": None,
        "dev_subset": None,
        "random_subnets": 2,
        "lr": 5e-5,
        "max_steps": None,
        "checkpoint_every": 500,
        "rewire_batches": 32,
    },
}


def config_from(task: str, teacher: str, preset: str = "quick", **overrides: Any) -> SupernetTrainConfig:
    if preset not in PRESETS:
        raise BertnasError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(SupernetTrainConfig)}
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None and k in known}}
    config = SupernetTrainConfig(task=task, teacher=teacher, **values)
    config.validate()
    return config


class SupernetTrainer:
    """Runs (or resumes) one supernet training into the directory ``out``."""

    def __init__(self, config: SupernetTrainConfig, out: str | Path) -> None:
        config.validate()
        self.config = config
        self.out = Path(out)
        if world_size() > config.batch_size:
            raise BertnasError(
                f"--batch-size {config.batch_size} is the global batch, shared by {world_size()} processes; "
                f"give at least {world_size()}"
            )
        self.world = current_world(pick_device(config.device))  # torchrun's processes, or a world of one
        self.device = self.world.device(pick_device(config.device))
        self.info = get_task(config.task)

    # ------------------------------------------------------------------ setup
    def _load_teacher(self) -> tuple[CompactBert, Any, ArchLimits]:
        """The frozen teacher, its tokenizer and its sizes (what the space binds against)."""

        check_teacher(self.config.teacher, self.info.num_labels, self.info.labels, self.info.name)
        teacher_supernet = ElasticBert.from_backbone(self.config.teacher, task=self.info.ref)
        teacher = teacher_supernet.get_active_subnet().to(self.device).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        return teacher, teacher_supernet.tokenizer, teacher_supernet.limits

    def _checkpoint_state(self) -> dict[str, Any] | None:
        path = self.out / CHECKPOINT_DIR / STATE_NAME
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        saved = state["config"]
        keys = ("task", "teacher", "space", "seed", "batch_size", "train_subset", "epochs", "max_steps", "recipe")
        for key in (*keys, "search_split"):
            if saved.get(key) != asdict(self.config).get(key):
                raise BertnasError(
                    f"{self.out} holds a checkpoint of a different run ({key}={saved.get(key)!r}, now "
                    f"{asdict(self.config).get(key)!r}); use another --out or the same settings to resume"
                )
        return state

    # ------------------------------------------------------------------ training
    def train(self) -> dict[str, Any] | None:
        """Train (or resume) into ``out``, holding its lock (a second training there is refused).
        Under torchrun, process 0 holds the lock and returns the result; the others return None."""
        if not self.world.main:
            return self._train()
        with exclusive(self.out, "supernet directory"):
            return self._train()

    def _train(self) -> dict[str, Any]:
        config, info = self.config, self.info
        if (self.out / "training.json").is_file():
            # a run killed after its completion marker, while it removed its checkpoint
            shutil.rmtree(self.out / CHECKPOINT_DIR, ignore_errors=True)
            raise BertnasError(f"{self.out} already holds a finished supernet; choose another --out")
        set_seed(config.seed)
        teacher, tokenizer, teacher_limits = self._load_teacher()
        self._special_ids = list(tokenizer.all_special_ids)
        self._mask_id = tokenizer.mask_token_id
        resume = self._checkpoint_state()
        if resume is not None:
            supernet = ElasticBert.from_pretrained(self.out / CHECKPOINT_DIR)
        else:
            probe = load_space(config.space).bind(teacher_limits, backbone=config.teacher)
            supernet = ElasticBert.from_backbone(
                config.teacher,
                max_ffn_stack=probe.max_ffn_stack,
                max_bottleneck=probe.max_bottleneck,
                task=info.ref,
            )
        supernet.tokenizer = tokenizer
        supernet.to(self.device)
        space = load_space(config.space).bind(supernet.limits, backbone=config.teacher)

        splits = load_train_dev(
            info,
            tokenizer,
            config.glue_dir,
            config.max_length,
            config.train_subset,
            config.dev_subset,
            config.search_split,
        )
        self.teacher_holdout = self._check_teacher_holdout(splits)
        train = splits.train
        sampler = LengthBucketSampler(train.lengths, config.batch_size, shuffle=True, seed=config.seed)
        collate = Collator(supernet.config.pad_token_id)
        steps_per_epoch = len(sampler)
        total = config.total_steps(steps_per_epoch)

        recipe = config.resolved_recipe()
        record = run_record("supernet train", {**asdict(config), "resolved_recipe": recipe.to_dict()})
        if resume is None and config.rewire:
            self._rewire(supernet, train)
        if resume is None and recipe.bottleneck_init == "fit":
            self._fit_bottlenecks(supernet, train, space)  # after rewiring: it needs the identity start
        if self.world.distributed:  # every process starts from process 0's weights and channel order
            self.world.broadcast_module(supernet)
            supernet.config.channel_order = self.world.broadcast_object(supernet.config.channel_order)
            torch.manual_seed(config.seed + self.world.rank)  # each process its own dropout
        optimizer = make_optimizer(supernet, config.lr, config.weight_decay)
        scheduler = linear_schedule(optimizer, int(total * config.warmup_ratio), total)
        step = 0
        if resume is not None:
            saved = torch.load(self.out / CHECKPOINT_DIR / OPTIMIZER_NAME, weights_only=True, map_location="cpu")
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            step = int(resume["step"])
            record = resume.get("record", record)

        strategy = make_sampler(space, recipe, config.seed, config.stages)
        if resume is not None and "rng" in saved:
            set_rng_state(saved["rng"])  # dropout continues where it was: the result is bit-identical
        start_time = time.perf_counter()
        elapsed_before = float(resume.get("train_seconds", 0.0)) if resume else 0.0
        progress = tqdm(
            total=total,
            initial=step,
            desc=f"supernet {info.name}/{config.space}",
            unit="step",
            dynamic_ncols=True,
            disable=not self.world.main,
        )
        supernet.train()
        last_losses: dict[str, float] = {}
        for epoch, indices in batches_from(sampler, step, total):
            shard = self.world.shard(indices)  # this process's examples of the batch (all of them alone)
            subnets = strategy.subnets(step, total)
            if shard:
                batch = collate([train[i] for i in shard])
                batch = {key: value.to(self.device) for key, value in batch.items()}
                last_losses = self._step(supernet, teacher, recipe, batch, step, subnets)
            self.world.reduce_gradients(supernet.parameters(), len(shard) / len(indices))
            apply_gradients(supernet, optimizer, scheduler)
            step += 1
            progress.update(1)
            if last_losses:
                progress.set_postfix(loss=f"{last_losses['mean']:.4f}", epoch=epoch)
            if step % config.checkpoint_every == 0 and step < total:
                seconds = elapsed_before + time.perf_counter() - start_time
                if self.world.main:
                    self._save_checkpoint(supernet, optimizer, scheduler, step, record, seconds)
                self.world.barrier()
            killpoints.reached("train-step")
        progress.close()
        train_seconds = elapsed_before + time.perf_counter() - start_time
        if not self.world.main:
            self.world.barrier()  # process 0 evaluates and writes the finished supernet
            return None
        record["processes"] = self.world.size
        result = self._finish(supernet, teacher, space, splits, record, total, train_seconds)
        self.world.barrier()
        return result

    def _check_teacher_holdout(self, splits: TrainDev) -> str:
        """Whether the teacher kept the search split out of its training: ``held out`` (a teacher
        fine-tuned by bertnas with the same slice), ``unknown`` (the user's own teacher; it may have
        seen those examples) or ``none`` (no search split). A different slice is an error."""
        if splits.holdout is None:
            return "none"
        teacher = Path(self.config.teacher).expanduser()
        record = read_search_split(teacher) if teacher.is_dir() else None
        if record is None:
            print(
                f"note: teacher {self.config.teacher} records no search split, so it may have been trained on the "
                f"{splits.holdout.record['examples']} train examples the search scores subnets on",
                file=sys.stderr,
            )
            return "unknown"
        if record.get("ids_sha256") != splits.holdout.record["ids_sha256"]:
            raise BertnasError(
                f"teacher {self.config.teacher} held out another search split ({record['examples']} examples, "
                f"spec {record['spec']}) than this training ({splits.holdout.record['examples']}); train the "
                "supernet with the teacher's --search-split, or fine-tune the teacher again with this one"
            )
        return "held out"

    def _rewire(self, supernet: ElasticBert, train: Any) -> None:

        loader = make_dataloader(train, self.config.batch_size, shuffle=True, seed=self.config.seed)
        batches = []
        for batch in loader:
            batches.append({key: value.to(self.device) for key, value in batch.items()})
            if len(batches) >= self.config.rewire_batches:
                break
        rewire_supernet(supernet, batches)

    def _fit_bottlenecks(self, supernet: ElasticBert, train: Any, space: SearchSpace) -> None:

        widths = {b for d in space.dimensions if d.name.startswith("bottleneck.") for b in d.choices if b}
        loader = make_dataloader(train, self.config.batch_size, shuffle=True, seed=self.config.seed + 1)
        batches = []
        for batch in loader:
            batches.append({key: value.to(self.device) for key, value in batch.items()})
            if len(batches) >= self.config.rewire_batches:
                break
        fit_bottlenecks(supernet, batches, sorted(widths))

    def _step(
        self,
        supernet: ElasticBert,
        teacher: CompactBert,
        recipe: Recipe,
        batch: dict[str, torch.Tensor],
        step: int,
        subnets: list[ArchConfig],
    ) -> dict[str, float]:
        """Step ``step``: the sandwich over ``subnets`` (largest first); gradients accumulate, no optimizer step."""
        labels = batch.pop("labels")
        clean = None  # (batch,) rows the task loss may use; None: all of them
        if recipe.augment > 0:
            seed = int(np.random.SeedSequence([self.config.seed, step, self.world.rank]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)  # the same perturbation after a resume
            batch["input_ids"], perturbed = perturb_batch(
                batch["input_ids"], batch["attention_mask"], recipe.augment, generator, self._mask_id, self._special_ids
            )
            clean = ~perturbed
        maps = recipe.attention_weight > 0
        states = recipe.hidden_weight > 0 or maps  # the attention loss needs each layer's input mask
        with torch.no_grad(), self._autocast():
            reference = teacher(**batch, output_hidden_states=states, output_attentions=maps)
        target_logits = reference.logits
        order = supernet.config.channel_order  # rewired residual stream: which teacher channel each one holds
        channels = None if order is None else torch.tensor(order, device=reference.logits.device)
        losses = []
        for position, arch in enumerate(subnets):
            supernet.set_active_subnet(arch)
            with self._autocast():
                output = supernet(**batch, output_hidden_states=states, output_attentions=maps)
            if position == 0 and recipe.distill_from == "largest":
                # the largest subnet learns from the teacher and the labels; the rest from it
                loss = logit_loss(output.logits, reference.logits) + _task_loss(output.logits, labels, clean)
                target_logits = output.logits.detach()
            else:
                loss = logit_loss(output.logits, target_logits)
                if recipe.label_weight > 0:
                    loss = loss + recipe.label_weight * _task_loss(output.logits, labels, clean)
            if recipe.hidden_weight > 0:
                hidden = hidden_loss(
                    supernet.get_active_arch(),
                    output.hidden_states,
                    output.hidden_masks,
                    reference.hidden_states,
                    channels,
                )
                if hidden is not None:
                    loss = loss + recipe.hidden_weight * hidden
            if maps:
                transfer = attention_loss(
                    supernet.get_active_arch(), output.attentions, output.hidden_masks[:-1], reference.attentions
                )
                if transfer is not None:
                    loss = loss + recipe.attention_weight * transfer
            loss.backward()
            losses.append(float(loss.detach()))
        return {"mean": float(np.mean(losses)), "largest": losses[0], "smallest": losses[1]}

    def _autocast(self) -> Any:
        """bf16 autocast on CUDA (the losses are computed in float32); a no-op on CPU."""
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    # ------------------------------------------------------------------ persistence
    def _save_checkpoint(
        self, supernet: ElasticBert, optimizer: Any, scheduler: Any, step: int, record: dict, seconds: float
    ) -> None:
        with atomic_directory(self.out / CHECKPOINT_DIR, force=True) as scratch:
            supernet.save_pretrained(scratch)
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
                scratch / OPTIMIZER_NAME,
            )
            write_json(
                scratch / STATE_NAME,
                {"step": step, "config": asdict(self.config), "record": record, "train_seconds": seconds},
            )
            killpoints.reached("checkpoint-written")

    def _finish(
        self,
        supernet: ElasticBert,
        teacher: CompactBert,
        space: SearchSpace,
        splits: TrainDev,
        record: dict,
        total: int,
        train_seconds: float,
    ) -> dict[str, Any]:
        dev = splits.dev
        supernet.eval()
        scores = {}
        for name, arch in (
            ("full", supernet.full_arch()),
            ("largest", space.largest()),
            ("smallest", space.smallest()),
        ):
            supernet.set_active_subnet(arch)
            scores[name] = evaluate_model(supernet, dev, device=str(self.device))
        teacher_metrics = evaluate_model(teacher, dev, device=str(self.device))
        supernet.set_active_subnet(supernet.full_arch())
        result = {
            "task": self.info.name,
            "space": self.config.space,
            "main_metric": self.info.main_metric,
            "teacher": teacher_metrics,
            "subnets": scores,
            "steps": total,
            "train_examples": len(splits.train),
            "search_examples": 0 if splits.search is None else len(splits.search),
            "teacher_search_split": self.teacher_holdout,
            "data": splits.data,
            "teacher_fingerprint": teacher_fingerprint(self.config.teacher),
            "dev_examples": len(dev),
            "train_seconds": train_seconds,
            "recipe": self.config.resolved_recipe().to_dict(),
        }
        supernet.cpu()
        # Final files: each written into a scratch directory and renamed into place, then
        # training.json marks completion (a kill before it leaves a resumable, unfinished run).
        self.out.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".final{PARTIAL_MARK}", dir=self.out))
        supernet.save_pretrained(scratch)
        for path in scratch.iterdir():
            os.chmod(path, file_mode())
            os.replace(path, self.out / path.name)
        scratch.rmdir()
        killpoints.reached("final-weights")
        write_json(self.out / "metrics.json", result)
        if splits.holdout is not None:
            write_json(self.out / SEARCH_SPLIT_JSON, {**splits.holdout.record, "teacher": self.teacher_holdout})
        write_json(self.out / "run.json", {**record, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        write_json(
            self.out / "training.json",
            {"complete": True, "steps": total, "recipe": self.config.resolved_recipe().to_dict()},
        )
        # the finished supernet replaces its last checkpoint (hundreds of MB of weights and optimizer state)
        shutil.rmtree(self.out / CHECKPOINT_DIR, ignore_errors=True)
        return result


def _task_loss(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The loss on the true labels, over ``rows`` only when given (zero when no row is left)."""
    if rows is not None:
        if not bool(rows.any()):
            return logits.sum() * 0.0
        logits, labels = logits[rows], labels[rows]
    logits = logits.float()
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def is_trained_supernet(directory: str | Path) -> bool:
    directory = Path(directory)
    return (
        (directory / "training.json").is_file()
        and (directory / CONFIG_NAME).is_file()
        and (directory / WEIGHTS_NAME).is_file()
    )
