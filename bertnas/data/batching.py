"""Batching for tokenized GLUE splits: dynamic padding and length-bucketed batches.

GLUE sentence lengths vary a lot (SST-2: 4 to 60+ tokens), so padding every batch to
``max_length`` wastes most of the compute, and even padding each batch to its own
longest example wastes a lot when batches mix short and long sentences. Bucketing
groups examples of similar length into the same batch:

* training (``shuffle=True``): shuffle all examples with a seeded generator, cut them
  into chunks of ``bucket_batches`` batches' worth, sort each chunk by length, cut it
  into batches, then shuffle the order of all batches. Batches stay random in content
  (chunks are random) and in order, but nearly uniform in length.
* evaluation (``shuffle=False``): sort the whole split by length, longest first (the
  batch most likely to run out of memory comes first), deterministically.

:func:`padding_share` measures what is left of the padding, and
:func:`padding_comparison` reports it with and without bucketing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from bertnas.errors import BertnasError


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of examples to the batch's longest one.

    Each feature has ``input_ids``, optionally ``token_type_ids`` and ``labels`` (or
    ``label``). Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` (long
    tensors, shape ``(batch, longest)``) and ``labels`` when the features have them.
    """
    if not features:
        raise BertnasError("cannot collate an empty batch")
    width = max(len(feature["input_ids"]) for feature in features)
    input_ids = torch.full((len(features), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(features), width), dtype=torch.long)
    token_type_ids = torch.zeros((len(features), width), dtype=torch.long)
    for row, feature in enumerate(features):
        length = len(feature["input_ids"])
        input_ids[row, :length] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
        attention_mask[row, :length] = 1
        if "token_type_ids" in feature:
            token_type_ids[row, :length] = torch.as_tensor(feature["token_type_ids"], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    label_key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
    if label_key is not None:
        labels = [torch.as_tensor(feature[label_key]) for feature in features]
        batch["labels"] = torch.stack(labels)
    return batch


@dataclass(frozen=True)
class Collator:
    """:func:`collate` with a fixed pad id; picklable, so it works with DataLoader workers."""

    pad_token_id: int = 0

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return collate(features, self.pad_token_id)


def batch_indices(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | Sequence[int] = 0,
    bucket: bool = True,
    bucket_batches: int = 50,
    drop_last: bool = False,
) -> list[list[int]]:
    """Example indices of each batch, in the order the batches are to be used.

    ``bucket=False`` gives plain batches: dataset order, or a seeded random order when
    ``shuffle``. See the module docstring for the bucketed orders.
    """
    if batch_size < 1:
        raise BertnasError(f"batch size must be at least 1, got {batch_size}")
    if bucket_batches < 1:
        raise BertnasError(f"bucket_batches must be at least 1, got {bucket_batches}")
    lengths_array = np.asarray(lengths, dtype=np.int64)
    count = len(lengths_array)
    rng = np.random.default_rng(seed)
    order = rng.permutation(count) if shuffle else np.arange(count)
    if bucket and shuffle:
        chunk = batch_size * bucket_batches
        pieces = []
        for start in range(0, count, chunk):
            part = order[start : start + chunk]
            pieces.append(part[np.argsort(lengths_array[part], kind="stable")])
        order = np.concatenate(pieces) if pieces else order
    elif bucket:
        # Longest first: a batch that does not fit in memory fails at once, not at the end.
        order = np.argsort(-lengths_array, kind="stable")
    batches = [order[start : start + batch_size].tolist() for start in range(0, count, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class LengthBucketSampler(Sampler[list[int]]):
    """A DataLoader ``batch_sampler`` yielding the batches of :func:`batch_indices`.

    With ``shuffle``, each pass draws a new order from ``(seed, epoch)``; the epoch
    advances by one after every pass, or is set with :meth:`set_epoch` (e.g. on resume),
    so a run is reproducible from its seed.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        bucket: bool = True,
        bucket_batches: int = 50,
        drop_last: bool = False,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket = bucket
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` on the next pass."""
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of one pass (``epoch`` defaults to the current one), without advancing."""
        return batch_indices(
            self.lengths,
            self.batch_size,
            shuffle=self.shuffle,
            seed=(self.seed, self.epoch if epoch is None else epoch),
            bucket=self.bucket,
            bucket_batches=self.bucket_batches,
            drop_last=self.drop_last,
        )

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def make_dataloader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    bucket_batches: int = 50,
    drop_last: bool = False,
    pad_token_id: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over a :class:`~bertnas.data.glue.TokenizedSplit` (anything with ``lengths``)."""
    sampler = LengthBucketSampler(
        dataset.lengths,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        bucket=bucket,
        bucket_batches=bucket_batches,
        drop_last=drop_last,
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(pad_token_id), num_workers=num_workers)


def padding_share(batches: Iterable[Mapping[str, torch.Tensor] | Sequence[int]]) -> float:
    """Padding tokens / all tokens over ``batches``.

    Each batch is a collated dict (its ``attention_mask`` is counted) or the list of its
    examples' lengths (padded to the longest), so the share can be computed without
    building tensors. 0.0 for no tokens.
    """
    real = 0
    total = 0
    for batch in batches:
        if isinstance(batch, Mapping):
            mask = batch["attention_mask"]
            real += int(mask.sum())
            total += mask.numel()
        elif len(batch):
            real += int(sum(batch))
            total += len(batch) * int(max(batch))
    return 0.0 if total == 0 else (total - real) / total


def padding_comparison(
    lengths: Sequence[int], batch_size: int, *, seed: int = 0, bucket_batches: int = 50
) -> dict[str, float]:
    """Padding share of the batch orders, for reporting the benefit of bucketing.

    Keys: ``sequential`` (dataset order), ``shuffled`` (random batches, the usual
    training order), ``bucketed`` (bucketed training batches), ``sorted`` (bucketed
    evaluation batches). Every batch is padded to its own longest example.
    """
    lengths = list(lengths)

    def share(**kwargs: Any) -> float:
        batches = batch_indices(lengths, batch_size, seed=seed, bucket_batches=bucket_batches, **kwargs)
        return padding_share([lengths[i] for i in batch] for batch in batches)

    return {
        "sequential": share(shuffle=False, bucket=False),
        "shuffled": share(shuffle=True, bucket=False),
        "bucketed": share(shuffle=True, bucket=True),
        "sorted": share(shuffle=False, bucket=True),
    }
