"""Input perturbation for distillation on small tasks (a cheap form of TinyBERT-style augmentation).

A task with a few thousand labelled examples gives the supernet's small subnets few distinct
inputs to learn the teacher's function from. Distillation does not need labels, so every
step can show the teacher and the subnets *perturbed* copies of its examples: some of a
row's word pieces are replaced by ``[MASK]`` or by a word piece drawn from elsewhere in the
batch, and the subnets learn the teacher's soft predictions on them (hidden states and
attention maps too). The task loss on the true labels is kept for the unperturbed rows only,
since a perturbed sentence may no longer carry its label.

Reproducible per step: the perturbation of step ``s`` comes from ``(seed, s, rank)``, so a
resumed training draws the same one.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def perturb_batch(
    input_ids: torch.Tensor,  # (batch, tokens)
    attention_mask: torch.Tensor,  # (batch, tokens), 1 for real tokens
    rate: float,
    generator: torch.Generator,
    mask_token_id: int | None,
    special_ids: Iterable[int],
    row_fraction: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A perturbed copy of ``input_ids`` and the boolean (batch,) vector of the rows perturbed.

    About ``row_fraction`` of the rows are perturbed; in each, every real, non-special word
    piece is replaced with probability ``rate``: by ``mask_token_id`` half of the time (when
    the tokenizer has one), else by a word piece drawn uniformly from the batch's own real
    tokens (in-domain vocabulary, no word list needed). Special tokens ([CLS], [SEP], padding)
    never change, so lengths, segments and masks stay valid.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"perturbation rate {rate} must be in [0, 1]")
    ids = input_ids.cpu()
    real = attention_mask.cpu().bool()
    special = torch.tensor(sorted(set(special_ids)), dtype=ids.dtype)
    candidates = real & ~torch.isin(ids, special)  # (batch, tokens): positions that may change
    rows = torch.rand(ids.shape[0], generator=generator) < row_fraction  # (batch,)
    if rate == 0.0 or not bool(candidates.any()):
        return input_ids, torch.zeros_like(rows).to(input_ids.device)
    replace = candidates & rows[:, None] & (torch.rand(ids.shape, generator=generator) < rate)
    pool = ids[candidates]  # (n,) the batch's word pieces
    drawn = pool[torch.randint(len(pool), ids.shape, generator=generator)]
    if mask_token_id is not None:
        use_mask = torch.rand(ids.shape, generator=generator) < 0.5
        drawn = torch.where(use_mask, torch.full_like(ids, mask_token_id), drawn)
    perturbed = torch.where(replace, drawn, ids)
    changed = replace.any(dim=1)  # a row drawn for perturbation whose tokens all survived is clean
    return perturbed.to(input_ids.device), changed.to(input_ids.device)
