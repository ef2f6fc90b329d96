"""Weight-shared evaluation: the dev metric of any subnet, cached so none runs twice."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bertnas.arch import ArchConfig
from bertnas.cost import count_macs, count_params
from bertnas.data import compute_metrics, get_task, load_task, make_dataloader, tokenize_split
from bertnas.data.glue import TokenizedSplit
from bertnas.errors import BertnasError
from bertnas.supernet.elastic import WEIGHTS_NAME, ElasticBert
from bertnas.training.eval_cache import EvalCache

CACHE_NAME = "eval_cache.sqlite"


def predict(model: nn.Module, loader: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over ``loader`` (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    with torch.inference_mode():
        for batch in loader:
            labels = batch.pop("labels")
            batch = {key: value.to(device) for key, value in batch.items()}
            all_logits.append(model(**batch).logits.float().cpu())
            all_labels.append(labels)
    model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate_model(model: nn.Module, data: TokenizedSplit, batch_size: int = 64, device: str = "cpu") -> dict:
    """The task's official metrics of ``model`` on ``data`` (length-sorted batches)."""
    loader = make_dataloader(data, batch_size, shuffle=False, bucket=True)
    logits, labels = predict(model, loader, device)
    predictions = logits.squeeze(-1) if data.task.is_regression else logits.argmax(dim=-1)
    return compute_metrics(data.task.name, predictions.numpy(), labels.numpy())


def subset_of(data: TokenizedSplit, size: int | None) -> TokenizedSplit:
    """The first ``size`` examples (a fixed, reproducible dev subset); all when None."""
    if size is None or size >= len(data):
        return data
    return TokenizedSplit(
        data.task,
        data.split,
        data.input_ids[:size],
        data.token_type_ids[:size],
        data.labels[:size] if data.labels is not None else None,
        data.max_length,
    )


def supernet_fingerprint(directory: str | Path) -> str:
    """sha256 of a saved supernet's weights: the cache key for "this supernet"."""
    digest = hashlib.sha256()
    with open(Path(directory) / WEIGHTS_NAME, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class SubnetEvaluator:
    """Evaluates subnets of one saved supernet on one task's dev split, with a persistent cache."""

    supernet: ElasticBert
    data: TokenizedSplit
    fingerprint: str
    cache: EvalCache | None
    subset: str
    batch_size: int = 64
    device: str = "cpu"

    @classmethod
    def open(
        cls,
        directory: str | Path,
        task: str | None = None,
        split: str = "dev",
        subset: int | None = None,
        glue_dir: str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        use_cache: bool = True,
    ) -> SubnetEvaluator:
        directory = Path(directory)
        if not (directory / WEIGHTS_NAME).is_file():
            raise BertnasError(
                f"{directory} is not a trained supernet directory (no {WEIGHTS_NAME}); "
                "train one with `bertnas supernet train --task TASK`"
            )
        supernet = ElasticBert.from_pretrained(directory).to(device)
        task = task or supernet.config.task
        if task is None:
            raise BertnasError(f"the supernet in {directory} records no task; pass --task")
        if supernet.tokenizer is None:
            raise BertnasError(f"the supernet in {directory} has no tokenizer files")
        info = get_task(task)
        if supernet.config.num_labels != info.num_labels:
            raise BertnasError(
                f"the supernet in {directory} has {supernet.config.num_labels} outputs but task {info.name} "
                f"needs {info.num_labels}; evaluate it on the task it was trained for ({supernet.config.task})"
            )
        data = tokenize_split(load_task(info.name, split, glue_dir), supernet.tokenizer)
        data = subset_of(data, subset)
        cache = EvalCache(directory / CACHE_NAME) if use_cache else None
        subset_key = f"{split}:first{len(data)}"
        return cls(supernet, data, supernet_fingerprint(directory), cache, subset_key, batch_size, device)

    def evaluate(self, arch: ArchConfig) -> dict[str, Any]:
        """Metrics plus MACs and params of ``arch``; ``cached`` tells whether it was looked up."""
        self.supernet.set_active_subnet(arch)
        arch = self.supernet.get_active_arch()
        task = self.data.task.name
        key = (self.fingerprint, task, self.data.split, arch.hash(), self.subset)
        cached = self.cache.get(*key) if self.cache is not None else None
        if cached is not None:
            return {**cached, "cached": True}
        start = time.perf_counter()
        metrics = evaluate_model(self.supernet, self.data, self.batch_size, self.device)
        result = {
            "task": task,
            "split": self.data.split,
            "examples": len(self.data),
            "metrics": metrics,
            "main_metric": self.data.task.main_metric,
            "score": metrics[self.data.task.main_metric],
            "macs": count_macs(arch, min(128, arch.max_position_embeddings)),
            "macs_seq_len": min(128, arch.max_position_embeddings),
            "params": count_params(arch),
            "arch_hash": arch.hash(),
            "seconds": time.perf_counter() - start,
        }
        if self.cache is not None:
            self.cache.put(*key, arch.to_json(), result)
        return {**result, "cached": False}
