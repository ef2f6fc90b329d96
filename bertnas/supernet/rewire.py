"""DynaBERT's network rewiring: put the most important heads and FFN neurons first.

The supernet activates a subnet by *prefix slices*: a layer with ``a`` heads runs on heads
``0 .. a-1``, an FFN of width ``f`` on neurons ``0 .. f-1`` (see
:mod:`bertnas.supernet.elastic`). In a pretrained BERT the order of heads and neurons is
arbitrary, so a prefix slice would drop important units as readily as useless ones.
DynaBERT (Hou et al., "DynaBERT: Dynamic BERT with Adaptive Width and Depth", NeurIPS
2020) therefore *rewires* the network once, before width-adaptive training: it scores
every head and neuron, then permutes them in descending importance, so that every prefix
keeps the most important units and the small subnets start from the best sub-network
the backbone contains, and training concentrates the important units in the part all
subnets share.

Importance is first-order (Taylor) on a task loss:

- head ``h``: ``|dL/d m_h|`` where ``m_h`` is a mask multiplied into the head's context
  (all ones: the model is unchanged), summed over batches (Michel et al., "Are Sixteen
  Heads Really Better than One?", NeurIPS 2019);
- FFN neuron ``i``: ``|sum_j W1[i,j] dW1[i,j] + b1[i] db1[i]| + |sum_j W2[j,i] dW2[j,i]|``
  with ``W1`` the up (hidden -> ffn) and ``W2`` the down (ffn -> hidden) projection: the
  first-order change of the loss when the neuron's incoming, resp. outgoing, weights are
  zeroed.

A permutation of heads (with their query/key/value rows and the matching columns of the
attention output) or of FFN neurons (rows of the up projection, columns of the down one)
does not change what the full model computes, only which units the prefix slices keep.

Gradient accumulation. DynaBERT's reference code (``compute_neuron_head_importance`` in
``DynaBERT/run_glue.py``) calls ``loss.backward()`` for every batch and never zeroes the
gradients, so the gradients it reads after batch ``t`` are the *running sums*
``g_1 + ... + g_t``; each batch adds ``|f(g_1 + ... + g_t)|`` (``f`` the head or neuron
score). The papers define importance as the expectation of ``|f(g)|`` over the data; that
is what :func:`compute_importance` computes by default (per-batch gradients, absolute
values summed). ``running_gradients=True`` reproduces the reference code instead. With a
single batch the two agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.model.functional import BertOutput
from bertnas.model.params import FFNParams
from bertnas.supernet.elastic import ElasticBert

LossFn = Callable[[BertOutput, Mapping[str, Any]], torch.Tensor]
"""``loss_fn(output, batch) -> scalar loss``; ``batch`` is the dict the model ran on."""

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Importance:
    """Importance scores of every head and FFN neuron of a supernet (higher: keep first)."""

    heads: torch.Tensor  # (num_layers, num_heads)
    ffn: torch.Tensor  # (num_layers, ffn_dim): the backbone's FFN
    extra_ffns: torch.Tensor  # (num_layers, max_ffn_stack - 1, ffn_dim): the extra stacked FFNs


def default_loss(output: BertOutput, batch: Mapping[str, Any]) -> torch.Tensor:
    """The task loss: cross-entropy on the logits, or MSE for a single-output (regression) head."""
    if "labels" not in batch:
        raise BertnasError("importance batches need 'labels' to compute the task loss")
    logits, labels = output.logits, batch["labels"]
    assert logits is not None  # the caller checked that the supernet has a classifier
    if logits.shape[-1] == 1:  # regression (STS-B)
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def _largest_arch(supernet: ElasticBert) -> ArchConfig:
    """The full backbone plus every extra stacked FFN, so that the extras get gradients too.

    Extra FFNs start with zero output weights (identity), so until they are trained this
    computes exactly the backbone's function.
    """
    full = supernet.full_arch()
    stack = supernet.config.max_ffn_stack
    return full.replace(layers=tuple(replace(layer, ffn_stack=stack) for layer in full.layers))


@contextmanager
def _measuring(supernet: ElasticBert, tensors: list[nn.Parameter]):
    """Eval mode (no dropout: deterministic scores), largest subnet, gradients on ``tensors``.

    Restores the previous mode, active subnet and ``requires_grad`` flags afterwards, even
    on error, so that computing importance leaves the supernet as it found it.
    """
    was_training, previous_arch = supernet.training, supernet.get_active_arch()
    flags = [t.requires_grad for t in tensors]
    try:
        supernet.eval()
        supernet.set_active_subnet(_largest_arch(supernet))
        for t in tensors:
            t.requires_grad_(True)  # a frozen backbone still needs gradients to be scored
        with torch.enable_grad():
            yield
    finally:
        for t, flag in zip(tensors, flags, strict=True):
            t.requires_grad_(flag)
        supernet.set_active_subnet(previous_arch)
        supernet.train(was_training)


def _neuron_scores(ffn: FFNParams, grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """DynaBERT's FFN neuron score from the gradients of (up weight, up bias, down weight)."""
    up_w, up_b, down_w = grads
    incoming = (ffn.up.weight * up_w).sum(dim=1) + ffn.up.bias * up_b
    outgoing = (ffn.down.weight * down_w).sum(dim=0)
    return incoming.abs() + outgoing.abs()


def compute_importance(
    supernet: ElasticBert,
    batches: Iterable[Mapping[str, Any]],
    loss_fn: LossFn | None = None,
    running_gradients: bool = False,
) -> Importance:
    """Taylor importance of every head and FFN neuron, from one backward pass per batch.

    ``batches`` yields dicts with ``input_ids``, ``attention_mask``, optionally
    ``token_type_ids``, and ``labels`` (for the default loss). The largest subnet runs
    in eval mode; the supernet's mode, active subnet and parameter gradients (``.grad``)
    are left untouched. ``running_gradients=True`` reproduces DynaBERT's reference code,
    which never zeroes gradients between batches (see the module docstring).
    """
    if loss_fn is None:
        if supernet.classifier is None:
            raise BertnasError(
                "rewiring needs a task head to score heads and neurons by the task loss: fine-tune the "
                "backbone first (a BertForSequenceClassification checkpoint) or build the supernet with num_labels"
            )
        loss_fn = default_loss
    c = supernet.config
    ffns: list[FFNParams] = []  # per layer: the backbone FFN, then its extras
    for layer in supernet.layers:
        ffns.extend([layer.ffn, *layer.extra_ffns])
    tensors = [t for ffn in ffns for t in (ffn.up.weight, ffn.up.bias, ffn.down.weight)]
    device = supernet.embeddings.word.device

    heads = torch.zeros(c.num_layers, c.num_heads, device=device)
    neurons = torch.zeros(len(ffns), c.ffn_dim, device=device)
    running: list[torch.Tensor] | None = None
    seen = 0
    with _measuring(supernet, tensors):
        for batch in batches:
            # All ones: the model's function is unchanged, only its gradient is read.
            head_mask = torch.ones(c.num_layers, c.num_heads, device=device, requires_grad=True)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            inputs = {k: batch[k] for k in _MODEL_INPUTS if batch.get(k) is not None}
            output = supernet(**inputs, head_mask=list(head_mask))
            loss = loss_fn(output, batch)
            if not torch.isfinite(loss):
                raise BertnasError(f"importance loss is {loss.item()} on batch {seen}; check the labels and model")
            # autograd.grad, not backward(): the parameters' .grad (an ongoing training step's) stay as they were.
            grads = list(torch.autograd.grad(loss, [head_mask, *tensors]))
            if running_gradients:
                running = grads if running is None else [r + g for r, g in zip(running, grads, strict=True)]
                grads = running
            with torch.no_grad():  # scores are data, not part of any graph
                heads += grads[0].abs()
                for k, ffn in enumerate(ffns):
                    neurons[k] += _neuron_scores(ffn, tuple(grads[1 + 3 * k : 4 + 3 * k]))
            seen += 1
    if seen == 0:
        raise BertnasError("no batches to compute importance on")
    per_layer = neurons.view(c.num_layers, c.max_ffn_stack, c.ffn_dim)
    return Importance(heads=heads, ffn=per_layer[:, 0].clone(), extra_ffns=per_layer[:, 1:].clone())


def head_importance(
    supernet: ElasticBert, batches: Iterable[Mapping[str, Any]], loss_fn: LossFn | None = None
) -> torch.Tensor:
    """``(num_layers, num_heads)`` head importance; :func:`compute_importance` gives all scores at once."""
    return compute_importance(supernet, batches, loss_fn).heads


def ffn_importance(
    supernet: ElasticBert, batches: Iterable[Mapping[str, Any]], loss_fn: LossFn | None = None
) -> torch.Tensor:
    """``(num_layers, ffn_dim)`` neuron importance of the backbone's FFNs (see :func:`compute_importance`)."""
    return compute_importance(supernet, batches, loss_fn).ffn


def descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices that sort the last dimension in descending order; ties keep their order (stable)."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


def _check_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise BertnasError(f"{name} has shape {tuple(tensor.shape)}, expected {shape} for this supernet")


@torch.no_grad()
def _permute_ffn(ffn: FFNParams, order: torch.Tensor) -> None:
    """Neuron ``order[i]`` becomes neuron ``i``: rows of the up projection, columns of the down one."""
    ffn.up.weight.copy_(ffn.up.weight[order])
    ffn.up.bias.copy_(ffn.up.bias[order])
    ffn.down.weight.copy_(ffn.down.weight[:, order])


@torch.no_grad()
def _permute_heads(layer: nn.Module, order: torch.Tensor, num_heads: int, head_dim: int) -> None:
    """Head ``order[i]`` becomes head ``i`` (query/key/value row blocks, attention-output column blocks)."""
    for linear in (layer.query, layer.key, layer.value):
        weight = linear.weight.view(num_heads, head_dim, -1)
        linear.weight.copy_(weight[order].reshape_as(linear.weight))
        linear.bias.copy_(linear.bias.view(num_heads, head_dim)[order].reshape(-1))
    out = layer.attention_out.weight
    out.copy_(out.view(out.shape[0], num_heads, head_dim)[:, order].reshape_as(out))


def rewire(
    supernet: ElasticBert,
    head_importance: torch.Tensor,
    ffn_importance: torch.Tensor,
    extra_ffn_importance: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Permute heads and FFN neurons in place, per layer, in descending importance.

    Returns the orders applied (``order[layer][new position] = old index``):
    ``head_order`` (num_layers, num_heads), ``ffn_order`` (num_layers, ffn_dim) and
    ``extra_ffn_order`` (num_layers, max_ffn_stack - 1, ffn_dim). Each extra stacked FFN
    is an independent FFN and gets its own order from ``extra_ffn_importance``; an extra
    FFN whose scores are all zero (the untrained, zero-output initialisation) is left
    as it is. The full model computes the same function before and after.

    Rewire before creating an optimizer: moment estimates of permuted parameters would
    no longer line up with them.
    """
    c = supernet.config
    _check_shape("head_importance", head_importance, (c.num_layers, c.num_heads))
    _check_shape("ffn_importance", ffn_importance, (c.num_layers, c.ffn_dim))
    extras = c.max_ffn_stack - 1
    if extra_ffn_importance is None:
        extra_ffn_importance = torch.zeros(c.num_layers, extras, c.ffn_dim)
    _check_shape("extra_ffn_importance", extra_ffn_importance, (c.num_layers, extras, c.ffn_dim))

    device = supernet.embeddings.word.device
    head_order = descending_order(head_importance.detach()).to(device)
    ffn_order = descending_order(ffn_importance.detach()).to(device)
    extra_order = torch.arange(c.ffn_dim, device=device).repeat(c.num_layers, extras, 1)
    for i, layer in enumerate(supernet.layers):
        _permute_heads(layer, head_order[i], c.num_heads, c.head_dim)
        _permute_ffn(layer.ffn, ffn_order[i])
        for k, extra in enumerate(layer.extra_ffns):
            scores = extra_ffn_importance[i, k].detach()
            if bool((scores != 0).any()):  # all zero: nothing to rank, keep the extra FFN as it is
                extra_order[i, k] = descending_order(scores).to(device)
                _permute_ffn(extra, extra_order[i, k])
    return {"head_order": head_order, "ffn_order": ffn_order, "extra_ffn_order": extra_order}


def rewire_supernet(
    supernet: ElasticBert,
    batches: Iterable[Mapping[str, Any]],
    loss_fn: LossFn | None = None,
    running_gradients: bool = False,
) -> dict[str, torch.Tensor]:
    """Compute importance on ``batches`` and rewire; returns the importances and the orders applied.

    Keys: ``head_importance``, ``ffn_importance``, ``extra_ffn_importance`` (as measured,
    in the original order) and ``head_order``, ``ffn_order``, ``extra_ffn_order``
    (see :func:`rewire`); all on the CPU, ready to log.
    """
    importance = compute_importance(supernet, batches, loss_fn, running_gradients)
    orders = rewire(supernet, importance.heads, importance.ffn, importance.extra_ffns)
    result = {
        "head_importance": importance.heads,
        "ffn_importance": importance.ffn,
        "extra_ffn_importance": importance.extra_ffns,
        **orders,
    }
    return {name: tensor.detach().cpu() for name, tensor in result.items()}
