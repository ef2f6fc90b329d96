"""PoWER-BERT token retention: significance scores and extraction.

A token's significance in a layer is the attention it *receives*: attention
probabilities averaged over heads, summed over the (real) queries, minus the token's
attention to itself. After the attention sub-layer (after its Add & Norm) each example
keeps its most significant tokens, [CLS] always, in their original order.

Padded batches: every example keeps ``kept_tokens(retention, its own length)`` real
tokens. The batch tensor shrinks to the largest such count; shorter examples fill the
remaining slots with masked-out positions. A padding token is never kept while a real
token of the same example is dropped, because padding scores are ``-inf``.
"""

from __future__ import annotations

import torch

from bertnas.retention_rule import RETENTION_SCALE, retention_units


def token_significance(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention received per token.

    Args:
        probs: attention probabilities ``(batch, heads, queries, keys)``.
        mask: ``(batch, tokens)`` bool, True for real tokens.

    Returns:
        ``(batch, tokens)`` significance; ``-inf`` for padding, ``+inf`` for [CLS].
    """
    mean_probs = probs.mean(dim=1)  # (B, q, k)
    query_weight = mask.to(mean_probs.dtype).unsqueeze(-1)  # padding queries do not vote
    received = (mean_probs * query_weight).sum(dim=1)
    self_attention = torch.diagonal(mean_probs, dim1=1, dim2=2) * mask.to(mean_probs.dtype)
    significance = received - self_attention
    significance = significance.masked_fill(~mask, float("-inf"))
    significance[:, 0] = float("inf")
    return significance


def kept_counts(retention: float, lengths: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Per-example kept token counts: ``bertnas.arch.kept_tokens`` vectorised.

    ``lengths`` are the examples' original real lengths (retention is relative to them);
    ``current`` are the real tokens still present, which a count never exceeds.
    """
    # Integers only: exported graphs store bare float scalars as float32 and drop a float
    # epsilon, so a float rule keeps 15 of 25 tokens at 0.56 in ONNX and 14 in PyTorch. And
    # `//`, not torch.div(rounding_mode=...): the exporter turns the latter into float32
    # division, which rounds (40 * 700000 + 999999) / 10**6 up to 29.
    units = retention_units(retention)
    wanted = (lengths.to(torch.long) * units + (RETENTION_SCALE - 1)) // RETENTION_SCALE
    return torch.minimum(wanted.clamp(min=1), current)


def select_tokens(
    significance: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the tokens to keep, in original order, and the new padding mask.

    Returns ``index (batch, K)`` and ``new_mask (batch, K)`` with ``K = counts.max()``, or
    ``K = width`` when given (at least ``counts.max()``; the extra slots are masked).
    """
    if width is not None:
        return _select_static(significance, counts, width)
    width = counts.max().item()  # .item(), not int(): torch.export traces it as a data-dependent size
    top = significance.topk(width, dim=1, sorted=True).indices  # rank order
    rank = torch.arange(width, device=counts.device).unsqueeze(0)
    keep = rank < counts.unsqueeze(1)
    index, order = top.sort(dim=1)  # back to original token order
    new_mask = keep.gather(1, order)
    return index, new_mask


def _select_static(significance: torch.Tensor, counts: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`select_tokens` with a fixed ``width`` and without a sort (LiteRT has none):
    the kept tokens fill the first slots in their original order, unkept ones the rest."""
    tokens = significance.shape[1]
    top = significance.topk(width, dim=1, sorted=True).indices  # (batch, width), rank order
    rank = torch.arange(width, device=counts.device).unsqueeze(0)
    keep = (rank < counts.unsqueeze(1)).to(significance.dtype)
    kept = torch.zeros_like(significance).scatter(1, top, keep)  # (batch, tokens): 1 where kept
    position = torch.arange(tokens, device=counts.device).to(significance.dtype).unsqueeze(0)
    # Kept tokens first, each group by position: the largest keys are the kept, earliest tokens.
    key = torch.where(kept > 0, tokens - position, -1.0 - position)
    index = key.topk(width, dim=1, sorted=True).indices
    return index, kept.gather(1, index) > 0


def gather_tokens(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select ``index`` (batch, K) along the token axis of ``hidden`` (batch, tokens, width)."""
    return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
