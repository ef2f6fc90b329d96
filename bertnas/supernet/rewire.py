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

The unified space also slices the hidden size and, within each head, the query/key and
value dimensions (schuBERT), so those are ranked the same way:

- query/key dimension ``d`` of head ``h``: ``|sum Wq[d] dWq[d] + bq[d] dbq[d]| + |same for K|``
  (zeroing either side removes the term ``q_d k_d`` from every attention score);
- value dimension ``d`` of head ``h``: ``|sum Wv[d] dWv[d] + bv[d] dbv[d]| + |sum_j Wo[j,d] dWo[j,d]|``;
- hidden channel ``c``: the sum, over every tensor that reads or writes the residual stream
  (embeddings, their norm, every projection into or out of it, every LayerNorm, pooler,
  classifier), of ``|sum of W dW over the tensor's slice at channel c|``.

A permutation of heads (with their query/key/value rows and the matching columns of the
attention output), of FFN neurons (rows of the up projection, columns of the down one),
of query/key dimensions inside a head (the same on Q and K, so every ``q . k`` is
unchanged), of value dimensions (V rows, attention-output columns) or of hidden channels
(the same everywhere on the residual stream; LayerNorm is permutation-equivariant) does
not change what the full model computes, only which units the prefix slices keep.

Bottleneck projections are not permuted: they start as the identity on the first ``b``
channels (see :mod:`bertnas.supernet.elastic`), so after a hidden permutation a bottleneck
of width ``b`` keeps the ``b`` most important channels. That only holds before they are
trained, so rewiring the hidden size of a supernet whose bottlenecks have moved is an error.
The hidden order is recorded in ``supernet.config.channel_order`` (backbone channel held at
each position), so that distillation can compare against the backbone's hidden states.

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
from bertnas.model.functional import ForwardOutput
from bertnas.model.params import FFNParams
from bertnas.supernet.elastic import ElasticBert

LossFn = Callable[[ForwardOutput, Mapping[str, Any]], torch.Tensor]
"""``loss_fn(output, batch) -> scalar loss``; ``batch`` is the dict the model ran on."""

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Importance:
    """Importance scores of every head and FFN neuron of a supernet (higher: keep first)."""

    heads: torch.Tensor  # (num_layers, num_heads)
    ffn: torch.Tensor  # (num_layers, ffn_dim): the backbone's FFN
    extra_ffns: torch.Tensor  # (num_layers, max_ffn_stack - 1, ffn_dim): the extra stacked FFNs
    hidden: torch.Tensor  # (hidden_size,): residual-stream channels
    qk: torch.Tensor  # (num_layers, num_heads, head_dim): query/key dimensions of each head
    v: torch.Tensor  # (num_layers, num_heads, head_dim): value dimensions of each head


def default_loss(output: ForwardOutput, batch: Mapping[str, Any]) -> torch.Tensor:
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


def _hidden_axes(supernet: ElasticBert) -> list[tuple[torch.Tensor, int]]:
    """Every (tensor, axis) of the residual stream, except the bottleneck projections (see the module doc)."""
    e = supernet.embeddings
    axes: list[tuple[torch.Tensor, int]] = [(e.word, 1), (e.position, 1), (e.token_type, 1)]
    axes += [(e.norm.weight, 0), (e.norm.bias, 0)]
    for layer in supernet.layers:
        axes += [(layer.query.weight, 1), (layer.key.weight, 1), (layer.value.weight, 1)]
        axes += [(layer.attention_out.weight, 0), (layer.attention_out.bias, 0)]
        for norm in (layer.attention_norm, layer.ffn_norm):
            axes += [(norm.weight, 0), (norm.bias, 0)]
        for ffn in (layer.ffn, *layer.extra_ffns):
            axes += [(ffn.up.weight, 1), (ffn.down.weight, 0), (ffn.down.bias, 0)]
    if supernet.pooler is not None:
        # The pooler's output is sliced with the hidden size too: one order on both sides.
        axes += [(supernet.pooler.weight, 0), (supernet.pooler.weight, 1), (supernet.pooler.bias, 0)]
    if supernet.classifier is not None:
        axes.append((supernet.classifier.weight, 1))
    return axes


def _channel_terms(tensor: torch.Tensor, grad: torch.Tensor, axis: int) -> torch.Tensor:
    """``sum W dW`` over every axis but ``axis``: the first-order loss change of zeroing each slice."""
    product = tensor * grad
    other = [d for d in range(product.dim()) if d != axis]
    return product.sum(dim=other) if other else product


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
    ffn_tensors = [t for ffn in ffns for t in (ffn.up.weight, ffn.up.bias, ffn.down.weight)]
    hidden_axes = _hidden_axes(supernet)
    attention_tensors = []
    for layer in supernet.layers:
        attention_tensors += [layer.query.weight, layer.query.bias, layer.key.weight, layer.key.bias]
        attention_tensors += [layer.value.weight, layer.value.bias, layer.attention_out.weight]
    # One gradient per distinct tensor, however many scores read it.
    tensors = list({id(t): t for t in [*ffn_tensors, *attention_tensors, *(t for t, _ in hidden_axes)]}.values())
    position = {id(t): i for i, t in enumerate(tensors)}
    device = supernet.embeddings.word.device

    heads = torch.zeros(c.num_layers, c.num_heads, device=device)
    neurons = torch.zeros(len(ffns), c.ffn_dim, device=device)
    hidden = torch.zeros(c.hidden_size, device=device)
    qk = torch.zeros(c.num_layers, c.num_heads, c.head_dim, device=device)
    v = torch.zeros(c.num_layers, c.num_heads, c.head_dim, device=device)
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
            grads = list(torch.autograd.grad(loss, [head_mask, *tensors], allow_unused=True, materialize_grads=True))
            if running_gradients:
                running = grads if running is None else [r + g for r, g in zip(running, grads, strict=True)]
                grads = running
            with torch.no_grad():  # scores are data, not part of any graph
                heads += grads[0].abs()
                grad_of = {id(t): grads[1 + position[id(t)]] for t in tensors}
                for k, ffn in enumerate(ffns):
                    triple = (ffn.up.weight, ffn.up.bias, ffn.down.weight)
                    neurons[k] += _neuron_scores(ffn, tuple(grad_of[id(t)] for t in triple))
                for i, layer in enumerate(supernet.layers):
                    qk[i] += _row_scores(layer.query, grad_of).abs().view(c.num_heads, c.head_dim)
                    qk[i] += _row_scores(layer.key, grad_of).abs().view(c.num_heads, c.head_dim)
                    v[i] += _row_scores(layer.value, grad_of).abs().view(c.num_heads, c.head_dim)
                    out = layer.attention_out.weight
                    v[i] += _channel_terms(out, grad_of[id(out)], 1).abs().view(c.num_heads, c.head_dim)
                for tensor, axis in hidden_axes:
                    hidden += _channel_terms(tensor, grad_of[id(tensor)], axis).abs()
            seen += 1
    if seen == 0:
        raise BertnasError("no batches to compute importance on")
    per_layer = neurons.view(c.num_layers, c.max_ffn_stack, c.ffn_dim)
    return Importance(
        heads=heads,
        ffn=per_layer[:, 0].clone(),
        extra_ffns=per_layer[:, 1:].clone(),
        hidden=hidden,
        qk=qk,
        v=v,
    )


def _row_scores(linear: nn.Linear, grad_of: dict[int, torch.Tensor]) -> torch.Tensor:
    """Per output row of ``linear``: ``sum_j W[d,j] dW[d,j] + b[d] db[d]`` (zeroing the row)."""
    return _channel_terms(linear.weight, grad_of[id(linear.weight)], 0) + linear.bias * grad_of[id(linear.bias)]


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


@torch.no_grad()
def _permute_within_heads(linears: tuple[nn.Linear, ...], order: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Dimension ``order[h, i]`` of head ``h`` becomes its dimension ``i`` (output rows of ``linears``).

    Returns the row order applied, for the tensors that read these rows as columns.
    """
    num_heads = order.shape[0]
    rows = (order + head_dim * torch.arange(num_heads, device=order.device).unsqueeze(1)).reshape(-1)
    for linear in linears:
        linear.weight.copy_(linear.weight[rows])
        linear.bias.copy_(linear.bias[rows])
    return rows


@torch.no_grad()
def _permute_hidden(supernet: ElasticBert, order: torch.Tensor) -> None:
    """Channel ``order[i]`` of the residual stream becomes channel ``i``, in every tensor that carries it."""
    for tensor, axis in _hidden_axes(supernet):
        tensor.copy_(tensor.index_select(axis, order))


def _check_bottlenecks_untrained(supernet: ElasticBert) -> None:
    for i, layer in enumerate(supernet.layers):
        if not layer.has_bottleneck:
            continue
        for linear in (layer.bottleneck_in, layer.bottleneck_out):
            identity = torch.eye(*linear.weight.shape, device=linear.weight.device)
            if not (torch.equal(linear.weight, identity) and not bool(linear.bias.any())):
                raise BertnasError(
                    f"layer {i}'s bottleneck projections are no longer their identity initialisation: rewire the "
                    "hidden size before training (or pass hidden_importance=None to leave the channels in place)"
                )


def rewire(
    supernet: ElasticBert,
    head_importance: torch.Tensor,
    ffn_importance: torch.Tensor,
    extra_ffn_importance: torch.Tensor | None = None,
    hidden_importance: torch.Tensor | None = None,
    qk_importance: torch.Tensor | None = None,
    v_importance: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Permute heads, FFN neurons and (given their scores) head dimensions and hidden channels in place.

    Returns the orders applied (``order[...][new position] = old index``):
    ``head_order`` (num_layers, num_heads), ``ffn_order`` (num_layers, ffn_dim),
    ``extra_ffn_order`` (num_layers, max_ffn_stack - 1, ffn_dim), and, when their scores
    are given, ``qk_order`` and ``v_order`` (num_layers, num_heads, head_dim; indexed by the
    *original* head) and ``hidden_order`` (hidden_size,). Each extra stacked FFN is an
    independent FFN and gets its own order from ``extra_ffn_importance``; an extra FFN
    whose scores are all zero (the untrained, zero-output initialisation) is left as it
    is. The full model computes the same function before and after.

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
    per_head = (c.num_layers, c.num_heads, c.head_dim)
    if qk_importance is not None:
        _check_shape("qk_importance", qk_importance, per_head)
    if v_importance is not None:
        _check_shape("v_importance", v_importance, per_head)
    if hidden_importance is not None:
        _check_shape("hidden_importance", hidden_importance, (c.hidden_size,))
        _check_bottlenecks_untrained(supernet)

    device = supernet.embeddings.word.device
    head_order = descending_order(head_importance.detach()).to(device)
    ffn_order = descending_order(ffn_importance.detach()).to(device)
    extra_order = torch.arange(c.ffn_dim, device=device).repeat(c.num_layers, extras, 1)
    orders: dict[str, torch.Tensor] = {}
    if qk_importance is not None:
        orders["qk_order"] = descending_order(qk_importance.detach()).to(device)
    if v_importance is not None:
        orders["v_order"] = descending_order(v_importance.detach()).to(device)
    for i, layer in enumerate(supernet.layers):
        # Within-head orders are in the original head numbering: apply them before moving the heads.
        if "qk_order" in orders:
            _permute_within_heads((layer.query, layer.key), orders["qk_order"][i], c.head_dim)
        if "v_order" in orders:
            rows = _permute_within_heads((layer.value,), orders["v_order"][i], c.head_dim)
            with torch.no_grad():
                layer.attention_out.weight.copy_(layer.attention_out.weight[:, rows])
        _permute_heads(layer, head_order[i], c.num_heads, c.head_dim)
        _permute_ffn(layer.ffn, ffn_order[i])
        for k, extra in enumerate(layer.extra_ffns):
            scores = extra_ffn_importance[i, k].detach()
            if bool((scores != 0).any()):  # all zero: nothing to rank, keep the extra FFN as it is
                extra_order[i, k] = descending_order(scores).to(device)
                _permute_ffn(extra, extra_order[i, k])
    if hidden_importance is not None:
        hidden_order = descending_order(hidden_importance.detach()).to(device)
        _permute_hidden(supernet, hidden_order)
        previous = c.channel_order if c.channel_order is not None else list(range(c.hidden_size))
        c.channel_order = [previous[j] for j in hidden_order.tolist()]
        orders["hidden_order"] = hidden_order
    return {"head_order": head_order, "ffn_order": ffn_order, "extra_ffn_order": extra_order, **orders}


def rewire_supernet(
    supernet: ElasticBert,
    batches: Iterable[Mapping[str, Any]],
    loss_fn: LossFn | None = None,
    running_gradients: bool = False,
    dimensions: bool = True,
) -> dict[str, torch.Tensor]:
    """Compute importance on ``batches`` and rewire; returns the importances and the orders applied.

    Keys: ``head_importance``, ``ffn_importance``, ``extra_ffn_importance`` (as measured,
    in the original order) and ``head_order``, ``ffn_order``, ``extra_ffn_order``
    (see :func:`rewire`); with ``dimensions`` (the default) also the hidden-channel and
    within-head query/key and value importances and orders (DynaBERT's rewiring alone:
    ``dimensions=False``). All on the CPU, ready to log.
    """
    importance = compute_importance(supernet, batches, loss_fn, running_gradients)
    orders = rewire(
        supernet,
        importance.heads,
        importance.ffn,
        importance.extra_ffns,
        hidden_importance=importance.hidden if dimensions else None,
        qk_importance=importance.qk if dimensions else None,
        v_importance=importance.v if dimensions else None,
    )
    result = {
        "head_importance": importance.heads,
        "ffn_importance": importance.ffn,
        "extra_ffn_importance": importance.extra_ffns,
        **(
            {"hidden_importance": importance.hidden, "qk_importance": importance.qk, "v_importance": importance.v}
            if dimensions
            else {}
        ),
        **orders,
    }
    return {name: tensor.detach().cpu() for name, tensor in result.items()}
