"""Short timed probes of the training steps: what the pipeline's plan and ``bench_train_step.py`` report.

A probe builds the model a configuration would train, runs a few of its real steps on the
real (tokenized, cached) training batches after one untimed warm-up step, and extrapolates
to the configuration's step count. The timed batches are spread over the epoch's padded
lengths and the time is read off a fit against length at the epoch's mean
(:func:`epoch_seconds_per_step`). Nothing is written but the tokenization cache; the
models are thrown away. A supernet probe before the teacher exists uses the backbone with a
fresh head as its teacher: the same shapes, so the same time per step.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from bertnas.data import Collator, get_task
from bertnas.data.batching import LengthBucketSampler
from bertnas.space import load_space
from bertnas.supernet.backbone import load_backbone
from bertnas.supernet.elastic import ElasticBert
from bertnas.training.common import make_optimizer, pick_device, set_seed
from bertnas.training.evaluate import load_train_dev
from bertnas.training.finetune import FinetuneConfig, loss_for
from bertnas.training.strategies import make_sampler
from bertnas.training.supernet_train import SupernetTrainConfig, SupernetTrainer


@dataclass
class StepTiming:
    """Seconds per training step, measured, and the time a whole run would take, extrapolated."""

    seconds_per_step: float
    steps: int  # steps the configuration runs
    batch_size: int
    forward_passes: int  # per step (teacher forward included)
    backward_passes: int  # per step
    train_examples: int
    dev_examples: int
    extra_seconds: float  # estimated: rewiring and the final dev evaluations
    search_examples: int = 0  # the held-out search split the search scores subnets on

    @property
    def examples_per_second(self) -> float:
        return self.batch_size / self.seconds_per_step

    @property
    def total_seconds(self) -> float:
        return self.seconds_per_step * self.steps + self.extra_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "examples_per_second": self.examples_per_second, "total_seconds": self.total_seconds}


def epoch_seconds_per_step(seconds: list[float], lengths: list[int], mean_length: float) -> float:
    """Seconds per step over a whole epoch, from steps timed on batches of padded ``lengths``.

    A step's time grows about linearly with its batch's padded length on top of a fixed
    part, and the mean of a few drawn batches is a noisy estimate of a skewed length
    distribution's (SST-2: the 3 first batches of an epoch averaged 12.3 tokens where the
    epoch averages 14.0, and the probe under-priced a 4,000-step supernet run by 16 %).
    So the time is fitted as ``a + b * length`` over the timed steps, which span the length
    range, and read at the epoch's mean padded length; with a single length, or a fit that
    does not rise with length (noise), it is the plain mean.
    """
    x = np.asarray(lengths, dtype=float)
    y = np.asarray(seconds, dtype=float)
    if len(y) == 0 or len(x) != len(y):
        raise ValueError(f"need one padded length per timed step (got {len(x)} lengths, {len(y)} times)")
    if len(set(lengths)) < 2:
        return float(y.mean())
    slope, intercept = np.polyfit(x, y, 1)
    fitted = intercept + slope * mean_length
    return float(fitted) if slope > 0 and fitted > 0 else float(y.mean())


@dataclass
class _ProbeBatches:
    warmup: dict[str, torch.Tensor]
    timed: list[dict[str, torch.Tensor]]
    lengths: list[int]  # padded length of each timed batch
    mean_length: float  # mean padded length over the epoch's batches
    per_epoch: int  # batches per epoch


def _batches(train: Any, batch_size: int, seed: int, count: int, pad_token_id: int) -> _ProbeBatches:
    """``count`` batches of the first epoch at evenly spaced quantiles of padded length (a
    spread to fit time against length), and the median one for the warm-up step."""
    sampler = LengthBucketSampler(train.lengths, batch_size, shuffle=True, seed=seed)
    collate = Collator(pad_token_id)
    epoch = sampler.batches(0)
    padded = np.array([max(train.lengths[i] for i in indices) for indices in epoch])
    order = np.argsort(padded, kind="stable")
    picks = [int(order[int((k + 0.5) * len(order) / count)]) for k in range(count)]
    warmup = int(order[len(order) // 2])
    return _ProbeBatches(
        warmup=collate([train[i] for i in epoch[warmup]]),
        timed=[collate([train[i] for i in epoch[k]]) for k in picks],
        lengths=[int(padded[k]) for k in picks],
        mean_length=float(padded.mean()),
        per_epoch=len(sampler),
    )


def _seconds_per_step(step_fn: Any, batches: _ProbeBatches) -> float:
    """Seconds per step over an epoch: one untimed warm-up step, then each timed batch's step
    timed alone and read off :func:`epoch_seconds_per_step`."""
    step_fn(batches.warmup)  # allocations, lazy initialisation
    seconds = []
    for batch in batches.timed:
        start = time.perf_counter()
        step_fn(batch)
        seconds.append(time.perf_counter() - start)
    return epoch_seconds_per_step(seconds, batches.lengths, batches.mean_length)


def probe_finetune(config: FinetuneConfig, steps: int = 3) -> StepTiming:
    """Time ``steps`` dense fine-tuning steps of ``config`` (after a warm-up step)."""

    info = get_task(config.task)
    set_seed(config.seed)
    device = pick_device(config.device)
    model, tokenizer = load_backbone(config.backbone, num_labels=info.num_labels)
    model.to(device).train()
    splits = load_train_dev(
        info, tokenizer, config.glue_dir, config.max_length, config.train_subset, config.dev_subset, config.search_split
    )
    train, dev_examples = splits.train, len(splits.dev)
    batches = _batches(train, config.batch_size, config.seed, steps, 0)
    optimizer = make_optimizer(model, config.lr, config.weight_decay)

    def step(batch: dict[str, torch.Tensor]) -> None:
        batch = {key: value.to(device) for key, value in batch.items()}
        labels = batch.pop("labels")
        loss_for(model(**batch).logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _seconds_per_step(step, batches)
    total = config.total_steps(batches.per_epoch)
    # evaluation: forward only (about a third of a step) over dev batches of 32
    evaluation = seconds / 3 * dev_examples / config.batch_size
    return StepTiming(seconds, total, config.batch_size, 1, 1, len(train), dev_examples, evaluation)


def probe_supernet(config: SupernetTrainConfig, steps: int = 3, backbone: str | None = None) -> StepTiming:
    """Time ``steps`` supernet training steps of ``config`` (after a warm-up step).

    ``backbone`` stands in for the teacher when ``config.teacher`` does not exist yet.
    """

    info = get_task(config.task)
    set_seed(config.seed)
    device = pick_device(config.device)
    source = backbone or config.teacher
    num_labels = None if backbone is None else info.num_labels
    teacher_supernet = ElasticBert.from_backbone(source, num_labels=num_labels)
    teacher = teacher_supernet.get_active_subnet().to(device).eval()
    probe_space = load_space(config.space).bind(teacher_supernet.limits, backbone=source)
    supernet = ElasticBert.from_backbone(
        source,
        num_labels=num_labels,
        max_ffn_stack=probe_space.max_ffn_stack,
        max_bottleneck=probe_space.max_bottleneck,
    ).to(device)
    supernet.train()
    space = load_space(config.space).bind(supernet.limits, backbone=source)
    tokenizer = supernet.tokenizer
    splits = load_train_dev(
        info, tokenizer, config.glue_dir, config.max_length, config.train_subset, config.dev_subset, config.search_split
    )
    train, dev_examples = splits.train, len(splits.dev)
    search_examples = 0 if splits.search is None else len(splits.search)
    batches = _batches(train, config.batch_size, config.seed, steps, supernet.config.pad_token_id)
    total = config.total_steps(batches.per_epoch)
    recipe = config.resolved_recipe()
    strategy = make_sampler(space, recipe, config.seed, config.stages)
    trainer = SupernetTrainer(config, "/nonexistent-probe")  # only its step function is used
    optimizer = make_optimizer(supernet, config.lr, config.weight_decay)
    middle = total // 2  # a step past every progressive stage's start: the subnets of a typical step
    subnets = strategy.subnets(middle, total)
    subnet_count = len(subnets)

    def step(batch: dict[str, torch.Tensor]) -> None:
        batch = {key: value.to(device) for key, value in batch.items()}
        trainer._step(supernet, teacher, recipe, batch, middle, subnets)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _seconds_per_step(step, batches)
    dense_forward = seconds / (1 + 3 * subnet_count)  # one forward ~ a third of a forward + backward
    # rewiring: forward + backward over rewire_batches; the end: 3 subnets and the teacher on dev
    extra = (3 * dense_forward * config.rewire_batches if config.rewire else 0.0) + 4 * dense_forward * (
        dev_examples / config.batch_size
    )
    return StepTiming(
        seconds,
        total,
        config.batch_size,
        1 + subnet_count,
        subnet_count,
        len(train),
        dev_examples,
        extra,
        search_examples,
    )
